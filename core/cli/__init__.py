"""The ``tieline`` command, :func:`main`: the commands that run here (:mod:`.main`: run,
validate, plugins, emulate, plugin new, service install, discover, users, keys) and those
that talk to a running node (:mod:`.remote`)."""

from . import remote as _remote  # noqa: F401  (its commands register on main)
from .main import main

__all__ = ["main"]
