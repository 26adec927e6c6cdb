"""The SW-P-08 driver against the SW-P-08 emulator over real TCP sockets on 127.0.0.1 and a
real pseudo-terminal pair (serial).

End-to-end tests run a real node (settings folder, WebSocket API, RawClient). The second
controller talks to the emulator with frames built and parsed by hand in this file (not the
codec), so these tests do not depend on it. Failure cases (device closing, restarted device,
half-open path, garbage, slow device, protects racing a route) run the routing core by hand
with small timer values.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tieline.auth import hash_token
from tieline.devices import DeviceLink, RouteCommand, backoff
from tieline.errors import NodeStandby, Protected, Refused
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
    UNKNOWN,
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
from tieline.plugins.swp08.codec import Connect
from tieline.plugins.swp08.driver import SWP08Driver
from tieline.plugins.swp08.emulator import SWP08Emulator
from tieline.routing import RouterRuntime, RoutingService
from tieline.transports import SerialTransport, TcpTransport, open_fd_stream

from .helpers import RawClient, api_url, running_node

ALICE = Principal("alice", Permission.ROUTE)
ADMIN = Principal("admin", Permission.ADMIN)
TOKENS = {"operator": "swp08-route-token", "admin": "swp08-admin-token"}


# -- a second controller, by hand (notes §2, §5, §7; independent of the codec) -----------------


def frame(*data: int) -> bytes:
    """The notes' §10 framing, written out again: BTC, CHK, DLE doubling, SOM/EOM."""
    body = bytes(data) + bytes([len(data), -(sum(data) + len(data)) & 0xFF])
    return b"\x10\x02" + body.replace(b"\x10", b"\x10\x10") + b"\x10\x03"


