"""Shared test helpers."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .etcdserver import EtcdServer, require_etcd


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_settings(folder: Path, files: dict[str, object]) -> Path:
    """Write a settings folder: values that are str are written as is, others as JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def settings_dir(tmp_path: Path):
    """Factory: ``settings_dir({"tieline.json": {...}})`` -> folder."""

    def make(files: dict[str, object], name: str = "settings") -> Path:
        return write_settings(tmp_path / name, files)

    return make


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A unix datagram socket on a short path (sun_path holds 108 bytes), as systemd's
    NOTIFY_SOCKET is: ``(socket, path)``."""
    folder = tempfile.mkdtemp(prefix="tl-notify-")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)  # a bound on each wait, not a measured time
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


@pytest.fixture
def etcd(tmp_path: Path):
    """A real throwaway etcd (see tests/etcdserver.py), stopped and removed afterwards.

    Skips when the etcd binary is missing, except with CI=true, where that fails the test.
    """
    require_etcd()
    server = EtcdServer(log_path=tmp_path / "etcd.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
