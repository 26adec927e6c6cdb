"""The Videohub driver: the pure session (bytes -> reports, commands -> bytes) and the driver."""

from __future__ import annotations

import logging
from pathlib import Path

import jsonschema
import pytest

from tieline.devices import LabelRefused, LabelReport, ProtectReport, RequestRefused, SyncDone, TallyReport
from tieline.errors import InvalidRequest, LinkError, Refused, RemoteProtocolError
from tieline.model import UNKNOWN, Crosspoint, PortKind, Protect, ProtectKind, RouterSpec
from tieline.plugins import videohub
from tieline.plugins.videohub.driver import (
    OTHER_OWNER,
    OWN_OWNER,
    VideohubDriver,
    VideohubSession,
)
from tieline.plugins.videohub.emulator import VideohubEmulator

TRACES = Path(__file__).parents[3] / "fixtures" / "videohub" / "good"
SPEC = RouterSpec("hub", "videohub", ("video",), 12, 12)
PROTECT = ProtectKind.PROTECT


def driver(spec: RouterSpec = SPEC, **options) -> VideohubDriver:
    return VideohubDriver(spec, options, None)


def connected(drv: VideohubDriver | None = None, trace: str | None = None,
              now: float = 0.0) -> VideohubSession:
    session = (drv or driver()).new_session()
    session.connection_made(now)
    assert session.data_to_send() == b"PING:\n\n"  # nothing but a PING at start [VH §3.3]
    if trace is not None:
        session.receive_data((TRACES / trace).read_bytes() + b"ACK\n\n", now)
    return session


def online(drv: VideohubDriver | None = None) -> VideohubSession:
    return connected(drv, "device-prelude-2.8-cleanswitch.trace")


def of(reports, kind):
    return [r for r in reports if isinstance(r, kind)]


# -- the status dump -----------------------------------------------------------------------


def test_prelude_with_end_prelude_becomes_reports_and_one_sync_done():
    session = connected()
    data = (TRACES / "device-prelude-2.8-cleanswitch.trace").read_bytes()
    reports = session.receive_data(data, 1.0)
    assert [type(r) for r in reports] == [
        LabelReport, LabelReport, ProtectReport, ProtectReport, TallyReport, SyncDone]
    assert reports[0].kind is PortKind.SOURCE and reports[0].labels[1] == (1, "Camera 2  wide ")
    assert reports[1].labels[11] == (11, "Output 12")
    # only the locked outputs are reported (nothing was known before)
    assert reports[2] == ProtectReport(0, 2, Protect(PROTECT, OWN_OWNER))
    assert reports[3] == ProtectReport(0, 5, Protect(PROTECT, OTHER_OWNER))
    assert reports[4].crosspoints[0] == Crosspoint(0, 0, 4)
    assert session.version == "2.8" and session.device.friendly_name == "MCR CleanSwitch"
    assert session.receive_data(b"ACK\n\n", 1.1) == []  # the PING's ACK: nothing more
    assert session.data_to_send() == b""


def test_prelude_byte_by_byte_gives_the_same_reports():
    data = (TRACES / "device-prelude-2.8-cleanswitch.trace").read_bytes()
    whole = connected().receive_data(data, 1.0)
    session = connected()
    reports = [r for i in range(len(data)) for r in session.receive_data(data[i:i + 1], 1.0)]
    assert reports == whole


def test_old_firmware_without_end_prelude_is_done_at_the_ack_of_the_ping():
    spec = RouterSpec("hub", "videohub", ("video", "rs422"), 4, 4)
    session = connected(driver(spec, tables=["video", "serial"]))
    data = (TRACES / "device-prelude-2.3-universal.trace").read_bytes()
    reports = session.receive_data(data, 1.0)
    assert not of(reports, SyncDone)
    tallies = [xp for r in of(reports, TallyReport) for xp in r.crosspoints]
    assert Crosspoint(0, 1, 3) in tallies
    assert Crosspoint(1, 0, 2) in tallies and Crosspoint(1, 1, UNKNOWN) in tallies  # -1
    assert ProtectReport(0, 1, Protect(PROTECT, OTHER_OWNER)) in reports
    assert ProtectReport(1, 2, Protect(PROTECT, OWN_OWNER)) in reports  # serial port lock
    assert session.receive_data(b"ACK\n\n", 1.1) == [SyncDone()]


