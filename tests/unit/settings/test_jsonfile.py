"""tieline.settings.jsonfile: positions, syntax errors, atomic writes, crash safety with real processes."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tieline.errors import SettingsProblem, TielineError
from tieline.settings.jsonfile import (
    MAX_DEPTH,
    JsonDocument,
    JsonFileError,
    json_path,
    load_json,
    write_bytes_atomic,
    write_json_atomic,
)

WRITER = Path(__file__).with_name("jsonfile_writer.py")

# Columns are counted in characters: line 8 and line 13 have non-ASCII text before values,
# line 14 starts with a tab.
SAMPLE = """\
{
  "node": {"name": "studio-node", "id": 7},
  "routers": {
    "studio-a": {
      "driver": "videohub",
      "sources": [
        "Cam 1",
        "Caméra 2", "Ünïcödé 3",
        {"label": "VT", "index": 3}
      ]
    }
  },
  "names": {"Caméra": "Ünïcödé", "next": 1},
\t"tabbed": [true, false, null, -1.5e3],
  "empty": []
}
"""


def at(text: str, line: int, column: int) -> str:
    """The text from 1-based (line, column) to the end of that line."""
    return text.split("\n")[line - 1][column - 1:]


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def temp_files(folder: Path) -> list[str]:
    """Names of write_json_atomic's temporary files in ``folder``."""
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")
    )


@pytest.fixture
def sample(tmp_path: Path) -> JsonDocument:
    return load_json(write(tmp_path / "tieline.json", SAMPLE))


# -------------------------------------------------------------------------------------------
# Positions
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "position", "starts_with"),
    [
        ((), (1, 1), "{"),
        (("node",), (2, 11), '{"name"'),
        (("node", "name"), (2, 20), '"studio-node"'),
        (("node", "id"), (2, 41), "7}"),
        (("routers", "studio-a"), (4, 17), "{"),
        (("routers", "studio-a", "sources"), (6, 18), "["),
        (("routers", "studio-a", "sources", 0), (7, 9), '"Cam 1"'),
        (("routers", "studio-a", "sources", 1), (8, 9), '"Caméra 2"'),
        (("routers", "studio-a", "sources", 2), (8, 21), '"Ünïcödé 3"'),
        (("routers", "studio-a", "sources", 3, "index"), (9, 34), "3}"),
        (("names", "next"), (13, 42), "1}"),
        (("tabbed",), (14, 12), "[true"),
        (("tabbed", 3), (14, 32), "-1.5e3"),
        (("empty",), (15, 12), "[]"),
    ],
)
def test_position_of_values(
    sample: JsonDocument, path: tuple, position: tuple[int, int], starts_with: str
) -> None:
    assert sample.position(path) == position
    assert at(SAMPLE, *position).startswith(starts_with)


@pytest.mark.parametrize(
    ("path", "position", "starts_with"),
    [
        (("node",), (2, 3), '"node"'),
        (("node", "id"), (2, 35), '"id"'),
        (("routers", "studio-a", "driver"), (5, 7), '"driver"'),
        (("routers", "studio-a", "sources", 3, "index"), (9, 25), '"index"'),
        (("names", "next"), (13, 34), '"next"'),
        (("tabbed",), (14, 2), '"tabbed"'),
    ],
)
def test_key_position(
    sample: JsonDocument, path: tuple, position: tuple[int, int], starts_with: str
) -> None:
    assert sample.key_position(path) == position
    assert at(SAMPLE, *position).startswith(starts_with)


def test_key_position_falls_back_to_the_value(sample: JsonDocument) -> None:
    assert sample.key_position(()) == (1, 1)
    assert sample.key_position(("routers", "studio-a", "sources", 1)) == (8, 9)  # array item
    assert sample.key_position(("routers", "studio-a", "levels")) == (4, 17)  # missing key


