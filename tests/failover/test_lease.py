"""The lease strategy with real processes: takeover, status text, switch back."""

from __future__ import annotations

import signal

from .cluster import ADMIN_TOKEN, status_is, status_of, wait_for


async def test_backup_takes_over_and_main_switches_back(make_cluster):
    cluster = make_cluster()
    cluster.start_device()
    await cluster.start_main_and_backup()
    a = await status_of(cluster.url("a"))
    b = await status_of(cluster.url("b"))
    assert a["epoch"] == b["epoch"] >= 1
    assert b["active"] == cluster.url("a")

    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: _state(cluster, "b", "Backup is active"), 20, "b active")
    b2 = await status_of(cluster.url("b"))
    assert b2["epoch"] > a["epoch"]
    # b had followed an active main: it waited exactly one lease (600 ms in FAST), not the
    # cold-start wait of one lease plus two heartbeats
    assert "now active (epoch %d): no active node heard for 600 ms" % b2["epoch"] \
        in cluster.procs["b"].output()

    cluster.start_node("a")  # the main returns: standby, then switch back after hold-down
    await wait_for(lambda: _state(cluster, "a", "Main is active"), 30, "switch back")
    await wait_for(lambda: _state(cluster, "b", "Backup is idle"), 10, "b idle again")
    a3 = await status_of(cluster.url("a"))
    assert a3["epoch"] > b2["epoch"]


async def test_backup_alone_at_a_cold_start_waits_a_lease_and_two_heartbeats(make_cluster):
    cluster = make_cluster()
    cluster.start_device()
    cluster.start_node("b")  # the main never comes: the backup takes over, after the tie wait
    await wait_for(lambda: _state(cluster, "b", "Backup is active"), 20, "b active")
    assert "no active node heard for 700 ms" in cluster.procs["b"].output()


async def _state(cluster, name: str, text: str) -> bool:
    status = await status_of(cluster.url(name), ADMIN_TOKEN)
    return status is not None and status["status"] == text


async def _cluster_with_a_active(make_cluster, **kwargs):
    cluster = make_cluster(**kwargs)
    cluster.start_device()
    await cluster.start_main_and_backup()
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
    device = await cluster.device_crosspoints()
    for dest, routes in acked.items():
        assert device[dest] == routes[-1][1], (dest, routes[-3:])
    status = await status_of(cluster.url("b"))
    assert status["status"] == "Backup is active"


async def _raw(url: str, token: str = ADMIN_TOKEN):
    """An authenticated raw WebSocket connection (no client failover)."""
    import json

    from websockets.asyncio.client import connect

    ws = await connect(url, proxy=None, compression=None)
    await ws.recv()
    await ws.send(json.dumps({"type": "hello", "id": "h", "protocol": 1, "token": token}))
    while json.loads(await ws.recv()).get("id") != "h":
        pass
    return ws


async def _answer(ws, request: dict, timeout: float = 10.0) -> dict:
    import asyncio
    import json

    await ws.send(json.dumps(request))
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "response" and message.get("id") == request["id"]:
                return message


async def test_sigstopped_main_sends_nothing_after_resuming_and_becomes_standby(make_cluster):
    import asyncio
    import json
    import time

    cluster = await _cluster_with_a_active(make_cluster, failover={"switch_back": "manual"})
    ws = await _raw(cluster.url("a"))
    cluster.procs["a"].signal(signal.SIGSTOP)
    stopped_at = time.time()
    await wait_for(lambda: _state(cluster, "b", "Backup is active"), 20, "b active")
    # a request reaches the paused main's socket; it is read only when the main resumes
    await ws.send(json.dumps({"type": "route", "id": "r", "router": "studio",
                              "destination": 2, "source": 9}))
    await asyncio.sleep(0.3)
    cluster.procs["a"].signal(signal.SIGCONT)
    async with asyncio.timeout(10):
        while True:
            answer = json.loads(await ws.recv())
            if answer.get("id") == "r":
                break
    assert not answer["ok"] and answer["error"]["code"] == "standby", answer
    # standby at once (fenced, not knowing who is active), then following b
    await wait_for(lambda: status_is(cluster.url("a"), "Main is standby", cluster.url("b")),
                   20, "a standby, following b")
    assert cluster.routes_sent(since=stopped_at) == []  # nothing from anyone: no client routed
    await ws.close()


