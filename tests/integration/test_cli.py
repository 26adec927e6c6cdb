"""The tieline command as people use it: real processes, the demo, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tieline.client import Client

TIELINE = str(Path(sys.executable).with_name("tieline"))
DEMO_URL = "ws://127.0.0.1:8181"


def tieline(*args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([TIELINE, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def start(args: list[str], env: dict) -> tuple[subprocess.Popen, str]:
    """Start ``tieline run`` and wait for its 'serving' line."""
    proc = subprocess.Popen([TIELINE, "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if " serving " in line:
            return proc, "".join(lines)
    proc.wait(5)
    raise AssertionError(f"tieline run stopped: {''.join(lines)} {proc.stderr.read()}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out + err


@pytest.fixture
def demo(tmp_path):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("TIELINE_SETTINGS", None)
    proc, banner = start([], env)
    yield env, banner
    code, output = stop(proc)
    assert code == 0, output
    assert "tieline: stopped" in output


def test_demo_route_tally_and_event(demo, tmp_path):
    env, banner = demo
    folder = tmp_path / "config" / "tieline" / "demo"
    assert f"running the demo from {folder}" in banner
    assert f"serving {DEMO_URL}" in banner
    assert "open http://127.0.0.1:8181/ in a browser" in banner  # the panel (README)
    assert sorted(p.name for p in folder.iterdir()) == [
        "labels.json", "salvos.json", "tieline.json", "users.json"]

    async def scenario() -> list[dict]:
        events: list[dict] = []
        async with Client(DEMO_URL) as watcher:
            await watcher.subscribe()
            watcher.add_listener(events.append)
            result = await asyncio.to_thread(tieline, "route", "5", "3", env=env)
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == (
                "studio: destination 5 (REC 2) ← source 3 (CAM 3) on video, audio: confirmed")
            async with asyncio.timeout(5):
                while not any(e["event"] == "crosspoints" for e in events):
                    await asyncio.sleep(0.01)
            assert watcher.routers["studio"].source("video", 5) == 3
            assert watcher.routers["studio"].source("audio", 5) == 3
        return events

    events = asyncio.run(scenario())
    crosspoints = [xp for e in events if e["event"] == "crosspoints" for xp in e["crosspoints"]]
    assert {"level": "video", "destination": 5, "source": 3} in crosspoints
    assert {"level": "audio", "destination": 5, "source": 3} in crosspoints

    tally = tieline("tally", "--json", env=env)
    assert tally.returncode == 0, tally.stderr
    data = json.loads(tally.stdout)
    router = data["routers"][0]
    assert router["id"] == "studio" and router["levels"] == ["video", "audio"]
    for level in ("video", "audio"):
        assert {"level": level, "destination": 5, "source": 3} in router["crosspoints"]
    assert len(router["crosspoints"]) == 64  # the simulator reports every crosspoint

    status = tieline("status", "--json", env=env)
    assert json.loads(status.stdout) == {
        "node": "demo", "role": "standalone", "state": "active",
        "status": "Standalone is active", "epoch": 0,
        "routers": [{"id": "studio", "online": True}], "peers": []}


def test_route_by_label_levels_salvo_and_errors(demo):
    env, _ = demo
    ok = tieline("route", "PGM", "cam 2", "--level", "video", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "studio: destination 1 (PGM) ← source 2 (CAM 2) on video: confirmed"
    bad = tieline("route", "5", "99", env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "tieline: out_of_range: router 'studio': source 99 out of range (1–32) (field 'source')"
    unknown = tieline("route", "5", "CAM 99", env=env)
    assert unknown.returncode == 1 and "no source labelled 'CAM 99'" in unknown.stderr
    level = tieline("route", "5", "3", "--level", "video 2", env=env)
    assert level.returncode == 1 and "no level 'video 2'" in level.stderr
    salvo = tieline("salvo", "news", env=env)
    assert salvo.returncode == 0, salvo.stderr
    assert salvo.stdout.startswith("salvo news: 12 crosspoint(s) confirmed, 0 refused")
    missing = tieline("salvo", "weather", env=env)
    assert missing.returncode == 1 and "no salvo 'weather'; salvos: bars, news" in missing.stderr
    wrong = tieline("status", "--token", "wrong", env=env)
    assert wrong.returncode == 1
    assert wrong.stderr == ("tieline: unauthenticated: unknown token; ask an administrator "
                            "for a valid one (field 'token')\n")
    text = tieline("tally", env=env)
    assert "PGM" in text.stdout and "video: 2 CAM 2" in text.stdout


def test_no_server_exits_3(tmp_path):
    result = tieline("status", "--server", "ws://127.0.0.1:9,ws://127.0.0.1:7")
    assert result.returncode == 3
    assert "cannot reach any tieline server: ws://127.0.0.1:9:" in result.stderr
    assert "ws://127.0.0.1:7:" in result.stderr


def test_invalid_settings_stop_the_start(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "tieline.json").write_text('{"node": {"name": "x"}, "routers": [}')
    env = dict(os.environ, TIELINE_SETTINGS=str(folder))
    result = subprocess.run([TIELINE, "run"], capture_output=True, text=True, timeout=20, env=env)
    assert result.returncode == 1
    assert "tieline.json:1:37: $.routers[0]: invalid JSON: expecting a value" in result.stderr


def test_settings_from_environment_and_port_in_use(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "tieline.json").write_text(json.dumps({
        "node": {"name": "envnode"},
        "routers": [{"id": "r1", "driver": "simulator", "levels": ["v"], "sources": 4,
                     "destinations": 4}],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
        "auth": {"loopback_anonymous_level": 1}}))
    env = dict(os.environ, TIELINE_SETTINGS=str(folder))
    proc, banner = start([], env)
    try:
        assert "node 'envnode' serving ws://127.0.0.1:" in banner
        url = banner.split(" serving ")[1].split()[0]
        watch = tieline("route", "1", "2", "--server", url, env=env)
        assert watch.returncode == 1 and "forbidden" in watch.stderr  # anonymous level 1
        # a second node on the same port fails with a clear message
        port = url.rsplit(":", 1)[1]
        (folder / "tieline.json").write_text((folder / "tieline.json").read_text().replace(
            "127.0.0.1:0", f"127.0.0.1:{port}"))
        second = subprocess.run([TIELINE, "run"], capture_output=True, text=True, timeout=20,
                                env=env)
        assert second.returncode == 1
        assert f"websocket API cannot listen on 127.0.0.1:{port}" in second.stderr
    finally:
        code, output = stop(proc, signal.SIGINT)  # Ctrl-C
    assert code == 0, output
    assert "tieline: stopped" in output


def test_protect_lock_release_and_label(demo):
    env, _ = demo
    ok = tieline("protect", "PGM", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "studio: destination 1 (PGM) protected"
    tally = tieline("tally", env=env).stdout
    assert "[protect anonymous@127.0.0.1]" in tally
    assert tieline("route", "PGM", "3", env=env).returncode == 0  # the owner may route
    assert tieline("release", "1", env=env).returncode == 0
    locked = tieline("lock", "2", "--level", "audio", env=env)
    assert locked.stdout.strip() == "studio: destination 2 (PVW) locked"
    refused = tieline("route", "2", "3", env=env)
    assert refused.returncode == 1 and "locked by anonymous@127.0.0.1" in refused.stderr
    assert tieline("release", "2", "--force", env=env).returncode == 0
    labelled = tieline("label", "source", "CAM 1", "JIB", env=env)
    assert labelled.stdout.strip() == "studio: source 1 labelled 'JIB'"
    assert tieline("route", "5", "jib", env=env).returncode == 0