@pytest.mark.parametrize(
    ("path", "ancestor"),
    [
        (("routers", "studio-a", "levels"), ("routers", "studio-a")),
        (("routers", "studio-a", "sources", 99), ("routers", "studio-a", "sources")),
        (("routers", "studio-b", "sources", 0), ("routers",)),
        (("node", "name", "first"), ("node", "name")),  # below a scalar
        (("node", 0), ("node",)),  # an index into an object
        (("nothing",), ()),
    ],
)
def test_missing_path_falls_back_to_nearest_ancestor(
    sample: JsonDocument, path: tuple, ancestor: tuple
) -> None:
    assert sample.position(path) == sample.position(ancestor)


def test_any_sequence_is_a_path(sample: JsonDocument) -> None:
    from collections import deque

    assert sample.position(deque(["node", "id"])) == sample.position(("node", "id"))
    assert sample.key_position(["node", "id"]) == (2, 35)


def test_problem_fills_file_position_and_path(tmp_path: Path) -> None:
    doc = load_json(write(tmp_path / "tieline.json", SAMPLE), "settings/tieline.json")
    assert doc.name == "settings/tieline.json"
    path = ("routers", "studio-a", "driver")
    assert doc.problem(path, "unknown driver 'videohub'") == SettingsProblem(
        "settings/tieline.json", 5, 17, '$.routers["studio-a"].driver', "unknown driver 'videohub'"
    )
    problem = doc.problem(path, "unknown key 'driver'", key=True)
    assert (problem.line, problem.column) == (5, 7)
    assert str(problem) == (
        "settings/tieline.json:5:7: $.routers[\"studio-a\"].driver: unknown key 'driver'"
    )
    # A missing path keeps its own JSON path but points at the nearest ancestor.
    missing = doc.problem(("routers", "studio-a", "levels"), "required")
    assert (missing.line, missing.column, missing.path) == (4, 17, '$.routers["studio-a"].levels')


def test_data_and_name(sample: JsonDocument) -> None:
    assert sample.data == json.loads(SAMPLE)
    assert sample.name == "tieline.json"


def test_utf8_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    doc = load_json(write(tmp_path / "bom.json", b"\xef\xbb\xbf" + SAMPLE.encode()))
    assert doc.data == json.loads(SAMPLE)
    assert doc.position(("node", "id")) == (2, 41)


def test_top_level_scalar_and_crlf(tmp_path: Path) -> None:
    assert load_json(write(tmp_path / "a.json", " 42 ")).data == 42
    doc = load_json(write(tmp_path / "b.json", '{\r\n  "a": [\r\n    1\r\n  ]\r\n}\r\n'))
    assert doc.data == {"a": [1]}
    assert doc.position(("a", 0)) == (3, 5)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), "$"),
        (("routers", 0, "sources"), "$.routers[0].sources"),
        (("my key",), '$["my key"]'),
        (("routers", "studio-a", "levels", 2), '$.routers["studio-a"].levels[2]'),
        (("_private", "x9"), "$._private.x9"),
        (("0",), '$["0"]'),  # a key that looks like an index is still a key
        (("",), '$[""]'),
        (('say "hi"',), '$["say \\"hi\\""]'),
        (("Caméra",), '$["Caméra"]'),
        ([0, 1], "$[0][1]"),
    ],
)
def test_json_path(path: tuple, expected: str) -> None:
    assert json_path(path) == expected


# -------------------------------------------------------------------------------------------
# Agreement with json.loads (property tests)
# -------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)

dump_options = st.fixed_dictionaries({
    "indent": st.sampled_from([None, 0, 1, 2, 4, "\t"]),
    "ensure_ascii": st.booleans(),
    "sort_keys": st.booleans(),
    "separators": st.sampled_from([None, (",", ":"), (", ", ": "), (" , ", " : ")]),
})


