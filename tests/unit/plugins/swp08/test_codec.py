"""The SW-P-08 codec: the notes' worked examples byte for byte, fixture traces, both roles
against each other, the link layer (ACK/NAK, stop-and-wait, retries), and fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tieline.errors import RemoteProtocolError
from tieline.plugins.swp08.codec import (
    ACK_BYTES,
    NAK_BYTES,
    Codec,
    Connect,
    Connected,
    Delivered,
    DestinationNames,
    DestinationNamesRequest,
    DualStatus,
    DualStatusRequest,
    FrameError,
    ImplementationRequest,
    ImplementationStatus,
    Interrogate,
    InvalidMessage,
    Maintenance,
    Message,
    NamesUpdated,
    ProtectConnect,
    ProtectConnected,
    ProtectDeviceName,
    ProtectDeviceNameRequest,
    ProtectDisconnect,
    ProtectDisconnected,
    ProtectInterrogate,
    ProtectTally,
    Role,
    SourceNames,
    SourceNamesRequest,
    Tally,
    TallyDumpByte,
    TallyDumpRequest,
    TallyDumpWord,
    Undelivered,
    UnknownMessage,
    UpdateName,
    Withdrawn,
    checksum,
    command_of,
    decode_message,
    encode_frame,
    encode_message,
)

TRACES = Path(__file__).parents[3] / "fixtures" / "swp08"
GOOD = sorted((TRACES / "good").glob("*.hex"))
BAD = sorted((TRACES / "bad").glob("*.hex"))
H = bytes.fromhex


def load(trace: Path) -> bytes:
    """A .hex trace: hex bytes, '#' comments."""
    return bytes.fromhex(" ".join(line.split("#", 1)[0] for line in trace.read_text().splitlines()))


def reader_for(trace: Path) -> Codec:
    """A codec of the role that receives what the trace's sender wrote."""
    return Codec(Role.CONTROLLER if trace.name.startswith("device") else Role.DEVICE)


def outcomes(codec: Codec, chunks: list[bytes]) -> list[object]:
    """Feed ``chunks``; every event, and "frame error"/"error" for each error raised."""
    out: list[object] = []
    for chunk in chunks:
        codec.receive_data(chunk, 0.0)
        while True:
            try:
                event = codec.next_event()
            except FrameError:
                out.append("frame error")
                continue
            except RemoteProtocolError:
                out.append("error")
                continue
            if event is None:
                break
            assert isinstance(event, (Message, Delivered, Undelivered))
            out.append(event)
    return out


def whole_and_bytewise(data: bytes, role: Role) -> tuple[tuple[list, bytes], tuple[list, bytes]]:
    results = []
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
        codec = Codec(role)
        results.append((outcomes(codec, chunks), codec.data_to_send()))
    return results[0], results[1]


# -- the worked examples of notes §10, byte for byte ------------------------------------------

