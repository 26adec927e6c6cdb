"""The failover-strategy template as an integrator uses it: ``tieline plugin new acme_lock
--kind strategy`` renders it, the result installs, its own tests pass (real nodes, one
killed with SIGKILL), ``tieline plugins`` lists it, and settings using it validate and run:
two ``tieline run`` processes share the lock; the backup takes over when the main is
killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import free_port, write_settings
from .kit import TIELINE, installed_plugin, run, run_generated_tests, start, stop

NAME = "acme_lock"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with installed_plugin(tmp_path_factory.mktemp("kit"), NAME, "strategy") as folder:
        yield folder


def test_the_generated_plugins_own_tests_pass(plugin):
    out = run_generated_tests(plugin)
    assert "skipped" not in out, out  # the SIGKILL test included


def test_tieline_plugins_lists_it(plugin):
    listed = json.loads(run(TIELINE, "plugins", "--json").stdout)
    (info,) = [p for p in listed["plugins"] if p["name"] == NAME]
    assert info == {"name": NAME, "distribution": "tieline-acme-lock", "version": "0.1.0",
                    "hooks": ["tieline_failover_strategies"], "status": "loaded",
                    "error": None}


def node_settings(folder: Path, name: str, role: str, port: int, lock: str) -> Path:
    return write_settings(folder, {"tieline.json": {
        "node": {"name": name, "role": role},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                     "sources": 16, "destinations": 16}],
        "apis": [{"type": "websocket", "listen": f"127.0.0.1:{port}"}],
        "auth": {"loopback_anonymous_level": 2},
        "failover": {"strategy": NAME, "path": lock, "poll_ms": 50, "backup_grace_ms": 200},
    }})


def status(url: str) -> dict:
    return json.loads(run(TIELINE, "status", "--json", "--server", url).stdout)


def test_a_relative_lock_path_is_refused_with_file_line_and_path(plugin, tmp_path):
    folder = node_settings(tmp_path / "a", "tl-a", "main", 8181, "studio.lock")
    result = subprocess.run([TIELINE, "validate", "--settings", str(folder)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "tieline.json" in result.stderr and "failover.path" in result.stderr
    assert "give the absolute path every node shares" in result.stderr


def test_two_nodes_share_the_lock_and_the_backup_takes_over(plugin, tmp_path):
    lock = str(tmp_path / "studio.lock")
    ports = free_port(), free_port()
    a = node_settings(tmp_path / "a", "tl-a", "main", ports[0], lock)
    b = node_settings(tmp_path / "b", "tl-b", "backup", ports[1], lock)
    for folder in (a, b):
        assert "valid (1 router(s), 1 API(s)" in run(TIELINE, "validate", "--settings",
                                                     str(folder)).stdout
    urls = [f"ws://127.0.0.1:{port}" for port in ports]
    main, _ = start(["run", "--settings", str(a)], " serving ")
    backup = None
    try:
        backup, _ = start(["run", "--settings", str(b)], " serving ")
        assert status(urls[0])["status"] == "Main is active"
        routed = run(TIELINE, "route", "3", "5", "--server", ",".join(urls))
        assert routed.stdout.strip().endswith("on video: confirmed"), routed.stdout
        os.kill(main.pid, signal.SIGKILL)
        main.wait(10)
        deadline = time.monotonic() + 20
        while (now := status(urls[1]))["status"] != "Backup is active":
            assert time.monotonic() < deadline, now
            time.sleep(0.05)
        assert now["epoch"] == 2
        routed = run(TIELINE, "route", "4", "6", "--server", ",".join(urls))
        assert routed.stdout.strip().endswith("on video: confirmed"), routed.stdout
    finally:
        if main.poll() is None:
            main.kill()
            main.wait(10)
        if backup is not None:
            assert "tieline: stopped" in stop(backup)
