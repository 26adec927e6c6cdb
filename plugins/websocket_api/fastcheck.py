"""A fast yes/no check of a message against its JSON Schema, compiled once per schema.

``jsonschema`` walks a schema for every message and collects errors: about 35 µs for a
``route``, a sixth of what tieline spends on one. Almost every message a client sends is
valid, so the server first asks a compiled predicate *is it valid?* (a few µs) and runs
``jsonschema`` only when the answer is no, to say which field is wrong and why.

The compiler knows the keywords our API schemas use — ``type`` (``integer`` meaning a
Python int, not a bool and not ``3.0``, as the server's validator counts it), ``const``,
``enum``, ``properties``, ``required``, ``additionalProperties`` (a boolean), ``items``,
``minItems``, ``maxItems``, ``uniqueItems`` (of strings), ``minimum``, ``maximum``,
``minLength``, ``maxLength``, ``pattern`` — and ignores annotations (``title``,
``description``, ``$schema``, ``$id``, ``x-…``). A schema using anything else is not
compiled: :func:`compile_schema` returns None and every message of that type goes to
``jsonschema``. The predicate must agree with ``jsonschema`` on every message; a property
test holds it to that (tests/unit/plugins/websocket_api/test_fastcheck.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["compile_schema"]

Check = Callable[[Any], bool]

#: keywords that say nothing about validity
_ANNOTATIONS = frozenset({"title", "description", "$schema", "$id", "$comment", "examples",
                          "default"})
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class _NotCompilable(Exception):
    pass


def compile_schema(schema: dict[str, Any]) -> Check | None:
    """A predicate that says whether a message is valid against ``schema``; None when the
    schema uses a keyword the compiler does not know."""
    try:
        return _compile(schema)
    except _NotCompilable:
        return None


def _compile(schema: Any) -> Check:
    if schema is True:
        return lambda value: True
    if not isinstance(schema, dict):
        raise _NotCompilable(repr(schema))
    checks: list[Check] = []
    unknown = [k for k in schema if k not in _ANNOTATIONS and not k.startswith("x-")
               and k not in _KEYWORDS]
    if unknown:
        raise _NotCompilable(", ".join(unknown))
    for keyword, make in _KEYWORDS.items():
        if keyword in schema:
            check = make(schema[keyword], schema)
            if check is not None:
                checks.append(check)
    if not checks:
        return lambda value: True
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _type(value: Any, schema: dict[str, Any]) -> Check:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(n in _JSON_TYPES for n in names):
        raise _NotCompilable(f"type {value!r}")
    tests = [_JSON_TYPES[n] for n in names]
    return tests[0] if len(tests) == 1 else (lambda v: any(t(v) for t in tests))


def _same(a: Any, b: Any) -> bool:
    """JSON equality: a bool is not a number, 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _const(value: Any, schema: dict[str, Any]) -> Check:
    return lambda v: _same(v, value)


def _enum(values: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(values, list):
        raise _NotCompilable("enum")
    return lambda v: any(_same(v, x) for x in values)


def _properties(props: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(props, dict):
        raise _NotCompilable("properties")
    compiled = {name: _compile(sub) for name, sub in props.items()}
    extra = schema.get("additionalProperties", True)
    if extra not in (True, False):
        raise _NotCompilable("additionalProperties")

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name, item in value.items():
            sub = compiled.get(name)
            if sub is None:
                if extra is False:
                    return False
            elif not sub(item):
                return False
        return True

    return check


def _additional(value: Any, schema: dict[str, Any]) -> Check | None:
    if value not in (True, False):
        raise _NotCompilable("additionalProperties")
    if "properties" in schema or value is True:
        return None  # checked with the properties
    return lambda v: not isinstance(v, dict) or not v


def _required(names: Any, schema: dict[str, Any]) -> Check:
    if not isinstance(names, list):
        raise _NotCompilable("required")
    return lambda v: not isinstance(v, dict) or all(n in v for n in names)


def _items(sub: Any, schema: dict[str, Any]) -> Check:
    item = _compile(sub)
    return lambda v: not isinstance(v, list) or all(item(x) for x in v)


def _min_items(n: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not isinstance(v, list) or len(v) >= n


def _max_items(n: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not isinstance(v, list) or len(v) <= n


def _unique(flag: Any, schema: dict[str, Any]) -> Check | None:
    if flag is False:
        return None
    items = schema.get("items")
    if not (isinstance(items, dict) and items.get("type") == "string"):
        raise _NotCompilable("uniqueItems of non-strings")  # JSON equality of anything
    return lambda v: not isinstance(v, list) or len(set(v)) == len(v) or not all(
        isinstance(x, str) for x in v)


def _number(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _NotCompilable("a bound that is not a number")


def _minimum(bound: Any, schema: dict[str, Any]) -> Check:
    _number(bound)
    return lambda v: (isinstance(v, bool) or not isinstance(v, (int, float))) or v >= bound


def _maximum(bound: Any, schema: dict[str, Any]) -> Check:
    _number(bound)
    return lambda v: (isinstance(v, bool) or not isinstance(v, (int, float))) or v <= bound


def _min_length(n: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not isinstance(v, str) or len(v) >= n


def _max_length(n: Any, schema: dict[str, Any]) -> Check:
    return lambda v: not isinstance(v, str) or len(v) <= n


def _pattern(text: Any, schema: dict[str, Any]) -> Check:
    regex = re.compile(text)
    return lambda v: not isinstance(v, str) or regex.search(v) is not None


_KEYWORDS: dict[str, Callable[[Any, dict[str, Any]], Check | None]] = {
    "type": _type, "const": _const, "enum": _enum, "required": _required,
    "properties": _properties, "additionalProperties": _additional, "items": _items,
    "minItems": _min_items, "maxItems": _max_items, "uniqueItems": _unique,
    "minimum": _minimum, "maximum": _maximum, "minLength": _min_length,
    "maxLength": _max_length, "pattern": _pattern,
}
