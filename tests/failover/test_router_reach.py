"""A standby takes over only if it reaches every router itself (lease strategy, real processes).

The rule (plugins/lease/strategy.py, ``LeaseStrategy._take_over``): a standby that has heard
no active node for a lease is a candidate, but it takes the active role only when every one
of its router links is online (``Node.connect_all_links``). When one is not, it logs
``not taking over (...): this node does not reach every router`` once (not at every
heartbeat), stays standby, and tries again at the next heartbeat, so it takes over by
itself as soon as its path to the router comes back.

What the test shows, with a real emulator and real node processes (tests/failover/cluster.py):

* node b's router link runs through a small TCP forwarder inside the test, so that only b's
  path to the router can be cut (node a connects to the emulator directly);
* with b's path cut and the active main a killed (kill -9), b stays "Backup is idle" for
  four leases and more, refuses a route with ``standby``, logs the reason exactly once, and
  the emulator receives no route command from anyone;
* once the path heals, b becomes "Backup is active" by itself, and a route sent to b is
  acknowledged and is on the device.

If the rule were broken (no ``connect_all_links`` check), b would become "Backup is active"
one lease (600 ms) after the kill, during the cut: the "still idle" check (and the log check)
fails. If the reason were logged at every attempt, the "exactly once" check fails: with
``connect_timeout_ms`` at 200 ms, b makes a candidacy about every 250 ms, so some eight
attempts fall inside the cut. If the candidate gave up for good after one failure, the
"active after healing" check fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator

from tieline.kit.testing import free_port

from .cluster import ADMIN_TOKEN, Cluster, status_of, wait_for
from .test_lease import _answer, _raw

#: a candidacy waits this long for the routers before it gives up and tries again (the
#: default is 2000 ms: a single failed attempt would then fill most of the cut)
CONNECT_TIMEOUT_MS = 200
#: how long b is kept without its router after a is killed: more than four leases (600 ms)
CUT_FOR_S = 2.6
REASON = "does not reach every router"


class Forwarder:
    """A TCP forwarder on 127.0.0.1 (a fixed port) to ``target``, that can be cut and healed.

    :meth:`start` listens; :meth:`cut` stops listening and aborts every connection it carries
    (both sides see a reset, new connections are refused); :meth:`start` again heals it on
    the same port. Each accepted connection is one tracked task that pumps both directions.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        #: how many connections were accepted since the forwarder was made
        self.accepted = 0

    @property
    def connections(self) -> int:
        """Connections being forwarded now."""
        return len(self._connections)

    async def start(self) -> None:
        assert self._server is None, "the forwarder already listens"
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def cut(self) -> None:
        """Stop accepting, and abort every connection in progress."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.accepted += 1
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            pumps = [asyncio.create_task(_pump(client_reader, upstream_writer)),
                     asyncio.create_task(_pump(upstream_reader, client_writer))]
            try:
                # either side closing ends the connection
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except OSError:
            pass  # the emulator refused us: the client sees its connection end
        finally:
            # abort, not close: a cut is a reset for both ends, nothing buffered goes through
            client_writer.transport.abort()
            if upstream_writer is not None:
                upstream_writer.transport.abort()
            self._connections.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of file or a connection error."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def forwarder_to(host: str, port: int) -> AsyncIterator[Forwarder]:
    forwarder = Forwarder(host, port)
    await forwarder.start()
    try:
        yield forwarder
    finally:
        await forwarder.cut()


def point_router_at(cluster: Cluster, name: str, port: int) -> None:
    """Write node ``name``'s settings with its router transport on 127.0.0.1:``port``."""
    path = cluster.write_settings(name) / "tieline.json"
    settings = json.loads(path.read_text())
    (router,) = settings["routers"]
    router["transport"].update(host="127.0.0.1", port=port)
    path.write_text(json.dumps(settings, indent=2))


async def _status_text(cluster: Cluster, name: str) -> str | None:
    status = await status_of(cluster.url(name), ADMIN_TOKEN)
    return status["status"] if status else None


async def test_standby_that_does_not_reach_the_router_waits_then_takes_over(make_cluster):
    cluster = make_cluster(failover={"connect_timeout_ms": CONNECT_TIMEOUT_MS})
    cluster.start_device()
    async with forwarder_to(cluster.device_host, cluster.device_port) as forwarder:
        point_router_at(cluster, "b", forwarder.port)
        await cluster.start_main_and_backup()
        # b's (warm) router link is online, through the forwarder
        b_log = cluster.procs["b"]
        await wait_for(lambda: f"router 'studio': online (tcp://127.0.0.1:{forwarder.port})"
                       in b_log.output(), 10, "b's router link online through the forwarder")
        assert forwarder.connections == 1
        downs_before = _link_downs(b_log.output())

        await forwarder.cut()
        await wait_for(lambda: _link_downs(b_log.output()) > downs_before, 10,
                       "b sees its router link down")
        killed_at = time.time()
        cluster.procs["a"].signal(signal.SIGKILL)
        cluster.procs["a"].popen.wait(10)

        # a candidate without its router: no takeover, for four leases and more
        deadline = time.monotonic() + CUT_FOR_S
        while time.monotonic() < deadline:
            assert await _status_text(cluster, "b") == "Backup is idle"
            await asyncio.sleep(0.1)
        refused = await _route(cluster, "b", destination=2, source=9)
        assert not refused["ok"] and refused["error"]["code"] == "standby", refused
        # b names no active node: the main it followed is gone, clients must not go there
        assert (await status_of(cluster.url("b")))["active"] is None
        assert "no active node is heard at the moment" in refused["error"]["message"], refused
        assert await _status_text(cluster, "b") == "Backup is idle"
        output = b_log.output()
        assert output.count(REASON) == 1, output  # logged once, not at every attempt
        assert "not taking over (no active node heard for 600 ms): this node does not reach " \
               "every router" in output, output
        assert "now active" not in output, output
        assert cluster.routes_sent(since=killed_at) == []  # nothing from anyone

        healed_at = time.monotonic()
        await forwarder.start()
        # each candidacy cuts the link's reconnect backoff short (DeviceLink.retry_now)
        await wait_for(lambda: _is(cluster, "b", "Backup is active"), 20,
                       "b active after healing")
        took = time.monotonic() - healed_at
        output = b_log.output()
        assert output.count(REASON) == 1, output
        # b took the role only once its own link was back (through the forwarder)
        back = output.find(f"router 'studio': back online (tcp://127.0.0.1:{forwarder.port})")
        assert 0 <= back < output.find("this node is now active"), output
        assert forwarder.connections == 1

        routed_at = time.time()
        routed = await _route(cluster, "b", destination=5, source=7)
        assert routed["ok"], routed
        assert (await cluster.device_crosspoints())[4] == 6  # 0-based on the device
        assert [crosspoints for _t, _peer, crosspoints in cluster.routes_sent(since=routed_at)] \
            == [[(0, 4, 6)]]
        print(f"b took over {took:.2f} s after the path healed")


async def _route(cluster: Cluster, name: str, *, destination: int, source: int) -> dict:
    """Send one route (1-based numbers) to node ``name`` over a raw WebSocket; its answer."""
    ws = await _raw(cluster.url(name))
    try:
        return await _answer(ws, {"type": "route", "id": "r", "router": "studio",
                                  "destination": destination, "source": source})
    finally:
        await ws.close()


def _link_downs(output: str) -> int:
    """How many times the node logged its router link going down."""
    return sum(1 for line in output.splitlines()
               if "router 'studio':" in line and "retrying in" in line)


async def _is(cluster: Cluster, name: str, text: str) -> bool:
    return await _status_text(cluster, name) == text
