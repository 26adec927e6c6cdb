"""The etcd strategy with a virtual IP, on a LAN of network namespaces (issue 6).

Three machines (a main, b and c backups) and a control panel ``cl`` share one LAN; etcd is
on a separate network that only the nodes reach (``lan.py`` draws it). The router emulator
and etcd run on the switch. Node processes are ``tieline run`` under ``ip netns exec``; the
clients are helper processes on ``cl`` (the script below): one uses the real
:class:`tieline.client.Client` with nothing but the VIP URL, another pins one raw WebSocket
to each node's own address. The test process itself has no address on the LAN: it polls
statuses and reads the emulator through sockets made inside the namespaces.

``advertise`` is each node's **own** address, not the VIP. Clients are configured with the
VIP (that is what it is for); a standby that a client reaches anyway (by its own address,
or through the VIP in the moment of a change) sends it to the URL in its ``active``, and
with the node's own address there that redirect names the machine that holds the role, not
whichever holds the VIP by then; an engineer reading ``tieline status`` sees which machine
is active. Were the VIP advertised by every node, all would name the same URL: the status
could not tell a from b, and a backup's ``main`` (its "the main is …" read-only message)
and ``switch_back``'s "the main holds the role" check would both name the VIP, that is the
active backup.

The tests: (a) kill -9 of the active, (b) the active cut from etcd while it still reaches
the router and the clients, (c) the epoch a client remembers, and (d) a node cut off from
etcd by silent loss demotes at its renew deadline itself, not when a pending etcd call
gives up (a bug these tests found: it announced active, and held the VIP, for 0.37 s
after its fence).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest


from tests.etcdserver import EtcdServer, require_etcd
from .cluster import ADMIN_TOKEN, OPERATOR_TOKEN, Cluster, Proc, status_of, wait_for
from .lan import Lan, LanUnavailable, lan

API_PORT = 8181  # in every node's namespace, on 0.0.0.0
ROUTER_PORT = 9100  # the emulator, on the switch
NODES = {"a": "main", "b": "backup", "c": "backup"}
DESTINATIONS = 256

# -- the client machine's programs -----------------------------------------------------------
CLIENT_SCRIPT = r'''
"""Routes from the client machine; one JSON line per result in --out."""
import argparse, asyncio, contextlib, json, logging, signal, sys, time

from websockets.asyncio.client import connect

from tieline.client import Client, ConnectionLost


def writer(path):
    f = open(path, "a", buffering=1)

    def out(record):
        f.write(json.dumps({"t": time.time(), **record}) + "\n")
        f.flush()
    return out


async def vip(args, out, stop):
    """tieline.client.Client with the given URLs (the VIP), one route per destination."""
    client = Client(args.url, token=args.token, failover_timeout_s=20)
    client.add_listener(lambda ev: out({"event": ev["event"], "endpoint": ev.get("endpoint"),
                                        "reason": ev.get("reason")})
                        if ev.get("event") in ("disconnected", "reconnected", "closed")
                        else None)
    await client.connect()
    out({"event": "connected", "endpoint": client.endpoint, "epoch": client.max_epoch})
    for dest in range(args.first, args.first + args.count):
        if stop.is_set():
            break
        src, t0 = 1 + dest % 16, time.time()
        try:
            await client.route("studio", dest, src)
            out({"ack": True, "dest": dest, "src": src, "t0": t0,
                 "endpoint": client.endpoint, "epoch": client.max_epoch})
        except Exception as exc:
            out({"ack": False, "dest": dest, "src": src, "t0": t0,
                 "error": f"{type(exc).__name__}: {exc}"})
            if client.closed:
                try:
                    await client.connect()
                except Exception as again:
                    out({"event": "connect-failed", "error": str(again)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.interval)
    await client.close()
    out({"event": "done"})


async def pinned_one(name, url, first, args, out, stop):
    """A raw WebSocket to one node only: no failover, no redirection."""
    n, ws = 0, None
    while not stop.is_set():
        if ws is None:
            try:
                async with asyncio.timeout(2):
                    ws = await connect(url, proxy=None, compression=None, ping_interval=None)
                    await ws.recv()
                    await ws.send(json.dumps({"type": "hello", "id": "h", "protocol": 1,
                                              "token": args.token}))
                    while json.loads(await ws.recv()).get("id") != "h":
                        pass
            except Exception as exc:
                out({"node": name, "event": "connect-failed", "error": str(exc)})
                ws = None
                await asyncio.sleep(0.1)
                continue
        dest = first + n % args.count
        src, t0, n = 1 + n % 16, time.time(), n + 1
        try:
            async with asyncio.timeout(3):
                await ws.send(json.dumps({"type": "route", "id": n, "router": "studio",
                                          "destination": dest, "source": src}))
                while (answer := json.loads(await ws.recv())).get("id") != n:
                    pass
            error = answer.get("error") or {}
            out({"node": name, "dest": dest, "src": src, "t0": t0, "ok": bool(answer["ok"]),
                 "code": error.get("code"), "message": error.get("message")})
        except Exception as exc:
            out({"node": name, "dest": dest, "src": src, "t0": t0, "ok": False,
                 "code": "connection", "message": f"{type(exc).__name__}: {exc}"})
            with contextlib.suppress(Exception):
                await ws.close()
            ws = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.interval)


async def pinned(args, out, stop):
    await asyncio.gather(*(pinned_one(spec.split("=")[0], spec.split("=", 1)[1],
                                      args.first + i * args.count, args, out, stop)
                           for i, spec in enumerate(args.url)))
    out({"event": "done"})


async def epoch(args, out, stop):
    """Connect with --url (the VIP), then to --only: what the client says."""
    client = Client(args.url, token=args.token, failover_timeout_s=5)
    await client.connect()
    out({"step": "seen", "endpoint": client.endpoint, "max_epoch": client.max_epoch,
         "node": client.node})
    await client.close()
    client.endpoints = [args.only]
    try:
        await client.connect()
        out({"step": "only", "ok": True, "endpoint": client.endpoint, "node": client.node,
             "max_epoch": client.max_epoch})
        await client.close()
    except ConnectionLost as exc:
        out({"step": "only", "ok": False, "error": str(exc)})
    fresh = Client([args.only], token=args.token, failover_timeout_s=5)
    try:
        await fresh.connect()
        out({"step": "fresh", "ok": True, "endpoint": fresh.endpoint, "node": fresh.node})
        await fresh.close()
    except ConnectionLost as exc:
        out({"step": "fresh", "ok": False, "error": str(exc)})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["vip", "pinned", "epoch"])
    p.add_argument("--out", required=True)
    p.add_argument("--url", action="append", default=[])
    p.add_argument("--only")
    p.add_argument("--token", required=True)
    p.add_argument("--first", type=int, default=1)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.03)
    args = p.parse_args()
    logging.basicConfig(level="INFO", stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    async def run():
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await globals()[args.mode](args, writer(args.out), stop)

    asyncio.run(run())


main()
'''


class LanCluster(Cluster):
    """A :class:`Cluster` on a :class:`Lan`: nodes on a, b, c; the emulator on the switch;
    the etcd strategy with a virtual IP."""

    failover_defaults: dict[str, Any] = {"ttl_s": 1, "request_timeout_ms": 300,
                                         "hold_down_s": 1}

    def __init__(self, root: Path, net: Lan, etcd: EtcdServer, **kwargs: Any) -> None:
        super().__init__(root, nodes=kwargs.pop("nodes", NODES), destinations=DESTINATIONS,
                         **kwargs)
        self.lan = net
        self.etcd = etcd
        self.device_host = net.router_address
        self.device_port = ROUTER_PORT
        self.script = root / "client.py"
        self.script.write_text(CLIENT_SCRIPT)
        self._helpers = 0

    # -- addresses ---------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"ws://{self.lan.lan_address(name)}:{API_PORT}"

    @property
    def vip_url(self) -> str:
        return f"ws://{self.lan.vip}:{API_PORT}"

    def api_address(self, name: str) -> tuple[str, int]:
        return self.lan.lan_address(name), API_PORT

    def node_of(self, peer: str) -> str | None:
        """The node whose router connection comes from ``peer`` (host:port)."""
        host = peer.rsplit(":", 1)[0]
        return next((n for n in self.roles if self.lan.lan_address(n) == host), None)

    # -- settings and processes --------------------------------------------------------
    def failover_block(self, name: str) -> dict[str, Any]:
        return {"strategy": "etcd", "endpoints": [self.etcd.url], "cluster": "test",
                "advertise": self.url(name),
                "vip": {"address": self.lan.vip_cidr, "interface": "eth0"},
                **self.failover}

    def api_listen(self, name: str) -> str:
        return f"0.0.0.0:{API_PORT}"

    def node_args(self, name: str, folder: Path) -> list[str]:
        # `ip netns exec` execs the command: the process is tieline itself (kill -9 is real)
        return [*self.lan.prefix(name), *super().node_args(name, folder)]

    def start_node(self, name: str) -> Proc:
        return self.start_nodes(name)[0]

    def start_nodes(self, *names: str) -> list[Proc]:
        """Start nodes together, then wait until each one's API listens."""
        procs = []
        for name in names:
            procs.append(proc := self.node_proc(name))
            proc.start()
            self.procs[name] = proc
        for name in names:
            self.lan.wait_port("cl", self.lan.lan_address(name), API_PORT)
        return procs

    def start_device(self, *, command_log: bool = True, wait: bool = True) -> None:
        proc = self.device_proc(command_log=command_log)
        proc.args = [*self.lan.prefix("sw"), *proc.args]
        proc.start()
        self.procs["device"] = proc
        if wait:
            self.wait_device()

    def wait_device(self) -> None:
        self.lan.wait_port("sw", self.device_host, self.device_port)

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.popen is not None and proc.popen.poll() is None

    # -- reading from inside the LAN ---------------------------------------------------
    async def open_device_connection(self) -> tuple[asyncio.StreamReader,
                                                    asyncio.StreamWriter]:
        """From the switch, where the emulator runs."""
        return await self.lan.open_connection("sw", self.device_host, self.device_port)

    async def status(self, name: str) -> dict[str, Any]:
        """Node ``name``'s status, asked from the client machine ({} when it does not
        answer)."""
        return await status_at(self.lan, self.lan.lan_address(name)) or {}

    async def statuses(self) -> dict[str, dict[str, Any]]:
        names = [n for n in self.roles if self.alive(n)]
        found = await asyncio.gather(*(self.status(n) for n in names))
        return dict(zip(names, found, strict=True))

    async def actives(self) -> list[str]:
        return sorted(n for n, s in (await self.statuses()).items()
                      if s.get("state") == "active")

    def vip_holders(self) -> list[str]:
        return [n for n in self.roles if self.lan.holds_vip(n)]

    # -- the client machine ------------------------------------------------------------
    def client(self, mode: str, *args: str) -> Helper:
        """Start the client script on ``cl`` (see CLIENT_SCRIPT)."""
        self._helpers += 1
        name = f"client{self._helpers}-{mode}"
        out = self.root / f"{name}.jsonl"
        proc = Proc(name, [*self.lan.prefix("cl"), sys.executable, str(self.script), mode,
                           "--out", str(out), "--token", OPERATOR_TOKEN, *args],
                    self.root / f"{name}.log")
        proc.start()
        self.procs[name] = proc
        return Helper(proc, out)

    # -- cluster life ------------------------------------------------------------------
    async def start_three(self) -> dict[str, dict[str, Any]]:
        """The emulator, then a (main) until active, then b and c until they follow a."""
        self.start_device(wait=False)  # both start at once: a retries the router anyway
        self.start_node("a")
        self.wait_device()
        await wait_for(lambda: self.node_is("a", status="Main is active"), 20, "a active")
        self.start_nodes("b", "c")

        async def followers() -> bool:
            found = await self.statuses()
            return all(found[n].get("status") == "Backup is idle"
                       and found[n].get("active") == self.url("a") for n in ("b", "c"))

        await wait_for(followers, 20, "b and c idle, following a")
        await wait_for(lambda: self.vip_holders() == ["a"], 10, "the VIP on a only")
        return await self.statuses()

    async def node_is(self, name: str, **fields: Any) -> bool:
        """Whether node ``name``'s status has these values."""
        found = await self.status(name)
        return all(found.get(k) == v for k, v in fields.items())

    def log_times(self, name: str, pattern: str) -> list[float]:
        """Unix times of node ``name``'s log lines matching ``pattern`` (logging's asctime:
        local time, ms)."""
        out = []
        for line in self.procs[name].output().splitlines():
            found = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", line)
            if found and re.search(pattern, line):
                out.append(datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").timestamp())
        return out


class Helper:
    """A client script running on the client machine."""

    def __init__(self, proc: Proc, out: Path) -> None:
        self.proc = proc
        self.out = out

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        lines = self.out.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def acks(self, **where: Any) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("ack") is True
                and all(r.get(k) == v for k, v in where.items())]

    def stop(self) -> None:
        assert self.proc.popen is not None
        if self.proc.popen.poll() is None:
            self.proc.popen.send_signal(signal.SIGTERM)
        self.proc.popen.wait(10)

    def finish(self, timeout: float = 15) -> int:
        assert self.proc.popen is not None
        return self.proc.popen.wait(timeout)


