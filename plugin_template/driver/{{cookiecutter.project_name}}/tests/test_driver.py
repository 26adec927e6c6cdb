"""The driver against its emulator over TCP on 127.0.0.1, through tieline's real device
link and routing service (what a node runs), without a node around them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tieline import (
    Crosspoint,
    CrosspointsChanged,
    DeviceOffline,
    DeviceOnline,
    Event,
    EventBus,
    Permission,
    Principal,
    RouterSpec,
    RouterState,
)
from tieline.devices import DeviceLink, backoff
from tieline.failover import Failover, NodeStatus, Role, State
from tieline.routing import RouterRuntime, RoutingService
from tieline.transports import TcpTransport
from {{cookiecutter.plugin_name}}.codec import Dump, Ping, Xpt
from {{cookiecutter.plugin_name}}.driver import MatrixDriver
from {{cookiecutter.plugin_name}}.emulator import MatrixEmulator

SPEC = RouterSpec("studio", "{{cookiecutter.driver_name}}", ("video", "audio"), 8, 8)
ALICE = Principal("alice", Permission.ROUTE)


class Rig:
    """One router's routing core around the driver, with the bus's events at hand."""

    def __init__(self, driver: MatrixDriver) -> None:
        self.bus = EventBus()
        self.events = self.bus.subscribe("test", maxsize=10_000)
        failover = Failover(NodeStatus("test", Role.STANDALONE, State.ACTIVE), self.bus.publish)
        self.service = RoutingService(self.bus, failover)
        self.link = DeviceLink(driver, self.service, backoff_factory=lambda: backoff(
            initial=0.01, factor=1.5, cap=0.05, rng=random.Random(7)))
        self.runtime = RouterRuntime(state=RouterState(driver.spec), driver=driver,
                                     link=self.link, confirm_timeout_s=2.0)
        self.service.add_router(self.runtime)
        self.task = asyncio.create_task(self.link.run())

    @property
    def state(self) -> RouterState:
        return self.runtime.state

    async def next(self, kind: type[Event], timeout: float = 3.0) -> Any:
        """The next event of ``kind`` (others are skipped)."""
        async with asyncio.timeout(timeout):
            async for event in self.events:
                if isinstance(event, kind):
                    return event
        raise AssertionError("the event bus closed")

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])


@pytest.fixture
async def device() -> AsyncIterator[MatrixEmulator]:
    async with MatrixEmulator(2, 8, 8) as device:
        yield device


@pytest.fixture
async def rig(device: MatrixEmulator) -> AsyncIterator[Rig]:
    server = await device.serve_tcp("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = TcpTransport({"type": "tcp", "host": "127.0.0.1", "port": port})
    rig = Rig(MatrixDriver(SPEC, {"keepalive_interval_s": 0.2}, transport))
    await rig.next(DeviceOnline)
    yield rig
    await rig.stop()


async def test_connect_reads_the_whole_state_and_sends_no_route(rig, device):
    assert rig.state.online
    assert [rig.state.source(1, d) for d in range(8)] == list(range(8))
    assert [type(m) for _, m in device.command_log] == [Dump]


async def test_route_is_confirmed_by_the_tally(rig, device):
    confirmed = await rig.service.route(ALICE, "studio", 3, 6)
    assert confirmed == (Crosspoint(0, 3, 6), Crosspoint(1, 3, 6))
    assert (device.source(0, 3), device.source(1, 3)) == (6, 6)
    assert (rig.state.source(0, 3), rig.state.source(1, 3)) == (6, 6)
    assert (await rig.next(CrosspointsChanged)).crosspoints == confirmed
    # a route that is set already is confirmed too
    assert await rig.service.route(ALICE, "studio", 3, 6, levels=["audio"]) == (
        Crosspoint(1, 3, 6),)
    assert sum(isinstance(m, Xpt) for _, m in device.command_log) == 3


async def test_panel_route_at_the_device_appears(rig, device):
    device.panel_route(1, 7, 2)
    event = await rig.next(CrosspointsChanged)
    assert event.crosspoints == (Crosspoint(1, 7, 2),)
    assert rig.state.source(1, 7) == 2


async def test_reconnect_resyncs_from_the_device(rig, device):
    await device.disconnect_all()
    device.panel_route(0, 5, 1)  # made while tieline was away
    assert (await rig.next(DeviceOffline)).reason == "the device closed the connection"
    await rig.next(DeviceOnline)
    assert rig.state.source(0, 5) == 1
    assert rig.link.connects == 2
    assert not [m for _, m in device.command_log if isinstance(m, Xpt)]  # nothing replayed


async def test_garbage_from_the_device_drops_the_connection_and_resyncs(rig, device):
    device.send_raw(b"\xff garbage\n")
    await rig.next(DeviceOffline)
    await rig.next(DeviceOnline)
    assert await rig.service.route(ALICE, "studio", 0, 1, levels=["video"]) == (
        Crosspoint(0, 0, 1),)


async def test_the_emulator_answers_a_run_of_garbage_once(device):
    """10,000 bytes of bad lines get one ERROR back, not one per line (nor an echo)."""
    server = await device.serve_tcp("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    writer.write(b"FOO bar\n" * 1250 + b"PING\n")
    await writer.drain()
    answers = []
    async with asyncio.timeout(5):
        while (line := (await reader.readline()).decode().strip()) != "PONG":
            answers.append(line)
    assert answers == ["ERROR - - syntax error"]
    writer.close()
    server.close()


async def test_an_idle_link_sends_keepalives(rig, device):
    async with asyncio.timeout(3):
        while not any(isinstance(m, Ping) for _, m in device.command_log):
            await asyncio.sleep(0.02)
    assert rig.state.online
