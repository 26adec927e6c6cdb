"""The SW-P-08 driver: the pure session (bytes -> reports, commands -> bytes) and its settings.

A scripted device answers the session through the codec's device role; the clock is passed in.
"""

from __future__ import annotations

import logging

import jsonschema
import pytest

from tieline.devices import LabelReport, ProtectReport, RequestRefused, SyncDone, TallyReport
from tieline.errors import InvalidRequest, LinkError, RemoteProtocolError, SettingsError
from tieline.model import Crosspoint, PortKind, Protect, ProtectKind, RouterSpec
from tieline.plugins import swp08
from tieline.plugins.swp08.codec import (
    ACK_BYTES,
    NAK_BYTES,
    Codec,
    Connect,
    Connected,
    DestinationNames,
    DestinationNamesRequest,
    Interrogate,
    InvalidMessage,
    Message,
    NamesUpdated,
    ProtectConnected,
    ProtectDeviceName,
    ProtectDeviceNameRequest,
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
    UpdateName,
    encode_frame,
    encode_message,
)
from tieline.plugins.swp08.driver import SWP08Driver, SWP08Session, WireLevel
from tieline.plugins.swp08.emulator import SWP08Emulator
from tieline.transports import SerialTransport

SPEC = RouterSpec("pb", "swp08", ("video", "audio"), 8, 4)


def frame(message: Message) -> bytes:
    return encode_frame(encode_message(message))


class Device:
    """A scripted device: reads what the session sends, answers with frames it chooses."""

    def __init__(self, session: SWP08Session) -> None:
        self.session = session
        self.codec = Codec(Role.DEVICE)
        self.now = 0.0

    def read(self) -> list[Message]:
        """Messages the session has sent since the last call (its ACKs left out)."""
        self.codec.receive_data(self.session.data_to_send(), self.now)
        out = [e for e in self.codec.events() if isinstance(e, Message)]
        self.codec.data_to_send()
        return out

    def say(self, *messages: Message, ack: bool = True, at: float | None = None) -> list:
        """ACK the session's frame in flight (unless ``ack`` is False), then send ``messages``."""
        if at is not None:
            self.now = at
        data = (ACK_BYTES if ack else b"") + b"".join(frame(m) for m in messages)
        return self.session.receive_data(data, self.now)

    def tick(self, at: float) -> list:
        self.now = at
        return self.session.tick(at)


def start(options: dict | None = None, spec: RouterSpec = SPEC,
          cls: type[SWP08Driver] = SWP08Driver) -> tuple[SWP08Driver, SWP08Session, Device]:
    driver = cls(spec, {"protects": "off", **(options or {})}, None)
    session = driver.new_session()
    session.connection_made(0.0)
    return driver, session, Device(session)


def sync(device: Device, *, names: bool = True) -> list:
    """Answer the start-up read like a small, complete device; the reports."""
    spec = device.session.spec
    reports = []
    assert device.read() == [TallyDumpRequest(0, 0)]
    reports += device.say(TallyDumpWord(0, 0, 0, tuple(range(spec.destinations))))
    assert device.read() == [TallyDumpRequest(0, 1)]
    reports += device.say(TallyDumpWord(0, 1, 0, (7,) * spec.destinations))
    if names:
        assert device.read() == [SourceNamesRequest(0, 0, 8)]
        reports += device.say(SourceNames(0, 0, 8, 0, tuple(f"CAM {i}" for i in range(8))))
        assert device.read() == [DestinationNamesRequest(0, 8)]
        reports += device.say(DestinationNames(0, 8, 0, ("PGM", "PVW", "AUX", "")))
    return reports


# -- start-up ------------------------------------------------------------------------------------


def test_start_up_reads_tallies_and_names_and_sends_no_route():
    driver, session, device = start()
    reports = sync(device)
    assert reports == [
        TallyReport(tuple(Crosspoint(0, d, d) for d in range(4))),
        TallyReport(tuple(Crosspoint(1, d, 7) for d in range(4))),
        LabelReport(PortKind.SOURCE, tuple((i, f"CAM {i}") for i in range(8))),
        LabelReport(PortKind.DESTINATION, ((0, "PGM"), (1, "PVW"), (2, "AUX"), (3, ""))),
        SyncDone(),
    ]
    assert device.say() == []  # the last ACK
    assert session.codec.stats.frames_sent == 4  # two dump requests, two name requests


