"""Benchmark: VIP failover seen from a client in its own namespace, tieline (etcd strategy +
``vip`` action) beside keepalived (VRRPv3) in the same namespaces at the same heartbeat
interval (issue 6).

The LAN of ``tests/failover/lan.py``: a switch ``sw`` (bridge br0 the LAN, br1 the etcd
network), nodes ``a``, ``b``, ``c`` (eth0 on the LAN, eth1 on the etcd network), a client
machine ``cl``; the virtual IP is L.100 on the active node's eth0. Every process runs in one
of those namespaces (``ip netns exec``); nothing listens on, or sends to, an address outside
them. Times are ``time.monotonic_ns()`` (one clock in every namespace) unless said.

**tieline series.** etcd and the router emulator on ``sw`` (as in
``tests/failover/test_etcd_vip.py``); ``tieline run`` on a (main), b, c (backups) with the
etcd strategy, ``switch_back: manual`` and the ``vip`` action; settings ``--ttl-s``,
``--heartbeat-ms`` and, only when given, ``--renew-deadline-ms`` / ``--lease-ms`` (each one
checked with ``tieline validate`` first: a setting the strategy does not accept is left out,
and the benchmark says so). In ``cl`` a ``tieline.client.Client`` with nothing but the VIP
URL, subscribed, makes one awaited route every 20 ms (``vip_client.py routes``). Each run:
one node active, the two others standby following it, the VIP on the active only and the
client routing through it; a random wait of 0.3 s to 0.3 s + ``--phase-s``; **SIGKILL of
the active's tieline** (the machine stays up: its kernel keeps the VIP until the address's
lifetime lapses or tieline starts there again). Measured: kill → the first route
acknowledged to the client, through the VIP, by the new active (the client's view of the
node it is on; the router emulator's command log confirms that node sent it). It includes
detection, the candidate's campaign (it reaches the router: the standby link is warm, the
router state loaded), the VIP and its gratuitous ARP, the client's reconnect (its backoff)
and hello, and the route's round trip to the router. Split from the nodes' logs (wall clock,
ms) and an ``etcdctl watch`` on the switch: the leader key deleted (deposed by a standby, or
expired), the new node "now active", "virtual IP claimed", the router hears the new node.
The killed node is then started again (standby; it removes the stale VIP at start) and the
next run waits until all is stable.

**keepalived series** (``vrrp.py``, shared with test_failover.py). The tieline nodes, etcd
and the emulator stopped; keepalived VRRPv3 on a, b, c (``advert_int`` = ``--heartbeat-ms``,
priorities 150/100/50, all ``state BACKUP`` with ``nopreempt``, the same VIP on eth0,
multicast adverts on the bridge, ``vrrp_garp_master_delay 0``), and on each node a TCP
responder on 0.0.0.0:7000 that answers "who" with the node's name (``vip_client.py
responder``). In ``cl`` a probe opens a new connection to VIP:7000 every 20 ms. Each run:
one MASTER holding the VIP, the others BACKUP, the probe answered by the MASTER; the same
random wait; **SIGKILL of the MASTER's keepalived** (its process group: the parent and the
VRRP child at once; the responder keeps running, and the kernel keeps the VIP, so the probe
is answered by the old node until the new MASTER's gratuitous ARPs). Measured: kill → the
first answer through the VIP from another node: detection (3 × advert_int + skew), the VIP,
GARP and a TCP answer; no application state. The killed keepalived is then started again: it
removes the stale VIP at start ("removing VIPs") and, with ``nopreempt``, stays BACKUP (no
second failover back to the higher priority, which would disturb the next run); the MASTER
therefore alternates between a and b.

Target: tieline no slower than keepalived at equal heartbeat interval (p50 and p99), while
also guaranteeing that the new active has the router state loaded.

Needs root, iproute2, etcd (etcd-server) and keepalived. Run:
``python -m pytest tests/benchmarks/test_vip_failover.py -s`` or
``python tests/benchmarks/test_vip_failover.py [--runs N] [--heartbeat-ms 100] [--ttl-s 1]
[--renew-deadline-ms MS] [--lease-ms MS] [--series both|tieline|keepalived]
[--keep-logs DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
import harness  # noqa: E402

from tests.etcdserver import EtcdServer, etcd_unavailable_reason  # noqa: E402
from tests.failover.cluster import OPERATOR_TOKEN, TIELINE, wait_for  # noqa: E402
from tests.failover.lan import CLIENT, Lan, LanUnavailable, lan  # noqa: E402
from tests.failover.netns import why_unavailable  # noqa: E402
from tests.failover.test_etcd_vip import LanCluster  # noqa: E402
from vrrp import (  # noqa: E402
    KeepalivedRun,
    KeepalivedSeries,
    Program,
    errors_seen,
    helper,
    ms,
)

CLUSTER_NAME = "test"  # LanCluster's: keys under /tieline/test/
OPTIONAL = ("heartbeat_ms", "renew_deadline_ms", "lease_ms")


class EtcdWatch:
    """``etcdctl watch --prefix`` on the switch; every event noted on arrival
    (monotonic ns): (t_ns, "PUT" | "DELETE", key, create_revision)."""

    def __init__(self, net: Lan, etcd: EtcdServer, prefix: str, log: Path) -> None:
        self.events: list[tuple[int, str, str, int]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [*net.prefix("sw"), "etcdctl", "--endpoints", etcd.url, "watch", "--prefix",
             prefix, "-w", "json"], stdout=subprocess.PIPE, stderr=open(log, "ab"),  # noqa: SIM115
            stdin=subprocess.DEVNULL, env={k: v for k, v in os.environ.items()
                                           if not k.upper().startswith("ETCD")})
        self._thread = threading.Thread(target=self._read, daemon=True, name="etcd watch")
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.monotonic_ns()
            with contextlib.suppress(ValueError, KeyError):
                for event in json.loads(line).get("Events") or []:
                    kv = event["kv"]
                    key = base64.b64decode(kv["key"]).decode()
                    kind = "DELETE" if event.get("type") == 1 else "PUT"
                    with self._lock:
                        self.events.append((now, kind, key, int(kv.get("create_revision", 0))))

    def snapshot(self) -> list[tuple[int, str, str, int]]:
        with self._lock:
            return list(self.events)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._thread.join(5)


# -- the tieline series ------------------------------------------------------------------------
class BenchCluster(LanCluster):
    """The acceptance tests' LAN cluster; the benchmark chooses the failover timings."""

    failover_defaults: dict[str, Any] = {"request_timeout_ms": 300, "hold_down_s": 1}


