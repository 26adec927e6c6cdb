"""The Videohub codec: the notes' examples byte for byte, both roles against each other,
fixture traces (whole and byte by byte), the status dump's order, and fuzzing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tieline.errors import RemoteProtocolError
from tieline.plugins.videohub.codec import (
    DUMP_ORDER,
    MAX_LINE,
    Ack,
    Codec,
    DeviceInfo,
    EndPrelude,
    KeyValues,
    LabelTable,
    Labels,
    Locks,
    LockState,
    LockTable,
    Message,
    Nak,
    Ping,
    PortValues,
    Preamble,
    Role,
    Routes,
    RoutingTable,
    StatusRequest,
    UnknownBlock,
    ValueTable,
    header_of,
    prelude,
    version_tuple,
)

TRACES = Path(__file__).parents[3] / "fixtures" / "videohub"
GOOD = sorted((TRACES / "good").glob("*.trace"))
BAD = sorted((TRACES / "bad").glob("*.trace"))
U, O, L, F = LockState.UNLOCKED, LockState.OWNED, LockState.LOCKED, LockState.FORCE
VIDEO = RoutingTable.VIDEO_OUTPUT


def reader_for(trace: Path) -> Codec:
    """A codec of the role that receives what the trace's sender wrote."""
    return Codec(Role.CONTROLLER if trace.name.startswith("device") else Role.DEVICE)


def outcomes(codec: Codec, chunks: list[bytes]) -> list[Message | str]:
    """Feed ``chunks`` one by one: every block parsed, and "error" for each protocol error."""
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


def parse(role: Role, data: bytes) -> list[Message | str]:
    return outcomes(Codec(role), [data])


def whole_and_bytewise(trace: Path) -> tuple[list[Message | str], list[Message | str]]:
    data = trace.read_bytes()
    whole = outcomes(reader_for(trace), [data])
    bytewise = outcomes(reader_for(trace), [data[i:i + 1] for i in range(len(data))])
    return whole, bytewise


# -- the notes' examples, byte for byte ------------------------------------------------------


def test_route_example_of_the_notes_is_27_bytes():
    # [VH §2]: route output 8 (index 7) to input 3 (index 2)
    data = Codec(Role.CONTROLLER).send(Routes(VIDEO, ((7, 2),)))
    assert data == bytes.fromhex(
        "56 49 44 45 4F 20 4F 55 54 50 55 54 20 52 4F 55 54 49 4E 47 3A 0A 37 20 32 0A 0A")
    assert len(data) == 27
    assert parse(Role.DEVICE, data) == [Routes(VIDEO, ((7, 2),))]


def test_ack_nak_ping_and_lock_bytes():
    device, controller = Codec(Role.DEVICE), Codec(Role.CONTROLLER)
    assert device.send(Ack()) == bytes.fromhex("41 43 4B 0A 0A")
    assert device.send(Nak()) == bytes.fromhex("4E 41 4B 0A 0A")
    assert controller.send(Ping()) == bytes.fromhex("50 49 4E 47 3A 0A 0A")  # [VH §8]
    assert controller.send(Locks(LockTable.VIDEO_OUTPUT, ((3, O),))) == bytes.fromhex(
        "56 49 44 45 4F 20 4F 55 54 50 55 54 20 4C 4F 43 4B 53 3A 0A 33 20 4F 0A 0A")  # [VH §6]


