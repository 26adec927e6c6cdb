"""Benchmark 2: a 4096x4096 router with 16 levels.

A node runs one in-process simulator of that size (every crosspoint set, every port
labelled, as the simulator starts). Measured:

* memory: the RSS of a whole ``tieline run`` process serving that router, once it is
  online (issue 13's target: 50 MB); then, in this process, the RSS growth from before
  the node starts to the router online (the node, the simulator's own copy of the state,
  buffers), and RouterState alone under tracemalloc (filled by the same driver session and
  RoutingService path a sync takes);
* the full resync: the DeviceLink reading the whole state. The first sync (every crosspoint
  unknown) and live resyncs after the simulator drops the link (state unchanged) are timed
  from the link opening the connection to DeviceOnline; the CPU of each step is then timed
  alone on the captured dump: the simulator writing it, the driver session parsing it, the
  RoutingService applying it to a fresh RouterState and to a full one;
* the snapshot: ``messages.snapshot`` and ``json.dumps`` of the response, its size, and a
  raw WebSocket client in another process asking for it (request to whole response
  received, then parse).

Run: ``python -m pytest tests/benchmarks/test_large_router.py -s`` or
``python tests/benchmarks/test_large_router.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from tieline.devices import DeviceLink, DeviceReport  # noqa: E402
from tieline.events import DeviceOnline, EventBus  # noqa: E402
from tieline.model import RouterState  # noqa: E402
from tieline.node import Node  # noqa: E402
from tieline.plugins.websocket_api import messages  # noqa: E402
from tieline.routing import RouterRuntime, RoutingService  # noqa: E402

ROUTER = "big"
LEVELS, SOURCES, DESTINATIONS = 16, 4096, 4096
TARGET_MB = 150.0
#: the whole ``tieline run`` process serving the router, online (issue 13)
TARGET_PROCESS_MB = 50.0
MB = 1_000_000  # the target is in MB


async def whole_process_rss() -> int:
    """RSS of ``tieline run`` serving the router alone, once the router is online (the
    process as an operator runs it: plugins loaded, API listening, simulator in-process)."""
    from websockets.asyncio.client import connect

    with tempfile.TemporaryDirectory(prefix="tieline-bench-rss-") as tmp:
        folder = harness.write_settings(
            Path(tmp), [harness.router_block(ROUTER, LEVELS, SOURCES, DESTINATIONS)])
        proc = subprocess.Popen([sys.executable, "-m", "tieline", "run", "--settings",
                                 str(folder), "--log-level", "INFO"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None
            url = ""
            for line in proc.stdout:
                if " serving " in line:
                    url = line.split(" serving ", 1)[1].split()[0]
                    break
            else:
                raise RuntimeError("tieline run stopped before serving")
            async with connect(url, proxy=None, compression=None,
                               max_size=None) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "hello", "id": 0, "protocol": 1}))
                while True:
                    await ws.send(json.dumps({"type": "status", "id": 1}))
                    answer = json.loads(await ws.recv())
                    while answer.get("id") != 1:
                        answer = json.loads(await ws.recv())
                    if all(r["online"] for r in answer["result"]["routers"]):
                        break
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3.0)  # the node settles its memory 1 s after the sync
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
            raise RuntimeError("no VmRSS")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ms(ns: float) -> str:
    return f"{ns / 1e6:.1f}"


def timed(fn: Any, repeat: int) -> tuple[list[int], Any]:
    """Run ``fn`` ``repeat`` times; the durations (ns) and the last result."""
    samples = []
    result = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter_ns()
        result = fn()
        samples.append(time.perf_counter_ns() - t0)
    return samples, result


def stats_row(name: str, samples: list[int]) -> list[str]:
    return [name, str(len(samples)), ms(statistics.median(samples)), ms(min(samples)),
            ms(max(samples))]


STATS_HEADERS = ["measure", "runs", "median ms", "min ms", "max ms"]


class SyncClock:
    """Times each sync of the router: from ``driver.open`` to DeviceOnline."""

    def __init__(self) -> None:
        self.opened: list[int] = []

    def prepare(self, node: Node) -> None:
        driver = node.routing.routers[ROUTER].driver
        open_ = driver.open

        async def timed_open() -> Any:
            self.opened.append(time.perf_counter_ns())
            return await open_()

        driver.open = timed_open  # type: ignore[method-assign]


async def wait_online(node: Node) -> int:
    """Wait for the next DeviceOnline; when it was published (perf_counter_ns)."""
    subscription = node.bus.subscribe("benchmark", maxsize=1_000_000)
    try:
        async for event in subscription:
            if isinstance(event, DeviceOnline):
                return time.perf_counter_ns()
    finally:
        subscription.close()
    raise AssertionError("the event subscription ended")


async def live_resync(node: Node, clock: SyncClock) -> int:
    """Drop the link at the simulator; time the link's reconnect to DeviceOnline."""
    online = asyncio.create_task(wait_online(node))
    await asyncio.sleep(0)
    opened = len(clock.opened)
    await node.routing.routers[ROUTER].driver.device.disconnect_all()
    t_online = await asyncio.wait_for(online, 60)
    assert len(clock.opened) == opened + 1, "the link reconnected more than once"
    return t_online - clock.opened[-1]


