"""The holder record, pure: what is written reads back, and bad bytes give RecordError
(never another exception)."""

from __future__ import annotations

import json

import pytest

from {{cookiecutter.plugin_name}}.record import MAX_RECORD, Holder, RecordError, decode


def test_a_record_reads_back():
    for holder in (Holder("tl-a", "main", 7, "ws://10.0.0.7:8181", "2049:1835017"),
                   Holder("tl-b", "backup", 0, None)):
        assert decode(json.dumps(holder.to_json()).encode()) == holder


@pytest.mark.parametrize("data,words", [
    (b"", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"role": "main", "epoch": 1}', "'node'"),
    (b'{"node": "a", "role": "boss", "epoch": 1}', "'role'"),
    (b'{"node": "a", "role": "main", "epoch": -1}', "'epoch'"),
    (b'{"node": "a", "role": "main", "epoch": true}', "'epoch'"),
    (b'{"node": "a", "role": "main", "epoch": 1, "url": 5}', "'url'"),
    (b'{"node": "a", "role": "main", "epoch": 1, "file": 5}', "'file'"),
    (b"[" * 100_000, "more than a record"),
    (b"[" * (MAX_RECORD - 1), "not JSON"),
])
def test_bad_bytes_are_refused_saying_why(data, words):
    with pytest.raises(RecordError, match=words):
        decode(data)
