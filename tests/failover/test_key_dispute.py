"""Key disputes in the lease strategy, with real processes: a node whose cluster key is not
the cluster's (a backup added before its key was copied, say). The rule (docs/failover.md):
the main wins; a backup confirmed by the main is never held back by another node it cannot
authenticate; a backup in a dispute never stays active beside the peer that refuses it."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest

from tieline.cluster.peerlink import generate_cluster_key

from .cluster import ADMIN_TOKEN, TIELINE, Cluster, status_is, status_of, wait_for


async def _route(url: str, dest: int, source: int) -> dict:
    import json

    from websockets.asyncio.client import connect

    async with connect(url, proxy=None, compression=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "hello", "id": "h", "protocol": 1,
                                  "token": ADMIN_TOKEN}))
        await ws.send(json.dumps({"type": "route", "id": "r", "router": "studio",
                                  "destination": dest, "source": source}))
        async with asyncio.timeout(10):
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("id") == "r":
                    return answer


def _dispute(status: dict, cluster: Cluster, name: str) -> str | None:
    """The problem ``status`` (a node's) names for peer ``name``."""
    address = f"127.0.0.1:{cluster.peer_ports[name]}"
    peer = next(p for p in status["peers"] if p["address"] == address)
    return peer["problem"]


@pytest.mark.parametrize("first", ["backup", "main"])
async def test_the_main_wins_a_key_dispute_whichever_starts_first(make_cluster, tmp_path,
                                                                   first):
    cluster = make_cluster()
    cluster.write_settings("b", key=generate_cluster_key(tmp_path / "other"))
    cluster.start_device()
    if first == "backup":
        # alone, the backup cannot know its key is wrong: it takes over after the
        # cold-start wait, and routes
        cluster.start_node("b")
        await wait_for(lambda: status_is(cluster.url("b"), "Backup is active"), 20,
                       "b active alone")
        assert (await _route(cluster.url("b"), 1, 2))["ok"]
    cluster.start_node("a")
    await wait_for(lambda: status_is(cluster.url("a"), "Main is active"), 20,
                   "a active beside a backup that refuses its key")
    if first == "main":
        cluster.start_node("b")
    await wait_for(lambda: status_is(cluster.url("b"), "Backup is idle"), 20, "b idle")
    await asyncio.sleep(1.5)  # more than two leases: nothing changes by itself
    assert await status_is(cluster.url("a"), "Main is active")
    assert await status_is(cluster.url("b"), "Backup is idle")
    assert (await _route(cluster.url("a"), 3, 4))["ok"]
    refused = await _route(cluster.url("b"), 5, 6)
    assert refused["error"]["code"] == "standby", refused

    # both show the dispute in their status, and the backup's log says why it stands by
    for me, other in (("a", "b"), ("b", "a")):
        problem = _dispute(await status_of(cluster.url(me)), cluster, other)
        assert problem is not None and problem.startswith("key dispute"), (me, problem)
    shown = await asyncio.to_thread(subprocess.run, [
        TIELINE, "status", "--server", cluster.url("a"), "--token", ADMIN_TOKEN],
        capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert f"peer 127.0.0.1:{cluster.peer_ports['b']}: node not known, NOT CONNECTED; " \
        "PROBLEM: key dispute" in shown.stdout, shown.stdout
    log_b = cluster.procs["b"].output()
    if first == "backup":
        assert "this node becomes standby: the peer link to" in log_b
    assert "refuses our key" in log_b or "refuses its cluster key" in log_b
    assert "cannot connect (its host key is not the cluster key" in cluster.procs["a"].output()


async def test_a_confirmed_backup_is_not_held_hostage_by_a_node_with_another_key(
        make_cluster, tmp_path):
    cluster = make_cluster(nodes={"a": "main", "b": "backup", "c": "backup"})
    cluster.write_settings("c", key=generate_cluster_key(tmp_path / "other"))
    cluster.start_device()
    await cluster.start_main_and_backup()  # b heard the main: confirmed
    cluster.start_node("c")
    await wait_for(lambda: "refuses our key" in cluster.procs["c"].output() or
                   "cannot connect (its host key" in cluster.procs["c"].output(), 20,
                   "c in a dispute")

    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: status_is(cluster.url("b"), "Backup is active"), 20,
                   "b takes over despite c")
    await asyncio.sleep(1.0)
    assert await status_is(cluster.url("c"), "Backup is idle")
    assert (await _route(cluster.url("b"), 1, 2))["ok"]

    # b restarted while the main is still gone: it remembers that the main confirmed its
    # key, and takes over again
    cluster.procs["b"].signal(signal.SIGKILL)
    cluster.start_node("b")
    await wait_for(lambda: status_is(cluster.url("b"), "Backup is active"), 20,
                   "b active again after its restart")
    assert await status_is(cluster.url("c"), "Backup is idle")
    assert not (cluster.folder("c") / "labels.json").exists()
