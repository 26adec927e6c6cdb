"""Benchmark 9: a soak of the demo node, its resident memory sampled (issue 12).

``tieline run`` runs in its own process on the demo's settings (core/ops/demo.py: a simulator
of 32x32 with two levels, the WebSocket API, full rights on loopback), written to a
temporary folder with two changes: the API listens on a free port instead of 8181, and
installed plugins other than ``simulator`` and ``websocket_api`` are disabled (as in every
benchmark). A client process (``clients.py soak``) makes the routes through the API: four
connections with one route in flight per destination (32 at once), each route on every
level and changing the crosspoint, and a fifth connection subscribed to the events, as a
panel is. After every 1 % of the routes the benchmark reads the node's ``VmRSS`` from
``/proc/PID/status``.

A second node, the demo with a 256x256 router of two levels, takes two salvos of 512
crosspoints in turn (each changes every crosspoint), one at a time: the issue's salvo
figure (18 KB more per salvo; 53 -> 200 MB over 8,000).

Warm-up is the first 5 % of each run (at least 5,000 routes or 1,000 salvos): buffers,
caches and the emulator's command log (the latest 100 commands) fill then. The figures
are the RSS after warm-up (the baseline) and the drift after it: the highest sample less
the baseline, and the spread (highest less lowest). The target is a spread under 5 MB;
the benchmark asserts it.

Run: ``python -m pytest tests/benchmarks/test_soak.py -s`` or ``python
tests/benchmarks/test_soak.py [--routes N] [--salvos N] [--unbounded-command-log]``.
``TIELINE_SOAK_ROUTES`` and ``TIELINE_SOAK_SALVOS`` set the counts for the pytest run
(1,000,000 and 8,000 by default; ``TIELINE_SOAK_ROUTES=50000`` makes a quick run).
``--unbounded-command-log`` runs the node with the emulator's command log unbounded, as
it was before issue 12, to show what the benchmark catches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from tieline.ops.demo import ensure_demo  # noqa: E402

ROUTER = "studio"
CLIENTS = 4
TARGET_SPREAD_MB = 5.0
SALVO_SIZE = 256  #: destinations of the salvo node's router; two levels: 512 crosspoints
#: ``tieline run`` as it was before issue 12: the emulators kept every command received.
UNBOUNDED = ("from tieline.kit.emulation import DeviceEmulator; "
             "DeviceEmulator.command_log_size = None; "
             "from tieline.cli import main; main()")


def demo_settings(folder: Path, *, salvo_node: bool) -> Path:
    """The demo's settings folder, on a free port, with the benchmark's plugins only."""
    ensure_demo(folder)
    settings = json.loads((folder / "tieline.json").read_text(encoding="utf-8"))
    settings["apis"][0]["listen"] = "127.0.0.1:0"
    settings["plugins"] = {"disabled": harness.other_plugins()}
    if salvo_node:
        router = settings["routers"][0]
        router["sources"] = router["destinations"] = SALVO_SIZE
        (folder / "labels.json").write_text('{"routers": {}}', encoding="utf-8")
        salvos = [{"name": f"soak-{n}", "router": ROUTER, "crosspoints": [
            {"destination": d, "source": (d + n) % SALVO_SIZE + 1}
            for d in range(1, SALVO_SIZE + 1)]} for n in (1, 2)]
        (folder / "salvos.json").write_text(json.dumps({"salvos": salvos}), encoding="utf-8")
    (folder / "tieline.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return folder


class NodeProcess:
    """``tieline run --settings DIR`` in its own process."""

    def __init__(self, folder: Path, *, unbounded: bool) -> None:
        command = [sys.executable, "-c", UNBOUNDED] if unbounded else \
            [sys.executable, "-m", "tieline"]
        self.log = folder / "node.log"
        self._stderr = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*command, "run", "--settings", str(folder), "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.url = ""

    def wait_serving(self) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if " serving " in line:
                self.url = line.split(" serving ", 1)[1].split()[0]
                return self.url
        raise RuntimeError(f"tieline run stopped: {self.log.read_text(errors='replace')}")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


@dataclass
class Run:
    """One soak: its samples ``(operations done, seconds, RSS bytes)``."""

    what: str
    total: int
    warmup: int
    started_rss: int = 0
    samples: list[tuple[int, float, int]] = field(default_factory=list)
    errors: int = 0
    events: int = 0

    def after_warmup(self) -> list[tuple[int, float, int]]:
        return [s for s in self.samples if s[0] >= self.warmup]

    @property
    def baseline(self) -> int:
        return self.after_warmup()[0][2]

    def spread(self) -> int:
        rss = [s[2] for s in self.after_warmup()]
        return max(rss) - min(rss)

    def drift(self) -> int:
        return max(s[2] for s in self.after_warmup()) - self.baseline

    def rate(self) -> float:
        (n0, t0, _), (n1, t1, _) = self.after_warmup()[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0)


async def soak(what: str, total: int, warmup: int, *, unbounded: bool) -> Run:
    """Start a node, drive ``total`` routes (or salvos) through it, sample its RSS."""
    salvos = what == "salvos"
    run = Run(what, total, warmup)
    with tempfile.TemporaryDirectory(prefix="tieline-soak-") as tmp:
        folder = demo_settings(Path(tmp) / "demo", salvo_node=salvos)
        node = NodeProcess(folder, unbounded=unbounded)
        client = None
        try:
            url = node.wait_serving()
            run.started_rss = node.rss_bytes()
            size = SALVO_SIZE if salvos else 32
            client = await harness.ClientProcess.start("soak", url, ROUTER, CLIENTS, size, size)
            await client.read()
            chunk = max(1, total // 100)
            done, began = 0, time.monotonic()
            run.samples.append((0, 0.0, run.started_rss))
            while done < total:
                n = min(chunk, total - done, warmup - done if done < warmup else total)
                client.write({"salvos": n, "names": ["soak-1", "soak-2"]} if salvos
                             else {"routes": n})
                answer = await client.read(timeout=600)
                done += answer["done"]
                run.errors += answer["errors"]
                run.events = answer["events"]
                run.samples.append((done, time.monotonic() - began, node.rss_bytes()))
                if len(run.samples) % 10 == 1:
                    n_, t_, rss = run.samples[-1]
                    print(f"  {what}: {n_:,} in {t_:.0f} s, RSS {rss / 2**20:.1f} MiB",
                          flush=True)
            await client.finish()
            client = None
        finally:
            if client is not None and client.proc.returncode is None:
                client.proc.kill()
                await client.proc.wait()
            node.stop()
    return run


def mib(value: float, digits: int = 1) -> str:
    return f"{value / 2**20:.{digits}f}"


def report(runs: list[Run]) -> None:
    harness.print_table(
        "Soak: resident memory of the node (VmRSS)",
        ["run", "operations", "per s (after warm-up)", "errors", "RSS at start MiB",
         "after warm-up MiB", "min / max after MiB", "drift MiB", "spread MiB", "target"],
        [[f"{r.total:,} {r.what}", f"{r.total:,} ({r.warmup:,} warm-up)", f"{r.rate():,.0f}",
          r.errors, mib(r.started_rss), mib(r.baseline),
          f"{mib(min(s[2] for s in r.after_warmup()))} / "
          f"{mib(max(s[2] for s in r.after_warmup()))}", mib(r.drift(), 2),
          mib(r.spread(), 2),
          f"spread < {TARGET_SPREAD_MB:g} MiB: "
          f"{harness.verdict(r.spread() / 2**20, TARGET_SPREAD_MB)}"] for r in runs])
    for r in runs:
        tenth = max(1, (len(r.samples) - 1) // 10)
        shown = r.samples[::tenth] + ([r.samples[-1]] if (len(r.samples) - 1) % tenth else [])
        harness.print_table(
            f"RSS samples, {r.what} (about every tenth)", [r.what, "seconds", "RSS MiB"],
            [[f"{n:,}", f"{t:.0f}", mib(rss, 2)] for n, t, rss in shown])


async def main_async(routes: int, salvos: int, unbounded: bool) -> list[Run]:
    harness.print_machine()
    runs = []
    if routes:
        runs.append(await soak("routes", routes, max(routes // 20, min(routes // 2, 5000)),
                               unbounded=unbounded))
    if salvos:
        runs.append(await soak("salvos", salvos, max(salvos // 20, min(salvos // 2, 1000)),
                               unbounded=unbounded))
    report(runs)
    return runs


def test_soak() -> None:
    harness.run_isolated(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int,
                        default=int(os.environ.get("TIELINE_SOAK_ROUTES", 1_000_000)))
    parser.add_argument("--salvos", type=int,
                        default=int(os.environ.get("TIELINE_SOAK_SALVOS", 8_000)))
    parser.add_argument("--unbounded-command-log", action="store_true",
                        help="the node as before issue 12 (expect the target to be missed)")
    args = parser.parse_args()
    runs = asyncio.run(main_async(args.routes, args.salvos, args.unbounded_command_log))
    for r in runs:
        assert r.errors == 0, f"{r.errors} {r.what} refused or failed"
        assert r.spread() < TARGET_SPREAD_MB * 2**20, (
            f"{r.what}: RSS moved {mib(r.spread())} MiB after warm-up "
            f"(target under {TARGET_SPREAD_MB:g} MiB)")


if __name__ == "__main__":
    main()