def walk(value: Any, path: tuple = ()) -> Any:
    """Every (path, value) pair in ``value``, the root first."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, index))


def canonical(value: Any) -> str:
    """Tells 1 from 1.0 and True from 1, which == does not."""
    return json.dumps(value, sort_keys=False) + repr(value)


@settings(max_examples=100, deadline=None)
@given(value=json_values, options=dump_options, newline=st.sampled_from(["\n", "\r\n"]))
def test_agrees_with_json_loads_and_points_at_every_value(
    tmp_path_factory: pytest.TempPathFactory, value: Any, options: dict, newline: str
) -> None:
    text = json.dumps(value, **options).replace("\n", newline)  # strings never hold a raw \n
    path = write(tmp_path_factory.getbasetemp() / "agreement.json", text)
    doc = load_json(path)
    assert canonical(doc.data) == canonical(json.loads(text))
    ensure_ascii = options["ensure_ascii"]
    for sub_path, sub_value in walk(json.loads(text)):
        rest = at(text, *doc.position(sub_path))
        if isinstance(sub_value, dict):
            assert rest.startswith("{"), sub_path
        elif isinstance(sub_value, list):
            assert rest.startswith("["), sub_path
        else:
            assert rest.startswith(json.dumps(sub_value, ensure_ascii=ensure_ascii)), sub_path
        if sub_path and isinstance(sub_path[-1], str):
            key_rest = at(text, *doc.key_position(sub_path))
            assert key_rest.startswith(json.dumps(sub_path[-1], ensure_ascii=ensure_ascii))


#: characters inserted into valid JSON by the damage test.
DAMAGE = list('{}[],:"\\ \n\t0-.eE1tnx\x01é')


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key for key, _ in pairs}) != len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large")
    return value


def strict_loads(text: str) -> Any:
    """json.loads as tieline reads JSON: no repeated keys, no NaN or infinite numbers, no
    lone surrogate (UTF-8 cannot encode one: UnicodeEncodeError, a ValueError)."""
    value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                       parse_float=_finite)
    json.dumps(value, ensure_ascii=False).encode("utf-8")
    return value


@settings(max_examples=200, deadline=None)
@given(value=json_values, data=st.data())
def test_damaged_text_is_parsed_like_json_loads_or_raises_json_file_error(
    value: Any, data: st.DataObject
) -> None:
    """A closed error set: any damage gives the json.loads value or a JsonFileError."""
    text = json.dumps(value, indent=data.draw(st.sampled_from([None, 2])))
    index = data.draw(st.integers(0, len(text)))
    damage = data.draw(st.sampled_from(["delete", "insert", "truncate"]))
    if damage == "delete":
        text = text[:index] + text[index + 1:]
    elif damage == "insert":
        text = text[:index] + data.draw(st.sampled_from(DAMAGE)) + text[index:]
    else:
        text = text[:index]
    try:
        expected = strict_loads(text)
    except ValueError:  # json.JSONDecodeError, a duplicate key, NaN or an infinite number
        with pytest.raises(JsonFileError) as raised:
            JsonDocument.from_text(text, "damaged.json")
        problem = raised.value.problem
        assert problem.file == "damaged.json"
        assert 1 <= problem.line <= text.count("\n") + 1
        assert problem.column >= 1
        assert problem.path.startswith("$")
    else:
        assert canonical(JsonDocument.from_text(text, "damaged.json").data) == canonical(expected)


def test_every_truncation_of_a_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "tieline.json"
    for end in range(len(SAMPLE.rstrip())):
        prefix = SAMPLE[:end]
        with pytest.raises(JsonFileError) as raised:
            load_json(write(path, prefix))
        message = raised.value.problem.message
        if not prefix.strip():
            assert message == "file is empty; expected a JSON object"
        elif prefix.rstrip()[-1] in '{[,:"}]':
            assert "file ends in the middle of the JSON (truncated?)" in message, prefix


# -------------------------------------------------------------------------------------------
# Errors
# -------------------------------------------------------------------------------------------


def load_problem(path: Path, content: str | bytes, name: str | None = None) -> SettingsProblem:
    with pytest.raises(JsonFileError) as raised:
        load_json(write(path, content), name)
    error = raised.value
    assert isinstance(error, TielineError)
    assert str(error) == str(error.problem)
    return error.problem


def test_bad_json(tmp_path: Path) -> None:
    problem = load_problem(
        tmp_path / "tieline.json", '{\n  "node": {"name": "a"}\n  "routers": {}\n}\n'
    )
    assert (problem.file, problem.line, problem.column, problem.path) == ("tieline.json", 3, 3, "$")
    assert problem.message == (
        "invalid JSON: expecting ',' or '}' after an object member, found '\"'"
    )


@pytest.mark.parametrize(
    ("content", "line", "column", "path", "message"),
    [
        ('{"a": [1, 2,]}', 1, 12, "$.a", "a ',' before ']' (remove the last ',')"),
        ('{"a": 1,\n}', 1, 8, "$", "a ',' before '}'"),
        ("{'a': 1}", 1, 2, "$", "found a single quote (JSON strings and keys use double quotes)"),
        ('{routers: 1}', 1, 2, "$", "expecting a key in double quotes, found 'routers'"),
        ('{"a": True}', 1, 7, "$.a", "found 'True' (JSON writes true)"),
        ('{"a" 1}', 1, 6, "$", "expecting ':' after the key 'a'"),
        ('{"a": [1 2]}', 1, 10, "$.a", "expecting ',' or ']' after an array item"),
        ('{"a": 1 // note\n}', 1, 9, "$", "found a comment (JSON has no comments)"),
        ('{"a": 1}}', 1, 9, "$", "unexpected text after the end of the JSON value"),
        ('{"a": "x\ny"}', 1, 9, "$.a", "control character U+000A inside a string"),
        ('{"a": "C:\\dir"}', 1, 10, "$.a", "invalid escape in a string"),
        ('{"a": [-]}', 1, 8, "$.a[0]", "expecting a value, found '-'"),
    ],
)
def test_syntax_errors(
    tmp_path: Path, content: str, line: int, column: int, path: str, message: str
) -> None:
    problem = load_problem(tmp_path / "x.json", content)
    assert (problem.line, problem.column, problem.path) == (line, column, path)
    assert message in problem.message


def test_truncated(tmp_path: Path) -> None:
    cut = SAMPLE.index('"Caméra 2"')  # the file ends after '"Cam 1",\n        '
    problem = load_problem(tmp_path / "tieline.json", SAMPLE[:cut])
    assert (problem.line, problem.column) == (8, 9)
    assert problem.path == '$.routers["studio-a"].sources'
    assert problem.message == (
        "file ends in the middle of the JSON (truncated?): the array that starts at line 6 "
        "column 18 is not closed"
    )


def test_truncated_inside_a_string(tmp_path: Path) -> None:
    problem = load_problem(tmp_path / "tieline.json", '{\n  "name": "stud')
    assert (problem.line, problem.column, problem.path) == (2, 16, "$.name")
    assert "file ends in the middle of the JSON (truncated?)" in problem.message
    assert "the string that starts at line 2 column 11" in problem.message


@pytest.mark.parametrize("content", [b"", b"   \n\t\n"])
def test_empty(tmp_path: Path, content: bytes) -> None:
    problem = load_problem(tmp_path / "users.json", content)
    assert problem.file == "users.json"
    assert problem.path == "$"
    assert problem.message == "file is empty; expected a JSON object"
    assert (problem.line, problem.column) == ((1, 1) if not content else (3, 1))


def test_invalid_utf8(tmp_path: Path) -> None:
    # "Caméra" in Latin-1: é is the single byte 0xE9, at character column 16 of line 2.
    problem = load_problem(tmp_path / "labels.json", b'{\n  "label": "Cam\xe9ra"\n}\n')
    assert (problem.file, problem.line, problem.column, problem.path) == ("labels.json", 2, 16, "$")
    assert problem.message == (
        "file is not valid UTF-8 (byte 0xe9 cannot be decoded here); save the file as UTF-8"
    )


def test_invalid_utf8_after_multibyte_characters_counts_characters(tmp_path: Path) -> None:
    problem = load_problem(tmp_path / "x.json", '["ÜÜ'.encode() + b"\xff" + b'"]')
    assert (problem.line, problem.column) == (1, 5)


def test_utf16(tmp_path: Path) -> None:
    problem = load_problem(tmp_path / "x.json", "\ufeff{}".encode("utf-16-le"))
    assert problem.message == "file is UTF-16; save it as UTF-8"


def test_duplicate_key(tmp_path: Path) -> None:
    problem = load_problem(
        tmp_path / "tieline.json", '{\n  "routers": {},\n  "node": {},\n  "routers": []\n}\n'
    )
    assert (problem.line, problem.column, problem.path) == (4, 3, "$.routers")
    assert problem.message.startswith("duplicate key 'routers' (first at line 2 column 3)")


@pytest.mark.parametrize("text, where", [
    ('{\n  "labels": {"1": "CAM \\ud800"}\n}', (2, 19, '$.labels["1"]')),
    ('{"a": ["ok", "\\udfff x"]}', (1, 14, "$.a[1]")),
    ('{"\\ud83d": 1}', (1, 2, "$")),
])
def test_a_lone_surrogate_escape_is_an_error(tmp_path: Path, text: str, where: tuple) -> None:
    """json.loads reads "\\ud800" as a string no file can be written back with: every later
    write of the file would fail (a label change, settings replication)."""
    problem = load_problem(tmp_path / "labels.json", text)
    assert (problem.line, problem.column, problem.path) == where
    assert "half of a UTF-16 pair" in problem.message


def test_a_surrogate_pair_escape_is_one_character(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.json", '{"1": "CAM \\ud83c\\udfa5"}')
    assert load_json(path).data == {"1": "CAM \U0001f3a5"}


def test_duplicate_key_in_nested_object(tmp_path: Path) -> None:
    problem = load_problem(tmp_path / "x.json", '[{"a": 1}, {"b": 1, "b": 2}]')
    assert (problem.line, problem.column, problem.path) == (1, 21, "$[1].b")
    assert "duplicate key 'b'" in problem.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(JsonFileError) as raised:
        load_json(tmp_path / "salvos.json")
    assert raised.value.problem == SettingsProblem("salvos.json", 0, 0, "$", "file not found")
    assert str(raised.value) == "salvos.json: $: file not found"


def test_name_is_used_in_problems(tmp_path: Path) -> None:
    with pytest.raises(JsonFileError) as raised:
        load_json(tmp_path / "salvos.json", "site/salvos.json")
    assert raised.value.problem.file == "site/salvos.json"


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "tieline.json").mkdir()
    with pytest.raises(JsonFileError) as raised:
        load_json(tmp_path / "tieline.json")
    assert raised.value.problem.line == 0
    assert raised.value.problem.message.startswith("cannot read the file: ")


@pytest.mark.parametrize(
    ("content", "column", "path", "word"),
    [
        ('{"hold_down_s": NaN}', 17, "$.hold_down_s", "NaN"),
        ('{"a": [1, Infinity]}', 11, "$.a[1]", "Infinity"),
        ('{"a": -Infinity}', 7, "$.a", "-Infinity"),
    ],
)
def test_nan_and_infinity_are_not_json(
    tmp_path: Path, content: str, column: int, path: str, word: str
) -> None:
    problem = load_problem(tmp_path / "tieline.json", content)
    assert (problem.file, problem.line, problem.column, problem.path) == (
        "tieline.json", 1, column, path)
    assert problem.message == (
        f"invalid JSON: {word} is not a JSON number (JSON has no NaN or infinity); "
        "write a number")


@pytest.mark.parametrize("number", ["1e400", "-1.5e309", "1" + "0" * 400 + ".0"])
def test_a_number_too_large_for_a_float_is_an_error(tmp_path: Path, number: str) -> None:
    problem = load_problem(tmp_path / "x.json", f'{{\n  "switch_delay_ms": {number}\n}}')
    assert (problem.line, problem.column, problem.path) == (2, 22, "$.switch_delay_ms")
    assert problem.message == (
        f"number {number[:24]}{'…' if len(number) > 24 else ''} is too large (it would be "
        "infinite); write a smaller number")


def test_large_integers_are_still_exact(tmp_path: Path) -> None:
    assert load_json(write(tmp_path / "x.json", '{"a": 1' + "0" * 400 + "}")).data == {
        "a": 10 ** 400}


def test_nesting_limit(tmp_path: Path) -> None:
    assert load_json(write(tmp_path / "ok.json", "[" * MAX_DEPTH + "]" * MAX_DEPTH)).data
    problem = load_problem(tmp_path / "deep.json", "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert (problem.line, problem.column) == (1, MAX_DEPTH + 1)
    assert f"nested more than {MAX_DEPTH} levels deep" in problem.message


# -------------------------------------------------------------------------------------------
# Atomic writes
# -------------------------------------------------------------------------------------------


def serialised(data: object) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def test_writes_indented_utf8_with_final_newline(tmp_path: Path) -> None:
    target = tmp_path / "labels.json"
    data = {"routers": {"studio-a": {"sources": {"1": "Caméra 1"}}}}
    write_json_atomic(target, data)
    assert target.read_bytes() == serialised(data)
    assert "Caméra 1" in target.read_text(encoding="utf-8")
    assert load_json(target).data == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json"]  # no .prev, no temp


def test_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    umask = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "new.json", {})
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640


def test_validate_refusing_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "salvos.json"
    write_json_atomic(target, {"salvos": [1]})
    write_json_atomic(target, {"salvos": [2]})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    seen = []

    def refuse(data: object) -> None:
        seen.append(data)
        raise ValueError("salvos must not be empty")

    with pytest.raises(ValueError, match="salvos must not be empty"):
        write_json_atomic(target, {"salvos": []}, validate=refuse)
    assert seen == [{"salvos": []}]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_validate_accepting(tmp_path: Path) -> None:
    seen = []
    write_json_atomic(tmp_path / "a.json", [1], validate=seen.append)
    assert seen == [[1]]
    assert load_json(tmp_path / "a.json").data == [1]


def test_previous_version_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "tieline.json"
    prev = tmp_path / "tieline.json.prev"
    write_json_atomic(target, {"version": 1})
    assert not prev.exists()
    write_json_atomic(target, {"version": 2})
    assert prev.read_bytes() == serialised({"version": 1})
    write_json_atomic(target, {"version": 3})
    assert prev.read_bytes() == serialised({"version": 2})
    assert target.read_bytes() == serialised({"version": 3})
    write_json_atomic(target, {"version": 4}, keep_previous=False)
    assert prev.read_bytes() == serialised({"version": 2})
    assert temp_files(tmp_path) == []


def test_mode_is_preserved(tmp_path: Path) -> None:
    target = tmp_path / "users.json"
    write_json_atomic(target, {"users": []})
    target.chmod(0o600)
    write_json_atomic(target, {"users": [{"name": "ops"}]})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "users.json.prev").stat().st_mode) == 0o600
    target.chmod(0o640)
    write_json_atomic(target, {"users": []})
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_unserialisable_data_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "tieline.json"
    write_json_atomic(target, {"ok": True})
    before = target.read_bytes()
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    with pytest.raises(UnicodeEncodeError):
        write_json_atomic(target, {"bad": "\ud800"})  # a lone surrogate cannot be UTF-8
    for number in (float("nan"), float("inf"), float("-inf")):  # load_json refuses them
        with pytest.raises(ValueError):
            write_json_atomic(target, {"hold_down_s": number})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tieline.json"]


def test_failed_rename_removes_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "tieline.json"
    target.mkdir()  # os.replace(file, directory) fails
    (target / "keep").write_text("x")
    with pytest.raises(OSError):
        write_json_atomic(target, {"a": 1})
    assert temp_files(tmp_path) == []
    assert (target / "keep").read_text() == "x"


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_json_atomic(tmp_path / "nowhere" / "tieline.json", {})
    assert list(tmp_path.iterdir()) == []


def test_leftover_temp_files_are_not_read(tmp_path: Path) -> None:
    target = tmp_path / "tieline.json"
    write_json_atomic(target, {"good": True})
    write(tmp_path / ".tieline.json.0123456789ab.tmp", '{"good": fal')  # as a crash leaves it
    assert load_json(target).data == {"good": True}
    write_json_atomic(target, {"good": "still"})
    assert load_json(target).data == {"good": "still"}


def test_bytes_are_written_as_they_are(tmp_path: Path) -> None:
    target = tmp_path / "cluster.key.pub"
    write_bytes_atomic(target, b"ssh-ed25519 AAAA tieline cluster key\n")
    write_bytes_atomic(target, b"\x00\xff no newline")
    assert target.read_bytes() == b"\x00\xff no newline"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.key.pub"]  # no .prev


def test_bytes_with_a_mode_get_exactly_it(tmp_path: Path) -> None:
    """``mode`` wins over the umask and over the replaced file's mode (a private key)."""
    target = tmp_path / "cluster.key"
    umask = os.umask(0o077)
    try:
        write_bytes_atomic(target, b"public", mode=0o644)
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        write_bytes_atomic(target, b"private", mode=0o600, keep_previous=True)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert (tmp_path / "cluster.key.prev").read_bytes() == b"public"


