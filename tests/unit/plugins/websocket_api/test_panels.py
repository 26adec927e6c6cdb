"""The ``panels`` option of the WebSocket API (plugins/websocket_api/panels.py): range
strings, the checks the schema cannot make, and the defaults.

What ``tieline validate`` and ``tieline run`` say of bad panels, and the ``panels`` request
over a real socket: tests/integration/test_websocket_panels.py.
"""

from __future__ import annotations

import doctest

import pytest

from tieline import RouterSpec, TielineError
from tieline.plugins.websocket_api import origins, panels
from tieline.plugins.websocket_api import http as panel_http
from tieline.plugins.websocket_api.panels import SETTINGS_SCHEMA, check, parse_ranges, resolve
from tieline.settings.loader import schema_validator

ROUTERS = {
    "studio": RouterSpec("studio", "simulator", ("video", "audio"), 32, 16),
    "big": RouterSpec("big", "simulator", tuple(f"l{i}" for i in range(16)), 4096, 4096),
    "edge": RouterSpec("edge", "simulator", ("video",), 64, 65),
}


@pytest.mark.parametrize("module", [panels, origins, panel_http])
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize("text, ranges", [
    ("1", [(1, 1)]),
    ("1-10,17", [(1, 10), (17, 17)]),
    (" 1 - 10 , 17 ", [(1, 10), (17, 17)]),
    ("5-5", [(5, 5)]),
    ("17,1-3", [(17, 17), (1, 3)]),
])
def test_range_strings(text, ranges):
    assert parse_ranges(text) == ranges


@pytest.mark.parametrize("text, words", [
    ("0", "'0': ports are numbered from 1, not 0"),
    ("0-4", "'0-4': ports are numbered from 1, not 0"),
    ("10-1", "'10-1' runs backwards; write '1-10'"),
    ("a", "'a' is not a port number or a range; write ports like '1-10,17'"),
    ("1-b", "'1-b' is not a port number or a range"),
    ("1-", "'1-' is not a port number or a range"),
    ("-3", "'-3' is not a port number or a range"),
    ("1--3", "'1--3' is not a port number or a range"),
    ("1-2-3", "'1-2-3' is not a port number or a range"),
    ("1.5", "'1.5' is not a port number or a range"),
    ("1;2", "'1;2' is not a port number or a range"),
    ("1,,2", "'1,,2' has an empty item; write ports like '1-10,17'"),
    ("1,", "'1,' has an empty item"),
    ("", "'' has an empty item"),
    (" ", "has an empty item"),
    ("１", "'１' is not a port number or a range"),  # a full-width digit is no digit here
    ("1234567", "'1234567': a port number has at most 6 digits"),
    ("1-" + "9" * 5000, "a port number has at most 6 digits"),
])
def test_bad_range_strings_say_what_to_write(text, words):
    with pytest.raises(ValueError) as info:
        parse_ranges(text)
    assert words in str(info.value)


def _valid(panel_list):
    errors = list(schema_validator(SETTINGS_SCHEMA).iter_errors(panel_list))
    assert errors == [], errors[0].message
    return panel_list


def test_defaults_one_panel_per_router():
    resolved = resolve(None, ROUTERS)
    assert [p["name"] for p in resolved] == ["studio", "big", "edge"]
    studio = resolved[0]
    assert studio == {
        "name": "studio", "router": "studio", "layout": "xy", "two_step_take": False,
        "levels": ["video", "audio"],
        "destinations": [{"name": "All", "ports": list(range(1, 17)), "colour": None}],
        "sources": [{"name": "All", "ports": list(range(1, 33)), "colour": None}],
    }
    assert resolved[1]["layout"] == "bus"  # 4096 x 4096
    assert resolved[1]["levels"] == [f"l{i}" for i in range(16)]
    assert resolved[2]["layout"] == "bus"  # 65 destinations: more than 64


def test_a_configured_panel_is_resolved_with_its_defaults_filled_in():
    configured = _valid([
        {"name": "MCR", "router": "studio", "layout": "bus", "two_step_take": True,
         "levels": ["audio"],
         "destinations": [{"name": "Air", "ports": "3,1-2", "colour": "#C0392B"},
                          {"name": "Monitors", "ports": [16, 7, 8]}],
         "sources": [{"name": "Cameras", "ports": "1-4"}, {"name": "Again", "ports": "2"}]},
        {"name": "Studio A", "router": "studio"},
    ])
    mcr, plain = resolve(configured, ROUTERS)
    assert mcr == {
        "name": "MCR", "router": "studio", "layout": "bus", "two_step_take": True,
        "levels": ["audio"],
        "destinations": [{"name": "Air", "ports": [1, 2, 3], "colour": "#c0392b"},
                         {"name": "Monitors", "ports": [7, 8, 16], "colour": None}],
        "sources": [{"name": "Cameras", "ports": [1, 2, 3, 4], "colour": None},
                    {"name": "Again", "ports": [2], "colour": None}],  # a port in two groups
    }
    assert plain == {**resolve(None, ROUTERS)[0], "name": "Studio A"}
    assert configured[0]["destinations"][0]["ports"] == "3,1-2"  # the settings untouched


