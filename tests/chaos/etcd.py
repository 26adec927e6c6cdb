"""A real three-member etcd cluster for chaos runs of the ``etcd`` strategy.

The members run the installed ``etcd`` binary in the root namespace: peers talk on
``127.0.0.1``, and each member takes clients on ``127.0.0.1`` and on the root end of every
node's link (so that each node, in its namespace, reaches every member over its own link).
Ports are random, data directories are the run's own, the environment is scrubbed of
``ETCD_*`` variables, and ``--heartbeat-interval 50 --election-timeout 500`` as in
tests/etcdserver.py (a lease's TTL is granted as asked, and a new leader is elected in
about half a second). A killed member restarts on its data directory and rejoins.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .routers import free_port


def etcd_binary() -> str | None:
    import shutil

    found = shutil.which("etcd")
    if found:
        return found
    return "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data: Path
    log: Path
    process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class EtcdTrio:
    """Three members; :meth:`start`, :meth:`kill` and :meth:`restart` them one by one."""

    folder: Path
    client_hosts: list[str]  #: the root ends of the nodes' links
    members: dict[str, Member] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k in (1, 2, 3):
            name = f"m{k}"
            self.members[name] = Member(name, free_port(), free_port(),
                                        self.folder / name, self.folder / f"{name}.log")

    def endpoints(self, host: str) -> list[str]:
        """The client URLs as a node whose link ends at ``host`` reaches them."""
        return [f"http://{host}:{m.client_port}" for m in self.members.values()]

    def _args(self, m: Member) -> list[str]:
        binary = etcd_binary()
        assert binary is not None, "no etcd binary"
        cluster = ",".join(f"{x.name}=http://127.0.0.1:{x.peer_port}"
                           for x in self.members.values())
        clients = ",".join(f"http://{h}:{m.client_port}" for h in ["127.0.0.1",
                                                                     *self.client_hosts])
        return [binary, "--name", m.name, "--data-dir", str(m.data),
                "--listen-client-urls", clients,
                "--advertise-client-urls", f"http://127.0.0.1:{m.client_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"chaos-{self.folder.name}",
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]

    def _spawn(self, m: Member) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ETCD")}
        with open(m.log, "ab") as log:
            m.process = subprocess.Popen(self._args(m), env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)

    async def start(self) -> None:
        for m in self.members.values():
            self._spawn(m)
        await self.wait_healthy()

    def _healthy(self, m: Member) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{m.client_port}/health",
                                        timeout=0.5) as answer:
                return json.loads(answer.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until a running member says the cluster is healthy (it has a leader)."""
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while time.monotonic() < deadline:
            for m in self.members.values():
                if m.running and await loop.run_in_executor(None, self._healthy, m):
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"etcd not healthy after {timeout} s; see {self.folder}")

    async def kill(self, name: str) -> None:
        m = self.members[name]
        if m.running:
            assert m.process is not None
            os.kill(m.process.pid, signal.SIGKILL)
            await asyncio.get_running_loop().run_in_executor(None, m.process.wait)

    async def restart(self, name: str) -> None:
        m = self.members[name]
        if not m.running:
            self._spawn(m)

    def running(self) -> list[str]:
        return [n for n, m in self.members.items() if m.running]

    async def close(self) -> None:
        for name in self.members:
            await self.kill(name)