def test_wire_format_of_other_blocks():
    controller, device = Codec(Role.CONTROLLER), Codec(Role.DEVICE)
    assert controller.send(StatusRequest("OUTPUT LABELS")) == b"OUTPUT LABELS:\n\n"
    assert controller.send(Routes(VIDEO, ((0, 5), (1, 5), (2, 9)))) == (
        b"VIDEO OUTPUT ROUTING:\n0 5\n1 5\n2 9\n\n")
    assert controller.send(Labels(LabelTable.OUTPUT, ((6, "new output label seven"),))) == (
        b"OUTPUT LABELS:\n6 new output label seven\n\n")
    assert device.send(Labels(LabelTable.INPUT, ((3, ""),))) == b"INPUT LABELS:\n3 \n\n"
    assert device.send(Routes(RoutingTable.SERIAL_PORT, ((1, -1),))) == (
        b"SERIAL PORT ROUTING:\n1 -1\n\n")
    assert device.send(Preamble("2.3")) == b"PROTOCOL PREAMBLE:\nVersion: 2.3\n\n"
    assert device.send(EndPrelude()) == b"END PRELUDE:\n\n"
    assert device.send(KeyValues("ALARM STATUS", (("Fan 0", "ok"),))) == (
        b"ALARM STATUS:\nFan 0: ok\n\n")
    assert device.send(DeviceInfo(video_inputs=10, video_outputs=10)) == (
        b"VIDEOHUB DEVICE:\nDevice present: true\nVideo inputs: 10\nVideo outputs: 10\n\n")
    assert device.send(Labels(LabelTable.INPUT, ())) == b"INPUT LABELS:\n\n"


# -- every block, one role against the other ------------------------------------------------

CONTROLLER_MESSAGES = [
    StatusRequest("VIDEO OUTPUT ROUTING"), StatusRequest("NETWORK INTERFACE 0"), Ping(),
    Routes(VIDEO, ((0, 5), (1, 5), (287, 0))), Routes(RoutingTable.SERIAL_PORT, ((0, -1),)),
    Routes(RoutingTable.VIDEO_MONITORING_OUTPUT, ((3, 2),)),
    Labels(LabelTable.OUTPUT, ((6, "new output label seven"), (7, ""), (8, " Cam  2 "))),
    Labels(LabelTable.INPUT, ((0, "Kamera ü – 3\twide"),)),
    Locks(LockTable.VIDEO_OUTPUT, ((3, O), (4, U), (5, F))),
    Locks(LockTable.SERIAL_PORT, ((0, O),)),
    PortValues(ValueTable.SERIAL_PORT_DIRECTIONS, ((0, "control"), (1, "slave"))),
    PortValues(ValueTable.TAKE_MODE, ((0, "true"),)),
    KeyValues("CONFIGURATION", (("Take Mode", "true"),)),
    UnknownBlock("SOMETHING NEW", ("1 whatever",)),
]
DEVICE_MESSAGES = [
    Preamble("2.8"), Preamble("2.3", (("Build", "x"),)), Preamble(None),
    DeviceInfo("true", "Blackmagic Smart Videohub 40 x 40", "MCR", "7C2E0D0726A0", 40, 0, 40, 0, 0),
    DeviceInfo("false"), DeviceInfo(None, video_inputs=10, video_outputs=10,
                                    extra=(("Future key", "1"),)),
    Labels(LabelTable.INPUT, ((0, "Camera 1"), (1, ""), (2, "  x  "))),
    Labels(LabelTable.SERIAL_PORT, ()), Labels(LabelTable.FRAME, ((0, "Frame 1"),)),
    Routes(VIDEO, ((7, 2),)), Routes(RoutingTable.PROCESSING_UNIT, ((0, -1),)),
    Routes(RoutingTable.FRAME_BUFFER, ((0, 3),)), Routes(VIDEO, ()),
    Locks(LockTable.VIDEO_OUTPUT, ((0, U), (1, O), (2, L))),
    Locks(LockTable.FRAME_BUFFER, ((0, L),)),
    PortValues(ValueTable.VIDEO_INPUT_STATUS, ((0, "BNC"), (1, "Thunderbolt"))),
    PortValues(ValueTable.SERIAL_PORT_STATUS, ((0, "RS422"),)),
    KeyValues("NETWORK INTERFACE 0", (("Name", "1GbE"), ("MAC Address", "7c:2e:0d:a6:e3:3d"))),
    KeyValues("NETWORK", ()), EndPrelude(), Ack(), Nak(), UnknownBlock("SOMETHING NEW", ("a: b",)),
    UnknownBlock("LATER BLOCK", ()),
]