class HandController:
    """A TCP controller speaking SW-P-08 from hand-built bytes; it ACKs every frame it gets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames: list[bytes] = []
        self.acks = 0
        self._buffer = b""
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int) -> HandController:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def connect(self, level: int, dest: int, src: int) -> None:
        """CROSSPOINT CONNECT 02, matrix 0 (0-based numbers below 1024)."""
        mult = ((dest // 128) << 4) | (src // 128)
        self.writer.write(frame(0x02, level, mult, dest % 128, src % 128))

    def protect(self, level: int, dest: int, device: int) -> None:
        """PROTECT CONNECT 12, matrix 0."""
        mult = ((dest // 128) << 4) | (device // 128)
        self.writer.write(frame(0x0C, level, mult, dest % 128, device % 128))

    async def _read(self) -> None:
        while data := await self.reader.read(4096):
            self._buffer += data
            while True:
                if self._buffer.startswith(b"\x10\x06"):
                    self.acks += 1
                    self._buffer = self._buffer[2:]
                    continue
                end = self._buffer.find(b"\x10\x03")
                while end > 0 and self._buffer[:end].replace(b"\x10\x10", b"").endswith(b"\x10"):
                    end = self._buffer.find(b"\x10\x03", end + 1)  # a doubled DLE before 03
                if not self._buffer.startswith(b"\x10\x02") or end < 0:
                    break
                body = self._buffer[2:end].replace(b"\x10\x10", b"\x10")
                self._buffer = self._buffer[end + 2:]
                self.frames.append(body[:-2])
                self.writer.write(b"\x10\x06")

    async def wait_for(self, data: bytes, timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while data not in self.frames:
                await asyncio.sleep(0.005)

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()
        await asyncio.gather(self._task, return_exceptions=True)


# -- end to end: a node, the WebSocket API, the emulator ---------------------------------------


def node_settings(settings_dir, transport: dict[str, Any], name: str = "settings", **router):
    return settings_dir({
        "tieline.json": {
            "node": {"name": "swp08-test"},
            "routers": [{"id": "pb", "driver": "swp08", "levels": ["video", "audio"],
                         "sources": 16, "destinations": 16, "transport": transport, **router}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"users_file": "users.json"},
        },
        "users.json": {"users": [
            {"name": "operator", "level": 2, "token_sha256": hash_token(TOKENS["operator"])},
            {"name": "admin", "level": 3, "token_sha256": hash_token(TOKENS["admin"])},
        ]},
    }, name)


def tcp(port: int) -> dict[str, Any]:
    return {"type": "tcp", "host": "127.0.0.1", "port": port}


async def serve(device: SWP08Emulator, port: int = 0) -> int:
    server = await device.serve_tcp("127.0.0.1", port)
    return server.sockets[0].getsockname()[1]


async def crosspoint_event(c: RawClient, destination: int, source: int,
                           timeout: float = 3.0) -> dict[str, Any]:
    """The next crosspoints event naming destination <- source (1-based)."""
    async with asyncio.timeout(timeout):
        while True:
            event = await c.next_event()
            if event["event"] == "crosspoints" and any(
                    x["destination"] == destination and x["source"] == source
                    for x in event["crosspoints"]):
                return event


def connects(device: SWP08Emulator) -> list[Connect]:
    return [m for _, m in device.command_log if isinstance(m, Connect)]


async def test_routes_both_ways_between_the_api_and_the_router(settings_dir):
    async with SWP08Emulator(16, 16, 2) as device:
        port = await serve(device)
        async with running_node(node_settings(settings_dir, tcp(port))) as node:
            assert not connects(device)  # start-up only reads
            c = await RawClient.open(api_url(node), TOKENS["operator"])
            snapshot = (await c.request("subscribe"))["result"]["routers"][0]
            assert snapshot["crosspoints"]["audio"][:3] == [1, 2, 3]  # 1-based: d <- d
            response = await c.request("route", router="pb", destination=5, source=12)
            assert response["ok"], response
            assert device.source(0, 4) == device.source(1, 4) == 11
            assert connects(device) == [Connect(0, 0, 4, 11), Connect(0, 1, 4, 11)]
            # a second controller, straight to the router
            other = await HandController.open(port)
            other.connect(1, 9, 3)  # audio, destination 10 <- source 4
            event = await crosspoint_event(c, 10, 4)
            assert event["crosspoints"] == [{"level": "audio", "destination": 10, "source": 4}]
            await other.wait_for(bytes([0x04, 0x01, 0x00, 9, 3]))  # it got CONNECTED too
            assert other.acks >= 1
            await other.close()
            await c.close()


async def test_names_are_read_and_written(settings_dir):
    async with SWP08Emulator(16, 16, 2, names_updated_delay_s=0.05) as device:
        device.source_names[(0, 0)] = {0: "CAM 1"}
        port = await serve(device)
        async with running_node(node_settings(settings_dir, tcp(port))) as node:
            state = node.routing.routers["pb"].state
            assert state.label(PortKind.SOURCE, 0) == "CAM 1"
            assert state.label(PortKind.DESTINATION, 15) == "DST 16"
            admin = await RawClient.open(api_url(node), TOKENS["admin"])
            response = await admin.request("label", router="pb", kind="destination", index=2,
                                           text="MON 2")
            assert response["ok"], response
            assert device.destination_name(1) == "MON 2"
            too_long = await admin.request("label", router="pb", kind="source", index=1,
                                           text="CAMERA NINE")
            assert too_long["error"]["code"] == "invalid"
            device.panel_name("source", 3, "ROBO")  # NAMES UPDATED brings it in
            async with asyncio.timeout(3):
                while state.label(PortKind.SOURCE, 3) != "ROBO":
                    await asyncio.sleep(0.01)
            await admin.close()


async def test_device_protects_refuse_routes_naming_their_owner(settings_dir):
    async with SWP08Emulator(16, 16, 2) as device:
        port = await serve(device)
        async with running_node(node_settings(settings_dir, tcp(port))) as node:
            panel = await HandController.open(port)
            panel.protect(0, 6, 7)  # video destination 7, for device 7
            state = node.routing.routers["pb"].state
            async with asyncio.timeout(3):
                while state.protect(0, 6) != Protect(ProtectKind.PROTECT, "device 7 (DEV 7)"):
                    await asyncio.sleep(0.01)
            c = await RawClient.open(api_url(node), TOKENS["operator"])
            refused = await c.request("route", router="pb", destination=7, source=1,
                                      levels=["video"])
            assert refused["error"]["code"] == "protected"
            assert "protected by device 7 (DEV 7)" in refused["error"]["message"]
            assert device.source(0, 6) == 6
            assert (await c.request("route", router="pb", destination=7, source=1,
                                    levels=["audio"]))["ok"]
            await panel.close()
            await c.close()


async def test_restarted_node_shows_the_new_routing_and_sends_no_route(settings_dir):
    async with SWP08Emulator(16, 16, 2) as device:
        port = await serve(device)
        folder = node_settings(settings_dir, tcp(port))
        async with running_node(folder) as node:
            c = await RawClient.open(api_url(node), TOKENS["operator"])
            assert (await c.request("route", router="pb", destination=1, source=9))["ok"]
            await c.close()
        device.panel_route(0, 0, 2)  # changed while no node ran
        device.panel_route(1, 15, 0)
        device.command_log.clear()
        async with running_node(folder) as node:
            state = node.routing.routers["pb"].state
            assert (state.source(0, 0), state.source(1, 0)) == (2, 8)
            assert state.source(1, 15) == 0
            startup = [m for _, m in device.command_log]
            assert startup and not [m for m in startup if isinstance(m, Connect)]
            assert {type(m).__name__ for m in startup} <= {
                "TallyDumpRequest", "SourceNamesRequest", "DestinationNamesRequest",
                "ProtectInterrogate", "Interrogate"}


async def test_serial_line_end_to_end(settings_dir):
    """tieline on the slave side of a real pseudo-terminal, the emulator on the master side;
    a second controller over TCP to the same router."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        async with SWP08Emulator(16, 16, 2) as device:
            device.serve_stream(await open_fd_stream(master), "pty")
            port = await serve(device)
            transport = {"type": "serial", "device": os.ttyname(slave)}
            async with running_node(node_settings(settings_dir, transport)) as node:
                link = node.routing.routers["pb"].link
                assert link.driver.describe() == f"serial://{os.ttyname(slave)} 38400 8N1"
                c = await RawClient.open(api_url(node), TOKENS["operator"])
                await c.request("subscribe")
                assert (await c.request("route", router="pb", destination=16, source=16))["ok"]
                assert device.source(1, 15) == 15
                assert any(name == "pty" for name, m in device.command_log
                           if isinstance(m, Connect))
                other = await HandController.open(port)
                other.connect(0, 1, 130)  # crosses the 128 boundary: MULT carries it
                with pytest.raises(TimeoutError):  # 131 is beyond the 16 sources configured
                    await crosspoint_event(c, 2, 131, timeout=0.2)
                other.connect(0, 1, 5)
                await crosspoint_event(c, 2, 6)
                await other.close()
                await c.close()
    finally:
        os.close(master)
        os.close(slave)