def validate(cluster: BenchCluster, failover: dict[str, Any]) -> tuple[bool, str]:
    """``tieline validate`` on node a's settings written with ``failover``."""
    cluster.failover = dict(failover)
    folder = cluster.write_settings("a")
    found = subprocess.run([TIELINE, "validate", "--settings", str(folder)],
                           capture_output=True, text=True, timeout=60)
    return found.returncode == 0, (found.stdout + found.stderr).strip()


def choose_settings(cluster: BenchCluster, base: dict[str, Any],
                    wanted: dict[str, int]) -> tuple[dict[str, Any], list[str]]:
    """The failover block to run: ``base`` plus as many of ``wanted`` (optional timings) as
    ``tieline validate`` accepts, in order of preference; notes on what was left out."""
    notes: list[str] = []
    keys = [k for k in OPTIONAL if k in wanted]
    for size in range(len(keys), -1, -1):
        for combo in itertools.combinations(keys, size):
            block = {**base, **{k: wanted[k] for k in combo}}
            ok, text = validate(cluster, block)
            if ok:
                dropped = [k for k in keys if k not in combo]
                if dropped:
                    notes.append(f"left out (not accepted by tieline validate): "
                                 f"{', '.join(f'{k}={wanted[k]}' for k in dropped)}")
                return block, notes
            if size == len(keys):
                notes.append(f"tieline validate refused {', '.join(keys) or 'the base'}: "
                             + " ".join(text.split())[:400])
    raise RuntimeError(f"tieline validate refuses even the base settings {base}: {notes}")