def test_old_firmware_that_never_answers_the_ping_is_done_after_a_quiet_moment():
    session = connected()
    data = (TRACES / "device-prelude-2.3-universal.trace").read_bytes()
    assert not of(session.receive_data(data, 1.0), SyncDone)
    assert session.next_deadline() == pytest.approx(1.3)
    assert session.tick(1.2) == []
    assert session.tick(1.3) == [SyncDone()]
    assert session.next_deadline() is None


def test_ack_before_the_routing_table_does_not_end_the_dump():
    session = connected()
    assert session.receive_data(b"VIDEOHUB DEVICE:\nVideo outputs: 12\n\nACK\n\n", 1.0) == []
    reports = session.receive_data(b"VIDEO OUTPUT ROUTING:\n0 1\n\n", 1.5)
    assert not of(reports, SyncDone)
    assert session.tick(1.8) == [SyncDone()]


def test_device_not_present_is_a_link_error():
    session = connected()
    with pytest.raises(LinkError, match="no router is attached to the Videohub Server"):
        session.receive_data(b"PROTOCOL PREAMBLE:\nVersion: 2.3\n\n"
                             b"VIDEOHUB DEVICE:\nDevice present: false\n\n", 1.0)
    with pytest.raises(LinkError, match="firmware needs updating"):
        connected().receive_data(b"VIDEOHUB DEVICE:\nDevice present: needs_update\n\n", 1.0)


def test_garbage_raises_remote_protocol_error():
    with pytest.raises(RemoteProtocolError):
        online().receive_data(b"\x00\x01 garbage\n\n", 2.0)


def test_unknown_blocks_and_unparsed_lines_are_logged_once(caplog):
    drv = driver()
    session = online(drv)
    with caplog.at_level(logging.DEBUG, logger="tieline.plugins.videohub"):
        for _ in range(2):
            session.receive_data(b"SOMETHING NEW:\n1 x\n\nVIDEO OUTPUT ROUTING:\n0 1\nbad\n\n", 2)
        online(drv).receive_data(b"SOMETHING NEW:\n1 x\n\n", 3.0)  # next connection too
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in infos] == [
        "router 'hub': skipping the unknown block 'SOMETHING NEW' the device sends"]
    assert [r.getMessage() for r in warnings] == [
        "router 'hub': ignoring 1 line(s) of VIDEO OUTPUT ROUTING that do not parse, e.g. 'bad'"]


def test_size_and_version_differences_are_logged_once(caplog):
    drv = driver(RouterSpec("hub", "videohub", ("video",), 16, 16))
    with caplog.at_level(logging.WARNING):
        online(drv)
        online(drv)
        connected(drv).receive_data(b"PROTOCOL PREAMBLE:\nVersion: 3.0\n\n", 1.0)
    assert caplog.text.count("the device's video table has 12 sources and 12 destinations; "
                             "settings say 16 and 16 for level 'video'") == 1
    assert "the device speaks Videohub protocol 3.0" in caplog.text


# -- routes ----------------------------------------------------------------------------------


def test_route_is_one_block_and_confirmed_by_the_routing_block():
    session = online()
    session.route([Crosspoint(0, 7, 2), Crosspoint(0, 1, 5)], "alice")
    assert session.data_to_send() == b"VIDEO OUTPUT ROUTING:\n7 2\n1 5\n\n"
    assert session.receive_data(b"ACK\n\n", 2.0) == []
    reports = session.receive_data(b"VIDEO OUTPUT ROUTING:\n7 2\n1 5\n\n", 2.01)
    assert reports == [TallyReport((Crosspoint(0, 7, 2), Crosspoint(0, 1, 5)))]
    assert session.next_deadline() is None  # nothing left to confirm


