"""The routers of a chaos run: device emulators (``tieline emulate``) behind proxies.

Each router is one emulator process on 127.0.0.1 (root namespace) with a command log, and,
per node, a :class:`~tests.chaos.proxy.FaultProxy` listening on the root end of that node's
link and connecting to the emulator *from an address of its own* (``127.0.1.<i+1>``): the
emulator's command log names each connection by its address, so each command is traced to
the node that sent it. The proxies are also where router connections are dropped or cut.

A **restart with changed routing** starts a fresh emulator first (its crosspoints are the
emulator's defaults, not what the old one had), moves the proxies to it, resets their
connections, and only then stops the old one: the nodes lose their connections, reconnect,
and must read the new state (never push what they remember).

The final crosspoints are read straight from the emulator, with the device protocol spoken
by hand here (the Videohub's text blocks; SW-P-08's tally dump), not through tieline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .history import RouterInfo, RouterReset
from .proxy import FaultProxy

TIELINE = str(Path(sys.executable).with_name("tieline"))
#: runs ``tieline`` with its event loop's lateness recorded (the emulators' part of a
#: command's transit: see lagged.py)
LAGGED = Path(__file__).with_name("lagged.py")


async def wait_listening(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
            writer.close()
            return
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {host}:{port} after {timeout} s")
            await asyncio.sleep(0.05)


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Emulator:
    process: subprocess.Popen
    port: int
    command_log: Path


@dataclass
class Router:
    """One router: its emulators over time, and a proxy per node in front of them."""

    id: str
    info: RouterInfo
    folder: Path
    node_hosts: dict[str, str]  #: node -> the root end of its link (proxy listens there)
    node_index: dict[str, int]
    proxy_port: int = 0
    emulators: list[Emulator] = field(default_factory=list)
    proxies: dict[str, FaultProxy] = field(default_factory=dict)
    resets: list[RouterReset] = field(default_factory=list)

    @property
    def current(self) -> Emulator:
        return self.emulators[-1]

    @staticmethod
    def source_address(index: int) -> str:
        return f"127.0.1.{index + 1}"

    def node_of_peer(self, peer: str) -> str | None:
        host = peer.rsplit(":", 1)[0]
        return next((n for n, i in self.node_index.items() if self.source_address(i) == host),
                    None)

    async def _spawn(self) -> Emulator:
        n = len(self.emulators)
        port = free_port()
        log = self.folder / f"{self.id}-{n}.commands.jsonl"
        out = open(self.folder / f"{self.id}-{n}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, str(LAGGED), str(self.lag_file(n)), "emulate", self.info.driver, "--listen", f"127.0.0.1:{port}",
             "--inputs", str(self.info.sources), "--outputs", str(self.info.destinations),
             "--levels", str(len(self.info.levels)), "--command-log", str(log),
             "--log-level", "WARNING"], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        await wait_listening("127.0.0.1", port)
        return Emulator(process, port, log)

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.emulators.append(await self._spawn())
        self.resets.append(RouterReset(self.id, time.time()))
        self.proxy_port = self.proxy_port or free_port()
        for node, host in self.node_hosts.items():
            proxy = FaultProxy((host, self.proxy_port), ("127.0.0.1", self.current.port),
                               bind=self.source_address(self.node_index[node]),
                               name=f"router {self.id} for {node}")
            self.proxies[node] = await proxy.start()

    async def restart(self) -> float:
        """A new emulator (default crosspoints) in place of the old; returns when it is."""
        old = self.current
        self.emulators.append(await self._spawn())
        t = time.time()
        for proxy in self.proxies.values():
            proxy.target = ("127.0.0.1", self.current.port)
            proxy.drop()
        self.resets.append(RouterReset(self.id, t))
        _stop(old.process)
        return t

    async def close(self) -> None:
        for proxy in self.proxies.values():
            await proxy.close()
        for emulator in self.emulators:
            _stop(emulator.process)

    def command_logs(self) -> list[Path]:
        return [e.command_log for e in self.emulators]

    def lag_file(self, n: int) -> Path:
        """Where the ``n``-th emulator records its event loop's lateness."""
        return self.folder / f"{self.id}-{n}.lag"

    def lag(self) -> list[tuple[float, float]]:
        """Every emulator's recorded lateness, ``(time, seconds)``, sorted."""
        samples = []
        for n in range(len(self.emulators)):
            path = self.lag_file(n)
            if path.exists():
                for line in path.read_text().splitlines():
                    with contextlib.suppress(ValueError):
                        t, late = line.split()
                        samples.append((float(t), float(late)))
        return sorted(samples)

    async def crosspoints(self) -> dict[str, int]:
        """The emulator's crosspoints now: ``"level/destination"`` -> source (1-based)."""
        if self.info.driver == "videohub":
            return await read_videohub(("127.0.0.1", self.current.port), self.info)
        if self.info.driver == "swp08":
            return await read_swp08(("127.0.0.1", self.current.port), self.info)
        raise ValueError(self.info.driver)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)


