"""What every benchmark shares: the machine, settings folders, a running node, client
processes, statistics and result tables.

The benchmarks are not part of the default test run (``testpaths`` in pyproject.toml names
only ``tests/unit`` and ``tests/integration``). Each runs as
``python -m pytest tests/benchmarks/<file> -s`` (which runs the script in a fresh
interpreter, see :func:`run_isolated`) or as ``python tests/benchmarks/<file>``;
docs/performance.md describes the method and the results.

Clients run in their own process (``clients.py``) so that they never share the server's
event loop: what is measured is tieline, not the clients' Python. Latencies that cross the
process boundary use ``time.monotonic_ns()``, which on Linux is ``CLOCK_MONOTONIC`` in
every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import websockets

import tieline
from tieline.kit import testing
from tieline.node import Node

HERE = Path(__file__).resolve().parent
CLIENTS = HERE / "clients.py"


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True, timeout=10, check=True).stdout.strip()
    return {
        "CPU": model,
        "CPUs (os.cpu_count / usable)": f"{os.cpu_count()} / {affinity or os.cpu_count()}",
        "memory": memory,
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "websockets": websockets.__version__,
        "tieline": f"{tieline.__version__} (commit {commit})",
        "load average at start (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def print_machine() -> None:
    print_table("Machine", ["", ""], list(machine().items()))


# -- settings and a running node -------------------------------------------------------------


def router_block(router_id: str, levels: int, sources: int, destinations: int,
                 **options: Any) -> dict[str, Any]:
    """A simulator router block (in-process simulator, switch delay 0 unless given)."""
    names = ["video"] + [f"audio{i}" for i in range(1, levels)]
    return {"id": router_id, "driver": "simulator", "levels": names, "sources": sources,
            "destinations": destinations, "switch_delay_ms": 0, **options}


#: the plugins a benchmark node loads; any other installed plugin is disabled so that the
#: figures do not depend on what else is installed (an observer plugin adds a subscriber).
PLUGINS = ("simulator", "websocket_api")


def other_plugins() -> list[str]:
    """Entry-point names of installed tieline plugins other than :data:`PLUGINS`."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="tieline")}
    return sorted(names - set(PLUGINS))


def write_settings(folder: Path, routers: Sequence[dict[str, Any]],
                   **api_options: Any) -> Path:
    """A settings folder: the routers, the WebSocket API on 127.0.0.1:0, loopback clients
    allowed to route without a token (no users file: token checks are not measured), and
    only the bundled simulator and WebSocket API plugins."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "node": {"name": "bench"},
        "plugins": {"disabled": other_plugins()},
        "routers": list(routers),
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0", **api_options}],
        "auth": {"loopback_anonymous_level": 2},
    }
    (folder / "tieline.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return folder


def running_node(folder: Path, *, timeout: float = 120.0,
                 prepare: Callable[[Node], None] | None = None
                 ) -> contextlib.AbstractAsyncContextManager[Node]:
    """Build and run a node from ``folder``, wait until every router is online; stop on exit.

    :param prepare: called with the node after it is built and before it runs.
    """
    return testing.running_node(folder, timeout=timeout, prepare=prepare)


def api_url(node: Node) -> str:
    return node.apis[0].describe()


def run_isolated(script: str | Path) -> None:
    """Run a benchmark script in a fresh interpreter (what its pytest test does).

    Each benchmark then starts from the same state whichever way it is run: RSS growth and
    garbage collection pauses do not depend on what ran before in the same process.
    """
    subprocess.run([sys.executable, str(script)], check=True)


def raise_fd_limit(needed: int) -> int:
    """Raise the soft limit of open files to ``needed`` (up to the hard limit); the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_bytes() -> int:
    """The process's resident set size now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


# -- client processes -----------------------------------------------------------------------


class ClientProcess:
    """``clients.py MODE ...`` in a subprocess, speaking JSON lines on stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, mode: str) -> None:
        self.proc = proc
        self.mode = mode

    @classmethod
    async def start(cls, mode: str, *args: str | int) -> ClientProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CLIENTS), mode, *map(str, args),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return cls(proc, mode)

    async def read(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(f"client process '{self.mode}' ended (exit code {code}) "
                               "without answering; see its error output above")
        return json.loads(line)

    def write(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")

    async def finish(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Close its stdin (the signal to stop), wait for it to exit; its last messages."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(timeout):
                rest = await self.proc.stdout.read()
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise RuntimeError(f"client process '{self.mode}' did not stop") from None
        if code != 0:
            raise RuntimeError(f"client process '{self.mode}' failed with exit code {code}")
        return [json.loads(line) for line in rest.splitlines() if line.strip()]


# -- statistics and tables ------------------------------------------------------------------


def percentile(ordered: Sequence[int | float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(samples_ns: Sequence[int]) -> dict[str, float]:
    """n, p50, p90, p99, max and mean of nanosecond samples, in milliseconds."""
    ordered = sorted(samples_ns)
    return {
        "n": len(ordered),
        "p50": percentile(ordered, 50) / 1e6,
        "p90": percentile(ordered, 90) / 1e6,
        "p99": percentile(ordered, 99) / 1e6,
        "max": ordered[-1] / 1e6,
        "mean": sum(ordered) / len(ordered) / 1e6,
    }


LATENCY_HEADERS = ["measure", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"]


def latency_row(name: str, samples_ns: Sequence[int]) -> list[str]:
    s = summary(samples_ns)
    return [name, str(s["n"])] + [f"{s[k]:.3f}" for k in ("p50", "p90", "p99", "max", "mean")]


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table (pasted as is into docs/performance.md)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    print(f"\n### {title}\n")
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


def verdict(value: float, target: float) -> str:
    return "met" if value < target else "MISSED"