# -- the routing core by hand, with small timers ------------------------------------------------


class FastSWP08(SWP08Driver):
    keepalive_interval_s = 0.05
    keepalive_timeout_s = 0.3
    sync_timeout_s = 2.0
    reply_timeout_s = 0.2
    confirm_fallback_s = 0.1


def fast_backoff() -> Any:
    return backoff(initial=0.01, factor=1.5, cap=0.05, rng=random.Random(3))


class Rig:
    def __init__(self, driver: SWP08Driver, confirm_timeout_s: float) -> None:
        self.bus = EventBus()
        self.events = self.bus.subscribe("test", maxsize=100_000)
        failover = Failover(NodeStatus("test", Role.STANDALONE, State.ACTIVE), self.bus.publish)
        self.service = RoutingService(self.bus, failover)
        self.link = DeviceLink(driver, self.service, backoff_factory=fast_backoff)
        self.runtime = RouterRuntime(RouterState(driver.spec), driver, self.link,
                                     confirm_timeout_s=confirm_timeout_s)
        self.service.add_router(self.runtime)
        self.driver = driver
        self.task = asyncio.create_task(self.link.run())

    @property
    def state(self) -> RouterState:
        return self.runtime.state

    async def next(self, kind: type[Event], timeout: float = 3.0) -> Any:
        async with asyncio.timeout(timeout):
            async for event in self.events:
                if isinstance(event, kind):
                    return event
        raise AssertionError("the bus closed")

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled():
            self.task.result()


SPEC = RouterSpec("pb", "swp08", ("video", "audio"), 16, 16)


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []

    async def make(transport: Any, *, spec: RouterSpec = SPEC, options: dict | None = None,
                   cls: type[SWP08Driver] = FastSWP08, online: bool = True,
                   confirm_timeout_s: float = 2.0) -> Rig:
        rig = Rig(cls(spec, options or {}, transport), confirm_timeout_s)
        rigs.append(rig)
        if online:
            await rig.next(DeviceOnline)
        return rig

    yield make
    for rig in reversed(rigs):
        await rig.stop()


