"""`tieline validate` refuses exactly what `tieline run` refuses (issue 12).

The keys are found in the schemas themselves — the core's settings schemas and the schema of
every bundled plugin block, where the loader applies them — so a key added later is covered
without touching this file:

* every number (``"type": "integer"`` or ``"number"``) gets NaN, ±Infinity, a number too
  large for a float, a number just below its minimum and just above its maximum, and
  (integers) a fraction and an integral float; every number must declare both bounds;
* every address (a string with one of the formats of :mod:`tieline.addresses`) gets ports
  out of range, hosts that are none, IPv6 without brackets …;
* every file (``"x-settings-file": true``) is missing, or holds garbage;
* the address-like strings a plugin or the loader checks in code are listed in
  :data:`CHECKED` with bad values, and the few that only the machine can judge in
  :data:`MACHINE` with the reason; a string whose name says address, URL, port or file and
  that is in none of these fails :func:`test_every_address_like_key_is_classified`.

For each bad value a settings folder is written; `tieline validate` must exit 1 naming the
place (file, line, JSON path), and building the node as `tieline run` does must refuse with
the very same problems. A few cases also run the real `tieline run` process: exit 1, the
same message, no traceback. The baselines themselves must pass both ways.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from click.testing import CliRunner

from tieline.addresses import FORMATS
from tieline.cli import main
from tieline.errors import SettingsError, TielineError
from tieline.settings.jsonfile import json_path
from tieline.node import build_node
from tieline.cluster.peerlink import generate_cluster_key
from tieline.plugin_manager import Plugins
from tieline.settings.loader import core_schema

from ..conftest import self_signed_pem, write_settings
from .helpers import TIELINE, run_until_serving

MAIN = "tieline.json"


# -------------------------------------------------------------------------------------------
# Baselines: valid folders that use every bundled plugin block
# -------------------------------------------------------------------------------------------

def _files() -> dict[str, str]:
    """The files every baseline names: TLS, cluster key, SSH key and known_hosts, users."""
    cert, key = self_signed_pem()
    with tempfile.TemporaryDirectory() as folder:
        cluster_key = generate_cluster_key(Path(folder)).read_text()
    ssh_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    return {
        "cert.pem": cert.decode(), "key.pem": key.decode(), "cluster.key": cluster_key,
        "id_ed25519": ssh_key.export_private_key().decode(),
        "known_hosts": f"[192.0.2.3]:22023 {host_key}",
        "users.json": json.dumps({"users": [
            {"name": "alice", "level": 2, "token_sha256": "a" * 64}]}),
        "salvos.json": json.dumps({"salvos": [{"name": "news", "router": "sim", "crosspoints": [
            {"destination": 1, "source": 2, "levels": ["video"]}]}]}),
    }


FILES = _files()
SIM = {"id": "sim", "driver": "simulator", "levels": ["video", "audio"], "sources": 8,
       "destinations": 8, "confirm_timeout_ms": 2000, "switch_delay_ms": 0}
WEBSOCKET = {"type": "websocket", "listen": "127.0.0.1:0", "heartbeat_timeout_ms": 1500,
             "tls": {"certificate": "cert.pem", "key": "key.pem"},
             "panels": [{"name": "sim", "router": "sim", "levels": ["video"],
                         "destinations": [{"name": "all", "ports": "1-8"}],
                         "sources": [{"name": "all", "ports": [1, 2, 3]}]}]}

STANDALONE = {
    "node": {"name": "walker", "role": "standalone"},
    "routers": [
        SIM,
        {"id": "hub", "driver": "videohub", "levels": ["video"], "sources": 8,
         "destinations": 8, "transport": {"type": "tcp", "host": "192.0.2.1", "port": 9990}},
        {"id": "tx", "driver": "swp08", "levels": ["video"], "sources": 8, "destinations": 8,
         "transport": {"type": "serial", "device": "/dev/tieline-walker-no-such-device",
                       "baudrate": 38400}},
        {"id": "sis", "driver": "extron_sis", "levels": ["video"], "sources": 8,
         "destinations": 8, "planes": ["video"],
         "transport": {"type": "ssh", "host": "192.0.2.3", "port": 22023, "username": "admin",
                       "key": "id_ed25519", "known_hosts": "known_hosts"}},
    ],
    "apis": [WEBSOCKET,
             {"type": "videohub", "listen": "127.0.0.1:0", "router": "sim", "level": "video",
              "clients": ["127.0.0.1"], "force_unlock": ["127.0.0.1/32"]}],
    "auth": {"users_file": "users.json", "loopback_anonymous_level": 1},
    "discovery": {"mdns": False, "interfaces": ["127.0.0.1"]},
}


def _cluster(strategy: dict[str, Any]) -> dict[str, Any]:
    return {"node": {"name": "walker", "role": "main"}, "routers": [SIM],
            "apis": [WEBSOCKET], "auth": {"users_file": "users.json"}, "failover": strategy}


PEER_LINK = {"listen": "127.0.0.1:0", "peers": ["127.0.0.1:7402"], "key": "cluster.key",
             "advertise": "ws://127.0.0.1:8181", "heartbeat_ms": 250}
BASELINES: dict[str, dict[str, Any]] = {
    "standalone": STANDALONE,
    "lease": _cluster({"strategy": "lease", **PEER_LINK, "hold_down_s": 60,
                       "vip": {"address": "10.0.0.100/24", "interface": "eth0"}}),
    "peer_sync": _cluster({"strategy": "peer_sync", **PEER_LINK}),
    "etcd": _cluster({"strategy": "etcd", "endpoints": ["http://127.0.0.1:2379"],
                      "advertise": "ws://127.0.0.1:8181", "hold_down_s": 60}),
}


# -------------------------------------------------------------------------------------------
# Walking the schemas
# -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    """One settings key: where it is, which schema owns it and what that schema says."""

    file: str  #: the settings file
    path: tuple[str | int, ...]  #: JSON path in that file
    owner: str  #: "core" or "<kind>:<name>" (the plugin block's schema)
    relative: tuple[str | int, ...]  #: the path inside the owner's block
    schema: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.owner} {'.'.join(map(str, self.relative))}"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**root["$defs"][ref.split("/")[-1]], **{k: v for k, v in schema.items()
                                                        if k != "$ref"}}
    return schema


def _leaves(schema: dict[str, Any], root: dict[str, Any],
            path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple, dict[str, Any]]]:
    schema = _resolve(schema, root)
    if "properties" in schema or "items" in schema:
        for name, sub in schema.get("properties", {}).items():
            if isinstance(sub, dict):
                yield from _leaves(sub, root, (*path, name))
        if isinstance(schema.get("items"), dict):
            yield from _leaves(schema["items"], root, (*path, 0))
    elif path:
        yield path, schema


def _plugin_blocks(name: str, data: dict[str, Any], plugins: Plugins
                   ) -> Iterator[tuple[tuple, str, dict[str, Any]]]:
    """(base path, owner, schema) of every bundled plugin block baseline ``name`` uses."""
    def bundled(found: dict[str, tuple[str, Any]], key: str) -> Any:
        plugin, cls = found[key]
        assert plugins.infos[plugin].distribution == "tieline", (name, key)
        return cls

    drivers, transports = plugins.drivers(), plugins.transports()
    for i, router in enumerate(data["routers"]):
        yield ("routers", i), f"driver:{router['driver']}", bundled(
            drivers, router["driver"]).settings_schema
        if "transport" in router:
            ttype = router["transport"]["type"]
            yield ("routers", i, "transport"), f"transport:{ttype}", bundled(
                transports, ttype).settings_schema
    for i, api in enumerate(data.get("apis", [])):
        yield ("apis", i), f"api:{api['type']}", bundled(
            plugins.client_apis(), api["type"]).settings_schema
    failover = data.get("failover")
    if failover:
        strategy = failover["strategy"]
        yield ("failover",), f"strategy:{strategy}", bundled(
            plugins.strategies(), strategy).settings_schema
        actions = plugins.failover_actions()
        for action in sorted(set(actions) & set(failover)):
            yield ("failover", action), f"action:{action}", bundled(
                actions, action).settings_schema


def all_keys() -> dict[str, list[Key]]:
    """Every key of every baseline, by baseline; a key owned by a schema that an earlier
    baseline already walked is left out (each key is tested once)."""
    plugins = Plugins()
    seen: set[tuple[str, tuple]] = set()
    out: dict[str, list[Key]] = {}
    for name, data in BASELINES.items():
        keys: list[Key] = []
        blocks = [(MAIN, (), "core", core_schema("tieline.schema.json")),
                  ("users.json", (), "core:users", core_schema("users.schema.json")),
                  ("salvos.json", (), "core:salvos", core_schema("salvos.schema.json"))]
        blocks += [(MAIN, base, owner, schema)
                   for base, owner, schema in _plugin_blocks(name, data, plugins)]
        for file, base, owner, schema in blocks:
            for relative, leaf in _leaves(schema, schema):
                if (owner, relative) in seen:
                    continue
                seen.add((owner, relative))
                keys.append(Key(file, (*base, *relative), owner, relative, leaf))
        out[name] = keys
    return out


KEYS = all_keys()


def _is_number(key: Key) -> bool:
    return key.schema.get("type") in ("integer", "number")


def _file_key(key: Key) -> bool:
    return key.schema.get("x-settings-file") is True


# -------------------------------------------------------------------------------------------
# Bad values
# -------------------------------------------------------------------------------------------

#: JSON text that no encoder writes, put in the file as it is.
RAW = ("NaN", "Infinity", "-Infinity", "1e400")

#: bad values of each address format.
BAD_ADDRESSES = {
    "listen-address": ["127.0.0.1:70000", "[::1]:99999", "::1:8181", "127.0.0.1",
                       "300.1.1.1:8181", "127.0.0.1:-1", "0.0.0.0:http"],
    "host-port": ["127.0.0.1:65536", "[::1]:99999", "10.0.0.2:0", "::1:7401", "[::1]"],
    "ws-url": ["ws://127.0.0.1:99999", "ws://127.0.0.1:0", "http://127.0.0.1:8181",
               "ws://:8181", "127.0.0.1:8181"],
    "host": ["300.1.1.1", "[::1]", "studio a", ""],
}

#: address-like strings that a plugin's check() or the loader checks in code: bad values.
CHECKED = {
    ("core", ("discovery", "interfaces", 0)): ["eth0", "10.0.0.300"],
    ("strategy:etcd", ("endpoints", 0)): ["http://127.0.0.1:99999", "http://127.0.0.1:0",
                                          "https://127.0.0.1:2379", "http://:2379",
                                          "http://300.1.1.1:2379", "127.0.0.1:2379"],
    ("action:vip", ("address",)): ["10.0.0.300/24", "10.0.0.100", "fe80::1/64"],
    ("api:videohub", ("clients", 0)): ["10.0.0.0/33", "studio-a"],
    ("api:videohub", ("force_unlock", 0)): ["10.0.0.0/33", "studio-a"],
    # a router's port numbers as range strings (panels.py; lists: the item is named)
    ("api:websocket", ("panels", 0, "destinations", 0, "ports")):
        ["0", "9", "8-1", "1-99", "1-4,3", "x", "1,,2", []],
    ("api:websocket", ("panels", 0, "sources", 0, "ports")): ["1-65537", "-1", "1.5"],
    ("api:websocket", ("panels", 0, "router")): ["nope", ""],
    ("api:websocket", ("panels", 0, "levels", 0)): ["vision", ""],
}

#: address-like strings only the machine can judge, so neither validate nor run refuses a
#: well-formed one: why.
MACHINE = {
    ("transport:serial", ("device",)): "a serial device may appear after the start (a USB "
        "adapter plugged in): the link retries, saying why once",
    ("action:vip", ("interface",)): "the interface is the machine's; claiming the address on "
        "it is retried, saying why",
}

ADDRESS_LIKE = re.compile(r"listen|peer|advertise|host|address|url|endpoint|port|file|key|"
                          r"cert|device|interface|client|unlock")


@dataclass(frozen=True)
class Case:
    baseline: str
    key: Key
    value: Any  #: the value written (str of RAW: written as it is)
    #: for files: "garbage" (the file holds garbage) or "missing" (the name of no file)
    file: str = ""

    @property
    def named_file(self) -> str:
        """The file the key names in the baseline (a file key)."""
        return _get(_baseline_files(self.baseline)[self.key.file], self.key.path)

    @property
    def id(self) -> str:
        what = self.file or (self.value if self.value in RAW else json.dumps(self.value))
        return f"{self.baseline}: {self.key} = {what}"


def _numbers(key: Key) -> list[Any]:
    schema = key.schema
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    values: list[Any] = list(RAW)
    values.append(low - 1 if "minimum" in schema else low)
    values.append(high + 1 if "maximum" in schema else high)
    if schema["type"] == "integer":
        values += [low + 0.5, float(low + 1)]  # a fraction; an integer written as a float
    return values


def cases() -> list[Case]:
    out = []
    for baseline, keys in KEYS.items():
        for key in keys:
            if _is_number(key):
                out += [Case(baseline, key, v) for v in _numbers(key)]
            elif key.schema.get("format") in BAD_ADDRESSES:
                out += [Case(baseline, key, v) for v in BAD_ADDRESSES[key.schema["format"]]]
            elif _file_key(key):
                out += [Case(baseline, key, None, "garbage"), Case(baseline, key, None, "missing")]
            elif (key.owner, key.relative) in CHECKED:
                out += [Case(baseline, key, v) for v in CHECKED[key.owner, key.relative]]
    return out


CASES = cases()


# -------------------------------------------------------------------------------------------
# Writing a case's folder, and what validate and run say of it
# -------------------------------------------------------------------------------------------

MARK = "@@bad value@@"


def _set(data: Any, path: tuple, value: Any) -> None:
    for i, item in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(data, list):
            data = data[item]
            continue
        if item not in data:
            data[item] = [] if isinstance(nxt, int) else {}
        data = data[item]
    last = path[-1]
    if isinstance(data, list):
        if last < len(data):
            data[last] = value
        else:
            data.append(value)
    else:
        data[last] = value


def _get(data: Any, path: tuple) -> Any:
    for item in path:
        data = data[item]
    return data


def _baseline_files(baseline: str) -> dict[str, Any]:
    """The files of a baseline folder; the JSON ones as data."""
    files: dict[str, Any] = dict(FILES)
    files[MAIN] = copy.deepcopy(BASELINES[baseline])
    for name in ("users.json", "salvos.json"):
        files[name] = json.loads(FILES[name])
    return files


def write_case(folder: Path, case: Case | None, baseline: str = "") -> Path:
    """Write the folder of ``case`` (or of ``baseline`` itself, when ``case`` is None)."""
    files = _baseline_files(case.baseline if case else baseline)
    if case is not None:
        key = case.key
        doc = files[key.file]
        if case.file == "garbage":
            files[case.named_file] = "garbage\n"
        elif case.file == "missing":
            _set(doc, key.path, "no-such-file")
        else:
            _set(doc, key.path, MARK if case.value in RAW else case.value)
    for name, value in files.items():
        if not isinstance(value, str):
            text = json.dumps(value, indent=2)
            files[name] = text.replace(json.dumps(MARK), str(case.value)) if case else text
    return write_settings(folder, files)


PROBLEM = re.compile(r"^  (?P<file>[^:\s]+)(?::(?P<line>\d+):(?P<column>\d+))?: "
                     r"(?P<path>\$\S*): (?P<message>.+)$")


def problems(text: str) -> list[dict[str, str]]:
    return [m.groupdict() for m in map(PROBLEM.match, text.splitlines()) if m]


def validate(folder: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", "--settings", str(folder)])
    return result.exit_code, result.output


def assert_named(case: Case, output: str) -> None:
    """Some problem names the place: the key's file, line and JSON path (or an ancestor of
    it), or, for a file's content, that file itself."""
    found = problems(output)
    assert found, output
    wanted = json_path(case.key.path)
    for problem in found:
        if problem["file"] == case.key.file and problem["line"] and int(problem["line"]) >= 1 \
                and (problem["path"] == wanted or wanted.startswith(problem["path"] + ".")
                     or wanted.startswith(problem["path"] + "[")):
            return
        if case.file == "garbage" and problem["file"] == case.named_file:
            return
    raise AssertionError(f"no problem names {case.key.file} {wanted}:\n{output}")