@pytest.mark.parametrize("panel, path, words", [
    ({"name": "x", "router": "nope"}, ("panels", 0, "router"),
     "no router 'nope' (routers: big, edge, studio)"),
    ({"name": "x", "router": "studio", "levels": ["video", "vision"]}, ("panels", 0, "levels", 1),
     "router 'studio' has no level 'vision'; its levels: video, audio"),
    ({"name": "x", "router": "studio", "sources": [{"name": "a", "ports": "30-33"}]},
     ("panels", 0, "sources", 0, "ports"),
     "source 30-33 is out of range: router 'studio' has 32 sources (1–32)"),
    ({"name": "x", "router": "studio", "destinations": [{"name": "a", "ports": "17"}]},
     ("panels", 0, "destinations", 0, "ports"),
     "destination 17 is out of range: router 'studio' has 16 destinations (1–16)"),
    ({"name": "x", "router": "studio", "destinations": [{"name": "a", "ports": [1, 2, 40]}]},
     ("panels", 0, "destinations", 0, "ports", 2), "destination 40 is out of range"),
    ({"name": "x", "router": "studio", "sources": [{"name": "a", "ports": "1-10,5"}]},
     ("panels", 0, "sources", 0, "ports"), "source 5 is given twice in this group"),
    ({"name": "x", "router": "studio", "sources": [{"name": "a", "ports": [3, 3]}]},
     ("panels", 0, "sources", 0, "ports", 1), "source 3 is given twice in this group"),
    ({"name": "x", "router": "studio", "sources": [{"name": "a", "ports": "0"}]},
     ("panels", 0, "sources", 0, "ports"), "'0': ports are numbered from 1, not 0"),
    ({"name": "x", "router": "studio", "sources": [{"name": "a", "ports": "9-2"}]},
     ("panels", 0, "sources", 0, "ports"), "'9-2' runs backwards; write '2-9'"),
    ({"name": "x", "router": "studio", "sources": [{"name": "a", "ports": "cams"}]},
     ("panels", 0, "sources", 0, "ports"), "'cams' is not a port number or a range"),
    ({"name": "x", "router": "studio", "sources": [{"name": "a", "ports": "1"},
                                                   {"name": "a", "ports": "2"}]},
     ("panels", 0, "sources", 1, "name"), "group name 'a' is already used by sources[0]"),
    ({"name": "x", "router": "big", "sources": [{"name": "a", "ports": "1-999999"}]},
     ("panels", 0, "sources", 0, "ports"), "source 1-999999 is out of range"),
])
def test_check_names_the_value_at_fault(panel, path, words):
    problems = check(_valid([panel]), ROUTERS)
    assert len(problems) == 1, problems
    assert problems[0][0] == path
    assert words in problems[0][1]
    with pytest.raises(TielineError) as info:
        resolve([panel], ROUTERS)
    assert words in str(info.value)


def test_panel_names_are_unique():
    problems = check(_valid([{"name": "a", "router": "studio"}, {"name": "b", "router": "big"},
                             {"name": "a", "router": "big"}]), ROUTERS)
    assert problems == [(("panels", 2, "name"), "panel name 'a' is already used by panels[0]; "
                                                 "give each panel its own name")]


def test_every_problem_is_reported_not_only_the_first():
    problems = check(_valid([
        {"name": "a", "router": "studio", "levels": ["x"],
         "sources": [{"name": "s", "ports": "0"}], "destinations": [{"name": "d", "ports": [99]}]},
        {"name": "b", "router": "nope"},
    ]), ROUTERS)
    assert [p for p, _ in problems] == [
        ("panels", 0, "levels", 0), ("panels", 0, "destinations", 0, "ports", 0),
        ("panels", 0, "sources", 0, "ports"), ("panels", 1, "router")]


@pytest.mark.parametrize("panel", [
    {"router": "studio"},
    {"name": "x"},
    {"name": "", "router": "studio"},
    {"name": "a\nb", "router": "studio"},
    {"name": "x", "router": "studio", "layout": "grid"},
    {"name": "x", "router": "studio", "two_step_take": "yes"},
    {"name": "x", "router": "studio", "levels": []},
    {"name": "x", "router": "studio", "levels": ["video", "video"]},
    {"name": "x", "router": "studio", "sources": []},
    {"name": "x", "router": "studio", "sources": [{"name": "a"}]},
    {"name": "x", "router": "studio", "sources": [{"name": "a", "ports": []}]},
    {"name": "x", "router": "studio", "sources": [{"name": "a", "ports": ""}]},
    {"name": "x", "router": "studio", "sources": [{"name": "a", "ports": [0]}]},
    {"name": "x", "router": "studio", "sources": [{"name": "a", "ports": [1.0]}]},
    {"name": "x", "router": "studio", "sources": [{"name": "a", "ports": [True]}]},
    {"name": "x", "router": "studio", "sources": [{"name": "a", "ports": 3}]},
    {"name": "x", "router": "studio", "sources": [{"name": "a", "ports": "1", "colour": "red"}]},
    {"name": "x", "router": "studio", "sources": [{"name": "a", "ports": "1", "color": "#fff"}]},
    {"name": "x", "router": "studio", "extra": 1},
])
def test_the_schema_refuses(panel):
    assert list(schema_validator(SETTINGS_SCHEMA).iter_errors([panel])), panel
