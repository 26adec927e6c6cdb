"""Settings loading: every malformed folder is refused with file, line:column and JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tieline.cli import main
from tieline.errors import InvalidRequest, SettingsError
from tieline.model import Crosspoint, PortKind
from tieline.cluster.peerlink import generate_cluster_key
from tieline.plugin_manager import Plugins
from tieline.settings.loader import change_failover_peers, load_settings

from ...conftest import self_signed_pem

GOOD = {
    "node": {"name": "studio-main", "role": "standalone"},
    "routers": [{"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                 "sources": 32, "destinations": 32}],
    "apis": [{"type": "websocket", "listen": "127.0.0.1:8181"}],
    "auth": {"users_file": "users.json", "loopback_anonymous_level": 0},
}
USERS = {"users": [{"name": "alice", "level": 2, "token_sha256": "a" * 64}]}


def good(**changes: object) -> dict:
    data = json.loads(json.dumps(GOOD))
    data.update(changes)
    return data


def raw(data: dict, **tokens: str) -> str:
    """``data`` as JSON text, each string ``"@NAME@"`` replaced by ``tokens[NAME]`` as it is
    (for text no JSON encoder writes: ``NaN``, ``Infinity``)."""
    text = json.dumps(data, indent=2)
    for name, token in tokens.items():
        text = text.replace(f'"@{name}@"', token)
    return text


def _cluster_key() -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return generate_cluster_key(Path(folder)).read_text()


CERT, KEY = (text.decode() for text in self_signed_pem())
OTHER_CERT, OTHER_KEY = (text.decode() for text in self_signed_pem("studio.example"))
CLUSTER_KEY = _cluster_key()
SIM = {"id": "studio", "driver": "simulator", "levels": ["video"], "sources": 8,
       "destinations": 8}


def lease(**failover: object) -> dict:
    """A main node on the lease strategy, its failover block with ``failover``."""
    return good(node={"name": "a", "role": "main"}, failover={
        "strategy": "lease", "listen": "127.0.0.1:7401", "peers": ["127.0.0.1:7402"],
        **failover})


def tls_api(**tls: str) -> dict:
    return good(apis=[{"type": "websocket", "listen": "127.0.0.1:8181",
                       "tls": {"certificate": "cert.pem", "key": "key.pem", **tls}}])


def validate(folder: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", "--settings", str(folder)])
    return result.exit_code, result.output


def test_good_folder_loads(settings_dir):
    folder = settings_dir({
        "tieline.json": GOOD, "users.json": USERS,
        "salvos.json": {"salvos": [{"name": "news", "router": "studio", "crosspoints": [
            {"destination": 1, "source": 2}, {"destination": 3, "source": 4, "levels": ["audio"]}]}]},
        "labels.json": {"routers": {"studio": {"sources": {"1": "CAM 1"},
                                               "destinations": {"32": "PGM"}}}},
    })
    settings = load_settings(folder, Plugins())
    assert settings.node_name == "studio-main"
    assert [r.spec.id for r in settings.routers] == ["studio"]
    assert settings.routers[0].spec.levels == ("video", "audio")
    assert settings.routers[0].label_store == "device"  # the simulator stores labels
    assert settings.salvos[0].crosspoints == (
        Crosspoint(0, 0, 1), Crosspoint(1, 0, 1), Crosspoint(1, 2, 3))
    assert settings.labels["studio"][PortKind.DESTINATION] == {31: "PGM"}
    assert settings.users[0].name == "alice"
    code, out = validate(folder)
    assert code == 0, out
    assert "valid (1 router(s), 1 API(s), 1 salvo(s), 1 user(s))" in out


# Each case: files of the folder, then (file:line:col, JSON path, words of the message).
CASES = {
    "bad JSON": (
        {"tieline.json": '{\n  "node": {"name": "a"}\n  "routers": []\n}\n'},
        [("tieline.json:3:3", "$", "invalid JSON")],
    ),
    "truncated file": (
        {"tieline.json": '{\n  "node": {"name": "a"},\n  "routers": [\n'},
        [("tieline.json:4:1", "$.routers", "file ends in the middle of the JSON (truncated?)")],
    ),
    "empty file": (
        {"tieline.json": ""},
        [("tieline.json:1:1", "$", "empty")],
    ),
    "wrong type": (
        {"tieline.json": good(routers=[{**GOOD["routers"][0], "sources": "32"}]), "users.json": USERS},
        [("tieline.json:14:18", "$.routers[0].sources", 'expected an integer, got string "32"')],
    ),
    "unknown top-level key": (
        {"tieline.json": {**GOOD, "rooters": []}, "users.json": USERS},
        [("tieline.json:", "$.rooters", "unknown key 'rooters'; did you mean 'routers'?")],
    ),
    "unknown router key": (
        {"tieline.json": good(routers=[{**GOOD["routers"][0], "sorces": 4}]), "users.json": USERS},
        [("tieline.json:", "$.routers[0].sorces", "unknown key 'sorces'; did you mean 'sources'?")],
    ),
    "unknown driver": (
        {"tieline.json": good(routers=[{**GOOD["routers"][0], "driver": "videohubb"}]),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].driver", "unknown driver 'videohubb'")],
    ),
    "duplicate router ids": (
        {"tieline.json": good(routers=[GOOD["routers"][0], GOOD["routers"][0]]), "users.json": USERS},
        [("tieline.json:", "$.routers[1].id", "duplicate router id 'studio'")],
    ),
    "out-of-range number": (
        {"tieline.json": good(routers=[{**GOOD["routers"][0], "destinations": 0}]),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].destinations", "expected a number ≥ 1, got 0")],
    ),
    "out-of-range anonymous level": (
        {"tieline.json": good(auth={"loopback_anonymous_level": 7})},
        [("tieline.json:", "$.auth.loopback_anonymous_level", "expected a number ≤ 3, got 7")],
    ),
    "missing required key": (
        {"tieline.json": good(node={"role": "standalone"}), "users.json": USERS},
        [("tieline.json:2:11", "$.node", "missing required key 'name'")],
    ),
    "bad enum": (
        {"tieline.json": good(node={"name": "a", "role": "primary"}), "users.json": USERS},
        [("tieline.json:", "$.node.role", "expected one of \"standalone\", \"main\", \"backup\"")],
    ),
    "salvo naming a missing destination": (
        {"tieline.json": GOOD, "users.json": USERS,
         "salvos.json": {"salvos": [{"name": "x", "router": "studio",
                                     "crosspoints": [{"destination": 33, "source": 1}]}]}},
        [("salvos.json:", "$.salvos[0].crosspoints[0].destination",
          "router 'studio' has no destination 33 (1–32)")],
    ),
    "salvo naming a missing router": (
        {"tieline.json": GOOD, "users.json": USERS,
         "salvos.json": {"salvos": [{"name": "x", "router": "nowhere",
                                     "crosspoints": [{"destination": 1, "source": 1}]}]}},
        [("salvos.json:", "$.salvos[0].router", "no router 'nowhere'")],
    ),
    "salvo naming a missing level": (
        {"tieline.json": GOOD, "users.json": USERS,
         "salvos.json": {"salvos": [{"name": "x", "router": "studio", "crosspoints": [
             {"destination": 1, "source": 1, "levels": ["audio 2"]}]}]}},
        [("salvos.json:", "$.salvos[0].crosspoints[0].levels[0]", "no level 'audio 2'")],
    ),
    "duplicate salvo names": (
        {"tieline.json": GOOD, "users.json": USERS, "salvos.json": {"salvos": [
            {"name": "x", "router": "studio", "crosspoints": [{"destination": 1, "source": 1}]},
            {"name": "x", "router": "studio", "crosspoints": [{"destination": 2, "source": 1}]}]}},
        [("salvos.json:", "$.salvos[1].name", "duplicate salvo name 'x'")],
    ),
    "label of a missing port": (
        {"tieline.json": GOOD, "users.json": USERS,
         "labels.json": {"routers": {"studio": {"sources": {"40": "CAM 40"}}}}},
        [("labels.json:", "$.routers.studio.sources[\"40\"]", "has no source 40 (1–32)")],
    ),
    "missing users file": (
        {"tieline.json": GOOD},
        [("tieline.json:", "$.auth.users_file", "users file 'users.json' not found")],
    ),
    "bad token hash": (
        {"tieline.json": GOOD,
         "users.json": {"users": [{"name": "bob", "level": 2, "token_sha256": "secret"}]}},
        [("users.json:", "$.users[0].token_sha256", "has the wrong form")],
    ),
    "unknown API type": (
        {"tieline.json": good(apis=[{"type": "rest", "listen": "127.0.0.1:80"}]), "users.json": USERS},
        [("tieline.json:", "$.apis[0].type", "unknown API type 'rest'")],
    ),
    "two APIs on one port": (
        {"tieline.json": good(apis=[GOOD["apis"][0], GOOD["apis"][0]]), "users.json": USERS},
        [("tieline.json:", "$.apis[1].listen", "127.0.0.1:8181 is already used by $.apis[0]")],
    ),
    "unknown key in an API block": (
        {"tieline.json": good(apis=[{**GOOD["apis"][0], "heartbeat_ms": 5}]), "users.json": USERS},
        [("tieline.json:", "$.apis[0].heartbeat_ms", "unknown key 'heartbeat_ms'")],
    ),
    "bad listen address": (
        {"tieline.json": good(apis=[{"type": "websocket", "listen": "8181"}]), "users.json": USERS},
        [("tieline.json:21:17", "$.apis[0].listen",
          "'8181' has no port; write HOST:PORT")],
    ),
    "listen port above 65535": (
        {"tieline.json": good(apis=[{"type": "websocket", "listen": "127.0.0.1:70000"}]),
         "users.json": USERS},
        [("tieline.json:21:17", "$.apis[0].listen",
          "'127.0.0.1:70000': port 70000 is out of range; write a port from 0 to 65535 "
          "(0: any free port)")],
    ),
    "IPv6 listen port above 65535": (
        {"tieline.json": good(apis=[{"type": "websocket", "listen": "[::1]:99999"}]),
         "users.json": USERS},
        [("tieline.json:21:17", "$.apis[0].listen", "'[::1]:99999': port 99999 is out of range")],
    ),
    "IPv6 listen address without brackets": (
        {"tieline.json": good(apis=[{"type": "websocket", "listen": "::1:8181"}]),
         "users.json": USERS},
        [("tieline.json:", "$.apis[0].listen",
          "'::1:8181': write an IPv6 address in brackets, e.g. [::1]:8181")],
    ),
    "peer link ports above 65535": (
        {"tieline.json": lease(listen="127.0.0.1:70000", peers=["[::1]:99999"]),
         "users.json": USERS, "cluster.key": CLUSTER_KEY},
        [("tieline.json:", "$.failover.listen", "port 70000 is out of range"),
         ("tieline.json:", "$.failover.peers[0]",
          "'[::1]:99999': port 99999 is out of range; write a port from 1 to 65535")],
    ),
    "a peer on port 0": (
        {"tieline.json": lease(peers=["10.0.0.2:0"]), "users.json": USERS,
         "cluster.key": CLUSTER_KEY},
        [("tieline.json:", "$.failover.peers[0]", "port 0 is out of range; write a port from "
                                                  "1 to 65535")],
    ),
    "advertised URL with a port above 65535": (
        {"tieline.json": lease(advertise="ws://127.0.0.1:99999"), "users.json": USERS,
         "cluster.key": CLUSTER_KEY},
        [("tieline.json:", "$.failover.advertise",
          "'ws://127.0.0.1:99999': port 99999 is out of range; write a port from 1 to 65535")],
    ),
    "advertised URL that is not ws:// or wss://": (
        {"tieline.json": lease(advertise="127.0.0.1:8181"), "users.json": USERS,
         "cluster.key": CLUSTER_KEY},
        [("tieline.json:", "$.failover.advertise",
          "'127.0.0.1:8181' is not a ws:// or wss:// URL; write e.g. ws://10.0.0.1:8181")],
    ),
    "NaN in a number field": (
        {"tieline.json": raw(lease(hold_down_s="@x@"), x="NaN"), "users.json": USERS,
         "cluster.key": CLUSTER_KEY},
        [("tieline.json:", "$.failover.hold_down_s",
          "invalid JSON: NaN is not a JSON number (JSON has no NaN or infinity); write a number")],
    ),
    "Infinity in a number field": (
        {"tieline.json": raw(good(routers=[{**SIM, "switch_delay_ms": "@x@"}]), x="Infinity"),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].switch_delay_ms", "Infinity is not a JSON number")],
    ),
    "a number too large to be finite": (
        {"tieline.json": raw(good(routers=[{**SIM, "switch_delay_ms": "@x@"}]), x="1e400"),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].switch_delay_ms", "number 1e400 is too large")],
    ),
    "a switch delay no router has": (
        {"tieline.json": good(routers=[{**SIM, "switch_delay_ms": 1e300}]), "users.json": USERS},
        [("tieline.json:", "$.routers[0].switch_delay_ms", "expected a number ≤ 60000")],
    ),
    "an integer written with a fraction": (
        {"tieline.json": good(routers=[{**SIM, "sources": 8.0}]), "users.json": USERS},
        [("tieline.json:", "$.routers[0].sources", "expected an integer, got number 8.0")],
    ),
    "a TLS certificate that is not one": (
        {"tieline.json": tls_api(), "users.json": USERS, "cert.pem": "garbage\n", "key.pem": KEY},
        [("tieline.json:", "$.apis[0].tls.certificate",
          "file 'cert.pem' holds no PEM certificate")],
    ),
    "a TLS key that is not one": (
        {"tieline.json": tls_api(), "users.json": USERS, "cert.pem": CERT, "key.pem": "garbage\n"},
        [("tieline.json:", "$.apis[0].tls.key", "file 'key.pem' holds no PEM private key")],
    ),
    "a TLS key of another certificate": (
        {"tieline.json": tls_api(), "users.json": USERS, "cert.pem": CERT, "key.pem": OTHER_KEY},
        [("tieline.json:", "$.apis[0].tls.key",
          "the key in 'key.pem' does not belong to the certificate in 'cert.pem'")],
    ),
    "a missing TLS certificate": (
        {"tieline.json": tls_api(), "users.json": USERS, "key.pem": KEY},
        [("tieline.json:", "$.apis[0].tls.certificate",
          "file 'cert.pem' not found in the settings folder")],
    ),
    "a cluster key that is not one": (
        {"tieline.json": lease(key="cluster.key"), "users.json": USERS,
         "cluster.key": "garbage\n"},
        [("tieline.json:", "$.failover.key", "is not a usable cluster key")],
    ),
    "role without failover": (
        {"tieline.json": good(node={"name": "a", "role": "main"}), "users.json": USERS},
        [("tieline.json:", "$.node.role", "role 'main' needs a 'failover' block")],
    ),
    "duplicate level names": (
        {"tieline.json": good(routers=[{**GOOD["routers"][0], "levels": ["video", "video"]}]),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].levels[1]", "duplicate level name 'video'")],
    ),
    "transport with a typo": (
        {"tieline.json": good(routers=[{**GOOD["routers"][0],
                                        "transport": {"type": "tcp", "hots": "10.0.0.1"}}]),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].transport", "missing required key 'host'"),
         ("tieline.json:", "$.routers[0].transport.hots", "unknown key 'hots'; did you mean 'host'?")],
    ),
    "tcp transport without a port for a driver with no usual port": (
        {"tieline.json": good(routers=[{**GOOD["routers"][0],
                                        "transport": {"type": "tcp", "host": "10.0.0.1"}}]),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].transport", "'port': this driver has no usual port")],
    ),
    "driver-specific rule (SW-P-08 level numbers)": (
        {"tieline.json": good(routers=[{
            "id": "tx", "driver": "swp08", "levels": ["video", "audio"], "sources": 16,
            "destinations": 16, "transport": {"type": "tcp", "host": "127.0.0.1", "port": 2008},
            "level_numbers": {"vidoe": {"matrix": 0, "level": 0}}}]),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].level_numbers", "'vidoe' is not one of the router's levels")],
    ),
    "API naming a missing router level": (
        {"tieline.json": good(apis=[GOOD["apis"][0], {"type": "videohub",
                                                      "listen": "127.0.0.1:9990",
                                                      "router": "studio", "level": "vidoe"}]),
         "users.json": USERS},
        [("tieline.json:", "$.apis[1].level", "router 'studio' has no level 'vidoe'")],
    ),
    "standby_link neither warm nor cold": (
        {"tieline.json": good(routers=[{**GOOD["routers"][0], "standby_link": "hot"}]),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].standby_link", 'expected one of "warm", "cold"; got "hot"')],
    ),
    "an mDNS interface that is not an IPv4 address": (
        {"tieline.json": good(discovery={"mdns": True, "interfaces": ["eth0"]}),
         "users.json": USERS},
        [("tieline.json:", "$.discovery.interfaces[0]",
          "mDNS interface 'eth0' is not an IPv4 address")],
    ),
    "transport the driver cannot use": (
        {"tieline.json": good(routers=[{**GOOD["routers"][0], "transport": {"type": "serial"}}]),
         "users.json": USERS},
        [("tieline.json:", "$.routers[0].transport.type", "cannot run over 'serial'")],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_folder(case, settings_dir):
    files, expected = CASES[case]
    folder = settings_dir(files)
    code, out = validate(folder)
    assert code == 1, out
    lines = [line.strip() for line in out.splitlines()[1:]]
    assert len(lines) == len(expected), out
    for line, (where, path, words) in zip(lines, expected):
        assert line.startswith(where), out
        assert f": {path}: " in line, out
        assert words in line, out
        file_part = line.split(": ", 1)[0]
        if file_part.count(":") == 2:  # file:line:column, both positive
            _, row, col = file_part.split(":")
            assert int(row) >= 1 and int(col) >= 1, out


def test_many_problems_reported_at_once(settings_dir):
    data = good(node={"name": "a", "role": "primary"},
                routers=[{**GOOD["routers"][0], "sources": -1, "colour": "red"}])
    folder = settings_dir({"tieline.json": data})
    with pytest.raises(SettingsError) as info:
        load_settings(folder, Plugins())
    paths = [p.path for p in info.value.problems]
    assert paths == ["$.node.role", "$.routers[0].sources", "$.routers[0].colour",
                     "$.auth.users_file"]
    # positions follow the file: each problem's line is where its value stands
    text = (folder / "tieline.json").read_text().splitlines()
    for problem in info.value.problems:
        key = problem.path.rsplit(".", 1)[-1].split("[")[0]
        assert key in text[problem.line - 1]


def test_several_apis_may_listen_on_port_0(settings_dir):
    folder = settings_dir({"tieline.json": good(apis=[
        {"type": "websocket", "listen": "127.0.0.1:0"},
        {"type": "websocket", "listen": "127.0.0.1:0"}]), "users.json": USERS})
    assert len(load_settings(folder, Plugins()).apis) == 2


def test_missing_folder_and_file(tmp_path):
    code, out = validate(tmp_path / "nope")
    assert code == 1 and "settings folder not found" in out
    code, out = validate(tmp_path)
    assert code == 1 and "tieline.json: $: file not found" in out


def test_disabled_plugin_makes_its_driver_unknown(settings_dir):
    folder = settings_dir({"tieline.json": good(plugins={"disabled": ["simulator"]}),
                           "users.json": USERS})
    code, out = validate(folder)
    assert code == 1
    assert "$.routers[0].driver: unknown driver 'simulator'" in out
    assert ("no loaded plugin provides driver 'simulator'; disabled by \"plugins\": "
            "{\"disabled\": …} in tieline.json: simulator (remove 'simulator' there to use "
            "it)") in out


def test_standby_link_defaults_to_cold_over_serial_only(settings_dir):
    swp08 = {"id": "tx", "driver": "swp08", "levels": ["video"], "sources": 8,
             "destinations": 8}
    routers = [
        {**swp08, "id": "lan", "transport": {"type": "tcp", "host": "192.0.2.1", "port": 2000}},
        {**swp08, "id": "line", "transport": {"type": "serial", "device": "/dev/ttyS0"}},
        {**swp08, "id": "own-port", "transport": {"type": "serial", "device": "/dev/ttyS1"},
         "standby_link": "warm"},
        {**swp08, "id": "one-conn", "transport": {"type": "tcp", "host": "192.0.2.2", "port": 2000},
         "standby_link": "cold"},
    ]
    folder = settings_dir({"tieline.json": good(routers=routers), "users.json": USERS})
    settings = load_settings(folder, Plugins())
    assert {r.spec.id: r.standby_link for r in settings.routers} == {
        "lan": "warm", "line": "cold", "own-port": "warm", "one-conn": "cold"}


def test_discovery_block(settings_dir):
    folder = settings_dir({"tieline.json": good(discovery={"mdns": True,
                                                           "interfaces": ["127.0.0.1"]}),
                           "users.json": USERS})
    assert load_settings(folder, Plugins()).discovery == {"mdns": True,
                                                          "interfaces": ["127.0.0.1"]}
    folder = settings_dir({"tieline.json": GOOD, "users.json": USERS})
    assert load_settings(folder, Plugins()).discovery == {}


def test_a_peer_address_run_would_refuse_is_never_written(settings_dir):
    """`tieline backup add` (the members request) writes failover.peers: an address that the
    next start would refuse is refused before anything is written."""
    folder = settings_dir({"tieline.json": lease(), "users.json": USERS,
                           "cluster.key": CLUSTER_KEY})
    before = (folder / "tieline.json").read_bytes()
    for bad in ("10.0.0.3:99999", "10.0.0.3:0", "::1:7401"):
        with pytest.raises(InvalidRequest) as refused:
            change_failover_peers(folder, ["127.0.0.1:7402", bad])
        assert refused.value.field == "address"
        assert str(refused.value).startswith(f"peer address '{bad}': ")
    assert (folder / "tieline.json").read_bytes() == before
    change_failover_peers(folder, ["127.0.0.1:7402", "[::1]:7403"])
    assert load_settings(folder, Plugins()).failover["peers"] == ["127.0.0.1:7402", "[::1]:7403"]


def test_backup_add_refuses_a_peer_address_before_sending_it():
    result = CliRunner().invoke(main, ["backup", "add", "10.0.0.3:0",
                                       "--server", "ws://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert "'10.0.0.3:0': port 0 is out of range; write a port from 1 to 65535" in result.output
