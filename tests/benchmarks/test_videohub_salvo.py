"""Benchmark: a 1,000-crosspoint salvo through the Videohub driver to its emulator over TCP.

The routing core (RoutingService, DeviceLink, the Videohub driver) runs against a
1000 x 1000 emulated Videohub served on 127.0.0.1, in one process. Each run takes one salvo
of 1,000 crosspoints (one per output); the time is from ``take_salvo`` to its result, i.e.
until the device's routing blocks have confirmed every crosspoint. Round trips and command
blocks are counted from the emulator's command log.

Two cases:

* **changing**: every crosspoint changes; the device answers ACK and then the changed lines,
  which confirm the salvo in one round trip;
* **already set**: the same salvo again; a Videohub reports only changes, so after the ACK
  the driver waits ``confirm_grace_ms`` (here 50 ms) and reads the whole routing table: two
  round trips, and the grace is part of the time.

Run: ``python -m pytest tests/benchmarks/test_videohub_salvo.py -s`` or
``python tests/benchmarks/test_videohub_salvo.py [--runs N] [--size N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from tieline.devices import DeviceLink  # noqa: E402
from tieline.events import DeviceOnline, EventBus  # noqa: E402
from tieline.failover import Failover, NodeStatus, Role, State  # noqa: E402
from tieline.model import (  # noqa: E402
    Crosspoint,
    Permission,
    Principal,
    RouterSpec,
    RouterState,
    Salvo,
)
from tieline.plugins.videohub.codec import Ping, Routes, StatusRequest  # noqa: E402
from tieline.plugins.videohub.driver import VideohubDriver  # noqa: E402
from tieline.plugins.videohub.emulator import VideohubEmulator  # noqa: E402
from tieline.routing import RouterRuntime, RoutingService  # noqa: E402
from tieline.transports import TcpTransport  # noqa: E402

OPERATOR = Principal("bench", Permission.ROUTE)
GRACE_MS = 50


async def run(runs: int, size: int) -> dict[str, list[float]]:
    device = VideohubEmulator(size, size)
    await device.start()
    server = await device.serve_tcp("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spec = RouterSpec("bench", "videohub", ("video",), size, size)
    bus = EventBus()
    events = bus.subscribe("bench", maxsize=1_000_000)
    routing = RoutingService(bus, Failover(NodeStatus("bench", Role.STANDALONE, State.ACTIVE),
                                           bus.publish))
    driver = VideohubDriver(spec, {"confirm_grace_ms": GRACE_MS}, TcpTransport(
        {"type": "tcp", "host": "127.0.0.1", "port": port}))
    runtime = RouterRuntime(RouterState(spec), driver, confirm_timeout_s=10.0)
    runtime.link = DeviceLink(driver, routing)
    routing.add_router(runtime)
    link = asyncio.create_task(runtime.link.run())
    async with asyncio.timeout(10):
        async for event in events:
            if isinstance(event, DeviceOnline):
                break
    times: dict[str, list[float]] = {"changing": [], "already set": []}
    rows = []
    try:
        for number in range(runs):
            crosspoints = tuple(Crosspoint(0, d, (d + number + 1) % size) for d in range(size))
            routing.salvos["salvo"] = Salvo("salvo", "bench", crosspoints)
            for case in ("changing", "already set"):
                device.command_log.clear()
                start = time.perf_counter()
                result = await routing.take_salvo(OPERATOR, "salvo")
                elapsed = time.perf_counter() - start
                assert not result.refused and len(result.taken) == size, result.refused[:3]
                sent = [m for _, m in device.command_log if not isinstance(m, Ping)]
                routes = sum(isinstance(m, Routes) for m in sent)
                reads = sum(isinstance(m, StatusRequest) for m in sent)
                times[case].append(elapsed)
                rows.append([number + 1, case, len(crosspoints), f"{elapsed * 1000:.1f}",
                             routes + reads, routes, reads])
        assert [device.source(d) for d in range(size)] == [xp.source for xp in crosspoints]
    finally:
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
        await device.close()
    harness.print_table(
        f"Videohub: {size}-crosspoint salvo to a {size}x{size} emulator over TCP "
        "(127.0.0.1)",
        ["run", "case", "crosspoints", "time ms", "round trips", "route blocks",
         "table reads"], rows)
    harness.print_table("Summary", ["case", "runs", "median ms", "min ms", "max ms"], [
        [case, len(values), f"{statistics.median(values) * 1000:.1f}",
         f"{min(values) * 1000:.1f}", f"{max(values) * 1000:.1f}"]
        for case, values in times.items()])
    return times


def test_videohub_salvo() -> None:
    harness.run_isolated(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="salvos of each case")
    parser.add_argument("--size", type=int, default=1000, help="outputs (= crosspoints)")
    args = parser.parse_args()
    harness.print_machine()
    asyncio.run(run(args.runs, args.size))


if __name__ == "__main__":
    main()
