"""No needless takeover: a lease pair soaked under load, on demand (issue 14).

``python tests/chaos/soak.py --minutes 30 [--profile default|fast] [--cpu-pct 20]
[--loss 0.1] [--out DIR]`` (root: network namespaces, tmpfs, cgroup v1 ``cpu``).

A lease pair of real ``tieline run`` nodes in network namespaces (tests/chaos/harness.py),
the main ``a`` active all along, never killed or stopped, while everything that could make
the backup ``b`` believe it dead happens at once, for the whole run:

* the main's CPU held to ``--cpu-pct`` % of one core (cgroup v1 ``cpu.cfs_quota_us`` over a
  100 ms period);
* ``--loss`` packet loss on the peer link, both ways (the harness's proxy: a lost chunk
  arrives a retransmission timeout late and holds back those behind it; linear timeouts
  for the first 6 re-sends, as the nodes set TCP_THIN_LINEAR_TIMEOUTS);
* a large router in the main: an embedded simulator of 4,096 × 4,096 on 16 levels, beside
  the Videohub and SW-P-08 emulators;
* full garbage collections in the main: a router restarted every ``--restart-s`` seconds,
  so that the node reads its state again and then settles its memory (a full collection);
* three clients and a front panel at work (routes, salvos, protects, settings writes).

With ``--profile default`` the nodes' settings give no timing (the settings' defaults);
``fast`` gives the fast profile of docs/failover.md. Each node runs with timing probes
(tests/chaos/probed_node.py): how late the strategy's ticks ran, and the gaps between
heartbeats received. Measured and printed at the end (also ``soak.json`` in the folder):
takeovers (any grant after the main's first), fenced ticks on the main, the worst tick
lateness of the main against its renew deadline, the worst heartbeat gap at the backup
against the lease, and the client operations by outcome. Passing means no takeover and
no fence; exit status 0, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.chaos import harness  # noqa: E402
from tests.chaos.clients import ChaosClient, Workload  # noqa: E402
from tests.chaos.harness import (  # noqa: E402
    API_HEARTBEAT_TIMEOUT_MS,
    CGROUP_CPU,
    ROUTERS,
    ChaosCluster,
    _panel,
    salvo_crosspoints,
    token_of,
)
from tests.chaos.history import parse_node_log  # noqa: E402
from tests.chaos.net import ChaosNet  # noqa: E402

from tieline.plugins.lease.strategy import (  # noqa: E402
    DEFAULT_HEARTBEAT_MS,
    DEFAULT_LEASE_MS,
    DEFAULT_RENEW_MS,
)

PROBED_NODE = Path(__file__).resolve().parent / "probed_node.py"
PROFILES = {
    "default": {"heartbeat_ms": DEFAULT_HEARTBEAT_MS, "renew_deadline_ms": DEFAULT_RENEW_MS,
                "lease_ms": DEFAULT_LEASE_MS},
    "fast": {"heartbeat_ms": 100, "renew_deadline_ms": 200, "lease_ms": 300},
}
LARGE = {"id": "big", "driver": "simulator", "sources": 4096, "destinations": 4096,
         "levels": [f"level{i}" for i in range(1, 17)]}


class SoakCluster(ChaosCluster):
    """A chaos cluster with a timing profile, a large router and probed nodes."""

    profile: str = "default"

    @property
    def timing(self) -> dict[str, int]:
        return PROFILES[self.profile]

    def failover_block(self, name: str) -> dict[str, Any]:
        block = super().failover_block(name)
        if self.profile == "default":  # what settings without timing give
            for key in PROFILES["default"]:
                block.pop(key, None)
        return block

    def write_settings(self, name: str, key: Path) -> None:
        super().write_settings(name, key)
        path = self.nodes[name].folder / "tieline.json"
        settings = json.loads(path.read_text())
        settings["routers"].append(dict(LARGE))  # on both: a backup must reach it too
        path.write_text(json.dumps(settings, indent=2))

    async def start(self) -> None:
        # the nodes are made in super().start(); give them the probed command first
        original = harness.Node

        root = self.root

        class ProbedNode(original):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.command = [sys.executable, str(PROBED_NODE),
                                str(root / f"{self.name}.probe.jsonl")]

        harness.Node = ProbedNode  # type: ignore[misc]
        try:
            await super().start()
        finally:
            harness.Node = original  # type: ignore[misc]


def _starve(cluster: SoakCluster, name: str, pct: float) -> Path | None:
    node = cluster.nodes[name]
    if not CGROUP_CPU.is_dir() or node.process is None:
        print("soak: no cgroup v1 cpu controller: the CPU is not held", file=sys.stderr)
        return None
    group = CGROUP_CPU / f"tieline-soak-{cluster.net.tag}-{name}"
    group.mkdir(exist_ok=True)
    (group / "cpu.cfs_period_us").write_text("100000")
    (group / "cpu.cfs_quota_us").write_text(str(int(pct * 1000)))
    (group / "cgroup.procs").write_text(str(node.process.pid))
    return group


def _release(group: Path | None, pid: int | None) -> None:
    if group is None:
        return
    with contextlib.suppress(OSError):
        (group / "cpu.cfs_quota_us").write_text("-1")
    if pid is not None:
        with contextlib.suppress(OSError):
            (CGROUP_CPU / "cgroup.procs").write_text(str(pid))
    with contextlib.suppress(OSError):
        group.rmdir()


def _probes(path: Path) -> dict[str, Any]:
    """The worst tick lateness and heartbeat gaps a node's probes noted."""
    late, gaps = 0.0, {}
    late_counts: Counter = Counter()
    gap_counts: Counter = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            late = max(late, entry["tick_late_ms"]["max"])
            late_counts = Counter(entry["tick_late_ms"]["counts"])
            for address, hist in entry["heartbeat_gap_ms"].items():
                gaps[address] = max(gaps.get(address, 0.0), hist["max"])
                gap_counts = Counter(hist["counts"])
    return {"tick_late_max_ms": late, "tick_late_histogram": dict(late_counts),
            "heartbeat_gap_max_ms": gaps, "heartbeat_gap_histogram": dict(gap_counts)}


