"""The distribution as users get it: a wheel built from the repository, in a fresh venv."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tieline.kit.template import KINDS
from tieline.plugins.websocket_api.http import CONTENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = {"simulator", "websocket_api", "videohub", "swp08", "extron_sis", "lease", "peer_sync",
           "etcd", "vip"}

pytestmark = pytest.mark.packaging


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT))
    (found,) = out.glob("tieline-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh venv (no system site-packages) with only the wheel and its dependencies."""
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", str(root))
    run(str(root / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel))
    return root


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "tieline/__init__.py" in names
    assert "tieline/plugins/simulator/__init__.py" in names
    assert "tieline/plugins/websocket_api/server.py" in names
    assert "tieline/schemas/settings/tieline.schema.json" in names
    assert "tieline/schemas/api/request/route.schema.json" in names
    # every file of every template kind, dot files included, and nothing compiled
    source = ROOT / "plugin_template"
    for kind in KINDS:
        files = [p for p in (source / kind).rglob("*") if p.is_file()
                 and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts]
        assert len(files) >= 8, kind
        for path in files:
            assert f"tieline/plugin_template/{path.relative_to(source)}" in names, path
    assert not [n for n in names if n.startswith("tieline/plugin_template/")
                and ("__pycache__" in n or n.endswith(".pyc"))]
    # every file of the web panel that http.py would serve, at any depth
    assert _panel_files(), "the panel folder is empty"
    for name in _panel_files():
        assert f"tieline/plugins/websocket_api/panel/{name}" in names, name
    assert not [n for n in names if n.startswith(("core/", "plugins/", "schemas/", "tests/"))]
    assert not [n for n in names if n.startswith("tieline/plugins/plugins")]
    # nothing that is not in the source (a stale build/ folder would add it)
    shipped = {n.split("/")[2] for n in names
               if n.startswith("tieline/plugins/") and n.count("/") >= 3}
    assert shipped == {p.name for p in (ROOT / "plugins").iterdir()
                       if (p / "__init__.py").is_file()}
    modules = {n.split("/")[1] for n in names if n.startswith("tieline/") and n.count("/") == 1}
    assert modules == {p.name for p in (ROOT / "core").glob("*.py")}


def _panel_files() -> list[str]:
    """The web panel's files in the source tree that http.py serves (known content type,
    no hidden file or folder), relative to the panel folder."""
    panel = ROOT / "plugins" / "websocket_api" / "panel"
    return sorted(
        path.relative_to(panel).as_posix() for path in panel.rglob("*")
        if path.is_file() and path.suffix[1:] in CONTENT_TYPES
        and not any(part.startswith(".") for part in path.relative_to(panel).parts))


def _get(path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", 8181, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_every_entry_point_loads_in_a_fresh_venv(venv):
    script = (
        "import importlib.metadata as m, json\n"
        "eps = m.entry_points(group='tieline')\n"
        "print(json.dumps({ep.name: ep.load().__name__ for ep in eps}))\n"
    )
    result = run(str(venv / "bin" / "python"), "-c", script, cwd="/")
    loaded = json.loads(result.stdout)
    assert set(loaded) == BUNDLED
    assert loaded["simulator"] == "tieline.plugins.simulator"
    plugins = json.loads(run(str(venv / "bin" / "tieline"), "plugins", "--json", cwd="/").stdout)
    assert {p["name"]: p["status"] for p in plugins["plugins"]} == {
        "tieline.core": "loaded", **{name: "loaded" for name in BUNDLED}}


@pytest.mark.parametrize("kind,modules", [
    ("driver", ["__init__.py", "codec.py", "driver.py", "emulator.py"]),
    ("api", ["__init__.py", "codec.py", "server.py"]),
    ("strategy", ["__init__.py", "record.py", "strategy.py"]),
])
def test_fresh_venv_renders_the_plugin_templates(venv, tmp_path, kind, modules):
    run(str(venv / "bin" / "tieline"), "plugin", "new", "acme_thing", "--kind", kind,
        cwd=tmp_path)
    package = tmp_path / "tieline-acme-thing" / "acme_thing"
    assert sorted(p.name for p in package.iterdir()) == modules


def test_fresh_venv_serves_the_demo(venv, tmp_path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("TIELINE_SETTINGS", None)
    tieline = str(venv / "bin" / "tieline")
    proc = subprocess.Popen([tieline, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd="/")
    try:
        for line in proc.stdout:
            if "serving ws://127.0.0.1:8181" in line:
                break
        else:
            raise AssertionError(proc.stderr.read())
        # the web panel, from the installed package
        panel = ROOT / "plugins" / "websocket_api" / "panel"
        status, headers, body = _get("/")
        assert (status, body) == (200, (panel / "index.html").read_bytes())
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        for name in _panel_files():
            assert _get(f"/panel/{name}")[2] == (panel / name).read_bytes(), name
        assert _get("/panel/../server.py")[0] == 404
        routed = run(tieline, "route", "5", "3", env=env, cwd="/")
        assert routed.stdout.strip().endswith("on video, audio: confirmed")
        tally = json.loads(run(tieline, "tally", "--json", env=env, cwd="/").stdout)
        crosspoints = tally["routers"][0]["crosspoints"]
        for level in ("video", "audio"):
            assert {"level": level, "destination": 5, "source": 3} in crosspoints
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
