"""The Extron SIS driver against its emulator over real TCP, SSH and a pseudo-terminal.

End-to-end tests run a real node (settings folder, WebSocket API, RawClient); link-level
tests build the routing core by hand (event bus, failover, routing service, one device link)
around a driver subclass with small keepalive timings. A "second controller" is a raw
socket typing SIS by hand, independent of tieline's codec. Every emulator made here is
checked after its test: no controller ever sent it the clear-all command or a tie to every
output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tieline.auth import hash_token
from tieline.devices import DeviceLink, backoff
from tieline.errors import Protected, Refused
from tieline.events import CrosspointsChanged, DeviceOffline, DeviceOnline, Event, EventBus
from tieline.failover import Failover, NodeStatus, Role, State
from tieline.model import (
    Crosspoint,
    Permission,
    PortKind,
    Principal,
    RouterSpec,
    RouterState,
    Salvo,
)
from tieline.plugins.extron_sis.codec import (
    TIE_COMMANDS,
    ClearAllTies,
    Plane,
    QuickTie,
    Telnet,
    Tie,
    TieToAll,
)
from tieline.plugins.extron_sis.driver import ExtronDriver
from tieline.plugins.extron_sis.emulator import ExtronEmulator
from tieline.routing import RouterRuntime, RoutingService
from tieline.transports import SerialTransport, TcpTransport, open_fd_stream

from .helpers import RawClient, api_url, running_node

SPEC = RouterSpec("mx", "extron_sis", ("video", "audio"), 8, 8)
ALICE = Principal("alice", Permission.ROUTE)
BOB = Principal("bob", Permission.ROUTE)
VID, AUD, ALL = Plane.VIDEO, Plane.AUDIO, Plane.ALL
PASSWORD = "extron"


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
async def make_device(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[..., Any]]:
    """Emulators for one test; afterwards none may have been sent clear-all (§2)."""
    monkeypatch.setattr(ExtronEmulator, "command_log_size", None)  # the check sees every one
    devices: list[ExtronEmulator] = []

    async def make(*args: Any, **kwargs: Any) -> ExtronEmulator:
        device = ExtronEmulator(*args, **kwargs)
        await device.start()
        devices.append(device)
        return device

    yield make
    for device in devices:
        await device.close()
        destructive = [(who, m) for who, m in device.command_log
                       if isinstance(m, (ClearAllTies, TieToAll))]
        assert not destructive, f"clear-all or tie-to-all sent: {destructive}"


async def serve(device: ExtronEmulator, port: int = 0) -> int:
    server = await device.serve_tcp("127.0.0.1", port)
    return server.sockets[0].getsockname()[1]


def ties_sent(device: ExtronEmulator) -> list[Any]:
    return [m for _, m in device.command_log if isinstance(m, TIE_COMMANDS)]


class SecondController:
    """Another controller on the switcher: a raw socket typing SIS by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, password: str | None = PASSWORD) -> SecondController:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self = cls(reader, writer)
        async with asyncio.timeout(2):
            if password is None:
                await reader.readuntil(b"10:11:12\r\n")  # the banner's date line
            else:
                await reader.readuntil(b"Password:")
                writer.write(password.encode() + b"\r")
                await reader.readuntil(b"Login Administrator\r\n")
        return self

    async def ask(self, command: bytes) -> bytes:
        """Send a command, return its response line."""
        self.writer.write(command)
        async with asyncio.timeout(2):
            return (await self.reader.readuntil(b"\r\n"))[:-2]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def fast_backoff() -> Any:
    return backoff(initial=0.01, factor=1.5, cap=0.05, rng=random.Random(7))


class QuickExtron(ExtronDriver):
    """Small timings, so a silent device is given up quickly in tests."""

    keepalive_interval_s = 0.05
    keepalive_timeout_s = 0.3
    sync_timeout_s = 2.0
    login_wait_s = 0.2