def test_byte_dump_and_replies_before_their_ack_are_read():
    _, session, device = start({"names": False})
    device.read()
    # the device answers before it acknowledges (a deviation the notes list)
    assert device.say(TallyDumpByte(0, 0, 0, (3, 2, 1, 0)), ack=False) == [
        TallyReport(tuple(Crosspoint(0, d, 3 - d) for d in range(4)))]
    assert device.read() == []  # the second request still waits for the first one's ACK
    assert device.say() == []
    assert device.read() == [TallyDumpRequest(0, 1)]
    reports = device.say(TallyDumpWord(0, 1, 0, (1, 1)), TallyDumpWord(0, 1, 2, (1, 1)))
    assert reports[-1] == SyncDone()


def test_unimplemented_tally_dump_falls_back_to_interrogating_one_by_one(caplog):
    _, session, device = start({"names": False}, RouterSpec("pb", "swp08", ("video",), 8, 3))
    assert device.read() == [TallyDumpRequest(0, 0)]
    with caplog.at_level(logging.INFO):
        assert device.say(InvalidMessage(21)) == []
    assert "the tally dump (the device answered INVALID MESSAGE) covered 0 of 3" in caplog.text
    asked = []
    for dest in range(3):
        (message,) = device.read()  # one at a time: background reads never pile up
        asked.append(message)
        reports = device.say(Tally(0, 0, dest, 5))
    assert asked == [Interrogate(0, 0, d) for d in range(3)]
    assert reports == [TallyReport((Crosspoint(0, 2, 5),)), SyncDone()]


def test_silent_device_times_out_reads_and_still_comes_online(caplog):
    _, session, device = start(spec=RouterSpec("pb", "swp08", ("video",), 8, 3))
    device.read()
    # a dump that stops short: destination 2 never comes
    assert device.say(TallyDumpWord(0, 0, 0, (4, 4)), at=0.1)
    assert session.next_deadline() == pytest.approx(1.1)  # the names request's ACK timer
    assert device.read() == [SourceNamesRequest(0, 0, 8)]
    device.say(at=0.2)
    assert device.read() == [DestinationNamesRequest(0, 8)]
    device.say(DestinationNames(0, 8, 0, ("A", "B", "C")), at=0.3)
    with caplog.at_level(logging.INFO):
        assert device.tick(2.2) == []  # dump: 2 s without a reply -> interrogate the rest
        assert device.read() == [Interrogate(0, 0, 2)]
        device.say(at=2.3)  # acknowledged, never answered; names never answered either
        reports = device.tick(4.4)
    assert reports == [SyncDone()]
    assert "covered 2 of 3 destinations; interrogating the other 1" in caplog.text
    assert "1 of 3 destinations did not answer" in caplog.text
    assert "the device sent 0 of 8 source names" in caplog.text


# -- routes ---------------------------------------------------------------------------------------


def test_route_is_one_connect_per_crosspoint_confirmed_by_connected():
    _, session, device = start()
    sync(device)
    device.say()
    session.route([Crosspoint(0, 2, 5), Crosspoint(1, 2, 5)], "alice")
    assert device.read() == [Connect(0, 0, 2, 5)]  # the second waits for the ACK
    reports = device.say(Connected(0, 0, 2, 5), at=1.0)
    assert reports == [TallyReport((Crosspoint(0, 2, 5),))]
    assert device.read() == [Connect(0, 1, 2, 5)]
    assert device.say(Connected(0, 1, 2, 5), at=1.1) == [TallyReport((Crosspoint(1, 2, 5),))]
    assert device.tick(5.0) == [] and device.read() == []  # confirmed: no fallback


