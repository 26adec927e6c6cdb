"""The Videohub driver against the Videohub emulator over real TCP sockets on 127.0.0.1.

End-to-end tests run a real node (settings folder, WebSocket API, RawClient); a second
controller talks to the emulator over a raw socket with bytes written by hand (not the
codec), so these tests do not depend on it. Failure cases (half-open path, garbage, slow
device, locks racing a route) run the routing core by hand with small keepalive values.
"""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tieline.auth import hash_token
from tieline.devices import DeviceLink, backoff
from tieline.errors import Protected, Refused
from tieline.events import (
    CrosspointsChanged,
    DeviceOffline,
    DeviceOnline,
    Event,
    EventBus,
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
from tieline.plugins.videohub.codec import (
    LabelTable,
    Labels,
    Locks,
    Ping,
    Routes,
    RoutingTable,
    StatusRequest,
)
from tieline.plugins.videohub.driver import OTHER_OWNER, VideohubDriver
from tieline.plugins.videohub.emulator import VideohubEmulator
from tieline.routing import RouterRuntime, RoutingService
from tieline.transports import TcpTransport

from .helpers import RawClient, api_url, running_node

TOKENS = {"operator": "route-token", "admin": "admin-token"}
LEVELS = {"operator": 2, "admin": 3}
SPEC = RouterSpec("hub", "videohub", ("video",), 8, 8)
ALICE = Principal("alice", Permission.ROUTE)
ADMIN = Principal("admin", Permission.ADMIN)
#: what tieline may send a Videohub while it starts: reads and pings, never a change
READS = (Ping, StatusRequest)


async def serve(device: VideohubEmulator, port: int = 0) -> int:
    server = await device.serve_tcp("127.0.0.1", port)
    return server.sockets[0].getsockname()[1]


class RawVideohubClient:
    """A second controller speaking the Videohub protocol by hand over a raw socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.text = ""

    @classmethod
    async def open(cls, port: int) -> RawVideohubClient:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        await client.until("END PRELUDE:\n\n")
        return client

    async def until(self, marker: str) -> str:
        """Everything received up to and including ``marker``."""
        async with asyncio.timeout(3):
            while marker not in self.text:
                data = await self.reader.read(65536)
                assert data, "the Videohub closed the connection"
                self.text += data.decode()
        head, _, self.text = self.text.partition(marker)
        return head + marker

    def send(self, text: str) -> None:
        self.writer.write(text.encode())

    def close(self) -> None:
        self.writer.close()


# -- a real node -------------------------------------------------------------------------------


def node_settings(settings_dir: Callable[..., Path], port: int, name: str = "settings") -> Path:
    return settings_dir({
        "tieline.json": {
            "node": {"name": "vh-test"},
            "routers": [{"id": "hub", "driver": "videohub", "levels": ["video"], "sources": 8,
                         "destinations": 8, "confirm_grace_ms": 50,
                         "transport": {"type": "tcp", "host": "127.0.0.1", "port": port}}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"users_file": "users.json"},
        },
        "users.json": {"users": [{"name": n, "level": LEVELS[n], "token_sha256": hash_token(t)}
                                 for n, t in TOKENS.items()]},
    }, name)


async def api(node: Any, user: str = "operator") -> RawClient:
    return await RawClient.open(api_url(node), TOKENS[user])


async def next_event(client: RawClient, event: str, **fields: Any) -> dict[str, Any]:
    """The next API event of this kind (and these fields); others are skipped."""
    async with asyncio.timeout(5):
        while True:
            message = await client.next_event()
            if message["event"] == event and all(message.get(k) == v for k, v in fields.items()):
                return message


def tieline_peer(device: VideohubEmulator) -> str:
    """The name of the connection tieline holds (the first one that sent a PING)."""
    return next(name for name, m in device.command_log if isinstance(m, Ping))


async def test_routes_both_ways_between_the_api_and_the_videohub(settings_dir):
    async with VideohubEmulator(8, 8) as device:
        port = await serve(device)
        async with running_node(node_settings(settings_dir, port)) as node:
            client = await api(node)
            snapshot = (await client.request("subscribe"))["result"]["routers"][0]
            assert snapshot["crosspoints"]["video"] == [1, 2, 3, 4, 5, 6, 7, 8]
            assert snapshot["labels"]["sources"][0] == "Input 1"
            # a route through the API lands on the device
            response = await client.request("route", router="hub", destination=3, source=6)
            assert response["ok"], response
            assert device.source(2) == 5
            await next_event(client, "crosspoints")
            # a route already set is confirmed too (the device sends nothing: a table read)
            response = await client.request("route", router="hub", destination=3, source=6)
            assert response["ok"], response
            # a second controller straight on the device: its route shows in tieline
            other = await RawVideohubClient.open(port)
            other.send("VIDEO OUTPUT ROUTING:\n4 1\n\n")
            assert await other.until("\n\n") == "ACK\n\n"
            event = await next_event(client, "crosspoints")
            assert event["crosspoints"] == [{"level": "video", "destination": 5, "source": 2}]
            assert node.routing.routers["hub"].state.source(0, 4) == 1
            # labels both ways
            admin = await api(node, "admin")
            assert (await admin.request("label", router="hub", kind="source", index=2,
                                        text="Cam 2 wide"))["ok"]
            assert device.label(LabelTable.INPUT, 1) == "Cam 2 wide"
            other.send("OUTPUT LABELS:\n0 PGM\n\n")
            event = await next_event(client, "labels", kind="destination")
            assert event["labels"] == [{"index": 1, "text": "PGM"}]
            other.close()
            await client.close()
            await admin.close()
        mine = [m for m in device.commands(peer=tieline_peer(device)) if not isinstance(m, Ping)]
        assert [type(m) for m in mine] == [Routes, Routes, StatusRequest, Labels]
        assert mine[0] == Routes(RoutingTable.VIDEO_OUTPUT, ((2, 5),))


async def test_locks_are_protects_and_refusals_name_the_owner(settings_dir):
    async with VideohubEmulator(8, 8, lock_owner="connection") as device:
        port = await serve(device)
        async with running_node(node_settings(settings_dir, port)) as node:
            client = await api(node)
            await client.request("subscribe")
            other = await RawVideohubClient.open(port)
            other.send("VIDEO OUTPUT LOCKS:\n1 O\n\n")
            assert await other.until("\n\n") == "ACK\n\n"
            event = await next_event(client, "protect", destination=2)
            assert event["protect"] == {"kind": "protect", "owner": OTHER_OWNER}
            response = await client.request("route", router="hub", destination=2, source=1)
            assert response["error"]["code"] == "protected"
            assert response["error"]["owner"] == OTHER_OWNER
            assert OTHER_OWNER in response["error"]["message"]
            # tieline's own protect is a Videohub lock held by tieline's connection
            assert (await client.request("protect", router="hub", destination=4))["ok"]
            assert device.lock_owner_of(3) == tieline_peer(device)
            assert "VIDEO OUTPUT LOCKS:\n3 L\n\n" in await other.until("3 L\n\n")
            state = node.routing.routers["hub"].state
            assert state.protect(0, 3) == Protect(ProtectKind.PROTECT, "operator")
            assert (await client.request("release", router="hub", destination=4))["ok"]
            assert device.lock_owner_of(3) is None
            # someone else's lock: an administrator forces it (F)
            admin = await api(node, "admin")
            assert (await admin.request("release", router="hub", destination=2, force=True))["ok"]
            assert device.lock_owner_of(1) is None
            assert (await client.request("route", router="hub", destination=2, source=1))["ok"]
            other.close()
            await client.close()
            await admin.close()
        letters = [m.locks for m in device.commands(Locks, tieline_peer(device))]
        assert [[(p, s.value) for p, s in lk] for lk in letters] == [
            [(3, "O")], [(3, "U")], [(1, "F")]]


async def test_restarted_node_shows_the_new_routing_and_sends_no_route(settings_dir):
    async with VideohubEmulator(8, 8) as device:
        port = await serve(device)
        folder = node_settings(settings_dir, port)
        async with running_node(folder) as node:
            client = await api(node)
            assert (await client.request("route", router="hub", destination=1, source=8))["ok"]
            await client.close()
        assert device.source(0) == 7
        # meanwhile someone else changes the routing and a label
        device.panel_route(0, 2)
        device.panel_route(6, 6)
        device.panel_label(LabelTable.OUTPUT, 0, "TX 1")
        device.command_log.clear()
        async with running_node(folder) as node:
            state = node.routing.routers["hub"].state
            assert [state.source(0, d) for d in range(8)] == [device.source(d) for d in range(8)]
            assert state.source(0, 0) == 2
            assert state.label(PortKind.DESTINATION, 0) == "TX 1"
            await asyncio.sleep(0.1)  # let any start-up traffic reach the device
        assert device.source(0) == 2  # the old route was not pushed back
        started = list(device.command_log)
        assert started and all(isinstance(m, READS) for _, m in started), started


async def test_device_dropping_the_connection_goes_offline_and_resyncs(settings_dir):
    async with VideohubEmulator(8, 8) as device:
        port = await serve(device)
        async with running_node(node_settings(settings_dir, port)) as node:
            client = await api(node)
            await client.request("subscribe")
            await device.disconnect_all()
            device.panel_route(5, 3)  # made while tieline was away
            event = await next_event(client, "device")
            assert event["online"] is False
            assert event["reason"] == "the device closed the connection"
            assert (await next_event(client, "device"))["online"] is True
            assert node.routing.routers["hub"].state.source(0, 5) == 3
            await client.close()


async def test_device_restarted_with_other_routing_is_followed_not_overwritten(settings_dir):
    first = VideohubEmulator(8, 8)
    port = await serve(first)
    async with running_node(node_settings(settings_dir, port)) as node:
        client = await api(node)
        assert (await client.request("route", router="hub", destination=1, source=5))["ok"]
        await client.request("subscribe")
        await first.close()
        assert (await next_event(client, "device"))["online"] is False
        async with VideohubEmulator(8, 8, version="2.3") as second:  # older firmware
            second.panel_route(1, 7)
            await serve(second, port)
            assert (await next_event(client, "device"))["online"] is True
            state = node.routing.routers["hub"].state
            assert [state.source(0, d) for d in range(8)] == [second.source(d) for d in range(8)]
            assert state.source(0, 0) == 0  # not the 4 routed on the first device
            assert all(isinstance(m, READS) for _, m in second.command_log)
        await client.close()


# -- the routing core by hand, with small keepalive values -----------------------------------


class FastVideohubDriver(VideohubDriver):
    keepalive_interval_s = 0.1
    keepalive_timeout_s = 0.3
    sync_timeout_s = 2.0


class SlowLinkVideohubDriver(VideohubDriver):
    """Keepalive slower than the device's replies, as it must be in the field."""

    keepalive_interval_s = 1.0
    keepalive_timeout_s = 3.0


def fast_backoff() -> Any:
    return backoff(initial=0.01, factor=1.5, cap=0.05, rng=random.Random(7))


class Rig:
    """One router's routing core around a driver, with the bus's events at hand."""

    def __init__(self, driver: VideohubDriver, confirm_timeout_s: float) -> None:
        self.bus = EventBus()
        self.events = self.bus.subscribe("test", maxsize=100_000)
        failover = Failover(NodeStatus("test", Role.STANDALONE, State.ACTIVE), self.bus.publish)
        self.service = RoutingService(self.bus, failover)
        self.link = DeviceLink(driver, self.service, backoff_factory=fast_backoff)
        self.runtime = RouterRuntime(state=RouterState(driver.spec), driver=driver,
                                     link=self.link, confirm_timeout_s=confirm_timeout_s)
        self.service.add_router(self.runtime)
        self.state = self.runtime.state
        self.task = asyncio.create_task(self.link.run(), name="test link")

    async def next(self, kind: type[Event], timeout: float = 3.0) -> Any:
        async with asyncio.timeout(timeout):
            async for event in self.events:
                if isinstance(event, kind):
                    return event
        raise AssertionError("the event bus closed")

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled():
            self.task.result()


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []

    async def make(port: int, spec: RouterSpec = SPEC, *, online: bool = True,
                   confirm_timeout_s: float = 2.0, cls: type[VideohubDriver] = FastVideohubDriver,
                   **options: Any) -> Rig:
        transport = TcpTransport({"type": "tcp", "host": "127.0.0.1"}, defaults={"port": port})
        made = Rig(cls(spec, {"confirm_grace_ms": 50, **options}, transport), confirm_timeout_s)
        rigs.append(made)
        if online:
            await made.next(DeviceOnline)
        return made

    yield make
    for made in reversed(rigs):
        await made.stop()


class Proxy:
    """A TCP proxy whose open connections can be frozen: a half-open path."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.frozen: set[int] = set()
        self.connections = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
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


async def test_half_open_connection_is_detected_and_the_link_reconnects(rig):
    async with VideohubEmulator(8, 8) as device:
        proxy = Proxy(await serve(device))
        try:
            made = await rig(await proxy.start())
            proxy.freeze()
            offline = await made.next(DeviceOffline)
            assert "no data from the device for 0.3 s" in offline.reason
            await made.next(DeviceOnline)
            assert proxy.connections == 2
            await made.service.route(ALICE, "hub", 4, 4)
            assert device.source(4) == 4
        finally:
            await proxy.close()


async def test_garbage_from_the_device_is_logged_and_the_link_resyncs(rig, caplog):
    async with VideohubEmulator(8, 8) as device:
        made = await rig(await serve(device))
        with caplog.at_level(logging.WARNING, logger="tieline.devices"):
            device.send_raw(b"\xff\xfe\x00 garbage\n\n")
            await made.next(DeviceOffline)
            await made.next(DeviceOnline)
        assert "unparseable data from the device (line contains a control character)" \
            in caplog.text
        assert made.link.connects == 2
        await made.service.route(ALICE, "hub", 0, 1)
        assert device.source(0) == 1


async def test_unknown_blocks_are_skipped_and_logged_once(rig, caplog):
    async with VideohubEmulator(8, 8) as device:
        made = await rig(await serve(device))
        with caplog.at_level(logging.INFO, logger="tieline.plugins.videohub"):
            device.inject_block("FUTURE FEATURE", ["0 something", "Key: value"])
            device.inject_block("FUTURE FEATURE", ["1 more"])
            device.panel_route(2, 7)
            assert (await made.next(CrosspointsChanged)).crosspoints == (Crosspoint(0, 2, 7),)
        assert caplog.text.count("skipping the unknown block 'FUTURE FEATURE'") == 1
        assert made.link.online and made.link.connects == 1


async def test_slow_device_still_confirms_within_the_timeout(rig):
    async with VideohubEmulator(8, 8, response_delay_s=0.15) as device:
        made = await rig(await serve(device), confirm_timeout_s=2.0, cls=SlowLinkVideohubDriver)
        assert await made.service.route(ALICE, "hub", 6, 2) == (Crosspoint(0, 6, 2),)
        assert await made.service.route(ALICE, "hub", 6, 2) == (Crosspoint(0, 6, 2),)  # no-op
        await made.service.protect(ALICE, "hub", 6)
        assert device.lock_owner_of(6) == "127.0.0.1"
        assert made.link.connects == 1


@pytest.mark.parametrize("answer", ["nak", "ack"])
async def test_route_to_an_output_locked_meanwhile_is_refused_naming_the_owner(rig, answer):
    async with VideohubEmulator(8, 8, locked_route=answer, response_delay_s=0.1) as device:
        made = await rig(await serve(device))
        request = asyncio.create_task(made.service.route(ALICE, "hub", 3, 5))
        async with asyncio.timeout(2):
            while not device.commands(Routes):
                await asyncio.sleep(0.005)
        device.panel_lock(3)  # another client locks it while the route is on its way
        with pytest.raises(Protected) as refused:
            await request
        assert refused.value.owner == OTHER_OWNER
        assert "output 4 is locked by another Videohub client" in refused.value.message
        assert made.state.source(0, 3) == device.source(3) == 3
        assert made.state.protect(0, 3) == Protect(ProtectKind.PROTECT, OTHER_OWNER)


async def test_salvo_is_one_block_and_confirmed(rig):
    async with VideohubEmulator(200, 200) as device:
        spec = RouterSpec("hub", "videohub", ("video",), 200, 200)
        made = await rig(await serve(device), spec)
        crosspoints = tuple(Crosspoint(0, d, (d * 7 + 1) % 200) for d in range(200))
        made.service.salvos["all"] = Salvo("all", "hub", crosspoints)
        result = await made.service.take_salvo(ALICE, "all")
        assert result.refused == () and set(result.taken) == set(crosspoints)
        assert [device.source(d) for d in range(200)] == [xp.source for xp in crosspoints]
        assert len(device.commands(Routes)) == 1


async def test_monitoring_and_serial_tables_as_levels(rig):
    async with VideohubEmulator(4, 4, monitoring_outputs=4, serial_ports=4) as device:
        spec = RouterSpec("hub", "videohub", ("video", "monitor", "rs422"), 4, 4)
        made = await rig(await serve(device), spec, tables=["video", "monitoring", "serial"])
        assert made.state.source(2, 0) == UNKNOWN  # serial port not connected (-1)
        await made.service.route(ALICE, "hub", 1, 3, levels=["monitor", "rs422"])
        assert (device.source(1, "monitoring"), device.source(1, "serial")) == (3, 3)
        assert device.source(1) == 1  # the video level was left alone
        await made.service.protect(ALICE, "hub", 2, levels=["rs422"])
        assert device.lock_owner_of(2, "serial") == "127.0.0.1"
        assert made.state.protect(2, 2) == Protect(ProtectKind.PROTECT, "alice")


async def test_level_without_a_table_is_refused_at_once(rig):
    async with VideohubEmulator(8, 8) as device:
        spec = RouterSpec("hub", "videohub", ("video", "audio"), 8, 8)
        made = await rig(await serve(device), spec)
        with pytest.raises(Refused, match="level 'audio' drives no Videohub table"):
            await made.service.route(ALICE, "hub", 1, 1)
        await made.service.route(ALICE, "hub", 1, 2, levels=["video"])
        assert not [m for m in device.commands(Routes) if (1, 1) in m.routes]


async def test_router_without_a_video_server_attached_stays_offline(rig, caplog):
    async with VideohubEmulator(8, 8, present="false", version="2.3") as device:
        with caplog.at_level(logging.WARNING, logger="tieline.devices"):
            made = await rig(await serve(device), online=False)
            async with asyncio.timeout(3):
                while len([n for n, m in device.command_log if isinstance(m, Ping)]) < 2:
                    await asyncio.sleep(0.01)
        assert not made.link.online
        assert "no router is attached to the Videohub Server" in caplog.text


# -- tieline emulate ---------------------------------------------------------------------------


async def test_emulate_command_serves_a_videohub():
    tieline = str(Path(sys.executable).with_name("tieline"))
    proc = await asyncio.create_subprocess_exec(
        tieline, "emulate", "videohub", "--listen", "127.0.0.1:0", "--inputs", "4",
        "--outputs", "6", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("tieline: emulating videohub (4x6, 1 level(s)) on tcp://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        other = await RawVideohubClient.open(port)
        other.send("VIDEO OUTPUT ROUTING:\n5 3\n\n")
        assert await other.until("\n\n") == "ACK\n\n"
        assert await other.until("\n\n") == "VIDEO OUTPUT ROUTING:\n5 3\n\n"
        other.close()
    finally:
        proc.send_signal(2)
        _, err = await proc.communicate()
    assert proc.returncode == 0, err


def test_emulate_refuses_more_than_one_level():
    from click.testing import CliRunner

    from tieline.cli import main

    result = CliRunner().invoke(main, ["emulate", "videohub", "--listen", "127.0.0.1:0",
                                       "--levels", "2"])
    assert result.exit_code == 2 and "--levels must be 1, not 2" in result.output
    result = CliRunner().invoke(main, ["emulate", "videohub", "--serial", "/dev/null"])
    assert result.exit_code == 2 and "the videohub protocol has no serial line" in result.output