async def soak(root: Path, minutes: float, profile: str, cpu_pct: float, loss: float,
               restart_s: float, seed: int) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = ["c0", "c1", "c2"]
    net = ChaosNet(("a", "b"))
    net.create()
    cluster = SoakCluster("lease", root, net, {"a": "main", "b": "backup"}, names, seed)
    cluster.profile = profile
    ops: list[Any] = []
    group = None
    restarts = 0
    try:
        await cluster.start()
        await cluster.wait_status("b", "standby", 30)
        deadline = time.monotonic() + 30
        while not ((await cluster.status("b")) or {}).get("active"):  # b follows a
            assert time.monotonic() < deadline, "the backup never heard the main"
            await asyncio.sleep(0.1)
        a = cluster.nodes["a"]
        group = _starve(cluster, "a", cpu_pct)
        for proxy in cluster.peer_proxies.values():
            proxy.loss(loss, "both")
        per = 12 // len(names)
        workload = Workload(ROUTERS, salvo_crosspoints(),
                            {c: list(range(1 + i * per, 1 + (i + 1) * per))
                             for i, c in enumerate(names)}, [13, 14, 15, 16], list(ROUTERS))
        urls = {n: x.url for n, x in cluster.nodes.items()}
        stop = asyncio.Event()
        workers = [ChaosClient(c, token_of(c), urls, workload, random.Random(rng.random()),
                               ops.append, heartbeat_timeout_s=API_HEARTBEAT_TIMEOUT_MS / 1000)
                   for c in names]
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        tasks.append(asyncio.create_task(_panel(cluster, random.Random(rng.random()), stop)))
        started = time.monotonic()
        end = started + minutes * 60
        next_print = started + 60
        while time.monotonic() < end:
            await asyncio.sleep(min(restart_s, max(0.0, end - time.monotonic())))
            if time.monotonic() >= end:
                break
            rid = sorted(cluster.routers)[restarts % len(cluster.routers)]
            await cluster.routers[rid].restart()  # the node reads it again, then settles
            restarts += 1
            if time.monotonic() >= next_print:
                next_print += 60
                probe = _probes(root / "b.probe.jsonl")
                print(f"soak: {(time.monotonic() - started) / 60:.0f} min, heartbeat gap max "
                      f"{probe['heartbeat_gap_max_ms']} ms, main tick late max "
                      f"{_probes(root / 'a.probe.jsonl')['tick_late_max_ms']} ms", flush=True)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        _release(group, a.process.pid if a.running else None)
        group = None
    finally:
        _release(group, None)
        await cluster.close()
        net.destroy()
    events = []
    for name, node in cluster.nodes.items():
        if node.log.exists():
            events += parse_node_log(name, node.log.read_text(errors="replace").splitlines())
    grants = [e for e in events if e.kind == "grant"]
    first = grants[0] if grants else None
    takeovers = [f"{e.node} epoch {e.epoch}: {e.text}" for e in grants[1:]]
    fenced = [f"{e.node} epoch {e.epoch}: {e.text}" for e in events if e.kind == "fenced"]
    demotes = [f"{e.node} epoch {e.epoch}: {e.text}" for e in events if e.kind == "demote"]
    timing = PROFILES[profile]
    result = {
        "profile": profile, "timing": timing, "minutes": minutes, "cpu_pct": cpu_pct,
        "loss": loss, "seed": seed, "router_restarts": restarts,
        "first_grant": f"{first.node} epoch {first.epoch}" if first else None,
        "takeovers": takeovers, "fenced": fenced, "demotes": demotes,
        "main": _probes(root / "a.probe.jsonl"), "backup": _probes(root / "b.probe.jsonl"),
        "operations": dict(Counter(
            f"{op.kind} {op.outcome}" + (f" ({op.error})" if op.error else "")
            for op in ops).most_common()),
        "lost_chunks": {f"{d}->{p}": sum(s.lost_chunks for s in proxy.stats.values())
                        for (d, p), proxy in cluster.peer_proxies.items()},
    }
    result["passed"] = bool(first and first.node == "a") and not takeovers and not fenced
    (root / "soak.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--cpu-pct", type=float, default=20.0)
    parser.add_argument("--loss", type=float, default=0.1)
    parser.add_argument("--restart-s", type=float, default=30.0,
                        help="a router restarted this often (a full collection follows)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"tieline-soak-{args.profile}-"))
    print(f"soak: {args.profile} profile {PROFILES[args.profile]}, {args.minutes} min, CPU "
          f"{args.cpu_pct} %, loss {args.loss:.0%}, files in {out}", flush=True)
    result = asyncio.run(soak(out, args.minutes, args.profile, args.cpu_pct, args.loss,
                              args.restart_s, args.seed))
    print(json.dumps(result, indent=1))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