@dataclass
class TielineRun:
    run: int
    killed: str
    new: str
    took_ns: int
    deleted_ns: int | None  #: kill → the leader key's DELETE seen by the watch
    active_ns: int | None  #: kill → the new node's "now active" log line
    vip_ns: int | None  #: kill → its "virtual IP claimed"
    router_ns: int | None  #: kill → the emulator's first route from the new node
    reconnected_ns: int | None  #: kill → the client's "reconnected" (through the VIP)
    beat_age_ns: int | None  #: kill − the killed node's last proof (beat key PUT) before it
    how: str  #: "deposed" (a standby deleted the key) or "expired"
    failed: int


def first_after(times: list[float], after: float) -> float | None:
    return next((t for t in sorted(times) if t >= after), None)


async def tieline_series(net: Lan, args: argparse.Namespace, root: Path
                         ) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    etcd = EtcdServer(listen_host=net.etcd_host, command_prefix=net.prefix("sw"),
                      log_path=root / "etcd.log")
    net.thread("sw").submit(etcd.start).result()
    cluster: BenchCluster | None = None
    client: Program | None = None
    watch: EtcdWatch | None = None
    runs: list[TielineRun] = []
    try:
        cluster = BenchCluster(root / "cluster", net, etcd)
        wanted = {"heartbeat_ms": args.heartbeat_ms}
        if args.renew_deadline_ms is not None:
            wanted["renew_deadline_ms"] = args.renew_deadline_ms
        if args.lease_ms is not None:
            wanted["lease_ms"] = args.lease_ms
        base = {**BenchCluster.failover_defaults, "switch_back": "manual",
                "ttl_s": args.ttl_s}
        failover, notes = choose_settings(cluster, base, wanted)
        used = {k: failover[k] for k in ("ttl_s", *OPTIONAL) if k in failover}
        print(f"\ntieline settings used: {', '.join(f'{k}={v}' for k, v in used.items())} "
              f"(request_timeout_ms=300, vip lifetime_s/garp: the action's defaults; "
              f"the strategy's defaults for any timing not listed)", flush=True)
        for note in notes:
            print(f"  {note}", flush=True)
        cluster.failover = failover
        for name in cluster.roles:  # all three with the settings chosen
            cluster.write_settings(name)

        watch = EtcdWatch(net, etcd, f"/tieline/{CLUSTER_NAME}/", root / "watch.log")
        await cluster.start_three()
        client = helper(net, CLIENT, "client", root, "routes", "--url", cluster.vip_url,
                        "--token", OPERATOR_TOKEN, "--interval", str(args.interval_ms / 1000))
        await wait_for(lambda: len(acks(client)) >= 5, 30, "routes acknowledged through the VIP")

        for run in range(1, args.runs + 1):
            active = await tieline_stable(cluster, client, net)
            await asyncio.sleep(0.3 + random.uniform(0, args.phase_s))
            failed_before = len([r for r in client.records() if r.get("ack") is False])
            pid = cluster.procs[active].popen.pid
            kill_wall = time.time()
            killed_ns = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)

            def first() -> dict[str, Any] | None:
                return next((r for r in acks(client) if r["t_ns"] > killed_ns
                             and r.get("node") not in (None, active)
                             and r.get("endpoint") == cluster.vip_url), None)

            await wait_for(lambda: first() is not None, 60,
                           f"run {run}: a route acknowledged through the VIP by a new node")
            ack = first()
            assert ack is not None
            cluster.procs[active].popen.wait(10)
            new = ack["node"]
            took = ack["t_ns"] - killed_ns
            await wait_for(lambda: first_after(cluster.log_times(new, "virtual IP .* claimed"),
                                               kill_wall - 0.002) is not None, 10,
                           f"{new}'s 'virtual IP claimed' log line")

            def since_kill(wall: float | None) -> int | None:
                return None if wall is None else int((wall - kill_wall) * 1e9)

            # log lines carry ms (truncated): a line of the kill's own ms counts
            active_t = first_after(cluster.log_times(new, "this node is now active"),
                                   kill_wall - 0.001)
            vip_t = first_after(cluster.log_times(new, "virtual IP .* claimed"),
                                kill_wall - 0.001)
            deposed = [t for n in cluster.roles if n != active
                       for t in cluster.log_times(n, "gave no proof")
                       if t >= kill_wall - 0.001]
            routes = [t for t, peer, _ in cluster.routes_sent(kill_wall)
                      if cluster.node_of(peer) == new]
            events = watch.snapshot()
            leader = f"/tieline/{CLUSTER_NAME}/leader"
            deleted = next((t for t, kind, key, _ in events
                            if t > killed_ns and kind == "DELETE" and key == leader), None)
            puts = [t for t, kind, key, _ in events if t <= killed_ns and kind == "PUT"
                    and key == f"/tieline/{CLUSTER_NAME}/beat"]
            failed = len([r for r in client.records() if r.get("ack") is False]) - failed_before
            reconnected = next((r["t_ns"] - killed_ns for r in client.records()
                                if r.get("event") == "reconnected" and r["t_ns"] > killed_ns),
                               None)
            runs.append(TielineRun(
                run, active, new, took, None if deleted is None else deleted - killed_ns,
                since_kill(active_t), since_kill(vip_t), since_kill(min(routes, default=None)),
                reconnected,
                killed_ns - puts[-1] if puts else None,
                "deposed" if deposed else "expired", failed))
            r = runs[-1]
            print(f"tieline run {run}/{args.runs}: {active} killed → {new}: ack {ms(took)} ms "
                  f"(key deleted {ms(r.deleted_ns)}, active {ms(r.active_ns)}, VIP "
                  f"{ms(r.vip_ns)}, router {ms(r.router_ns)} ms; {r.how})", flush=True)

            cluster.start_node(active)  # back as standby; it removes the stale VIP at start
    except BaseException:
        if cluster is not None:
            print(cluster.logs()[-20000:])
        if client is not None:
            print("===== client\n" + client.tail())
        raise
    finally:
        if client is not None:
            client.stop()
        if cluster is not None:
            cluster.stop_all()
        if watch is not None:
            watch.stop()
        etcd.stop()
    return {"runs": runs, "settings": used, "notes": notes,
            "routes": len(acks(client)) if client else 0,
            "failed": len([r for r in client.records() if r.get("ack") is False])
            if client else 0,
            "errors": errors_seen(client.records(), "error") if client else []}


