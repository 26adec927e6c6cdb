"""Benchmark: a 1,000-crosspoint salvo through the SW-P-08 driver to its emulator over TCP.

The routing core (RoutingService, DeviceLink, the SW-P-08 driver) runs against the SW-P-08
emulator served on 127.0.0.1, in one process. Each run takes one salvo of 1,000 crosspoints;
the time is from ``take_salvo`` to its result, i.e. until a CONNECTED (04/132) from the
router has confirmed every crosspoint. Names and protect reads are off so that only the
salvo is on the link.

SW-P-08 has one crosspoint per CONNECT and a stop-and-wait link (notes §3: a frame waits for
the peer's DLE ACK before the next goes), so a salvo costs one link round trip (CONNECT →
DLE ACK) per crosspoint; no CONNECT waits for the confirmation of the one before, so the
confirmations (CONNECTED, each acknowledged by tieline) flow back meanwhile and the salvo
needs no further round trip. The tables count, per run: CONNECT messages the router
received, link round trips (frames tieline sent during the salvo; each waited for one
DLE ACK), and the bytes on the wire in each direction (tieline's codec counts them).

Cases:

* **1 level, changing**: 1,000 destinations of one level, every crosspoint changing;
* **1 level, already set**: the same salvo again (the emulator, like the spec's router,
  answers CONNECTED for a route already made, so the cost is the same);
* **2 levels, changing**: 500 destinations × 2 levels;
* **extended, changing**: as the first, with ``"extended_commands": "always"`` (130/132).

Bytes on the wire are compared with the protocol's minimum per crosspoint, computed from the
message formats (notes §2, §5): a frame is DLE STX (2) + DATA + BTC (1) + CHK (1) + DLE ETX
(2), with no 0x10 byte to double, and ACK is 2 bytes. Per crosspoint, tieline → router:
CONNECT (DATA 5, extended 7) + the ACK of the router's CONNECTED; router → tieline: the ACK
of the CONNECT + CONNECTED (DATA 5, extended 8 with the STATUS byte). Both directions count
(the notes require the ACKs over serial and over IP alike). The serial-line time is what those
bytes take at 38,400 baud 8N1 (10 bits per byte): RS-422 is full duplex, so a salvo takes at
least the busier direction's time; the stop-and-wait rule gives the same bound, one CONNECT
plus one ACK per crosspoint on the line.

Run: ``python -m pytest tests/benchmarks/test_swp08_salvo.py -s`` or
``python tests/benchmarks/test_swp08_salvo.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
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
from tieline.plugins.swp08.codec import Connect  # noqa: E402
from tieline.plugins.swp08.driver import SWP08Driver  # noqa: E402
from tieline.plugins.swp08.emulator import SWP08Emulator  # noqa: E402
from tieline.routing import RouterRuntime, RoutingService  # noqa: E402
from tieline.transports import TcpTransport  # noqa: E402

OPERATOR = Principal("bench", Permission.ROUTE)
CROSSPOINTS = 1000
BAUD = 38400
BITS_PER_BYTE = 10  # 8N1: start, 8 data, stop
FRAMING = 2 + 1 + 1 + 2  # DLE STX, BTC, CHK, DLE ETX
ACK = 2


def minimum_bytes(extended: bool) -> tuple[int, int]:
    """Fewest bytes per crosspoint (tieline → router, router → tieline), from the formats."""
    connect = FRAMING + (7 if extended else 5)
    connected = FRAMING + (8 if extended else 5)
    return connect + ACK, ACK + connected


def line_ms(byte_count: float) -> float:
    return byte_count * BITS_PER_BYTE / BAUD * 1000


@dataclass
class Case:
    name: str
    levels: int
    destinations: int
    extended: bool = False
    repeat: bool = False  #: take the previous run's salvo again (already set)
    rows: list[list[Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    per_xp: list[tuple[float, float]] = field(default_factory=list)


class Bench:
    """A router's routing core against an emulator over TCP."""

    def __init__(self, levels: int, destinations: int, extended: bool) -> None:
        self.levels, self.destinations, self.extended = levels, destinations, extended
        self.sources = destinations

    async def __aenter__(self) -> Bench:
        SWP08Emulator.command_log_size = None  # the table counts every command of a salvo
        self.device = SWP08Emulator(self.sources, self.destinations, self.levels)
        await self.device.start()
        server = await self.device.serve_tcp("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        names = ["video"] + [f"audio{i}" for i in range(1, self.levels)]
        self.spec = RouterSpec("bench", "swp08", tuple(names), self.sources, self.destinations)
        bus = EventBus()
        events = bus.subscribe("bench", maxsize=1_000_000)
        self.routing = RoutingService(bus, Failover(
            NodeStatus("bench", Role.STANDALONE, State.ACTIVE), bus.publish))
        options = {"names": False, "protects": "off",
                   "extended_commands": "always" if self.extended else "auto"}
        self.driver = SWP08Driver(self.spec, options, TcpTransport(
            {"type": "tcp", "host": "127.0.0.1", "port": port}))
        runtime = RouterRuntime(RouterState(self.spec), self.driver, confirm_timeout_s=30.0)
        runtime.link = DeviceLink(self.driver, self.routing)
        self.routing.add_router(runtime)
        self.link = asyncio.create_task(runtime.link.run())
        async with asyncio.timeout(30):
            async for event in events:
                if isinstance(event, DeviceOnline):
                    break
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.link.cancel()
        await asyncio.gather(self.link, return_exceptions=True)
        await self.device.close()

    async def salvo(self, number: int, case: Case) -> None:
        offset = number if not case.repeat else number - 1
        crosspoints = tuple(
            Crosspoint(level, d, (d * 7 + level + offset + 1) % self.sources)
            for level in range(self.levels) for d in range(self.destinations))
        assert len(crosspoints) == CROSSPOINTS
        self.routing.salvos["salvo"] = Salvo("salvo", "bench", crosspoints)
        assert self.driver.session is not None
        stats = self.driver.session.codec.stats
        self.device.command_log.clear()
        sent, received, frames = stats.bytes_sent, stats.bytes_received, stats.frames_sent
        start = time.perf_counter()
        result = await self.routing.take_salvo(OPERATOR, "salvo")
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.05)  # the ACK of the last CONNECTED, for the byte count
        assert not result.refused and len(result.taken) == CROSSPOINTS, result.refused[:3]
        assert all(self.device.source(xp.level, xp.destination) == xp.source
                   for xp in crosspoints)
        commands = [m for _, m in self.device.command_log]
        connects = sum(isinstance(m, Connect) for m in commands)
        out_bytes, in_bytes = stats.bytes_sent - sent, stats.bytes_received - received
        round_trips = stats.frames_sent - frames
        case.times.append(elapsed)
        case.per_xp.append((out_bytes / CROSSPOINTS, in_bytes / CROSSPOINTS))
        case.rows.append([
            number + 1, case.name, CROSSPOINTS, f"{elapsed * 1000:.1f}",
            f"{elapsed * 1e6 / CROSSPOINTS:.0f}", connects, len(commands) - connects,
            round_trips, out_bytes, in_bytes, stats.retransmissions])


