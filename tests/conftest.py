"""Shared test helpers."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tieline.testing import free_port, write_settings

from .etcdserver import EtcdServer, require_etcd

__all__ = ["free_port", "write_settings"]  # the tests import them from here too


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
