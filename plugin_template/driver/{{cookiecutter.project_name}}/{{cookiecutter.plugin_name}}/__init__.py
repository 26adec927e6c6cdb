"""{{cookiecutter.description}}.

The plugin's hook implementations, and nothing else: tieline finds this module through
the entry point in pyproject.toml (group ``tieline``) and calls the hooks below.

* ``tieline_router_drivers``: the driver, used by a router block with
  ``"driver": "{{cookiecutter.driver_name}}"``;
* ``tieline_emulators``: the emulator, run by ``tieline emulate {{cookiecutter.driver_name}}``.
"""

from __future__ import annotations

from tieline import hookimpl

from .driver import MatrixDriver
from .emulator import MatrixEmulator


@hookimpl
def tieline_router_drivers() -> list[type]:
    return [MatrixDriver]


@hookimpl
def tieline_emulators() -> list[type]:
    return [MatrixEmulator]
