"""A real cluster for failover tests: a device emulator process and tieline node processes.

Everything runs as separate processes on 127.0.0.1 (kill -9 and SIGSTOP are real); the
emulator appends every command it receives to a file (``tieline emulate --command-log``),
which is how the tests see what each node sent to the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tieline.auth import hash_token
from tieline.cluster.peerlink import generate_cluster_key

TIELINE = str(Path(sys.executable).with_name("tieline"))
ADMIN_TOKEN = "admin-token"
OPERATOR_TOKEN = "operator-token"

#: fast timings for tests (the defaults are 250 / 1500 / 2500 ms)
FAST = {"heartbeat_ms": 50, "renew_deadline_ms": 300, "lease_ms": 600}


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different TCP ports that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]


def terminate(popen: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout``; reaped either way."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout)


@dataclass
class Proc:
    """A child process whose output goes to a file (read it when a test fails)."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.popen = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT,
                                      env={**os.environ, **self.env})
        out.close()

    def signal(self, sig: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def stop(self) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            terminate(self.popen)
        return self.popen.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Cluster:
    """An emulator and nodes 'a' (main) and 'b' (backup) by default."""

    #: the ``failover`` keys every node gets unless the test gives others
    failover_defaults: dict[str, Any] = {**FAST, "hold_down_s": 1}

    def __init__(self, root: Path, *, nodes: dict[str, str] | None = None,
                 failover: dict[str, Any] | None = None, destinations: int = 16,
                 router: dict[str, Any] | None = None, max_controllers: int | None = None,
                 ) -> None:
        self.root = root
        #: more keys for the router block of every node (``{"standby_link": "cold"}``)
        self.router_options = router or {}
        #: the emulator's --max-controllers
        self.max_controllers = max_controllers
        self.roles = nodes or {"a": "main", "b": "backup"}
        self.failover = {**self.failover_defaults, **(failover or {})}
        self.destinations = destinations
        self.device_host = "127.0.0.1"
        # distinct ports: each taken while the others are still held (a port freed a
        # moment ago can be handed out again)
        ports = iter(free_ports(1 + 2 * len(self.roles)))
        self.device_port = next(ports)
        self.command_log = root / "commands.jsonl"
        self.peer_ports = {n: next(ports) for n in self.roles}
        self.api_ports = {n: next(ports) for n in self.roles}
        self.procs: dict[str, Proc] = {}
        key_folder = root / "key"
        key_folder.mkdir(parents=True, exist_ok=True)
        self.key = generate_cluster_key(key_folder)

    def url(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.api_ports[name]}"

    @property
    def urls(self) -> list[str]:
        return [self.url(n) for n in self.roles]

    def folder(self, name: str) -> Path:
        return self.root / name

    def write_settings(self, name: str, *, key: Path | None = None) -> Path:
        folder = self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        key_source = key or self.key
        (folder / "cluster.key").write_bytes(key_source.read_bytes())
        os.chmod(folder / "cluster.key", 0o600)
        (folder / "tieline.json").write_text(json.dumps({
            "node": {"name": name, "role": self.roles[name]},
            "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                         "sources": 16, "destinations": self.destinations,
                         "confirm_timeout_ms": 2000, "label_store": "settings",
                         "transport": {"type": "tcp", "host": self.device_host,
                                       "port": self.device_port}, **self.router_options}],
            "apis": [{"type": "websocket", "listen": self.api_listen(name),
                      "heartbeat_timeout_ms": 600}],
            "auth": {"users_file": "users.json"},
            "failover": self.failover_block(name),
        }, indent=2))
        if not (folder / "users.json").exists():
            (folder / "users.json").write_text(json.dumps({"users": [
                {"name": "admin", "level": 3, "token_sha256": hash_token(ADMIN_TOKEN)},
                {"name": "operator", "level": 2, "token_sha256": hash_token(OPERATOR_TOKEN)},
            ]}))
        return folder

    def api_listen(self, name: str) -> str:
        """Where node ``name``'s WebSocket API listens."""
        return f"127.0.0.1:{self.api_ports[name]}"

    def failover_block(self, name: str) -> dict[str, Any]:
        """Node ``name``'s ``failover`` settings (the lease strategy over the peer link)."""
        peers = [f"127.0.0.1:{p}" for n, p in self.peer_ports.items() if n != name]
        return {"strategy": "lease", "listen": f"127.0.0.1:{self.peer_ports[name]}",
                "peers": peers, "key": "cluster.key", **self.failover}

    # -- processes -----------------------------------------------------------------------
    def device_proc(self, *, command_log: bool = True) -> Proc:
        """The emulator (16 inputs), logging every command it receives unless told not to."""
        log = ["--command-log", str(self.command_log)] if command_log else []
        if self.max_controllers is not None:
            log += ["--max-controllers", str(self.max_controllers)]
        return Proc("device", [TIELINE, "emulate", "simulator", "--listen",
                               f"{self.device_host}:{self.device_port}", "--inputs", "16",
                               "--outputs", str(self.destinations), *log],
                    self.root / "device.log")

    def start_device(self, *, command_log: bool = True) -> None:
        proc = self.device_proc(command_log=command_log)
        proc.start()
        self.procs["device"] = proc
        wait_port(self.device_port, host=self.device_host)

    def node_args(self, name: str, folder: Path) -> list[str]:
        """The command line that runs node ``name`` from its settings ``folder``."""
        return [TIELINE, "run", "--settings", str(folder), "--log-level", "INFO"]

    def api_address(self, name: str) -> tuple[str, int]:
        return "127.0.0.1", self.api_ports[name]

    def node_proc(self, name: str) -> Proc:
        """Node ``name`` (its settings written first when it has none), not started."""
        folder = self.folder(name) if (self.folder(name) / "tieline.json").exists() \
            else self.write_settings(name)
        return Proc(name, self.node_args(name, folder), self.root / f"{name}.log")

    def start_node(self, name: str) -> Proc:
        proc = self.node_proc(name)
        proc.start()
        self.procs[name] = proc
        host, port = self.api_address(name)
        wait_port(port, host=host)
        return proc

    async def start_main_and_backup(self) -> None:
        """Start node a (the main) and wait until it is active, then node b (the backup)
        and wait until it is idle, following a. The device must be running."""
        self.start_node("a")
        await wait_for(lambda: status_is(self.url("a"), "Main is active"), 20, "a active")
        self.start_node("b")
        await wait_for(lambda: status_is(self.url("b"), "Backup is idle", self.url("a")), 20,
                       "b idle, following a")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {n}\n{p.output()[-6000:]}" for n, p in self.procs.items())

    # -- the device ----------------------------------------------------------------------
    async def open_device_connection(self) -> tuple[asyncio.StreamReader,
                                                    asyncio.StreamWriter]:
        """A connection to the emulator from the test process."""
        return await asyncio.open_connection(self.device_host, self.device_port)

    async def device_crosspoints(self) -> dict[int, int]:
        """The emulator's level-0 crosspoints now (0-based destination -> source), read with
        the simulator protocol by hand."""
        reader, writer = await self.open_device_connection()
        writer.write(b"HELLO 1\nDUMP\n")
        await writer.drain()
        state: dict[int, int] = {}
        async with asyncio.timeout(5):
            while (raw := await reader.readline()) and (line := raw.decode().strip()) != "END":
                if line.startswith("XP "):
                    numbers = [int(x) for x in line.split()[1:]]
                    for i in range(0, len(numbers), 3):
                        level, dest, source = numbers[i:i + 3]
                        if level == 0:
                            state[dest] = source
        writer.close()
        if not raw:
            raise AssertionError("the emulator closed the connection before its whole state "
                                 "was read (--max-controllers?)")
        return state

    def commands(self) -> list[dict[str, Any]]:
        if not self.command_log.exists():
            return []
        return [json.loads(line) for line in self.command_log.read_text().splitlines() if line]

    def routes_sent(self, since: float = 0.0) -> list[tuple[float, str, list[tuple[int, int, int]]]]:
        """(time, peer, [(level, dest, src) …]) of every ROUTE command received."""
        out = []
        for entry in self.commands():
            command = entry["command"]
            if entry["t"] >= since and command.startswith("Route("):
                out.append((entry["t"], entry["peer"], _crosspoints(command)))
        return out


