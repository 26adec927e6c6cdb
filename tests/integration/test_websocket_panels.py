"""The ``panels`` option and request of the WebSocket API (plugins/websocket_api/panels.py)
with a real node over real sockets, and what ``tieline validate`` and ``tieline run`` say of
bad panels: the same problems, each with file, line and JSON path.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from click.testing import CliRunner

from tieline.auth import hash_token
from tieline.cli import main
from tieline.errors import SettingsError
from tieline.node import build_node

from .helpers import TIELINE, RawClient, api_url, running_node

TOKENS = {"watcher": "watch-token"}


def _files(**api: Any) -> dict[str, Any]:
    return {
        "tieline.json": {
            "node": {"name": "panels"},
            "routers": [
                {"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                 "sources": 32, "destinations": 16},
                {"id": "big", "driver": "simulator", "levels": ["video"],
                 "sources": 128, "destinations": 100},
            ],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0", **api}],
            "auth": {"users_file": "users.json"},
        },
        "users.json": {"users": [
            {"name": "watcher", "level": 1, "token_sha256": hash_token(TOKENS["watcher"])}]},
    }


async def test_without_panels_each_router_has_its_own(settings_dir):
    async with running_node(settings_dir(_files())) as node:
        c = await RawClient.open(api_url(node), TOKENS["watcher"])
        response = await c.request("panels")
        assert response["ok"], response
        studio, big = response["result"]["panels"]
        assert studio == {
            "name": "studio", "router": "studio", "layout": "xy", "two_step_take": False,
            "levels": ["video", "audio"],
            "destinations": [{"name": "All", "ports": list(range(1, 17)), "colour": None}],
            "sources": [{"name": "All", "ports": list(range(1, 33)), "colour": None}],
        }
        assert (big["name"], big["layout"]) == ("big", "bus")
        assert big["sources"][0]["ports"] == list(range(1, 129))
        await c.close()


async def test_configured_panels_are_answered_resolved(settings_dir):
    panels = [
        {"name": "MCR", "router": "big", "layout": "xy", "two_step_take": True,
         "destinations": [{"name": "Air", "ports": "1-2,100", "colour": "#C0392B"}],
         "sources": [{"name": "Cameras", "ports": [8, 1, 2]}, {"name": "Rest", "ports": "9-128"}]},
        {"name": "Audio desk", "router": "studio", "levels": ["audio"]},
    ]
    async with running_node(settings_dir(_files(panels=panels))) as node:
        c = await RawClient.open(api_url(node), TOKENS["watcher"])
        mcr, desk = (await c.request("panels"))["result"]["panels"]
        assert mcr == {
            "name": "MCR", "router": "big", "layout": "xy", "two_step_take": True,
            "levels": ["video"],
            "destinations": [{"name": "Air", "ports": [1, 2, 100], "colour": "#c0392b"}],
            "sources": [{"name": "Cameras", "ports": [1, 2, 8], "colour": None},
                        {"name": "Rest", "ports": list(range(9, 129)), "colour": None}],
        }
        assert desk["levels"] == ["audio"] and desk["layout"] == "xy"
        assert desk["destinations"][0]["ports"] == list(range(1, 17))
        await c.close()


async def test_panels_needs_a_user(settings_dir):
    async with running_node(settings_dir(_files())) as node:
        c = await RawClient.open(api_url(node), auth=False)
        assert (await c.request("panels"))["error"]["code"] == "unauthenticated"
        assert (await c.request("hello", protocol=1, token=TOKENS["watcher"]))["ok"]
        extra = await c.request("panels", router="studio")
        assert extra["error"]["code"] == "invalid" and extra["error"]["field"] == "router"
        await c.close()


# -- validate and run refuse alike -------------------------------------------------------

BAD = [
    ({"name": "a", "router": "nope"}, "$.apis[0].panels[0].router",
     "no router 'nope' (routers: big, studio)"),
    ({"name": "a", "router": "studio", "levels": ["video", "vision"]},
     "$.apis[0].panels[0].levels[1]", "router 'studio' has no level 'vision'"),
    ({"name": "a", "router": "studio", "sources": [{"name": "s", "ports": "1-10,40"}]},
     "$.apis[0].panels[0].sources[0].ports",
     "source 40 is out of range: router 'studio' has 32 sources (1–32)"),
    ({"name": "a", "router": "studio", "destinations": [{"name": "d", "ports": [1, 17]}]},
     "$.apis[0].panels[0].destinations[0].ports[1]",
     "destination 17 is out of range: router 'studio' has 16 destinations (1–16)"),
    ({"name": "a", "router": "studio", "sources": [{"name": "s", "ports": "0"}]},
     "$.apis[0].panels[0].sources[0].ports", "'0': ports are numbered from 1, not 0"),
    ({"name": "a", "router": "studio", "sources": [{"name": "s", "ports": "10-1"}]},
     "$.apis[0].panels[0].sources[0].ports", "'10-1' runs backwards; write '1-10'"),
    ({"name": "a", "router": "studio", "sources": [{"name": "s", "ports": "cams"}]},
     "$.apis[0].panels[0].sources[0].ports",
     "'cams' is not a port number or a range; write ports like '1-10,17'"),
    ({"name": "a", "router": "studio", "layout": "grid"}, "$.apis[0].panels[0].layout", "grid"),
    ({"name": "a", "router": "studio", "sources": [{"name": "s", "ports": "1",
                                                    "colour": "red"}]},
     "$.apis[0].panels[0].sources[0].colour", "#rrggbb"),
]


def _problem_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  tieline.json:")]


@pytest.mark.parametrize("panel, path, words", BAD, ids=[p for _, p, _ in BAD])
def test_validate_and_run_name_the_value_with_its_line(settings_dir, panel, path, words):
    folder = settings_dir(_files(panels=[{"name": "ok", "router": "big"}, panel]))
    path = path.replace("panels[0]", "panels[1]")
    text = (folder / "tieline.json").read_text().splitlines()
    result = CliRunner().invoke(main, ["validate", "--settings", str(folder)])
    assert result.exit_code == 1, result.output
    (line,) = _problem_lines(result.output)
    where, _, message = line.partition(f": {path}: ")
    assert message and words in message, line
    number = int(where.split(":")[1])
    key = path.rsplit(".", 1)[-1].split("[")[0]
    assert f'"{key}"' in text[number - 1] or path.endswith("]"), (text[number - 1], line)
    with pytest.raises(SettingsError) as refused:  # what tieline run does first
        build_node(folder)
    assert str(refused.value) in result.output


def test_tieline_run_refuses_a_bad_panel_like_validate(settings_dir):
    folder = settings_dir(_files(panels=[{"name": "a", "router": "studio", "sources": [
        {"name": "s", "ports": "3-1"}]}]))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("TIELINE_SETTINGS", None)
    run = subprocess.run([TIELINE, "run", "--settings", str(folder)], capture_output=True,
                         text=True, timeout=30, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    validate = CliRunner().invoke(main, ["validate", "--settings", str(folder)])
    assert _problem_lines(run.stderr) == _problem_lines(validate.output) != []
    assert "$.apis[0].panels[0].sources[0].ports: '3-1' runs backwards" in run.stderr



def test_the_demo_offers_two_panels(tmp_path):
    from tieline.ops.demo import ensure_demo

    node = build_node(ensure_demo(tmp_path / "demo"))
    studio, transmission = node.apis[0].panels
    assert (studio["name"], studio["layout"], studio["two_step_take"]) == ("studio", "xy", False)
    assert [g["name"] for g in studio["sources"]] == [
        "Cameras", "Playout", "Graphics", "Contribution", "Spare", "Test"]
    assert sorted(p for g in studio["sources"] for p in g["ports"]) == list(range(1, 33))
    assert sorted(p for g in studio["destinations"] for p in g["ports"]) == list(range(1, 33))
    assert (transmission["layout"], transmission["two_step_take"]) == ("bus", True)
    assert transmission["sources"] == [
        {"name": "All", "ports": list(range(1, 33)), "colour": None}]
