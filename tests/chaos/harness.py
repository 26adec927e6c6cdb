"""A chaos run: a real cluster, clients at work, a seeded nemesis, then the checker.

:func:`chaos_run` builds everything (network namespaces, router emulators behind proxies,
``tieline run`` nodes, peer-link proxies), lets the clients work while the nemesis injects
faults for ``duration_s``, undoes every fault, proves liveness, waits for the cluster to
settle, reads the routers and the settings files, and returns the recorded
:class:`~tests.chaos.history.History` with the checker's verdict. Everything a run made
(node logs, command logs, ``history.json``) stays in its folder.

The nemesis (:class:`Nemesis`) draws its faults from a ``random.Random(seed)``: the same
seed gives the same schedule of fault kinds, targets and durations (the cluster's timing
still varies from run to run; the schedule a failure printed is what to replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checker import Limits, Violation, check, parsed_settings, report, summary
from .clients import ChaosClient, Workload, open_connection
from .etcd import EtcdTrio, etcd_binary
from .history import (Crosspoint, Fault, History, NodeEvent, Op, RouterInfo, parse_node_log,
                      read_command_log)
from .lagged import sample as sample_lag
from .net import ChaosNet, arun
from .proxy import FaultProxy
from .routers import TIELINE, Router, panel_route, wait_listening

API_PORT = 8181
PEER_PORT = 7401
SHARED_FILES = ("users.json", "salvos.json", "labels.json")

#: the failover timing of chaos runs (between the test suite's fast profile and the
#: default): liveness must hold within 2 x lease_ms
TIMING = {"heartbeat_ms": 100, "renew_deadline_ms": 500, "lease_ms": 1000}
API_HEARTBEAT_TIMEOUT_MS = 1000
#: the size of each node's disk (a tmpfs holding its settings and state folder)
DISK_BYTES = 4 << 20
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")

ROUTERS = {
    "vh": RouterInfo("videohub", ["video"], 16, 16),
    "sw": RouterInfo("swp08", ["video", "audio"], 16, 16),
}
SALVOS = [
    {"name": "vh-a", "router": "vh", "crosspoints": [{"destination": 13, "source": 1},
                                                     {"destination": 14, "source": 2}]},
    {"name": "vh-b", "router": "vh", "crosspoints": [{"destination": 13, "source": 3},
                                                     {"destination": 14, "source": 4}]},
    {"name": "sw-a", "router": "sw", "crosspoints": [
        {"destination": 13, "source": 5}, {"destination": 14, "source": 6, "levels": ["audio"]}]},
    {"name": "sw-b", "router": "sw", "crosspoints": [{"destination": 13, "source": 7},
                                                     {"destination": 14, "source": 8}]},
]


def salvo_crosspoints() -> dict[str, tuple[Crosspoint, ...]]:
    out = {}
    for salvo in SALVOS:
        router = salvo["router"]
        out[salvo["name"]] = tuple(
            (router, level, x["destination"], x["source"])
            for x in salvo["crosspoints"] for level in x.get("levels", ROUTERS[router].levels))
    return out


def token_of(client: str) -> str:
    return f"chaos-token-{client}"


# -- nodes ---------------------------------------------------------------------------------

@dataclass
class Node:
    """One ``tieline run`` process in its namespace, restarted as often as the nemesis likes."""

    name: str
    role: str
    folder: Path
    prefix: list[str]
    address: str
    events: list[NodeEvent]
    process: subprocess.Popen | None = None
    paused: bool = False
    #: the command that runs ``tieline`` (tests/chaos/soak.py runs it with timing probes)
    command: list[str] = field(default_factory=lambda: [TIELINE])

    @property
    def url(self) -> str:
        return f"ws://{self.address}:{API_PORT}"

    @property
    def log(self) -> Path:
        return self.folder.parent / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [*self.prefix, *self.command, "run", "--settings", str(self.folder), "--log-level",
             "INFO"], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.paused = False
        self.events.append(NodeEvent(self.name, time.time(), "start"))
        await wait_listening(self.address, API_PORT, timeout=30)

    def signal(self, sig: int, kind: str) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.events.append(NodeEvent(self.name, time.time(), kind))

    async def kill(self) -> None:
        if not self.running:
            return
        assert self.process is not None
        self.process.kill()
        self.events.append(NodeEvent(self.name, time.time(), "kill"))
        await asyncio.get_running_loop().run_in_executor(None, self.process.wait)
        self.paused = False

    def pause(self) -> None:
        self.signal(signal.SIGSTOP, "pause")
        self.paused = True

    def resume(self) -> None:
        if self.paused and self.running:
            self.signal(signal.SIGCONT, "resume")
        self.paused = False

    async def stop(self) -> None:
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        self.events.append(NodeEvent(self.name, time.time(), "stop"))
        try:
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                None, self.process.wait), 10)
        except TimeoutError:
            self.process.kill()

    def files(self) -> dict[str, str | None]:
        return {name: (self.folder / name).read_text() if (self.folder / name).exists()
                else None for name in SHARED_FILES}


def fill_disk(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to the last byte (a file in it, written until
    ENOSPC in ever smaller writes); the file, to remove when done."""
    filler = folder / ".chaos-filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


