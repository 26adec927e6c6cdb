"""The strategy in real tieline nodes: two nodes on one lock file, each with a router on
tieline's bundled simulator and a WebSocket API on 127.0.0.1. One node runs in its own
process, so that it can be killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tieline import Node, NodeStandby, Permission, Principal, SettingsError, State
from tieline.kit.testing import build_node, running_node, write_settings

from {{cookiecutter.plugin_name}}.record import decode

TIELINE = str(Path(sys.executable).with_name("tieline"))
OPERATOR = Principal("operator", Permission.ROUTE)


def settings(folder: Path, name: str, role: str, lock: Path, **failover: object) -> Path:
    return write_settings(folder / name, {"tieline.json": {
        "node": {"name": name, "role": role},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                     "sources": 8, "destinations": 8}],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
        "auth": {"loopback_anonymous_level": 2},
        "failover": {"strategy": "{{cookiecutter.strategy_name}}", "path": str(lock),
                     "poll_ms": 50, "backup_grace_ms": 100, **failover},
    }})


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (polled); TimeoutError if it does not in time."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def active(node: Node) -> bool:
    return node.status.state is State.ACTIVE


async def test_the_main_takes_the_lock_and_the_backup_follows(tmp_path):
    lock = tmp_path / "studio.lock"
    async with running_node(settings(tmp_path, "tl-a", "main", lock)) as main:
        await until(lambda: active(main))
        url = main.api_urls()[0]
        assert decode((tmp_path / "studio.lock.holder").read_bytes()).url == url
        async with running_node(settings(tmp_path, "tl-b", "backup", lock)) as backup:
            await until(lambda: backup.status.active == url)
            assert backup.status.state is State.STANDBY
            assert backup.status.epoch == main.status.epoch
            assert backup.status.text == "Backup is idle"
            with pytest.raises(NodeStandby, match=f"send requests to the active node \\({url}"):
                await backup.routing.route(OPERATOR, "studio", 2, 4)
            confirmed = await main.routing.route(OPERATOR, "studio", 2, 4)
            assert [(xp.destination, xp.source) for xp in confirmed] == [(2, 4)]


async def test_the_backup_takes_over_when_the_main_stops(tmp_path):
    lock = tmp_path / "studio.lock"
    async with running_node(settings(tmp_path, "tl-b", "backup", lock)) as backup:
        async with running_node(settings(tmp_path, "tl-a", "main", lock)) as main:
            await until(lambda: active(main) or active(backup))
            assert active(main), "the main starts first and wins; the backup waits its grace"
            first_epoch = main.status.epoch
        # the main stopped cleanly: it stopped acting, then let the lock go
        await until(lambda: active(backup))
        assert backup.status.text == "Backup is active"
        assert backup.status.epoch > first_epoch
        await backup.routing.route(OPERATOR, "studio", 1, 6)
        holder = decode((tmp_path / "studio.lock.holder").read_bytes())
        assert (holder.node, holder.epoch) == ("tl-b", backup.status.epoch)


async def test_the_backup_takes_over_from_a_main_killed_with_sigkill(tmp_path):
    lock = tmp_path / "studio.lock"
    record = tmp_path / "studio.lock.holder"
    main = subprocess.Popen([TIELINE, "run", "--settings",
                             str(settings(tmp_path, "tl-a", "main", lock))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        await until(lambda: record.exists() or main.poll() is not None, timeout=30)
        assert main.poll() is None, main.stderr.read() if main.stderr else ""
        url = decode(record.read_bytes()).url
        async with running_node(settings(tmp_path, "tl-b", "backup", lock)) as backup:
            await until(lambda: backup.status.active == url)
            await asyncio.sleep(0.3)  # several polls: the lock held by a live process wins
            assert backup.status.state is State.STANDBY
            os.kill(main.pid, signal.SIGKILL)
            await until(lambda: active(backup))  # the kernel released the dead node's lock
            await backup.routing.route(OPERATOR, "studio", 3, 3)
    finally:
        if main.poll() is None:
            main.kill()
        main.wait(10)


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_removed_or_replaced_lock_file_stops_the_active_node(tmp_path, caplog, how):
    lock = tmp_path / "studio.lock"
    async with running_node(settings(tmp_path, "tl-a", "main", lock)) as main:
        await until(lambda: active(main))
        first_epoch = main.status.epoch
        changes: list[State] = []
        main.failover.listeners.append(lambda status: changes.append(status.state))
        if how == "removed":
            lock.unlink()
        else:
            (tmp_path / "other").write_text("")
            os.replace(tmp_path / "other", lock)
        # it stops acting, then (the only node) locks the new file with a new epoch
        await until(lambda: changes[-2:] == [State.STANDBY, State.ACTIVE])
        assert main.status.epoch == first_epoch + 1
        assert "was removed or replaced" in caplog.text
        if how == "replaced":  # a new file while the old one was open: a new inode, so
            # it waited a fence window before acting, in case another node held the old one
            assert "was replaced since 'tl-a' locked it; waiting 1.0 s" in caplog.text


def test_a_relative_lock_path_is_refused_naming_the_key(tmp_path):
    folder = settings(tmp_path, "tl-a", "main", Path("studio.lock"))
    with pytest.raises(SettingsError) as refused:
        build_node(folder)
    assert "failover.path" in str(refused.value)
    assert "give the absolute path every node shares" in str(refused.value)


def test_the_schema_refuses_unknown_keys(tmp_path):
    folder = settings(tmp_path, "tl-a", "main", tmp_path / "x.lock", poll="fast")
    with pytest.raises(SettingsError, match="poll"):
        build_node(folder)