def roundtrip(message: Message, sender: Role) -> list[Message | str]:
    receiver = Role.DEVICE if sender is Role.CONTROLLER else Role.CONTROLLER
    return parse(receiver, Codec(sender).send(message))


@pytest.mark.parametrize("message", CONTROLLER_MESSAGES, ids=repr)
def test_controller_block_reaches_device(message):
    assert roundtrip(message, Role.CONTROLLER) == [message]


@pytest.mark.parametrize("message", DEVICE_MESSAGES, ids=repr)
def test_device_block_reaches_controller(message):
    assert roundtrip(message, Role.DEVICE) == [message]


def test_header_alone_means_a_request_to_the_device_and_an_empty_block_to_a_controller():
    assert parse(Role.DEVICE, b"INPUT LABELS:\n\nPING:\n\nEND PRELUDE:\n\n") == [
        StatusRequest("INPUT LABELS"), Ping(), StatusRequest("END PRELUDE")]
    assert parse(Role.CONTROLLER, b"INPUT LABELS:\n\nEND PRELUDE:\n\nPING:\n\n") == [
        Labels(LabelTable.INPUT, ()), EndPrelude(), UnknownBlock("PING")]


def test_each_role_refuses_to_send_what_it_does_not_send():
    for message in (Ack(), Nak(), EndPrelude(), Preamble(), DeviceInfo()):
        with pytest.raises(ValueError, match="controller does not send"):
            Codec(Role.CONTROLLER).send(message)
    for message in (Ping(), StatusRequest("INPUT LABELS")):
        with pytest.raises(ValueError, match="device does not send"):
            Codec(Role.DEVICE).send(message)
    with pytest.raises(ValueError, match="lock letter L"):
        Codec(Role.CONTROLLER).send(Locks(LockTable.VIDEO_OUTPUT, ((0, L),)))
    with pytest.raises(ValueError, match="lock letter F"):
        Codec(Role.DEVICE).send(Locks(LockTable.VIDEO_OUTPUT, ((0, F),)))
    with pytest.raises(ValueError, match="StatusRequest"):
        Codec(Role.CONTROLLER).send(Routes(VIDEO, ()))


@pytest.mark.parametrize("message", [
    Labels(LabelTable.INPUT, ((0, "two\nlines"),)), Labels(LabelTable.INPUT, ((0, "cr\r"),)),
    Labels(LabelTable.INPUT, ((0, "nul\x00"),)), Labels(LabelTable.INPUT, ((0, "x" * MAX_LINE),)),
    Labels(LabelTable.INPUT, ((-1, "a"),)), Labels(LabelTable.INPUT, ((10**9, "a"),)),
    Routes(VIDEO, ((0, -1),)), Routes(VIDEO, ((True, 1),)), Routes(VIDEO, ((0, -2),)),
    StatusRequest("lower case"), StatusRequest("NO COLON:"), StatusRequest(""),
    KeyValues("CONFIGURATION", (("Take: Mode", "x"),)), KeyValues("NOT KEY VALUE", (("a", "b"),)),
    PortValues(ValueTable.TAKE_MODE, ((0, ""),)), PortValues(ValueTable.TAKE_MODE, ((0, " x"),)),
    UnknownBlock("X", ("",)),
])
def test_unframeable_block_is_a_value_error(message):
    with pytest.raises(ValueError):
        Codec(Role.CONTROLLER).send(message)


# -- receiving rules ---------------------------------------------------------------------------


def test_crlf_leading_whitespace_and_extra_empty_lines_are_accepted():
    data = b"\r\n\r\n  VIDEO OUTPUT ROUTING:\r\n\t 7 2\r\n   \r\n\n\nACK\r\n\r\n"
    assert parse(Role.CONTROLLER, data) == [Routes(VIDEO, ((7, 2),)), Ack()]