# -- the cluster -----------------------------------------------------------------------------

@dataclass
class ChaosCluster:
    """Nodes, routers and peer-link proxies of one strategy, in a :class:`ChaosNet`."""

    strategy: str
    root: Path
    net: ChaosNet
    roles: dict[str, str]
    clients: list[str]
    seed: int
    events: list[NodeEvent] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    routers: dict[str, Router] = field(default_factory=dict)
    #: (dialler, peer) -> the proxy in the dialler's namespace toward that peer
    peer_proxies: dict[tuple[str, str], FaultProxy] = field(default_factory=dict)
    etcd: EtcdTrio | None = None
    mounts: list[Path] = field(default_factory=list)

    @property
    def peer_link(self) -> bool:
        return self.strategy in ("lease", "peer_sync")

    @property
    def timing(self) -> dict[str, int]:
        return TIMING

    @property
    def lease_s(self) -> float:
        return self.timing["lease_ms"] / 1000

    @property
    def heartbeat_s(self) -> float:
        return self.timing["heartbeat_ms"] / 1000

    @property
    def main(self) -> str:
        return next(n for n, r in self.roles.items() if r == "main")

    # -- settings ------------------------------------------------------------------------
    def failover_block(self, name: str) -> dict[str, Any]:
        if self.strategy == "etcd":
            assert self.etcd is not None
            return {"strategy": "etcd", "endpoints": self.etcd.endpoints(self.net.host_end(name)),
                    "cluster": "chaos", "ttl_s": 2, "request_timeout_ms": 300,
                    "advertise": self.nodes[name].url, "switch_back": "auto",
                    "hold_down_s": 2, **self.timing}
        others = [n for n in self.roles if n != name]
        block = {"strategy": self.strategy,
                 "listen": f"{self.net.peer_address(name)}:{PEER_PORT}",
                 "peers": [f"{self.net.peer_address(o)}:{PEER_PORT}" for o in others],
                 "key": "cluster.key", "advertise": self.nodes[name].url,
                 "heartbeat_ms": self.timing["heartbeat_ms"]}
        if self.strategy == "lease":
            block.update(self.timing, switch_back="auto", hold_down_s=2)
        return block

    def write_settings(self, name: str, key: Path) -> None:
        node = self.nodes[name]
        folder = node.folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cluster.key").write_bytes(key.read_bytes())
        os.chmod(folder / "cluster.key", 0o600)
        routers = []
        for rid, info in ROUTERS.items():
            block: dict[str, Any] = {
                "id": rid, "driver": info.driver, "levels": info.levels,
                "sources": info.sources, "destinations": info.destinations,
                "label_store": "settings", "confirm_timeout_ms": 2000,
                "transport": {"type": "tcp", "host": self.net.host_end(name),
                              "port": self.routers[rid].proxy_port}}
            if info.driver == "swp08":
                block["names"] = False
            routers.append(block)
        (folder / "tieline.json").write_text(json.dumps({
            "node": {"name": name, "role": self.roles[name]},
            "routers": routers,
            "apis": [{"type": "websocket", "listen": f"{node.address}:{API_PORT}",
                      "heartbeat_timeout_ms": API_HEARTBEAT_TIMEOUT_MS}],
            "auth": {"users_file": "users.json"},
            "failover": self.failover_block(name),
        }, indent=2))
        (folder / "users.json").write_text(json.dumps({"users": [
            {"name": c, "level": 3,
             "token_sha256": hashlib.sha256(token_of(c).encode()).hexdigest()}
            for c in [*self.clients, "probe"]]}, indent=2))
        (folder / "salvos.json").write_text(json.dumps({"salvos": SALVOS}, indent=2))
        (folder / "labels.json").write_text(json.dumps({"routers": {}}, indent=2))

    # -- life ----------------------------------------------------------------------------
    async def start(self) -> None:
        for i, (name, role) in enumerate(self.roles.items()):
            self.nodes[name] = Node(name, role, self.root / name, self.net.prefix(name),
                                    self.net.node_address(name), self.events)
            # each node's folder (settings and state) on a disk of its own, so that the
            # nemesis can fill it
            folder = self.nodes[name].folder
            folder.mkdir(parents=True, exist_ok=True)
            await arun("mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs",
                       str(folder))
            self.mounts.append(folder)
        index = {n: i for i, n in enumerate(self.roles)}
        for rid, info in ROUTERS.items():
            router = Router(rid, info, self.root, {n: self.net.host_end(n) for n in self.roles},
                            index)
            await router.start()
            self.routers[rid] = router
        keys = self.root / "key"
        keys.mkdir(parents=True, exist_ok=True)
        await arun(TIELINE, "keys", "generate", str(keys))
        if self.strategy == "etcd":
            self.etcd = EtcdTrio(self.root / "etcd", [self.net.host_end(n) for n in self.roles])
            await self.etcd.start()
        for name in self.roles:
            self.write_settings(name, keys / "cluster.key")
        for dialler in self.roles if self.peer_link else ():
            for peer in self.roles:
                if peer == dialler:
                    continue
                address = (self.net.peer_address(peer), PEER_PORT)
                proxy = FaultProxy(
                    address, address, socket_factory=self.net.socket_factory(dialler),
                    connect_factory=self.net.socket_factory(peer),
                    seed=self.seed, name=f"peer link {dialler}->{peer}",
                    linear_retries=6)  # the nodes set TCP_THIN_LINEAR_TIMEOUTS
                self.peer_proxies[(dialler, peer)] = await proxy.start()
        # the main first, so that it is the active node when the backups join
        await self.nodes[self.main].start()
        await self.wait_status(self.main, "active", 30)
        await asyncio.gather(*(n.start() for n in self.nodes.values() if n.role != "main"))

    async def status(self, name: str) -> dict[str, Any] | None:
        node = self.nodes[name]
        if not node.running or node.paused:
            return None
        try:
            conn = await open_connection(name, node.url, token_of("probe"),
                                         API_HEARTBEAT_TIMEOUT_MS / 1000, sock_timeout=1)
        except Exception:  # noqa: BLE001 - unreachable is an answer
            return None
        try:
            return dict(conn.status)
        finally:
            await conn.close()

    async def wait_status(self, name: str, state: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = await self.status(name)
            if status and status.get("state") == state:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"node {name} not {state} after {timeout} s")

    async def active_nodes(self) -> list[str]:
        statuses = await asyncio.gather(*(self.status(n) for n in self.nodes))
        return [n for n, s in zip(self.nodes, statuses) if s and s.get("state") == "active"]

    async def close(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes.values()), return_exceptions=True)
        for proxy in self.peer_proxies.values():
            await proxy.close()
        for router in self.routers.values():
            await router.close()
        if self.etcd is not None:
            await self.etcd.close()
        for folder in self.mounts:  # kept for people: a copy of each node's disk
            await arun("cp", "-a", str(folder), f"{folder}.disk", check=False)
            await arun("umount", "-l", str(folder), check=False)
        self.mounts.clear()


