"""The catalogue of bundled JSON Schemas (``tieline.schemas``), read through importlib.resources."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any


@cache
def load(*parts: str) -> dict[str, Any]:
    """A bundled schema, e.g. ``load("settings", "tieline.schema.json")``. Cached; do not mutate."""
    resource = files("tieline.schemas")
    for part in parts:
        resource = resource.joinpath(part)
    return json.loads(resource.read_text(encoding="utf-8"))


def _folder(*parts: str) -> dict[str, dict[str, Any]]:
    """Every ``<name>.schema.json`` of a folder, by name."""
    folder = files("tieline.schemas").joinpath(*parts)
    suffix = ".schema.json"
    return {
        entry.name.removesuffix(suffix): load(*parts, entry.name)
        for entry in folder.iterdir() if entry.name.endswith(suffix)
    }


@cache
def api_request_schemas() -> dict[str, dict[str, Any]]:
    """Schemas of the messages clients send, by message type."""
    return _folder("api", "request")


@cache
def api_server_schemas() -> dict[str, dict[str, Any]]:
    """Schemas of the messages the server sends, by message type."""
    return _folder("api", "server")
