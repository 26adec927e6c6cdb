"""The simulator codec: both roles against each other, fixture traces, and fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tieline.errors import RemoteProtocolError
from tieline.model import Crosspoint, PortKind, ProtectKind
from tieline.plugins.simulator.codec import (
    MAX_LINE,
    Codec,
    Dump,
    End,
    ErrorReply,
    Hello,
    Info,
    Label,
    Message,
    Ping,
    Pong,
    Release,
    Role,
    Route,
    SetProtect,
    Tally,
    Unprotect,
)

TRACES = Path(__file__).parents[3] / "fixtures" / "simulator"
GOOD = sorted((TRACES / "good").glob("*.trace"))
BAD = sorted((TRACES / "bad").glob("*.trace"))


def reader_for(trace: Path) -> Codec:
    """A codec of the role that receives what the trace's sender wrote."""
    sender = trace.name.split("-", 1)[0]
    return Codec(Role.CONTROLLER if sender == "device" else Role.DEVICE)


def outcomes(codec: Codec, chunks: list[bytes]) -> list[Message | str]:
    """Feed ``chunks`` one by one; every message parsed, and "error" for each protocol error."""
    out: list[Message | str] = []
    for chunk in chunks:
        codec.receive_data(chunk)
        while True:
            try:
                message = codec.next_event()
            except RemoteProtocolError:
                out.append("error")
                continue
            if message is None:
                break
            assert isinstance(message, Message)
            out.append(message)
    return out


def whole_and_bytewise(trace: Path) -> tuple[list[Message | str], list[Message | str]]:
    data = trace.read_bytes()
    whole = outcomes(reader_for(trace), [data])
    bytewise = outcomes(reader_for(trace), [data[i:i + 1] for i in range(len(data))])
    return whole, bytewise


# -- every message, one role against the other ----------------------------------------------

XPS = (Crosspoint(0, 3, 1), Crosspoint(1, 3, 1), Crosspoint(15, 4095, 4095))
CONTROLLER_MESSAGES = [
    Hello(1), Dump(), Route("alice smith", XPS), Route("-", XPS[:1]), Route("%41 ü", XPS[:1]),
    SetProtect(0, 3, ProtectKind.PROTECT, "alice"), SetProtect(1, 3, ProtectKind.LOCK, "10.0.0.7"),
    Release(0, 3, "alice", False), Release(1, 3, "admin", True),
    Label(PortKind.SOURCE, 0, "Camera 1  wide "), Label(PortKind.DESTINATION, 7, ""), Ping(),
]
DEVICE_MESSAGES = [
    Hello(1), Info(16, 4096, 4096), End(), Tally(XPS), Pong(), Unprotect(0, 3),
    SetProtect(0, 3, ProtectKind.PROTECT, "alice smith"),
    Label(PortKind.DESTINATION, 2, "Kamera ü – 3"),
    ErrorReply("protected", 0, 3, "alice smith", "destination 4 is protected by alice smith"),
    ErrorReply("syntax", None, None, None, ""),
]


def roundtrip(message: Message, sender: Role) -> list[Message]:
    receiver = Codec(Role.DEVICE if sender is Role.CONTROLLER else Role.CONTROLLER)
    receiver.receive_data(Codec(sender).send(message))
    return list(receiver.events())


@pytest.mark.parametrize("message", CONTROLLER_MESSAGES, ids=repr)
def test_controller_message_reaches_device(message):
    assert roundtrip(message, Role.CONTROLLER) == [message]


@pytest.mark.parametrize("message", DEVICE_MESSAGES, ids=repr)
def test_device_message_reaches_controller(message):
    assert roundtrip(message, Role.DEVICE) == [message]


def test_wire_format_is_as_documented():
    controller, device = Codec(Role.CONTROLLER), Codec(Role.DEVICE)
    assert controller.send(Route("alice smith", XPS[:2])) == b"ROUTE alice%20smith 0 3 1 1 3 1\n"
    assert controller.send(Route("-", XPS[:1])) == b"ROUTE %2D 0 3 1\n"
    assert controller.send(Release(1, 3, "admin", True)) == b"RELEASE 1 3 admin 1\n"
    assert controller.send(Label(PortKind.SOURCE, 0, "Cam 1")) == b"LABEL S 0 Cam 1\n"
    assert device.send(ErrorReply("range", None, 5, None, "x")) == b"ERR range - 5 - x\n"
    assert device.send(Tally(())) == b""


