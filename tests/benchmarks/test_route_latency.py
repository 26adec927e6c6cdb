"""Benchmark 1: a route's round trip through the WebSocket API to the simulator.

A raw ``websockets`` client in its own process (clients.py) makes sequential routes (every
level, each one changing the crosspoint) against a node running an in-process simulator
with a switch delay of 0, over 127.0.0.1. Probes in the node's process time, per request:

* the server: from ``Connection._receive`` (the frame's text handed to tieline) to the end
  of ``Connection._serve`` (the response written to the socket);
* ``RoutingService.route``: checks, driver send, the device's work, tally confirm;
* the simulator's own handling of the ROUTE (``SimulatorEmulator._handle``): device time.

With one client every request is sequential, so the probes pair with the client's round
trips request by request: tieline's own time per route is the server time less the
simulator's, and the rest of the round trip (the client, loopback TCP, websockets framing)
is not tieline's. A bare ``websockets`` echo server answering the same requests with a
response of the same shape gives the floor of that rest on this machine.

Run: ``python -m pytest tests/benchmarks/test_route_latency.py -s`` or
``python tests/benchmarks/test_route_latency.py [--count N] [--warmup N] [--clients N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from tieline.node import Node  # noqa: E402
from tieline.plugins.simulator.codec import Route  # noqa: E402
from tieline.plugins.websocket_api import server as ws_server  # noqa: E402

ROUTER = "bench"
LEVELS, SOURCES, DESTINATIONS = 2, 64, 64
TARGET_OWN_P50_MS = 1.0


class Probes:
    """Timers around the server's request path, the routing service and the simulator."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.recording = False
        self.server_in: list[int] = []
        self.server_out: list[int] = []
        self.route_ns: list[int] = []
        self.device_ns: list[int] = []

    def clear(self) -> None:
        for samples in (self.server_in, self.server_out, self.route_ns, self.device_ns):
            samples.clear()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Probes]:
        clock = time.perf_counter_ns
        routing = self.node.routing
        device = routing.routers[ROUTER].driver.device
        route, handle = routing.route, device._handle
        connection = ws_server.Connection
        receive, serve_ = connection._receive, connection._serve

        async def timed_route(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return await route(*args, **kwargs)
            finally:
                if self.recording:
                    self.route_ns.append(clock() - t0)

        async def timed_handle(peer: Any, message: Any) -> None:
            if not isinstance(message, Route):
                return await handle(peer, message)
            t0 = clock()
            try:
                return await handle(peer, message)
            finally:
                if self.recording:
                    self.device_ns.append(clock() - t0)

        def timed_receive(conn: Any, raw: Any) -> None:
            if self.recording:
                self.server_in.append(clock())
            return receive(conn, raw)

        async def timed_serve(conn: Any, message: Any) -> None:
            try:
                return await serve_(conn, message)
            finally:
                if self.recording:
                    self.server_out.append(clock())

        routing.route = timed_route  # type: ignore[method-assign]
        device._handle = timed_handle  # type: ignore[method-assign]
        connection._receive = timed_receive  # type: ignore[method-assign]
        connection._serve = timed_serve  # type: ignore[method-assign]
        try:
            yield self
        finally:
            del routing.route, device._handle
            connection._receive, connection._serve = receive, serve_  # type: ignore[method-assign]


async def drive(url: str, clients: int, count: int, warmup: int, snapshot: bool,
                probes: Probes | None = None) -> dict[str, Any]:
    """Run the route client process against ``url``; its results (warm-up included)."""
    proc = await harness.ClientProcess.start(
        "routes", url, ROUTER, clients, count, warmup, DESTINATIONS, SOURCES, int(snapshot))
    try:
        await proc.read()
        if probes is not None:
            probes.clear()
            probes.recording = True
        proc.write({"go": True})
        result = await proc.read(timeout=600)
        if probes is not None:
            probes.recording = False
    finally:
        await proc.finish()
    return result


async def echo_handler(ws: ServerConnection) -> None:
    """A bare server answering like tieline would: the floor of a round trip."""
    await ws.send(json.dumps({"type": "hello", "protocol": 1}, separators=(",", ":")))
    async for raw in ws:
        request = json.loads(raw)
        result: dict[str, Any] = {}
        if request["type"] == "route":
            result = {"crosspoints": [
                {"level": level, "destination": request["destination"],
                 "source": request["source"]} for level in ("video", "audio1")]}
        await ws.send(json.dumps({"type": "response", "id": request["id"], "ok": True,
                                  "result": result}, separators=(",", ":")))


async def measure_echo(count: int, warmup: int) -> list[int]:
    async with serve(echo_handler, "127.0.0.1", 0, compression=None,
                     ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        result = await drive(f"ws://127.0.0.1:{port}", 1, count, warmup, snapshot=False)
    return result["rtt_ns"][0][warmup:]


async def measure_tieline(node: Node, clients: int, count: int,
                          warmup: int) -> tuple[dict[str, Any], Probes]:
    probes = Probes(node)
    with probes.installed():
        result = await drive(harness.api_url(node), clients, count, warmup, True, probes)
    assert result["errors"] == 0, f"{result['errors']} routes failed"
    return result, probes


async def run(count: int = 2000, warmup: int = 200, concurrent: int = 10) -> dict[str, Any]:
    harness.print_machine()
    echo = await measure_echo(count, warmup)
    with tempfile.TemporaryDirectory(prefix="tieline-bench-") as tmp:
        folder = harness.write_settings(
            Path(tmp), [harness.router_block(ROUTER, LEVELS, SOURCES, DESTINATIONS)])
        async with harness.running_node(folder) as node:
            one, probes = await measure_tieline(node, 1, count, warmup)
            n = warmup + count
            assert len(probes.server_in) == len(probes.server_out) == len(probes.route_ns) \
                == len(probes.device_ns) == len(one["rtt_ns"][0]) == n, "probes out of step"
            keep = slice(warmup, n)
            rtt = one["rtt_ns"][0][keep]
            server = [o - i for i, o in zip(probes.server_in[keep], probes.server_out[keep])]
            route = probes.route_ns[keep]
            device = probes.device_ns[keep]
            own = [s - d for s, d in zip(server, device)]
            outside = [r - s for r, s in zip(rtt, server)]
            api = [s - r for s, r in zip(server, route)]
            harness.print_table(
                f"One client, {count} sequential routes ({LEVELS} levels each, after "
                f"{warmup} warm-up routes)",
                harness.LATENCY_HEADERS, [
                    harness.latency_row("round trip at the client", rtt),
                    harness.latency_row("bare websockets echo server round trip (floor)",
                                        echo),
                    harness.latency_row("tieline server: request text in → response "
                                        "written", server),
                    harness.latency_row("… of which RoutingService.route "
                                        "(send → tally confirm)", route),
                    harness.latency_row("… … of which the simulator handling the ROUTE",
                                        device),
                    harness.latency_row("… API layer (server − route): validate, "
                                        "dispatch, respond", api),
                    harness.latency_row("tieline's own time per route (server − "
                                        "simulator)", own),
                    harness.latency_row("outside tieline (round trip − server)", outside),
                ])

            per_client = max(1, count // concurrent)
            many, probes = await measure_tieline(node, concurrent, count, warmup // concurrent)
            skip = warmup // concurrent
            rtts = [t for client in many["rtt_ns"] for t in client[skip:]]
            harness.print_table(
                f"{concurrent} concurrent clients, {per_client} sequential routes each",
                harness.LATENCY_HEADERS, [
                    harness.latency_row("round trip at the client", rtts),
                    harness.latency_row("… of which RoutingService.route",
                                        probes.route_ns[concurrent * skip:]),
                    harness.latency_row("… … of which the simulator",
                                        probes.device_ns[concurrent * skip:]),
                ])
            total = concurrent * (skip + per_client)
            throughput = total / (many["wall_ns"] / 1e9)
            print(f"\nthroughput with {concurrent} clients: {throughput:.0f} routes/s")
    own_p50 = harness.summary(own)["p50"]
    harness.print_table("Target", ["target", "measured", "verdict"], [[
        f"tieline's own overhead per route p50 < {TARGET_OWN_P50_MS:g} ms",
        f"{own_p50:.3f} ms", harness.verdict(own_p50, TARGET_OWN_P50_MS)]])
    return {"own_p50_ms": own_p50, "rtt": harness.summary(rtt),
            "concurrent_rtt": harness.summary(rtts), "throughput": throughput}


def test_route_round_trip() -> None:
    harness.run_isolated(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="measured routes")
    parser.add_argument("--warmup", type=int, default=200, help="routes before measuring")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients")
    args = parser.parse_args()
    asyncio.run(run(args.count, args.warmup, args.clients))


if __name__ == "__main__":
    main()