async def run(runs: int) -> dict[str, Case]:
    cases = [Case("1 level, changing", 1, 1000), Case("1 level, already set", 1, 1000,
                                                       repeat=True),
             Case("2 levels, changing", 2, 500), Case("extended, changing", 1, 1000, True)]
    groups = [(cases[0], cases[1]), (cases[2],), (cases[3],)]
    for group in groups:
        first = group[0]
        async with Bench(first.levels, first.destinations, first.extended) as bench:
            for number in range(runs):
                for case in group:
                    await bench.salvo(number, case)
    rows = [row for case in cases for row in case.rows]
    harness.print_table(
        "SW-P-08: 1,000-crosspoint salvo to the emulator over TCP (127.0.0.1)",
        ["run", "case", "crosspoints", "time ms", "µs per xp", "CONNECTs", "other msgs",
         "link round trips", "bytes out", "bytes in", "resends"], rows)
    harness.print_table("Summary", [
        "case", "runs", "median ms", "min ms", "max ms", "link round trips per xp",
        "confirmation round trips"], [
        [case.name, len(case.times), f"{statistics.median(case.times) * 1000:.1f}",
         f"{min(case.times) * 1000:.1f}", f"{max(case.times) * 1000:.1f}",
         f"{case.rows[-1][7] / CROSSPOINTS:g}", "0 (pipelined)"]
        for case in cases])
    wire_rows = []
    for case in cases:
        out_xp = statistics.median(o for o, _ in case.per_xp)
        in_xp = statistics.median(i for _, i in case.per_xp)
        min_out, min_in = minimum_bytes(case.extended)
        wire_rows.append([
            case.name, f"{out_xp:.2f}", f"{in_xp:.2f}", f"{out_xp + in_xp:.2f}",
            f"{min_out} + {min_in} = {min_out + min_in}",
            f"{(out_xp + in_xp) / (min_out + min_in):.3f}",
            f"{line_ms(out_xp * CROSSPOINTS) / 1000:.2f}",
            f"{line_ms(in_xp * CROSSPOINTS) / 1000:.2f}",
            f"{line_ms(max(out_xp, in_xp) * CROSSPOINTS) / 1000:.2f}",
            f"{line_ms((out_xp + in_xp) * CROSSPOINTS) / 1000:.2f}"])
    harness.print_table(
        "SW-P-08 bytes on the wire per crosspoint, and the 38,400-baud 8N1 line time of a "
        "1,000-crosspoint salvo", [
            "case", "out B/xp", "in B/xp", "total B/xp", "minimum B/xp (out + in)",
            "vs minimum", "line s out", "line s in", "line s (full duplex)",
            "line s (both summed)"], wire_rows)
    return {case.name: case for case in cases}


def test_swp08_salvo() -> None:
    harness.run_isolated(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="salvos of each case")
    args = parser.parse_args()
    harness.print_machine()
    asyncio.run(run(args.runs))


if __name__ == "__main__":
    main()