def test_nak_refuses_at_once_and_names_the_lock_owner():
    session = online()  # output 6 (index 5) is locked by another client
    session.route([Crosspoint(0, 5, 1), Crosspoint(0, 4, 1)], "alice")
    session.data_to_send()
    reports = session.receive_data(b"NAK\n\n", 2.0)
    assert reports == [
        RequestRefused(0, 5, "the Videohub refused to route output 6 (NAK); output 6 is locked "
                             f"by {OTHER_OWNER}", OTHER_OWNER),
        RequestRefused(0, 4, "the Videohub refused to route output 5 (NAK)", None),
    ]


def test_ack_then_unchanged_route_is_refused():
    session = online()
    session.route([Crosspoint(0, 5, 1)], "alice")
    session.receive_data(b"ACK\n\n", 2.0)
    reports = session.receive_data(b"VIDEO OUTPUT ROUTING:\n5 5\n\n", 2.0)
    assert reports == [TallyReport((Crosspoint(0, 5, 5),)), RequestRefused(
        0, 5, f"the Videohub acknowledged the route but kept output 6 on input 6; output 6 "
              f"is locked by {OTHER_OWNER}", OTHER_OWNER)]


def test_other_clients_changes_before_the_ack_are_updates_not_refusals():
    session = online()
    session.route([Crosspoint(0, 3, 9)], "alice")
    reports = session.receive_data(b"VIDEO OUTPUT ROUTING:\n3 1\n\nACK\n\n", 2.0)
    assert reports == [TallyReport((Crosspoint(0, 3, 1),))]
    assert session.receive_data(b"VIDEO OUTPUT ROUTING:\n3 9\n\n", 2.01) == [
        TallyReport((Crosspoint(0, 3, 9),))]


def test_a_newer_request_for_the_same_output_decides_it():
    session = online()
    session.route([Crosspoint(0, 3, 5)], "alice")
    session.route([Crosspoint(0, 3, 6)], "bob")
    # alice's request is refused: it must not refuse bob's, which names the same output
    assert session.receive_data(b"NAK\n\n", 2.0) == []
    assert session.receive_data(b"ACK\n\nVIDEO OUTPUT ROUTING:\n3 6\n\n", 2.1) == [
        TallyReport((Crosspoint(0, 3, 6),))]
    assert session.next_deadline() is None


def test_ack_and_no_status_asks_for_the_whole_table_after_the_grace():
    session = online(driver(confirm_grace_ms=100))
    session.route([Crosspoint(0, 0, 4), Crosspoint(0, 1, 7)], "alice")  # 1 <- 4 already set
    session.data_to_send()
    session.receive_data(b"ACK\n\nVIDEO OUTPUT ROUTING:\n1 7\n\n", 2.0)
    assert session.next_deadline() == pytest.approx(2.1)
    assert session.tick(2.05) == [] and session.data_to_send() == b""
    assert session.tick(2.1) == []
    assert session.data_to_send() == b"VIDEO OUTPUT ROUTING:\n\n"  # a read, never a route
    assert session.next_deadline() is None  # one request at a time
    full = b"VIDEO OUTPUT ROUTING:\n" + b"".join(b"%d %d\n" % (o, 4 if o == 0 else o)
                                                  for o in range(12)) + b"\n"
    reports = session.receive_data(b"ACK\n\n" + full, 2.2)
    assert of(reports, RequestRefused) == []
    assert Crosspoint(0, 0, 4) in reports[0].crosspoints


def test_whole_table_not_showing_the_route_refuses_it():
    session = online(driver(confirm_grace_ms=100))
    session.route([Crosspoint(0, 2, 8)], "alice")
    session.receive_data(b"ACK\n\n", 2.0)
    session.tick(2.2)
    session.data_to_send()
    reports = session.receive_data(b"ACK\n\nVIDEO OUTPUT ROUTING:\n2 2\n\n", 2.3)
    assert of(reports, RequestRefused) == [RequestRefused(
        0, 2, "the Videohub acknowledged the route but kept output 3 on input 3 (another "
              "client may have routed it at the same time)", None)]


