"""The JSON shapes of the WebSocket API: request validation, events, snapshots.

Every message type is described by a JSON Schema under ``schemas/api/`` (``request/`` for
what clients send, ``server/`` for what the server sends). Numbers are 1-based; levels are
named. Pure functions: no I/O.

A client message is read strictly: whatever a client sends, :func:`parse_request` returns a
message its schema accepts or raises :class:`InvalidMessage` naming the field at fault;
nothing else. Beyond what a schema can say, it refuses values Python's :mod:`json` would
otherwise hand on or fail on later: integers of more than :data:`MAX_INT_DIGITS` digits,
``NaN`` and ``Infinity`` (not JSON), numbers too large for a float, strings or keys holding
a lone surrogate (``"\\ud800"`` is valid JSON syntax but not text: it cannot be written as
UTF-8, to a file or to a device), and a key given twice in one object. In the schemas an
``integer`` is an integer: ``3.0`` is not one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from tieline import (
    UNKNOWN,
    CrosspointsChanged,
    DeviceOffline,
    DeviceOnline,
    Event,
    InvalidRequest,
    LabelsChanged,
    NodeStatusChanged,
    PortKind,
    Protect,
    ProtectChanged,
    RouterSpec,
    RoutingService,
    SalvoResult,
    SalvosChanged,
    api_request_schemas,
)

from .fastcheck import Check, compile_schema

PROTOCOL = 1

#: Most digits an integer in a client message may have (ids, ports and counts need far
#: fewer; Python refuses to parse more than 4300).
MAX_INT_DIGITS = 100

_SURROGATE = re.compile("[\ud800-\udfff]")
#: how a surrogate can be written in JSON text (then the decoded message is walked)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

#: JSON Schema draft 2020-12 with "integer" meaning an int: jsonschema, following the spec,
#: counts 3.0 as an integer, which would reach the router as a float.
_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer",
        lambda checker, instance: isinstance(instance, int) and not isinstance(instance, bool),
    ),
)

_validators: dict[int, Draft202012Validator] = {}
#: per schema, its compiled yes/no check (None: not compilable, jsonschema every time)
_checks: dict[int, tuple[dict[str, Any], Check | None]] = {}


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    found = _validators.get(id(schema))
    if found is None:
        found = _validators[id(schema)] = _Validator(schema)
    return found


def _valid(schema: dict[str, Any], message: dict[str, Any]) -> bool:
    """The compiled check (fastcheck.py): whether ``message`` is valid, in a few µs."""
    entry = _checks.get(id(schema))
    if entry is None or entry[0] is not schema:  # keep the schema: its id stays its own
        entry = _checks[id(schema)] = (schema, compile_schema(schema))
    check = entry[1]
    return check is not None and check(message)


class InvalidMessage(InvalidRequest):
    """A client message that cannot be served; ``request_id`` is its id when it had one."""

    def __init__(self, message: str, *, field: str | None = None, request_id: Any = None) -> None:
        super().__init__(message, field=field)
        self.request_id = request_id


class _Unusable:
    """Stands in the decoded message for a value that cannot be used; says why.

    :param reason: what is wrong with the value.
    :param key: for an object that repeats a key, that key (the field is the key's).
    """

    __slots__ = ("key", "reason")
    #: how many were ever made: a message that made none holds none (no need to look)
    made = 0

    def __init__(self, reason: str, key: str | None = None) -> None:
        self.reason = reason
        self.key = key
        _Unusable.made += 1


def _int(text: str) -> int | _Unusable:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        return _Unusable(f"a number of {digits} digits; at most {MAX_INT_DIGITS} are accepted")
    return int(text)


def _float(text: str) -> float | _Unusable:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return _Unusable(f"{text[:20]}{'…' if len(text) > 20 else ''} is out of range")
    return value


def _constant(text: str) -> _Unusable:
    return _Unusable(f"{text} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Unusable:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                return _Unusable("given more than once in one object", key=key)
            seen.add(key)
    return found


def _decode(text: str) -> Any:
    return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant,
                      object_pairs_hook=_object)


def _name(key: Any) -> str:
    """An object key as it appears in a field path (a lone surrogate escaped)."""
    return str(key).encode("utf-8", "backslashreplace").decode("utf-8")


def _unusable(message: Any) -> tuple[str | None, str] | None:
    """The first value of ``message`` that cannot be used, as ``(field, reason)``."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), message)]
    while stack:
        path, value = stack.pop()
        field = ".".join(_name(p) for p in path) or None
        if isinstance(value, _Unusable):
            if value.key is not None:
                field = ".".join(_name(p) for p in (*path, value.key))
            return field, value.reason
        if isinstance(value, str):
            bad = _SURROGATE.search(value)
            if bad is not None:
                return field, (f"text holding a lone surrogate ({_name(bad[0])} at character "
                               f"{bad.start() + 1}), which is not Unicode; send UTF-8 text")
        elif isinstance(value, dict):
            for key in value:
                bad = _SURROGATE.search(key)
                if bad is not None:
                    return ".".join(_name(p) for p in (*path, key)), (
                        "a key holding a lone surrogate, which is not Unicode")
            stack.extend(((*path, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(value))))
    return None


def parse_request(text: str | bytes, extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Decode and validate one client message.

    :param extra: schemas of plugin commands by type.
    :raises InvalidMessage: naming the field and the reason.
    """
    if isinstance(text, bytes):
        raise InvalidMessage("expected a text frame holding a JSON object, got a binary frame")
    made = _Unusable.made
    try:
        message = _decode(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = f"{exc.msg} at column {exc.colno}" if isinstance(exc, ValueError) else "too deep"
        raise InvalidMessage(f"message is not valid JSON: {reason}") from None
    # a text frame is valid UTF-8: a lone surrogate can only come from a \uD800-\uDFFF
    # escape, and an unusable value only from the decoder's hooks. Most messages have
    # neither, and are not walked.
    suspect = _Unusable.made != made or _SURROGATE_ESCAPE.search(text) is not None
    problem = _unusable(message) if suspect else None
    if not isinstance(message, dict):
        if problem is not None and isinstance(message, _Unusable):
            raise InvalidMessage(f"message: {problem[1]}", field=problem[0])
        raise InvalidMessage("expected a JSON object with a 'type' field")
    request_id = message.get("id")
    if not isinstance(request_id, (int, str)) or isinstance(request_id, bool) \
            or (problem is not None and problem[0] == "id"):
        request_id = None
    if problem is not None:
        field, reason = problem
        raise InvalidMessage(f"field '{field}': {reason}", field=field, request_id=request_id)
    mtype = message.get("type")
    if not isinstance(mtype, str):
        raise InvalidMessage("missing or non-string 'type'", field="type", request_id=request_id)
    schema = extra.get(mtype) or api_request_schemas().get(mtype)
    if schema is None:
        known = ", ".join(sorted(set(api_request_schemas()) | set(extra)))
        raise InvalidMessage(f"unknown message type '{mtype}'; known types: {known}",
                             field="type", request_id=request_id)
    if _valid(schema, message):
        return message
    errors = sorted(_validator(schema).iter_errors(message), key=lambda e: list(map(str, e.path)))
    if errors:
        field, reason = explain(errors[0])
        raise InvalidMessage(f"'{mtype}': {reason}", field=field, request_id=request_id)
    return message


def explain(error: ValidationError) -> tuple[str | None, str]:
    """(field, reason) for a schema error: the field is a dotted path into the message."""
    path = ".".join(str(p) for p in error.absolute_path) or None
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        name = ".".join(filter(None, [path, missing[0]]))
        return name, f"missing required field '{name}'"
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        extra = [k for k in error.instance if k not in allowed]
        name = ".".join(filter(None, [path, extra[0]]))
        return name, f"unknown field '{name}' (allowed: {', '.join(sorted(allowed))})"
    value = json.dumps(error.instance)[:60]
    if error.validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return path, f"field '{path}' must be of type {wanted}, got {value}"
    if error.validator == "minimum":
        return path, f"field '{path}' must be ≥ {error.validator_value}, got {value}"
    if error.validator in ("enum", "const"):
        allowed = error.validator_value if error.validator == "enum" else [error.validator_value]
        return path, f"field '{path}' must be one of {json.dumps(allowed)}, got {value}"
    return path, f"field '{path}': {error.message}"


# -- server messages ---------------------------------------------------------------------------


def protect_dict(protect: Protect | None) -> dict[str, str] | None:
    return None if protect is None else {"kind": str(protect.kind), "owner": protect.owner}


def crosspoint_dict(spec: RouterSpec, level: int, destination: int, source: int) -> dict[str, Any]:
    return {
        "level": spec.levels[level],
        "destination": destination + 1,
        "source": None if source == UNKNOWN else source + 1,
    }


def event_message(event: Event, routing: RoutingService) -> dict[str, Any] | None:
    """An event as the API sends it, or None for events clients do not see."""
    if isinstance(event, CrosspointsChanged):
        spec = routing.routers[event.router].state.spec
        return {
            "type": "event", "event": "crosspoints", "router": event.router,
            "crosspoints": [
                crosspoint_dict(spec, xp.level, xp.destination, xp.source)
                for xp in event.crosspoints
            ],
        }
    if isinstance(event, LabelsChanged):
        return {
            "type": "event", "event": "labels", "router": event.router, "kind": str(event.kind),
            "labels": [{"index": i + 1, "text": t} for i, t in event.labels],
        }
    if isinstance(event, ProtectChanged):
        spec = routing.routers[event.router].state.spec
        return {
            "type": "event", "event": "protect", "router": event.router,
            "level": spec.levels[event.level], "destination": event.destination + 1,
            "protect": protect_dict(event.protect),
        }
    if isinstance(event, DeviceOnline):
        return {"type": "event", "event": "device", "router": event.router, "online": True}
    if isinstance(event, DeviceOffline):
        return {"type": "event", "event": "device", "router": event.router, "online": False,
                "reason": event.reason}
    if isinstance(event, NodeStatusChanged):
        return {"type": "event", "event": "status", "status": event.status.to_dict()}
    if isinstance(event, SalvosChanged):
        return {"type": "event", "event": "salvos", "names": list(event.names)}
    return None


def router_snapshot(routing: RoutingService, router_id: str) -> dict[str, Any]:
    """One router's whole state. ``crosspoints[level][d]`` is the 1-based source feeding
    destination ``d + 1`` (null when the device has not said)."""
    rt = routing.routers[router_id]
    state = rt.state
    spec = state.spec
    return {
        "id": spec.id,
        "driver": spec.driver,
        "online": state.online,
        "levels": list(spec.levels),
        "sources": spec.sources,
        "destinations": spec.destinations,
        "labels": {
            "sources": [state.label(PortKind.SOURCE, i) for i in range(spec.sources)],
            "destinations": [
                state.label(PortKind.DESTINATION, i) for i in range(spec.destinations)
            ],
        },
        "crosspoints": {
            name: [None if s == UNKNOWN else s + 1 for s in state.level_sources(level)]
            for level, name in enumerate(spec.levels)
        },
        "protects": [
            {"level": spec.levels[level], "destination": dest + 1, **protect_dict(p)}
            for (level, dest), p in sorted(state.protects.items())
        ],
    }


def snapshot(routing: RoutingService, router_ids: list[str] | None = None) -> dict[str, Any]:
    ids = list(routing.routers) if router_ids is None else router_ids
    for rid in ids:
        routing.router(rid)  # NotFound for unknown ids
    return {
        "routers": [router_snapshot(routing, rid) for rid in ids],
        "salvos": [
            {"name": s.name, "router": s.router, "crosspoints": len(s.crosspoints),
             "contents": [crosspoint_dict(routing.routers[s.router].state.spec, x.level,
                                          x.destination, x.source) for x in s.crosspoints]}
            for s in routing.salvos.values()
        ],
    }


def salvo_result(result: SalvoResult, routing: RoutingService) -> dict[str, Any]:
    spec = routing.routers[result.router].state.spec
    return {
        "name": result.name,
        "router": result.router,
        "taken": [crosspoint_dict(spec, x.level, x.destination, x.source) for x in result.taken],
        "refused": [
            {**crosspoint_dict(spec, r.crosspoint.level, r.crosspoint.destination,
                               r.crosspoint.source), "code": r.code, "reason": r.reason}
            for r in result.refused
        ],
    }