def test_long_route_is_split_into_lines_that_fit():
    salvo = tuple(Crosspoint(level, dest, (dest * 7) % 1000)
                  for level in range(2) for dest in range(1000))
    data = Codec(Role.CONTROLLER).send(Route("operator with a long name", salvo))
    lines = data.split(b"\n")[:-1]
    assert 1 < len(lines) < 20
    assert all(len(line) + 1 <= MAX_LINE for line in lines)
    device = Codec(Role.DEVICE)
    device.receive_data(data)
    routes = list(device.events())
    assert all(r.owner == "operator with a long name" for r in routes)
    assert tuple(xp for r in routes for xp in r.crosspoints) == salvo


def test_each_role_refuses_to_send_the_others_messages():
    for message in (Info(1, 1, 1), End(), Tally(XPS), Pong(), Unprotect(0, 0),
                    ErrorReply("range", None, None, None, "")):
        with pytest.raises(ValueError, match="controller does not send"):
            Codec(Role.CONTROLLER).send(message)
    for message in (Dump(), Route("a", XPS), Release(0, 0, "a"), Ping()):
        with pytest.raises(ValueError, match="device does not send"):
            Codec(Role.DEVICE).send(message)


@pytest.mark.parametrize("message", [
    Label(PortKind.SOURCE, 0, "two\nlines"), Label(PortKind.SOURCE, 0, "nul\x00"),
    Label(PortKind.SOURCE, 0, "x" * MAX_LINE), Route("", XPS), Release(-1, 0, "a"),
    SetProtect(0, 10**9, ProtectKind.LOCK, "a"), Hello(True),
])
def test_unframeable_message_is_a_value_error(message):
    with pytest.raises(ValueError):
        Codec(Role.CONTROLLER).send(message)


# -- fixture traces -------------------------------------------------------------------------


def test_traces_are_there():
    assert len(GOOD) >= 4 and len(BAD) >= 10


@pytest.mark.parametrize("trace", GOOD, ids=lambda p: p.name)
def test_good_trace_whole_and_byte_by_byte(trace):
    whole, bytewise = whole_and_bytewise(trace)
    assert "error" not in whole
    assert whole == bytewise
    # what is parsed encodes again to something that parses the same
    sender = Role.DEVICE if trace.name.startswith("device") else Role.CONTROLLER
    again = Codec(sender)
    reparsed = outcomes(reader_for(trace), [b"".join(again.send(m) for m in whole)])
    assert reparsed == whole


@pytest.mark.parametrize("trace", BAD, ids=lambda p: p.name)
def test_bad_trace_raises_remote_protocol_error_and_recovers(trace):
    whole, bytewise = whole_and_bytewise(trace)
    assert whole == bytewise
    assert "error" in whole
    assert isinstance(whole[-1], Message), "the line after the bad ones must still parse"


def test_device_dump_trace_means_what_it_says():
    codec = reader_for(TRACES / "good" / "device-dump.trace")
    codec.receive_data((TRACES / "good" / "device-dump.trace").read_bytes())
    events = list(codec.events())
    assert events[:2] == [Hello(1), Info(2, 4, 3)]
    labels = [e for e in events if isinstance(e, Label)]
    assert labels[1] == Label(PortKind.SOURCE, 1, "Camera 2  wide ")
    assert labels[3] == Label(PortKind.SOURCE, 3, "")
    assert labels[5] == Label(PortKind.DESTINATION, 1, "Monitor\twall")
    assert Tally((Crosspoint(0, 0, 0), Crosspoint(0, 1, 1), Crosspoint(0, 2, 2))) in events
    assert SetProtect(0, 1, ProtectKind.PROTECT, "alice smith") in events
    assert SetProtect(1, 2, ProtectKind.LOCK, "-") in events
    assert events[-1] == End()