#: (message, sender, bytes on the wire) for every row of notes §10.
EXAMPLES = [
    (ImplementationRequest(), Role.CONTROLLER, "10 02 61 01 9E 10 03"),
    (Interrogate(1, 1, 1), Role.CONTROLLER, "10 02 01 11 00 01 04 E9 10 03"),
    (Tally(1, 1, 1, 153), Role.DEVICE, "10 02 03 11 01 01 19 05 CC 10 03"),
    (Connect(1, 1, 2, 0), Role.CONTROLLER, "10 02 02 11 00 02 00 05 E6 10 03"),
    (Connected(1, 1, 2, 0), Role.DEVICE, "10 02 04 11 00 02 00 05 E4 10 03"),
    (Interrogate(0, 0, 5), Role.CONTROLLER, "10 02 01 00 00 05 04 F6 10 03"),
    (Connect(0, 0, 600, 300), Role.CONTROLLER, "10 02 02 00 42 58 2C 05 33 10 03"),
    (Connected(0, 2, 600, 300), Role.DEVICE, "10 02 04 02 42 58 2C 05 2F 10 03"),
    (Connect(0, 0, 16, 3), Role.CONTROLLER, "10 02 02 00 00 10 10 03 05 E6 10 03"),
    (Connect(0, 0, 228, 117), Role.CONTROLLER, "10 02 02 00 10 10 64 75 05 10 10 10 03"),
    (TallyDumpRequest(0, 1), Role.CONTROLLER, "10 02 15 01 02 E8 10 03"),
    (TallyDumpByte(0, 0, 0, (5, 9)), Role.DEVICE, "10 02 16 00 02 00 05 09 06 D4 10 03"),
    (TallyDumpWord(0, 1, 0, (5, 300, 7)), Role.DEVICE,
     "10 02 17 01 03 00 00 00 05 01 2C 00 07 0B A1 10 03"),
    (SourceNamesRequest(0, 0, 8), Role.CONTROLLER, "10 02 64 00 01 03 98 10 03"),
    (SourceNamesRequest(0, 0, 8, 300), Role.CONTROLLER, "10 02 65 00 01 01 2C 05 68 10 03"),
    (SourceNames(0, 0, 8, 0, ("CAM 1", "CAM 2")), Role.DEVICE,
     "10 02 6A 00 01 00 00 02 43 41 4D 20 31 20 20 20 43 41 4D 20 32 20 20 20 16 78 10 03"),
    (DestinationNamesRequest(0, 8), Role.CONTROLLER, "10 02 66 00 01 03 96 10 03"),
    (DestinationNames(0, 8, 0, ("MON 1",)), Role.DEVICE,
     "10 02 6B 00 01 00 00 01 4D 4F 4E 20 31 20 20 20 0E EA 10 03"),
    (Interrogate(0, 0, 2000, True), Role.CONTROLLER, "10 02 81 00 00 07 D0 05 A3 10 03"),
    (Connect(0, 0, 2000, 1500, True), Role.CONTROLLER,
     "10 02 82 00 00 07 D0 05 DC 07 BF 10 03"),
    (Tally(0, 0, 2000, 1500, True, status=0), Role.DEVICE,
     "10 02 83 00 00 07 D0 05 DC 00 08 BD 10 03"),
    (Connected(0, 0, 2000, 1500, True, status=0), Role.DEVICE,
     "10 02 84 00 00 07 D0 05 DC 00 08 BC 10 03"),
    (Connect(20, 17, 16, 16, True), Role.CONTROLLER,
     "10 02 82 14 11 00 10 10 00 10 10 07 32 10 03"),
    (TallyDumpRequest(0, 0, True), Role.CONTROLLER, "10 02 95 00 00 03 68 10 03"),
    (TallyDumpWord(0, 0, 1024, (1, 4000), True), Role.DEVICE,
     "10 02 97 00 00 02 04 00 00 01 0F A0 0A A9 10 03"),
    (SourceNamesRequest(0, 0, 12, None, True), Role.CONTROLLER, "10 02 E4 00 00 02 04 16 10 03"),
    (DestinationNamesRequest(0, 12, None, True), Role.CONTROLLER, "10 02 E6 00 02 03 15 10 03"),
    (DualStatusRequest(), Role.CONTROLLER, "10 02 08 01 F7 10 03"),
    (DualStatus(False, True, 0), Role.DEVICE, "10 02 09 02 00 03 F2 10 03"),
]


@pytest.mark.parametrize("message,sender,wire", EXAMPLES, ids=lambda v: repr(v)[:60])
def test_notes_worked_example_byte_for_byte(message, sender, wire):
    assert encode_frame(encode_message(message)).hex(" ").upper() == wire
    codec = Codec(sender)
    codec.send(message, 0.0)
    assert codec.data_to_send() == H(wire)
    peer = Codec(Role.DEVICE if sender is Role.CONTROLLER else Role.CONTROLLER)
    peer.receive_data(H(wire), 0.0)
    assert list(peer.events()) == [message]
    assert peer.data_to_send() == ACK_BYTES  # every valid frame is acknowledged