# -- the nemesis -----------------------------------------------------------------------------

@dataclass
class Nemesis:
    """Faults, one at a time, drawn from a seeded RNG (see the module docstring).

    Every fault is undone by its own step; :meth:`heal` undoes whatever is left should the
    run be cut short. ``kinds`` are the faults it may choose, with weights.
    """

    cluster: ChaosCluster
    rng: random.Random
    kinds: dict[str, float]
    faults: list[Fault] = field(default_factory=list)
    schedule: list[str] = field(default_factory=list)
    t0: float = 0.0

    def note(self, text: str) -> None:
        line = f"+{time.time() - self.t0:7.3f}s {text}"
        self.schedule.append(line)

    def _fault(self, kind: str, target: str, start: float,
               impairs: tuple[tuple[str, str], ...] = (), **params: Any) -> Callable[[], None]:
        """Record a fault; the returned function records its end."""
        index = len(self.faults)
        self.faults.append(Fault(kind, target, start, None, impairs, params))

        def ended() -> None:
            f = self.faults[index]
            self.faults[index] = Fault(f.kind, f.target, f.start, time.time(), f.impairs,
                                       f.params)

        return ended

    async def _target(self) -> str:
        """The active node when one answers (it is the one worth hurting), else any."""
        active = await self.cluster.active_nodes()
        nodes = sorted(self.cluster.nodes)
        if active and self.rng.random() < 0.75:
            return self.rng.choice(sorted(active))
        return self.rng.choice(nodes)

    async def run(self, until: float) -> None:
        kinds, weights = zip(*self.kinds.items())
        while time.time() < until:
            kind = self.rng.choices(kinds, weights)[0]
            await getattr(self, f"do_{kind}")()
            gap = self.rng.uniform(0.3, 1.5)
            await asyncio.sleep(max(0.0, min(gap, until - time.time())))

    # -- node faults -----------------------------------------------------------------------
    async def do_kill(self) -> None:
        name = await self._target()
        node = self.cluster.nodes[name]
        down = self.rng.uniform(0.3, 3.0)
        self.note(f"kill -9 {name}, restart after {down:.2f} s")
        ended = self._fault("kill", name, time.time(), down_s=round(down, 2))
        await node.kill()
        await asyncio.sleep(down)
        await node.start()
        ended()

    async def do_pause(self, name: str | None = None, long: bool | None = None) -> None:
        name = name or await self._target()
        node = self.cluster.nodes[name]
        long = self.rng.random() < 0.5 if long is None else long
        lease = self.cluster.lease_s
        stopped = self.rng.uniform(1.3 * lease, 3 * lease) if long \
            else self.rng.uniform(0.1, 0.4 * lease)
        self.note(f"SIGSTOP {name} for {stopped:.2f} s ({'longer' if long else 'shorter'} "
                  "than the lease)")
        ended = self._fault("pause", name, time.time(), seconds=round(stopped, 2))
        node.pause()
        await asyncio.sleep(stopped)
        node.resume()
        ended()

    async def do_pause_other(self) -> None:
        """Stop the active node longer than a lease; as it resumes, stop the other (the one
        that took over) — the interleaving that once broke the fence."""
        first = await self._target()
        others = [n for n in self.cluster.nodes if n != first]
        second = self.rng.choice(others)
        a, b = self.cluster.nodes[first], self.cluster.nodes[second]
        stopped = self.rng.uniform(1.5, 3.0) * self.cluster.lease_s
        second_for = self.rng.uniform(0.3, 1.5) * self.cluster.lease_s
        self.note(f"SIGSTOP {first} for {stopped:.2f} s, then SIGSTOP {second} for "
                  f"{second_for:.2f} s as {first} resumes")
        ended_a = self._fault("pause", first, time.time(), seconds=round(stopped, 2))
        a.pause()
        await asyncio.sleep(stopped)
        ended_b = self._fault("pause", second, time.time(), seconds=round(second_for, 2),
                              interleaved=True)
        b.pause()
        a.resume()
        ended_a()
        await asyncio.sleep(second_for)
        b.resume()
        ended_b()

    # -- peer link faults ------------------------------------------------------------------
    def _pair(self) -> tuple[str, str]:
        a, b = self.rng.sample(sorted(self.cluster.nodes), 2)
        return a, b

    def _proxies(self, sender: str, receiver: str) -> list[tuple[FaultProxy, str]]:
        """The proxy, and its direction, that carries ``sender``'s messages to ``receiver``:
        a node sends on the connection it made (docs of tieline.peerlink), so its own
        connection's ``up``. (What flows back on it, the SSH answers and the replies to its
        requests, is left alone: holding those too would stall the receiver's connection
        as well and make the cut two-way.)"""
        return [(self.cluster.peer_proxies[(sender, receiver)], "up")]

    async def do_partition(self) -> None:
        """The loud cut, as a link set down: both peer-link connections reset, new ones
        refused (the proxies carry the peer link; see net.py)."""
        a, b = self._pair()
        seconds = self.rng.uniform(1.0, 4.0)
        self.note(f"peer link {a}|{b} down for {seconds:.2f} s")
        ended = self._fault("partition", f"{a}|{b}", time.time(), ((a, b), (b, a)),
                            seconds=round(seconds, 2))
        proxies = [self.cluster.peer_proxies[(a, b)], self.cluster.peer_proxies[(b, a)]]
        for proxy in proxies:
            proxy.cut()
        await asyncio.sleep(seconds)
        for proxy in proxies:
            proxy.heal()
        ended()

    async def _proxy_fault(self, kind: str, directions: list[tuple[str, str]], seconds: float,
                           apply: Callable[[FaultProxy, str], None], **params: Any) -> None:
        target = ",".join(f"{s}>{r}" for s, r in directions)
        ended = self._fault(kind, target, time.time(), tuple(directions),
                            seconds=round(seconds, 2), **params)
        touched = []
        for sender, receiver in directions:
            for proxy, direction in self._proxies(sender, receiver):
                apply(proxy, direction)
                touched.append(proxy)
        await asyncio.sleep(seconds)
        for proxy in touched:
            proxy.heal()
        ended()

    async def do_oneway(self) -> None:
        a, b = self._pair()
        seconds = self.rng.uniform(1.0, 4.0)
        self.note(f"one-way cut: {a}'s peer messages stop reaching {b} for {seconds:.2f} s")
        await self._proxy_fault("oneway", [(a, b)], seconds, lambda p, d: p.hold(d))

    async def do_blackhole(self) -> None:
        a, b = self._pair()
        seconds = self.rng.uniform(1.0, 4.0)
        self.note(f"silent cut of the peer link {a}|{b} both ways for {seconds:.2f} s")
        await self._proxy_fault("blackhole", [(a, b), (b, a)], seconds,
                                lambda p, d: p.hold("both"))

    async def do_delay(self) -> None:
        a, b = self._pair()
        seconds = self.rng.uniform(2.0, 5.0)
        delay = self.rng.uniform(0.1, 1.5) * self.cluster.lease_s
        self.note(f"peer link {a}|{b} delayed {delay:.2f} s both ways for {seconds:.2f} s")
        await self._proxy_fault("delay", [(a, b), (b, a)], seconds,
                                lambda p, d: p.delay(delay, "both"), delay_s=round(delay, 2))

    async def do_loss(self) -> None:
        a, b = self._pair()
        seconds = self.rng.uniform(2.0, 5.0)
        loss = self.rng.uniform(0.2, 0.6)
        self.note(f"peer link {a}|{b} {loss:.0%} loss both ways for {seconds:.2f} s")
        await self._proxy_fault("loss", [(a, b), (b, a)], seconds,
                                lambda p, d: p.loss(loss, "both"), loss=round(loss, 2))

    # -- router faults ---------------------------------------------------------------------
    async def do_router_drop(self) -> None:
        rid = self.rng.choice(sorted(self.cluster.routers))
        name = await self._target()
        self.note(f"router {rid}: {name}'s connection reset")
        ended = self._fault("router_drop", f"{rid}@{name}", time.time())
        self.cluster.routers[rid].proxies[name].drop()
        ended()

    async def do_router_restart(self) -> None:
        rid = self.rng.choice(sorted(self.cluster.routers))
        self.note(f"router {rid} restarted (fresh crosspoints)")
        ended = self._fault("router_restart", rid, time.time())
        await self.cluster.routers[rid].restart()
        ended()

    # -- resources ---------------------------------------------------------------------------
    async def do_disk_full(self) -> None:
        """The node's disk (its settings and state folder, a tmpfs) filled to the last
        byte for a while: epochs, settings versions and settings files cannot be written."""
        name = await self._target()
        folder = self.cluster.nodes[name].folder
        seconds = self.rng.uniform(1.0, 4.0)
        self.note(f"disk of {name} full for {seconds:.2f} s")
        ended = self._fault("disk_full", name, time.time(), seconds=round(seconds, 2))
        filler = fill_disk(folder)
        await asyncio.sleep(seconds)
        filler.unlink()
        ended()

    async def do_cpu_starve(self) -> None:
        """The node's process held to 2 % of one CPU (cgroup v1 ``cpu.cfs_quota_us``): it
        runs, but its ticks come late."""
        name = await self._target()
        node = self.cluster.nodes[name]
        if not CGROUP_CPU.is_dir() or not node.running:
            return
        seconds = self.rng.uniform(1.0, 4.0)
        group = CGROUP_CPU / f"tieline-chaos-{self.cluster.net.tag}-{name}"
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("2000")
        self.note(f"CPU of {name} starved (2 %) for {seconds:.2f} s")
        ended = self._fault("cpu_starve", name, time.time(), seconds=round(seconds, 2))
        assert node.process is not None
        with contextlib.suppress(OSError):
            (group / "cgroup.procs").write_text(str(node.process.pid))
        await asyncio.sleep(seconds)
        (group / "cpu.cfs_quota_us").write_text("-1")
        with contextlib.suppress(OSError):
            if node.running:
                (CGROUP_CPU / "cgroup.procs").write_text(str(node.process.pid))
        with contextlib.suppress(OSError):
            group.rmdir()
        ended()

    # -- etcd faults -----------------------------------------------------------------------
    async def do_etcd_kill(self) -> None:
        """One member of three killed, then restarted on its data: the quorum holds."""
        etcd = self.cluster.etcd
        assert etcd is not None
        name = self.rng.choice(sorted(etcd.members))
        seconds = self.rng.uniform(1.0, 4.0)
        self.note(f"etcd member {name} killed for {seconds:.2f} s")
        ended = self._fault("etcd_kill", name, time.time(), seconds=round(seconds, 2))
        await etcd.kill(name)
        await asyncio.sleep(seconds)
        await etcd.restart(name)
        ended()

    async def do_etcd_quorum(self) -> None:
        """Two members of three killed: no quorum, so no node may be active."""
        etcd = self.cluster.etcd
        assert etcd is not None
        names = self.rng.sample(sorted(etcd.members), 2)
        seconds = self.rng.uniform(1.0, 3.0)
        self.note(f"etcd quorum lost: members {', '.join(names)} killed for {seconds:.2f} s")
        ended = self._fault("etcd_quorum", "+".join(names), time.time(),
                            seconds=round(seconds, 2))
        for name in names:
            await etcd.kill(name)
        await asyncio.sleep(seconds)
        for name in names:
            await etcd.restart(name)
        await etcd.wait_healthy()
        ended()

    # -- the end ---------------------------------------------------------------------------
    async def heal(self) -> float:
        """Undo anything left (a run cut short mid-fault); returns when it is all undone."""
        for node in self.cluster.nodes.values():
            node.resume()
            with contextlib.suppress(OSError):
                (node.folder / ".chaos-filler").unlink()
            group = CGROUP_CPU / f"tieline-chaos-{self.cluster.net.tag}-{node.name}"
            if group.is_dir():
                with contextlib.suppress(OSError):
                    (group / "cpu.cfs_quota_us").write_text("-1")
                    for pid in (group / "cgroup.procs").read_text().split():
                        (CGROUP_CPU / "cgroup.procs").write_text(pid)
                    group.rmdir()
        for proxy in self.cluster.peer_proxies.values():
            proxy.heal()
        for router in self.cluster.routers.values():
            for proxy in router.proxies.values():
                proxy.heal()
        if self.cluster.etcd is not None:
            for name in self.cluster.etcd.members:
                await self.cluster.etcd.restart(name)
            await self.cluster.etcd.wait_healthy()
        for node in self.cluster.nodes.values():
            if not node.running:
                await node.start()
        for i, f in enumerate(self.faults):
            if f.end is None:
                self.faults[i] = Fault(f.kind, f.target, f.start, time.time(), f.impairs,
                                       f.params)
        return time.time()