def test_only_the_first_token_is_the_index_and_the_rest_is_the_value():
    data = b"INPUT LABELS:\n0 Camera 2  wide \n1 \n2\n007 seven\n\n"
    assert parse(Role.CONTROLLER, data) == [Labels(LabelTable.INPUT, (
        (0, "Camera 2  wide "), (1, ""), (2, ""), (7, "seven")))]


def test_lines_a_peer_does_not_know_are_kept_aside_not_fatal():
    data = b"VIDEO OUTPUT ROUTING:\n0 1\nnonsense\n3 -1\n4 x\n\n"
    assert parse(Role.CONTROLLER, data) == [
        Routes(VIDEO, ((0, 1),), ("nonsense", "3 -1", "4 x"))]
    # a controller sending L, a device sending F: not theirs to send
    assert parse(Role.DEVICE, b"VIDEO OUTPUT LOCKS:\n0 L\n1 F\n\n") == [
        Locks(LockTable.VIDEO_OUTPUT, ((1, F),), ("0 L",))]
    assert parse(Role.CONTROLLER, b"VIDEO OUTPUT LOCKS:\n0 L\n1 F\n\n") == [
        Locks(LockTable.VIDEO_OUTPUT, ((0, L),), ("1 F",))]


def test_labels_that_are_not_utf8_are_read_as_latin1():
    assert parse(Role.CONTROLLER, b"INPUT LABELS:\n0 Kamera \xfc\n\n") == [
        Labels(LabelTable.INPUT, ((0, "Kamera ü"),))]


def test_ack_and_nak_need_no_empty_line_but_blocks_do():
    controller = Codec(Role.CONTROLLER)
    controller.receive_data(b"ACK\nVIDEO OUTPUT ROUTING:\n0 1\n")
    assert list(controller.events()) == [Ack()]  # the block waits for its empty line
    controller.receive_data(b"\n")
    assert list(controller.events()) == [Routes(VIDEO, ((0, 1),))]


def test_bad_block_is_skipped_up_to_its_empty_line():
    codec = Codec(Role.CONTROLLER)
    codec.receive_data(b"garbage\nVIDEO OUTPUT ROUTING:\n0 1\n\nVIDEO OUTPUT ROUTING:\n2 3\n\n")
    with pytest.raises(RemoteProtocolError, match="expected a block header"):
        codec.next_event()
    assert list(codec.events()) == [Routes(VIDEO, ((2, 3),))]


def test_overlong_line_is_reported_once_and_skipped_with_its_block():
    codec = Codec(Role.DEVICE)
    codec.receive_data(b"INPUT LABELS:\n0 " + b"y" * 3 * MAX_LINE)
    with pytest.raises(RemoteProtocolError, match="longer than 4096"):
        codec.next_event()
    codec.receive_data(b"y" * MAX_LINE)
    assert codec.next_event() is None
    codec.receive_data(b"yy\n1 more\n\nPING:\n\n")
    assert list(codec.events()) == [Ping()]


def test_line_of_exactly_max_length_is_accepted():
    line = b"0 " + b"z" * (MAX_LINE - 3) + b"\n"
    assert len(line) == MAX_LINE
    data = b"INPUT LABELS:\n" + line + b"\n"
    assert outcomes(Codec(Role.DEVICE), [data[i:i + 1] for i in range(len(data))]) == [
        Labels(LabelTable.INPUT, ((0, "z" * (MAX_LINE - 3)),))]


def test_block_larger_than_the_limit_is_an_error_and_skipped():
    codec = Codec(Role.CONTROLLER, max_block=100)
    body = b"".join(b"%d Input %d\n" % (i, i) for i in range(20))
    codec.receive_data(b"INPUT LABELS:\n" + body + b"\nACK\n\n")
    with pytest.raises(RemoteProtocolError, match="longer than 100 bytes"):
        codec.next_event()
    assert list(codec.events()) == [Ack()]
    with pytest.raises(ValueError, match="larger than 100"):
        Codec(Role.DEVICE, max_block=100).send(Labels(LabelTable.INPUT, tuple(
            (i, f"Input {i}") for i in range(20))))