def parse_dump(node: Node, dump: bytes) -> list[list[DeviceReport]]:
    """What a DeviceLink hands the RoutingService for ``dump``, read by read."""
    session = node.routing.routers[ROUTER].driver.new_session()
    size = DeviceLink.read_size
    return [session.receive_data(dump[i:i + size], 0.0) for i in range(0, len(dump), size)]


def apply_reports(node: Node, batches: list[list[DeviceReport]],
                  state: RouterState | None = None) -> RouterState:
    """Apply a sync's reports the way the node does, to ``state`` (a fresh one by default)."""
    rt = node.routing.routers[ROUTER]
    state = state if state is not None else RouterState(rt.state.spec)
    service = RoutingService(EventBus(), node.failover)
    service.add_router(RouterRuntime(state=state, driver=rt.driver))
    for reports in batches:
        service.device_reports(ROUTER, reports)
    return state


def deep_size(state: RouterState) -> dict[str, int]:
    """Where RouterState's memory goes (sys.getsizeof of everything it holds)."""
    seen: set[int] = set()

    def size(obj: Any) -> int:
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        total = sys.getsizeof(obj)
        if isinstance(obj, dict):
            total += sum(size(k) + size(v) for k, v in obj.items())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            total += sum(size(item) for item in obj)
        return total

    return {
        "crosspoints (array per level)": size(state._xp),
        "reverse tally (linked lists in arrays per level)":
            size(state._head) + size(state._next) + size(state._prev),
        "labels": size(state.labels),
        "protects": size(state.protects),
    }


def router_memory(node: Node, dump: bytes) -> tuple[int, int, dict[str, int]]:
    """RouterState after a full sync under tracemalloc: (retained bytes, peak, breakdown)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        state = apply_reports(node, parse_dump(node, dump))  # reports freed on return
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - base
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return retained, peak, deep_size(state)


def time_sync_steps(node: Node, dump: bytes,
                    repeat: int) -> tuple[list[int], list[int], list[int]]:
    """CPU of a sync's steps on the captured dump: parse; apply to an empty, a full state."""
    parse_ns, batches = timed(lambda: parse_dump(node, dump), repeat)
    fill_ns, _ = timed(lambda: apply_reports(node, batches), repeat)
    state = node.routing.routers[ROUTER].state
    resync_ns, _ = timed(lambda: apply_reports(node, batches, state), repeat)
    return parse_ns, fill_ns, resync_ns


def time_snapshot(node: Node, repeat: int) -> tuple[list[int], list[int], int]:
    """Build and encode times of the snapshot response, and its size in bytes."""
    build_ns, snap = timed(lambda: messages.snapshot(node.routing), repeat)
    response = {"type": "response", "id": 1, "ok": True, "result": snap}
    encode_ns, text = timed(lambda: json.dumps(response, separators=(",", ":")), repeat)
    return build_ns, encode_ns, len(text.encode("utf-8"))