#: the faults each strategy's nemesis draws from, with weights
FAULTS = {
    "lease": {"kill": 2, "pause": 3, "pause_other": 2, "partition": 2, "oneway": 2,
              "blackhole": 1, "delay": 1, "loss": 1, "router_drop": 1, "router_restart": 1,
              "disk_full": 1, "cpu_starve": 1},
    "peer_sync": {"kill": 2, "pause": 2, "pause_other": 1, "partition": 2, "oneway": 2,
                  "blackhole": 1, "delay": 1, "loss": 1, "router_drop": 1,
                  "router_restart": 1, "disk_full": 1, "cpu_starve": 1},
    "etcd": {"kill": 2, "pause": 3, "pause_other": 2, "router_drop": 1, "router_restart": 1,
             "etcd_kill": 2, "etcd_quorum": 1, "disk_full": 1, "cpu_starve": 1},
}
#: the nodes of each strategy's cluster and their roles
ROLES = {
    "lease": {"a": "main", "b": "backup"},
    "peer_sync": {"a": "main", "b": "backup"},
    "etcd": {"a": "main", "b": "backup", "c": "backup"},
}


# -- a whole run -----------------------------------------------------------------------------

@dataclass
class RunResult:
    history: History
    violations: list[Violation]
    folder: Path
    #: seconds spent in each phase of the run
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations

    def report(self) -> str:
        text = report(self.history, self.violations)
        return (f"{text}\n{json.dumps(summary(self.history))}\nphases (s): "
                f"{json.dumps(self.phases)}\nfiles: {self.folder}")


