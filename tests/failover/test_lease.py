"""The lease strategy with real processes: takeover, status text, switch back."""

from __future__ import annotations

import signal

from .cluster import ADMIN_TOKEN, status_of, wait_for


async def test_backup_takes_over_and_main_switches_back(make_cluster):
    cluster = make_cluster()
    cluster.start_device()
    cluster.start_node("a")
    await wait_for(lambda: _state(cluster, "a", "Main is active"), 20, "a active")
    cluster.start_node("b")

    async def b_follows_a() -> bool:
        status = await status_of(cluster.url("b"))
        return bool(status) and status["status"] == "Backup is idle" \
            and status["active"] == cluster.url("a")

    await wait_for(b_follows_a, 20, "b idle, following a")
    a = await status_of(cluster.url("a"))
    b = await status_of(cluster.url("b"))
    assert a["epoch"] == b["epoch"] >= 1
    assert b["active"] == cluster.url("a")

    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: _state(cluster, "b", "Backup is active"), 20, "b active")
    b2 = await status_of(cluster.url("b"))
    assert b2["epoch"] > a["epoch"]

    cluster.start_node("a")  # the main returns: standby, then switch back after hold-down
    await wait_for(lambda: _state(cluster, "a", "Main is active"), 30, "switch back")
    await wait_for(lambda: _state(cluster, "b", "Backup is idle"), 10, "b idle again")
    a3 = await status_of(cluster.url("a"))
    assert a3["epoch"] > b2["epoch"]


async def _state(cluster, name: str, text: str) -> bool:
    status = await status_of(cluster.url(name), ADMIN_TOKEN)
    return status is not None and status["status"] == text


async def _cluster_with_a_active(make_cluster, **kwargs):
    cluster = make_cluster(**kwargs)
    cluster.start_device()
    cluster.start_node("a")
    await wait_for(lambda: _state(cluster, "a", "Main is active"), 20, "a active")
    cluster.start_node("b")

    async def b_follows_a() -> bool:
        status = await status_of(cluster.url("b"))
        return bool(status) and status["active"] == cluster.url("a")

    await wait_for(b_follows_a, 20, "b following a")
    return cluster


async def test_kill_9_under_load_loses_no_acknowledged_route(make_cluster):
    """10 clients send 50 routes/s in all; the active main is killed; the backup takes over.

    Every acknowledged route is on the device, and the device received no route that no
    client asked for.
    """
    import asyncio
    import random
    import time

    from tieline.client import Client, ConnectionLost
    from tieline.errors import RequestError

    from .cluster import OPERATOR_TOKEN

    cluster = await _cluster_with_a_active(make_cluster)
    asked: set[tuple[int, int]] = set()  # (destination, source), 0-based
    acked: dict[int, list[tuple[float, int]]] = {}  # destination -> [(time, source)]
    failed = 0
    stop = asyncio.Event()

    async def operator(n: int) -> None:
        nonlocal failed
        dest = n  # each client owns one destination: the last ack per destination is known
        rng = random.Random(n)
        async with Client(cluster.urls, token=OPERATOR_TOKEN, failover_timeout_s=10) as client:
            while not stop.is_set():
                source = rng.randrange(16)
                asked.add((dest, source))
                try:
                    await client.route("studio", dest + 1, source + 1)
                    acked.setdefault(dest, []).append((time.time(), source))
                except (ConnectionLost, RequestError):
                    failed += 1
                await asyncio.sleep(0.2)  # 5 routes/s per client, 50 in all

    clients = [asyncio.create_task(operator(n)) for n in range(10)]
    await asyncio.sleep(1.5)
    killed_at = time.time()
    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: _state(cluster, "b", "Backup is active"), 20, "b active")
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*clients)

    acked_after = sum(1 for routes in acked.values() for t, _ in routes if t > killed_at)
    assert acked_after > 0, "no route was acknowledged by the backup"
    # the device received only routes that clients asked for ...
    for _t, _peer, crosspoints in cluster.routes_sent():
        for level, dest, source in crosspoints:
            assert (dest, source) in asked, (dest, source)
    # ... and every acknowledged route reached it: the device holds each client's last ack
    device = await _device_state(cluster)
    for dest, routes in acked.items():
        assert device[dest] == routes[-1][1], (dest, routes[-3:])
    status = await status_of(cluster.url("b"))
    assert status["status"] == "Backup is active"


async def _device_state(cluster) -> dict[int, int]:
    """The emulator's crosspoints, read with the simulator protocol by hand (level 0)."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.device_port)
    writer.write(b"HELLO 1\nDUMP\n")
    await writer.drain()
    state: dict[int, int] = {}
    async with asyncio.timeout(5):
        while True:
            line = (await reader.readline()).decode().strip()
            if line == "END":
                break
            if line.startswith("XP "):
                numbers = [int(x) for x in line.split()[1:]]
                for i in range(0, len(numbers), 3):
                    level, dest, source = numbers[i:i + 3]
                    if level == 0:
                        state[dest] = source
    writer.close()
    return state