def acks(client: Program) -> list[dict[str, Any]]:
    return [r for r in client.records() if r.get("ack") is True]


async def tieline_stable(cluster: BenchCluster, client: Program, net: Lan) -> str:
    """Wait until one node is active, the two others standby following it, the VIP on the
    active only, and the client routing through the VIP on it; the active node."""
    since = time.monotonic_ns()
    found: dict[str, Any] = {}

    async def stable() -> bool:
        statuses = await cluster.statuses()
        if len(statuses) != len(cluster.roles):
            return False
        actives = [n for n, s in statuses.items() if s.get("state") == "active"]
        if len(actives) != 1:
            return False
        active = actives[0]
        if any(s.get("state") != "standby" or s.get("active") != cluster.url(active)
               for n, s in statuses.items() if n != active):
            return False
        if cluster.vip_holders() != [active]:
            return False
        recent = [r for r in acks(client) if r["t_ns"] > since]
        if len(recent) < 3 or any(r.get("node") != active
                                  or r.get("endpoint") != cluster.vip_url
                                  for r in recent[-3:]):
            return False
        found["active"] = active
        return True

    await wait_for(stable, 60, "one active, two standby following it, the VIP on the "
                               "active only, the client routing through it", interval=0.05)
    return found["active"]


# -- the keepalived series ---------------------------------------------------------------------
async def keepalived_series(net: Lan, args: argparse.Namespace, root: Path
                            ) -> dict[str, Any]:
    series = KeepalivedSeries(net, root, args.heartbeat_ms / 1000, args.interval_ms / 1000)
    try:
        await series.start()
        for run in range(1, args.runs + 1):
            await series.run_once(run, args.runs, args.phase_s)
    except BaseException:
        series.print_logs()
        raise
    finally:
        series.stop()
    return series.result()