class Rig:
    """One router's routing core around a driver, with the bus's events at hand."""

    def __init__(self, driver: ExtronDriver, confirm_timeout_s: float) -> None:
        self.bus = EventBus()
        self.events = self.bus.subscribe("test", maxsize=100_000)
        failover = Failover(NodeStatus("test", Role.STANDALONE, State.ACTIVE), self.bus.publish)
        self.service = RoutingService(self.bus, failover)
        self.link = DeviceLink(driver, self.service, backoff_factory=fast_backoff)
        self.runtime = RouterRuntime(state=RouterState(driver.spec), driver=driver,
                                     link=self.link, confirm_timeout_s=confirm_timeout_s)
        self.service.add_router(self.runtime)
        self.task = asyncio.create_task(self.link.run(), name="test link")

    @property
    def state(self) -> RouterState:
        return self.runtime.state

    def sources(self, level: int) -> list[int]:
        return list(self.state.level_sources(level))

    async def next(self, kind: type[Event], timeout: float = 3.0) -> Any:
        async with asyncio.timeout(timeout):
            async for event in self.events:
                if isinstance(event, kind):
                    return event
        raise AssertionError("the event bus closed")

    async def until(self, check: Callable[[], bool], timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled():
            self.task.result()


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []

    async def make(port: int | None = None, *, options: dict[str, Any] | None = None,
                   spec: RouterSpec = SPEC, cls: type[ExtronDriver] = QuickExtron,
                   transport: Any = None, online: bool = True,
                   confirm_timeout_s: float = 2.0) -> Rig:
        if transport is None:
            transport = TcpTransport({"type": "tcp", "host": "127.0.0.1", "port": port})
        opts = {"password": PASSWORD} if options is None else options
        rig = Rig(cls(spec, opts, transport), confirm_timeout_s)
        rigs.append(rig)
        if online:
            await rig.next(DeviceOnline)
        return rig

    yield make
    for rig in reversed(rigs):
        await rig.stop()


def node_settings(settings_dir: Callable[..., Path], transport: dict[str, Any],
                  name: str = "settings", **router: Any) -> Path:
    return settings_dir({
        "tieline.json": {
            "node": {"name": "extron-test"},
            "routers": [{"id": "mx", "driver": "extron_sis", "levels": ["video", "audio"],
                         "sources": 8, "destinations": 8, "transport": transport, **router}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"users_file": "users.json"},
        },
        "users.json": {"users": [
            {"name": "alice", "level": 3, "token_sha256": hash_token("alice-token")},
            {"name": "bob", "level": 2, "token_sha256": hash_token("bob-token")},
        ]},
    }, name)


async def api_client(node: Any, user: str = "alice") -> RawClient:
    return await RawClient.open(api_url(node), f"{user}-token")


async def event_for(client: RawClient, destination: int) -> dict[str, Any]:
    """The next crosspoints event that names ``destination`` (1-based)."""
    while True:
        event = await client.next_event(timeout=3)
        if event["event"] == "crosspoints" and any(
                x["destination"] == destination for x in event["crosspoints"]):
            return event


# -- end to end: a node, the WebSocket API, the emulator over Telnet/TCP ------------------


async def test_routes_through_the_api_land_on_the_switcher_and_others_show_up(
        settings_dir, make_device):
    device = await make_device(8, 8, 2, password=PASSWORD, telnet_negotiation=True)
    port = await serve(device)
    folder = node_settings(settings_dir, {"type": "tcp", "host": "127.0.0.1", "port": port},
                           password=PASSWORD, sources=10)
    async with running_node(folder) as node:
        assert ties_sent(device) == []  # start-up only reads
        assert {type(m).__name__ for _, m in device.command_log} == {
            "Telnet", "Password", "SetVerbose", "QueryInformation", "ReadTie", "ReadName"}
        assert Telnet(254, 1) in [m for _, m in device.command_log]  # refused: DONT echo
        client = await api_client(node)
        snapshot = (await client.request("subscribe"))["result"]
        router = snapshot["routers"][0]
        assert router["crosspoints"]["video"] == [1, 2, 3, 4, 5, 6, 7, 8]
        assert router["labels"]["sources"][1] == "Input 2"

        # both levels with one source: one "all" tie
        response = await client.request("route", router="mx", destination=5, source=3)
        assert response["ok"], response
        assert (device.tie(5, VID), device.tie(5, AUD)) == (3, 3)
        assert ties_sent(device) == [Tie(3, 5, ALL)]
        # audio breakaway
        response = await client.request("route", router="mx", destination=5, source=7,
                                        levels=["audio"])
        assert response["result"]["crosspoints"] == [
            {"level": "audio", "destination": 5, "source": 7}]
        assert ties_sent(device)[-1] == Tie(7, 5, AUD)

        # a second controller ties: tieline shows it within one tally
        other = await SecondController.connect(port)
        assert await other.ask(b"2*6!") == b"Out06 In02 All"
        event = await event_for(client, 6)
        assert event["crosspoints"] == [{"level": "video", "destination": 6, "source": 2},
                                        {"level": "audio", "destination": 6, "source": 2}]
        # a front-panel tie reported only as Qik: tieline reads every tie again
        device.panel_tie(4, 7, VID, report="qik")
        event = await event_for(client, 7)
        assert event["crosspoints"] == [{"level": "video", "destination": 7, "source": 4}]

        # the device's error, in words
        refused = await client.request("route", router="mx", destination=1, source=10)
        assert refused["error"]["code"] == "refused"
        assert "E01 invalid input number (the device has fewer inputs)" in \
            refused["error"]["message"]
        assert device.tie(1) == 1

        # labels are the device's names
        response = await client.request("label", router="mx", kind="destination", index=2,
                                        text="PGM")
        assert response["ok"], response
        assert device.names[PortKind.DESTINATION][2] == "PGM"
        too_long = await client.request("label", router="mx", kind="source", index=1,
                                        text="A name too long")
        assert too_long["error"]["code"] == "invalid"
        assert "at most 12 characters" in too_long["error"]["message"]

        # protects are tieline's own (SIS has none): the owner is named, nothing is sent
        bob = await api_client(node, "bob")
        sent = len(device.command_log)
        assert (await bob.request("protect", router="mx", destination=3))["ok"]
        assert len(device.command_log) == sent
        blocked = await client.request("route", router="mx", destination=3, source=1)
        assert blocked["error"]["code"] == "protected"
        assert blocked["error"]["owner"] == "bob"
        assert len(device.command_log) == sent
        await other.close()
        await bob.close()
        await client.close()


async def test_restarted_node_shows_the_devices_new_routing_and_sends_no_tie(
        settings_dir, make_device):
    device = await make_device(8, 8, 2, password=PASSWORD)
    port = await serve(device)
    folder = node_settings(settings_dir, {"type": "tcp", "host": "127.0.0.1", "port": port},
                           password=PASSWORD)
    async with running_node(folder) as node:
        client = await api_client(node)
        assert (await client.request("route", router="mx", destination=2, source=8))["ok"]
        await client.close()
    # meanwhile the switcher changed, telling nobody
    device.set_ties(video={2: 3, 4: 0}, audio={2: 6, 8: 1})
    device.command_log.clear()
    async with running_node(folder) as node:
        state = node.routing.routers["mx"].state
        assert list(state.level_sources(0)) == [0, 2, 2, -1, 4, 5, 6, 7]
        assert list(state.level_sources(1)) == [0, 5, 2, 3, 4, 5, 6, 0]
        assert ties_sent(device) == []


async def test_over_ssh_with_a_known_hosts_file(settings_dir, make_device):
    device = await make_device(8, 8, 2)
    server = await device.serve_ssh(username="admin", password="ssh pw")
    ssh_port = server.sockets[0].getsockname()[1]
    tcp_port = await serve(device)
    folder = node_settings(settings_dir, {
        "type": "ssh", "host": "127.0.0.1", "port": ssh_port, "username": "admin",
        "password": "ssh pw", "known_hosts": "known_hosts"})
    key = server.host_key.export_public_key().decode().strip()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{ssh_port} {key}\n")
    async with running_node(folder) as node:
        assert all(name.startswith("ssh ") for name, _ in device.command_log)
        assert ties_sent(device) == []
        client = await api_client(node)
        await client.request("subscribe")
        assert (await client.request("route", router="mx", destination=1, source=4))["ok"]
        assert device.tie(1, AUD) == 4
        other = await SecondController.connect(tcp_port, password=None)
        assert await other.ask(b"5*2%") == b"Out02 In05 Vid"
        event = await event_for(client, 2)
        assert event["crosspoints"] == [{"level": "video", "destination": 2, "source": 5}]
        await other.close()
        await client.close()


# -- the link: connection loss, half-open, garbage, a slow device -------------------------


async def test_device_closing_the_connection_goes_offline_then_resyncs(make_device, make_rig):
    device = await make_device(8, 8, 2, password=PASSWORD)
    rig = await make_rig(await serve(device))
    await device.disconnect_all()
    device.set_ties(video={5: 2})  # made while tieline was away
    assert (await rig.next(DeviceOffline)).reason == "the device closed the connection"
    await rig.next(DeviceOnline)
    assert rig.state.source(0, 4) == 1
    assert rig.link.connects == 2
    assert ties_sent(device) == []


async def test_device_restarted_with_other_routing_is_followed_not_overwritten(
        make_device, make_rig):
    first = await make_device(8, 8, 2, password=PASSWORD)
    port = await serve(first)
    rig = await make_rig(port)
    await rig.service.route(ALICE, "mx", 0, 6)
    await first.close()
    await rig.next(DeviceOffline)
    # another frame on the same address: unpadded numbers (as DXP manuals show), other ties
    second = await make_device(8, 8, 2, password=PASSWORD, pad=0)
    second.set_ties(video={2: 5}, audio={2: 0})
    await serve(second, port)
    await rig.next(DeviceOnline)
    assert rig.sources(0) == [0, 4, 2, 3, 4, 5, 6, 7]  # not the 7 routed on the first frame
    assert rig.sources(1) == [0, -1, 2, 3, 4, 5, 6, 7]
    assert ties_sent(second) == []


class Proxy:
    """A TCP proxy whose connections can be frozen: a half-open path."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.frozen = False
        self.connections = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.create_task(self._relay(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        number = self.connections
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self.writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if not (self.frozen and number == 1):
                    dst.write(data)
            dst.close()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump(reader, up_writer))
            tg.create_task(pump(up_reader, writer))

    async def close(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks)
        await self.server.wait_closed()


async def test_half_open_connection_is_found_by_the_keepalive(make_device, make_rig):
    device = await make_device(8, 8, 2, password=PASSWORD)
    proxy = Proxy(await serve(device))
    try:
        rig = await make_rig(await proxy.start())
        await rig.until(lambda: any(m.__class__.__name__ == "QueryFirmware"
                                    for _, m in device.command_log))  # Q keeps it alive
        proxy.frozen = True  # the first connection stops carrying anything
        offline = await rig.next(DeviceOffline)
        assert "no data from the device for 0.3 s" in offline.reason
        await rig.next(DeviceOnline)
        assert proxy.connections == 2
        await rig.service.route(ALICE, "mx", 3, 3)
        assert device.tie(4) == 4
    finally:
        await proxy.close()


async def test_garbage_from_the_device_is_logged_and_the_link_resyncs(
        make_device, make_rig, caplog):
    device = await make_device(8, 8, 2, password=PASSWORD)
    rig = await make_rig(await serve(device))
    with caplog.at_level(logging.WARNING, logger="tieline.devices"):
        device.send_raw(b"\x00\x01\x02garbage\x07\r\n")
        await rig.next(DeviceOffline)
        await rig.next(DeviceOnline)
    assert "unparseable data from the device" in caplog.text
    assert rig.link.connects == 2
    await rig.service.route(BOB, "mx", 0, 1, levels=["video"])
    assert ties_sent(device) == [Tie(2, 1, VID)]


async def test_slow_device_still_confirms_within_the_timeout(make_device, make_rig):
    device = await make_device(4, 4, 2, password=PASSWORD, response_delay_s=0.01)
    spec = RouterSpec("mx", "extron_sis", ("video", "audio"), 4, 4)
    rig = await make_rig(await serve(device), spec=spec, cls=ExtronDriver)
    confirmed = await rig.service.route(ALICE, "mx", 2, 0)
    assert confirmed == (Crosspoint(0, 2, 0), Crosspoint(1, 2, 0))
    assert device.tie(3, AUD) == 1


async def test_wrong_password_is_said_clearly_and_retried(make_device, make_rig, caplog):
    device = await make_device(8, 8, 2, password=PASSWORD)
    with caplog.at_level(logging.WARNING, logger="tieline.devices"):
        rig = await make_rig(await serve(device), options={"password": "wrong"}, online=False)
        await rig.until(lambda: sum(m.__class__.__name__ == "Password"
                                    for _, m in device.command_log) >= 2)
    assert "the device refused the password; check the router's \"password\" setting" \
        in caplog.text
    assert not rig.link.online


async def test_no_password_in_settings_against_a_device_that_asks(make_device, make_rig, caplog):
    device = await make_device(8, 8, 2, password=PASSWORD)
    with caplog.at_level(logging.WARNING, logger="tieline.devices"):
        rig = await make_rig(await serve(device), options={}, online=False)
        await rig.until(lambda: 'give it as "password"' in caplog.text)
    assert not rig.link.online and ties_sent(device) == []


async def test_password_in_settings_but_the_device_does_not_ask(make_device, make_rig):
    device = await make_device(8, 8, 2)
    rig = await make_rig(await serve(device))  # goes on after login_wait_s
    await rig.service.route(ALICE, "mx", 0, 7)
    assert device.tie(1) == 8


# -- changes made elsewhere, breakaway, salvos --------------------------------------------


async def test_changes_made_elsewhere_reach_tieline(make_device, make_rig):
    device = await make_device(8, 8, 2, password=PASSWORD)
    port = await serve(device)
    rig = await make_rig(port, options={"password": PASSWORD, "reread_interval_s": 0.1})
    device.panel_tie(3, 1, AUD)  # reported as a tie
    assert (await rig.next(CrosspointsChanged)).crosspoints == (Crosspoint(1, 0, 2),)
    device.stored[1] = ([0] + [8] * 8, [0] + [7] * 8)
    device.panel_recall(1)  # reported as Rpr01: every tie is read again
    await rig.until(lambda: rig.sources(0) == [7] * 8 and rig.sources(1) == [6] * 8)
    device.panel_tie(0, 2, report="none")  # reported to nobody: the periodic re-read
    await rig.until(lambda: rig.state.source(0, 1) == -1)
    device.panel_name(PortKind.SOURCE, 1, "Cam 1")
    await rig.until(lambda: rig.state.label(PortKind.SOURCE, 0) == "Cam 1")
    other = await SecondController.connect(port)
    assert await other.ask(b"\x1b+Q1*1!2*2!\r") == b"Qik"
    await rig.until(lambda: rig.sources(0)[:2] == [0, 1])
    await other.close()
    assert ties_sent(device) == [QuickTie((Tie(1, 1, ALL), Tie(2, 2, ALL)))]  # the other's


async def test_salvo_as_quick_ties_is_confirmed_by_reading_back(make_device, make_rig):
    device = await make_device(64, 64, 2, password=PASSWORD)
    spec = RouterSpec("mx", "extron_sis", ("video", "audio"), 64, 64)
    rig = await make_rig(await serve(device), spec=spec,
                         options={"password": PASSWORD, "quick_tie": True})
    crosspoints = tuple(Crosspoint(level, d, (d * 7 + level) % 64)
                        for level in range(2) for d in range(64))
    rig.service.salvos["big"] = Salvo("big", "mx", crosspoints)
    result = await rig.service.take_salvo(ALICE, "big")
    assert result.refused == () and set(result.taken) == set(crosspoints)
    assert [device.tie(d + 1, AUD) for d in range(64)] == [(d * 7 + 1) % 64 + 1
                                                          for d in range(64)]
    quick = [m for m in ties_sent(device) if isinstance(m, QuickTie)]
    assert len(quick) == 8 and sum(len(q.ties) for q in quick) == 128


async def test_video_only_frame_with_one_level(make_device, make_rig):
    device = await make_device(6, 4, 1, password=PASSWORD)
    spec = RouterSpec("mx", "extron_sis", ("video",), 8, 4)  # settings say 8 inputs
    rig = await make_rig(await serve(device), spec=spec,
                         options={"password": PASSWORD, "planes": ["all"]})
    await rig.service.route(ALICE, "mx", 3, 5)
    assert ties_sent(device) == [Tie(6, 4, ALL)] and device.tie(4) == 6
    with pytest.raises(Refused, match="E01 invalid input number"):
        await rig.service.route(ALICE, "mx", 3, 7)
    assert rig.link.online and device.tie(4) == 6


async def test_protects_are_held_by_tieline_with_the_owner_named(make_device, make_rig):
    device = await make_device(8, 8, 2, password=PASSWORD)
    rig = await make_rig(await serve(device))
    await rig.service.protect(ALICE, "mx", 2)
    with pytest.raises(Protected) as refused:
        await rig.service.route(BOB, "mx", 2, 5)
    assert refused.value.owner == "alice"
    await rig.service.route(ALICE, "mx", 2, 5)
    assert ties_sent(device) == [Tie(6, 3, ALL)]


# -- serial over a pseudo-terminal pair, and `tieline emulate extron_sis` -----------------


class AnySpeedSerial(QuickExtron):
    """A pty takes any speed; the device's default is used."""

    transports: ClassVar[tuple[str, ...]] = ("serial",)


async def test_serial_over_a_pseudo_terminal_pair(make_device, make_rig):
    master, slave = os.openpty()
    device = await make_device(8, 8, 2, password=PASSWORD)  # no login on serial (§1.1)
    try:
        device.serve_stream(await open_fd_stream(master), "pty", link="serial")
        transport = SerialTransport({"type": "serial", "device": os.ttyname(slave)},
                                    defaults=ExtronDriver.transport_defaults["serial"])
        assert transport.describe() == f"serial://{os.ttyname(slave)} 9600 8N1"
        rig = await make_rig(transport=transport, options={}, cls=AnySpeedSerial)
        await rig.service.route(ALICE, "mx", 2, 5)
        assert device.tie(3, AUD) == 6
        device.panel_tie(1, 4, VID)  # verbose reports reach tieline over the line
        await rig.until(lambda: rig.state.source(0, 3) == 0)
        assert ties_sent(device) == [Tie(6, 3, ALL)]
    finally:
        os.close(master)
        os.close(slave)


async def test_emulate_command_serves_the_switcher():
    tieline = str(Path(sys.executable).with_name("tieline"))
    proc = await asyncio.create_subprocess_exec(
        tieline, "emulate", "extron_sis", "--listen", "127.0.0.1:0", "--inputs", "4",
        "--outputs", "6", "--levels", "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith(
            "tieline: emulating extron_sis (4x6, 2 level(s)) on tcp://127.0.0.1:")
        other = await SecondController.connect(int(line.rsplit(":", 1)[1]), password=None)
        assert await other.ask(b"I") == b"V4X6 A4X6"
        assert await other.ask(b"3*6$6$6%") == b"Out06 In03 Aud"
        assert await other.ask(b"") == b"03"
        assert await other.ask(b"") == b"02"
        await other.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert b"tieline: stopped" in out
