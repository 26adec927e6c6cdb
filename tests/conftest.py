"""Shared test helpers."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tieline.kit.testing import free_port, write_settings

from .etcdserver import EtcdServer, require_etcd

__all__ = ["free_port", "self_signed_pem", "write_settings"]  # the tests import them too


def self_signed_pem(name: str = "127.0.0.1") -> tuple[bytes, bytes]:
    """A self-signed certificate for ``name`` (an IP address or a host name) and its
    private key, both PEM: ``(certificate, key)``. EC P-256, valid for a day."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alt = x509.DNSName(name)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


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
