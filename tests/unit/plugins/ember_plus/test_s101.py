"""S101 framing (plugins/ember_plus/s101.py) against the byte examples of the protocol notes
(../shared/protocols/ember-plus.md §2 and §9, from Lawo's documentation and checked
against emberplus-connection), and fuzzed: no input raises anything but FramingError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tieline.plugins.ember_plus.s101 import (
    CRC_GOOD, EmberMessage, FramingError, KeepAliveRequest, KeepAliveResponse, S101Decoder,
    crc_ccitt, frame, frame_message, keepalive_request, keepalive_response, s101_crc)

GET_DIRECTORY = bytes.fromhex("600B6B09A0076205A003020120")


def hexes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def decode(data: bytes, **kwargs) -> tuple[list, list[str]]:
    """Every event of ``data``, and the FramingErrors raised on the way."""
    decoder = S101Decoder(**kwargs)
    decoder.receive_data(data)
    events, errors = [], []
    while True:
        try:
            event = decoder.next_event()
        except FramingError as exc:
            errors.append(str(exc))
            continue
        if event is None:
            return events, errors
        events.append(event)


def test_the_spec_s_escaping_example():
    assert frame(hexes("FF 00 F9 01")) == hexes("FE FD DF 00 FD D9 01 95 83 FF")


def test_keepalives_are_byte_exact_and_decoded():
    assert keepalive_request() == hexes("FE 00 0E 01 01 94 E4 FF")
    assert keepalive_response() == hexes("FE 00 0E 02 01 FD DC CE FF")  # FC escaped
    events, errors = decode(keepalive_request() + keepalive_response())
    assert events == [KeepAliveRequest(), KeepAliveResponse()] and errors == []


def test_a_get_directory_is_framed_as_the_notes_show():
    framed = frame_message(GET_DIRECTORY)
    assert framed == hexes("FE 00 0E 00 01 C0 01 02 1F 02") + GET_DIRECTORY + hexes("B4 EC FF")
    assert decode(framed) == ([EmberMessage(GET_DIRECTORY, (31, 2))], [])


def test_the_crc_check_value():
    data = hexes("00 0E 01 01")
    crc = s101_crc(data)
    assert crc_ccitt(data + bytes((crc & 0xFF, crc >> 8))) == CRC_GOOD


def test_a_long_message_is_cut_into_packets_and_put_together_again():
    payload = bytes(range(256)) * 20  # 5,120 bytes, every value (many escaped)
    framed = frame_message(payload, packet_payload=1000)
    assert framed.count(b"\xfe") == 6  # first, four middles, last
    flags = [framed[i + 5] for i in range(len(framed)) if framed[i] == 0xFE]
    assert flags == [0x80, 0x00, 0x00, 0x00, 0x00, 0x40]
    assert decode(framed) == ([EmberMessage(payload, (31, 2))], [])
    # fed a byte at a time, the same
    decoder = S101Decoder()
    events = []
    for byte in framed:
        decoder.receive_data(bytes((byte,)))
        events += list(decoder.events())
    assert events == [EmberMessage(payload, (31, 2))]


def test_an_empty_message_is_one_packet_flagged_empty():
    framed = frame_message(b"")
    assert framed[5] == 0xE0  # first | last | empty
    assert decode(framed) == ([EmberMessage(b"", (31, 2))], [])


def test_variant_2_frames_are_decoded():
    body = hexes("00 0E 00 01 C0 01 02 1F 02") + GET_DIRECTORY
    v2 = hexes("F8 04") + len(body).to_bytes(4, "big") + body
    assert decode(v2 + keepalive_request()) == (
        [EmberMessage(GET_DIRECTORY, (31, 2)), KeepAliveRequest()], [])


@pytest.mark.parametrize(("damage", "why"), [
    (lambda f: f[:-3] + bytes((f[-3] ^ 1,)) + f[-2:], "bad CRC"),
    (lambda f: f[:4] + b"\xfa" + f[4:], "unescaped byte"),
    (lambda f: f[:-1] + b"\xfd\xff", "escape with no byte"),
    (lambda f: f[:6] + keepalive_request(), "interrupted by a new BOF"),
])
def test_a_damaged_frame_is_reported_and_the_next_one_read(damage, why):
    good = frame_message(GET_DIRECTORY)
    events, errors = decode(b"\x00\x11" + damage(good) + good)
    assert len(errors) == 1 and why in errors[0], errors
    assert events[-1] == EmberMessage(GET_DIRECTORY, (31, 2))


def test_bounds_hold_against_endless_frames_and_messages():
    decoder = S101Decoder(max_frame=100)
    decoder.receive_data(b"\xfe" + b"\x01" * 500)
    with pytest.raises(FramingError, match="longer than 100 bytes"):
        decoder.next_event()
    assert len(decoder._buffer) == 0
    events, errors = decode(frame_message(bytes(3000), packet_payload=500), max_message=2000)
    assert events == [] and any("message longer than 2000" in e for e in errors)


def test_packets_out_of_order_are_reported_and_a_new_message_goes_on():
    first, *_ = _packets(frame_message(bytes(range(200)), packet_payload=100))
    middle_only = _packets(frame_message(bytes(300), packet_payload=100))[1]
    events, errors = decode(middle_only + first + frame_message(b"\x01\x02"))
    assert [type(e) for e in events] == [EmberMessage]
    assert events[0].payload == b"\x01\x02"
    assert "first packet was not seen" in errors[0]
    assert "began before the last one ended" in errors[1]


def _packets(framed: bytes) -> list[bytes]:
    return [b"\xfe" + part for part in framed.split(b"\xfe") if part]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_any_bytes_give_events_or_framing_errors_only(data, chunk):
    decoder = S101Decoder(max_frame=512, max_message=4096)
    for i in range(0, len(data), chunk):
        decoder.receive_data(data[i:i + chunk])
        while True:
            try:
                if decoder.next_event() is None:
                    break
            except FramingError:
                continue
    assert len(decoder._buffer) <= 2 * 512 + 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=1500))
def test_any_message_survives_framing(payload, packet):
    assert decode(frame_message(payload, packet_payload=packet)) == (
        [EmberMessage(payload, (31, 2))], [])
