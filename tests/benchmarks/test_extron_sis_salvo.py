"""Benchmark: a 1,000-crosspoint salvo through the Extron SIS driver to its emulator over TCP.

One emulated 1000x1000 video+audio switcher (password login, verbose mode 3) served on
127.0.0.1; one router (the routing service and a real device link with the ``extron_sis``
driver) connected to it. Each salvo sets 1,000 crosspoints, every one of them a change,
and is timed from ``RoutingService.take_salvo`` to its result (every crosspoint confirmed by
the switcher's tie responses, or by reading the ties back after ``Qik``). Four ways:

* ``follow``: 500 outputs, video and audio from one source: 500 ``X*Y!`` ties;
* ``breakaway``: 500 outputs, video and audio from different sources: 1,000 ``X*Y%`` /
  ``X*Y$`` ties;
* ``video only``: 1,000 outputs on the video level: 1,000 ``X*Y%`` ties;
* ``quick ties``: as ``follow`` with ``"quick_tie": true``: 32 ``Esc+Q…`` commands of at
  most 16 ties, then 1,000 reads (``Y%``, ``Y$``) to confirm.

SIS answers every command with one line, in order; the driver pipelines them with at most
``ExtronDriver.max_in_flight`` (32) unanswered, so the salvo needs at least commands / 32
round trips. The table gives the commands and bytes the switcher received (from its
command log), that bound, and the time.

Run: ``python -m pytest tests/benchmarks/test_extron_sis_salvo.py -s`` or
``python tests/benchmarks/test_extron_sis_salvo.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

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
from tieline.plugins.extron_sis.codec import Codec  # noqa: E402
from tieline.plugins.extron_sis.codec import Role as CodecRole  # noqa: E402
from tieline.plugins.extron_sis.driver import ExtronDriver  # noqa: E402
from tieline.plugins.extron_sis.emulator import ExtronEmulator  # noqa: E402
from tieline.routing import RouterRuntime, RoutingService  # noqa: E402
from tieline.transports import TcpTransport  # noqa: E402

PORTS = 1000
OPERATOR = Principal("bench", Permission.ROUTE)
PASSWORD = "extron"


def crosspoints(mode: str, run: int) -> tuple[Crosspoint, ...]:
    """1,000 crosspoints, each a change from the previous run's."""
    offset = 1 + run % 7
    if mode == "video only":
        return tuple(Crosspoint(0, d, (d + offset) % PORTS) for d in range(1000))
    if mode == "breakaway":
        return tuple(Crosspoint(level, d, (d + offset + 11 * level) % PORTS)
                     for d in range(500) for level in (0, 1))
    return tuple(Crosspoint(level, d, (d + offset) % PORTS) for d in range(500)
                 for level in (0, 1))


async def connect(port: int, options: dict[str, Any]
                  ) -> tuple[RoutingService, asyncio.Task, float]:
    """A router online on the switcher; and how long its first full read took."""
    spec = RouterSpec("bench", "extron_sis", ("video", "audio"), PORTS, PORTS)
    bus = EventBus()
    events = bus.subscribe("bench", maxsize=1_000_000)
    routing = RoutingService(bus, Failover(NodeStatus("bench", Role.STANDALONE, State.ACTIVE),
                                           bus.publish))
    transport = TcpTransport({"type": "tcp", "host": "127.0.0.1", "port": port})
    driver = ExtronDriver(spec, {"password": PASSWORD, "reread_interval_s": 0, **options},
                          transport)
    runtime = RouterRuntime(RouterState(spec), driver, confirm_timeout_s=60)
    runtime.link = DeviceLink(driver, routing)
    routing.add_router(runtime)
    began = time.perf_counter()
    task = asyncio.create_task(runtime.link.run())
    async with asyncio.timeout(60):
        async for event in events:
            if isinstance(event, DeviceOnline):
                break
    events.close()
    return routing, task, time.perf_counter() - began


async def measure(device: ExtronEmulator, port: int, mode: str, repeat: int
                  ) -> tuple[list[Any], float, int]:
    """The salvo's table row; the first read's time and commands."""
    options = {"quick_tie": True} if mode == "quick ties" else {}
    device.command_log.clear()
    routing, task, sync = await connect(port, options)
    sync_commands = len(device.command_log)
    codec = Codec(CodecRole.CONTROLLER)
    times, commands, sent = [], Counter(), 0
    try:
        for run in range(repeat):
            xps = crosspoints(mode, run)
            routing.salvos["s"] = Salvo("s", "bench", xps)
            device.command_log.clear()
            began = time.perf_counter()
            result = await routing.take_salvo(OPERATOR, "s")
            times.append(time.perf_counter() - began)
            assert not result.refused and len(result.taken) == 1000, result.refused[:3]
            log = [m for _, m in device.command_log]
            commands = Counter(type(m).__name__ for m in log)
            sent = sum(len(codec.send(m)) for m in log)
            video = [device.tie(d + 1) - 1 for d in range(PORTS)]
            assert all(video[x.destination] == x.source for x in xps if x.level == 0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    total = sum(commands.values())
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(commands.items()))
    row = [mode, kinds, total, f"{sent:,}", math.ceil(total / ExtronDriver.max_in_flight),
           f"{statistics.median(times) * 1000:.0f}", f"{min(times) * 1000:.0f}",
           f"{max(times) * 1000:.0f}", f"{1000 / statistics.median(times):,.0f}"]
    return row, sync, sync_commands


async def run(repeat: int) -> None:
    harness.print_machine()
    rows: list[Any] = []
    syncs: list[float] = []
    ExtronEmulator.command_log_size = None  # the table counts every command of a sync
    async with ExtronEmulator(PORTS, PORTS, 2, password=PASSWORD) as device:
        server = await device.serve_tcp("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for mode in ("follow", "breakaway", "video only", "quick ties"):
            row, sync, sync_commands = await measure(device, port, mode, repeat)
            rows.append(row)
            syncs.append(sync)
    harness.print_table(
        "Extron SIS: first full read of the 1000x1000 switcher after connecting (one per "
        "salvo kind)",
        ["commands (login, verbose, I, 2,000 tie reads, 2,000 name reads)", "median ms",
         "min ms", "max ms"],
        [[sync_commands, f"{statistics.median(syncs) * 1000:.0f}",
          f"{min(syncs) * 1000:.0f}", f"{max(syncs) * 1000:.0f}"]])
    harness.print_table(
        f"Extron SIS: 1,000-crosspoint salvo over TCP to the emulator ({repeat} runs each)",
        ["salvo", "commands received", "commands", "bytes sent", "round trips (≥)",
         "median ms", "min ms", "max ms", "crosspoints/s"], rows)


def test_extron_sis_salvo() -> None:
    harness.run_isolated(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="salvos of each kind")
    args = parser.parse_args()
    asyncio.run(run(args.repeat))


if __name__ == "__main__":
    main()
