"""``tieline run`` with timing probes in the lease strategy, for tests/chaos/soak.py.

Run as ``python probed_node.py PROBE_FILE run --settings DIR …`` (the arguments after
PROBE_FILE are tieline's). The node is the ordinary ``tieline run``; the probes measure
what decides a needless takeover, and every 5 s append one JSON line to PROBE_FILE:

* ``tick_late_ms``: how late the strategy's ticks ran (the time since the previous tick
  minus the interval asked for). On the active node, a tick later than the renew deadline
  fences it.
* ``heartbeat_gap_ms``: the time between two heartbeats received from each peer. On a
  standby, a gap longer than the lease from the active node is a takeover.

Each as the window's maximum and a histogram (upper bounds in ms), and the maxima since
start.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

BUCKETS_MS = (10, 25, 50, 100, 200, 300, 500, 750, 1000, 1300, 1500, 2000, 5000)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.window_max = 0.0
        self.max = 0.0

    def add(self, ms: float) -> None:
        i = next((i for i, bound in enumerate(BUCKETS_MS) if ms <= bound), len(BUCKETS_MS))
        self.counts[i] += 1
        self.window_max = max(self.window_max, ms)
        self.max = max(self.max, ms)

    def take(self) -> dict[str, Any]:
        out = {"window_max": round(self.window_max, 1), "max": round(self.max, 1),
               "counts": dict(zip([*map(str, BUCKETS_MS), "more"], self.counts))}
        self.window_max = 0.0
        return out


def install(path: str) -> None:
    import asyncio

    from tieline.cluster.strategy import PeerLinkStrategy
    from tieline.plugins.lease.strategy import LeaseStrategy

    out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - for the process
    late = Histogram()
    gaps: dict[str, Histogram] = {}
    last_heard: dict[str, float] = {}
    asked: dict[str, float] = {}
    run, on_message = PeerLinkStrategy.run, PeerLinkStrategy._on_message
    next_tick, tick = LeaseStrategy.next_tick_s, LeaseStrategy.tick

    def probed_next(self: Any) -> float:
        delay = next_tick(self)
        asked["due"] = time.monotonic() + delay
        return delay

    async def probed_tick(self: Any) -> None:
        if "due" in asked:
            late.add(max(0.0, (time.monotonic() - asked["due"]) * 1000))
        await tick(self)

    async def probed_on_message(self: Any, peer: Any, message: dict[str, Any]) -> Any:
        if message.get("type") == "heartbeat" and peer.address is not None:
            now = time.monotonic()
            before = last_heard.get(peer.address)
            if before is not None:
                gaps.setdefault(peer.address, Histogram()).add((now - before) * 1000)
            last_heard[peer.address] = now
        return await on_message(self, peer, message)

    async def writer() -> None:
        while True:
            await asyncio.sleep(5)
            out.write(json.dumps({"t": time.time(), "tick_late_ms": late.take(),
                                  "heartbeat_gap_ms": {a: h.take() for a, h in gaps.items()}})
                      + "\n")

    async def probed_run(self: Any) -> None:
        task = asyncio.create_task(writer())
        try:
            await run(self)
        finally:
            task.cancel()

    LeaseStrategy.next_tick_s = probed_next  # type: ignore[method-assign]
    LeaseStrategy.tick = probed_tick  # type: ignore[method-assign]
    PeerLinkStrategy._on_message = probed_on_message  # type: ignore[method-assign]
    PeerLinkStrategy.run = probed_run  # type: ignore[method-assign]


def main() -> None:
    install(sys.argv[1])
    from tieline.cli import main as tieline

    tieline(args=sys.argv[2:], prog_name="tieline")


if __name__ == "__main__":
    main()
