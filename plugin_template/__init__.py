"""Cookiecutter templates of third-party tieline plugins, shipped as package data.

One folder per kind (``driver/``); ``tieline plugin new NAME --kind KIND`` renders one with
:mod:`tieline.kit.template`. The files are templates, not modules: nothing here is imported.
"""
