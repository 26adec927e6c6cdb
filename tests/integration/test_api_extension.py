"""A third-party API extension: the example plugin (tests/fixtures/thirdparty_plugin) adds the
WebSocket command ``crosspoints_csv`` through ``tieline_api_commands``; a real node serves
it to a raw WebSocket client with its schema and permission level, and docs/plugins.md shows
the plugin's code exactly as it is."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tieline_thirdparty_example.commands as example_commands
from tieline import Permission
from tieline.auth import hash_token

from .helpers import RawClient, api_url, running_node

ROOT = Path(__file__).resolve().parents[2]
TIELINE = str(Path(sys.executable).with_name("tieline"))
TOKENS = {"watcher": "watch-token", "operator": "route-token"}
LEVELS = {"watcher": 1, "operator": 2}
HEADER = ["destination", "destination label", "source", "source label"]


@pytest.fixture
async def node(settings_dir):
    folder = settings_dir({
        "tieline.json": {
            "node": {"name": "ext-test"},
            "routers": [{"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                         "sources": 8, "destinations": 6, "label_store": "settings"}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"users_file": "users.json"},
        },
        "users.json": {"users": [
            {"name": n, "level": LEVELS[n], "token_sha256": hash_token(t)}
            for n, t in TOKENS.items()
        ]},
        "labels.json": {"routers": {"studio": {
            "sources": {"5": "CAM 5, wide", "2": 'GFX "A"'},
            "destinations": {"3": "PGM"}}}},
    })
    async with running_node(folder) as node:
        yield node


def csv_from_snapshot(router: dict, level: str) -> str:
    """The CSV the command must answer, built from the API's own snapshot of the router."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    labels = router["labels"]
    for index, source in enumerate(router["crosspoints"][level]):
        writer.writerow([index + 1, labels["destinations"][index],
                         "" if source is None else source,
                         "" if source is None else labels["sources"][source - 1]])
    return out.getvalue()


async def test_command_is_registered_with_its_plugin_and_level(node):
    command = node.commands["crosspoints_csv"]
    assert (command.plugin, command.level) == ("thirdparty_example", Permission.WATCH)
    assert command.schema is example_commands.CROSSPOINTS_CSV_SCHEMA


async def test_csv_matches_the_snapshot_after_a_route(node):
    operator = await RawClient.open(api_url(node), TOKENS["operator"])
    routed = await operator.request("route", router="studio", destination=3, source=5,
                                    levels=["video"])
    assert routed["ok"], routed
    await operator.close()

    watcher = await RawClient.open(api_url(node), TOKENS["watcher"])
    snapshot = (await watcher.request("snapshot", routers=["studio"]))["result"]["routers"][0]
    assert snapshot["crosspoints"]["video"][2] == 5
    video = await watcher.request("crosspoints_csv", router="studio", level="video")
    assert video["ok"], video
    assert video["result"] == {"csv": csv_from_snapshot(snapshot, "video")}
    rows = list(csv.reader(io.StringIO(video["result"]["csv"])))
    assert rows[0] == HEADER and len(rows) == 1 + 6
    assert rows[3] == ["3", "PGM", "5", "CAM 5, wide"]  # quoted, parsed back whole

    audio = await watcher.request("crosspoints_csv", router="studio", level="audio")
    assert audio["result"] == {"csv": csv_from_snapshot(snapshot, "audio")}
    assert audio["result"] != video["result"]  # the route was on video only
    first_level = await watcher.request("crosspoints_csv", router="studio")
    assert first_level["result"] == video["result"]
    await watcher.close()


@pytest.mark.parametrize("fields,field,words", [
    ({}, "router", "missing required field 'router'"),
    ({"router": "studio", "format": "tsv"}, "format", "unknown field 'format'"),
    ({"router": "studio", "level": 2}, "level", "must be of type"),
])
async def test_schema_errors_name_the_field_and_keep_the_connection(node, fields, field,
                                                                    words):
    watcher = await RawClient.open(api_url(node), TOKENS["watcher"])
    response = await watcher.request("crosspoints_csv", **fields)
    assert not response["ok"]
    assert response["error"]["code"] == "invalid"
    assert response["error"]["field"] == field
    assert words in response["error"]["message"]
    assert (await watcher.request("ping"))["ok"]  # still open and served
    await watcher.close()


async def test_unknown_router_or_level_is_refused_naming_the_field(node):
    watcher = await RawClient.open(api_url(node), TOKENS["watcher"])
    router = await watcher.request("crosspoints_csv", router="nope")
    assert router["error"] == {"code": "not_found", "field": "router",
                               "message": "no router 'nope'; this node has: studio"}
    level = await watcher.request("crosspoints_csv", router="studio", level="data")
    assert level["error"]["code"] == "not_found"
    assert level["error"]["field"] == "level"
    assert "video, audio" in level["error"]["message"]
    assert (await watcher.request("ping"))["ok"]
    await watcher.close()


async def test_below_the_level_is_refused(node):
    # The command needs level 1 (watch). Users have levels 1-3 and anonymous loopback
    # clients are off here, so the only client below level 1 is one that has not
    # authenticated: it gets "unauthenticated" (a level-0 principal cannot exist).
    anonymous = await RawClient.open(api_url(node), auth=False)
    response = await anonymous.request("crosspoints_csv", router="studio")
    assert response["error"]["code"] == "unauthenticated", response
    await anonymous.close()


def test_plugins_listing_shows_the_hook():
    # `tieline plugins --json` lists each plugin's hooks, not the commands they add.
    done = subprocess.run([TIELINE, "plugins", "--json"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    example = plugins["thirdparty_example"]
    assert example["status"] == "loaded"
    assert "tieline_api_commands" in example["hooks"]


def test_the_guide_shows_the_example_code_verbatim():
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    source = Path(example_commands.__file__).read_text(encoding="utf-8")
    assert f"```python\n{source}```\n" in guide, (
        "docs/plugins.md must contain tests/fixtures/thirdparty_plugin/"
        "tieline_thirdparty_example/commands.py verbatim in a ```python block")
