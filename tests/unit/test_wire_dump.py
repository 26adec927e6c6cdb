"""tieline.devices.wire_dump: how the debug log shows bytes on a device line."""

from __future__ import annotations

from tieline.devices import wire_dump


def test_text_protocols_read_as_text_beside_the_hex():
    assert wire_dump(b"DUMP\r\n") == "6 bytes: 44 55 4d 50 0d 0a |DUMP..|"


def test_binary_bytes_show_as_dots_and_long_chunks_say_what_is_left_out():
    data = bytes([0x10, 0x02, 0x41, 0xff]) * 3
    assert wire_dump(data, limit=4) == "12 bytes: 10 02 41 ff |..A.| … (+8 bytes)"
    assert wire_dump(b"") == "0 bytes:  ||"