def test_checksum_and_stuffing_rules():
    # CHK makes DATA + BTC + CHK sum to 0 modulo 256 (notes §2)
    assert checksum(H("02 00 10 64 75")) == 0x10
    assert (sum(H("02 00 10 64 75")) + 5 + 0x10) & 0xFF == 0
    # SOM and EOM are never doubled, every 0x10 of DATA, BTC and CHK is
    frame = encode_frame(bytes([0x10] * 16))
    assert frame.startswith(b"\x10\x02") and frame.endswith(b"\x10\x03")
    assert frame[2:-2] == b"\x10\x10" * 17 + bytes([checksum(bytes([0x10] * 16))])
    assert ACK_BYTES == H("10 06") and NAK_BYTES == H("10 15")


def test_the_notes_reference_framing_function_agrees():
    def swp08_frame(data: bytes) -> bytes:  # notes §10, as printed there
        btc = len(data)
        chk = (-(sum(data) + btc)) & 0xFF
        body = bytes(data) + bytes([btc, chk])
        return b"\x10\x02" + body.replace(b"\x10", b"\x10\x10") + b"\x10\x03"

    for message, _, _ in EXAMPLES:
        data = encode_message(message)
        assert encode_frame(data) == swp08_frame(data)


# -- every message, one role against the other --------------------------------------------------

CONTROLLER_MESSAGES = [
    Interrogate(15, 15, 1023), Interrogate(255, 255, 65535, True), Connect(3, 4, 1023, 1023),
    Connect(0, 0, 0, 0, True), Maintenance(2, b"\x00"), DualStatusRequest(),
    ProtectInterrogate(1, 2, 200), ProtectInterrogate(1, 2, 5000, True),
    ProtectConnect(0, 1, 300, 1023), ProtectConnect(20, 1, 300, 4000, True),
    ProtectDisconnect(0, 1, 300, 7), ProtectDisconnect(0, 1, 300, 7, True),
    ProtectDeviceNameRequest(900), TallyDumpRequest(15, 0), TallyDumpRequest(16, 200, True),
    ImplementationRequest(), InvalidMessage(3), SourceNamesRequest(1, 2, 32, 65535),
    SourceNamesRequest(100, 2, 4, None, True), SourceNamesRequest(1, 2, 16, 7, True),
    DestinationNamesRequest(15, 16, 2000), DestinationNamesRequest(40, 4, 9, True),
    UpdateName(0, 8, 0, 1, 300, ("CAM 1", "CAM 2")), UpdateName(2, 16, 3, 0, 0, ("MAIN PGM",)),
    UnknownMessage(120, b"\x01\x02"),
]
DEVICE_MESSAGES = [
    Tally(2, 3, 1000, 999, source_bad=True), Tally(200, 3, 60000, 1, True),
    Tally(0, 0, 1, 2, True, status=7), Connected(0, 0, 896, 5), Connected(9, 9, 9, 9, True),
    DualStatus(True, False, 2), ProtectTally(0, 0, 3, 1, 7), ProtectTally(0, 0, 3, 3, 9000, True),
    ProtectConnected(1, 1, 1023, 2, 1023), ProtectConnected(1, 1, 1023, 2, 1023, True),
    ProtectDisconnected(0, 5, 6, 0, 0), ProtectDisconnected(0, 5, 6, 0, 0, True),
    ProtectDeviceName(1000, "DESK 12"), TallyDumpByte(0, 1, 255, (191, 0, 16)),
    TallyDumpWord(1, 1, 64, tuple(range(64))), TallyDumpWord(1, 1, 65530, (1, 2, 3), True),
    NamesUpdated(2**32 - 1, 5), ImplementationStatus((3, 4, 131), (1, 2)),
    ImplementationStatus((), ()), InvalidMessage(130),
    SourceNames(0, 0, 4, 0, tuple(f"S{i}" for i in range(32))),
    SourceNames(0, 20, 32, 10, ("A" * 32,) * 7, True),
    DestinationNames(3, 12, 1000, ("MON 1", "", "X")), DestinationNames(3, 12, 7, ("PGM",), True),
    UnknownMessage(86, b"\x00"),
]