def test_unconfirmed_route_is_interrogated_once():
    _, session, device = start()
    sync(device)
    device.say()
    session.route([Crosspoint(0, 1, 1)], "alice")
    device.read()
    device.say(at=1.0)  # ACK, but no CONNECTED: the route was already set, say
    assert session.next_deadline() == pytest.approx(1.0 + SWP08Driver.confirm_fallback_s)
    device.tick(1.6)
    assert device.read() == []
    device.tick(2.0)
    assert device.read() == [Interrogate(0, 0, 1)]
    assert device.say(Tally(0, 0, 1, 1), at=2.1) == [TallyReport((Crosspoint(0, 1, 1),))]
    device.tick(9.0)
    assert device.read() == []


def test_connect_refused_by_a_device_protect_names_its_owner():
    driver, session, device = start({"protects": "read"})
    sync(device)
    device.say()
    assert isinstance(device.read()[0], ProtectInterrogate)  # the protect read begins
    reports = device.say(ProtectConnected(0, 0, 3, 1, 7))
    assert reports == [ProtectReport(0, 3, Protect(ProtectKind.PROTECT, "device 7"))]
    session.route([Crosspoint(0, 3, 6)], "alice")
    # the device keeps source 3 and says so (what a protected CONNECT gives: notes §14)
    reports = device.say(Connected(0, 0, 3, 3))
    assert reports[1] == RequestRefused(
        0, 3, "destination 4 on level video is protected by device 7 at the router; it still "
        "takes source 4", "device 7")
    assert reports[2] == ProtectReport(0, 3, Protect(ProtectKind.PROTECT, "device 7"))


def test_invalid_message_after_a_connect_refuses_it():
    _, session, device = start()
    sync(device)
    device.say()
    session.route([Crosspoint(1, 0, 7)], "alice")
    device.read()
    device.say()
    assert device.say(InvalidMessage(2), ack=False) == [
        RequestRefused(1, 0, "the router rejected CONNECT of source 8 to destination 1 "
                             "(INVALID MESSAGE: outside its size?)")]


def test_unacknowledged_frames_drop_the_link_after_the_retries():
    _, session, device = start({"retries": 2, "ack_timeout_ms": 100})
    assert device.read() == [TallyDumpRequest(0, 0)]
    device.tick(0.15)
    device.tick(0.3)
    assert device.read() == [TallyDumpRequest(0, 0)] * 2
    with pytest.raises(LinkError, match=r"did not acknowledge TallyDumpRequest after 3 attempts "
                                        r"\(no DLE ACK within 0.1 s\)"):
        device.tick(0.45)


def test_keepalive_is_a_real_interrogate():
    spec = RouterSpec("pb", "swp08", ("video",), 8, 4)
    _, session, device = start({"names": False, "level_numbers": {
        "video": {"matrix": 2, "level": 5}}}, spec)
    assert device.read() == [TallyDumpRequest(2, 5)]
    assert device.say(TallyDumpWord(2, 5, 0, (1, 2, 3, 4)))[-1] == SyncDone()
    session.keepalive(3.0)
    assert device.read() == [Interrogate(2, 5, 0)]
    assert device.say(Tally(2, 5, 0, 1)) == [TallyReport((Crosspoint(0, 0, 1),))]


# -- damage ---------------------------------------------------------------------------------------


def test_damaged_frames_are_nacked_logged_once_and_too_many_drop_the_link(caplog):
    _, session, device = start()
    sync(device)
    device.say()
    bad = frame(Connected(0, 0, 1, 1))[:-3] + b"\x00\x10\x03"  # wrong checksum
    session.data_to_send()
    with caplog.at_level(logging.DEBUG):
        for _ in range(6):
            assert session.receive_data(bad, 1.0) == []
            assert session.data_to_send() == NAK_BYTES
        assert session.receive_data(frame(Connected(0, 0, 1, 1)), 1.0) == [
            TallyReport((Crosspoint(0, 1, 1),))]
    assert caplog.text.count("WARNING") == 1
    assert "damaged data from the device (bad checksum" in caplog.text
    with pytest.raises(RemoteProtocolError, match="7 damaged frames or garbage runs in a row"):
        session.receive_data(bad * 7, 2.0)