async def _panel(cluster: ChaosCluster, rng: random.Random, stop: asyncio.Event) -> None:
    """A front panel on the Videohub: now and then a route on a shared destination."""
    router = cluster.routers["vh"]
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(1.0, 3.0))
        if stop.is_set():
            return
        with contextlib.suppress(OSError, TimeoutError, AssertionError):
            await panel_route(("127.0.0.1", router.current.port), rng.choice([15, 16]),
                              rng.randint(1, 16))


async def _probe(cluster: ChaosCluster, record: Callable[[Op], None], rng: random.Random,
                 workload: Workload, budget_s: float) -> None:
    """Right after the heal: a route every 100 ms until one is acknowledged (liveness)."""
    client = ChaosClient("probe", token_of("probe"), {n: x.url for n, x in cluster.nodes.items()},
                         workload, rng, record, heartbeat_timeout_s=API_HEARTBEAT_TIMEOUT_MS / 1000,
                         timeout_s=3.0)
    deadline = time.time() + budget_s
    try:
        while time.time() < deadline:
            kind, request, fields = client._route("vh", 16, rng.randint(1, 16))
            op = await client.perform(kind, request, **fields)
            if op.outcome == "ok":
                return
            await asyncio.sleep(0.1)
    finally:
        if client.conn is not None:
            await client.conn.close()


