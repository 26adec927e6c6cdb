"""The simulator driver and emulator through the real DeviceLink and RoutingService.

Each test builds the node's routing core by hand (event bus, failover, routing service, one
router runtime, one device link) around a simulator, in-process or over TCP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tieline.devices import DeviceLink, backoff
from tieline.errors import Protected, RouterOffline
from tieline.events import (
    CrosspointsChanged,
    DeviceOffline,
    DeviceOnline,
    Event,
    EventBus,
    LabelsChanged,
    ProtectChanged,
)
from tieline.failover import Failover, NodeStatus, Role, State
from tieline.model import (
    Crosspoint,
    Permission,
    PortKind,
    Principal,
    Protect,
    ProtectKind,
    RouterSpec,
    RouterState,
    Salvo,
)
from tieline.plugins.simulator.codec import Codec, Route, SetProtect
from tieline.plugins.simulator.codec import Role as CodecRole
from tieline.plugins.simulator.driver import SimulatorDriver, SimulatorSession
from tieline.plugins.simulator.emulator import SimulatorEmulator
from tieline.routing import RouterRuntime, RoutingService
from tieline.kit.testing import free_port
from tieline.transports import TcpTransport

SPEC = RouterSpec("sim", "simulator", ("video", "audio"), 16, 16)
ALICE = Principal("alice smith", Permission.ROUTE)
BOB = Principal("bob", Permission.ROUTE)
ADMIN = Principal("admin", Permission.ADMIN)


def fast_backoff() -> Any:
    return backoff(initial=0.01, factor=1.5, cap=0.05, rng=random.Random(7))


class Rig:
    """One router's routing core around a driver, with the bus's events at hand."""

    def __init__(self, driver: SimulatorDriver, confirm_timeout_s: float) -> None:
        self.bus = EventBus()
        self.events = self.bus.subscribe("test", maxsize=100_000)
        failover = Failover(NodeStatus("test", Role.STANDALONE, State.ACTIVE), self.bus.publish)
        self.service = RoutingService(self.bus, failover)
        self.link = DeviceLink(driver, self.service, backoff_factory=fast_backoff)
        self.runtime = RouterRuntime(state=RouterState(driver.spec), driver=driver,
                                     link=self.link, confirm_timeout_s=confirm_timeout_s)
        self.service.add_router(self.runtime)
        self.driver = driver
        self.task = asyncio.create_task(self.link.run(), name="test link")

    @property
    def state(self) -> RouterState:
        return self.runtime.state

    async def next(self, kind: type[Event], timeout: float = 2.0) -> Any:
        """The next event of ``kind`` (others are skipped)."""
        async with asyncio.timeout(timeout):
            async for event in self.events:
                if isinstance(event, kind):
                    return event
        raise AssertionError("the event bus closed")

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled():
            self.task.result()  # the link died of something: show it


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []

    async def make(driver: SimulatorDriver, *, online: bool = True,
                   confirm_timeout_s: float = 2.0) -> Rig:
        rig = Rig(driver, confirm_timeout_s)
        rigs.append(rig)
        if online:
            await rig.next(DeviceOnline)
        return rig

    yield make
    for rig in reversed(rigs):
        await rig.stop()


@pytest.fixture
async def device() -> AsyncIterator[SimulatorEmulator]:
    """A simulator to serve over TCP."""
    async with SimulatorEmulator(2, 16, 16) as device:
        yield device


def tcp_driver(port: int, spec: RouterSpec = SPEC, cls: type[SimulatorDriver] = SimulatorDriver
               ) -> SimulatorDriver:
    return cls(spec, {}, TcpTransport({"type": "tcp", "host": "127.0.0.1", "port": port}))


async def serve(device: SimulatorEmulator, port: int = 0) -> int:
    server = await device.serve_tcp("127.0.0.1", port)
    return server.sockets[0].getsockname()[1]


# -- in-process ---------------------------------------------------------------------------


async def test_start_reads_the_whole_state_and_sends_no_route(make_rig):
    rig = await make_rig(SimulatorDriver(SPEC, {}, None))
    assert rig.state.online
    assert [rig.state.source(1, d) for d in range(16)] == list(range(16))
    assert rig.state.label(PortKind.DESTINATION, 15) == "Output 16"
    assert {type(m).__name__ for _, m in rig.driver.device.command_log} == {"Hello", "Dump"}


async def test_route_is_confirmed_by_the_tally(make_rig):
    rig = await make_rig(SimulatorDriver(SPEC, {"switch_delay_ms": 10}, None))
    confirmed = await rig.service.route(ALICE, "sim", 3, 9)
    assert confirmed == (Crosspoint(0, 3, 9), Crosspoint(1, 3, 9))
    assert (rig.state.source(0, 3), rig.state.source(1, 3)) == (9, 9)
    assert rig.driver.device.source(1, 3) == 9
    event = await rig.next(CrosspointsChanged)
    assert event.crosspoints == confirmed
    # a route that is already set is confirmed too
    assert await rig.service.route(ALICE, "sim", 3, 9, levels=["audio"]) == (
        Crosspoint(1, 3, 9),)


async def test_route_refused_by_the_device_names_the_protect_owner(make_rig):
    rig = await make_rig(SimulatorDriver(SPEC, {"switch_delay_ms": 100}, None))
    device = rig.driver.device
    request = asyncio.create_task(rig.service.route(ALICE, "sim", 2, 5, levels=["video"]))
    async with asyncio.timeout(2):
        while not any(isinstance(m, Route) for _, m in device.command_log):
            await asyncio.sleep(0.005)
    # another controller protects the destination while the route is on its way
    other = await device.connect()
    other.write(Codec(CodecRole.CONTROLLER).send(SetProtect(0, 2, ProtectKind.PROTECT, "bob")))
    with pytest.raises(Protected) as refused:
        await request
    assert refused.value.owner == "bob"
    assert "destination 3 on level 1 is protected by bob" in refused.value.message
    assert rig.state.protect(0, 2) == Protect(ProtectKind.PROTECT, "bob")
    assert rig.state.source(0, 2) == device.source(0, 2) == 2
    other.close()


async def test_protect_lock_and_release(make_rig):
    rig = await make_rig(SimulatorDriver(SPEC, {}, None))
    device, service = rig.driver.device, rig.service
    await service.protect(ALICE, "sim", 1)
    mine = Protect(ProtectKind.PROTECT, "alice smith")
    assert rig.state.protect(0, 1) == rig.state.protect(1, 1) == mine
    assert device.protects == {(0, 1): mine, (1, 1): mine}
    assert (await rig.next(ProtectChanged)).protect == mine
    with pytest.raises(Protected) as refused:
        await service.route(BOB, "sim", 1, 4)
    assert refused.value.owner == "alice smith"
    await service.route(ALICE, "sim", 1, 4)
    with pytest.raises(Protected):
        await service.protect(BOB, "sim", 1, kind=ProtectKind.LOCK)
    await service.protect(ALICE, "sim", 1, levels=["video"], kind=ProtectKind.LOCK)
    assert device.protects[(0, 1)] == Protect(ProtectKind.LOCK, "alice smith")
    with pytest.raises(Protected):  # a lock stops its owner too
        await service.route(ALICE, "sim", 1, 5, levels=["video"])
    with pytest.raises(Protected):
        await service.release(BOB, "sim", 1)
    await service.release(ADMIN, "sim", 1, force=True)
    assert device.protects == {} and rig.state.protects == {}
    assert device.source(0, 1) == 4


async def test_label_is_set_on_the_device(make_rig):
    rig = await make_rig(SimulatorDriver(SPEC, {}, None))
    await rig.service.set_label(ADMIN, "sim", PortKind.SOURCE, 0, "Kamera 1 – wide ü")
    assert rig.driver.device.labels[PortKind.SOURCE][0] == "Kamera 1 – wide ü"
    assert rig.state.label(PortKind.SOURCE, 0) == "Kamera 1 – wide ü"
    event = await rig.next(LabelsChanged)
    assert (event.kind, event.labels) == (PortKind.SOURCE, ((0, "Kamera 1 – wide ü"),))
    rig.driver.device.panel_label(PortKind.DESTINATION, 3, "PGM")
    assert (await rig.next(LabelsChanged)).labels == ((3, "PGM"),)


async def test_salvo_of_1000_crosspoints_is_sent_at_once_and_confirmed(make_rig):
    spec = RouterSpec("sim", "simulator", ("video", "audio"), 500, 500)
    rig = await make_rig(SimulatorDriver(spec, {"switch_delay_ms": 20}, None))
    crosspoints = tuple(Crosspoint(level, d, (d * 7 + level) % 500)
                        for level in range(2) for d in range(500))
    rig.service.salvos["big"] = Salvo("big", "sim", crosspoints)
    result = await rig.service.take_salvo(ALICE, "big")
    assert result.refused == () and set(result.taken) == set(crosspoints)
    assert all(rig.state.source(xp.level, xp.destination) == xp.source for xp in crosspoints)
    routes = [m for _, m in rig.driver.device.command_log if isinstance(m, Route)]
    assert sum(len(r.crosspoints) for r in routes) == 1000
    assert len(routes) < 10  # many crosspoints per line, no round trip per crosspoint


async def test_panel_route_by_another_controller_is_an_event(make_rig):
    rig = await make_rig(SimulatorDriver(SPEC, {}, None))
    rig.driver.device.panel_route(1, 7, 3)
    event = await rig.next(CrosspointsChanged)
    assert event == CrosspointsChanged("sim", (Crosspoint(1, 7, 3),))
    assert rig.state.destinations_of(1, 3) == {3, 7}


async def test_garbage_from_the_device_is_logged_and_the_link_resyncs(make_rig, caplog):
    rig = await make_rig(SimulatorDriver(SPEC, {}, None))
    device = rig.driver.device
    with caplog.at_level(logging.WARNING, logger="tieline.devices"):
        device.send_raw(b"\xff\xfe\x00 garbage\n")
        await rig.next(DeviceOffline)
        await rig.next(DeviceOnline)
    assert "unparseable data from the device" in caplog.text
    assert rig.link.connects == 2
    await rig.service.route(BOB, "sim", 0, 1)  # still working
    assert sum(isinstance(m, Route) for _, m in device.command_log) == 1


# -- over TCP -----------------------------------------------------------------------------


async def test_device_closing_the_connection_goes_offline_then_resyncs(make_rig, device):
    rig = await make_rig(tcp_driver(await serve(device)))
    await device.disconnect_all()
    device.panel_route(0, 5, 11)  # made while tieline was away
    assert (await rig.next(DeviceOffline)).reason == "the device closed the connection"
    await rig.next(DeviceOnline)
    assert rig.state.source(0, 5) == 11
    assert rig.link.connects == 2


async def test_device_restarted_with_other_routing_is_followed_not_overwritten(make_rig):
    first = SimulatorEmulator(2, 16, 16)
    port = await serve(first)
    rig = await make_rig(tcp_driver(port))
    await rig.service.route(ALICE, "sim", 0, 9)
    await first.close()
    await rig.next(DeviceOffline)
    async with SimulatorEmulator(2, 16, 16, labels={PortKind.SOURCE: {4: "Cam 5"}}) as second:
        second.panel_route(0, 1, 4)
        await serve(second, port)
        await rig.next(DeviceOnline)
        device_state = [second.source(level, d) for level in range(2) for d in range(16)]
        assert [rig.state.source(level, d) for level in range(2) for d in range(16)] == \
            device_state
        assert rig.state.source(0, 0) == 0  # not the 9 routed on the first device
        assert rig.state.label(PortKind.SOURCE, 4) == "Cam 5"
        assert not [m for _, m in second.command_log if isinstance(m, Route)]


async def test_retry_now_cuts_a_long_backoff_short(make_rig, device, caplog):
    """A failover candidate wants its router now: retry_now() skips the backoff's wait."""
    port = free_port()
    rig = await make_rig(tcp_driver(port), online=False)
    rig.link._backoff_factory = lambda: iter(lambda: 3600.0, None)  # an hour between tries
    async with asyncio.timeout(2):  # the first try fails at once: then an hour to wait
        while "retrying in 3600.0 s" not in caplog.text:
            await asyncio.sleep(0.01)
    await serve(device, port)
    rig.link.retry_now()
    await rig.next(DeviceOnline)  # within the 2 s of next(), not an hour
    assert rig.link.connects == 1