def test_garbage_between_frames_is_discarded_and_malformed_content_raises():
    _, session, device = start()
    sync(device)
    device.say()
    reports = session.receive_data(b"\xff\xfegarbage" + frame(Connected(0, 0, 2, 2)), 1.0)
    assert reports == [TallyReport((Crosspoint(0, 2, 2),))]
    with pytest.raises(RemoteProtocolError, match=r"CONNECTED \(4\): takes 4 byte"):
        session.receive_data(encode_frame(bytes([4, 0, 0, 5])), 1.0)


# -- protects and names ---------------------------------------------------------------------------


def test_protects_are_read_in_the_background_and_mirrored_read_only():
    spec = RouterSpec("pb", "swp08", ("video",), 4, 2)
    driver, session, device = start({"protects": "read", "names": False}, spec)
    device.read()
    assert device.say(TallyDumpWord(0, 0, 0, (0, 1))) == [
        TallyReport((Crosspoint(0, 0, 0), Crosspoint(0, 1, 1))), SyncDone()]
    assert device.read() == [ProtectInterrogate(0, 0, 0)]
    assert device.say(ProtectTally(0, 0, 0, 0, 0)) == []
    assert device.read() == [ProtectInterrogate(0, 0, 1)]
    reports = device.say(ProtectTally(0, 0, 1, 2, 300))
    assert reports == [ProtectReport(0, 1, Protect(ProtectKind.LOCK, "device 300"))]
    assert device.read() == [ProtectDeviceNameRequest(300)]
    reports = device.say(ProtectDeviceName(300, "MCR PNL"))
    assert reports == [ProtectReport(0, 1, Protect(ProtectKind.LOCK, "device 300 (MCR PNL)"))]
    assert device.say(ProtectDisconnected(0, 0, 1, 0, 300)) == [ProtectReport(0, 1, None)]
    assert driver.protect_mirror == {}
    # a protect the driver saw on an earlier connection is cleared when the new one reads none
    driver.protect_mirror[(0, 0)] = (1, 9)
    session2 = driver.new_session()
    session2.connection_made(10.0)
    device2 = Device(session2)
    device2.read()
    device2.say(TallyDumpWord(0, 0, 0, (0, 1)))
    device2.read()
    assert device2.say(ProtectTally(0, 0, 0, 0, 0)) == [ProtectReport(0, 0, None)]


def test_names_updated_reads_names_again():
    _, session, device = start()
    sync(device)
    device.say()
    device.say(NamesUpdated(1, 3), ack=False)
    assert device.read() == [SourceNamesRequest(0, 0, 8)]
    assert device.say(SourceNames(0, 0, 8, 2, ("NEW",))) == [
        LabelReport(PortKind.SOURCE, ((2, "NEW"),))]


def test_label_write_is_update_name_then_a_read_back():
    _, session, device = start({"name_length": 12})
    device.read()
    session.set_label(PortKind.DESTINATION, 3, "STUDIO B PGM")
    session.set_label(PortKind.SOURCE, 1, "")
    messages = []
    for _ in range(8):
        device.say()
        messages += device.read()
    assert [m for m in messages if not isinstance(m, TallyDumpRequest)
            and m != SourceNamesRequest(0, 0, 12) and m != DestinationNamesRequest(0, 12)] == [
        UpdateName(2, 12, 0, 0, 3, ("STUDIO B PGM",)), DestinationNamesRequest(0, 12, 3),
        UpdateName(0, 12, 0, 0, 1, ("",)), SourceNamesRequest(0, 0, 12, 1)]
    for text in ("x" * 13, "trailing ", "tab\there", "Kamera ü"):
        with pytest.raises(InvalidRequest, match="at most 12 printable ASCII"):
            session.set_label(PortKind.SOURCE, 0, text)
    _, session32, _ = start({"name_length": 32})
    with pytest.raises(InvalidRequest, match="cannot write 32-character names"):
        session32.set_label(PortKind.SOURCE, 0, "x")


# -- the driver and its settings --------------------------------------------------------------------