def test_refused_status_request_refuses_what_waits_for_it(caplog):
    session = online(driver(confirm_grace_ms=100))
    session.route([Crosspoint(0, 2, 8)], "alice")
    session.receive_data(b"ACK\n\n", 2.0)
    session.tick(2.2)
    with caplog.at_level(logging.WARNING):
        reports = session.receive_data(b"NAK\n\n", 2.3)
    assert "refused to send VIDEO OUTPUT ROUTING (NAK)" in caplog.text
    assert [r.destination for r in reports] == [2]


def test_level_without_a_table_is_refused_before_anything_is_sent():
    spec = RouterSpec("hub", "videohub", ("video", "audio"), 12, 12)
    session = online(driver(spec))
    with pytest.raises(Refused, match="level 'audio' drives no Videohub table"):
        session.route([Crosspoint(0, 1, 1), Crosspoint(1, 1, 1)], "alice")
    with pytest.raises(Refused):
        session.protect(1, 0, PROTECT, "alice")
    assert session.data_to_send() == b""


def test_monitoring_table_is_a_second_level():
    spec = RouterSpec("hub", "videohub", ("video", "mon"), 12, 12)
    session = online(driver(spec, tables=["video", "monitoring"]))
    session.route([Crosspoint(0, 1, 2), Crosspoint(1, 1, 2)], "alice")
    assert session.data_to_send() == (b"VIDEO OUTPUT ROUTING:\n1 2\n\n"
                                      b"VIDEO MONITORING OUTPUT ROUTING:\n1 2\n\n")
    reports = session.receive_data(
        b"ACK\n\nVIDEO OUTPUT ROUTING:\n1 2\n\nACK\n\nVIDEO MONITORING OUTPUT ROUTING:\n1 2\n\n"
        b"MONITORING OUTPUT LOCKS:\n0 L\n\n", 2.0)
    assert reports == [TallyReport((Crosspoint(0, 1, 2),)), TallyReport((Crosspoint(1, 1, 2),)),
                       ProtectReport(1, 0, Protect(PROTECT, OTHER_OWNER))]


# -- locks (protects) ------------------------------------------------------------------------


def test_protect_takes_the_lock_and_names_the_user_who_asked():
    drv = driver()
    session = online(drv)
    session.protect(0, 3, PROTECT, "alice")
    assert session.data_to_send() == b"VIDEO OUTPUT LOCKS:\n3 O\n\n"
    reports = session.receive_data(b"ACK\n\nVIDEO OUTPUT LOCKS:\n3 O\n\n", 2.0)
    assert reports == [ProtectReport(0, 3, Protect(PROTECT, "alice"))]
    # after a reconnect the device still shows it ours: nothing changes, alice keeps it
    again = connected(drv)
    reports = again.receive_data((TRACES / "device-prelude-2.8-cleanswitch.trace").read_bytes()
                                 .replace(b"3 U\n4 U", b"3 O\n4 U"), 3.0)
    assert not [r for r in of(reports, ProtectReport) if r.destination == 3]
    again.receive_data(b"VIDEO OUTPUT LOCKS:\n3 U\n\n", 3.1)
    assert again.receive_data(b"VIDEO OUTPUT LOCKS:\n3 O\n\n", 3.2) == [
        ProtectReport(0, 3, Protect(PROTECT, OWN_OWNER))]  # taken again, not by tieline


def test_protect_refused_when_another_client_holds_the_lock():
    session = online()
    session.protect(0, 5, PROTECT, "alice")
    assert session.receive_data(b"NAK\n\n", 2.0) == [RequestRefused(
        0, 5, f"the Videohub refused to lock output 6 (NAK); output 6 is locked by "
              f"{OTHER_OWNER}", OTHER_OWNER)]
    session.protect(0, 4, PROTECT, "alice")
    reports = session.receive_data(b"ACK\n\nVIDEO OUTPUT LOCKS:\n4 L\n\n", 2.1)
    assert reports == [ProtectReport(0, 4, Protect(PROTECT, OTHER_OWNER)), RequestRefused(
        0, 4, f"the Videohub did not lock output 5; output 5 is locked by {OTHER_OWNER}",
        OTHER_OWNER)]


