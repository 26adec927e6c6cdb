"""The etcd strategy with real processes and a real etcd on loopback (issue 6).

Three nodes (a main, two backups) elect one active node through a leader key in etcd. Node
processes are ``tieline run``; etcd is the Debian package's binary started by the test
(``tests/etcdserver.py``, TTL 1 s leases). The emulator logs every command it receives.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from tieline.client import Client

from .cluster import OPERATOR_TOKEN, Cluster, status_of, wait_for

NODES = {"a": "main", "b": "backup", "c": "backup"}


class EtcdCluster(Cluster):
    failover_defaults: dict[str, Any] = {"ttl_s": 1, "hold_down_s": 1,
                                         "request_timeout_ms": 300}

    def __init__(self, root, etcd, **kwargs: Any) -> None:
        super().__init__(root, nodes=kwargs.pop("nodes", NODES), **kwargs)
        self.etcd = etcd

    def failover_block(self, name: str) -> dict[str, Any]:
        return {"strategy": "etcd", "endpoints": [self.etcd.url], "cluster": "test",
                "advertise": self.url(name), **self.failover}


@pytest.fixture
def make_etcd_cluster(etcd, tmp_path, request):
    clusters: list[EtcdCluster] = []

    def make(**kwargs: Any) -> EtcdCluster:
        cluster = EtcdCluster(tmp_path / f"c{len(clusters)}", etcd, **kwargs)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop_all()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print(cluster.logs())
            print("===== etcd\n" + etcd.log()[-3000:])


async def statuses(cluster: Cluster) -> dict[str, dict[str, Any]]:
    out = {}
    for name, proc in cluster.procs.items():
        if name in cluster.roles and proc.popen is not None and proc.popen.poll() is None:
            out[name] = await status_of(cluster.url(name)) or {}
    return out


async def actives(cluster: Cluster) -> list[str]:
    return sorted(n for n, s in (await statuses(cluster)).items() if s.get("state") == "active")


async def start_three(cluster: EtcdCluster) -> dict[str, dict[str, Any]]:
    cluster.start_device()
    cluster.start_node("a")
    await wait_for(lambda: _status_text(cluster, "a", "Main is active"), 20, "a active")
    cluster.start_node("b")
    cluster.start_node("c")

    async def followers() -> bool:
        found = await statuses(cluster)
        return all(found.get(n, {}).get("status") == "Backup is idle"
                   and found[n].get("active") == cluster.url("a") for n in ("b", "c"))

    await wait_for(followers, 20, "b and c idle, following a")
    return await statuses(cluster)


async def _status_text(cluster: Cluster, name: str, text: str) -> bool:
    return ((await status_of(cluster.url(name))) or {}).get("status") == text


async def test_three_nodes_elect_one_and_kill_9_moves_it_to_exactly_one_other(
        make_etcd_cluster):
    cluster = make_etcd_cluster()
    before = await start_three(cluster)
    epoch = before["a"]["epoch"]
    assert epoch > 0 and before["b"]["epoch"] == before["c"]["epoch"] == epoch
    assert await actives(cluster) == ["a"]

    async with Client(cluster.urls, token=OPERATOR_TOKEN, failover_timeout_s=15) as client:
        await client.subscribe()
        await client.route("studio", 1, 2)
        cluster.procs["a"].signal(signal.SIGKILL)
        cluster.procs["a"].popen.wait(10)
        await client.route("studio", 3, 4)  # held, then sent to the new active
        assert client.endpoint in (cluster.url("b"), cluster.url("c"))
        new = await actives(cluster)
        assert len(new) == 1, new
        after = await statuses(cluster)
        assert after[new[0]]["epoch"] > epoch
        assert after[new[0]]["status"] == "Backup is active"
        other = ({"b", "c"} - set(new)).pop()
        assert after[other]["status"] == "Backup is idle"

        async def other_follows() -> bool:  # it learns the new leader from its watch
            return ((await status_of(cluster.url(other))) or {}).get("active") \
                == cluster.url(new[0])

        await wait_for(other_follows, 10, f"{other} following {new[0]}")
        # a client that saw the new epoch refuses a node announcing a lower one
        assert client.max_epoch == after[new[0]]["epoch"]
    device = await cluster.device_crosspoints()
    assert (device[0], device[2]) == (1, 3)


async def test_exactly_one_active_at_every_moment_while_the_active_is_killed(
        make_etcd_cluster):
    """Sample every node's state continuously through two kills: never two actives."""
    cluster = make_etcd_cluster()
    await start_three(cluster)
    seen: list[list[str]] = []
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            seen.append(await actives(cluster))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        for _ in range(2):
            leader = (await actives(cluster))[0]
            cluster.procs[leader].signal(signal.SIGKILL)
            cluster.procs[leader].popen.wait(10)

            async def someone_else() -> bool:
                now = await actives(cluster)
                return len(now) == 1 and now[0] != leader

            await wait_for(someone_else, 20, "another node active")
            cluster.start_node(leader)  # it comes back as standby
            await wait_for(lambda: _following(cluster, leader), 20, f"{leader} following")
    finally:
        stop.set()
        await sampler
    assert all(len(s) <= 1 for s in seen), [s for s in seen if len(s) > 1]
    assert any(len(s) == 0 for s in seen)  # the gaps were sampled too