def test_bytes_without_a_mode_keep_the_old_one_or_take_new_mode(tmp_path: Path) -> None:
    target = tmp_path / "users.json"
    write_bytes_atomic(target, b"1", new_mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.chmod(0o640)
    write_bytes_atomic(target, b"2", new_mode=0o600)  # only for a file that is not there
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    umask = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "plain", b"3")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644


def test_a_private_file_is_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the temporary file's creation and its chmod, only its owner may read it."""
    seen = []
    fchmod = os.fchmod

    def spy(fd: int, mode: int) -> None:
        seen.append((stat.S_IMODE(os.fstat(fd).st_mode), mode))
        fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", spy)
    umask = os.umask(0)
    try:
        write_bytes_atomic(tmp_path / "cluster.key", b"secret", mode=0o600)
        write_bytes_atomic(tmp_path / "cluster.key.pub", b"public", mode=0o644)
    finally:
        os.umask(umask)
    assert seen == [(0o600, 0o600), (0o600, 0o644)]


def test_bytes_keep_previous_only_when_there_was_a_file(tmp_path: Path) -> None:
    target = tmp_path / "state"
    write_bytes_atomic(target, b"one", keep_previous=True)
    assert not (tmp_path / "state.prev").exists()
    write_bytes_atomic(target, b"two", keep_previous=True)
    write_bytes_atomic(target, b"three")
    assert (tmp_path / "state.prev").read_bytes() == b"one"
    assert target.read_bytes() == b"three"
    assert temp_files(tmp_path) == []