# -------------------------------------------------------------------------------------------
# The tests
# -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("baseline", sorted(BASELINES))
def test_the_baselines_are_valid_both_ways(tmp_path, baseline):
    folder = write_case(tmp_path / baseline, None, baseline)
    code, output = validate(folder)
    assert code == 0, output
    try:
        build_node(folder)
    except SettingsError:
        raise
    except TielineError as exc:  # privileges are the machine's, not the settings'
        assert baseline == "lease" and str(exc).startswith("vip: "), exc


def test_every_bundled_plugin_block_is_in_a_baseline():
    plugins = Plugins()
    owners = {key.owner for keys in KEYS.values() for key in keys}
    for kind, found in (("driver", plugins.drivers()), ("transport", plugins.transports()),
                        ("api", plugins.client_apis()), ("strategy", plugins.strategies()),
                        ("action", plugins.failover_actions())):
        for name, (plugin, _cls) in found.items():
            if plugins.infos[plugin].distribution == "tieline":
                assert f"{kind}:{name}" in owners, f"{kind} {name}: add it to a baseline"
    assert not [k for k in plugins.settings_schemas()
                if plugins.infos[plugins.settings_schemas()[k][0]].distribution == "tieline"], \
        "a bundled top-level settings block: add it to a baseline"


def test_every_number_has_both_bounds():
    """A number without a maximum lets a value through that makes a node wait forever
    (``"switch_delay_ms": 1e300``): every number says how large it may be."""
    unbounded = [str(key) for keys in KEYS.values() for key in keys if _is_number(key)
                 and not ({"minimum", "exclusiveMinimum"} & key.schema.keys()
                          and {"maximum", "exclusiveMaximum"} & key.schema.keys())]
    assert unbounded == []


