"""A paused active node acts again only on evidence written after its pause (lease strategy).

The main is a real ``tieline run`` process, paused with SIGSTOP. Its backup is played by
the test with a real :class:`~tieline.cluster.peerlink.PeerLink` holding the cluster key, so that
the interleaving the failure needs is certain, not a matter of luck: while the main is
stopped the "backup" keeps sending heartbeats that say *standby, epoch 1* (they wait in the
main's socket), then it falls silent, as a backup does that took epoch 2 and stalled itself
just as the main resumed. The old heartbeats must not count as evidence.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tieline.cluster.peerlink import PeerLink, load_cluster_key

from .cluster import ADMIN_TOKEN, Cluster, status_is, status_of, wait_for

BACKUP_API = "ws://127.0.0.1:9"  # what the played backup advertises (never dialled)


class PlayedBackup:
    """Node 'b' of a cluster, played by the test: it heartbeats what it is told to, and
    echoes the main's probe as a real node does."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.state = "standby"
        self.epoch = 0  # then the highest epoch the main announced, as a real backup does
        self.silent = False
        self.probe: str | None = None  # the main's last probe
        self.link: PeerLink | None = None
        self.task: asyncio.Task[None] | None = None

    def on_message(self, peer: Any, message: dict[str, Any]) -> None:
        if message.get("type") == "heartbeat":
            self.probe = message.get("probe")
            self.epoch = max(self.epoch, message.get("epoch", 0))

    async def start(self) -> None:
        c = self.cluster
        self.link = PeerLink(
            node="b", listen=("127.0.0.1", c.peer_ports["b"]),
            peers=[("127.0.0.1", c.peer_ports["a"])], key=load_cluster_key(c.key),
            on_message=self.on_message,
            heartbeat_timeout_s=60.0,  # its connections outlive the main's pause
        )
        await self.link.start()
        self.task = asyncio.create_task(self._beat())

    def heartbeat(self) -> dict[str, Any]:
        message = {"type": "heartbeat", "role": "backup", "state": self.state,
                   "epoch": self.epoch, "api": [BACKUP_API], "routers_online": True,
                   "settings_version": 0}
        if self.probe is not None:
            message["echo"] = self.probe
        return message

    async def _beat(self) -> None:
        while True:
            if not self.silent and self.link is not None:
                self.link.broadcast(self.heartbeat())
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.link is not None:
            await self.link.close()


#: a lease long enough that a window of silence shorter than it fits in a test
TIMING = {"heartbeat_ms": 100, "renew_deadline_ms": 600, "lease_ms": 2000,
          "switch_back": "manual"}


@pytest.fixture
async def stalled_main(make_cluster):
    """A main, active at epoch 1 beside the played backup, that was SIGSTOPped for 3 s
    (longer than a lease) while the backup's standby heartbeats piled up in its socket;
    returned still stopped, with the backup silent and a pinned client connection opened
    before the pause."""
    cluster = make_cluster(failover=TIMING)
    backup = PlayedBackup(cluster)
    cluster.start_device()
    cluster.write_settings("b")  # only for its folder; no process plays b
    await backup.start()
    cluster.start_node("a")
    await wait_for(lambda: status_is(cluster.url("a"), "Main is active"), 20, "a active")
    status = await status_of(cluster.url("a"))
    assert status["epoch"] == 1
    ws = await _authenticated(cluster.url("a"))
    cluster.procs["a"].signal(signal.SIGSTOP)
    stopped_at = time.time()
    await asyncio.sleep(3.0)  # standby heartbeats (epoch 1) wait in the main's socket
    backup.silent = True  # "took epoch 2, and stalls itself as the main resumes"
    try:
        yield cluster, backup, ws, stopped_at
    finally:
        await ws.close()
        await backup.close()


async def _authenticated(url: str):
    ws = await connect(url, proxy=None, compression=None)
    await ws.recv()
    await ws.send(json.dumps({"type": "hello", "id": "h", "protocol": 1,
                              "token": ADMIN_TOKEN}))
    while json.loads(await ws.recv()).get("id") != "h":
        pass
    return ws


async def _route(ws, n: int, timeout: float = 5.0) -> dict[str, Any]:
    rid = f"r{n}"
    await ws.send(json.dumps({"type": "route", "id": rid, "router": "studio",
                              "destination": 1 + n % 16, "source": 1 + (n * 7) % 16}))
    async with asyncio.timeout(timeout):
        while True:
            answer = json.loads(await ws.recv())
            if answer.get("id") == rid:
                return answer


async def _hello_of(url: str) -> dict[str, Any]:
    async with connect(url, proxy=None, compression=None, open_timeout=10) as ws:
        return json.loads(await ws.recv())


