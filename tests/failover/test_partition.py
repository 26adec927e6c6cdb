"""The peer link cut while both nodes reach the router (issue 5), with real network faults.

The rule (plugins/lease/strategy.py, docs/failover.md): the backup takes over after one
lease (it cannot tell a cut link from a dead main) and the main stays active (it cannot
tell a cut link from a dead backup). Both accept routes: harmless, the router arbitrates and
both follow its tally. Settings never diverge: only the main writes them; the active backup
refuses every settings write. Clients that saw the backup's higher epoch refuse the main.
When the link heals the lower epoch (the main) becomes standby, receives nothing it lacks,
and switches back after ``hold_down_s``.

Nodes a (main) and b (backup) run in two network namespaces joined by a veth pair that
carries only the peer link (see netns.py); the emulator and the test are in the root
namespace. The cut is either both ends of the pair set down (fast errors) or silent loss of
every packet (a half-open link).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tieline.client import Client, ConnectionLost
from tieline.kit.testing import free_port

from .cluster import OPERATOR_TOKEN, Cluster, status_of, wait_for
from .netns import NetnsUnavailable, PartitionNet, partition_net
from .test_lease import _answer, _raw

API_PORT = 8181  # inside each namespace
PEER_PORT = 7401
HOLD_DOWN_S = 2.0  # long enough to see the main standby before it switches back


class NetnsCluster(Cluster):
    """A :class:`Cluster` whose nodes run in the namespaces of a :class:`PartitionNet`."""

    def __init__(self, root: Path, net: PartitionNet, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.net = net
        self.device_host = net.router_address
        self.device_port = free_port(self.device_host)

    def url(self, name: str) -> str:
        return f"ws://{self.net.api_address(name)}:{API_PORT}"

    def api_listen(self, name: str) -> str:
        return f"{self.net.api_address(name)}:{API_PORT}"

    def failover_block(self, name: str) -> dict[str, Any]:
        peers = [f"{self.net.peer_address(n)}:{PEER_PORT}" for n in self.roles if n != name]
        return {"strategy": "lease", "listen": f"{self.net.peer_address(name)}:{PEER_PORT}",
                "peers": peers, "key": "cluster.key", "advertise": self.url(name),
                **self.failover}

    def node_args(self, name: str, folder: Path) -> list[str]:
        # `ip netns exec` execs the command: the process is tieline itself (signals reach it)
        return [*self.net.netns_prefix(name), *super().node_args(name, folder)]

    def api_address(self, name: str) -> tuple[str, int]:
        return self.net.api_address(name), API_PORT

    def routes_from(self, name: str) -> list[tuple[int, int, int]]:
        """Crosspoints (level, dest, source; 0-based) the emulator received from node
        ``name`` (by the address its router connection comes from)."""
        host = self.net.api_address(name)
        return [x for _t, peer, crosspoints in self.routes_sent()
                if peer.rsplit(":", 1)[0] == host for x in crosspoints]


@pytest.fixture
def net() -> Iterator[PartitionNet]:
    try:
        with partition_net() as made:
            yield made
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def cluster(net, tmp_path, request) -> Iterator[NetnsCluster]:
    made = NetnsCluster(tmp_path / "c", net, failover={"hold_down_s": HOLD_DOWN_S})
    try:
        yield made
    finally:  # processes first: the namespaces go after (the net fixture)
        made.stop_all()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print(made.logs())


async def _status(cluster: Cluster, name: str) -> dict[str, Any]:
    status = await status_of(cluster.url(name))
    return status or {}


async def _is(cluster: Cluster, name: str, text: str) -> bool:
    return (await _status(cluster, name)).get("status") == text


def _labels(cluster: Cluster, name: str) -> Any:
    path = cluster.folder(name) / "labels.json"
    return json.loads(path.read_text()) if path.exists() else None


async def _crosspoint(ws, dest: int) -> int | None:
    """The source (1-based) a node's tally shows on ``dest`` (1-based), from a snapshot."""
    answer = await _answer(ws, {"type": "snapshot", "id": f"s{dest}"})
    return answer["result"]["routers"][0]["crosspoints"]["video"][dest - 1]