# -- reading a device's state by hand ----------------------------------------------------

async def read_videohub(address: tuple[str, int], info: RouterInfo) -> dict[str, int]:
    """The ``VIDEO OUTPUT ROUTING:`` block of the status dump a Videohub sends on connect."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 5)
    try:
        routes: dict[str, int] = {}
        block: str | None = None
        async with asyncio.timeout(10):
            while True:
                line = (await reader.readline()).decode()
                if not line:
                    raise AssertionError("the Videohub closed before its status dump ended")
                line = line.rstrip("\n")
                if line.endswith(":") and block is None:
                    block = line[:-1]
                    if block == "END PRELUDE":
                        return routes
                elif line == "":
                    block = None
                elif block == "VIDEO OUTPUT ROUTING":
                    dest, source = line.split()
                    routes[f"{info.levels[0]}/{int(dest) + 1}"] = int(source) + 1
    finally:
        writer.close()


def swp08_frame(data: bytes) -> bytes:
    """SW-P-08 framing (shared/protocols/swp08.md §2, §10): BTC, CHK, DLE doubling."""
    btc = len(data)
    chk = (-(sum(data) + btc)) & 0xFF
    body = bytes(data) + bytes([btc, chk])
    return b"\x10\x02" + body.replace(b"\x10", b"\x10\x10") + b"\x10\x03"


def swp08_messages(buffer: bytearray) -> list[bytes]:
    """Take every whole frame's DATA out of ``buffer`` (ACKs and garbage are skipped)."""
    out = []
    while True:
        start = buffer.find(b"\x10\x02")
        if start < 0:
            del buffer[:max(0, len(buffer) - 1)]
            return out
        i, data = start + 2, bytearray()
        while i + 1 < len(buffer):
            if buffer[i] == 0x10:
                if buffer[i + 1] == 0x10:
                    data.append(0x10)
                    i += 2
                    continue
                if buffer[i + 1] == 0x03:
                    break
                i += 2  # an ACK/NAK inside a frame
                continue
            data.append(buffer[i])
            i += 1
        else:
            del buffer[:start]
            return out
        del buffer[:i + 2]
        if len(data) >= 2 and data[-2] == len(data) - 2 and sum(data) & 0xFF == 0:
            out.append(bytes(data[:-2]))


async def read_swp08(address: tuple[str, int], info: RouterInfo) -> dict[str, int]:
    """A CROSSPOINT TALLY DUMP REQUEST (21) per level, matrix 0; answers 22/23 (§5)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 5)
    routes: dict[str, int] = {}
    buffer = bytearray()
    try:
        async with asyncio.timeout(10):
            for level, name in enumerate(info.levels):
                writer.write(swp08_frame(bytes([21, level])))
                await writer.drain()
                while sum(1 for k in routes if k.startswith(f"{name}/")) < info.destinations:
                    data = await reader.read(4096)
                    if not data:
                        raise AssertionError("the SW-P-08 router closed during the dump")
                    buffer += data
                    for message in swp08_messages(buffer):
                        writer.write(b"\x10\x06")  # DLE ACK every frame
                        command = message[0]
                        if command == 23:  # word dump: ML, N, FIRST_HI, FIRST_LO, pairs
                            lv, count = message[1] & 0x0F, message[2]
                            first = message[3] << 8 | message[4]
                            for k in range(count):
                                source = message[5 + 2 * k] << 8 | message[6 + 2 * k]
                                routes[f"{info.levels[lv]}/{first + k + 1}"] = source + 1
                        elif command == 22:  # byte dump: ML, N, FIRST, sources
                            lv, count, first = message[1] & 0x0F, message[2], message[3]
                            for k in range(count):
                                routes[f"{info.levels[lv]}/{first + k + 1}"] = \
                                    message[4 + k] + 1
        return routes
    finally:
        writer.close()


async def panel_route(address: tuple[str, int], destination: int, source: int) -> None:
    """Route on a Videohub as its front panel or another client would (1-based)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 5)
    try:
        async with asyncio.timeout(5):
            while (await reader.readline()).decode().rstrip("\n") != "END PRELUDE:":
                pass
            writer.write(f"VIDEO OUTPUT ROUTING:\n{destination - 1} {source - 1}\n\n".encode())
            await writer.drain()
            while (line := (await reader.readline()).decode().strip()) not in ("ACK", "NAK"):
                if not line and reader.at_eof():
                    break
    finally:
        writer.close()