def test_version_tuple():
    assert version_tuple("2.8") == (2, 8) and version_tuple("10.12") == (10, 12)
    assert version_tuple("2") is None and version_tuple(None) is None
    assert version_tuple("2.8 beta") is None


# -- the status dump ---------------------------------------------------------------------------

INFO = DeviceInfo("true", "Blackmagic Smart Videohub 2 x 2", "Hub", "7C2E0D0726A0", 2, 0, 2, 0, 0)


def test_prelude_orders_blocks_as_real_devices_send_them():
    blocks = [
        KeyValues("CONFIGURATION", (("Take Mode", "false"),)),
        Routes(VIDEO, ((0, 1), (1, 0))),
        Locks(LockTable.VIDEO_OUTPUT, ((0, U), (1, L))),
        KeyValues("NETWORK INTERFACE 0", (("Name", "1GbE"),)),
        Labels(LabelTable.OUTPUT, ((0, "a"), (1, "b"))),
        UnknownBlock("VENDOR EXTRA", ("x",)),
        Labels(LabelTable.INPUT, ((0, "c"), (1, "d"))),
        KeyValues("NETWORK", (("Interface Count", "1"),)),
    ]
    dump = prelude(INFO, blocks)
    assert [header_of(b) for b in dump] == [
        "PROTOCOL PREAMBLE", "VIDEOHUB DEVICE", "NETWORK", "NETWORK INTERFACE 0", "INPUT LABELS",
        "OUTPUT LABELS", "VIDEO OUTPUT LOCKS", "VIDEO OUTPUT ROUTING", "CONFIGURATION",
        "VENDOR EXTRA", "END PRELUDE"]
    assert dump[0] == Preamble("2.8")
    old = prelude(INFO, blocks[1:3], version="2.3")
    assert [header_of(b) for b in old] == [
        "PROTOCOL PREAMBLE", "VIDEOHUB DEVICE", "VIDEO OUTPUT LOCKS", "VIDEO OUTPUT ROUTING"]


def test_prelude_is_byte_for_byte_what_the_cleanswitch_trace_holds():
    trace = (TRACES / "good" / "device-prelude-2.8-cleanswitch.trace").read_bytes()
    parsed = parse(Role.CONTROLLER, trace)
    device, *tables, _end = parsed[1:]
    rebuilt = Codec(Role.DEVICE).send_all(
        prelude(device, reversed(tables)))  # type: ignore[arg-type]
    assert rebuilt == trace


def test_prelude_checks_the_counts_of_the_device_block():
    with pytest.raises(ValueError, match="OUTPUT ROUTING must list ports 0–1"):
        prelude(INFO, [Routes(VIDEO, ((0, 1),))])
    with pytest.raises(ValueError, match="video inputs = 2"):
        prelude(INFO, [Labels(LabelTable.INPUT, ((1, "b"), (0, "a")))])
    with pytest.raises(ValueError, match="not a table"):
        prelude(INFO, [EndPrelude()])
    with pytest.raises(ValueError, match="major.minor"):
        prelude(INFO, [], version="two")
    # counts the device block does not give are not checked
    assert len(prelude(DeviceInfo(), [Routes(VIDEO, ((5, 1),))])) == 4


def test_dump_order_names_every_table_kind():
    kinds = {t.value for e in (LabelTable, RoutingTable, LockTable, ValueTable) for t in e}
    assert kinds <= set(DUMP_ORDER)


# -- fixture traces --------------------------------------------------------------------------


def test_traces_are_there():
    assert len(GOOD) >= 7 and len(BAD) >= 7


@pytest.mark.parametrize("trace", GOOD, ids=lambda p: p.name)
def test_good_trace_whole_and_byte_by_byte(trace):
    whole, bytewise = whole_and_bytewise(trace)
    assert "error" not in whole
    assert whole == bytewise
    # what is parsed encodes again to bytes that parse the same (unparsed lines aside)
    sender = Role.DEVICE if trace.name.startswith("device") else Role.CONTROLLER
    clean = [_without_unparsed(m) for m in whole]  # type: ignore[arg-type]
    assert outcomes(reader_for(trace), [Codec(sender).send_all(clean)]) == clean


