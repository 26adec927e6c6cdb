"""keepalived (VRRPv3) in the network namespaces of ``tests/failover/lan.py``: the yardstick
that test_vip_failover.py and test_failover.py hold tieline's failover against.

:class:`KeepalivedSeries` runs keepalived on the LAN's nodes (``advert_int`` as given,
priorities 150 / 100 / 50 for a / b / c, all ``state BACKUP`` with ``nopreempt``, one VIP
on eth0, multicast adverts on the bridge, ``vrrp_garp_master_delay 0``), on each node a
TCP responder on 0.0.0.0:7000 that answers "who" with the node's name, and in the client
machine a probe that opens a new connection to VIP:7000 every ``interval_s``
(``vip_client.py responder`` and ``probe``). One :meth:`KeepalivedSeries.run_once`: one
MASTER holding the VIP alone, the others BACKUP, the probe answered by the MASTER; a random
wait; **SIGKILL of the MASTER's keepalived** (its process group: the parent and the VRRP
child at once; the responder keeps running and the kernel keeps the VIP, so the probe is
answered by the old node until the new MASTER's gratuitous ARPs). Measured: kill → the
first answer through the VIP from another node: detection (3 × advert_int + skew), the
VIP, GARP and a TCP answer; no application state. The killed keepalived is then started
again: it removes the stale VIP at start and, with ``nopreempt``, stays BACKUP, so the
MASTER alternates between the nodes.

Also here, for both benchmarks: :class:`Program` (a process in a namespace writing JSON
lines) and :func:`helper` (``vip_client.py`` in a namespace). Times are
``time.monotonic_ns()``, one clock in every namespace. Needs root, iproute2 and keepalived.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.failover.cluster import terminate, wait_for  # noqa: E402
from tests.failover.lan import CLIENT, Lan  # noqa: E402
from tests.failover.netns import why_unavailable  # noqa: E402

HELPER = HERE / "vip_client.py"
RESPONDER_PORT = 7000
PRIORITIES = {"a": 150, "b": 100, "c": 50}
PR_SET_CHILD_SUBREAPER = 36


def ms(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.0f}"


def unavailable() -> str | None:
    """Why keepalived cannot run in namespaces here, or None."""
    return why_unavailable() or (None if shutil.which("keepalived")
                                 else "keepalived is not installed")


# -- processes and their JSON lines ------------------------------------------------------------
class JsonLines:
    """A file of JSON lines that another process appends to, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._offset = 0
        self._rest = b""

    def refresh(self) -> list[dict[str, Any]]:
        if self.path.exists():
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
            self._offset += len(data)
            *lines, self._rest = (self._rest + data).split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):
                    self.records.append(json.loads(line))
        return self.records


class Program:
    """A process in a namespace: stdout (JSON lines) to one file, stderr to another."""

    def __init__(self, name: str, args: list[str], folder: Path) -> None:
        self.name = name
        self.out = JsonLines(folder / f"{name}.jsonl")
        self.err = folder / f"{name}.log"
        with open(self.out.path, "ab") as out, open(self.err, "ab") as err:
            self.popen = subprocess.Popen(args, stdout=out, stderr=err,
                                          stdin=subprocess.DEVNULL, start_new_session=True)

    def records(self) -> list[dict[str, Any]]:
        return self.out.refresh()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        terminate(self.popen)

    def tail(self) -> str:
        return self.err.read_text(errors="replace")[-3000:] if self.err.exists() else ""


def helper(net: Lan, machine: str, name: str, folder: Path, *args: str) -> Program:
    """``vip_client.py ARGS`` on ``machine``."""
    return Program(name, [*net.prefix(machine), sys.executable, str(HELPER), *args], folder)


def errors_seen(records: list[dict[str, Any]], key: str) -> list[str]:
    """Distinct error texts (with counts) among ``records``."""
    counts: dict[str, int] = {}
    for r in records:
        if key in r:
            text = str(r[key])[:160]
            counts[text] = counts.get(text, 0) + 1
    return [f"{n} × {text}" for text, n in counts.items()]


# -- keepalived --------------------------------------------------------------------------------
NOTIFY = """#!/bin/sh
# keepalived notify: $1 our state file; then INSTANCE NAME STATE PRIORITY
echo "$(date +%s.%N) $4" >> "$1"
"""