async def test_request_to_an_offline_router_fails_at_once(make_rig):
    rig = await make_rig(tcp_driver(free_port()), online=False, confirm_timeout_s=30)
    async with asyncio.timeout(1):  # not after the 30 s confirmation timeout
        with pytest.raises(RouterOffline, match="router 'sim' is offline"):
            await rig.service.route(ALICE, "sim", 0, 1)
        with pytest.raises(RouterOffline):
            await rig.service.protect(ALICE, "sim", 0)


class HungDeviceDriver(SimulatorDriver):
    """Small keepalive settings, so a silent device is given up quickly."""

    keepalive_interval_s = 0.05
    keepalive_timeout_s = 0.2
    sync_timeout_s = 0.3


class Silent:
    """A TCP server that accepts connections and never says anything."""

    def __init__(self) -> None:
        self.accepted = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self, sock: socket.socket | None = None) -> int:
        if sock is None:
            self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        else:
            self.server = await asyncio.start_server(self._accept, sock=sock)
        return self.server.sockets[0].getsockname()[1]

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)

    async def wait_accepted(self, count: int) -> None:
        async with asyncio.timeout(3):
            while self.accepted < count:
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


async def test_hung_device_is_given_up_and_reconnected(make_rig):
    silent = Silent()
    port = await silent.start()
    try:
        rig = await make_rig(tcp_driver(port, cls=HungDeviceDriver), online=False)
        await silent.wait_accepted(2)
        assert not rig.link.online and not rig.task.done()
    finally:
        await silent.close()