def test_release_sends_u_for_our_locks_and_f_to_force_someone_elses():
    session = online()
    session.release(0, 2, "admin", False)
    session.release(0, 5, "admin", True)
    session.release(0, 5, "admin", False)
    assert session.data_to_send() == (b"VIDEO OUTPUT LOCKS:\n2 U\n\nVIDEO OUTPUT LOCKS:\n5 F\n\n"
                                      b"VIDEO OUTPUT LOCKS:\n5 U\n\n")
    reports = session.receive_data(b"ACK\n\nVIDEO OUTPUT LOCKS:\n2 U\n\nACK\n\n"
                                   b"VIDEO OUTPUT LOCKS:\n5 U\n\nNAK\n\n", 2.0)
    assert reports == [ProtectReport(0, 2, None), ProtectReport(0, 5, None)]


def test_a_tieline_lock_is_not_held_by_the_device():
    with pytest.raises(InvalidRequest, match="protects only"):
        online().protect(0, 1, ProtectKind.LOCK, "alice")


# -- labels and keepalive ----------------------------------------------------------------------


def test_label_is_sent_and_confirmed_by_the_label_block():
    session = online()
    session.set_label(PortKind.DESTINATION, 6, "new output label seven")
    session.set_label(PortKind.SOURCE, 0, "")
    assert session.data_to_send() == (b"OUTPUT LABELS:\n6 new output label seven\n\n"
                                      b"INPUT LABELS:\n0 \n\n")
    reports = session.receive_data(b"ACK\n\nOUTPUT LABELS:\n6 new output label seven\n\n"
                                   b"NAK\n\n", 2.0)
    assert reports == [
        LabelReport(PortKind.DESTINATION, ((6, "new output label seven"),)),
        LabelRefused(PortKind.SOURCE, 0, "the Videohub did not take the label '' for input 1 (NAK)"),
    ]


def test_unsendable_label_is_an_invalid_request():
    with pytest.raises(InvalidRequest, match="line break or control character"):
        online().set_label(PortKind.SOURCE, 0, "two\nlines")


def test_keepalive_is_a_ping_and_its_ack_is_consumed():
    session = online()
    session.keepalive(5.0)
    assert session.data_to_send() == b"PING:\n\n"
    session.route([Crosspoint(0, 1, 1)], "a")
    session.data_to_send()
    assert session.receive_data(b"ACK\n\nNAK\n\n", 5.1) == [
        RequestRefused(0, 1, "the Videohub refused to route output 2 (NAK)", None)]
    assert session.receive_data(b"ACK\n\n", 5.2) == []  # a stray ACK is ignored


# -- the driver --------------------------------------------------------------------------------


def test_plugin_registers_the_driver_and_emulator_with_their_capabilities():
    assert videohub.tieline_router_drivers() == [VideohubDriver]
    assert videohub.tieline_emulators() == [VideohubEmulator]
    assert VideohubDriver.name == VideohubEmulator.name == "videohub"
    assert VideohubDriver.transports == ("tcp",) and VideohubDriver.transport_required
    assert VideohubDriver.transport_defaults == {"tcp": {"port": 9990}}
    assert VideohubDriver.device_protects == {ProtectKind.PROTECT}
    assert VideohubDriver.device_labels and VideohubDriver.allows_second_controller
    schema = VideohubDriver.settings_schema
    jsonschema.validate({"tables": ["video", "serial"], "confirm_grace_ms": 50}, schema)
    for bad in ({"tables": []}, {"tables": ["video", "video"]}, {"tables": ["audio"]},
                {"confirm_grace_ms": 5}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_more_levels_than_tables_is_logged(caplog):
    with caplog.at_level(logging.WARNING):
        drv = driver(RouterSpec("hub", "videohub", ("video", "audio"), 12, 12))
    assert "has 2 level(s) but \"tables\" names 1 (video)" in caplog.text
    assert drv.level_tables == {0: (drv.level_tables[0])}
