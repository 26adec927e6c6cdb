"""The codec on its own: every trace whole and byte by byte, both roles, garbage."""

from __future__ import annotations

import pytest

from tieline import Crosspoint, RemoteProtocolError
from {{cookiecutter.plugin_name}}.codec import (
    MAX_LINE,
    Codec,
    Dump,
    End,
    Error,
    Ping,
    Pong,
    Role,
    Size,
    Tally,
    Xpt,
)

#: what a device sends, and what it means
DEVICE_TRACE = (
    b"SIZE 2 4 3\r\n"
    b"TALLY 1 1 1\nTALLY 2 3 4\n\n"
    b"END\n"
    b"PONG\n"
    b"ERROR 1 9 destination 9 out of range (1-3)\n"
    b"ERROR - - unknown message 'FOO'\n"
    b"ERROR  2   1  source busy\n"  # repeated spaces between fields
)
DEVICE_MESSAGES = [
    Size(2, 4, 3),
    Tally(Crosspoint(0, 0, 0)), Tally(Crosspoint(1, 2, 3)),
    End(),
    Pong(),
    Error(0, 8, "destination 9 out of range (1-3)"),
    Error(None, None, "unknown message 'FOO'"),
    Error(1, 0, "source busy"),
]
CONTROLLER_TRACE = b"DUMP\nXPT 1 2 3\nPING\n"
CONTROLLER_MESSAGES = [Dump(), Xpt(Crosspoint(0, 1, 2)), Ping()]


def parse(role: Role, data: bytes, chunk: int | None = None) -> list:
    codec = Codec(role)
    messages = []
    step = chunk or len(data)
    for i in range(0, len(data), step):
        codec.receive_data(data[i:i + step])
        messages += list(codec.events())
    return messages


@pytest.mark.parametrize("chunk", [None, 1])
def test_device_trace_whole_and_byte_by_byte(chunk):
    assert parse(Role.CONTROLLER, DEVICE_TRACE, chunk) == DEVICE_MESSAGES


@pytest.mark.parametrize("chunk", [None, 1])
def test_controller_trace_whole_and_byte_by_byte(chunk):
    assert parse(Role.DEVICE, CONTROLLER_TRACE, chunk) == CONTROLLER_MESSAGES


def test_each_role_sends_what_the_other_parses():
    device, controller = Codec(Role.DEVICE), Codec(Role.CONTROLLER)
    assert b"".join(controller.send(m) for m in CONTROLLER_MESSAGES) == CONTROLLER_TRACE
    for messages, sender, receiver in ((DEVICE_MESSAGES, device, controller),
                                       (CONTROLLER_MESSAGES, controller, device)):
        receiver.receive_data(b"".join(sender.send(m) for m in messages))
        assert list(receiver.events()) == messages


def test_a_role_sends_only_its_own_messages():
    with pytest.raises(ValueError, match="a controller does not send Tally"):
        Codec(Role.CONTROLLER).send(Tally(Crosspoint(0, 0, 0)))
    with pytest.raises(ValueError, match="out of range"):
        Codec(Role.CONTROLLER).send(Xpt(Crosspoint(0, -1, 0)))


@pytest.mark.parametrize("line, message", [
    (b"HELLO\n", "unknown message 'HELLO'"),
    (b"TALLY 1 2\n", "TALLY takes 3 field(s), got 2"),
    (b"TALLY 0 1 1\n", "level must be a number 1"),
    (b"TALLY 1 x 1\n", "destination must be a number 1"),
    (b"TALLY 1 1 99999\n", "source must be a number 1"),
    (b"END now\n", "END takes no fields"),
    (b"SIZE 1 2\n", "SIZE takes 3 field(s)"),
    (b"ERROR\n", "ERROR takes"),
    (b"XPT 1 1 1\n", "unknown message 'XPT'"),  # a device does not send it
    (b"TALLY 1 1 1\x00\n", "control character"),
    (b"\xff\xfe\n", "not ASCII"),
    (b"T" * (MAX_LINE + 10) + b"\n", f"line longer than {MAX_LINE} bytes"),
])
def test_garbage_is_a_protocol_error_and_the_codec_carries_on(line, message):
    codec = Codec(Role.CONTROLLER)
    codec.receive_data(line + b"PONG\n")
    with pytest.raises(RemoteProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        codec.next_event()
    assert list(codec.events()) == [Pong()]  # the bad line is consumed, not the next


def test_buffer_is_bounded_without_a_line_feed():
    codec = Codec(Role.DEVICE)
    codec.receive_data(b"X" * (MAX_LINE * 100))
    with pytest.raises(RemoteProtocolError, match="line longer than"):
        codec.next_event()
    codec.receive_data(b"more garbage\nPING\n")
    assert list(codec.events()) == [Ping()]


def test_random_bytes_only_ever_raise_the_protocol_error():
    import random

    rng = random.Random(7)
    alphabet = b"XPTALYDUMENDSIZERO 0123456789-\r\n\x00\xff"
    for _ in range(300):
        codec = Codec(rng.choice(list(Role)))
        codec.receive_data(bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 200))))
        for _ in range(100):
            try:
                if codec.next_event() is None:
                    break
            except RemoteProtocolError:
                pass
