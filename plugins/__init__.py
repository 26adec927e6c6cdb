"""Bundled tieline plugins. Each sub-package is registered as an entry point in group ``tieline``."""
