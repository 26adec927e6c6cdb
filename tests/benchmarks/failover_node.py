"""``tieline run`` with timing probes in the lease strategy, for test_failover.py.

Run as ``python failover_node.py PROBE_FILE run --settings DIR …`` (the arguments after
PROBE_FILE are tieline's). The node is the ordinary ``tieline run``; the probes only note
when the lease strategy decides and acts, one JSON line each, appended to PROBE_FILE::

    {"probe": "decide", "t_ns": …, "heard_ns": …}   # a standby starts taking over
    {"probe": "active", "t_ns": …, "epoch": N}       # … and is active
    {"probe": "handover_asked", "t_ns": …}           # the main asks the backup to hand over
    {"probe": "release_start", "t_ns": …}            # the active backup starts draining
    {"probe": "release_done", "t_ns": …}             # … and is standby
    {"probe": "switched_back", "t_ns": …, "epoch": N}  # the main is active again
    {"probe": "demote", "t_ns": …, "handover": bool}   # any demotion (handover or not)

``t_ns`` is ``time.monotonic_ns()`` (CLOCK_MONOTONIC, the same clock in every process on
Linux, so the benchmark compares it with its own); ``heard_ns`` is when the deciding
node last heard a heartbeat from an active node (the strategy's clock, also monotonic).
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any


def install(path: str) -> None:
    from tieline.plugins.lease import strategy as lease

    out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - for the process

    def note(probe: str, **fields: Any) -> None:
        out.write(json.dumps({"probe": probe, "t_ns": time.monotonic_ns(), **fields}) + "\n")

    cls = lease.LeaseStrategy
    take_over, take_back = cls._take_over, cls._take_back
    release, demote = cls._release_for_handover, cls._demote

    async def probed_take_over(self: Any, why: str) -> None:
        heard = [p.heard for p in self.peers.values() if p.state == "active"]
        last = max(heard, default=-math.inf)
        note("decide", heard_ns=int(last * 1e9) if math.isfinite(last) else None)
        await take_over(self, why)
        if self.active:
            note("active", epoch=self.my_epoch)

    async def probed_take_back(self: Any, leader: Any) -> None:
        note("handover_asked")
        await take_back(self, leader)
        if self.active:
            note("switched_back", epoch=self.my_epoch)

    async def probed_release(self: Any, requester: Any) -> dict[str, Any]:
        self._bench_releasing = True
        note("release_start")
        try:
            return await release(self, requester)
        finally:
            self._bench_releasing = False
            note("release_done")

    async def probed_demote(self: Any, leader: Any) -> None:
        note("demote", handover=bool(getattr(self, "_bench_releasing", False)))
        await demote(self, leader)

    cls._take_over = probed_take_over  # type: ignore[method-assign]
    cls._take_back = probed_take_back  # type: ignore[method-assign]
    cls._release_for_handover = probed_release  # type: ignore[method-assign]
    cls._demote = probed_demote  # type: ignore[method-assign]


def main() -> None:
    install(sys.argv[1])
    from tieline.cli import main as tieline

    tieline(args=sys.argv[2:], prog_name="tieline")


if __name__ == "__main__":
    main()