def _without_unparsed(message: Message) -> Message:
    if getattr(message, "unparsed", ()):
        return replace(message, unparsed=())  # type: ignore[call-arg]
    return message


@pytest.mark.parametrize("trace", BAD, ids=lambda p: p.name)
def test_bad_trace_raises_remote_protocol_error_and_recovers(trace):
    whole, bytewise = whole_and_bytewise(trace)
    assert whole == bytewise
    assert "error" in whole
    assert isinstance(whole[-1], Message), "the block after the bad ones must still parse"


def test_cleanswitch_prelude_means_what_it_says():
    events = parse(Role.CONTROLLER, (TRACES / "good" / "device-prelude-2.8-cleanswitch.trace")
                   .read_bytes())
    assert events[0] == Preamble("2.8")
    assert events[1] == DeviceInfo(
        "true", "Blackmagic Smart Videohub CleanSwitch 12 x 12", "MCR CleanSwitch",
        "7C2E0D0726A0", 12, 0, 12, 0, 0)
    labels = events[2]
    assert labels.labels[1] == (1, "Camera 2  wide ") and labels.labels[3] == (3, "")
    assert labels.labels[2] == (2, "Kamera ü – 3")
    assert events[4].locks[2] == (2, O) and events[4].locks[5] == (5, L)
    assert events[5].routes[0] == (0, 4)
    assert events[-1] == EndPrelude()


def test_universal_prelude_has_serial_tables_and_no_end_prelude():
    events = parse(Role.CONTROLLER, (TRACES / "good" / "device-prelude-2.3-universal.trace")
                   .read_bytes())
    assert events[1].serial_ports == 4 and events[1].friendly_name is None
    assert Routes(RoutingTable.SERIAL_PORT, ((0, 2), (1, -1), (2, 0), (3, -1))) in events
    assert PortValues(ValueTable.SERIAL_PORT_DIRECTIONS,
                      ((0, "slave"), (1, "slave"), (2, "control"), (3, "auto"))) in events
    assert events[-1] == KeyValues("ALARM STATUS", (
        ("Fan 0", "ok"), ("Fan 1", "ok"), ("Power supply 1", "ok")))
    assert EndPrelude() not in events


def test_indented_crlf_prelude_parses_like_a_clean_one():
    events = parse(Role.CONTROLLER, (TRACES / "good" / "device-prelude-2.7-crlf-indented.trace")
                   .read_bytes())
    assert events[0] == Preamble("2.7")
    assert events[1].model_name == "Blackmagic Smart Videohub 20 x 20"
    assert events[3] == Labels(LabelTable.OUTPUT, tuple((i, f"Output {i + 1}") for i in range(4)))
    assert events[5] == Routes(VIDEO, ((0, 3), (1, 3), (2, 2), (3, 1)))


def test_tolerated_lines_trace():
    events = parse(Role.CONTROLLER, (TRACES / "good" / "device-tolerated-lines.trace")
                   .read_bytes())
    assert events[0] == Routes(VIDEO, ((0, 1), (5, 4), (16, 16)), ("1", "1 x", "2 -1"))
    assert events[1] == Locks(LockTable.VIDEO_OUTPUT, ((2, L),), ("0 Q", "1 F"))
    assert events[2] == DeviceInfo("true", video_outputs=4,
                                   unparsed=("Video inputs: many", "no colon here"))
    assert events[3:] == [Labels(LabelTable.INPUT, ()), EndPrelude()]


# -- fuzzing: only blocks or RemoteProtocolError ever come out -------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_fuzzed(role: Role, data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    outcomes(Codec(role, max_line=256, max_block=2048),
             [data[a:b] for a, b in zip(bounds, bounds[1:])])


@FUZZ
@given(data=st.binary(max_size=800), cuts=st.lists(st.integers(0, 10_000), max_size=8),
       role=st.sampled_from(Role))
