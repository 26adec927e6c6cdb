"""The plugin templates as an integrator uses them (STYLE.md point 20): for every kind,
``tieline plugin new NAME --kind KIND`` renders it, the result installs (editable, into this
interpreter), its own tests pass and ``tieline plugins`` lists it; then settings using each
plugin validate and run, as ``tieline`` processes:

* driver: a node routes through the driver to its emulator (``tieline emulate``);
* api: ``tieline run`` serves the line API to a raw TCP client;
* strategy: two ``tieline run`` nodes share the lock, and the backup takes over when the
  main is killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tieline.kit.template import KINDS

from ..conftest import free_port, write_settings
from .kit import TIELINE, installed_plugin, run, run_generated_tests, start, stop

#: the plugin each kind is rendered as, and the hooks it implements
NAMES = {"driver": "acme_matrix", "api": "acme_panel", "strategy": "acme_lock"}
HOOKS = {
    "driver": ["tieline_emulators", "tieline_router_drivers"],
    "api": ["tieline_client_apis"],
    "strategy": ["tieline_failover_strategies"],
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """``installed(kind)``: the rendered plugin of ``kind``, installed editable into this
    interpreter on first use; every one is uninstalled after the module."""
    folders: dict[str, Path] = {}
    with ExitStack() as stack:
        def install(kind: str) -> Path:
            if kind not in folders:
                folders[kind] = stack.enter_context(installed_plugin(
                    tmp_path_factory.mktemp(kind), NAMES[kind], kind))
            return folders[kind]

        yield install


def test_every_kind_is_tested():
    assert set(NAMES) == set(HOOKS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_generated_plugins_own_tests_pass(installed, kind):
    out = run_generated_tests(installed(kind))
    assert "skipped" not in out, out  # the strategy's SIGKILL test included


@pytest.mark.parametrize("kind", KINDS)
def test_tieline_plugins_lists_it(installed, kind):
    installed(kind)
    name = NAMES[kind]
    listed = json.loads(run(TIELINE, "plugins", "--json").stdout)
    (info,) = [p for p in listed["plugins"] if p["name"] == name]
    assert info == {"name": name, "distribution": "tieline-" + name.replace("_", "-"),
                    "version": "0.1.0", "hooks": HOOKS[kind], "status": "loaded",
                    "error": None}


# -- driver ----------------------------------------------------------------------------------


def test_settings_using_its_driver_validate_and_run(installed, tmp_path):
    installed("driver")
    name = NAMES["driver"]
    port = free_port()
    emulator, _ = start(["emulate", name, "--listen", f"127.0.0.1:{port}", "--levels", "2",
                          "--inputs", "8", "--outputs", "8"], f"emulating {name}")
    node = None
    try:
        folder = write_settings(tmp_path / "lab", {"tieline.json": {
            "node": {"name": "lab"},
            "routers": [{"id": "studio", "driver": name, "levels": ["video", "audio"],
                         "sources": 8, "destinations": 8, "keepalive_interval_s": 2,
                         "transport": {"type": "tcp", "host": "127.0.0.1", "port": port}}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"loopback_anonymous_level": 2},
        }})
        valid = run(TIELINE, "validate", "--settings", str(folder))
        assert "valid (1 router(s), 1 API(s)" in valid.stdout
        node, banner = start(["run", "--settings", str(folder)], " serving ")
        url = banner.split(" serving ")[1].split()[0]
        routed = run(TIELINE, "route", "3", "5", "--server", url)
        assert routed.stdout.strip().endswith("on video, audio: confirmed"), routed.stdout
        tally = json.loads(run(TIELINE, "tally", "--json", "--server", url).stdout)
        (router,) = tally["routers"]
        assert router["id"] == "studio"
        for level in ("video", "audio"):
            assert {"level": level, "destination": 3, "source": 5} in router["crosspoints"]
        assert len(router["crosspoints"]) == 16  # the whole state was read
    finally:
        if node is not None:
            assert "tieline: stopped" in stop(node)
        stop(emulator)


# -- api -----------------------------------------------------------------------------------


class LineClient:
    """A control system, as little as it takes: lines out, lines in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.lines = self.sock.makefile("rb")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("ascii") + b"\r\n")

    def read_until(self, wanted: str) -> list[str]:
        """Lines up to and including ``wanted`` (unprompted TALLY lines may come first)."""
        lines: list[str] = []
        while not lines or lines[-1] != wanted:
            line = self.lines.readline()
            assert line, f"the server closed the connection after {lines}"
            lines.append(line.decode("ascii").rstrip("\r\n"))
        return lines

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


def test_settings_using_its_api_validate_and_run(installed, tmp_path):
    installed("api")
    name = NAMES["api"]
    port = free_port()
    folder = write_settings(tmp_path / "lab", {"tieline.json": {
        "node": {"name": "lab"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                     "sources": 8, "destinations": 8}],
        "apis": [{"type": name, "listen": f"127.0.0.1:{port}", "permission": 2}],
    }})
    valid = run(TIELINE, "validate", "--settings", str(folder))
    assert "valid (1 router(s), 1 API(s)" in valid.stdout
    node, banner = start(["run", "--settings", str(folder)], " serving ")
    try:
        assert f"{name} line API on 127.0.0.1:{port}" in banner
        client = LineClient(port)
        try:
            client.send("PING")
            assert client.read_until("PONG") == ["PONG"]
            client.send("ROUTE studio 3 5")
            answer = client.read_until("OK ROUTE studio 3 5")
            assert set(answer) <= {"TALLY studio 1 3 5", "TALLY studio 2 3 5",
                                   "OK ROUTE studio 3 5"}, answer
            client.send("TALLY? studio")
            dump = client.read_until("END")
            assert "TALLY studio 1 3 5" in dump and "TALLY studio 2 3 5" in dump
            assert len([line for line in dump if line.startswith("TALLY studio ")]) >= 16
            client.send("ROUTE studio 9 1")
            client.send("PING")  # the connection stays
            assert client.read_until("PONG")[-2:] == [
                "ERROR out_of_range router 'studio': destination 9 out of range (1-8)", "PONG"]
        finally:
            client.close()
    finally:
        assert "tieline: stopped" in stop(node)


# -- strategy ------------------------------------------------------------------------------


def node_settings(folder: Path, name: str, role: str, port: int, lock: str) -> Path:
    return write_settings(folder, {"tieline.json": {
        "node": {"name": name, "role": role},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                     "sources": 16, "destinations": 16}],
        "apis": [{"type": "websocket", "listen": f"127.0.0.1:{port}"}],
        "auth": {"loopback_anonymous_level": 2},
        "failover": {"strategy": NAMES["strategy"], "path": lock, "poll_ms": 50,
                     "backup_grace_ms": 200},
    }})


def status(url: str) -> dict:
    return json.loads(run(TIELINE, "status", "--json", "--server", url).stdout)


def test_a_relative_lock_path_is_refused_with_file_line_and_path(installed, tmp_path):
    installed("strategy")
    folder = node_settings(tmp_path / "a", "tl-a", "main", 8181, "studio.lock")
    result = subprocess.run([TIELINE, "validate", "--settings", str(folder)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "tieline.json" in result.stderr and "failover.path" in result.stderr
    assert "give the absolute path every node shares" in result.stderr


def test_two_nodes_share_the_lock_and_the_backup_takes_over(installed, tmp_path):
    installed("strategy")
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
