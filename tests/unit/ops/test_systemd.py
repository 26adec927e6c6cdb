"""sd_notify over real unix datagram sockets, and the unit `tieline service install` writes."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from tieline.cli import main as cli_main
from tieline.ops.systemd import notify, unit_file, watchdog_interval

TIELINE = str(Path(sys.executable).with_name("tieline"))
MAIN = {
    "node": {"name": "studio-a"},
    "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"], "sources": 4,
                 "destinations": 4}],
    "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
}


def test_notify_sends_one_datagram_to_a_socket_path(notify_socket):
    sock, path = notify_socket
    assert notify("READY=1\nSTATUS=Standalone is active", {"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=Standalone is active"


def test_notify_reaches_an_abstract_socket():
    name = f"tieline-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(10)
        assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_outside_a_service_manager_does_nothing():
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": ""}) is False


def test_notify_errors_name_the_socket(tmp_path):
    with pytest.raises(OSError):
        notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with pytest.raises(OSError, match="vsock"):
        notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1234"})


def test_watchdog_interval_is_half_of_watchdog_usec():
    assert watchdog_interval({"WATCHDOG_USEC": "200000"}) == 0.1
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 5
    assert watchdog_interval({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}) is None  # not us
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None


# -------------------------------------------------------------------------------------------
# tieline service install
# -------------------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file: {section: {key: [values in order]}} (comments skipped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, value = line.split("=", 1)
        current.setdefault(key, []).append(value)
    return sections


def install(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_main, ["service", "install", *args])
    return result.exit_code, result.stdout, result.stderr


def test_install_writes_a_notify_unit_with_watchdog_and_hardening(tmp_path, settings_dir):
    folder = settings_dir({"tieline.json": MAIN}, "studio-a")
    out = tmp_path / "units" / "x.service"
    out.parent.mkdir()
    code, stdout, stderr = install("--settings", str(folder), "--user", "tieline",
                                   "--output", str(out))
    assert code == 0, stderr
    unit = parse_unit(out.read_text())
    assert unit["Service"] == {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecStart": [f"{TIELINE} run --settings {folder}"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Restart": ["always"],
        "RestartSec": ["1"],
        "WatchdogSec": ["10"],
        "User": ["tieline"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ReadWritePaths": [str(folder)],
        "PrivateTmp": ["yes"],
        "ProtectKernelTunables": ["yes"],
        "ProtectKernelModules": ["yes"],
        "ProtectControlGroups": ["yes"],
        "RestrictSUIDSGID": ["yes"],
        "LockPersonality": ["yes"],
    }
    assert unit["Unit"]["After"] == ["network-online.target"]
    assert unit["Install"] == {"WantedBy": ["multi-user.target"]}
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    # what to run next; systemctl itself is not run
    assert f"wrote {out}: node 'studio-a'" in stdout
    assert f"sudo cp {out} /etc/systemd/system/tieline-studio-a.service" in stdout
    assert "sudo systemctl daemon-reload" in stdout
    assert "sudo systemctl enable --now tieline-studio-a.service" in stdout


def test_a_node_with_a_virtual_ip_gets_the_capabilities_it_needs(tmp_path, settings_dir):
    settings = {**MAIN, "node": {"name": "mcr-1", "role": "main"},
                "failover": {"strategy": "etcd", "endpoints": ["http://127.0.0.1:2379"],
                             "vip": {"address": "10.0.0.100/24", "interface": "lo"}}}
    folder = settings_dir({"tieline.json": settings}, "mcr-1")
    out = tmp_path / "x.service"
    code, _stdout, stderr = install("--settings", str(folder), "--user", "tieline",
                                    "--output", str(out))
    assert code == 0, stderr
    unit = parse_unit(out.read_text())
    assert unit["Service"]["AmbientCapabilities"] == ["CAP_NET_ADMIN CAP_NET_RAW"]
    assert unit["Service"]["User"] == ["tieline"]  # not root


def test_install_makes_the_folder_absolute_and_takes_name(tmp_path, settings_dir, monkeypatch):
    settings_dir({"tieline.json": MAIN}, "here")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "unit.service"
    code, stdout, stderr = install("--settings", "here", "--name", "mcr:1", "--user", "1001",
                                   "--output", str(out))
    assert code == 0, stderr
    unit = parse_unit(out.read_text())["Service"]
    assert unit["ExecStart"] == [f"{TIELINE} run --settings {tmp_path / 'here'}"]
    assert unit["ReadWritePaths"] == [str(tmp_path / "here")]
    assert unit["User"] == ["1001"]
    assert "enable --now tieline-mcr:1.service" in stdout


def test_install_refuses_an_invalid_folder_and_shows_the_problems(tmp_path, settings_dir):
    folder = settings_dir({"tieline.json": dict(
        MAIN, routers=[dict(MAIN["routers"][0], sources="4")])}, "bad")
    out = tmp_path / "x.service"
    code, stdout, stderr = install("--settings", str(folder), "--output", str(out))
    assert code == 1
    assert not out.exists()
    assert f"settings folder {folder} has 1 problem(s):" in stderr
    assert '$.routers[0].sources: expected an integer, got string "4"' in stderr
    assert "no unit written" in stderr


def test_install_refuses_bad_names_users_and_places(tmp_path, settings_dir):
    folder = settings_dir({"tieline.json": MAIN})
    code, _, stderr = install("--settings", str(folder), "--name", "a/b",
                              "--output", str(tmp_path / "u"))
    assert code == 2 and "name 'a/b' cannot be part of a unit name" in stderr
    code, _, stderr = install("--settings", str(folder), "--user", "bad user",
                              "--output", str(tmp_path / "u"))
    assert code == 2 and "user 'bad user' is not a valid user name" in stderr
    code, _, stderr = install("--settings", str(folder), "--user", "tieline",
                              "--output", str(tmp_path / "missing" / "u.service"))
    assert code == 1 and f"cannot write {tmp_path / 'missing' / 'u.service'}" in stderr
    assert "--output PATH" in stderr
    assert not (tmp_path / "u").exists()
    code, _, stderr = install("--output", str(tmp_path / "u"))
    assert code == 2 and "give --settings DIR" in stderr


def test_unit_escapes_blanks_specifiers_and_variables():
    text = unit_file(Path("/srv/studio a/50%"), command=["/opt/t$x/bin/tieline"],
                     user="tieline", name="a")
    unit = parse_unit(text)["Service"]
    assert unit["ExecStart"] == ['/opt/t$$x/bin/tieline run --settings "/srv/studio a/50%%"']
    assert unit["ReadWritePaths"] == ['"/srv/studio a/50%%"']
