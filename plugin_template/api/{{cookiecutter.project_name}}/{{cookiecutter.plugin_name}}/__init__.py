"""{{cookiecutter.description}}.

The plugin's hook implementations, and nothing else: tieline finds this module through
the entry point in pyproject.toml (group ``tieline``) and calls the hooks below.

* ``tieline_client_apis``: the API, served for an ``apis`` entry with
  ``"type": "{{cookiecutter.api_name}}"``.
"""

from __future__ import annotations

from tieline import hookimpl

from .server import LineApi


@hookimpl
def tieline_client_apis() -> list[type]:
    return [LineApi]
