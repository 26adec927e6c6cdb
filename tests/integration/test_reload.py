"""Reloading settings while running: users, salvos and labels apply; the rest waits."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tieline.auth import hash_token
from tieline.errors import SettingsError

from .helpers import RawClient, api_url, running_node
from .test_cli import start, stop, tieline

MAIN = {
    "node": {"name": "reload"},
    "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"], "sources": 8,
                 "destinations": 8, "label_store": "settings"}],
    "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
    "auth": {"users_file": "users.json"},
}


async def test_reload_applies_users_salvos_labels(settings_dir):
    folder = settings_dir({
        "tieline.json": MAIN,
        "users.json": {"users": [{"name": "a", "level": 1, "token_sha256": hash_token("ta")}]},
    })
    async with running_node(folder) as node:
        watcher = await RawClient.open(api_url(node), "ta")
        await watcher.request("subscribe", snapshot=False)
        (folder / "users.json").write_text(json.dumps({"users": [
            {"name": "a", "level": 1, "token_sha256": hash_token("ta")},
            {"name": "b", "level": 2, "token_sha256": hash_token("tb")}]}))
        (folder / "salvos.json").write_text(json.dumps({"salvos": [
            {"name": "new", "router": "studio", "crosspoints": [{"destination": 1, "source": 2}]}]}))
        (folder / "labels.json").write_text(json.dumps(
            {"routers": {"studio": {"sources": {"2": "CAM 2"}}}}))
        assert node.reload() == []
        events = [await watcher.next_event(), await watcher.next_event()]
        assert {"type": "event", "event": "salvos", "names": ["new"]} in events
        assert {"type": "event", "event": "labels", "router": "studio", "kind": "source",
                "labels": [{"index": 2, "text": "CAM 2"}]} in events
        b = await RawClient.open(api_url(node), "tb")  # the new user can log in and route
        result = await b.request("salvo", name="new")
        assert result["ok"] and len(result["result"]["taken"]) == 1

        # an invalid folder changes nothing
        (folder / "salvos.json").write_text('{"salvos": [')
        with pytest.raises(SettingsError):
            node.reload()
        assert list(node.routing.salvos) == ["new"]
        (folder / "salvos.json").unlink()

        # routers and APIs need a restart: reported, not applied
        changed = dict(MAIN, routers=[dict(MAIN["routers"][0], sources=16)])
        (folder / "tieline.json").write_text(json.dumps(changed))
        assert node.reload() == ["routers"]
        assert node.routing.routers["studio"].state.spec.sources == 8
        await b.close()
        await watcher.close()


def test_sighup_reloads_users_added_with_the_cli(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "tieline.json").write_text(json.dumps(MAIN))
    (folder / "users.json").write_text(json.dumps({"users": []}))
    env = dict(os.environ, TIELINE_SETTINGS=str(folder))
    proc, banner = start([], env)
    try:
        url = banner.split(" serving ")[1].split()[0]
        token = tieline("users", "add", "ops", "--level", "2", env=env).stdout.strip()
        before = tieline("status", "--server", url, "--token", token, env=env)
        assert before.returncode == 1 and "unknown token" in before.stderr
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            after = tieline("status", "--server", url, "--token", token, env=env)
            if after.returncode == 0:
                break
        assert after.returncode == 0, after.stderr
    finally:
        code, output = stop(proc)
    assert code == 0, output
    assert "settings reloaded" in output
