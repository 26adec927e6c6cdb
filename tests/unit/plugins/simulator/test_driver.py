"""The simulator driver: the pure session (bytes -> reports, commands -> bytes) and the driver."""

from __future__ import annotations

import logging
from pathlib import Path

import jsonschema
import pytest

from tieline.devices import LabelReport, ProtectReport, RequestRefused, SyncDone, TallyReport
from tieline.errors import InvalidRequest, RemoteProtocolError
from tieline.model import Crosspoint, PortKind, Protect, ProtectKind, RouterSpec
from tieline.plugins import simulator
from tieline.plugins.simulator.driver import SimulatorDriver, SimulatorSession
from tieline.transports import TcpTransport

TRACES = Path(__file__).parents[3] / "fixtures" / "simulator"
SPEC = RouterSpec("sim", "simulator", ("video", "audio"), 4, 3)


def connected() -> SimulatorSession:
    session = SimulatorSession(SPEC)
    session.connection_made(0.0)
    assert session.data_to_send() == b"HELLO 1\nDUMP\n"
    return session


def test_dump_becomes_few_reports_and_one_sync_done():
    session = connected()
    reports = session.receive_data((TRACES / "good" / "device-dump.trace").read_bytes(), 1.0)
    assert [type(r) for r in reports] == [
        LabelReport, LabelReport, TallyReport, ProtectReport, ProtectReport, SyncDone]
    assert reports[0] == LabelReport(PortKind.SOURCE, (
        (0, "Input 1"), (1, "Camera 2  wide "), (2, "Kamera ü – 3"), (3, "")))
    assert len(reports[2].crosspoints) == 6
    assert reports[3] == ProtectReport(0, 1, Protect(ProtectKind.PROTECT, "alice smith"))
    assert session.info is not None and session.info.sources == 4


def test_dump_byte_by_byte_gives_the_same_state_and_one_sync_done():
    session = connected()
    data = (TRACES / "good" / "device-dump.trace").read_bytes()
    reports = [r for i in range(len(data)) for r in session.receive_data(data[i:i + 1], 1.0)]
    assert sum(isinstance(r, SyncDone) for r in reports) == 1
    assert [xp for r in reports if isinstance(r, TallyReport) for xp in r.crosspoints][:3] == [
        Crosspoint(0, 0, 0), Crosspoint(0, 1, 1), Crosspoint(0, 2, 2)]


def test_updates_become_reports_and_refusals_name_the_owner(caplog):
    session = connected()
    with caplog.at_level(logging.WARNING):
        reports = session.receive_data(
            (TRACES / "good" / "device-updates.trace").read_bytes(), 1.0)
    assert reports[0] == TallyReport((Crosspoint(0, 2, 3), Crosspoint(0, 1, 1),
                                      Crosspoint(1, 1, 1)))
    assert ProtectReport(0, 0, Protect(ProtectKind.LOCK, "10.0.0.7")) in reports
    assert ProtectReport(0, 0, None) in reports
    assert LabelReport(PortKind.DESTINATION, ((2, "Tx 1 / PGM"),)) in reports
    refused = [r for r in reports if isinstance(r, RequestRefused)]
    assert refused[0] == RequestRefused(
        0, 1, "destination 2 on level 1 is protected by alice smith", "alice smith")
    assert refused[1].owner == "-"
    assert refused[2].owner == "bob"  # not_owner names who holds it
    assert refused[3] == RequestRefused(5, 0, "level 6 out of range (1–2)", None)
    assert len(refused) == 4  # the errors without a destination are only logged
    assert "the simulator said syntax: unknown message 'HELO'" in caplog.text
    assert not any(isinstance(r, SyncDone) for r in reports)  # END only counts after DUMP


def test_wrong_protocol_version_or_garbage_raises():
    with pytest.raises(RemoteProtocolError, match="version 2"):
        connected().receive_data(b"HELLO 2\n", 1.0)
    with pytest.raises(RemoteProtocolError):
        connected().receive_data(b"XP 0 1\n", 1.0)


def test_size_mismatch_is_logged_once(caplog):
    session = connected()
    with caplog.at_level(logging.WARNING):
        session.receive_data(b"INFO 1 8 8\nINFO 1 8 8\n", 1.0)
    assert caplog.text.count("the simulator has 1 level(s), 8 sources and 8 destinations") == 1


def test_commands_queue_bytes():
    session = connected()
    session.route([Crosspoint(0, 2, 1), Crosspoint(1, 2, 1)], "alice smith")
    session.protect(0, 2, ProtectKind.LOCK, "alice smith")
    session.release(0, 2, "admin", True)
    session.set_label(PortKind.DESTINATION, 1, "PGM out")
    session.keepalive(2.0)
    assert session.data_to_send() == (
        b"ROUTE alice%20smith 0 2 1 1 2 1\nPROTECT 0 2 lock alice%20smith\n"
        b"RELEASE 0 2 admin 1\nLABEL D 1 PGM out\nPING\n")


def test_unsendable_label_is_an_invalid_request():
    with pytest.raises(InvalidRequest, match="control character"):
        connected().set_label(PortKind.SOURCE, 0, "two\nlines")


def test_plugin_registers_the_driver_with_its_capabilities():
    assert simulator.tieline_router_drivers() == [SimulatorDriver]
    assert SimulatorDriver.name == "simulator"
    assert not SimulatorDriver.transport_required
    assert SimulatorDriver.device_protects == {ProtectKind.PROTECT, ProtectKind.LOCK}
    assert SimulatorDriver.device_labels and SimulatorDriver.allows_second_controller
    schema = SimulatorDriver.settings_schema
    jsonschema.validate({"switch_delay_ms": 12.5}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"switch_delay_ms": -1}, schema)


async def test_in_process_driver_starts_a_device_sized_from_settings():
    driver = SimulatorDriver(SPEC, {"switch_delay_ms": 20}, None)
    assert driver.describe() == "in-process simulator"
    await driver.start()
    try:
        device = driver.device
        assert device is not None
        assert (device.levels, device.sources, device.destinations) == (2, 4, 3)
        assert device.switch_delay_s == pytest.approx(0.02)
        stream = await driver.open()
        stream.write(b"PING\n")
        assert await stream.read(100) == b"PONG\n"
        stream.close()
    finally:
        await driver.stop()
    assert driver.device is None


async def test_driver_with_a_transport_starts_no_device():
    transport = TcpTransport({"type": "tcp", "host": "127.0.0.1", "port": 9})
    driver = SimulatorDriver(SPEC, {}, transport)
    await driver.start()
    assert driver.device is None
    assert driver.describe() == "tcp://127.0.0.1:9"
    await driver.stop()