def roundtrip(message: Message, sender: Role) -> list[object]:
    receiver = Codec(Role.DEVICE if sender is Role.CONTROLLER else Role.CONTROLLER)
    codec = Codec(sender)
    codec.send(message, 0.0)
    receiver.receive_data(codec.data_to_send(), 0.0)
    return list(receiver.events())


@pytest.mark.parametrize("message", CONTROLLER_MESSAGES, ids=repr)
def test_controller_message_reaches_device(message):
    assert roundtrip(message, Role.CONTROLLER) == [message]


@pytest.mark.parametrize("message", DEVICE_MESSAGES, ids=repr)
def test_device_message_reaches_controller(message):
    assert roundtrip(message, Role.DEVICE) == [message]


def test_each_role_refuses_to_send_the_others_messages():
    for message in (Tally(0, 0, 0, 0), Connected(0, 0, 0, 0), SourceNames(0, 0, 4, 0, ("a",))):
        with pytest.raises(ValueError, match="controller does not send"):
            Codec(Role.CONTROLLER).send(message)
    for message in (Connect(0, 0, 0, 0), Interrogate(0, 0, 0), UpdateName(0, 4, 0, 0, 0, ("a",))):
        with pytest.raises(ValueError, match="device does not send"):
            Codec(Role.DEVICE).send(message)


def test_each_role_reads_the_others_commands_as_unknown():
    # a CONNECTED sent to a device, a CONNECT sent to a controller: well formed, not theirs
    assert decode_message(Role.DEVICE, H("04 00 00 05 03")) == UnknownMessage(4, H("00 00 05 03"))
    assert decode_message(Role.CONTROLLER, H("02 00 00 05 03")) == UnknownMessage(
        2, H("00 00 05 03"))


@pytest.mark.parametrize("message", [
    Connect(16, 0, 0, 0), Connect(0, 0, 1024, 0), Interrogate(0, 0, 65536, True),
    Connect(0, 256, 0, 0, True), Tally(0, 0, 0, 0, True, source_bad=True),
    Tally(0, 0, 0, 0, status=0), SourceNames(0, 0, 8, 0, ("NINE CHAR",)),
    SourceNames(0, 0, 8, 0, ("ü",)), SourceNames(0, 0, 8, 0, ()), SourceNamesRequest(0, 0, 7),
    UpdateName(0, 32, 0, 0, 0, ("x",)), TallyDumpWord(0, 0, 65535, (1, 2)),
    TallyDumpByte(0, 0, 256, (1,)), TallyDumpByte(0, 0, 0, (256,)), Connect(-1, 0, 0, 0),
    Connect(True, 0, 0, 0), SourceNames(0, 0, 32, 0, ("A",) * 8),
])
def test_unsendable_message_is_a_value_error(message):
    role = Role.CONTROLLER if type(message) in (Connect, Interrogate, SourceNamesRequest,
                                                UpdateName) else Role.DEVICE
    with pytest.raises(ValueError):
        Codec(role).send(message)


def test_names_are_padded_with_spaces_and_read_back_without_padding():
    data = encode_message(SourceNames(0, 0, 8, 0, ("CAM 1",)))
    assert data.endswith(b"CAM 1   ")
    decoded = decode_message(Role.CONTROLLER, data[:-3] + b"\x00\x00\x00")
    assert decoded.names == ("CAM 1",)  # NUL padding accepted too (notes §6)
    odd = decode_message(Role.CONTROLLER, data[:-8] + b"A\x01B\xffC   ")
    assert odd.names == ("A?B?C",)


# -- fixture traces -----------------------------------------------------------------------------


def test_traces_are_there():
    assert len(GOOD) >= 7 and len(BAD) >= 10


