"""The operator panels a node offers: the ``panels`` option of a WebSocket API entry.

::

    "apis": [{"type": "websocket", "listen": "0.0.0.0:8181", "panels": [
        {"name": "MCR", "router": "studio", "layout": "bus", "two_step_take": true,
         "levels": ["video", "audio"],
         "destinations": [{"name": "Air", "ports": "1-3", "colour": "#c0392b"},
                          {"name": "Monitors", "ports": "7-16"}],
         "sources": [{"name": "Cameras", "ports": [1, 2, 3, 4]}]}]}]

A panel shows one router: the destinations and sources of its groups, in the groups'
order, on the levels it names. Ports are 1-based, as everywhere in the API, written as a
list of numbers or as a range string (``"1-10,17"``, see :func:`parse_ranges`). Without a
``panels`` option each router has one panel of its own name showing all of it.

The schema (:data:`SETTINGS_SCHEMA`) says what it can; :func:`check` says the rest (the
router and the levels exist, the ports are the router's, names are not given twice), each
problem at its JSON path, so ``tieline validate`` and ``tieline run`` report it with file
and line, alike. :func:`resolve` fills in every default: the ``panels`` request answers
with what it gives, so a panel never has to know a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from tieline import RouterSpec, TielineError

__all__ = ["SETTINGS_SCHEMA", "XY_LIMIT", "check", "parse_ranges", "resolve"]

#: with no ``layout``: ``xy`` when the router has at most this many sources and at most
#: this many destinations, else ``bus``
XY_LIMIT = 64
#: a port number has at most this many digits (routers have at most 65536 ports)
_MAX_DIGITS = 6
_NO_CONTROL = "^[^\\x00-\\x1f\\x7f]*$"
_RANGE = re.compile(r"[ \t]*([0-9]+)[ \t]*(?:-[ \t]*([0-9]+)[ \t]*)?")

_GROUP: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"description": "a group name: 1-64 characters, no control characters",
                 "type": "string", "minLength": 1, "maxLength": 64, "pattern": _NO_CONTROL},
        "ports": {
            "description": "The group's ports, 1-based: a range string such as \"1-10,17\" "
                           "or a list of numbers; each port once.",
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": 4096},
                {"type": "array", "minItems": 1,
                 "items": {"type": "integer", "minimum": 1, "maximum": 65536}},
            ],
        },
        "colour": {"description": "a colour written #rrggbb, e.g. \"#c0392b\"",
                   "type": "string", "pattern": "^#[0-9A-Fa-f]{6}$"},
    },
    "required": ["name", "ports"],
    "additionalProperties": False,
}

#: ``panels`` in the WebSocket API's settings schema
SETTINGS_SCHEMA: dict[str, Any] = {
    "description": "Operator panels served at http(s)://LISTEN/; default: one per router.",
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"description": "a panel name: 1-64 characters, no control characters",
                     "type": "string", "minLength": 1, "maxLength": 64,
                     "pattern": _NO_CONTROL},
            "router": {"description": "The id of the router the panel controls.",
                       "type": "string", "minLength": 1},
            "layout": {"description": "xy: a grid of destinations by sources; bus: a "
                                      "destination list and source buttons.",
                       "enum": ["xy", "bus"]},
            "two_step_take": {"description": "Whether a route needs a preselection, then "
                                             "Take.",
                              "type": "boolean", "default": False},
            "levels": {"description": "The router's levels the panel shows and routes.",
                       "type": "array", "minItems": 1, "uniqueItems": True,
                       "items": {"type": "string", "minLength": 1}},
            "destinations": {"description": "Destination groups, in the order shown.",
                             "type": "array", "minItems": 1, "items": _GROUP},
            "sources": {"description": "Source groups, in the order shown.",
                        "type": "array", "minItems": 1, "items": _GROUP},
        },
        "required": ["name", "router"],
        "additionalProperties": False,
    },
}

_KINDS = (("destinations", "destination"), ("sources", "source"))

Path = tuple[str | int, ...]


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """The ranges of a range string, as written: ``"1-10,17"`` gives
    ``[(1, 10), (17, 17)]``. Spaces around numbers are allowed.

    :raises ValueError: saying what is wrong and how to write it.

    >>> parse_ranges("1-10, 17")
    [(1, 10), (17, 17)]
    >>> parse_ranges("10-1")
    Traceback (most recent call last):
    ...
    ValueError: '10-1' runs backwards; write '1-10'
    """
    out = []
    for item in text.split(","):
        if not item.strip():
            raise ValueError(f"'{text}' has an empty item; write ports like '1-10,17'")
        match = _RANGE.fullmatch(item)
        if match is None:
            raise ValueError(f"'{item.strip()}' is not a port number or a range; write "
                             "ports like '1-10,17'")
        first, last = match.group(1), match.group(2) or match.group(1)
        if max(len(first), len(last)) > _MAX_DIGITS:
            raise ValueError(f"'{item.strip()}': a port number has at most {_MAX_DIGITS} "
                             "digits")
        low, high = int(first), int(last)
        if low == 0 or high == 0:
            raise ValueError(f"'{item.strip()}': ports are numbered from 1, not 0")
        if low > high:
            raise ValueError(f"'{item.strip()}' runs backwards; write '{high}-{low}'")
        out.append((low, high))
    return out


class _BadPorts(ValueError):
    """A group's ports are wrong; ``where`` is the path below ``ports`` (an item of a
    list), empty for the whole value."""

    def __init__(self, message: str, where: Path = ()) -> None:
        super().__init__(message)
        self.where = where


def _ports(spec: str | Sequence[int], count: int, what: str, router: str) -> list[int]:
    """The sorted ports of a group of ``router``, which has ``count`` of ``what``.

    :raises _BadPorts: for the first problem.
    """
    if isinstance(spec, str):
        try:
            ranges = parse_ranges(spec)
        except ValueError as exc:
            raise _BadPorts(str(exc)) from None
        items: list[tuple[Path, int, int]] = [((), low, high) for low, high in ranges]
    else:
        items = [((i,), n, n) for i, n in enumerate(spec)]
    seen: set[int] = set()
    for where, low, high in items:
        if high > count:  # before counting: "1-999999" is refused, never expanded
            shown = f"{low}-{high}" if low != high else str(low)
            raise _BadPorts(f"{what} {shown} is out of range: router '{router}' has "
                            f"{count} {what}s (1–{count})", where)
        span = range(low, high + 1)
        if not seen.isdisjoint(span):
            twice = next(p for p in span if p in seen)
            raise _BadPorts(f"{what} {twice} is given twice in this group", where)
        seen.update(span)
    return sorted(seen)


def check(panels: Sequence[dict[str, Any]] | None,
          routers: Mapping[str, RouterSpec]) -> list[tuple[Path, str]]:
    """What the schema cannot say of a (schema-valid) ``panels`` option, as
    ``(path inside the API entry, message)`` pairs."""
    problems: list[tuple[Path, str]] = []
    names: dict[str, int] = {}
    for i, panel in enumerate(panels or ()):
        at: Path = ("panels", i)
        if panel["name"] in names:
            problems.append((at + ("name",), f"panel name '{panel['name']}' is already "
                             f"used by panels[{names[panel['name']]}]; give each panel its "
                             "own name"))
        names.setdefault(panel["name"], i)
        spec = routers.get(panel["router"])
        if spec is None:
            known = ", ".join(sorted(routers)) or "none"
            problems.append((at + ("router",), f"no router '{panel['router']}' (routers: "
                             f"{known})"))
            continue
        for j, level in enumerate(panel.get("levels", ())):
            if level not in spec.levels:
                problems.append((at + ("levels", j), f"router '{spec.id}' has no level "
                                 f"'{level}'; its levels: {', '.join(spec.levels)}"))
        for key, what in _KINDS:
            count = spec.sources if what == "source" else spec.destinations
            groups: dict[str, int] = {}
            for j, group in enumerate(panel.get(key, ())):
                if group["name"] in groups:
                    problems.append((at + (key, j, "name"), f"group name '{group['name']}' "
                                     f"is already used by {key}[{groups[group['name']]}]"))
                groups.setdefault(group["name"], j)
                try:
                    _ports(group["ports"], count, what, spec.id)
                except _BadPorts as exc:
                    problems.append((at + (key, j, "ports") + exc.where, str(exc)))
    return problems


def _default_group(count: int) -> list[dict[str, Any]]:
    return [{"name": "All", "ports": list(range(1, count + 1)), "colour": None}]


def resolve(panels: Sequence[dict[str, Any]] | None,
            routers: Mapping[str, RouterSpec]) -> list[dict[str, Any]]:
    """Every panel with every default filled in and every group's ``ports`` a sorted list
    of numbers: what the ``panels`` request answers. No ``panels`` (None): one panel per
    router, named after it.

    :raises TielineError: when :func:`check` finds a problem (the settings loader reports
        them first, with file and line; this guards a caller that skipped it).
    """
    problems = check(panels, routers)
    if problems:
        path, message = problems[0]
        raise TielineError("websocket API: " + ".".join(map(str, path)) + ": " + message)
    if panels is None:
        panels = [{"name": rid, "router": rid} for rid in routers]
    out = []
    for panel in panels:
        spec = routers[panel["router"]]
        resolved: dict[str, Any] = {
            "name": panel["name"],
            "router": spec.id,
            "layout": panel.get("layout") or (
                "xy" if spec.sources <= XY_LIMIT and spec.destinations <= XY_LIMIT else "bus"),
            "two_step_take": panel.get("two_step_take", False),
            "levels": list(panel.get("levels") or spec.levels),
        }
        for key, what in _KINDS:
            count = spec.sources if what == "source" else spec.destinations
            if key not in panel:
                resolved[key] = _default_group(count)
                continue
            groups = []
            for group in panel[key]:
                groups.append({"name": group["name"],
                               "ports": _ports(group["ports"], count, what, spec.id),
                               "colour": group.get("colour", "").lower() or None})
            resolved[key] = groups
        out.append(resolved)
    return out