def test_every_address_like_key_is_classified():
    """A string naming an address, a URL, a port or a file has a format, is a settings file,
    is checked in code (CHECKED), or is the machine's (MACHINE)."""
    loose = []
    for keys in KEYS.values():
        for key in keys:
            name = next((p for p in reversed(key.relative) if isinstance(p, str)), "")
            if key.schema.get("type") != "string" or not ADDRESS_LIKE.search(name):
                continue
            if key.schema.get("format") in FORMATS or _file_key(key):
                continue
            if (key.owner, key.relative) in CHECKED or (key.owner, key.relative) in MACHINE:
                continue
            loose.append(str(key))
    assert loose == []
    for formats in (BAD_ADDRESSES,):
        assert set(formats) == set(FORMATS), "give every address format bad values"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_validate_and_run_refuse_alike(tmp_path, case):
    folder = write_case(tmp_path / "settings", case)
    code, output = validate(folder)
    assert code == 1, f"validate accepted it:\n{output}"
    assert "Traceback" not in output
    assert_named(case, output)
    with pytest.raises(SettingsError) as refused:  # tieline run's first step
        build_node(folder)
    assert str(refused.value) in output


# A few cases through the real processes: the issue's own examples.
REAL = {
    "API listen port": ("standalone", MAIN, ("apis", 0, "listen"), "127.0.0.1:70000"),
    "IPv6 API listen port": ("standalone", MAIN, ("apis", 0, "listen"), "[::1]:99999"),
    "peer port": ("lease", MAIN, ("failover", "peers", 0), "[::1]:99999"),
    "peer link listen port": ("peer_sync", MAIN, ("failover", "listen"), "127.0.0.1:70000"),
    "advertise port": ("etcd", MAIN, ("failover", "advertise"), "ws://127.0.0.1:99999"),
    "NaN": ("lease", MAIN, ("failover", "hold_down_s"), "NaN"),
    "Infinity": ("standalone", MAIN, ("routers", 0, "switch_delay_ms"), "Infinity"),
}