@pytest.mark.parametrize("trace", GOOD, ids=lambda p: p.name)
def test_good_trace_whole_and_byte_by_byte(trace):
    role = reader_for(trace).role
    whole, bytewise = whole_and_bytewise(load(trace), role)
    assert whole == bytewise
    events, sent = whole
    assert "error" not in events and "frame error" not in events
    frames = [e for e in events if isinstance(e, Message)]
    assert sent == ACK_BYTES * len(frames)  # each frame acknowledged, nothing else said
    # what was parsed encodes to frames the same codec parses the same way
    again = b"".join(encode_frame(encode_message(m)) for m in frames)
    assert outcomes(Codec(role), [again]) == frames


@pytest.mark.parametrize("trace", BAD, ids=lambda p: p.name)
def test_bad_trace_raises_protocol_errors_and_recovers(trace):
    whole, bytewise = whole_and_bytewise(load(trace), reader_for(trace).role)
    assert whole == bytewise
    events, _ = whole
    assert "error" in events or "frame error" in events
    assert isinstance(events[-1], Message), "the frame after the bad ones must still parse"


def test_spec_examples_trace_means_what_it_says():
    events = outcomes(Codec(Role.CONTROLLER), [load(TRACES / "good" / "device-spec-examples.hex")])
    assert events[:2] == [Tally(1, 1, 1, 153), Connected(1, 1, 2, 0)]
    assert TallyDumpByte(0, 0, 0, (5, 9)) in events
    assert TallyDumpWord(0, 1, 0, (5, 300, 7)) in events
    assert SourceNames(0, 0, 8, 0, ("CAM 1", "CAM 2")) in events
    assert events[-1] == InvalidMessage(21)


def test_tolerated_deviations():
    def read(name: str) -> list[object]:
        return outcomes(Codec(Role.CONTROLLER), [load(TRACES / "good" / name)])

    assert read("device-ack-inside-frame.hex") == [Connected(0, 0, 5, 3), Connected(0, 0, 6, 4)]
    assert read("device-reply-before-ack.hex") == [Tally(0, 0, 5, 9)]
    codec = Codec(Role.CONTROLLER)
    assert outcomes(codec, [load(TRACES / "good" / "device-byte-count-off-by-one.hex")]) == [
        Connected(0, 0, 7, 2), Connected(0, 0, 8, 2)]
    assert codec.stats.skewed_byte_counts == 2
    variants = read("device-extended-variants.hex")
    assert variants[0] == Connected(0, 0, 2000, 1500, True, status=None)
    assert variants[1:3] == [DestinationNames(0, 4, 5, ("PGM",), True),
                             DestinationNames(0, 4, 6, ("PVW",), True)]
    assert variants[3] == SourceNames(0, 3, 12, 1030, ("ROBOCAM 1",), True)
    assert len(variants[4].sources) == 64
    protects = read("device-protects-and-names.hex")
    assert protects[1] == ProtectConnected(0, 1, 200, 2, 300)
    assert protects[3] == ProtectTally(0, 0, 2000, 3, 5000, True)
    assert protects[-1] == UnknownMessage(86, H("00 00 01 02"))


def test_damaged_frames_are_answered_with_nak_and_others_discarded():
    for name, reply in [("device-bad-checksum-then-good.hex", NAK_BYTES + ACK_BYTES),
                        ("device-bad-byte-count.hex", NAK_BYTES + ACK_BYTES),
                        ("device-too-short-frame.hex", NAK_BYTES * 2 + ACK_BYTES),
                        ("device-interrupted-frame.hex", ACK_BYTES),
                        ("device-garbage-between-frames.hex", ACK_BYTES * 2)]:
        codec = Codec(Role.CONTROLLER)
        outcomes(codec, [load(TRACES / "bad" / name)])
        assert codec.data_to_send() == reply, name
    codec = Codec(Role.CONTROLLER)
    codec.receive_data(load(TRACES / "bad" / "device-malformed-connected.hex"), 0.0)
    with pytest.raises(RemoteProtocolError, match=r"CONNECTED \(4\): takes 4 byte"):
        codec.next_event()
    assert codec.data_to_send() == ACK_BYTES  # well packaged: acknowledged (notes §3)