async def _window(cluster: Cluster, ws, seconds: float) -> tuple[list[dict], list[dict]]:
    """Routes sent on the pinned connection every 50 ms for ``seconds``, and the main's
    status read meanwhile: (answers, statuses)."""
    answers: list[dict] = []
    statuses: list[dict] = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        answers.append(await _route(ws, n))
        n += 1
        status = await status_of(cluster.url("a"))
        if status is not None:
            statuses.append(status)
        await asyncio.sleep(0.05)
    return answers, statuses


async def test_a_resumed_main_does_not_act_on_heartbeats_written_before_its_pause(
        stalled_main):
    cluster, backup, ws, stopped_at = stalled_main
    # a client that connects during the pause gets its hello as the main resumes
    hello = asyncio.create_task(_hello_of(cluster.url("a")))
    await asyncio.sleep(0.2)
    cluster.procs["a"].signal(signal.SIGCONT)
    node = (await hello)["node"]
    assert node["state"] == "standby" and node["status"] == "Main is standby", node

    # 1.2 s (less than a lease) with only old heartbeats to go by: the main refuses
    # everything and never claims to be active
    answers, statuses = await _window(cluster, ws, 1.2)
    assert answers and all(not a["ok"] and a["error"]["code"] == "standby" for a in answers), \
        [a for a in answers if a["ok"]][:3]
    assert statuses and all(s["state"] == "standby" for s in statuses), statuses
    assert cluster.routes_sent(since=stopped_at) == []

    # the backup speaks again, written after the probe: it is active at epoch 2
    backup.state, backup.epoch, backup.silent = "active", 2, False
    await wait_for(lambda: status_is(cluster.url("a"), "Main is standby", BACKUP_API), 10,
                   "the main following the backup")
    assert (await status_of(cluster.url("a")))["epoch"] == 2
    assert cluster.routes_sent(since=stopped_at) == []
    log = cluster.procs["a"].output()
    assert "revalidated" not in log
    assert "not acting until every peer has answered a probe (epoch 1)" in log


async def test_a_resumed_main_goes_on_at_its_epoch_once_every_peer_answered(stalled_main):
    cluster, backup, ws, stopped_at = stalled_main
    cluster.procs["a"].signal(signal.SIGCONT)
    answers, _ = await _window(cluster, ws, 0.3)
    assert all(not a["ok"] for a in answers)
    backup.silent = False  # standby at epoch 1, and now echoing the probe
    await wait_for(lambda: status_is(cluster.url("a"), "Main is active"), 10, "a revalidated")
    status = await status_of(cluster.url("a"))
    assert status["epoch"] == 1  # the same epoch: nobody took a higher one
    answer = await _route(ws, 1000)
    assert answer["ok"], answer
    assert "every peer answered after the pause" in cluster.procs["a"].output()


async def test_a_resumed_main_that_hears_no_answer_gives_its_epoch_up(stalled_main):
    cluster, backup, ws, stopped_at = stalled_main
    cluster.procs["a"].signal(signal.SIGCONT)
    # the backup never answers: after a lease the main gives epoch 1 up, and then takes
    # over again as a new candidate, with a new epoch
    await wait_for(lambda: "giving epoch 1 up" in cluster.procs["a"].output(), 10,
                   "a gives epoch 1 up")
    await wait_for(lambda: status_is(cluster.url("a"), "Main is active"), 10, "a active")
    status = await status_of(cluster.url("a"))
    assert status["epoch"] == 2
    answer = await _route(ws, 2000)
    assert answer["ok"], answer


async def test_main_and_backup_paused_in_turn_never_act_at_a_superseded_epoch(make_cluster):
    """The fault the hardening report saw with two real nodes: the main is paused until
    the backup took over; the backup is paused just as the main resumes. A client pinned
    to the main sends routes throughout: none is acknowledged, none reaches the router."""
    cluster = make_cluster(failover=TIMING)
    cluster.start_device()
    await cluster.start_main_and_backup()
    ws = await _authenticated(cluster.url("a"))
    cluster.procs["a"].signal(signal.SIGSTOP)
    stopped_at = time.time()
    await wait_for(lambda: status_is(cluster.url("b"), "Backup is active"), 20, "b active")
    await asyncio.sleep(0.5)
    cluster.procs["b"].signal(signal.SIGSTOP)
    cluster.procs["a"].signal(signal.SIGCONT)
    try:
        answers, statuses = await _window(cluster, ws, 0.8)
    finally:
        cluster.procs["b"].signal(signal.SIGCONT)
    more, _ = await _window(cluster, ws, 1.0)
    acked = [a for a in answers + more if a["ok"]]
    assert acked == [], acked[:3]
    assert all(s["state"] == "standby" for s in statuses), statuses
    assert cluster.routes_sent(since=stopped_at) == []
    await wait_for(lambda: status_is(cluster.url("a"), "Main is standby", cluster.url("b")),
                   10, "a following b")
    await ws.close()
