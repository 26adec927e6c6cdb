"""Compute the package list for tieline's top-level layout.

core/ is the package ``tieline`` (with its sub-packages: settings, cluster, kit, ops, cli),
plugins/<name>/ is ``tieline.plugins.<name>`` and schemas/ is ``tieline.schemas``,
plugin_template/ is ``tieline.plugin_template`` (its templates are package data, see
pyproject.toml and shared/STYLE.md).
"""

from setuptools import find_packages, setup

packages = ["tieline", "tieline.plugins", "tieline.schemas", "tieline.plugin_template"]
packages += [f"tieline.{name}" for name in find_packages(where="core")]
packages += [f"tieline.plugins.{name}" for name in find_packages(where="plugins")]

setup(packages=packages)