def _crosspoints(text: str) -> list[tuple[int, int, int]]:
    import re

    return [(int(a), int(b), int(c)) for a, b, c in re.findall(
        r"Crosspoint\(level=(\d+), destination=(\d+), source=(\d+)\)", text)]


def wait_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {host}:{port} after {timeout} s")


async def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def status_of(url: str, token: str = ADMIN_TOKEN, *,
                    sock: Any = None) -> dict[str, Any] | None:
    """One node's own status over a plain WebSocket (no client failover), or None.

    :param sock: an already connected socket to use (one made in another namespace).
    """
    from websockets.asyncio.client import connect

    try:
        async with asyncio.timeout(2):
            async with connect(url, sock=sock, proxy=None, compression=None) as ws:
                await ws.recv()  # the server's hello
                await ws.send(json.dumps({"type": "hello", "id": 1, "protocol": 1,
                                          "token": token}))
                await ws.send(json.dumps({"type": "status", "id": 2}))
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("type") == "response" and message.get("id") == 2:
                        return message.get("result") if message.get("ok") else None
    except (OSError, TimeoutError, ValueError, Exception):  # noqa: BLE001 - any failure: None
        return None


async def status_is(url: str, text: str, active: str | None = None) -> bool:
    """Whether the node at ``url`` has the status ``text`` (and names ``active``, if given)."""
    status = await status_of(url) or {}
    return status.get("status") == text and (active is None or status.get("active") == active)