async def test_active_backup_keeps_settings_read_only_and_admin_needs_level_3(make_cluster):
    from .cluster import OPERATOR_TOKEN

    cluster = await _cluster_with_a_active(make_cluster, failover={"switch_back": "manual"})
    operator = await _raw(cluster.url("a"), OPERATOR_TOKEN)
    for request in ({"type": "failover", "id": 1, "action": "switch_back"},
                    {"type": "members", "id": 2, "action": "add", "address": "127.0.0.1:9"}):
        refused = await _answer(operator, request)
        assert refused["error"]["code"] == "forbidden", refused
    await operator.close()
    admin = await _raw(cluster.url("a"))
    assert (await _answer(admin, {"type": "label", "id": 3, "router": "studio",
                                  "kind": "source", "index": 1, "text": "CAM 1"}))["ok"]
    await admin.close()
    # the label reached the backup's settings (replication)
    await wait_for(lambda: "CAM 1" in (cluster.folder("b") / "labels.json").read_text()
                   if (cluster.folder("b") / "labels.json").exists() else False,
                   10, "labels.json replicated to b")

    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: _state(cluster, "b", "Backup is active"), 20, "b active")
    admin_b = await _raw(cluster.url("b"))
    label = await _answer(admin_b, {"type": "label", "id": 4, "router": "studio",
                                    "kind": "source", "index": 1, "text": "JIB"})
    assert label["error"] == {
        "code": "read_only",
        "message": "settings are read-only while the backup is active; the main is "
                   f"{cluster.url('a')}"}, label
    members = await _answer(admin_b, {"type": "members", "id": 5, "action": "add",
                                      "address": "127.0.0.1:9"})
    assert members["error"]["code"] == "read_only", members
    route = await _answer(admin_b, {"type": "route", "id": 6, "router": "studio",
                                    "destination": 3, "source": 4})
    assert route["ok"], route  # routing works
    await admin_b.close()


async def test_manual_switch_back_waits_for_the_command(make_cluster):
    import asyncio
    import subprocess

    from .cluster import TIELINE

    cluster = await _cluster_with_a_active(make_cluster, failover={"switch_back": "manual",
                                                                    "hold_down_s": 0})
    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: _state(cluster, "b", "Backup is active"), 20, "b active")
    cluster.start_node("a")
    await wait_for(lambda: _state(cluster, "a", "Main is standby"), 20, "a standby")
    await asyncio.sleep(1.5)  # several heartbeats: nothing happens by itself
    assert await _state(cluster, "b", "Backup is active")
    result = await asyncio.to_thread(subprocess.run, [
        TIELINE, "failover", "switch-back", "--server", cluster.url("b"), "--token",
        ADMIN_TOKEN], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("switched back: the main is active")
    assert await _state(cluster, "a", "Main is active")
    await wait_for(lambda: _state(cluster, "b", "Backup is idle"), 10, "b idle")


async def test_node_with_another_key_can_neither_join_nor_take_over(make_cluster, tmp_path):
    import asyncio

    from tieline.cluster.peerlink import generate_cluster_key

    cluster = make_cluster(nodes={"a": "main", "b": "backup", "c": "backup"})
    other_key = generate_cluster_key(tmp_path / "other")
    cluster.start_device()
    cluster.start_node("a")
    await wait_for(lambda: _state(cluster, "a", "Main is active"), 20, "a active")
    cluster.write_settings("c", key=other_key)
    cluster.start_node("c")
    await wait_for(lambda: "is not the cluster key" in cluster.procs["c"].output(), 20,
                   "c refused by a")
    cluster.procs["a"].signal(signal.SIGKILL)  # even with the main gone, c must not act
    await asyncio.sleep(3.0)
    assert await _state(cluster, "c", "Backup is idle")
    assert "refuses our key" in cluster.procs["c"].output()
    assert not (cluster.folder("c") / "labels.json").exists()


async def test_switch_back_under_load_loses_no_request(make_cluster):
    """The main returns; after the hold-down the backup drains and hands over; clients
    keep routing and not one request fails."""
    import asyncio
    import random

    from tieline.client import Client

    from .cluster import OPERATOR_TOKEN

    cluster = await _cluster_with_a_active(make_cluster, failover={"hold_down_s": 1})
    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: _state(cluster, "b", "Backup is active"), 20, "b active")
    asked: set[tuple[int, int]] = set()
    acked: dict[int, int] = {}
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def operator(n: int) -> None:
        rng = random.Random(n)
        async with Client(cluster.urls[::-1], token=OPERATOR_TOKEN) as client:
            while not stop.is_set():
                source = rng.randrange(16)
                asked.add((n, source))
                try:
                    await client.route("studio", n + 1, source + 1)
                    acked[n] = source
                except Exception as exc:  # noqa: BLE001 - every failure is a finding
                    errors.append(exc)
                await asyncio.sleep(0.05)

    clients = [asyncio.create_task(operator(n)) for n in range(5)]
    await asyncio.sleep(0.5)
    cluster.start_node("a")
    await wait_for(lambda: _state(cluster, "a", "Main is active"), 30, "switch back")
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*clients)
    assert errors == []
    for _t, _peer, crosspoints in cluster.routes_sent():
        for _level, dest, source in crosspoints:
            assert (dest, source) in asked
    device = await cluster.device_crosspoints()
    for dest, source in acked.items():
        assert device[dest] == source
    assert await _state(cluster, "b", "Backup is idle")