def _real_case(name: str) -> Case:
    baseline, file, path, value = REAL[name]
    key = next(k for k in KEYS[baseline] + [k for ks in KEYS.values() for k in ks]
               if k.path == path and k.file == file)
    return Case(baseline, key, value)


def _run(folder: Path, timeout: float = 20) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("TIELINE_SETTINGS", None)
    return subprocess.run([TIELINE, "run", "--settings", str(folder)], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("name", sorted(REAL) + ["garbage TLS certificate",
                                                 "garbage cluster key"])
def test_tieline_run_refuses_like_validate(tmp_path, name):
    if name == "garbage TLS certificate":
        key = next(k for k in KEYS["standalone"] if k.path == ("apis", 0, "tls", "certificate"))
        case = Case("standalone", key, None, "garbage")
    elif name == "garbage cluster key":
        key = next(k for ks in KEYS.values() for k in ks if k.relative == ("key",)
                   and k.owner.startswith("strategy:"))
        case = Case(next(b for b, ks in KEYS.items() if key in ks), key, None, "garbage")
    else:
        case = _real_case(name)
    folder = write_case(tmp_path / "settings", case)
    code, output = validate(folder)
    assert code == 1, output
    result = _run(folder)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert problems(result.stderr) == problems(output)
    assert_named(case, result.stderr)


def test_tieline_run_starts_with_what_validate_accepts(tmp_path):
    folder = write_case(tmp_path / "settings", None, "standalone")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    status, out, err = run_until_serving(folder, env)
    assert status == 0, out + err
    assert "Traceback" not in err, err
