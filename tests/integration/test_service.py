"""sd_notify from a real node: a unix datagram socket stands in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tieline.ops.systemd import ServiceNotifier

from .helpers import running_node
from .test_cli import TIELINE

MAIN = {
    "node": {"name": "svc"},
    "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"], "sources": 4,
                 "destinations": 4}],
    "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
}


def receive_until(sock: socket.socket, wanted: str) -> list[str]:
    """Datagrams received up to and including the first one that has the line ``wanted``."""
    got = []
    while True:
        message = sock.recv(4096).decode()
        got.append(message)
        if wanted in message.split("\n"):
            return got


def test_run_says_ready_pings_the_watchdog_and_says_stopping(notify_socket, settings_dir):
    sock, path = notify_socket
    folder = settings_dir({"tieline.json": MAIN})
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    proc = subprocess.Popen([TIELINE, "run", "--settings", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        before = receive_until(sock, "READY=1")
        assert before[-1] == "READY=1\nSTATUS=Standalone is active"
        assert set(before[:-1]) <= {"WATCHDOG=1"}
        # the node printed (and flushed) its serving line before it said READY=1: the line is
        # in the pipe already
        os.set_blocking(proc.stdout.fileno(), False)
        printed = os.read(proc.stdout.fileno(), 1 << 20).decode()
        assert "tieline: node 'svc' serving ws://127.0.0.1:" in printed
        os.set_blocking(proc.stdout.fileno(), True)

        # WATCHDOG_USEC=200000: a ping every 0.1 s while the loop runs
        pings = [sock.recv(4096) for _ in range(5)]
        assert pings == [b"WATCHDOG=1"] * 5

        proc.send_signal(signal.SIGTERM)
        after = receive_until(sock, "STOPPING=1")
        assert set(after[:-1]) <= {"WATCHDOG=1"}
        assert after[-1] == "STOPPING=1\nSTATUS=node 'svc' stopping"
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert out.decode().endswith("tieline: stopped\n")
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing after STOPPING=1 but pings
        while sock.recv(4096) == b"WATCHDOG=1":
            pass


async def test_a_node_built_in_python_tells_the_service_manager(notify_socket, settings_dir,
                                                                monkeypatch):
    """The node notifies by itself (not ``tieline run``): READY=1 once started, every status
    change, STOPPING=1 when it stops."""
    sock, path = notify_socket
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    loop = asyncio.get_running_loop()

    async def receive() -> str:
        async with asyncio.timeout(20):
            return (await loop.sock_recv(sock, 4096)).decode()

    async with running_node(settings_dir({"tieline.json": MAIN})) as node:
        assert await receive() == "READY=1\nSTATUS=Standalone is active"
        node.failover.update(epoch=7)  # what a failover strategy does
        assert await receive() == "STATUS=Standalone is active"
    assert await receive() == "STOPPING=1\nSTATUS=node 'svc' stopping"


async def test_an_unreachable_socket_is_logged_once_and_harms_nothing(settings_dir, tmp_path,
                                                                     caplog):
    caplog.set_level(logging.DEBUG, logger="tieline.ops.systemd")
    async with running_node(settings_dir({"tieline.json": MAIN})) as node:
        gone = str(tmp_path / "gone")
        async with ServiceNotifier(node, {"NOTIFY_SOCKET": gone}) as notifier:
            notifier.ready()
            node.failover.update(epoch=1)
            notifier.ready()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"cannot tell the service manager 'READY=1' through NOTIFY_SOCKET={gone}" in (
        warnings[0].getMessage())


def test_install_names_the_running_tieline_executable(settings_dir, tmp_path):
    folder = settings_dir({"tieline.json": MAIN})
    out = tmp_path / "svc.service"
    result = subprocess.run([TIELINE, "service", "install", "--settings", str(folder),
                             "--user", "nobody", "--output", str(out)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert Path(TIELINE).is_absolute()
    assert f"ExecStart={TIELINE} run --settings {folder}\n" in out.read_text()