class Proxy:
    """A TCP proxy whose current connections can be frozen (a half-open path)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.frozen: set[int] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        """Stop forwarding on every connection open now, without closing it."""
        self.frozen.update(range(self.connections))

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._relay(self.connections, reader, writer))
        self.connections += 1
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _relay(self, number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self.writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if number not in self.frozen:
                    dst.write(data)
            dst.close()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump(reader, up_writer))
            tg.create_task(pump(up_reader, writer))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks)
        await self.server.wait_closed()


async def test_half_open_connection_is_detected_and_the_link_reconnects(make_rig, device):
    proxy = Proxy(await serve(device))
    try:
        rig = await make_rig(tcp_driver(await proxy.start(), cls=HungDeviceDriver))
        proxy.freeze()
        offline = await rig.next(DeviceOffline)
        assert "no data from the device for 0.2 s" in offline.reason
        await rig.next(DeviceOnline)
        assert proxy.connections == 2
        await rig.service.route(ALICE, "sim", 4, 4)
    finally:
        await proxy.close()


class FloodingSession(SimulatorSession):
    def keepalive(self, now: float) -> None:
        self._send(b"PING\n" * 200_000)  # 1 MB: more than the socket buffers take


class StuckWriteDriver(HungDeviceDriver):
    """Its keepalive floods a device that never reads, so the link's write times out."""

    keepalive_timeout_s = 5.0
    sync_timeout_s = 5.0

    async def open(self) -> Any:
        stream = await super().open()
        stream.writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return stream

    def new_session(self) -> SimulatorSession:
        return FloodingSession(self.spec)