async def _following(cluster: Cluster, name: str) -> bool:
    status = await status_of(cluster.url(name)) or {}
    return status.get("state") == "standby" and bool(status.get("active"))


async def test_clean_stop_hands_over_at_once_and_the_main_switches_back(make_etcd_cluster):
    cluster = make_etcd_cluster(nodes={"a": "main", "b": "backup"},
                                failover={"ttl_s": 5, "hold_down_s": 1})
    cluster.start_device()
    cluster.start_node("a")
    await wait_for(lambda: _status_text(cluster, "a", "Main is active"), 20, "a active")
    cluster.start_node("b")
    await wait_for(lambda: _status_text(cluster, "b", "Backup is idle"), 20, "b idle")
    assert cluster.procs["a"].stop() == 0
    # the session lease was revoked: b need not wait for a 5 s TTL to run out
    assert "left the etcd election (session lease revoked)" in cluster.procs["a"].output()
    await wait_for(lambda: _status_text(cluster, "b", "Backup is active"), 20, "b active")
    b_epoch = (await status_of(cluster.url("b")))["epoch"]
    cluster.start_node("a")
    await wait_for(lambda: _status_text(cluster, "a", "Main is active"), 30,
                   "a active again after the hold-down")
    await wait_for(lambda: _status_text(cluster, "b", "Backup is idle"), 10, "b idle again")
    assert (await status_of(cluster.url("a")))["epoch"] > b_epoch
    assert "handing over to 'a' (switch back)" in cluster.procs["b"].output()


async def test_active_backup_keeps_settings_read_only_naming_the_main(make_etcd_cluster):
    from .test_lease import _answer, _raw

    cluster = make_etcd_cluster(nodes={"a": "main", "b": "backup"},
                                failover={"switch_back": "manual"})
    cluster.start_device()
    cluster.start_node("a")
    await wait_for(lambda: _status_text(cluster, "a", "Main is active"), 20, "a active")
    cluster.start_node("b")
    await wait_for(lambda: _status_text(cluster, "b", "Backup is idle"), 20, "b idle")
    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: _status_text(cluster, "b", "Backup is active"), 20, "b active")
    cluster.start_node("a")
    await wait_for(lambda: _status_text(cluster, "a", "Main is standby"), 20, "a standby")
    ws = await _raw(cluster.url("b"))
    refused = await _answer(ws, {"type": "label", "id": "l", "router": "studio",
                                 "kind": "source", "index": 1, "text": "CAM"})
    assert refused["error"]["message"] == ("settings are read-only while the backup is "
                                           f"active; the main is {cluster.url('a')}")
    await asyncio.sleep(2.0)  # manual: a stays standby however long it waits
    assert await _status_text(cluster, "a", "Main is standby")
    answer = await _answer(ws, {"type": "failover", "id": "f", "action": "switch_back"})
    await ws.close()
    await wait_for(lambda: _status_text(cluster, "a", "Main is active"), 20, "switched back")
    assert answer.get("ok"), answer


FAST_PROOF = {"ttl_s": 5, "heartbeat_ms": 50, "renew_deadline_ms": 200, "lease_ms": 400}


async def test_a_dead_active_is_deposed_after_lease_ms_not_after_its_ttl(make_etcd_cluster):
    """With a 5 s TTL, the survivors take over after lease_ms (400 ms) without the dead
    node's proof: its key is deleted by a transaction, not by the lease's expiry."""
    cluster = make_etcd_cluster(failover=FAST_PROOF)
    await start_three(cluster)
    cluster.procs["a"].signal(signal.SIGKILL)
    cluster.procs["a"].popen.wait(10)
    await wait_for(lambda: _one_active_of(cluster, ("b", "c")), 20, "b or c active")
    logs = cluster.procs["b"].output() + cluster.procs["c"].output()
    assert "the active node 'a' gave no proof for 400 ms: its leader key is deleted" in logs


async def _one_active_of(cluster: Cluster, names: tuple[str, ...]) -> bool:
    found = await statuses(cluster)
    return [n for n in names if found.get(n, {}).get("state") == "active"].__len__() == 1


async def test_a_frozen_active_is_deposed_and_sends_nothing_when_it_resumes(make_etcd_cluster):
    cluster = make_etcd_cluster(failover=FAST_PROOF)
    await start_three(cluster)
    async with Client([cluster.url("a")], token=OPERATOR_TOKEN, failover=False) as client:
        await client.route("studio", 1, 2)
    cluster.procs["a"].signal(signal.SIGSTOP)
    stopped = time.time()
    await wait_for(lambda: _one_active_of(cluster, ("b", "c")), 20, "b or c active")
    new = (await actives(cluster))[0]
    cluster.procs["a"].signal(signal.SIGCONT)
    await wait_for(lambda: _following(cluster, "a"), 20, "a standby after resuming")
    assert "this node is now standby" in cluster.procs["a"].output()
    assert not cluster.routes_sent(since=stopped), "a route reached the router meanwhile"
    async with Client([cluster.url(new)], token=OPERATOR_TOKEN, failover=False) as client:
        await client.route("studio", 2, 3)
    assert [x for _t, _p, xs in cluster.routes_sent(since=stopped) for x in xs] == [(0, 1, 2)]
    assert await actives(cluster) == [new]
