"""Benchmark: the start-up of the ``tieline`` command, against ``python -c 'import click'``.

The target (issue 13): ``tieline --help`` and ``tieline status --help`` take at most twice
the wall time of ``python -c 'import click'``. Each command runs as a fresh process, as a
shell runs it, ``--runs`` times, the commands taking turns (so that a neighbour's load
falls on all of them alike); the figures are the median and the minimum wall time from
spawn to exit. ``tieline status`` against a port where nothing listens is measured too:
start-up plus loading the client (asyncio, websockets) plus one refused connection.

Then ``python -X importtime`` of ``tieline --help`` lists the imports that cost the most
(cumulative microseconds, one run: indicative only).

Which modules each command loads is a test, not a benchmark:
tests/unit/cli/test_imports.py.

Run: ``python -m pytest tests/benchmarks/test_cli_startup.py -s`` or
``python tests/benchmarks/test_cli_startup.py --runs 50``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PYTHON = sys.executable
TIELINE = str(Path(sys.executable).with_name("tieline"))
TARGET_RATIO = 2.0


def commands() -> dict[str, list[str]]:
    from tieline.kit.testing import free_port

    nobody = f"ws://127.0.0.1:{free_port()}"  # refused at once
    return {
        "python -c pass": [PYTHON, "-c", "pass"],
        "python -c 'import click'": [PYTHON, "-c", "import click"],
        "tieline --help": [TIELINE, "--help"],
        "tieline status --help": [TIELINE, "status", "--help"],
        "tieline status (no server listening)": [TIELINE, "status", "--server", nobody],
    }


def measure(runs: int) -> dict[str, list[float]]:
    """Wall seconds of each command, ``runs`` times, the commands taking turns."""
    cmds = commands()
    env = {k: v for k, v in os.environ.items() if k not in ("TIELINE_SERVER", "TIELINE_TOKEN")}
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for name, cmd in cmds.items():  # one warm-up each: the page cache, not the figures
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(runs):
        for name, cmd in cmds.items():
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            times[name].append(time.perf_counter() - start)
    return times


def importtime(top: int = 10) -> list[tuple[int, str]]:
    """The ``top`` imports of ``tieline --help`` by cumulative time (µs), one run."""
    done = subprocess.run([PYTHON, "-X", "importtime", TIELINE, "--help"],
                          capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:top]


def report(times: dict[str, list[float]], imports: list[tuple[int, str]]) -> str:
    click_median = statistics.median(times["python -c 'import click'"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load:.2f}, "
        f"{len(next(iter(times.values())))} runs each",
        "",
        "| command | median (ms) | min (ms) | median / import click |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| `{name}` | {median * 1000:.1f} | {min(values) * 1000:.1f} | "
                     f"{median / click_median:.2f} |")
    lines += ["", f"target: `tieline --help` and `tieline status --help` ≤ {TARGET_RATIO:g} × "
                  "`import click`"]
    for name in ("tieline --help", "tieline status --help"):
        ratio = statistics.median(times[name]) / click_median
        lines.append(f"  {name}: {ratio:.2f} × ({'met' if ratio <= TARGET_RATIO else 'NOT met'})")
    lines += ["", "python -X importtime tieline --help, top imports (cumulative µs):"]
    lines += [f"  {us:>7}  {name}" for us, name in imports]
    return "\n".join(lines)


def test_cli_startup():
    print()
    print(report(measure(20), importtime()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(report(measure(args.runs), importtime()))