async def test_write_that_cannot_drain_drops_the_connection_not_the_link(make_rig, caplog):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    silent = Silent()
    port = await silent.start(listener)
    try:
        with caplog.at_level(logging.WARNING, logger="tieline.devices"):
            rig = await make_rig(tcp_driver(port, cls=StuckWriteDriver), online=False)
            rig.link.write_timeout_s = 0.1
            rig.link.close_timeout_s = 0.05
            await silent.wait_accepted(2)
        assert not rig.task.done()
        assert "could not write to the device (timed out after 0.1 s)" in caplog.text
    finally:
        await silent.close()


async def test_device_larger_than_settings_is_controlled_in_the_configured_part(make_rig, caplog):
    async with SimulatorEmulator(3, 20, 20) as device:
        with caplog.at_level(logging.WARNING):
            rig = await make_rig(tcp_driver(await serve(device)))
        assert "the simulator has 3 level(s), 20 sources and 20 destinations" in caplog.text
        other = await device.connect()
        codec = Codec(CodecRole.CONTROLLER)
        other.write(b"".join(codec.send(SetProtect(level, dest, ProtectKind.LOCK, "bob"))
                             for level, dest in ((2, 3), (0, 18), (0, 1))))
        # only what settings know of reaches tieline's state and events
        assert (await rig.next(ProtectChanged)).destination == 1
        device.panel_route(2, 0, 5)
        device.panel_route(0, 2, 19)
        device.panel_route(0, 3, 4)
        assert (await rig.next(CrosspointsChanged)).crosspoints == (Crosspoint(0, 3, 4),)
        assert rig.state.protects == {(0, 1): Protect(ProtectKind.LOCK, "bob")}
        assert rig.state.source(0, 2) == 2
        await rig.service.route(ALICE, "sim", 15, 15, levels=["audio"])
        other.close()