def test_garbage_is_reported_at_fixed_points_however_it_is_split():
    data = b"\xaa" * 600 + encode_frame(H("04 00 00 05 03"))
    for chunks in ([data], [data[i:i + 7] for i in range(0, len(data), 7)]):
        assert outcomes(Codec(Role.CONTROLLER), chunks) == [
            "frame error", "frame error", "frame error", Connected(0, 0, 5, 3)]


# -- the link layer (notes §3) --------------------------------------------------------------------


def test_stop_and_wait_sends_the_next_frame_only_after_the_ack():
    codec = Codec(Role.CONTROLLER)
    first, second = Connect(0, 0, 1, 1), Connect(0, 0, 2, 2)
    codec.send(first, 10.0)
    codec.send(second, 10.0)
    assert codec.data_to_send() == encode_frame(encode_message(first))
    assert codec.pending == 2 and codec.in_flight is first
    assert codec.next_deadline() == 11.0
    codec.receive_data(ACK_BYTES, 10.2)
    event = codec.next_event()
    assert isinstance(event, Delivered) and event.message is first
    assert codec.data_to_send() == encode_frame(encode_message(second))
    assert codec.next_deadline() == pytest.approx(11.2)
    codec.receive_data(ACK_BYTES + ACK_BYTES, 10.3)  # the second ACK is stray
    assert [type(e) for e in codec.events()] == [Delivered]
    assert codec.pending == 0 and codec.next_deadline() is None
    assert codec.stats.stray_acks == 1 and codec.stats.frames_sent == 2


def test_nak_and_silence_make_resends_and_five_retries_give_up():
    codec = Codec(Role.CONTROLLER, ack_timeout_s=1.0, retries=5)
    message = Interrogate(0, 0, 5)
    frame = encode_frame(encode_message(message))
    codec.send(message, 0.0)
    assert codec.data_to_send() == frame
    codec.receive_data(NAK_BYTES, 0.1)  # resent at once
    assert list(codec.events()) == []
    assert codec.data_to_send() == frame
    now = 0.1
    for _ in range(4):  # attempts 3 to 6, each after 1 s without an ACK
        codec.tick(now + 0.99)
        assert codec.data_to_send() == b""
        now += 1.0
        codec.tick(now)
        assert codec.data_to_send() == frame
    codec.tick(now + 1.0)
    assert list(codec.events()) == [Undelivered(message, 6, "no DLE ACK within 1 s")]
    assert codec.pending == 0 and codec.stats.retransmissions == 5


def test_a_frame_sent_without_the_time_is_timed_from_the_next_call_that_knows_it():
    codec = Codec(Role.CONTROLLER)
    codec.send(Connect(0, 0, 1, 1))
    assert codec.next_deadline() is None
    codec.tick(5.0)
    assert codec.next_deadline() == 6.0
    codec.tick(6.0)
    assert codec.data_to_send().count(b"\x10\x02") == 2  # sent, then re-sent once


def _is_connect(message) -> bool:
    return isinstance(message, Connect)


def test_withdraw_drops_queued_commands_and_never_re_sends_the_one_on_the_line():
    """A node that may no longer act (its fence expired) takes its commands back: those
    queued behind the one in flight never go out, and the one in flight is not sent
    again when its ACK is late; reads go on."""
    codec = Codec(Role.CONTROLLER, ack_timeout_s=1.0)
    first, second, read = Connect(0, 0, 1, 1), Connect(0, 0, 2, 2), Interrogate(0, 0, 5)
    for message in (first, second, read):
        codec.send(message, 10.0)
    assert codec.data_to_send() == encode_frame(encode_message(first))  # on the line
    assert codec.withdraw(_is_connect) == [second]
    codec.tick(11.0)  # no ACK for the first in time: not re-sent, the read goes next
    assert [type(e) for e in codec.events()] == [Withdrawn]
    assert codec.data_to_send() == encode_frame(encode_message(read))
    assert codec.stats.retransmissions == 0


