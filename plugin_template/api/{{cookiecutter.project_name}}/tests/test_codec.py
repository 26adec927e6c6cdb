"""The codec on its own: every trace whole and byte by byte, both roles, garbage."""

from __future__ import annotations

import random
import re

import pytest

from tieline import Crosspoint, RemoteProtocolError
from {{cookiecutter.plugin_name}}.codec import (
    MAX_LINE,
    Codec,
    End,
    Error,
    Level,
    LevelsQuery,
    Ok,
    Ping,
    Pong,
    Role,
    Route,
    Tally,
    TallyQuery,
)

#: what a client (a control system) sends, and what it means
CLIENT_TRACE = (
    b"PING\r\n"
    b"ROUTE studio 3 5\n\n"
    b"route  studio-b.2 1 16 1,2\n"
    b"TALLY? studio\n"
    b"LEVELS? studio\n"
)
CLIENT_MESSAGES = [
    Ping(),
    Route("studio", 2, 4),
    Route("studio-b.2", 0, 15, (0, 1)),
    TallyQuery("studio"),
    LevelsQuery("studio"),
]
#: what the server sends, and what it means
SERVER_TRACE = (
    b"PONG\n"
    b"TALLY studio 1 3 5\r\n"
    b"OK ROUTE studio 3 5\n"
    b"OK ROUTE studio 1 16 1,2\n"
    b"ERROR out_of_range router 'studio': destination 9 out of range (1-8)\n"
    b"ERROR forbidden\n"
    b"LEVEL studio 2 audio 1\n"
    b"END\n"
)
SERVER_MESSAGES = [
    Pong(),
    Tally("studio", Crosspoint(0, 2, 4)),
    Ok(Route("studio", 2, 4)),
    Ok(Route("studio", 0, 15, (0, 1))),
    Error("out_of_range", "router 'studio': destination 9 out of range (1-8)"),
    Error("forbidden", ""),
    Level("studio", 1, "audio 1"),
    End(),
]


def feed(codec: Codec, data: bytes, *, bytewise: bool) -> list:
    out = []
    for chunk in ([data[i:i + 1] for i in range(len(data))] if bytewise else [data]):
        codec.receive_data(chunk)
        out.extend(codec.events())
    return out


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "byte-by-byte"])
def test_the_server_parses_what_clients_send(bytewise):
    assert feed(Codec(Role.SERVER), CLIENT_TRACE, bytewise=bytewise) == CLIENT_MESSAGES


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "byte-by-byte"])
def test_a_client_parses_what_the_server_sends(bytewise):
    assert feed(Codec(Role.CLIENT), SERVER_TRACE, bytewise=bytewise) == SERVER_MESSAGES


@pytest.mark.parametrize(("sender", "messages"), [(Role.CLIENT, CLIENT_MESSAGES),
                                                  (Role.SERVER, SERVER_MESSAGES)])
def test_what_one_end_sends_the_other_reads_back(sender, messages):
    receiver = Codec(Role.SERVER if sender is Role.CLIENT else Role.CLIENT)
    receiver.receive_data(Codec(sender).send_all(messages))
    assert list(receiver.events()) == messages


def test_encoding_is_one_line_with_1_based_numbers():
    server = Codec(Role.SERVER)
    assert server.send(Tally("studio", Crosspoint(1, 0, 7))) == b"TALLY studio 2 1 8\n"
    assert server.send(Ok(Route("studio", 2, 4, (1,)))) == b"OK ROUTE studio 3 5 2\n"
    # tieline's messages are made printable ASCII; free text is cut to one line
    assert server.send(Error("out_of_range", "range (1–8)\n")) == b"ERROR out_of_range range (1-8)\n"
    assert len(server.send(Error("invalid", "x" * 5000))) == MAX_LINE


@pytest.mark.parametrize(("line", "complaint"), [
    (b"FROB studio\n", "unknown keyword 'FROB'"),
    (b"ROUTE studio 3\n", "expected ROUTE <router> <dst> <src> [<levels>], got 2 field(s)"),
    (b"ROUTE studio x 5\n", "<dst> must be a number"),
    (b"ROUTE studio 3 0\n", "<src> must be a number"),
    (b"ROUTE studio 3 5 1,,2\n", "<levels> must be a number"),
    (b"ROUTE studio 3 5 2,2\n", "<levels> names a level twice"),
    (b"ROUTE st@dio 3 5\n", "<router> must be a router id"),
    (b"TALLY?\n", "expected TALLY? <router>"),
    (b"PING now\n", "expected PING alone"),
    (b"ROUTE studio \xff 5\n", "not ASCII"),
    (b"ROUTE studio\t3 5\n", "control character"),
])
def test_garbage_names_the_field_and_the_codec_carries_on(line, complaint):
    codec = Codec(Role.SERVER)
    codec.receive_data(line + b"PING\n")
    with pytest.raises(RemoteProtocolError, match=re.escape(complaint)):
        codec.next_event()
    assert codec.next_event() == Ping()  # the bad line was consumed, nothing more


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "byte-by-byte"])
def test_an_over_long_line_is_refused_once_and_skipped_to_its_end(bytewise):
    codec = Codec(Role.SERVER)
    data = b"ROUTE " + b"9" * (3 * MAX_LINE) + b"\nPING\n"
    errors, events = 0, []
    for chunk in ([data[i:i + 1] for i in range(len(data))] if bytewise else [data]):
        codec.receive_data(chunk)
        while True:
            try:
                event = codec.next_event()
            except RemoteProtocolError as exc:
                assert f"longer than {MAX_LINE} bytes" in str(exc)
                errors += 1
                continue
            if event is None:
                break
            events.append(event)
        assert codec._lines.buffered <= MAX_LINE  # bounded, however much arrives
    assert (errors, events) == (1, [Ping()])


def test_a_role_sends_only_its_own_messages():
    with pytest.raises(ValueError, match="a client does not send Tally"):
        Codec(Role.CLIENT).send(Tally("studio", Crosspoint(0, 0, 0)))
    with pytest.raises(ValueError, match="a server does not send Route"):
        Codec(Role.SERVER).send(Route("studio", 0, 0))
    with pytest.raises(ValueError, match="out of range"):
        Codec(Role.CLIENT).send(Route("studio", -1, 0))
    with pytest.raises(ValueError, match="router id"):
        Codec(Role.CLIENT).send(TallyQuery("studio a"))


def test_random_bytes_raise_only_remote_protocol_errors():
    rng = random.Random(1)
    alphabet = b"ROUTE TALLY? PING 0123456789,\r\n\x00\xff studio"
    for role in Role:
        codec = Codec(role)
        for _ in range(2000):
            codec.receive_data(bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))))
            while True:
                try:
                    if codec.next_event() is None:
                        break
                except RemoteProtocolError:
                    pass
