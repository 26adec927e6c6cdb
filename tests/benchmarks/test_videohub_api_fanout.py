"""Benchmark: one route, 100 connected Videohub clients: when does the last one have it?

A node serves a simulated router (64 x 64, switch delay 0) over the Videohub API. The
clients run in a separate process (this file's ``swarm`` mode): raw sockets on 127.0.0.1
that read their status dump and then sit in one epoll loop, noting ``time.monotonic_ns()``
as the bytes of each ``VIDEO OUTPUT ROUTING`` block are read (they parse by hand, not with
the plugin's codec). Each round makes one route that changes a crosspoint, and takes the
same clock just before. Two kinds of rounds, alternating:

* **from a Videohub client**: a 101st client, in the benchmark's process, writes the route
  block; measured: its ``ACK`` (the route confirmed by the router's tally), and the last and
  median of the 100 swarm clients having the routing block;
* **from tieline** (``RoutingService.route``, as a WebSocket or CLI request ends up): the
  last and median client having the block, and the route confirmed.

Warm-up rounds come first and are not counted; rounds are spaced so they never overlap.

Run: ``python -m pytest tests/benchmarks/test_videohub_api_fanout.py -s`` or
``python tests/benchmarks/test_videohub_api_fanout.py [--clients N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

ROUTER = "fan"
SOURCES = DESTINATIONS = 64
TARGET_P99_MS = 100.0
HEADER = b"VIDEO OUTPUT ROUTING:\n"


# -- the swarm (its own process) ----------------------------------------------------------------


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def swarm(host: str, port: int, clients: int) -> None:
    """``clients`` raw Videohub clients in one epoll loop; report when all have a route."""
    conns: dict[int, tuple[socket.socket, bytearray]] = {}
    for _ in range(clients):
        sock = socket.create_connection((host, port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        while b"END PRELUDE:\n\n" not in buffer:
            data = sock.recv(65536)
            assert data, "the server closed the connection during the status dump"
            buffer += data
        del buffer[:buffer.index(b"END PRELUDE:\n\n") + 14]
        sock.setblocking(False)
        conns[sock.fileno()] = (sock, buffer)
    poller = select.epoll()
    for fd in conns:
        poller.register(fd, select.EPOLLIN)
    stdin = sys.stdin.fileno()
    poller.register(stdin, select.EPOLLIN)
    arrivals: dict[bytes, list[int]] = defaultdict(list)
    dropped = 0
    emit({"ready": clients})
    running = True
    while running:
        for fd, _ in poller.poll():
            if fd == stdin:
                if not os.read(stdin, 4096):  # the benchmark closed our stdin: stop
                    running = False
                continue
            sock, buffer = conns[fd]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            t = time.monotonic_ns()
            if not data:
                poller.unregister(fd)
                dropped += 1
                continue
            buffer += data
            while (end := buffer.find(b"\n\n")) >= 0:
                block = bytes(buffer[:end])
                del buffer[:end + 2]
                if block.startswith(HEADER):
                    key = block[len(HEADER):].split(b"\n", 1)[0]  # "<output> <input>"
                    times = arrivals[key]
                    times.append(t)
                    if len(times) == clients:
                        emit({"key": key.decode(), "t_ns": times})
                        del arrivals[key]
    emit({"done": True, "dropped": dropped, "incomplete": len(arrivals)})
    for sock, _ in conns.values():
        sock.close()


# -- the benchmark ------------------------------------------------------------------------------


def write_settings(folder: Path, clients: int) -> Path:
    """A simulator router and the Videohub API on 127.0.0.1; only the plugins needed."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "node": {"name": "bench"},
        "plugins": {"disabled": sorted(set(harness.other_plugins()) - {"videohub"})},
        "routers": [harness.router_block(ROUTER, 1, SOURCES, DESTINATIONS)],
        "apis": [{"type": "videohub", "listen": "127.0.0.1:0", "router": ROUTER,
                  "max_clients": clients + 1}],
    }
    (folder / "tieline.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return folder


class Requester:
    """The Videohub client that makes the routes, by hand, in the benchmark's process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Requester:
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await reader.readuntil(b"END PRELUDE:\n\n")
        return cls(reader, writer)

    async def route(self, destination: int, source: int) -> int:
        """Send the route; the time its reply arrived (monotonic ns)."""
        self.writer.write(f"VIDEO OUTPUT ROUTING:\n{destination} {source}\n\n".encode())
        while True:
            block = await self.reader.readuntil(b"\n\n")
            if block in (b"ACK\n\n", b"NAK\n\n"):
                t = time.monotonic_ns()
                assert block == b"ACK\n\n", f"route {destination} <- {source} refused"
                return t


async def run(clients: int = 100, rounds: int = 100, warmup: int = 5,
              gap_s: float = 0.02) -> dict[str, Any]:
    from tieline.model import Permission, Principal

    harness.print_machine()
    harness.raise_fd_limit(clients + 1024)
    principal = Principal("benchmark", Permission.ROUTE)
    samples: dict[str, list[int]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="tieline-bench-") as tmp:
        async with harness.running_node(write_settings(Path(tmp), clients)) as node:
            api = node.apis[0]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "swarm", api.host, str(api.port), str(clients),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                limit=64 * 1024 * 1024)
            swarm_proc = harness.ClientProcess(proc, "videohub swarm")
            try:
                t_connect = time.perf_counter()
                await swarm_proc.read(timeout=300)
                connect_s = time.perf_counter() - t_connect
                requester = await Requester.open(api.host, api.port)
                assert len(api.clients) == clients + 1, len(api.clients)
                current = [d % SOURCES for d in range(DESTINATIONS)]
                for r in range(2 * (warmup + rounds)):
                    by_client = r % 2 == 0
                    dest = (r // 2) % DESTINATIONS
                    source = current[dest] = (current[dest] + 1) % SOURCES
                    t0 = time.monotonic_ns()
                    if by_client:
                        t_done = await requester.route(dest, source)
                    else:
                        await node.routing.route(principal, ROUTER, dest, source)
                        t_done = time.monotonic_ns()
                    message = await swarm_proc.read(timeout=60)
                    assert message["key"] == f"{dest} {source}", message
                    arrivals = message["t_ns"]
                    assert len(arrivals) == clients
                    if r // 2 >= warmup:
                        kind = "client" if by_client else "tieline"
                        samples[f"{kind} last"].append(max(arrivals) - t0)
                        samples[f"{kind} median"].append(int(statistics.median(arrivals)) - t0)
                        samples[f"{kind} done"].append(t_done - t0)
                    await asyncio.sleep(gap_s)
                assert len(api.clients) == clients + 1, "clients were dropped"
                requester.writer.close()
            finally:
                ends = await swarm_proc.finish()
    assert ends and ends[-1]["dropped"] == 0, ends
    harness.print_table(
        f"{clients} connected raw Videohub clients, {rounds} routes of each kind after "
        f"{warmup} warm-up rounds each ({SOURCES} x {DESTINATIONS} simulator, switch delay 0)",
        harness.LATENCY_HEADERS, [
            harness.latency_row("Videohub client's route → its ACK", samples["client done"]),
            harness.latency_row("Videohub client's route → the LAST client has the block",
                                samples["client last"]),
            harness.latency_row("Videohub client's route → the median client has it",
                                samples["client median"]),
            harness.latency_row("tieline route → confirmed", samples["tieline done"]),
            harness.latency_row("tieline route → the LAST client has the block",
                                samples["tieline last"]),
            harness.latency_row("tieline route → the median client has it",
                                samples["tieline median"]),
        ])
    print(f"\n{clients} Videohub clients connected and read their status dump in "
          f"{connect_s:.2f} s")
    p99 = max(harness.summary(samples["client last"])["p99"],
              harness.summary(samples["tieline last"])["p99"])
    harness.print_table("Target", ["target", "measured", "verdict"], [[
        f"last client has the routing block, p99 < {TARGET_P99_MS:g} ms", f"{p99:.1f} ms",
        harness.verdict(p99, TARGET_P99_MS)]])
    return {key: harness.summary(values) for key, values in samples.items()}


def test_videohub_api_fanout() -> None:
    harness.run_isolated(__file__)


def main() -> None:
    if sys.argv[1:2] == ["swarm"]:
        host, port, clients = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        harness.raise_fd_limit(clients + 64)
        swarm(host, port, clients)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="connected Videohub clients")
    parser.add_argument("--rounds", type=int, default=100, help="measured routes of each kind")
    parser.add_argument("--warmup", type=int, default=5, help="routes of each kind before")
    args = parser.parse_args()
    asyncio.run(run(args.clients, args.rounds, args.warmup))


if __name__ == "__main__":
    main()