async def _settle(cluster: ChaosCluster, timeout: float) -> None:
    """Wait (bounded) for the cluster to be whole again: one active node (every node with
    peer_sync), and the same shared files everywhere (where they are replicated)."""
    deadline = time.time() + timeout
    want = len(cluster.nodes) if cluster.strategy == "peer_sync" else 1
    while time.time() < deadline:
        active = await cluster.active_nodes()
        files = [{k: parsed_settings(v) for k, v in n.files().items()}
                 for n in cluster.nodes.values()]
        same = all(f == files[0] for f in files)
        if len(active) == want and (same or cluster.strategy == "etcd"):
            return
        await asyncio.sleep(0.2)


async def chaos_run(strategy: str, root: Path, seed: int, duration_s: float, *,
                    clients: int = 3, faults: dict[str, float] | None = None,
                    limits: Limits = Limits()) -> RunResult:
    """One whole run (see the module docstring)."""
    if strategy == "etcd" and etcd_binary() is None:
        raise RuntimeError("the etcd strategy needs the etcd binary (Debian: etcd-server)")
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    roles = ROLES[strategy]
    names = [f"c{i}" for i in range(clients)]
    net = ChaosNet(tuple(roles))
    net.create()
    cluster = ChaosCluster(strategy, root, net, roles, names, seed)
    ops: list[Op] = []
    lag: list[tuple[float, float]] = []
    lag_task = asyncio.create_task(sample_lag(lambda t, late: lag.append((t, late))))
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 2)
        mark = now

    try:
        await cluster.start()
        phase("start")
        per = 12 // clients
        workload = Workload(ROUTERS, salvo_crosspoints(),
                            {c: list(range(1 + i * per, 1 + (i + 1) * per))
                             for i, c in enumerate(names)}, [13, 14, 15, 16], list(ROUTERS))
        urls = {n: x.url for n, x in cluster.nodes.items()}
        workers = [ChaosClient(c, token_of(c), urls, workload, random.Random(rng.random()),
                               ops.append, heartbeat_timeout_s=API_HEARTBEAT_TIMEOUT_MS / 1000)
                   for c in names]
        stop = asyncio.Event()
        t0 = time.time()
        nemesis = Nemesis(cluster, random.Random(seed), faults or FAULTS[strategy], t0=t0)
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        tasks.append(asyncio.create_task(_panel(cluster, random.Random(rng.random()), stop)))
        try:
            await asyncio.sleep(1.0)  # the clients find the active node
            await nemesis.run(until=t0 + duration_s)
        finally:
            healed_at = await nemesis.heal()
            nemesis.note("healed")
            phase("faults")
        await _probe(cluster, ops.append, random.Random(rng.random()), workload,
                     budget_s=2 * cluster.lease_s + 8)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        phase("probe")
        await _settle(cluster, timeout=20)
        phase("settle")
        final_routes = {rid: await r.crosspoints() for rid, r in cluster.routers.items()}
        final_settings = {n: node.files() for n, node in cluster.nodes.items()}
    finally:
        lag_task.cancel()
        await cluster.close()
        net.destroy()
        phase("stop")
    commands = []
    for rid, router in cluster.routers.items():
        for path in router.command_logs():
            commands += read_command_log(path, rid, ROUTERS[rid], router.node_of_peer)
    events = list(cluster.events)
    for name, node in cluster.nodes.items():
        if node.log.exists():
            events += parse_node_log(name, node.log.read_text(errors="replace").splitlines())
    history = History(
        strategy=strategy, roles=roles, routers=dict(ROUTERS), lease_s=cluster.lease_s,
        heartbeat_s=cluster.heartbeat_s, t0=t0, ops=sorted(ops, key=lambda o: o.invoke),
        commands=sorted(commands, key=lambda c: c.t), events=sorted(events, key=lambda e: e.t),
        faults=nemesis.faults,
        resets=[r for router in cluster.routers.values() for r in router.resets],
        healed_at=healed_at, final_routes=final_routes, final_settings=final_settings,
        writer=cluster.main, replicated=strategy != "etcd", seed=seed,
        schedule=nemesis.schedule, lag=lag,
        device_lag={rid: router.lag() for rid, router in cluster.routers.items()})
    history.save(root / "history.json")
    violations = check(history, limits)
    phase("check")
    return RunResult(history, violations, root, phases)


def run_sync(strategy: str, root: Path, seed: int, duration_s: float, **kwargs: Any) -> RunResult:
    return asyncio.run(chaos_run(strategy, root, seed, duration_s, **kwargs))


if __name__ == "__main__":  # pragma: no cover - use run.py
    sys.exit("use tests/chaos/run.py")