def test_withdraw_takes_back_a_frame_or_a_re_send_not_yet_handed_out():
    codec = Codec(Role.CONTROLLER, ack_timeout_s=1.0)
    first, read = Connect(0, 0, 1, 1), Interrogate(0, 0, 5)
    codec.send(first, 0.0)
    codec.send(read, 0.0)
    assert codec.withdraw(_is_connect) == [first]  # never on the line: dropped
    assert codec.data_to_send() == encode_frame(encode_message(read))

    codec = Codec(Role.CONTROLLER, ack_timeout_s=1.0)
    codec.send(first, 0.0)
    assert codec.data_to_send() == encode_frame(encode_message(first))
    codec.tick(1.0)  # the re-send is queued for the line, but not handed out yet
    assert codec.withdraw(_is_connect) == []  # the first copy may have arrived: it waits
    assert codec.data_to_send() == b""
    codec.receive_data(ACK_BYTES, 1.5)  # a late ACK for it is still its own
    assert [type(e) for e in codec.events()] == [Delivered]


def test_replies_are_read_while_an_ack_is_awaited():
    codec = Codec(Role.CONTROLLER)
    ask = Interrogate(0, 0, 5)
    codec.send(ask, 0.0)
    codec.data_to_send()
    codec.receive_data(load(TRACES / "good" / "device-reply-before-ack.hex"), 0.01)
    assert list(codec.events()) == [Tally(0, 0, 5, 9), Delivered(ask)]
    assert codec.data_to_send() == ACK_BYTES


def test_manual_acks_skewed_counts_and_a_bounded_queue():
    device = Codec(Role.DEVICE, auto_ack=False, byte_count_skew=1, max_queue=2)
    device.receive_data(encode_frame(H("01 00 00 05")), 0.0)
    assert list(device.events()) == [Interrogate(0, 0, 5)]
    assert device.data_to_send() == b""
    device.send(Tally(0, 0, 5, 9), 0.0)
    device.acknowledge()
    sent = device.data_to_send()
    assert sent == encode_frame(H("03 00 00 05 09"), byte_count_skew=1) + ACK_BYTES
    controller = Codec(Role.CONTROLLER)
    controller.receive_data(sent, 0.0)
    assert list(controller.events()) == [Tally(0, 0, 5, 9)]
    device.send(Tally(0, 0, 6, 9), 0.0)
    device.send(Tally(0, 0, 7, 9), 0.0)
    with pytest.raises(OverflowError):
        device.send(Tally(0, 0, 8, 9), 0.0)
    assert device.clear_queue() == [Tally(0, 0, 6, 9), Tally(0, 0, 7, 9)]


# -- fuzzing: only events, FrameError or RemoteProtocolError ever come out ------------------------

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@FUZZ
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 10_000), max_size=8),
       role=st.sampled_from(Role))
def test_fuzz_random_bytes_give_the_same_outcomes_however_split(data, cuts, role):
    assert outcomes(Codec(role), split(data, cuts)) == outcomes(Codec(role), [data])


@FUZZ
@given(body=st.binary(min_size=1, max_size=260), role=st.sampled_from(Role),
       command=st.sampled_from([1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 21, 22, 23,
                                30, 97, 98, 99, 100, 101, 102, 103, 106, 107, 117, 129, 130,
                                131, 132, 138, 139, 140, 141, 142, 143, 149, 151, 228, 229,
                                230, 231, 234, 235]))
def test_fuzz_known_commands_with_random_bytes_in_valid_frames(body, role, command):
    data = (bytes([command]) + body)[:255]
    outcomes(Codec(role), [encode_frame(data)])


@st.composite
def mutated_trace(draw):
    data = bytearray(load(draw(st.sampled_from(GOOD + BAD))))
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
    assert outcomes(Codec(role), split(data, cuts)) == outcomes(Codec(role), [data])


# -- property: what one side sends, the other parses back unchanged ------------------------------

ml = st.integers(0, 15)
port = st.integers(0, 1023)
wide = st.integers(0, 255)
word = st.integers(0, 65535)
byte = st.integers(0, 255)
name_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=4).map(
    str.rstrip)
