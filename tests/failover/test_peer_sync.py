"""Peer sync with real processes: both nodes active on one router; one settings writer."""

from __future__ import annotations

import asyncio
import json
import signal

from .cluster import Cluster, status_of, wait_for
from .test_lease import _answer, _raw


async def test_peers_both_route_and_follow_each_others_tally(make_cluster):
    cluster: Cluster = make_cluster(failover={"strategy": "peer_sync"})
    for name in ("a", "b"):
        cluster.write_settings(name)
        path = cluster.folder(name) / "tieline.json"
        data = json.loads(path.read_text())
        for key in ("switch_back", "hold_down_s", "renew_deadline_ms", "lease_ms"):
            data["failover"].pop(key, None)
        path.write_text(json.dumps(data))
    cluster.start_device()
    cluster.start_node("a")
    cluster.start_node("b")

    async def both_active() -> bool:
        a, b = await status_of(cluster.url("a")), await status_of(cluster.url("b"))
        return bool(a and b) and a["status"] == "Main is active" \
            and b["status"] == "Backup is active"

    await wait_for(both_active, 20, "both active")
    a, b = await _raw(cluster.url("a")), await _raw(cluster.url("b"))
    await _answer(b, {"type": "subscribe", "id": "s", "snapshot": False})
    assert (await _answer(a, {"type": "route", "id": 1, "router": "studio",
                              "destination": 3, "source": 7}))["ok"]
    snapshot = (await _answer(b, {"type": "snapshot", "id": 2}))["result"]
    async with asyncio.timeout(5):  # b shows a's route through the router's tally
        while snapshot["routers"][0]["crosspoints"]["video"][2] != 7:
            await asyncio.sleep(0.05)
            snapshot = (await _answer(b, {"type": "snapshot", "id": 3}))["result"]
    assert (await _answer(b, {"type": "route", "id": 4, "router": "studio",
                              "destination": 4, "source": 2}))["ok"]

    # one settings writer: the main; the backup is read-only, and receives the main's labels
    refused = await _answer(b, {"type": "label", "id": 5, "router": "studio",
                                "kind": "source", "index": 1, "text": "B"})
    assert refused["error"]["code"] == "read_only", refused
    assert (await _answer(a, {"type": "label", "id": 6, "router": "studio",
                              "kind": "source", "index": 1, "text": "CAM 1"}))["ok"]
    labels_b = cluster.folder("b") / "labels.json"
    await wait_for(lambda: labels_b.exists() and "CAM 1" in labels_b.read_text(), 10,
                   "labels replicated")

    # a peer that was away catches up when it returns
    cluster.procs["b"].signal(signal.SIGKILL)
    assert (await _answer(a, {"type": "label", "id": 7, "router": "studio",
                              "kind": "source", "index": 2, "text": "CAM 2"}))["ok"]
    await a.close()
    cluster.start_node("b")
    await wait_for(lambda: "CAM 2" in labels_b.read_text(), 20, "b caught up")