def test_plugin_registers_the_driver_and_emulator_with_their_capabilities():
    assert swp08.tieline_router_drivers() == [SWP08Driver]
    assert swp08.tieline_emulators() == [SWP08Emulator]
    assert SWP08Driver.name == "swp08" and SWP08Driver.transports == ("tcp", "serial")
    assert SWP08Driver.transport_defaults == {
        "serial": {"baudrate": 38400, "bytesize": 8, "parity": "N", "stopbits": 1}}
    assert SWP08Driver.device_protects == frozenset() and SWP08Driver.device_labels
    assert SWP08Emulator.serial and SWP08Emulator.serial_defaults["baudrate"] == 38400


def test_settings_schema():
    schema = SWP08Driver.settings_schema
    jsonschema.validate({"matrix": 3, "level_numbers": {"video": 0, "audio": {"matrix": 1,
                                                                               "level": 4}},
                         "extended_commands": "always", "name_length": 16, "names": False,
                         "protects": "off", "ack_timeout_ms": 50, "retries": 0}, schema)
    for bad in ({"matrix": 256}, {"level_numbers": {"video": -1}}, {"name_length": 10},
                {"level_numbers": {"video": {"matrix": 1}}}, {"extended_commands": "never"},
                {"ack_timeout_ms": 5}, {"retries": 11}, {"protects": "write"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_level_numbers_map_tieline_levels_onto_the_wire():
    spec = RouterSpec("pb", "swp08", ("video", "audio1", "audio2"), 8, 8)
    driver = SWP08Driver(spec, {"matrix": 2, "level_numbers": {
        "audio1": 7, "audio2": {"matrix": 20, "level": 3}}}, None)
    assert driver.wire_levels == (WireLevel(2, 0), WireLevel(2, 7), WireLevel(20, 3))
    assert driver.extended_for(WireLevel(2, 7)) is False
    assert driver.extended_for(WireLevel(20, 3)) is True  # matrix above 15 (notes §4.3)
    assert driver.extended_for(WireLevel(2, 7), 1023) is False
    assert driver.extended_for(WireLevel(2, 7), 1024) is True
    assert SWP08Driver(spec, {"extended_commands": "always"}, None).extended_for(WireLevel(0, 0))


def test_settings_problems_no_schema_can_state():
    spec = RouterSpec("pb", "swp08", ("video", "audio"), 8, 8)
    assert SWP08Driver.check(spec, {"level_numbers": {"vidoe": 1}}) == [
        ("level_numbers", "'vidoe' is not one of the router's levels (video, audio)")]
    problems = SWP08Driver.check(spec, {"level_numbers": {"audio": 0}})
    assert problems == [("level_numbers", "levels 'video' and 'audio' are both SW-P-08 matrix 0 "
                         "level 0; give each level its own")]
    with pytest.raises(SettingsError, match="both SW-P-08 matrix 0 level 0"):
        SWP08Driver(spec, {"level_numbers": {"audio": 0}}, None)


def test_large_routers_use_extended_commands():
    spec = RouterSpec("big", "swp08", ("video",), 4096, 2000)
    _, session, device = start({"names": False}, spec)
    assert device.read() == [TallyDumpRequest(0, 0, True)]
    device.say(*[TallyDumpWord(0, 0, first, (9,) * 64, True) for first in range(0, 1984, 64)],
               TallyDumpWord(0, 0, 1984, (9,) * 16, True))
    session.route([Crosspoint(0, 1999, 4000), Crosspoint(0, 5, 6)], "alice")
    assert device.read() == [Connect(0, 0, 1999, 4000, True)]
    device.say(Connected(0, 0, 1999, 4000, True, status=0))
    assert device.read() == [Connect(0, 0, 5, 6, False)]


def test_sync_timeout_grows_with_the_router_and_the_line():
    spec = RouterSpec("big", "swp08", tuple(f"l{i}" for i in range(16)), 1024, 1024)
    serial = SerialTransport({"type": "serial", "device": "/dev/null"},
                             defaults=SWP08Driver.transport_defaults["serial"])
    assert SWP08Driver(spec, {}, serial).sync_timeout_s == pytest.approx(
        10 + 2 * 16 * 1024 * 26 / 3840)
    small = RouterSpec("s", "swp08", ("video",), 8, 8)
    assert SWP08Driver(small, {}, None).sync_timeout_s == SWP08Driver.sync_timeout_s
