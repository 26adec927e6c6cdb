"""tieline.kit.framing.LineFramer: lines out of any chunking, bounded, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tieline import RemoteProtocolError
from tieline.kit.framing import LineFramer


def drain(framer: LineFramer) -> list[bytes | str]:
    """Every line available now; an error appears as the string 'error'."""
    out: list[bytes | str] = []
    while True:
        try:
            line = framer.next_line()
        except RemoteProtocolError:
            out.append("error")
            continue
        if line is None:
            return out
        out.append(line)


def feed(data: bytes, chunks: list[int], max_line: int = 16, **options: bool) -> list:
    """Feed ``data`` in pieces of the given sizes (the rest at the end); all lines."""
    framer = LineFramer(max_line, **options)
    out: list[bytes | str] = []
    position = 0
    for size in chunks:
        framer.receive_data(data[position:position + size])
        position += size
        out += drain(framer)
    framer.receive_data(data[position:])
    out += drain(framer)
    assert framer.buffered <= max_line
    return out


def reference(data: bytes, max_line: int = 16) -> list[bytes | str]:
    """What the framer must give, from the whole stream at once (complete lines only)."""
    out: list[bytes | str] = []
    *lines, rest = data.split(b"\n")
    for line in lines:
        if len(line) + 1 > max_line:
            out.append("error")
            continue
        line = line.removesuffix(b"\r")
        if line.strip(b" "):
            out.append(line)
    if len(rest) >= max_line:  # already too long without its LF
        out.append("error")
    return out


def test_lines_whole_and_byte_by_byte():
    data = b"XPT 1 2 3\r\nPING\n\n   \nEND\npartial"
    expected = [b"XPT 1 2 3", b"PING", b"END"]
    assert feed(data, []) == expected
    assert feed(data, [1] * len(data)) == expected


def test_an_over_long_line_is_refused_once_and_skipped():
    framer = LineFramer(8)
    framer.receive_data(b"0123456789")  # no LF yet, already too long
    with pytest.raises(RemoteProtocolError, match="longer than 8 bytes") as refused:
        framer.next_line()
    assert refused.value.data == b"0123456789"  # the head of the line, for the log
    framer.receive_data(b"abcdef" * 100)  # the rest of it: skipped, not buffered
    assert framer.next_line() is None and framer.buffered == 0
    framer.receive_data(b"xyz\nOK\n")
    assert framer.next_line() == b"OK"  # the long line ended at its LF; nothing else lost


def test_an_over_long_line_arriving_whole_is_refused_and_consumed():
    framer = LineFramer(8)
    framer.receive_data(b"0123456789\nOK\n")
    with pytest.raises(RemoteProtocolError):
        framer.next_line()
    assert framer.next_line() == b"OK"


def test_options():
    assert feed(b"a\r\n\n", [], strip_cr=False, skip_blank=False) == [b"a\r", b""]
    with pytest.raises(ValueError):
        LineFramer(1)


def test_many_lines_in_one_chunk():
    data = b"".join(b"LINE %d\n" % i for i in range(10_000))
    assert feed(data, [], max_line=32) == [b"LINE %d" % i for i in range(10_000)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"A", b"B C", b" ", b"\r", b"\n", b"0123456789ABCDEF",
                                 b"\xff", b"\x00"]), max_size=40),
       st.lists(st.integers(min_value=0, max_value=20), max_size=20))
def test_any_chunking_gives_the_lines_of_the_whole_stream(pieces, chunks):
    data = b"".join(pieces)
    assert feed(data, chunks) == reference(data)