async def status_at(net: Lan, host: str, port: int = API_PORT,
                    token: str = ADMIN_TOKEN) -> dict[str, Any] | None:
    """One node's own status, asked from the client machine (None when it fails)."""
    try:
        async with asyncio.timeout(2):
            sock = await net.socket("cl", host, port)
    except (OSError, TimeoutError):
        return None
    return await status_of(f"ws://{host}:{port}", token, sock=sock)


class Sampler:
    """Every node's state, sampled continuously from the client machine."""

    def __init__(self, cluster: LanCluster) -> None:
        self.cluster = cluster
        self.seen: list[tuple[float, list[str]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self.seen.append((time.time(), await self.cluster.actives()))
            await asyncio.sleep(0.01)

    def doubles(self) -> list[tuple[float, list[str]]]:
        return [s for s in self.seen if len(s[1]) > 1]


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def net() -> Iterator[Lan]:
    require_etcd()
    try:
        with lan() as made:
            yield made
    except LanUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def lan_etcd(net, tmp_path) -> Iterator[EtcdServer]:
    """etcd on the switch, listening on the etcd network only."""
    server = EtcdServer(listen_host=net.etcd_host, command_prefix=net.prefix("sw"),
                        log_path=tmp_path / "etcd.log")
    # started from a thread in the switch's namespace: its port probe and health check
    # reach the switch's address from there (the test process's own namespace cannot)
    net.thread("sw").submit(server.start).result()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(net, lan_etcd, tmp_path, request) -> Iterator[LanCluster]:
    made = LanCluster(tmp_path / "c", net, lan_etcd,
                      failover=getattr(request, "param", None))
    try:
        yield made
    finally:  # processes first: etcd and the namespaces go after (their fixtures)
        made.stop_all()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print(made.logs())
            print("===== etcd\n" + lan_etcd.log()[-3000:])


# -- a. kill -9 of the active ----------------------------------------------------------------
@pytest.mark.parametrize("cluster", [{"switch_back": "manual"}], indirect=True)
@pytest.mark.parametrize("death", ["process", "machine"])
async def test_kill_9_moves_the_vip_and_a_vip_only_client_keeps_routing(cluster, death):
    """kill -9 of the active (a): exactly one of b, c becomes active and claims the VIP; a
    client on ``cl`` that knows only the VIP URL keeps routing, and every route it saw
    acknowledged is on the router. ``process``: only tieline dies (the machine's kernel stays
    up, with the VIP still on eth0, as keepalived leaves it on SIGKILL; the client's
    connection is reset at once); then a starts again and removes it. ``machine``: the
    machine is gone (its links go down first, then the process is killed: the client only
    notices by the missing heartbeats)."""
    before = await cluster.start_three()
    epoch = before["a"]["epoch"]
    client = cluster.client("vip", "--url", cluster.vip_url, "--interval", "0.03")
    await wait_for(lambda: len(client.acks()) >= 5, 20, "routes acknowledged through the VIP")

    async with Sampler(cluster) as sampler:
        killed = time.time()
        if death == "machine":
            cluster.lan.set_link("a", "eth0", False)
            cluster.lan.set_link("a", "eth1", False)
        cluster.procs["a"].signal(signal.SIGKILL)
        cluster.procs["a"].popen.wait(10)

        async def another() -> bool:
            return len(now := await cluster.actives()) == 1 and now[0] != "a"

        await wait_for(another, 20, "b or c active")
        new = (await cluster.actives())[0]
        await wait_for(lambda: len([r for r in client.acks() if r["t0"] > killed]) >= 5, 20,
                       "routes acknowledged through the VIP after the failover")
    client.stop()
    records = client.records()
    for r in records:
        if r.get("t", 0) > killed - 0.2 and (r.get("event") or not r.get("ack")):
            print(r)
    acks = client.acks()
    before_kill = [r for r in acks if r["t"] < killed]
    after_kill = [r for r in acks if r["t0"] > killed]
    gap = min(r["t"] for r in acks if r["t"] > killed) - max(r["t"] for r in before_kill)
    print(f"{death}: client gap {gap:.3f}s; {new} active at "
          f"{cluster.log_times(new, 'this node is now active')[0] - killed:.3f}s after the kill")

    assert not sampler.doubles(), sampler.doubles()
    other = ({"b", "c"} - {new}).pop()
    statuses = await cluster.statuses()
    assert statuses[new]["status"] == "Backup is active" and statuses[new]["epoch"] > epoch
    assert statuses[other]["status"] == "Backup is idle"
    assert statuses[other]["active"] == cluster.url(new)
    await wait_for(lambda: cluster.lan.holds_vip(new), 5, f"the VIP on {new}")
    assert not cluster.lan.holds_vip(other)
    assert before_kill and after_kill
    assert all(r["endpoint"] == cluster.vip_url for r in acks)
    device = await cluster.device_crosspoints()
    missing = [r for r in acks if device.get(r["dest"] - 1) != r["src"] - 1]
    assert not missing, missing
    if death == "machine":
        return
    # nothing ran to remove it: the dead node's kernel still has the VIP (and answers ARP
    # for it); tieline removes it when it starts again
    assert cluster.lan.holds_vip("a")
    cluster.start_node("a")
    await wait_for(lambda: cluster.node_is("a", status="Main is standby",
                                           active=cluster.url(new)), 20,
                   f"a back, standby, following {new}")
    await wait_for(lambda: cluster.vip_holders() == [new], 5, "the stale VIP gone from a")


# -- b. the active cut from etcd while it still reaches the router and the clients -----------
def _runs(names: list[str]) -> list[str]:
    """``names`` with repeats collapsed: ["a", "a", "b"] -> ["a", "b"]."""
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


@pytest.mark.parametrize("cluster", [{"switch_back": "manual"}], indirect=True)
@pytest.mark.parametrize("mode", ["down", "loss"])
async def test_active_cut_from_etcd_demotes_before_another_is_promoted(net, cluster, mode):
    """a loses etcd (its eth1: link down, or silent loss) but still reaches the router and
    the clients. It stops, and says so, before b or c takes over; one client pinned to each
    node's own address routes all along: the router never hears two nodes interleaved."""
    if mode == "loss" and (reason := net.loss_unsupported()):
        pytest.skip(reason)
    before = await cluster.start_three()
    epoch = before["a"]["epoch"]
    pinned = cluster.client("pinned", *(x for n in cluster.roles
                                        for x in ("--url", f"{n}={cluster.url(n)}")),
                            "--count", "80", "--interval", "0.02")

    def results(node: str, ok: bool | None = None) -> list[dict[str, Any]]:
        return [r for r in pinned.records() if r.get("node") == node and "ok" in r
                and (ok is None or r["ok"] is ok)]

    await wait_for(lambda: len(results("a", True)) >= 5
                   and all(len(results(n, False)) >= 5 for n in ("b", "c")), 20,
                   "routes on a, refusals on b and c")
    assert {r["code"] for n in ("b", "c") for r in results(n)} == {"standby"}

    async with Sampler(cluster) as sampler:
        cut = time.time()
        net.cut_etcd("a", mode)

        async def another() -> bool:
            return len(now := await cluster.actives()) == 1 and now[0] != "a"

        await wait_for(another, 20, "b or c active")
        new = (await cluster.actives())[0]
        other = ({"b", "c"} - {new}).pop()
        await wait_for(lambda: len([r for r in results(new, True) if r["t0"] > cut]) >= 5, 20,
                       f"routes acknowledged by {new}")
        assert cluster.vip_holders() == [new]  # a let the VIP go when it demoted
        # heal: a reads etcd again and follows the new active, at its epoch
        new_epoch = (await cluster.status(new))["epoch"]
        net.heal_etcd("a", mode)
        await wait_for(lambda: cluster.node_is("a", status="Main is standby",
                                               active=cluster.url(new), epoch=new_epoch),
                       20, f"a standby, following {new}")
        healed = time.time()
        await asyncio.sleep(0.3)  # routes keep coming after the heal
    pinned.stop()

    # the router's view: every route command, in the order received, by sender
    routes = [(t, cluster.node_of(peer)) for t, peer, _ in cluster.routes_sent()]
    senders = _runs([n for _, n in routes])
    assert senders == ["a", new], senders  # a, then the new active, never interleaved
    last_a = max(t for t, n in routes if n == "a")
    first_new = min(t for t, n in routes if n == new)
    assert cut < last_a < first_new
    print(f"{mode}: last route from a {last_a - cut:.3f} s after the cut, first from {new} "
          f"{first_new - cut:.3f} s (router silent for {first_new - last_a:.3f} s)")
    # the clients' view: a's last acknowledgement before the new node's first request
    assert max(r["t"] for r in results("a", True)) < min(r["t0"] for r in results(new, True)
                                                         if r["t0"] > cut)
    assert not results(other, True)
    # the pinned client on a: refused once a stopped (fenced, then standby), nothing else
    assert {r["code"] for r in results("a", False)} == {"standby"}
    assert [r for r in results(new, True) if r["t"] > healed]  # still routing after the heal
    assert new_epoch > epoch

    statuses = await cluster.statuses()
    assert statuses["a"]["state"] == "standby" and statuses["a"]["epoch"] == new_epoch
    assert statuses[other]["active"] == cluster.url(new)
    assert cluster.vip_holders() == [new]

    # the nodes' own word (strategy and vip log lines, same clock, ms) and the sampled
    # states: a said "standby" and let the VIP go before the new node said "active" and
    # claimed it; never two actives
    a_standby = cluster.log_times("a", "this node is now standby")
    a_released = cluster.log_times("a", "virtual IP .* released")
    new_active = cluster.log_times(new, "this node is now active")
    new_claimed = cluster.log_times(new, "virtual IP .* claimed")
    assert len(a_standby) == len(new_active) == len(new_claimed) == 1, (a_standby, new_active)
    print(f"{mode}: a standby {a_standby[0] - cut:.3f} s after the cut, {new} active "
          f"{new_active[0] - cut:.3f} s after it ({new_active[0] - a_standby[0]:.3f} s later)")
    problems = []
    if not a_standby[0] < new_active[0]:
        problems.append(f"{new} said active {a_standby[0] - new_active[0]:.3f} s before a "
                        "said standby")
    if not a_released[-1] < new_claimed[0]:
        problems.append(f"both held the VIP for {a_released[-1] - new_claimed[0]:.3f} s")
    if sampler.doubles():
        problems.append(f"two actives sampled: {sampler.doubles()}")
    assert not problems, problems


# -- c. a client that saw epoch N refuses a node announcing less -----------------------------
@pytest.mark.parametrize("cluster", [{"switch_back": "manual"}], indirect=True)
async def test_a_client_that_saw_the_new_epoch_refuses_the_cut_off_old_active(net, cluster):
    """a, cut from etcd, demotes but keeps announcing the epoch it held: it cannot learn the
    new one. A control panel that reached the new active through the VIP refuses a when
    given only a's address; one with no memory of epochs uses a (a stale standby). After
    the heal a announces the new epoch and names the active node, and the same client goes
    there. A node restarted while cut off from etcd announces epoch 0: refused as well."""
    before = await cluster.start_three()
    old = before["a"]["epoch"]
    net.cut_etcd("a")

    async def another() -> bool:
        return len(now := await cluster.actives()) == 1 and now[0] != "a"

    await wait_for(another, 20, "b or c active")
    new = (await cluster.actives())[0]
    new_epoch = (await cluster.status(new))["epoch"]
    a_status = await cluster.status("a")
    assert (a_status["state"], a_status["epoch"], a_status.get("active")) == (
        "standby", old, None)

    async def probe() -> dict[str, dict[str, Any]]:
        helper = cluster.client("epoch", "--url", cluster.vip_url, "--only", cluster.url("a"))
        assert helper.finish() == 0, helper.proc.output()
        return {r["step"]: r for r in helper.records()}

    during = await probe()
    assert (during["seen"]["endpoint"], during["seen"]["max_epoch"]) == (cluster.vip_url,
                                                                         new_epoch)
    assert not during["only"]["ok"]
    assert (f"announces epoch {old}, lower than epoch {new_epoch} already seen: "
            "not authoritative") in during["only"]["error"]
    # without the epoch a client would take the stale standby (reads only: writes wait)
    assert during["fresh"]["ok"] and during["fresh"]["endpoint"] == cluster.url("a")
    assert during["fresh"]["node"]["epoch"] == old

    # restarted while still cut off: it announces 0 until it reads etcd
    cluster.procs["a"].signal(signal.SIGKILL)
    cluster.procs["a"].popen.wait(10)
    cluster.start_node("a")
    restarted = await probe()
    assert (f"announces epoch 0, lower than epoch {new_epoch} already seen"
            in restarted["only"]["error"])
    assert cluster.vip_holders() == [new]

    net.heal_etcd("a")
    await wait_for(lambda: cluster.node_is("a", status="Main is standby",
                                           active=cluster.url(new), epoch=new_epoch),
                   20, f"a standby, following {new}")
    after = await probe()
    assert after["only"]["ok"]  # a announces the new epoch and names the active node
    assert after["only"]["endpoint"] == cluster.url(new)


# -- the renew deadline under silent loss ---------------------------------------------------
@pytest.mark.parametrize("cluster", [{"switch_back": "manual"}], indirect=True)
async def test_a_silently_cut_off_active_demotes_at_its_renew_deadline(net, cluster):
    """From the first route a refuses as fenced ("cannot confirm that it is still the
    active node") to its "now standby": a announces active (and holds the VIP) while it
    refuses every route. That window should be near zero."""
    if reason := net.loss_unsupported():
        pytest.skip(reason)
    await cluster.start_three()
    pinned = cluster.client("pinned", "--url", f"a={cluster.url('a')}", "--interval", "0.01")

    def results() -> list[dict[str, Any]]:
        return [r for r in pinned.records() if "ok" in r]

    await wait_for(lambda: len([r for r in results() if r["ok"]]) >= 5, 20, "routes on a")
    cut = time.time()
    net.cut_etcd("a", "loss")
    await wait_for(lambda: cluster.node_is("a", state="standby"), 10, "a standby")
    await asyncio.sleep(0.1)
    pinned.stop()
    standby = cluster.log_times("a", "this node is now standby")[0]
    fenced = [r["t0"] for r in results() if r["t0"] > cut and not r["ok"]
              and "cannot confirm" in (r.get("message") or "")]
    window = standby - min(fenced) if fenced else 0.0
    print(f"a refused routes as fenced for {window:.3f} s before it said standby "
          f"({standby - cut:.3f} s after the cut)")
    # demoted by its own deadline (the watchdog), not when a pending etcd call gave up
    assert "this node is now standby: the leader lease could not be renewed before its " \
           "deadline" in cluster.procs["a"].output()