def test_overlong_line_is_reported_once_and_skipped():
    codec = Codec(Role.DEVICE)
    codec.receive_data(b"LABEL S 0 " + b"y" * 3 * MAX_LINE)
    with pytest.raises(RemoteProtocolError, match="longer than 4096"):
        codec.next_event()
    codec.receive_data(b"y" * MAX_LINE)
    assert codec.next_event() is None
    codec.receive_data(b"yy\nPING\n")
    assert list(codec.events()) == [Ping()]


def test_line_of_exactly_max_length_is_accepted():
    codec = Codec(Role.DEVICE)
    line = b"LABEL S 0 " + b"z" * (MAX_LINE - 11) + b"\n"
    assert len(line) == MAX_LINE
    for i in range(len(line)):
        codec.receive_data(line[i:i + 1])
    assert list(codec.events()) == [Label(PortKind.SOURCE, 0, "z" * (MAX_LINE - 11))]


# -- fuzzing: only messages or RemoteProtocolError ever come out ----------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_fuzzed(role: Role, data: bytes, cuts: list[int]) -> None:
    codec = Codec(role)
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    outcomes(codec, [data[a:b] for a, b in zip(bounds, bounds[1:])])


@FUZZ
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 10_000), max_size=8),
       role=st.sampled_from(Role))
def test_fuzz_random_bytes(data, cuts, role):
    feed_fuzzed(role, data, cuts)


@FUZZ
@given(
    data=st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ") + b"\n"),
    keyword=st.sampled_from([b"HELLO", b"DUMP", b"INFO", b"END", b"ROUTE", b"XP", b"PROTECT",
                             b"UNPROTECT", b"RELEASE", b"LABEL", b"PING", b"PONG", b"ERR"]),
    role=st.sampled_from(Role),
)
def test_fuzz_known_keyword_with_random_fields(data, keyword, role):
    feed_fuzzed(role, keyword + b" " + data, [])


@st.composite
def mutated_trace(draw):
    data = bytearray(draw(st.sampled_from(GOOD + BAD)).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


@FUZZ
@given(data=mutated_trace(), cuts=st.lists(st.integers(0, 10_000), max_size=8),
       role=st.sampled_from(Role))
def test_fuzz_mutated_traces(data, cuts, role):
    feed_fuzzed(role, data, cuts)


# -- property: what one side sends, the other parses back unchanged -------------------------

numbers = st.integers(0, 10**9 - 1)
owners = st.text(min_size=1, max_size=40)
label_texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x7f"
                  + "".join(map(chr, range(0, 9))) + "".join(map(chr, range(11, 32)))),
    max_size=200,
)
crosspoints = st.builds(Crosspoint, numbers, numbers, numbers)
kinds = st.sampled_from(PortKind)
controller_messages = st.one_of(
    st.builds(Hello, numbers), st.just(Dump()), st.just(Ping()),
    st.builds(Route, owners, st.lists(crosspoints, min_size=1, max_size=5).map(tuple)),
    st.builds(SetProtect, numbers, numbers, st.sampled_from(ProtectKind), owners),
    st.builds(Release, numbers, numbers, owners, st.booleans()),
    st.builds(Label, kinds, numbers, label_texts),
)
device_messages = st.one_of(
    st.builds(Hello, numbers), st.builds(Info, numbers, numbers, numbers), st.just(End()),
    st.just(Pong()), st.builds(Tally, st.lists(crosspoints, min_size=1, max_size=5).map(tuple)),
    st.builds(Unprotect, numbers, numbers),
    st.builds(SetProtect, numbers, numbers, st.sampled_from(ProtectKind), owners),
    st.builds(Label, kinds, numbers, label_texts),
    st.builds(ErrorReply, st.sampled_from(["protected", "locked", "range", "syntax"]),
              st.none() | numbers, st.none() | numbers, st.none() | owners, label_texts),
)


@FUZZ
@given(message=controller_messages)
def test_property_controller_messages_roundtrip(message):
    assert roundtrip(message, Role.CONTROLLER) == [message]


@FUZZ
@given(message=device_messages)
def test_property_device_messages_roundtrip(message):
    assert roundtrip(message, Role.DEVICE) == [message]