def test_bytes_that_cannot_be_written_change_nothing(tmp_path: Path) -> None:
    target = tmp_path / "tieline.service"
    target.mkdir()  # os.replace(file, directory) fails
    with pytest.raises(OSError):
        write_bytes_atomic(target, b"[Unit]\n", mode=0o644)
    assert temp_files(tmp_path) == []
    assert target.is_dir()
    with pytest.raises(FileNotFoundError):
        write_bytes_atomic(tmp_path / "nowhere" / "cluster.key", b"x", mode=0o600)


# -------------------------------------------------------------------------------------------
# Crash safety with real processes
# -------------------------------------------------------------------------------------------

CRASH = textwrap.dedent("""\
    import json, os, sys
    from pathlib import Path
    from tieline.settings.jsonfile import write_json_atomic

    function, nth, target, content, keep_previous = sys.argv[1:]
    real = getattr(os, function)
    calls = 0

    def power_loss(*args, **kwargs):
        global calls
        calls += 1
        if calls == int(nth):
            os._exit(9)  # no cleanup, no finally: like pulling the plug
        return real(*args, **kwargs)

    setattr(os, function, power_loss)
    write_json_atomic(Path(target), json.loads(content), keep_previous=keep_previous == "1")
    sys.exit("write_json_atomic returned without reaching the fault")
""")