def tcp_transport(port: int) -> TcpTransport:
    return TcpTransport(tcp(port))


async def test_device_closing_the_connection_goes_offline_then_resyncs(make_rig):
    async with SWP08Emulator(16, 16, 2) as device:
        rig = await make_rig(tcp_transport(await serve(device)))
        await device.disconnect_all()
        device.panel_route(1, 5, 11)  # made while tieline was away
        reason = (await rig.next(DeviceOffline)).reason
        # closed while our keepalive was unread, the socket may be reset rather than closed
        assert reason in ("the device closed the connection",
                          "[Errno 104] Connection reset by peer")
        await rig.next(DeviceOnline)
        assert rig.state.source(1, 5) == 11
        assert rig.link.connects == 2
        assert not connects(device)


async def test_device_restarted_with_other_routing_is_followed_not_overwritten(make_rig):
    first = SWP08Emulator(16, 16, 2)
    await first.start()
    port = await serve(first)
    rig = await make_rig(tcp_transport(port))
    await rig.service.route(ALICE, "pb", 0, 9)
    await first.close()
    await rig.next(DeviceOffline)
    async with SWP08Emulator(16, 16, 2) as second:
        second.panel_route(0, 1, 4)
        await serve(second, port)
        await rig.next(DeviceOnline)
        assert [rig.state.source(lv, d) for lv in range(2) for d in range(16)] == \
            [second.source(lv, d) for lv in range(2) for d in range(16)]
        assert rig.state.source(0, 0) == 0  # not the 9 routed on the first device
        assert not connects(second)


async def test_a_command_withdrawn_unsent_is_not_confirmed_by_another_change(make_rig):
    """Found by the 30-minute lease chaos run (seed 930477885, docs/reliability.md): node b
    took a salvo, wrote its first CONNECT, then handed over to the returning main (its fence
    shut) and withdrew the rest unsent; the main's client took the same salvo a moment
    later, and the router's reports of the main's CONNECTs confirmed b's withdrawn ones: b
    answered "ok" for crosspoints it never sent. A command withdrawn before it went out
    ends with the fence's error; the one written is confirmed by the device."""
    async with SWP08Emulator(16, 16, 2) as device:
        rig = await make_rig(tcp_transport(await serve(device)))

        def fence() -> None:  # shuts once the router has the first CONNECT
            if connects(device):
                raise NodeStandby("this node is standby: the request was not sent",
                                  active="a")

        rig.link.guard = fence
        command = RouteCommand(crosspoints=(Crosspoint(0, 12, 4), Crosspoint(1, 12, 4)),
                               owner="op")
        submitted = asyncio.create_task(rig.link.submit(command, 2.0))
        async with asyncio.timeout(3):
            while not connects(device):
                await asyncio.sleep(0.001)
        device.panel_route(1, 12, 4)  # the other node makes the very same change
        outcome = await submitted
        assert outcome.results[0] is None  # written while the node could act: confirmed
        assert isinstance(outcome.results[1], NodeStandby), outcome.results[1]
        assert [(m.level, m.destination, m.source) for m in connects(device)] == [(0, 12, 4)]
        async with asyncio.timeout(3):  # the router's truth is still followed
            while rig.state.source(1, 12) != 4:
                await rig.next(CrosspointsChanged)


async def test_a_write_that_crosses_the_fence_is_reported(make_rig, caplog):
    """Long etcd chaos run, seed 934044907: node a took a route, passed the fence check,
    and was stopped (SIGSTOP) before its CONNECT left; 2.7 s later, its lease long gone
    and node b active, it resumed and the CONNECT went out. No check can close that
    window; the link says when the fence shut around a write. Here the fence shuts
    between the check before the write and the one after it."""
    async with SWP08Emulator(16, 16, 2) as device:
        rig = await make_rig(tcp_transport(await serve(device)))
        session = rig.driver.session
        send, data_to_send = session.send, session.data_to_send
        armed = shut = False

        def send_command(command: Any) -> None:
            nonlocal armed
            send(command)
            armed = True

        def bytes_out() -> bytes:  # the check before the write has passed: the fence shuts
            nonlocal shut
            data = data_to_send()
            shut = shut or (armed and bool(data))
            return data

        def fence() -> None:
            if shut:
                raise NodeStandby("this node is standby", active="b")

        session.send, session.data_to_send = send_command, bytes_out
        rig.link.guard = fence
        command = RouteCommand(crosspoints=(Crosspoint(0, 3, 2),), owner="op")
        with caplog.at_level(logging.WARNING, logger="tieline.devices"):
            outcome = await rig.link.submit(command, 2.0)
        assert outcome.results == (None,)  # written while it could act: confirmed
        assert "lost the right to act while it was writing" in caplog.text
        assert [(m.level, m.destination, m.source) for m in connects(device)] == [(0, 3, 2)]