@dataclass
class Keepalived:
    """keepalived (VRRP only, in the foreground) on one node."""

    net: Lan
    node: str
    folder: Path
    advert_s: float
    starts: int = 0
    popen: subprocess.Popen[bytes] | None = None
    vrrp_pid: int | None = None
    started_wall: float = 0.0

    @property
    def conf(self) -> Path:
        return self.folder / f"{self.node}.conf"

    @property
    def state_file(self) -> Path:
        return self.folder / f"{self.node}.states"

    def write_conf(self) -> None:
        self.conf.write_text(f"""global_defs {{
    router_id bench_{self.node}
    vrrp_version 3
    enable_script_security
    script_user root
    vrrp_garp_master_delay 0
}}
vrrp_instance VI_bench {{
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 66
    priority {PRIORITIES[self.node]}
    advert_int {self.advert_s:g}
    virtual_ipaddress {{
        {self.net.vip_cidr} dev eth0
    }}
    notify "{self.folder / 'notify.sh'} {self.state_file}"
}}
""")
        (self.folder / "notify.sh").write_text(NOTIFY)
        os.chmod(self.folder / "notify.sh", 0o755)

    def start(self) -> None:
        self.starts += 1
        # fresh pid files: the killed one's VRRP child may not be reaped yet, and keepalived
        # would take a leftover pid file for a running daemon
        stem = self.folder / f"{self.node}-{self.starts}"
        self.started_wall = time.time()
        with open(self.folder / f"{self.node}.log", "ab") as log:
            self.popen = subprocess.Popen(
                [*self.net.prefix(self.node), "keepalived", "-n", "-l", "-D", "-G", "-P",
                 "-f", str(self.conf), "-p", f"{stem}.pid", "-r", f"{stem}.vrrp.pid"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        self._pidfile = Path(f"{stem}.vrrp.pid")

    def wait_child(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # the file may exist and still be empty: keepalived creates it, then writes
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.vrrp_pid = int(self._pidfile.read_text().split()[0])
                return
            time.sleep(0.01)
        raise AssertionError(f"keepalived on {self.node} wrote no VRRP pid file")

    def states(self) -> list[tuple[float, str]]:
        if not self.state_file.exists():
            return []
        out = []
        for line in self.state_file.read_text().splitlines():
            words = line.split()
            if len(words) == 2:
                out.append((float(words[0]), words[1]))
        return out

    def state(self) -> str | None:
        """The last state since the last start (notify), or None."""
        now = [s for t, s in self.states() if t >= self.started_wall]
        return now[-1] if now else None

    def kill(self) -> None:
        """SIGKILL to the process group: the parent and its VRRP child at once."""
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGKILL)

    def reap(self) -> None:
        assert self.popen is not None
        self.popen.wait(10)
        if self.vrrp_pid is not None:  # reparented to us (child subreaper)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.vrrp_pid, 0)
            self.vrrp_pid = None

    def stop(self) -> None:
        """SIGTERM (keepalived removes its VIP), SIGKILL if it lingers."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self.vrrp_pid is not None:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.waitpid(self.vrrp_pid, os.WNOHANG)


@dataclass
class KeepalivedRun:
    run: int
    killed: str
    new: str
    took_ns: int
    master_ns: int | None  #: kill → the new MASTER's notify
    failed: int
    load1: float = 0.0  #: the 1-minute load average at the kill


def vip_holders(net: Lan) -> list[str]:
    return [n for n in net.nodes if net.holds_vip(n)]


class KeepalivedSeries:
    """keepalived, responders and the probe on ``net``; one kill -9 per :meth:`run_once`."""

    def __init__(self, net: Lan, root: Path, advert_s: float, interval_s: float) -> None:
        self.net = net
        self.root = root
        self.advert_s = advert_s
        self.interval_s = interval_s
        self.responders: list[Program] = []
        self.daemons = {n: Keepalived(net, n, root, advert_s) for n in net.nodes}
        self.probe: Program | None = None
        self.runs: list[KeepalivedRun] = []

    async def start(self) -> None:
        """Responders, keepalived on every node, the probe in the client machine."""
        net = self.net
        self.root.mkdir(parents=True, exist_ok=True)
        # the killed keepalived's VRRP child is orphaned: be its reaper (PID 1 here may not)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        for node in vip_holders(net):  # nothing should be left by an earlier series
            net.ip(node, "addr", "del", net.vip_cidr, "dev", "eth0", check=False)
        self.responders = [helper(net, n, f"responder-{n}", self.root, "responder", "--name",
                                  n, "--port", str(RESPONDER_PORT)) for n in net.nodes]
        for n in net.nodes:
            await asyncio.to_thread(net.wait_port, CLIENT, net.lan_address(n), RESPONDER_PORT)
        for daemon in self.daemons.values():
            daemon.write_conf()
            daemon.start()
        for daemon in self.daemons.values():
            await asyncio.to_thread(daemon.wait_child)
        self.probe = helper(net, CLIENT, "probe", self.root, "probe", "--host", net.vip,
                            "--port", str(RESPONDER_PORT), "--interval", str(self.interval_s))

    async def run_once(self, run: int, runs: int, phase_s: float) -> KeepalivedRun:
        """Wait until stable, wait 0.3 s to 0.3 s + ``phase_s``, kill -9 the MASTER, measure
        until another node answers through the VIP, start the killed one again."""
        probe, daemons = self.probe, self.daemons
        assert probe is not None
        master = await self.stable()
        await asyncio.sleep(0.3 + random.uniform(0, phase_s))
        start = len(probe.records())
        errors_before = sum(1 for r in probe.records() if "error" in r)
        load1 = os.getloadavg()[0]
        kill_wall = time.time()
        killed_ns = time.monotonic_ns()
        daemons[master].kill()

        def first() -> dict[str, Any] | None:
            return next((r for r in probe.records()[start:] if r["t_ns"] > killed_ns
                         and r.get("node") not in (None, master)), None)

        await wait_for(lambda: first() is not None, 60,
                       f"run {run}: an answer through the VIP from another node")
        answer = first()
        assert answer is not None
        await asyncio.to_thread(daemons[master].reap)
        new = answer["node"]
        await wait_for(lambda: daemons[new].state() == "MASTER", 5, f"{new}'s MASTER notify")
        became = next((t for t, s in daemons[new].states()
                       if s == "MASTER" and t >= kill_wall), None)
        failed = sum(1 for r in probe.records() if "error" in r) - errors_before
        result = KeepalivedRun(run, master, new, answer["t_ns"] - killed_ns,
                               None if became is None else int((became - kill_wall) * 1e9),
                               failed, load1)
        self.runs.append(result)
        print(f"keepalived run {run}/{runs}: {master} killed → {new}: answer "
              f"{ms(result.took_ns)} ms (MASTER {ms(result.master_ns)} ms)", flush=True)
        daemons[master].start()  # BACKUP again (nopreempt); removes the stale VIP
        await asyncio.to_thread(daemons[master].wait_child)
        return result

    async def stable(self) -> str:
        """Wait until one MASTER holds the VIP alone, the others are BACKUP, and the probe
        is answered by the MASTER; the MASTER."""
        probe = self.probe
        assert probe is not None
        start = len(probe.records())
        since = time.monotonic_ns()
        found: dict[str, str] = {}

        async def stable() -> bool:
            states = {n: d.state() for n, d in self.daemons.items()}
            masters = [n for n, s in states.items() if s == "MASTER"]
            if len(masters) != 1 or any(s != "BACKUP" for n, s in states.items()
                                        if n != masters[0]):
                return False
            if vip_holders(self.net) != masters:
                return False
            recent = [r for r in probe.records()[start:] if r["t_ns"] > since]
            if len(recent) < 3 or any(r.get("node") != masters[0] for r in recent[-3:]):
                return False
            found["master"] = masters[0]
            return True

        await wait_for(stable, 60, "one MASTER holding the VIP alone, the others BACKUP, "
                                   "the probe answered by the MASTER", interval=0.05)
        return found["master"]

    def print_logs(self) -> None:
        """keepalived's logs (when a run failed)."""
        for daemon in self.daemons.values():
            log = self.root / f"{daemon.node}.log"
            if log.exists():
                print(f"===== keepalived {daemon.node}\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.probe is not None:
            self.probe.stop()
        for daemon in self.daemons.values():
            daemon.stop()
        for responder in self.responders:
            responder.stop()

    def result(self) -> dict[str, Any]:
        records = self.probe.records() if self.probe is not None else []
        return {"runs": self.runs,
                "answers": sum(1 for r in records if "node" in r),
                "failed": sum(1 for r in records if "error" in r),
                "errors": errors_seen(records, "error")}
