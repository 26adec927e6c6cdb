"""A request has an identity from the API to the wire: each command gets the device's
answer to *itself* (core/devices.py, "Commands and their outcomes")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from tieline.errors import NodeStandby, Protected
from tieline.model import Crosspoint, Permission, Principal, Protect, ProtectKind
from tieline.plugins.simulator.emulator import SimulatorEmulator

from .helpers import running_node

ALICE = Principal("alice", Permission.ROUTE)
BOB = Principal("bob", Permission.ROUTE)


def _settings(settings_dir, transport: dict | None = None, **router):
    block = {"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
             "sources": 8, "destinations": 8, **router}
    if transport is not None:
        block["transport"] = transport
    return settings_dir({"tieline.json": {"node": {"name": "identity"}, "routers": [block]}})


async def test_a_refusal_fails_only_the_request_it_answers(settings_dir):
    """Alice's lock on destination 5 and Bob's route to destination 5 reach the device
    together. The device refuses the lock (Bob protected the destination at the device
    itself, which tieline did not know yet) and makes the route (Bob owns the protect):
    Alice gets the refusal, Bob his confirmation."""
    async with running_node(_settings(settings_dir)) as node:
        device: SimulatorEmulator = node.routing.routers["studio"].driver.device
        device.protects[(0, 4)] = Protect(ProtectKind.PROTECT, "bob")  # not reported
        lock, route = await asyncio.gather(
            node.routing.protect(ALICE, "studio", 4, ["video"], ProtectKind.LOCK),
            node.routing.route(BOB, "studio", 4, 2, ["video"]),
            return_exceptions=True)
        assert isinstance(lock, Protected) and lock.owner == "bob", lock
        assert "protected by bob" in lock.message
        assert route == (Crosspoint(0, 4, 2),), route
        assert device.crosspoints[0][4] == 2


async def test_requests_on_one_destination_are_carried_out_in_order(settings_dir):
    """Ten clients route one destination at once: each gets the device's answer to its
    own command, and the last one asked is what the device holds (last write wins)."""
    async with running_node(_settings(settings_dir)) as node:
        device: SimulatorEmulator = node.routing.routers["studio"].driver.device
        results = await asyncio.gather(*(
            node.routing.route(Principal(f"op{n}", Permission.ROUTE), "studio", 3, n % 8,
                               ["video"]) for n in range(10)))
        assert results == [(Crosspoint(0, 3, n % 8),) for n in range(10)]
        assert device.crosspoints[0][3] == 9 % 8
        owners = [m.owner for _, m in device.command_log if hasattr(m, "owner")]
        assert owners == [f"op{n}" for n in range(10)]  # one at a time, in the order asked


class DelayingProxy:
    """TCP between the node and the device, each direction ``delay`` s late (order kept);
    it notes when each chunk reached the device."""

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self.to_device: list[tuple[float, bytes]] = []
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        for task in (self._pump(reader, up_writer, self.to_device.append),
                     self._pump(up_reader, writer, None)):
            t = asyncio.create_task(task)
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    note: Callable[[tuple[float, bytes]], None] | None) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                if note is not None:
                    note((time.monotonic(), data))
                await writer.drain()
            writer.close()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((time.monotonic() + self.delay, data))
        finally:
            queue.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def reached_device(self, text: bytes) -> float:
        """When the first chunk holding ``text`` reached the device (infinity: not yet)."""
        return next((t for t, data in self.to_device if text in data), float("inf"))


async def test_each_acknowledgement_follows_its_own_command(settings_dir):
    """50 ms of latency each way on the router link. Alice routes destination 6 to source
    4; 70 ms later, before her tally is back, Bob asks for the very same crosspoint. Bob's
    acknowledgement must come from a report read after *his* command reached the router,
    not from the tally of Alice's (had the link dropped in between, Alice's request would
    have been what stayed on the router, unconfirmed for Bob)."""
    device = SimulatorEmulator(2, 8, 8)
    server = await device.serve_tcp("127.0.0.1", 0)
    proxy = DelayingProxy(server.sockets[0].getsockname()[:2], delay=0.05)
    port = await proxy.start()
    try:
        folder = _settings(settings_dir, {"type": "tcp", "host": "127.0.0.1", "port": port},
                           confirm_timeout_ms=3000)
        async with running_node(folder) as node:
            acked: dict[str, float] = {}

            def routed(who: Principal) -> Callable[[], Awaitable[None]]:
                async def go() -> None:
                    await node.routing.route(who, "studio", 5, 3, ["video"])
                    acked[who.name] = time.monotonic()
                return go

            alice = asyncio.create_task(routed(ALICE)())
            await asyncio.sleep(0.07)
            bob = asyncio.create_task(routed(BOB)())
            await asyncio.gather(alice, bob)
            for name in ("alice", "bob"):
                arrived = proxy.reached_device(f"ROUTE {name} ".encode())
                assert acked[name] > arrived + 0.05, (
                    f"{name}'s route was acknowledged {arrived - acked[name]:.3f} s before "
                    "its command reached the router")
    finally:
        await proxy.close()
        await device.close()


async def test_a_command_waiting_its_turn_is_not_sent_once_the_node_may_not_act(settings_dir):
    """The fence is checked when the command is written, not only when it was asked for:
    a route that waited behind another on its destination, while the node stopped being
    allowed to act, is refused as standby and never reaches the router."""
    async with running_node(_settings(settings_dir, switch_delay_ms=300)) as node:
        device: SimulatorEmulator = node.routing.routers["studio"].driver.device
        first = asyncio.create_task(node.routing.route(ALICE, "studio", 2, 5, ["video"]))
        await asyncio.sleep(0.05)  # in flight: the device takes 300 ms
        second = asyncio.create_task(node.routing.route(BOB, "studio", 2, 6, ["video"]))
        await asyncio.sleep(0.05)  # waiting its turn behind the first
        node.failover.fence_until = node.failover.clock() - 1  # as after a pause
        assert await first == (Crosspoint(0, 2, 5),)
        with pytest.raises(NodeStandby):
            await second
        assert [m.owner for _, m in device.command_log if hasattr(m, "owner")] == ["alice"]
