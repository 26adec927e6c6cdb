"""The compiled check agrees with jsonschema on every message, for every API request
schema: it may only be faster, never more or less permissive."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tieline.settings import catalog
from tieline.plugins.websocket_api import messages
from tieline.plugins.websocket_api.fastcheck import compile_schema

SCHEMAS = catalog.api_request_schemas()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10), st.integers(), st.sampled_from([0.0, 3.0, 2.5, -1.0, 1e20]),
    st.text(max_size=4), st.sampled_from(["", "video", "audio", "route", "add", "remove",
                                          "source", "destination", "127.0.0.1:7401", "a b"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=6)


def _valid(schema: dict[str, Any], message: Any) -> bool:
    return not list(messages._validator(schema).iter_errors(message))


def _near(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Messages built from the schema's own property names, the required ones mostly
    there, values of any kind (often of the right kind), sometimes an extra key."""
    props = schema.get("properties", {})

    def value_for(sub: dict[str, Any]) -> st.SearchStrategy[Any]:
        options = [json_values]
        kind = sub.get("type")
        if "const" in sub:
            options.append(st.just(sub["const"]))
        if "enum" in sub:
            options.append(st.sampled_from(sub["enum"]))
        if kind == "integer" or (isinstance(kind, list) and "integer" in kind):
            options.append(st.integers(-2, 70000))
        if kind == "string" or (isinstance(kind, list) and "string" in kind):
            options.append(st.text(max_size=6))
        if kind == "array":
            options.append(st.lists(st.sampled_from(["video", "audio", "", "video"]),
                                    max_size=3))
        return st.one_of(*options)

    return st.fixed_dictionaries(
        {}, optional={name: value_for(sub) for name, sub in props.items()}
    ).flatmap(lambda m: st.one_of(
        st.just(m),
        st.dictionaries(st.sampled_from(["extra", "type", "id"]), json_values, max_size=1)
        .map(lambda more: {**m, **more})))


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_api_request_schema_compiles(name):
    assert compile_schema(SCHEMAS[name]) is not None


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_compiled_check_agrees_with_jsonschema(name, data):
    schema = SCHEMAS[name]
    check = compile_schema(schema)
    message = data.draw(st.one_of(_near(schema), json_values))
    assert check(message) == _valid(schema, message), message


def test_a_schema_with_an_unknown_keyword_is_not_compiled():
    assert compile_schema({"type": "object", "oneOf": [{}, {}]}) is None
    assert compile_schema({"type": "object", "additionalProperties": {"type": "string"}}) is None
    assert compile_schema({"type": "array", "items": {"type": "integer"},
                           "uniqueItems": True}) is None