# -- reporting ---------------------------------------------------------------------------------
def report(args: argparse.Namespace, tl: dict[str, Any] | None,
           ka: dict[str, Any] | None) -> bool | None:
    summary: list[list[str]] = []
    if tl is not None:
        runs: list[TielineRun] = tl["runs"]
        harness.print_table(
            f"tieline runs ({', '.join(f'{k} {v}' for k, v in tl['settings'].items())}), "
            "ms after the kill -9", ["run", "killed → new", "route acked via VIP",
                                     "leader key deleted", "new: now active",
                                     "new: VIP claimed", "client reconnected",
                                     "router hears new", "VIP → ack",
                                     "last proof before kill", "how", "failed routes"],
            [[r.run, f"{r.killed} → {r.new}", ms(r.took_ns), ms(r.deleted_ns),
              ms(r.active_ns), ms(r.vip_ns), ms(r.reconnected_ns), ms(r.router_ns),
              ms(None if r.vip_ns is None else r.took_ns - r.vip_ns), ms(r.beat_age_ns),
              r.how, r.failed] for r in runs])
        summary.append(harness.latency_row(
            "tieline: kill -9 → route acked through the VIP by the new active",
            [r.took_ns for r in runs]))
        for what, values in (
                ("… kill → leader key deleted (etcd watch)", [r.deleted_ns for r in runs]),
                ("… kill → new node 'now active' (log)", [r.active_ns for r in runs]),
                ("… kill → 'virtual IP claimed' (log)", [r.vip_ns for r in runs]),
                ("… kill → the client reconnected through the VIP",
                 [r.reconnected_ns for r in runs]),
                ("… kill → router hears the new node", [r.router_ns for r in runs]),
                ("… 'virtual IP claimed' → the client reconnected",
                 [None if r.vip_ns is None or r.reconnected_ns is None
                  else r.reconnected_ns - r.vip_ns for r in runs]),
                ("… the client reconnected → its ack",
                 [None if r.reconnected_ns is None else r.took_ns - r.reconnected_ns
                  for r in runs]),
                ("… 'virtual IP claimed' → the client's ack",
                 [None if r.vip_ns is None else r.took_ns - r.vip_ns for r in runs])):
            present = [v for v in values if v is not None]
            if present:
                summary.append(harness.latency_row(what, present))
    if ka is not None:
        kruns: list[KeepalivedRun] = ka["runs"]
        harness.print_table(
            f"keepalived runs (VRRPv3, advert_int {args.heartbeat_ms / 1000:g} s), ms after "
            "the kill -9", ["run", "killed → new", "answer via VIP", "new: MASTER (notify)",
                            "MASTER → answer", "failed probes"],
            [[r.run, f"{r.killed} → {r.new}", ms(r.took_ns), ms(r.master_ns),
              ms(None if r.master_ns is None else r.took_ns - r.master_ns), r.failed]
             for r in kruns])
        summary.append(harness.latency_row(
            "keepalived: kill -9 → answer through the VIP from the new MASTER",
            [r.took_ns for r in kruns]))
        masters = [r.master_ns for r in kruns if r.master_ns is not None]
        if masters:
            summary.append(harness.latency_row("… kill → new MASTER (notify script)", masters))
            summary.append(harness.latency_row(
                "… MASTER (notify) → the answer",
                [r.took_ns - r.master_ns for r in kruns if r.master_ns is not None]))
    harness.print_table(f"Summary, {args.runs} runs each, heartbeat {args.heartbeat_ms} ms",
                        harness.LATENCY_HEADERS, summary)
    print("\ntieline's time includes detection (lease_ms without a new proof, or the key's "
          "expiry), the candidate's campaign (it reaches the router: router state loaded), "
          "the VIP and its GARP, the client's reconnect (backoff) and hello, and a route's "
          "round trip to the router. keepalived's includes detection (3 × advert_int + skew), "
          "the VIP, its GARPs and one TCP answer from an idle responder: no application "
          "state.")
    if tl is not None:
        print(f"tieline: {tl['routes']} routes acknowledged, {tl['failed']} failed")
        for text in tl["errors"][:5]:
            print(f"  {text}")
    if ka is not None:
        print(f"keepalived: {ka['answers']} probe answers, {ka['failed']} failed probes")
        for text in ka["errors"][:5]:
            print(f"  {text}")
    if tl is None or ka is None:
        return None
    t = harness.summary([r.took_ns for r in tl["runs"]])
    k = harness.summary([r.took_ns for r in ka["runs"]])
    ok = t["p50"] <= k["p50"] and t["p99"] <= k["p99"]
    print(f"\nVerdict: tieline no slower than keepalived at heartbeat {args.heartbeat_ms} ms: "
          f"{'met' if ok else 'MISSED'} (p50 {t['p50']:.0f} vs {k['p50']:.0f} ms, p99 "
          f"{t['p99']:.0f} vs {k['p99']:.0f} ms)", flush=True)
    return ok


