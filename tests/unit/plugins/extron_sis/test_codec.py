"""The Extron SIS codec: fixture traces, both roles against each other, and fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tieline.errors import RemoteProtocolError
from tieline.model import PortKind
from tieline.plugins.extron_sis.codec import (
    DO,
    DONT,
    MAX_COMMAND,
    MAX_LINE,
    SB,
    WILL,
    WONT,
    Banner,
    BulkReport,
    ClearAllTies,
    Codec,
    ErrorCode,
    Firmware,
    Information,
    LoggedIn,
    Message,
    NameReport,
    Number,
    PartNumber,
    Password,
    PasswordPrompt,
    Plane,
    PresetRecalled,
    PresetSaved,
    QueryFirmware,
    QueryInformation,
    QueryPartNumber,
    QuickTie,
    QuickTieDone,
    ReadBulk,
    ReadName,
    ReadTie,
    ReadTimeout,
    ReadVerbose,
    RecallPreset,
    Role,
    SavePreset,
    SetName,
    SetTimeout,
    SetVerbose,
    Telnet,
    Text,
    Tie,
    TieAllReport,
    TieReport,
    TieToAll,
    TimeoutReport,
    VerboseReport,
    describe_error,
    validate_name,
)

TRACES = Path(__file__).parents[3] / "fixtures" / "extron_sis"
GOOD = sorted((TRACES / "good").glob("*.trace"))
BAD = sorted((TRACES / "bad").glob("*.trace"))
SOURCE, DEST = PortKind.SOURCE, PortKind.DESTINATION
ALL, VID, AUD, RGB = Plane.ALL, Plane.VIDEO, Plane.AUDIO, Plane.RGB


def reader_for(trace: Path) -> Codec:
    """A codec of the role that receives what the trace's sender wrote.

    ``telnet`` in the name: Telnet filtering on; ``login`` in a controller trace: the device
    has just sent ``Password:``.
    """
    sender = trace.name.split("-", 1)[0]
    codec = Codec(Role.CONTROLLER if sender == "device" else Role.DEVICE,
                  telnet="telnet" in trace.name)
    if sender == "controller" and "login" in trace.name:
        codec.send(PasswordPrompt())
    return codec


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


def parse(trace: str) -> list[Message | str]:
    path = TRACES / ("bad" if (TRACES / "bad" / trace).exists() else "good") / trace
    return whole_and_bytewise(path)[0]


# -- fixture traces -------------------------------------------------------------------------


def test_traces_are_there():
    assert len(GOOD) >= 10 and len(BAD) >= 10


@pytest.mark.parametrize("trace", GOOD, ids=lambda p: p.name)
def test_good_trace_whole_and_byte_by_byte(trace):
    whole, bytewise = whole_and_bytewise(trace)
    assert "error" not in whole
    assert whole == bytewise


@pytest.mark.parametrize("trace", BAD, ids=lambda p: p.name)
def test_bad_trace_raises_remote_protocol_error_and_recovers(trace):
    whole, bytewise = whole_and_bytewise(trace)
    assert whole == bytewise
    assert "error" in whole
    assert isinstance(whole[-1], Message), "the message after the bad ones must still parse"


def test_telnet_login_trace():
    assert parse("device-telnet-login.trace") == [
        Telnet(WILL, 1), Telnet(WILL, 3), Telnet(DO, 24),
        Banner("(c) Copyright 2024, Extron Electronics, DXP 88 HD 4K PLUS, V1.03, 60-1494-01"),
        Text("Tue, 05 Mar 2024 10:11:12"), Text(""), PasswordPrompt(), Text(""),
        PasswordPrompt(), Text(""), LoggedIn(True), VerboseReport(3),
    ]


def test_ssh_banner_is_matched_loosely():
    events = parse("device-ssh-banner.trace")
    assert isinstance(events[0], Banner) and "FOX3" in events[0].text
    assert events[1:] == [Text("Wed, 06 Mar 2024 08:00:00"), VerboseReport(3)]


def test_sync_answers_tagged_and_untagged():
    assert parse("device-sync-tagged.trace") == [
        VerboseReport(3), Information("V16X16 A16X16"),
        TieReport(1, 1, VID), TieReport(1, 1, AUD), TieReport(2, 0, VID), TieReport(2, 5, AUD),
        NameReport(SOURCE, 1, "Camera 1"), NameReport(SOURCE, 2, ""),
        NameReport(DEST, 1, "PGM"), NameReport(DEST, 2, "Monitor wall"), Firmware("1.23"),
    ]
    untagged = parse("device-untagged.trace")
    assert untagged == [Number("01"), Number("00"), Number("12"), Text("Camera 1"), Text(""),
                        Number("3")]
    assert [n.value for n in untagged if isinstance(n, Number)] == [1, 0, 12, 3]


def test_ties_and_errors_trace():
    assert parse("device-ties-and-errors.trace") == [
        TieReport(3, 1, ALL), TieReport(3, 1, VID), TieReport(3, 1, RGB), TieReport(3, 1, AUD),
        TieReport(3, 0, ALL), TieReport(3, 1, ALL), TieAllReport(5, ALL), TieAllReport(0, ALL),
        QuickTieDone(), ErrorCode(1), ErrorCode(12), ErrorCode(10), ErrorCode(14),
        ErrorCode(24), ErrorCode(30, "fan failure"), PresetRecalled(5), PresetSaved(9),
    ]


def test_unsolicited_and_bulk_traces():
    assert parse("device-unsolicited.trace") == [
        Text("Vmt01*1"), Text("Amt01*1"), Text("Exe1"), Text("Reconfig"), QuickTieDone(),
        PresetRecalled(5), TieReport(5, 2, ALL), NameReport(DEST, 3, "PGM"),
    ]
    assert parse("device-bulk-and-info.trace") == [
        BulkReport((1, 2, 3, 4, 5, 6, 7, 8) + (None,) * 8, VID),
        BulkReport((1, 2, 0, 4), AUD), Firmware("1.23"), Firmware("3.04.0002"),
        PartNumber("60-1234-01"), TimeoutReport(0, 30), TimeoutReport(1, 30),
    ]


def test_line_ends_cr_lf_alone_and_doubled():
    assert parse("device-line-ends.trace") == [
        TieReport(1, 2, ALL), TieReport(1, 3, ALL), TieReport(1, 4, ALL), Text(""),
        QuickTieDone(),
    ]


def test_controller_traces():
    assert parse("controller-session.trace") == [
        SetVerbose(3), QueryInformation(), ReadTie(1, VID), ReadTie(1, AUD), ReadTie(2, VID),
        ReadTie(2, AUD), ReadName(SOURCE, 1), ReadName(DEST, 1), Tie(1, 3, ALL),
        Tie(3, 4, VID), Tie(3, 5, AUD), Tie(3, 6, RGB), QueryFirmware(),
    ]
    assert parse("controller-telnet-login.trace") == [
        Telnet(DONT, 1), Telnet(DONT, 3), Telnet(WONT, 24), Password("extron"),
        SetVerbose(3), ReadTie(1, VID),
    ]
    assert parse("controller-notes-examples.trace") == [
        Tie(1, 3, ALL), QuickTie((Tie(3, 4, ALL), Tie(3, 5, VID), Tie(3, 6, AUD))),
        ReadTie(3, VID), SavePreset(9), RecallPreset(5), ReadBulk(0, 1, VID),
        ReadBulk(0, 1, AUD), Tie(2, 2, ALL), Tie(3, 3, ALL), SetName(DEST, 5, "Studio 1"),
        ReadName(DEST, 5), SetTimeout(0, 30), ReadTimeout(0), ReadVerbose(), QueryPartNumber(),
    ]
    assert parse("controller-lenient.trace") == [
        Tie(1, 3, ALL), QueryFirmware(), SetVerbose(3), Tie(1, 1, VID),
        SetName(SOURCE, 1, "Cam 1"), QueryInformation(), QueryPartNumber(),
    ]
    assert parse("controller-destructive.trace") == [
        ClearAllTies(ALL), ClearAllTies(VID), ClearAllTies(AUD), ClearAllTies(RGB),
        TieToAll(5, ALL), TieToAll(5, AUD),
    ]


def test_bad_controller_traces_say_what_is_wrong():
    assert parse("controller-unknown-commands.trace") == ["error"] * 6 + [QueryFirmware()]
    assert parse("controller-esc-cuts-command.trace") == ["error", SetVerbose(3),
                                                          QueryFirmware()]
    assert parse("controller-overlong-esc.trace") == ["error", QueryFirmware()]
    assert parse("device-garbage.trace") == ["error", TieReport(1, 1, ALL), VerboseReport(3)]


def test_byte_level_examples_of_the_notes():
    controller, device = Codec(Role.CONTROLLER), Codec(Role.DEVICE)
    assert controller.send(Tie(1, 3, ALL)) == bytes.fromhex("31 2A 33 21")
    assert device.send(TieReport(3, 1, ALL)) == bytes.fromhex(
        "4F 75 74 30 33 20 49 6E 30 31 20 41 6C 6C 0D 0A")
    assert controller.send(QuickTie((Tie(3, 4, ALL), Tie(3, 5, VID), Tie(3, 6, AUD)))) == \
        bytes.fromhex("1B 2B 51 33 2A 34 21 33 2A 35 25 33 2A 36 24 0D")
    assert controller.send(SetVerbose(3)) == bytes.fromhex("1B 33 43 56 0D")
    assert device.send(VerboseReport(3)) == b"Vrb3\r\n"
    assert controller.send(ReadTie(3, VID)) == bytes.fromhex("33 25")
    assert device.send(Number("01")) == bytes.fromhex("30 31 0D 0A")
    assert controller.send(SavePreset(9)) == bytes.fromhex("39 2C")
    assert device.send(PresetSaved(9)) == b"Spr09\r\n"
    assert device.send(PresetRecalled(5)) == b"Rpr05\r\n"
    assert Codec(Role.DEVICE, pad=3).send(TieReport(3, 1, ALL)) == b"Out003 In001 All\r\n"
    assert Codec(Role.DEVICE, pad=0).send(TieReport(3, 0, ALL)) == b"Out3 In0 All\r\n"
    assert device.send(PasswordPrompt()) == b"\r\nPassword:"
    assert device.send(LoggedIn(False)) == b"\r\nLogin User\r\n"


def test_password_prompt_switches_the_device_codec_to_a_password_line():
    device = Codec(Role.DEVICE)
    device.send(PasswordPrompt())
    assert device.awaiting_password
    device.receive_data(b"1*3!\r\n1*3!")  # a controller that did not wait: its tie is the try
    assert list(device.events()) == [Password("1*3!"), Tie(1, 3, ALL)]
    assert not device.awaiting_password


def test_password_prompt_is_found_without_a_line_end_and_not_before_it_is_sure():
    controller = Codec(Role.CONTROLLER)
    controller.receive_data(b"Pass")
    assert controller.next_event() is None
    controller.receive_data(b"word:")
    assert controller.next_event() == PasswordPrompt()
    controller.receive_data(b"Pas de deux\r\n")
    assert controller.next_event() == Text("Pas de deux")


# -- every message, one role against the other ----------------------------------------------

CONTROLLER_MESSAGES = [
    Tie(1, 3, ALL), Tie(0, 3, VID), Tie(9999, 9999, AUD), Tie(12, 4, RGB), TieToAll(7, ALL),
    ReadTie(3, VID), ReadTie(3, AUD), ReadTie(3, ALL), ReadTie(3, RGB),
    QuickTie((Tie(3, 4, ALL), Tie(3, 5, VID), Tie(0, 6, AUD))), SetVerbose(0), SetVerbose(3),
    ReadVerbose(), QueryFirmware(), QueryInformation(), QueryPartNumber(), SavePreset(9),
    RecallPreset(32), SetName(SOURCE, 1, "Cam 1"), SetName(DEST, 12, ""),
    SetName(DEST, 2, "NINA NO"), ReadName(SOURCE, 16), ReadName(DEST, 1),
    ReadBulk(0, 17, VID), ReadBulk(5, 1, AUD), SetTimeout(0, 30), SetTimeout(1, 65000),
    ReadTimeout(1), Telnet(WONT, 24), Telnet(DONT, 1),
]
DEVICE_MESSAGES = [
    TieReport(3, 1, ALL), TieReport(3, 0, AUD), TieReport(128, 12, VID), TieReport(1, 1, RGB),
    TieAllReport(5, ALL), TieAllReport(0, VID), Number("01"), Number("3"), VerboseReport(3),
    QuickTieDone(), PresetRecalled(5), PresetSaved(9), NameReport(SOURCE, 1, "Camera 1"),
    NameReport(DEST, 2, ""), NameReport(DEST, 3, "a,b:c"), ErrorCode(1), ErrorCode(30, "fan"),
    Firmware("1.23"), Firmware("3.04.0002"), Information("V16X16 A16X16"), Information("V8X4"),
    PartNumber("60-1234-01"), BulkReport((1, None), VID), BulkReport((0, 2, 3), AUD),
    TimeoutReport(0, 30), Banner("(c) Copyright 2024, Extron Electronics, DXP, V1.0"),
    LoggedIn(True), LoggedIn(False), Text("Reconfig"), Text(" Vmt1 "), Telnet(WILL, 1),
    Telnet(DO, 24),
]


def roundtrip(message: Message, sender: Role) -> list[Message]:
    receiver = Codec(Role.DEVICE if sender is Role.CONTROLLER else Role.CONTROLLER, telnet=True)
    receiver.receive_data(Codec(sender, telnet=True).send(message))
    return [e for e in receiver.events() if e != Text("")]


@pytest.mark.parametrize("message", CONTROLLER_MESSAGES, ids=repr)
def test_controller_message_reaches_device(message):
    assert roundtrip(message, Role.CONTROLLER) == [message]


@pytest.mark.parametrize("message", DEVICE_MESSAGES + [PasswordPrompt()], ids=repr)
def test_device_message_reaches_controller(message):
    assert roundtrip(message, Role.DEVICE) == [message]


def test_password_reaches_a_device_that_asked_for_it():
    device = Codec(Role.DEVICE)
    device.send(PasswordPrompt())
    device.receive_data(Codec(Role.CONTROLLER).send(Password("s3cret pw!")))
    assert list(device.events()) == [Password("s3cret pw!")]


def test_clear_all_is_never_encoded_unless_explicitly_allowed():
    for plane in Plane:
        with pytest.raises(ValueError, match="refusing to encode the clear-all-ties command"):
            Codec(Role.CONTROLLER).send(ClearAllTies(plane))
    explicit = Codec(Role.CONTROLLER, allow_clear_all=True)
    assert explicit.send(ClearAllTies()) == b"0*!"
    with pytest.raises(ValueError):  # "tie input 0 to every output" is the same thing
        Codec(Role.CONTROLLER).send(TieToAll(0, ALL))


def test_each_role_refuses_to_send_the_others_messages():
    for message in DEVICE_MESSAGES[:-2] + [PasswordPrompt()]:
        with pytest.raises(ValueError, match="controller does not send"):
            Codec(Role.CONTROLLER).send(message)
    for message in CONTROLLER_MESSAGES[:-2] + [Password("x"), ClearAllTies()]:
        with pytest.raises(ValueError, match="device does not send"):
            Codec(Role.DEVICE).send(message)


@pytest.mark.parametrize("message", [
    Tie(1, 0, ALL), Tie(-1, 3, ALL), Tie(1, 10000, ALL), Tie(True, 1, ALL), ReadTie(0, VID),
    QuickTie(()), QuickTie(tuple(Tie(999, 999, ALL) for _ in range(600))), SetVerbose(4),
    SetName(SOURCE, 1, "a,b"), SetName(SOURCE, 1, "two\rlines"), SetName(SOURCE, 1, "Käse"),
    ReadBulk(0, 1, ALL), SetTimeout(2, 1), SetTimeout(0, 0), ReadTimeout(3),
    Password("x\ny"), Password("\x1b"), Telnet(SB, 1), Telnet(WILL, 256),
])
def test_unframeable_controller_message_is_a_value_error(message):
    with pytest.raises(ValueError):
        Codec(Role.CONTROLLER).send(message)



@pytest.mark.parametrize("message", [
    Number("1a"), Number("²"), Firmware("one"), Information("16x16"), PartNumber("1.2"),
    Banner("hello"), Text("bell\x07"), Text("x" * (MAX_LINE + 1)), ErrorCode(100),
    BulkReport((), VID), BulkReport((1,), ALL), TieReport(0, 1, ALL), VerboseReport(7),
])
def test_unframeable_device_message_is_a_value_error(message):
    with pytest.raises(ValueError):
        Codec(Role.DEVICE).send(message)


def test_names_and_errors_in_words():
    assert validate_name("Cam 1 (wide)") == "Cam 1 (wide)"
    with pytest.raises(ValueError, match="may not have: ;"):
        validate_name("PGM;1")
    assert describe_error(1) == "E01 invalid input number (the device has fewer inputs)"
    assert describe_error(30, "fan") == "E30 hardware failure: fan"
    assert describe_error(77) == "E77 unknown error code"


def test_overlong_line_is_reported_once_and_skipped():
    codec = Codec(Role.CONTROLLER)
    codec.receive_data(b"Nmi01," + b"y" * 3 * MAX_LINE)
    with pytest.raises(RemoteProtocolError, match="longer than 2048"):
        codec.next_event()
    codec.receive_data(b"y" * MAX_LINE)
    assert codec.next_event() is None
    codec.receive_data(b"yy\r\nQik\r\n")
    assert list(codec.events()) == [QuickTieDone()]


def test_line_of_exactly_max_length_and_longest_command_are_accepted():
    codec = Codec(Role.CONTROLLER)
    line = b"Nmo01," + b"z" * (MAX_LINE - 6)
    for i in range(len(line)):
        codec.receive_data(line[i:i + 1])
    codec.receive_data(b"\r\n")
    assert list(codec.events()) == [NameReport(DEST, 1, "z" * (MAX_LINE - 6))]
    device = Codec(Role.DEVICE)
    ties = b"1*1!" * ((MAX_COMMAND - 2) // 4)
    device.receive_data(b"\x1b+Q" + ties + b"\r")
    assert len(next(device.events()).ties) == (MAX_COMMAND - 2) // 4


def test_telnet_literal_ff_and_subnegotiation():
    controller = Codec(Role.CONTROLLER, telnet=True)
    controller.receive_data(b"\xff\xfa\x18\x01\xff\xf0Nmi01,\xff\xffx\r\n\xff\xf1")
    assert list(controller.events()) == [Telnet(SB, 24), NameReport(SOURCE, 1, "\xffx"),
                                         Telnet(241)]
    device = Codec(Role.DEVICE, telnet=True)
    device.receive_data(b"1*\xff\xfb\x013!")  # IAC in the middle of a command
    assert list(device.events()) == [Telnet(WILL, 1), Tie(1, 3, ALL)]


# -- fuzzing: only messages or RemoteProtocolError ever come out ----------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_fuzzed(codec: Codec, data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    outcomes(codec, [data[a:b] for a, b in zip(bounds, bounds[1:])])


def any_codec(role: Role, telnet: bool, password: bool) -> Codec:
    codec = Codec(role, telnet=telnet)
    if password and role is Role.DEVICE:
        codec.send(PasswordPrompt())
    return codec


@FUZZ
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 10_000), max_size=8),
       role=st.sampled_from(Role), telnet=st.booleans(), password=st.booleans())
def test_fuzz_random_bytes(data, cuts, role, telnet, password):
    feed_fuzzed(any_codec(role, telnet, password), data, cuts)


ALPHABET = st.sampled_from(list(b"0123456789*!%$&,.QINqin \r\n\x1b+CVNIOTCvc:-EOutIn")
                           + [0xFF, 0xFB, 0xFD, 0xFA, 0xF0, 0x00])


@FUZZ
@given(data=st.lists(ALPHABET, max_size=300).map(bytes),
       cuts=st.lists(st.integers(0, 10_000), max_size=8), role=st.sampled_from(Role),
       telnet=st.booleans(), password=st.booleans())
def test_fuzz_protocol_alphabet(data, cuts, role, telnet, password):
    feed_fuzzed(any_codec(role, telnet, password), data, cuts)


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
       role=st.sampled_from(Role), telnet=st.booleans(), password=st.booleans())
def test_fuzz_mutated_traces(data, cuts, role, telnet, password):
    feed_fuzzed(any_codec(role, telnet, password), data, cuts)


@FUZZ
@given(data=mutated_trace(), role=st.sampled_from(Role), telnet=st.booleans())
def test_fuzz_whole_and_byte_by_byte_agree(data, role, telnet):
    whole = outcomes(any_codec(role, telnet, False), [data])
    bytewise = outcomes(any_codec(role, telnet, False), [data[i:i + 1] for i in range(len(data))])
    assert whole == bytewise


# -- property: what one side sends, the other parses back unchanged -------------------------

ports = st.integers(1, 9999)
inputs = st.integers(0, 9999)
planes = st.sampled_from(Plane)
av = st.sampled_from([VID, AUD])
kinds = st.sampled_from(PortKind)
names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                              blacklist_characters="+~,@='[]{}<>\";:|\\?"), max_size=40)
controller_messages = st.one_of(
    st.builds(Tie, inputs, ports, planes), st.builds(TieToAll, ports, planes),
    st.builds(ReadTie, ports, planes),
    st.builds(QuickTie, st.lists(st.builds(Tie, inputs, ports, planes), min_size=1,
                                 max_size=20).map(tuple)),
    st.builds(SetVerbose, st.integers(0, 3)), st.just(ReadVerbose()), st.just(QueryFirmware()),
    st.builds(SavePreset, ports), st.builds(RecallPreset, ports),
    st.builds(SetName, kinds, ports, names), st.builds(ReadName, kinds, ports),
    st.builds(ReadBulk, st.integers(0, 9999), ports, av),
    st.builds(SetTimeout, st.integers(0, 1), st.integers(1, 65000)),
)
device_messages = st.one_of(
    st.builds(TieReport, ports, inputs, planes), st.builds(TieAllReport, inputs, planes),
    st.builds(Number, st.from_regex(r"[0-9]{1,6}", fullmatch=True)),
    st.builds(VerboseReport, st.integers(0, 3)), st.just(QuickTieDone()),
    st.builds(PresetRecalled, st.integers(0, 9999)),
    st.builds(NameReport, kinds, ports, st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)),
    st.builds(ErrorCode, st.integers(0, 99), st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)),
    st.builds(BulkReport, st.lists(st.none() | inputs, min_size=1, max_size=16).map(tuple), av),
    st.builds(TimeoutReport, st.integers(0, 1), st.integers(0, 99999)),
)


@FUZZ
@given(messages=st.lists(controller_messages, min_size=1, max_size=8))
def test_property_controller_messages_roundtrip(messages):
    device = Codec(Role.DEVICE)
    controller = Codec(Role.CONTROLLER)
    device.receive_data(b"".join(controller.send(m) for m in messages))
    assert list(device.events()) == messages


@FUZZ
@given(messages=st.lists(device_messages, min_size=1, max_size=8), pad=st.integers(0, 3))
def test_property_device_messages_roundtrip(messages, pad):
    controller = Codec(Role.CONTROLLER)
    controller.receive_data(b"".join(Codec(Role.DEVICE, pad=pad).send(m) for m in messages))
    assert list(controller.events()) == messages