lengths = st.sampled_from([4, 8, 12, 16, 32])


def crosspointish(cls, flags: bool):
    normal = st.builds(cls, ml, ml, port, port, st.just(False),
                       **({"source_bad": st.booleans()} if flags else {}))
    extended = st.builds(cls, wide, wide, word, word, st.just(True),
                         **({"status": st.none() | byte} if flags else {}))
    return normal | extended


def protectish(cls, with_state: bool):
    state = (byte,) if with_state else ()
    return (st.builds(cls, ml, ml, port, *state, port, st.just(False))
            | st.builds(cls, wide, wide, word, *state, word, st.just(True)))


@st.composite
def names_message(draw, cls):
    length = draw(lengths)
    count = draw(st.integers(1, 7))
    first = draw(st.integers(0, 65535 - count + 1))
    names = tuple(draw(name_text) for _ in range(count))
    extended = draw(st.booleans())
    m, lv = (draw(wide), draw(wide)) if extended else (draw(ml), draw(ml))
    if cls is SourceNames:
        return SourceNames(m, lv, length, first, names, extended)
    return DestinationNames(m, length, first, names, extended)


controller_messages = st.one_of(
    crosspointish(Connect, False),
    st.builds(Interrogate, ml, ml, port) | st.builds(Interrogate, wide, wide, word, st.just(True)),
    st.builds(TallyDumpRequest, ml, ml) | st.builds(TallyDumpRequest, wide, wide, st.just(True)),
    st.builds(ProtectInterrogate, ml, ml, port)
    | st.builds(ProtectInterrogate, wide, wide, word, st.just(True)),
    protectish(ProtectConnect, False), protectish(ProtectDisconnect, False),
    st.builds(ProtectDeviceNameRequest, port),
    st.builds(SourceNamesRequest, ml, ml, lengths, st.none() | word)
    | st.builds(SourceNamesRequest, wide, wide, lengths, st.none() | word, st.just(True)),
    st.builds(DestinationNamesRequest, ml, lengths, st.none() | word)
    | st.builds(DestinationNamesRequest, wide, lengths, st.none() | word, st.just(True)),
    st.builds(Maintenance, byte, st.binary(max_size=4)), st.builds(InvalidMessage, byte),
    st.just(DualStatusRequest()), st.just(ImplementationRequest()),
    st.builds(UpdateName, st.integers(0, 3), st.sampled_from([4, 8, 12, 16]), wide, wide,
              st.integers(0, 65000), st.lists(name_text, min_size=1, max_size=5).map(tuple)),
)
device_messages = st.one_of(
    crosspointish(Tally, True), crosspointish(Connected, True),
    protectish(ProtectTally, True), protectish(ProtectConnected, True),
    protectish(ProtectDisconnected, True),
    st.builds(DualStatus, st.booleans(), st.booleans(), byte),
    st.builds(ProtectDeviceName, port, name_text),
    st.builds(TallyDumpByte, ml, ml, byte, st.lists(byte, min_size=1, max_size=64).map(tuple)),
    st.builds(TallyDumpWord, ml, ml, st.integers(0, 60000),
              st.lists(word, min_size=1, max_size=64).map(tuple), st.booleans()),
    st.builds(NamesUpdated, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.builds(ImplementationStatus, st.lists(byte, max_size=8).map(tuple),
              st.lists(byte, max_size=8).map(tuple)),
    st.builds(InvalidMessage, byte), names_message(SourceNames), names_message(DestinationNames),
)


@FUZZ
@given(message=controller_messages)
def test_property_controller_messages_roundtrip(message):
    assert roundtrip(message, Role.CONTROLLER) == [message]


@FUZZ
@given(message=device_messages)
def test_property_device_messages_roundtrip(message):
    assert roundtrip(message, Role.DEVICE) == [message]


@pytest.mark.parametrize("message", CONTROLLER_MESSAGES + DEVICE_MESSAGES, ids=repr)
def test_command_of_names_the_command_byte(message):
    assert command_of(message) == encode_message(message)[0]
