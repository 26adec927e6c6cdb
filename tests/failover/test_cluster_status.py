"""``tieline status`` on a real main+backup cluster: the node asked, and the whole cluster.

The operator must be able to see a backup: ``tieline status --server BACKUP`` shows the
backup's own status ("Backup is idle" while the main is healthy, "Backup is active" once
the main is gone), not the active node's. Given several servers, or ``--cluster``, it
shows every member as a table.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from typing import Any

from tieline.client import Client

from .cluster import ADMIN_TOKEN, TIELINE, Cluster, status_is, wait_for
from .test_etcd import make_etcd_cluster, start_three  # noqa: F401 - the fixture


async def tieline_status(*args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(
        subprocess.run, [TIELINE, "status", "--token", ADMIN_TOKEN, *args],
        capture_output=True, text=True, timeout=30)


async def members(*args: str) -> dict[str, dict[str, Any]]:
    """The members ``tieline status ARGS --json`` lists, by node name."""
    shown = await tieline_status(*args, "--json")
    assert shown.returncode == 0, shown.stderr
    return {m["node"]: m for m in json.loads(shown.stdout)["members"]}


def row(stdout: str, name: str) -> list[str]:
    """The cells of member ``name``'s line in the table (split on runs of 2+ spaces)."""
    import re

    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row for {name!r} in:\n{stdout}")


async def test_status_of_a_backup_and_of_the_cluster_before_and_after_the_main_dies(
        make_cluster):
    cluster: Cluster = make_cluster()
    cluster.start_device()
    await cluster.start_main_and_backup()
    a_url, b_url = cluster.url("a"), cluster.url("b")

    # the backup's own status, not the main's
    shown = await tieline_status("--server", b_url)
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    assert first.startswith("b: Backup is idle (role backup, state standby, epoch "), shown.stdout
    assert f"peer 127.0.0.1:{cluster.peer_ports['a']}: node 'a' (main, active, epoch " \
        in shown.stdout
    # the Python client asked to stay reads the backup; by default it moves to the main
    async with Client(b_url, token=ADMIN_TOKEN, follow_active=False) as pinned:
        assert pinned.endpoint == b_url
        assert (await pinned.status())["status"] == "Backup is idle"
    async with Client(b_url, token=ADMIN_TOKEN) as following:
        assert following.endpoint == a_url

    # several servers: one row per member, each asked itself
    shown = await tieline_status("--server", f"{a_url},{b_url}")
    assert shown.returncode == 0, shown.stderr
    assert row(shown.stdout, "a")[1:4] == ["main", "active", "Main is active"]
    assert row(shown.stdout, "a")[5:7] == [a_url, "yes"]
    assert row(shown.stdout, "b")[1:4] == ["backup", "standby", "Backup is idle"]
    assert row(shown.stdout, "b")[5:7] == [b_url, "yes"]
    listed = await members("--server", f"{a_url},{b_url}")
    assert set(listed) == {"a", "b"}
    for name, url in (("a", a_url), ("b", b_url)):
        assert listed[name]["url"] == url and listed[name]["reachable"] is True
        assert listed[name]["asked"] is True
        # each is heard by the other: the age of its last heartbeat, and who saw it
        assert isinstance(listed[name]["heard_ms_ago"], int), listed[name]
        assert listed[name]["seen_by"] == ("b" if name == "a" else "a")
    assert listed["a"]["epoch"] == listed["b"]["epoch"] >= 1

    # --cluster: one node asked, its peers from its own view
    for asked, other in (("b", "a"), ("a", "b")):
        listed = await members("--server", cluster.url(asked), "--cluster")
        assert set(listed) == {"a", "b"}, listed
        assert listed[asked]["asked"] is True and listed[asked]["heard_ms_ago"] is None
        assert listed[other]["asked"] is False and listed[other]["reachable"] is True
        assert listed[other]["url"] == cluster.url(other)
        assert listed[other]["seen_by"] == asked
        assert 0 <= listed[other]["heard_ms_ago"] < 1000
    assert listed["a"]["status"] == "Main is active"
    assert listed["b"]["status"] == "Backup is idle"

    # kill -9 of the main: the backup says so of itself
    cluster.procs["a"].signal(signal.SIGKILL)
    await wait_for(lambda: status_is(b_url, "Backup is active"), 20, "b active")
    shown = await tieline_status("--server", b_url)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("b: Backup is active (role backup, state active, epoch ")

    shown = await tieline_status("--server", f"{a_url},{b_url}")
    assert shown.returncode == 0, shown.stderr  # one node answered
    assert row(shown.stdout, "b")[1:4] == ["backup", "active", "Backup is active"]
    assert row(shown.stdout, "a")[5:7] == [a_url, "NO"]
    assert a_url in shown.stderr  # why it could not be asked
    listed = await members("--server", f"{a_url},{b_url}")
    assert listed["a"]["reachable"] is False and listed["a"]["error"]
    assert listed["a"]["role"] == "main"  # known from b's view of it
    assert listed["a"]["heard_ms_ago"] >= 600  # b has not heard it for at least a lease

    listed = await members("--server", b_url, "--cluster")
    assert listed["a"]["reachable"] is False and listed["a"]["seen_by"] == "b"
    assert listed["b"]["status"] == "Backup is active"

    # no node answers at all: exit 3
    cluster.procs["b"].signal(signal.SIGKILL)
    shown = await tieline_status("--server", f"{a_url},{b_url}")
    assert shown.returncode == 3, (shown.stdout, shown.stderr)


async def test_cluster_status_from_etcd_members(make_etcd_cluster):  # noqa: F811
    cluster = make_etcd_cluster()
    await start_three(cluster)
    listed = await members("--server", cluster.url("c"), "--cluster")
    assert set(listed) == {"a", "b", "c"}, listed
    assert listed["a"]["state"] == "active" and listed["a"]["role"] == "main"
    assert listed["b"]["state"] == listed["c"]["state"] == "standby"
    assert listed["a"]["url"] == cluster.url("a")
    assert listed["a"]["reachable"] is True and listed["a"]["seen_by"] == "c"
    epoch = listed["a"]["epoch"]
    assert epoch >= 1 and listed["c"]["epoch"] == epoch

    cluster.procs["a"].signal(signal.SIGKILL)

    async def taken_over() -> bool:
        found = await members("--server", f"{cluster.url('b')},{cluster.url('c')}")
        return any(found[n]["state"] == "active" for n in ("b", "c"))

    await wait_for(taken_over, 20, "b or c active")
    await asyncio.sleep(2.5)  # a's session lease (1 s) has expired: its member key is gone
    listed = await members("--server", cluster.url("c"), "--cluster")
    assert listed["a"]["reachable"] is False, listed["a"]  # remembered, no longer registered
    assert listed["a"]["heard_ms_ago"] >= 1000