class Proxy:
    """A TCP proxy whose open connections can be frozen (a half-open path)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.frozen_upto = 0  #: connections numbered up to this one forward nothing
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.create_task(self._relay(self.connections, reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _relay(self, number: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self.writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if number > self.frozen_upto:
                    dst.write(data)
            dst.close()

        async with asyncio.TaskGroup() as group:
            group.create_task(pump(reader, up_writer))
            group.create_task(pump(up_reader, writer))

    def freeze(self) -> None:
        """Stop forwarding on every connection open now, without closing any."""
        self.frozen_upto = self.connections

    async def close(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks)
        await self.server.wait_closed()


async def test_half_open_connection_is_detected_and_the_link_reconnects(make_rig):
    async with SWP08Emulator(16, 16, 2) as device:
        proxy = Proxy(await serve(device))
        try:
            rig = await make_rig(tcp_transport(await proxy.start()))
            proxy.freeze()
            offline = await rig.next(DeviceOffline)
            assert "no data from the device for 0.3 s" in offline.reason
            await rig.next(DeviceOnline)
            assert proxy.connections == 2
            await rig.service.route(ALICE, "pb", 4, 4)
        finally:
            await proxy.close()


async def test_garbage_is_logged_and_the_framing_resyncs(make_rig, caplog):
    async with SWP08Emulator(16, 16, 2) as device:
        rig = await make_rig(tcp_transport(await serve(device)))
        with caplog.at_level(logging.WARNING):
            device.send_raw(b"\xff\xfe garbage \x10\x03 \x00")
            await rig.service.route(ALICE, "pb", 3, 3)  # its ACK ends the garbage run
        assert "damaged data from the device (" in caplog.text
        assert "byte(s) outside any frame discarded" in caplog.text
        assert rig.link.connects == 1 and rig.state.source(0, 3) == 3


async def test_a_stream_of_damage_or_a_malformed_message_resyncs_the_link(make_rig, caplog):
    async with SWP08Emulator(16, 16, 2) as device:
        rig = await make_rig(tcp_transport(await serve(device)))
        device.panel_route(0, 2, 9)
        await rig.next(CrosspointsChanged)
        bad = frame(0x04, 0x00, 0x00, 0x02, 0x01)[:-3] + b"\x00\x10\x03"  # wrong checksum
        with caplog.at_level(logging.WARNING, logger="tieline.devices"):
            device.send_raw(bad * 10)
            assert "line looks unusable" in (await rig.next(DeviceOffline)).reason
            await rig.next(DeviceOnline)
            device.send_raw(frame(0x04, 0x00, 0x00))  # well framed, CONNECTED too short
            await rig.next(DeviceOffline)
            await rig.next(DeviceOnline)
        assert caplog.text.count("unparseable data from the device") == 2
        assert rig.link.connects == 3 and rig.state.source(0, 2) == 9


async def test_slow_device_still_confirms_within_the_timeout(make_rig):
    async with SWP08Emulator(16, 16, 2, response_delay_s=0.05, switch_delay_s=0.3) as device:
        rig = await make_rig(tcp_transport(await serve(device)), confirm_timeout_s=2.0,
                             options={"protects": "off", "names": False})
        assert await rig.service.route(ALICE, "pb", 7, 2) == (
            Crosspoint(0, 7, 2), Crosspoint(1, 7, 2))
        assert device.source(1, 7) == 2


async def test_route_to_a_destination_protected_behind_tieline_s_back_is_refused(make_rig):
    async with SWP08Emulator(16, 16, 2) as device:
        rig = await make_rig(tcp_transport(await serve(device)))
        device.panel_protect(0, 4, 12)
        assert (await rig.next(ProtectChanged)).protect == Protect(ProtectKind.PROTECT,
                                                                   "device 12")
        # the owner's name follows (PROTECT DEVICE NAME 17/18)
        held = Protect(ProtectKind.PROTECT, "device 12 (DEV 12)")
        assert (await rig.next(ProtectChanged)).protect == held
        # an administrator clears tieline's view; the device still protects
        await rig.service.release(ADMIN, "pb", 4, ["video"], force=True)
        assert rig.state.protect(0, 4) is None
        with pytest.raises(Protected) as refused:
            await rig.service.route(ALICE, "pb", 4, 1, ["video"])
        assert refused.value.owner == "device 12 (DEV 12)"
        assert "destination 5 on level video is protected by device 12" in refused.value.message
        assert rig.state.protect(0, 4) == Protect(ProtectKind.PROTECT, "device 12 (DEV 12)")
        assert device.source(0, 4) == 4


async def test_device_without_tally_dump_or_echo_is_still_read_and_confirmed(make_rig):
    async with SWP08Emulator(16, 8, 2, unsupported={21, 100, 102},
                           echo_unchanged=False) as device:
        device.panel_route(1, 6, 3)
        spec = RouterSpec("pb", "swp08", ("video", "audio"), 16, 8)
        rig = await make_rig(tcp_transport(await serve(device)), spec=spec)
        assert rig.state.source(1, 6) == 3 and rig.state.source(0, 7) == 7
        # already set and not echoed: confirmed by the interrogate that follows
        assert await rig.service.route(ALICE, "pb", 6, 3, ["audio"]) == (Crosspoint(1, 6, 3),)


async def test_device_smaller_than_settings_comes_online_with_unknowns(make_rig, caplog):
    async with SWP08Emulator(4, 4) as device:
        spec = RouterSpec("pb", "swp08", ("video",), 6, 6)
        with caplog.at_level(logging.INFO):
            rig = await make_rig(tcp_transport(await serve(device)), spec=spec)
        assert [rig.state.source(0, d) for d in range(6)] == [0, 1, 2, 3, UNKNOWN, UNKNOWN]
        assert "did not answer" in caplog.text
        with pytest.raises(Refused, match="INVALID MESSAGE"):
            await rig.service.route(ALICE, "pb", 5, 1)


async def test_deviating_device_is_understood(make_rig):
    async with SWP08Emulator(16, 16, 2, reply_before_ack=True, byte_count_skew=1) as device:
        rig = await make_rig(tcp_transport(await serve(device)))
        await rig.service.route(ALICE, "pb", 1, 2)
        assert rig.driver.session.codec.stats.skewed_byte_counts > 0


async def test_extended_numbers_on_a_large_router(make_rig):
    async with SWP08Emulator(1500, 1100, 1) as device:
        spec = RouterSpec("pb", "swp08", ("video",), 1500, 1100)
        rig = await make_rig(tcp_transport(await serve(device)), spec=spec,
                             options={"protects": "off", "names": False})
        assert rig.state.source(0, 1099) == 1099
        await rig.service.route(ALICE, "pb", 1050, 1400)
        assert device.source(0, 1050) == 1400
        assert connects(device)[-1] == Connect(0, 0, 1050, 1400, True)


async def test_levels_on_other_matrices(make_rig):
    async with SWP08Emulator(8, 8, 3, matrices=2) as device:
        spec = RouterSpec("pb", "swp08", ("video", "audio"), 8, 8)
        options = {"matrix": 1, "level_numbers": {"audio": 2}}
        rig = await make_rig(tcp_transport(await serve(device)), spec=spec, options=options)
        await rig.service.route(ALICE, "pb", 3, 5)
        assert (device.source(0, 3, matrix=1), device.source(2, 3, matrix=1)) == (5, 5)
        assert device.source(0, 3, matrix=0) == 3
        device.panel_route(2, 1, 7, matrix=1)
        device.panel_route(2, 2, 7, matrix=0)  # another matrix: not this router's
        async with asyncio.timeout(2):
            while rig.state.source(1, 1) != 7:
                await asyncio.sleep(0.005)
        assert rig.state.source(1, 2) == 2


async def test_names_updated_at_the_frame_reach_tieline(make_rig):
    async with SWP08Emulator(16, 16, 2, names_updated_delay_s=0.02) as device:
        rig = await make_rig(tcp_transport(await serve(device)))
        device.panel_name("destination", 2, "TX 1")
        event = await rig.next(LabelsChanged)
        assert (event.kind, event.labels) == (PortKind.DESTINATION, ((2, "TX 1"),))


async def test_salvo_of_1000_crosspoints_is_pipelined_and_confirmed(make_rig, monkeypatch):
    monkeypatch.setattr(SWP08Emulator, "command_log_size", None)  # every CONNECT is counted
    async with SWP08Emulator(500, 500, 2) as device:
        spec = RouterSpec("pb", "swp08", ("video", "audio"), 500, 500)
        # the real timer values: no keepalive or confirmation fallback falls in the salvo
        rig = await make_rig(tcp_transport(await serve(device)), spec=spec,
                             options={"protects": "off"}, confirm_timeout_s=10,
                             cls=SWP08Driver)
        crosspoints = tuple(Crosspoint(lv, d, (d * 7 + lv + 1) % 500)
                            for lv in range(2) for d in range(500))
        rig.service.salvos["big"] = Salvo("big", "pb", crosspoints)
        stats = rig.driver.session.codec.stats
        sent_before = stats.frames_sent
        result = await rig.service.take_salvo(ALICE, "big")
        assert result.refused == () and len(result.taken) == 1000
        assert all(device.source(xp.level, xp.destination) == xp.source for xp in crosspoints)
        assert len(connects(device)) == 1000
        # one CONNECT frame per crosspoint, no interrogate fallback needed
        assert stats.frames_sent - sent_before == 1000
        assert stats.retransmissions == 0


async def test_serial_rig_follows_panel_changes(make_rig):
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        async with SWP08Emulator(16, 16, 2) as device:
            device.serve_stream(await open_fd_stream(master), "pty")
            transport = SerialTransport({"type": "serial", "device": os.ttyname(slave)},
                                        defaults=SWP08Driver.transport_defaults["serial"])
            rig = await make_rig(transport)
            device.panel_route(0, 3, 1)
            assert (await rig.next(CrosspointsChanged)).crosspoints == (Crosspoint(0, 3, 1),)
            await rig.service.route(ALICE, "pb", 0, 15, ["audio"])
            assert device.source(1, 0) == 15
    finally:
        os.close(master)
        os.close(slave)


# -- tieline emulate swp08 ------------------------------------------------------------------------


async def test_emulate_command_serves_tcp_and_a_serial_line():
    tieline = str(Path(sys.executable).with_name("tieline"))
    master, slave = os.openpty()
    tty.setraw(slave)
    proc = await asyncio.create_subprocess_exec(
        tieline, "emulate", "swp08", "--listen", "127.0.0.1:0", "--serial", os.ttyname(slave),
        "--inputs", "8", "--outputs", "12", "--levels", "2",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
            assert line.startswith("tieline: emulating swp08 (8x12, 2 level(s)) on tcp://")
            port = int(line.rsplit(":", 1)[1])
            assert "on " + os.ttyname(slave) in (await proc.stdout.readline()).decode()
        # over the serial line, by hand: INTERROGATE level 1 destination 11 (notes §5)
        line_stream = await open_fd_stream(master)
        line_stream.write(frame(0x01, 0x01, 0x00, 11))
        reply = b""
        async with asyncio.timeout(5):
            while frame(0x03, 0x01, 0x00, 11, 3) not in reply:  # 11 % 8 sources
                reply += await line_stream.read(100)
        assert reply.startswith(b"\x10\x06")  # ACK first
        line_stream.close()
        # over TCP, tieline itself
        transport = TcpTransport(tcp(port))
        driver = FastSWP08(RouterSpec("e", "swp08", ("v", "a"), 8, 12), {}, transport)
        rig = Rig(driver, 2.0)
        await rig.next(DeviceOnline)
        assert rig.state.source(1, 11) == 3
        await rig.service.route(ALICE, "e", 0, 7)
        await rig.stop()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, err
    assert b"tieline: stopped" in out


def test_serial_defaults_reach_the_emulate_command():
    assert SWP08Emulator.serial_defaults == {"baudrate": 38400, "bytesize": 8, "parity": "N",
                                           "stopbits": 1}
    assert SWP08Emulator.serial is True
