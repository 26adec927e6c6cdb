"""The plugin template as an integrator uses it (STYLE.md point 20): ``tieline plugin new``
renders it, the result installs (editable, into this interpreter), its own tests pass,
``tieline plugins`` lists it, and a node runs a router through its driver against its
emulator (``tieline emulate``), all as separate processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from ..conftest import free_port, write_settings

TIELINE = str(Path(sys.executable).with_name("tieline"))
NAME = "acme_matrix"
DISTRIBUTION = "tieline-acme-matrix"


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def _build_isolation() -> list[str]:
    """Build with this environment's setuptools when it can (no index needed, faster)."""
    try:
        major = int(version("setuptools").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return []
    return ["--no-build-isolation"] if major >= 68 else []


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The rendered plugin, installed editable into this interpreter; uninstalled after."""
    out = tmp_path_factory.mktemp("kit")
    rendered = run(TIELINE, "plugin", "new", NAME, cwd=out)
    folder = out / DISTRIBUTION
    assert f"wrote the driver plugin '{NAME}' to {DISTRIBUTION}" in rendered.stdout
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", *_build_isolation(), "-e",
        str(folder))
    try:
        yield folder
    finally:
        run(sys.executable, "-m", "pip", "uninstall", "-y", "-q", DISTRIBUTION)


def test_the_generated_plugins_own_tests_pass(plugin):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            capture_output=True, text=True, timeout=120, cwd=plugin)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_tieline_plugins_lists_it(plugin):
    listed = json.loads(run(TIELINE, "plugins", "--json", cwd=plugin.parent).stdout)
    (info,) = [p for p in listed["plugins"] if p["name"] == NAME]
    assert info == {"name": NAME, "distribution": DISTRIBUTION, "version": "0.1.0",
                    "hooks": ["tieline_emulators", "tieline_router_drivers"],
                    "status": "loaded", "error": None}


def _start(args: list[str], ready: str) -> tuple[subprocess.Popen, str]:
    """Start a tieline command and wait for the line that says it is ready."""
    proc = subprocess.Popen([TIELINE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        if ready in line:
            return proc, line
    proc.wait(5)
    raise AssertionError(f"tieline {args[0]} stopped: {proc.stderr.read()}")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, out + err
    return out + err


def test_settings_using_its_driver_validate_and_run(plugin, tmp_path):
    port = free_port()
    emulator, _ = _start(["emulate", NAME, "--listen", f"127.0.0.1:{port}", "--levels", "2",
                          "--inputs", "8", "--outputs", "8"], f"emulating {NAME}")
    node = None
    try:
        folder = write_settings(tmp_path / "lab", {"tieline.json": {
            "node": {"name": "lab"},
            "routers": [{"id": "studio", "driver": NAME, "levels": ["video", "audio"],
                         "sources": 8, "destinations": 8, "keepalive_interval_s": 2,
                         "transport": {"type": "tcp", "host": "127.0.0.1", "port": port}}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"loopback_anonymous_level": 2},
        }})
        valid = run(TIELINE, "validate", "--settings", str(folder))
        assert "valid (1 router(s), 1 API(s)" in valid.stdout
        node, banner = _start(["run", "--settings", str(folder)], " serving ")
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
            assert "tieline: stopped" in _stop(node)
        _stop(emulator)
