"""A router that takes one controller at a time (``"standby_link": "cold"``), with real
processes: the standby never connects; the candidate connects and reads the router's state
before it takes over; the switch back hands the line over.

The emulator runs with ``--max-controllers 1``: a second connection is closed at once, as a
serial-to-IP server that takes one connection does (and as a serial line shared by two
machines would garble). Every node's router block says ``"standby_link": "cold"``.
"""

from __future__ import annotations

import signal
import time

from tieline.client import Client

from .cluster import OPERATOR_TOKEN, status_of, wait_for
from .test_lease import _state


def _refusals(cluster) -> int:
    return cluster.procs["device"].output().count("refused controller")


async def test_cold_standby_connects_on_promotion_and_reads_the_router_first(make_cluster):
    cluster = make_cluster(router={"standby_link": "cold"}, max_controllers=1)
    cluster.start_device()
    await cluster.start_main_and_backup()
    async with Client([cluster.url("a")], token=OPERATOR_TOKEN, failover=False) as client:
        await client.route("studio", 3, 4)
        await client.route("studio", 7, 2)
    time.sleep(1.0)  # several leases: a warm standby would have connected by now
    assert _refusals(cluster) == 0, "the standby tried to connect to a one-controller router"

    # -- the main dies: b connects, reads the router, then is active ---------------------
    killed = time.time()
    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: _state(cluster, "b", "Backup is active"), 20, "b active")
    assert not cluster.routes_sent(since=killed), "b sent routes on promotion"
    async with Client([cluster.url("b")], token=OPERATOR_TOKEN, failover=False) as client:
        await client.subscribe()
        mirror = client.routers["studio"]
        # what the router holds, read on promotion (b never saw these routes happen)
        assert (mirror.source("video", 3), mirror.source("video", 7)) == (4, 2)
        await client.route("studio", 5, 6)
    assert [x for _t, _peer, xs in cluster.routes_sent(since=killed) for x in xs] == [(0, 4, 5)]

    # -- the main returns: standby without connecting, then the handover -------------------
    before = _refusals(cluster)
    cluster.start_node("a")

    async def a_standby() -> bool:
        status = await status_of(cluster.url("a"))
        return bool(status) and status["status"] == "Main is standby"

    await wait_for(a_standby, 20, "a standby")
    await wait_for(lambda: _state(cluster, "a", "Main is active"), 20, "switch back")
    await wait_for(lambda: _state(cluster, "b", "Backup is idle"), 10, "b idle again")
    async with Client([cluster.url("a")], token=OPERATOR_TOKEN, failover=False) as client:
        await client.subscribe()
        assert client.routers["studio"].source("video", 5) == 6  # b's route, read by a
        await client.route("studio", 5, 9)
    # a reached the router only after b let go: at most the race of one reconnect
    assert _refusals(cluster) - before <= 1, cluster.procs["device"].output()[-2000:]
    assert (await status_of(cluster.url("b")))["status"] == "Backup is idle"
    # the router (read by hand once the nodes are gone: it takes one controller) holds
    # every acknowledged route
    cluster.procs["a"].stop()
    cluster.procs["b"].stop()
    device = await cluster.device_crosspoints()
    assert (device[2], device[6], device[4]) == (3, 1, 8)