@pytest.mark.parametrize("mode", ["down", "loss"])
async def test_peer_link_cut_while_both_reach_the_router(net, cluster, mode):
    if mode == "loss" and (reason := net.loss_supported()):
        pytest.skip(reason)
    a_url, b_url = cluster.url("a"), cluster.url("b")

    # -- before the cut: a active, b idle following a; settings replicated ---------------
    cluster.start_device()
    await cluster.start_main_and_backup()
    epoch_before = (await _status(cluster, "a"))["epoch"]
    assert epoch_before >= 1
    admin_a = await _raw(a_url)
    assert (await _answer(admin_a, {"type": "label", "id": "l1", "router": "studio",
                                    "kind": "source", "index": 1, "text": "CAM 1"}))["ok"]
    await wait_for(lambda: _labels(cluster, "b") == _labels(cluster, "a"), 10,
                   "labels.json replicated to b over the peer link")
    labels_before = _labels(cluster, "b")

    # -- the cut: b takes over after one lease, a stays active ---------------------------
    net.cut(mode)
    await wait_for(lambda: _is(cluster, "b", "Backup is active"), 20, "b active")
    b_status = await _status(cluster, "b")
    epoch_b = b_status["epoch"]
    assert epoch_b > epoch_before
    a_status = await _status(cluster, "a")
    assert (a_status["status"], a_status["epoch"]) == ("Main is active", epoch_before)

    # both accept routes; the router arbitrates and each node follows its tally
    admin_b = await _raw(b_url)
    assert (await _answer(admin_a, {"type": "route", "id": "ra", "router": "studio",
                                    "destination": 1, "source": 5}))["ok"]
    assert (await _answer(admin_b, {"type": "route", "id": "rb", "router": "studio",
                                    "destination": 2, "source": 7}))["ok"]
    assert (0, 0, 4) in cluster.routes_from("a")
    assert (0, 1, 6) in cluster.routes_from("b")
    device = await cluster.device_crosspoints()
    assert (device[0], device[1]) == (4, 6)

    async def tallies_agree() -> bool:
        return (await _crosspoint(admin_a, 2) == 7  # b's route, seen by a
                and await _crosspoint(admin_b, 1) == 5)  # a's route, seen by b

    await wait_for(tallies_agree, 10, "each node's tally showing the other's route")

    # settings never diverge: the active backup refuses, the main writes
    refused = await _answer(admin_b, {"type": "label", "id": "l2", "router": "studio",
                                      "kind": "source", "index": 2, "text": "JIB"})
    assert refused["error"] == {
        "code": "read_only",
        "message": "settings are read-only while the backup is active; the main is "
                   f"{a_url}"}, refused
    assert (await _answer(admin_a, {"type": "label", "id": "l3", "router": "studio",
                                    "kind": "source", "index": 2, "text": "CRANE"}))["ok"]
    assert "CRANE" in json.dumps(_labels(cluster, "a"))
    assert _labels(cluster, "b") == labels_before  # nothing reached b, nothing written there

    # a client that saw b's higher epoch refuses a while the partition lasts
    client = Client([b_url], token=OPERATOR_TOKEN, failover_timeout_s=5)
    await client.connect()
    assert (client.endpoint, client.max_epoch) == (b_url, epoch_b)
    await client.close()
    client.endpoints = [a_url, b_url]  # a listed first, and active: still not used
    await client.connect()
    assert client.endpoint == b_url
    await client.close()
    client.endpoints = [a_url]
    with pytest.raises(ConnectionLost) as refused_a:
        await client.connect()
    assert (f"announces epoch {epoch_before}, lower than epoch {epoch_b} already seen: "
            "not authoritative") in str(refused_a.value)
    assert await _is(cluster, "a", "Main is active")  # the partition still lasts
    assert await _is(cluster, "b", "Backup is active")

    # -- the link heals: the lower epoch (the main) yields, then switches back ------------
    net.heal(mode)

    async def a_yields() -> bool:
        status = await _status(cluster, "a")
        return status.get("status") == "Main is standby" and status.get("active") == b_url

    await wait_for(a_yields, 30, "a standby (lower epoch), following b")
    await wait_for(lambda: _is(cluster, "a", "Main is active"), 20,
                   "a switching back after hold_down_s")
    a_after = await _status(cluster, "a")
    assert a_after["epoch"] > epoch_b

    async def b_follows_a_again() -> bool:  # b learns a's new epoch from its heartbeats
        status = await _status(cluster, "b")
        return (status.get("status"), status.get("active"), status.get("epoch")) == (
            "Backup is idle", a_url, a_after["epoch"])

    await wait_for(b_follows_a_again, 10, "b idle again, following a at a's new epoch")

    # no divergence: b holds the main's settings, including what the main wrote meanwhile
    await wait_for(lambda: _labels(cluster, "b") == _labels(cluster, "a"), 10,
                   "labels.json replicated to b after the heal")
    labels = json.dumps(_labels(cluster, "b"))
    assert "CRANE" in labels and "JIB" not in labels
    snapshot = (await _answer(admin_b, {"type": "snapshot", "id": "s"}))["result"]
    assert snapshot["routers"][0]["labels"]["sources"][:2] == ["CAM 1", "CRANE"]
    await admin_a.close()
    await admin_b.close()