def test_fuzz_random_bytes(data, cuts, role):
    feed_fuzzed(role, data, cuts)


HEADERS = sorted({t.value for e in (LabelTable, RoutingTable, LockTable, ValueTable) for t in e}
                 | {"PROTOCOL PREAMBLE", "VIDEOHUB DEVICE", "CONFIGURATION", "ALARM STATUS",
                    "NETWORK", "NETWORK INTERFACE 1", "END PRELUDE", "PING", "ACK", "NAK"})


@FUZZ
@given(header=st.sampled_from(HEADERS),
       lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")), max_size=6),
       role=st.sampled_from(Role))
def test_fuzz_known_headers_with_random_lines(header, lines, role):
    head = header.encode() + (b"" if header in ("ACK", "NAK") else b":")
    feed_fuzzed(role, head + b"\n" + b"".join(line + b"\n" for line in lines) + b"\n", [])


@st.composite
def mutated_trace(draw):
    data = bytearray(draw(st.sampled_from(GOOD + BAD)).read_bytes()[:3000])
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

indexes = st.integers(0, 10**9 - 1)
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x7f"
                             + "".join(map(chr, range(0, 9))) + "".join(map(chr, range(11, 32)))),
               max_size=80)
words = st.from_regex(r"[A-Za-z0-9_.]{1,12}", fullmatch=True)
keys = st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,20}[a-z0-9]", fullmatch=True)
labels = st.builds(Labels, st.sampled_from(LabelTable),
                   st.lists(st.tuples(indexes, text), min_size=1, max_size=5).map(tuple))
routes = st.sampled_from(RoutingTable).flatmap(lambda table: st.builds(
    Routes, st.just(table), st.lists(st.tuples(
        indexes, indexes | (st.just(-1) if table.allows_none else indexes)),
        min_size=1, max_size=5).map(tuple)))
values = st.builds(PortValues, st.sampled_from(ValueTable),
                   st.lists(st.tuples(indexes, words), min_size=1, max_size=5).map(tuple))
key_values = st.builds(KeyValues, st.sampled_from(["CONFIGURATION", "ALARM STATUS", "NETWORK"]),
                       st.lists(st.tuples(keys, text.map(str.lstrip)), min_size=1, max_size=4)
                       .map(tuple))


def lock_blocks(letters: list[LockState]) -> st.SearchStrategy[Locks]:
    return st.builds(Locks, st.sampled_from(LockTable), st.lists(
        st.tuples(indexes, st.sampled_from(letters)), min_size=1, max_size=5).map(tuple))


controller_blocks = st.one_of(labels, routes, values, key_values, lock_blocks([U, O, F]),
                              st.just(Ping()),
                              st.sampled_from(HEADERS[:-2]).filter(lambda h: h != "PING")
                              .map(StatusRequest))
device_blocks = st.one_of(labels, routes, values, key_values, lock_blocks([U, O, L]),
                          st.just(Ack()), st.just(Nak()), st.just(EndPrelude()),
                          st.builds(Preamble, st.from_regex(r"[0-9]\.[0-9]{1,2}", fullmatch=True)),
                          st.builds(DeviceInfo, st.sampled_from(["true", "false", "needs_update"]),
                                    text.map(str.strip), text.map(str.strip), words,
                                    indexes, indexes, indexes, indexes, indexes))


@FUZZ
@given(messages=st.lists(controller_blocks, min_size=1, max_size=4))
def test_property_controller_blocks_roundtrip(messages):
    data = Codec(Role.CONTROLLER).send_all(messages)
    assert parse(Role.DEVICE, data) == messages
    assert outcomes(Codec(Role.DEVICE), [data[i:i + 7] for i in range(0, len(data), 7)]) == messages


@FUZZ
@given(messages=st.lists(device_blocks, min_size=1, max_size=4))
def test_property_device_blocks_roundtrip(messages):
    data = Codec(Role.DEVICE).send_all(messages)
    assert parse(Role.CONTROLLER, data) == messages
