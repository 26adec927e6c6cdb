"""Compute the package list for tieline's top-level layout.

core/ is the package ``tieline``, plugins/<name>/ is ``tieline.plugins.<name>`` and
schemas/ is ``tieline.schemas`` (see pyproject.toml and shared/STYLE.md).
"""

from setuptools import find_packages, setup

packages = ["tieline", "tieline.plugins", "tieline.schemas"]
packages += [f"tieline.plugins.{name}" for name in find_packages(where="plugins")]

setup(packages=packages)