# -- entry points ------------------------------------------------------------------------------
def unavailable() -> str | None:
    reason = why_unavailable() or etcd_unavailable_reason()
    if reason:
        return reason
    for tool in ("keepalived", "etcdctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def strategy_source() -> str:
    """Which etcd strategy code ran: its hash, and whether it differs from the commit."""
    path = REPO / "plugins" / "etcd" / "strategy.py"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    changed = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        changed = "yes" if subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", str(path)],
            capture_output=True, text=True, timeout=10, check=True).stdout.strip() else "no"
    return f"plugins/etcd/strategy.py sha256 {digest} (differs from the commit: {changed})"


async def run(args: argparse.Namespace) -> bool | None:
    tl = ka = None
    with contextlib.ExitStack() as stack:
        if args.keep_logs:
            tmp = Path(tempfile.mkdtemp(prefix="tieline-vip-bench-", dir=args.keep_logs))
            print(f"logs kept in {tmp}", flush=True)
        else:
            tmp = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="tieline-vip-bench-")))
        net = stack.enter_context(lan())
        if args.series in ("both", "tieline"):
            tl = await tieline_series(net, args, tmp / "tieline")
        if args.series in ("both", "keepalived"):
            ka = await keepalived_series(net, args, tmp / "keepalived")
    return report(args, tl, ka)


def test_vip_failover() -> None:
    import pytest

    if reason := unavailable():
        pytest.skip(reason)
    harness.run_isolated(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="kill -9 runs per series")
    parser.add_argument("--ttl-s", type=int, default=1, help="the etcd session lease")
    parser.add_argument("--heartbeat-ms", type=int, default=100,
                        help="tieline's heartbeat_ms and keepalived's advert_int")
    parser.add_argument("--renew-deadline-ms", type=int, default=None,
                        help="tieline's renew_deadline_ms (only when given)")
    parser.add_argument("--lease-ms", type=int, default=None,
                        help="tieline's lease_ms (only when given)")
    parser.add_argument("--interval-ms", type=int, default=20,
                        help="pause between the client's routes / probes")
    parser.add_argument("--phase-s", type=float, default=1.0,
                        help="the random wait before a kill is 0.3 s to 0.3 s + this")
    parser.add_argument("--series", choices=["both", "tieline", "keepalived"],
                        default="both")
    parser.add_argument("--keep-logs", metavar="DIR", default=None,
                        help="keep every log and record in a new folder under DIR")
    args = parser.parse_args()
    if reason := unavailable():
        raise SystemExit(f"cannot run here: {reason}")
    harness.print_machine()
    print(f"\n{strategy_source()}", flush=True)
    started = time.monotonic()
    try:
        ok = asyncio.run(run(args))
    except LanUnavailable as exc:
        raise SystemExit(f"cannot run here: {exc}") from None
    print(f"\ntotal run time {time.monotonic() - started:.0f} s", flush=True)
    print(f"at the end: {strategy_source()}", flush=True)
    if ok is False:
        print("(the verdict is a measurement, not a failure of the run)")


if __name__ == "__main__":
    main()
