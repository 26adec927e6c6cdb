"""The cluster key (``tieline keys generate``) and what a peer link refuses to send.

The network side of the peer link is in tests/integration/test_peerlink.py.
"""

from __future__ import annotations

import logging
import os
import stat

import asyncssh
import pytest
from click.testing import CliRunner

from tieline.cli import main
from tieline.errors import TielineError
from tieline.cluster.peerlink import (
    ClusterKeyError,
    PeerLink,
    format_address,
    generate_cluster_key,
    load_cluster_key,
)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_an_ed25519_openssh_key_readable_only_by_its_owner(tmp_path):
    folder = tmp_path / "settings"  # created on the way
    old_umask = os.umask(0)  # the modes must not depend on the umask
    try:
        path = generate_cluster_key(folder)
    finally:
        os.umask(old_umask)
    assert path == folder / "cluster.key"
    assert _mode(path) == 0o600
    public = folder / "cluster.key.pub"
    assert _mode(public) == 0o644
    assert path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    key = load_cluster_key(path)
    assert key.algorithm == b"ssh-ed25519"
    assert public.read_bytes().split()[:2] == key.export_public_key("openssh").split()[:2]
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temp left


def test_generate_refuses_to_replace_a_key_unless_forced(tmp_path):
    path = generate_cluster_key(tmp_path, "peers.key")
    before = path.read_bytes()
    with pytest.raises(ClusterKeyError, match="peers.key already exists.*--force") as info:
        generate_cluster_key(tmp_path, "peers.key")
    assert info.value.path == path
    assert path.read_bytes() == before
    (tmp_path / "other.key.pub").write_text("ssh-ed25519 AAAA left over\n")
    with pytest.raises(ClusterKeyError, match="other.key.pub already exists"):
        generate_cluster_key(tmp_path, "other.key")
    assert not (tmp_path / "other.key").exists()
    assert generate_cluster_key(tmp_path, "peers.key", force=True) == path
    assert path.read_bytes() != before
    assert _mode(path) == 0o600


def test_load_names_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "cluster.key"
    with pytest.raises(ClusterKeyError, match=f"{missing} not found.*tieline keys generate"):
        load_cluster_key(missing)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    with pytest.raises(ClusterKeyError, match=f"{garbage} is not a usable cluster key"):
        load_cluster_key(garbage)
    with pytest.raises(ClusterKeyError, match="not a regular file"):
        load_cluster_key(tmp_path)
    assert issubclass(ClusterKeyError, TielineError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_load_an_unreadable_key(tmp_path):
    path = generate_cluster_key(tmp_path)
    path.chmod(0)
    try:
        with pytest.raises(ClusterKeyError, match=f"cannot read the cluster key {path}: "
                                                  "permission denied.*chmod 600"):
            load_cluster_key(path)
    finally:
        path.chmod(0o600)


def test_load_warns_about_a_key_others_may_read(tmp_path, caplog):
    path = generate_cluster_key(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tieline.cluster.peerlink"):
        load_cluster_key(path)
    assert not caplog.records
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="tieline.cluster.peerlink"):
        key = load_cluster_key(path)
    assert key is not None
    (record,) = caplog.records
    assert str(path) in record.getMessage()
    assert "mode 0644" in record.getMessage() and f"chmod 600 {path}" in record.getMessage()
    # loaded again (the settings check, then the peer link): said once
    with caplog.at_level(logging.WARNING, logger="tieline.cluster.peerlink"):
        load_cluster_key(path)
    assert len(caplog.records) == 1


def test_keys_generate_command(tmp_path):
    runner = CliRunner()
    folder = tmp_path / "studio-a"
    made = runner.invoke(main, ["keys", "generate", str(folder)])
    assert made.exit_code == 0, made.output
    path = folder / "cluster.key"
    assert str(path) in made.output
    assert load_cluster_key(path).get_fingerprint() in made.output
    assert _mode(path) == 0o600
    before = path.read_bytes()

    again = runner.invoke(main, ["keys", "generate", str(folder)])
    assert again.exit_code == 1
    assert "already exists" in again.output and "--force" in again.output
    assert path.read_bytes() == before

    forced = runner.invoke(main, ["keys", "generate", str(folder), "--force"])
    assert forced.exit_code == 0, forced.output
    assert path.read_bytes() != before

    named = runner.invoke(main, ["keys", "generate", str(folder), "--name", "b.key"])
    assert named.exit_code == 0, named.output
    assert (folder / "b.key").is_file() and (folder / "b.key.pub").is_file()


def test_format_address():
    assert format_address("10.0.0.2", 7401) == "10.0.0.2:7401"
    assert format_address("::1", 7401) == "[::1]:7401"
    assert format_address("backup.example", 7401) == "backup.example:7401"


def _link(**options) -> PeerLink:
    options.setdefault("heartbeat_timeout_s", 1.0)
    return PeerLink(node="a", listen=("127.0.0.1", 0), peers=[("127.0.0.1", 7402)],
                    key=asyncssh.generate_private_key("ssh-ed25519"),
                    on_message=lambda peer, message: None, **options)


def test_send_refuses_what_is_not_a_message():
    link = _link(max_message_bytes=1024)
    assert list(link.peers) == ["127.0.0.1:7402"]
    with pytest.raises(ValueError, match='needs a string "type"'):
        link.send("127.0.0.1:7402", {"epoch": 1})
    with pytest.raises(ValueError, match="reserved"):
        link.broadcast({"type": "peerlink.hello"})
    with pytest.raises(ValueError, match="limit is 1024"):
        link.send("127.0.0.1:7402", {"type": "settings", "data": "x" * 2000})
    with pytest.raises(TypeError):
        link.send("127.0.0.1:7402", {"type": "x", "data": object()})
    # well-formed, but nobody to send it to: not started, and an unknown address
    assert link.send("127.0.0.1:7402", {"type": "heartbeat"}) is False
    assert link.send("10.9.9.9:1", {"type": "heartbeat"}) is False
    assert link.broadcast({"type": "heartbeat"}) == 0


def test_set_peers_before_start():
    link = _link()
    link.set_peers([("::1", 7403), "10.0.0.3:7401"])
    assert sorted(link.peers) == ["10.0.0.3:7401", "[::1]:7403"]
    peer = link.peers["[::1]:7403"]
    assert (peer.name, peer.connected, peer.last_heard) == (None, False, None)
    assert not peer.heard_within(1e9)


def test_bad_settings():
    with pytest.raises(ValueError, match="heartbeat_timeout_s"):
        _link(heartbeat_timeout_s=0)
    with pytest.raises(ValueError, match="max_queue_bytes"):
        _link(max_message_bytes=1000, max_queue_bytes=10)