async def run(repeat: int = 5) -> dict[str, Any]:
    harness.print_machine()
    process_mb = await whole_process_rss() / MB
    clock = SyncClock()
    with tempfile.TemporaryDirectory(prefix="tieline-bench-") as tmp:
        folder = harness.write_settings(
            Path(tmp), [harness.router_block(ROUTER, LEVELS, SOURCES, DESTINATIONS)])
        gc.collect()
        rss_before = harness.rss_bytes()
        first_online: asyncio.Task[int] | None = None

        def prepare(node: Node) -> None:
            nonlocal first_online
            clock.prepare(node)
            first_online = asyncio.ensure_future(wait_online(node))

        t_start = time.perf_counter_ns()
        async with harness.running_node(folder, prepare=prepare) as node:
            assert first_online is not None
            t_online = await first_online
            first_sync = t_online - clock.opened[0]
            start_to_online = t_online - t_start
            gc.collect()
            rss_online = harness.rss_bytes()
            rt = node.routing.routers[ROUTER]
            assert all(rt.state.source(level, d) == d % SOURCES
                       for level in range(LEVELS) for d in range(DESTINATIONS))

            resyncs = [await live_resync(node, clock) for _ in range(repeat)]

            dump_ns, dump = timed(rt.driver.device._dump, repeat)
            parse_ns, fill_ns, resync_apply_ns = time_sync_steps(node, dump, repeat)
            build_ns, encode_ns, snapshot_bytes = time_snapshot(node, repeat)

            client = await harness.ClientProcess.start("snapshot", harness.api_url(node), repeat)
            try:
                await client.read()
                client.write({"go": True})
                received = await client.read(timeout=300)
            finally:
                await client.finish()
            assert abs(received["bytes"] - snapshot_bytes) < 16, received["bytes"]  # ids differ
            gc.collect()
            rss_after = harness.rss_bytes()

            retained, peak, breakdown = router_memory(node, dump)

    state_mb = retained / MB
    node_mb = (rss_online - rss_before) / MB
    harness.print_table(
        f"Memory: {DESTINATIONS}x{SOURCES} router, {LEVELS} levels "
        f"({LEVELS * DESTINATIONS} crosspoints, {SOURCES + DESTINATIONS} labels)",
        ["measure", "MB"], [
            ["RouterState after a full sync (tracemalloc, retained)", f"{state_mb:.1f}"],
            ["… crosspoints (array per level)",
             f"{breakdown['crosspoints (array per level)'] / MB:.1f}"],
            ["… reverse tally (linked lists in arrays per level)",
             f"{breakdown['reverse tally (linked lists in arrays per level)'] / MB:.1f}"],
            ["… labels", f"{breakdown['labels'] / MB:.1f}"],
            ["peak while syncing (tracemalloc: state + reports in flight)", f"{peak / MB:.1f}"],
            ["process RSS growth: node start → online (node + simulator + buffers)",
             f"{node_mb:.1f}"],
            ["process RSS growth after the resyncs and snapshots below",
             f"{(rss_after - rss_before) / MB:.1f}"],
        ])
    harness.print_table("Full sync: the DeviceLink reading the whole state", STATS_HEADERS, [
        ["node start → router online (first sync, simulator start included)", "1",
         ms(start_to_online), "", ""],
        ["first sync: link connect → DeviceOnline (every crosspoint unknown)", "1",
         ms(first_sync), "", ""],
        stats_row("live resync: link reconnect → DeviceOnline (state unchanged)", resyncs),
        stats_row("… simulator writing the dump (device time)", dump_ns),
        stats_row("… driver session parsing the dump (simulator plugin codec)", parse_ns),
        stats_row("… RoutingService applying it to an empty RouterState", fill_ns),
        stats_row("… RoutingService applying it to a full RouterState (no change)",
                  resync_apply_ns),
    ])
    print(f"\ndump: {len(dump) / MB:.2f} MB of simulator protocol")
    harness.print_table(f"Snapshot ({snapshot_bytes / MB:.2f} MB of JSON)", STATS_HEADERS, [
        stats_row("messages.snapshot (build)", build_ns),
        stats_row("json.dumps of the response (encode)", encode_ns),
        stats_row("client: request sent → whole response received", received["receive_ns"]),
        stats_row("client: json.loads of the response", received["parse_ns"]),
    ])
    harness.print_table("Target", ["target", "measured", "verdict"], [
        [f"RouterState under {TARGET_MB:g} MB", f"{state_mb:.1f} MB",
         harness.verdict(state_mb, TARGET_MB)],
        [f"whole node (RSS growth, simulator included) under {TARGET_MB:g} MB",
         f"{node_mb:.1f} MB", harness.verdict(node_mb, TARGET_MB)],
        [f"a whole `tieline run` process serving it, online, ≤ {TARGET_PROCESS_MB:g} MB",
         f"{process_mb:.1f} MB", harness.verdict(process_mb, TARGET_PROCESS_MB)],
    ])
    return {"state_mb": state_mb, "node_mb": node_mb, "process_mb": process_mb,
            "snapshot_bytes": snapshot_bytes,
            "first_sync_ms": first_sync / 1e6}


def test_large_router() -> None:
    harness.run_isolated(__file__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each timed step")
    args = parser.parse_args()
    asyncio.run(run(args.repeat))


if __name__ == "__main__":
    main()