@pytest.mark.parametrize(
    ("function", "nth", "keep_previous", "survivor"),
    [
        ("fsync", 1, True, "old"),  # new data written, not yet durable
        ("replace", 1, True, "old"),  # before <name>.prev is replaced
        ("replace", 2, True, "old"),  # .prev replaced; between the write and the rename
        ("replace", 1, False, "old"),  # between the write and the rename
        ("fsync", 2, True, "new"),  # renamed, directory not yet synced
    ],
)
def test_crash_at_any_step_leaves_a_complete_file(
    tmp_path: Path, function: str, nth: int, keep_previous: bool, survivor: str
) -> None:
    target = tmp_path / "tieline.json"
    old = {"routers": {"studio-a": {"driver": "videohub", "labels": ["Caméra"] * 50}}}
    new = {"routers": {}}
    write_json_atomic(target, {"routers": "older"})
    write_json_atomic(target, old)
    old_bytes = target.read_bytes()
    result = subprocess.run(
        [sys.executable, "-c", CRASH, function, str(nth), str(target), json.dumps(new),
         "1" if keep_previous else "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 9, result.stderr
    if survivor == "old":
        assert target.read_bytes() == old_bytes
        assert load_json(target).data == old
        assert temp_files(tmp_path), "the crash should have left its temp file behind"
    else:
        assert target.read_bytes() == serialised(new)
        assert temp_files(tmp_path) == []
    prev = (tmp_path / "tieline.json.prev").read_bytes()
    assert prev in (serialised({"routers": "older"}), old_bytes)
    # The leftovers do not get in the way of the next write.
    write_json_atomic(target, {"after": "crash"})
    assert load_json(target).data == {"after": "crash"}


def big_document(version: int) -> dict[str, object]:
    """About 2 MB of JSON, a little of it non-ASCII."""
    letter = "ab"[version]
    return {
        "version": version,
        "labels": [f"Caméra {version}:{i:05d}:" + letter * 1000 for i in range(2000)],
    }


def test_sigkill_during_writes_never_leaves_a_torn_file(tmp_path: Path) -> None:
    documents = [big_document(0), big_document(1)]
    contents = [serialised(d) for d in documents]
    assert min(len(c) for c in contents) > 2_000_000
    sources = [write(tmp_path / f"doc{i}.json", c) for i, c in enumerate(contents)]
    folder = tmp_path / "settings"
    folder.mkdir()
    target = folder / "tieline.json"
    prev = folder / "tieline.json.prev"
    started = time.monotonic()
    write_json_atomic(target, documents[1])
    write_json_atomic(target, documents[0])
    cycle = (time.monotonic() - started) / 2
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    seen = [0, 0]
    # Each writer starts with document 1 while the file holds document 0, so a kill shows
    # document 1 only if a write went through before it.
    helper = subprocess.Popen(
        [sys.executable, str(WRITER), str(target), str(sources[1]), str(sources[0])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert helper.stdin and helper.stdout
    try:
        for kill in range(120):
            if kill >= 30 and all(seen):
                break
            helper.stdin.write("start\n")
            helper.stdin.flush()
            pid = int(helper.stdout.readline().removeprefix("pid "))
            # on a loaded machine writes take longer than the cycle measured above: after 30
            # kills that never let a write through, the waits grow
            time.sleep(rng.uniform(0, 4 * cycle * (1 + max(0, kill - 29) // 10)))
            os.kill(pid, signal.SIGKILL)
            assert helper.stdout.readline().split() == ["died", str(signal.SIGKILL)]
            where = f"kill {kill}, seed {seed}"
            content = target.read_bytes()
            assert content in contents, where
            seen[contents.index(content)] += 1
            assert load_json(target).data in documents, where
            if prev.exists():
                assert prev.read_bytes() in contents, where
    finally:
        helper.stdin.close()
        helper.wait(timeout=30)
    assert helper.returncode == 0
    # Not a vacuous test: some kills came after a write went through.
    assert all(seen), f"contents seen {seen}, seed {seed}, cycle {cycle:.3f}s"
