"""The Videohub API's settings and rendering, without sockets (tests/integration/
test_videohub_api.py drives it over TCP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tieline.errors import SettingsError, TielineError
from tieline.model import Crosspoint, Permission, PortKind, Principal, Protect, ProtectKind
from tieline.node import build_node
from tieline.plugins.videohub.api import VideohubApi, VideohubClient
from tieline.plugins.videohub.codec import (
    Codec,
    DeviceInfo,
    EndPrelude,
    LabelTable,
    Labels,
    Locks,
    LockState,
    LockTable,
    Preamble,
    Role,
    Routes,
    RoutingTable,
    prelude,
)

U, O, L = LockState.UNLOCKED, LockState.OWNED, LockState.LOCKED


def folder(settings_dir: Any, *apis: dict[str, Any], name: str = "settings") -> Path:
    return settings_dir({"tieline.json": {
        "node": {"name": "unit"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video", "a1", "a2"],
                     "sources": 4, "destinations": 3}],
        "apis": [{"type": "videohub", "listen": f"127.0.1.{i}:9990", **api}
                 for i, api in enumerate(apis, 1)],
    }}, name)


def api(settings_dir: Any, name: str = "settings", **options: Any) -> VideohubApi:
    node = build_node(folder(settings_dir, {"router": "studio", **options}, name=name))
    (vh,) = node.apis
    assert isinstance(vh, VideohubApi)
    return vh


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("options, words", [
    ({}, "$.apis[0]: missing required key 'router'"),
    ({"router": "studio", "permission": 4}, "permission: expected a number ≤ 3, got 4"),
    ({"router": "studio", "permission": 0}, "permission: expected a number ≥ 1, got 0"),
    ({"router": "studio", "unique_id": "7C2E0D07"},
     'unique_id: "7C2E0D07" has the wrong form; expected: 12 hex digits'),
    ({"router": "studio", "levels": "some"}, "levels"),
    ({"router": "studio", "levels": []}, "levels"),
    ({"router": "studio", "model_name": "two\nlines"},
     "has the wrong form; expected: text without line breaks"),
    ({"router": "studio", "max_clients": 0}, "max_clients: expected a number ≥ 1"),
    ({"router": "studio", "max_block_bytes": 1024}, "expected a number ≥ 4096, got 1024"),
    ({"router": "studio", "client_buffer_bytes": 1 << 30}, "expected a number ≤ 67108864"),
    ({"router": "studio", "tls": {}}, "tls"),  # a WebSocket key
])
def test_settings_are_checked_by_the_schema(settings_dir, options, words):
    with pytest.raises(SettingsError) as info:
        build_node(folder(settings_dir, options))
    assert words in str(info.value), str(info.value)


@pytest.mark.parametrize("options, shown, routed", [
    ({}, "video", ("video",)),
    ({"level": "a1"}, "a1", ("a1",)),
    ({"levels": "all"}, "video", ("video", "a1", "a2")),
    ({"levels": "all", "level": "a2"}, "a2", ("video", "a1", "a2")),
    ({"levels": ["a1", "a2"]}, "a1", ("a1", "a2")),
    ({"levels": ["a1", "a2"], "level": "a2"}, "a2", ("a1", "a2")),
])
def test_levels_shown_and_routed(settings_dir, options, shown, routed):
    vh = api(settings_dir, **options)
    vh._resolve()
    assert vh.rt is not None
    assert vh.rt.state.spec.levels[vh.level] == shown
    assert vh.level_names == routed
    assert vh.levels == tuple(vh.rt.state.spec.level_index(n) for n in routed)
    assert f"level {shown}" in vh.describe()


@pytest.mark.parametrize("options, path, words", [
    ({"router": "nope"}, "$.apis[0].router", "no router 'nope'; routers: studio"),
    ({"level": "a9"}, "$.apis[0].level",
     "router 'studio' has no level 'a9'; its levels are video, a1, a2"),
    ({"levels": ["video", "a9"]}, "$.apis[0].levels", "has no level 'a9'"),
    ({"level": "video", "levels": ["a1"]}, "$.apis[0].levels",
     "\"level\" 'video' must be one of \"levels\" (a1)"),
    ({"clients": ["10.0.0.0/33"]}, "$.apis[0].clients",
     "'10.0.0.0/33' is not an address or network"),
    ({"force_unlock": ["panel-3"]}, "$.apis[0].force_unlock", "'panel-3' is not an address"),
])
def test_settings_that_do_not_fit_the_routers_are_refused(settings_dir, options, path, words):
    """Checked with the whole folder (tieline validate), before anything starts."""
    with pytest.raises(SettingsError) as info:
        build_node(folder(settings_dir, {"router": "studio", **options}))
    (problem,) = info.value.problems
    assert problem.path == path and words in problem.message, problem


def test_unique_id_is_stable_and_differs_per_listen(settings_dir):
    first = api(settings_dir, name="one")
    again = api(settings_dir, name="two")
    assert first.unique_id == again.unique_id
    assert len(first.unique_id) == 12 and int(first.unique_id, 16) >= 0
    assert first.unique_id == first.unique_id.upper()
    node = build_node(folder(settings_dir, {"router": "studio"}, {"router": "studio"},
                             name="three"))
    assert node.apis[0].unique_id != node.apis[1].unique_id
    assert api(settings_dir, name="four", unique_id="7c2e0d0726a0").unique_id == "7c2e0d0726a0"


def test_defaults(settings_dir):
    vh = api(settings_dir)
    vh._resolve()
    assert vh.permission is Permission.ROUTE
    assert (vh.model_name, vh.friendly_name) == ("tieline Videohub", "studio")
    assert [str(n) for n in vh.allowed] == ["127.0.0.0/8", "::1/128"]
    assert vh.force_allowed == ()
    assert (vh.max_clients, vh.max_block_bytes, vh.client_buffer_bytes) == (64, 262144, 1048576)


# -- rendering ---------------------------------------------------------------------------------


def client_at(vh: VideohubApi, address: str) -> VideohubClient:
    client = VideohubClient(vh)
    client.address = address
    client.principal = Principal(f"videohub {address}", vh.permission, address)
    return client


def ready(vh: VideohubApi) -> None:
    """As if the router were online with output d on input d + 1 on every level."""
    vh._resolve()
    assert vh.rt is not None
    state = vh.rt.state
    state.online = True
    for level in range(3):
        for d in range(3):
            state.apply(Crosspoint(level, d, d + 1))
    state.set_label(PortKind.SOURCE, 0, "CAM 1")
    state.set_label(PortKind.DESTINATION, 2, "line\tone\x07")


def parsed(data: bytes) -> list[Any]:
    codec = Codec(Role.CONTROLLER)
    codec.receive_data(data)
    return list(codec.events())


async def test_status_dump_is_the_codecs_prelude(settings_dir):
    vh = api(settings_dir, friendly_name="B", unique_id="0123456789AB")
    ready(vh)
    dump = parsed(vh.status_dump(client_at(vh, "127.0.0.1")))
    device = DeviceInfo(present="true", model_name="tieline Videohub", friendly_name="B",
                        unique_id="0123456789AB", video_inputs=4, video_processing_units=0,
                        video_outputs=3, video_monitoring_outputs=0, serial_ports=0)
    tables = [
        Labels(LabelTable.INPUT, ((0, "CAM 1"), (1, "2"), (2, "3"), (3, "4"))),
        Labels(LabelTable.OUTPUT, ((0, "1"), (1, "2"), (2, "line\tone?"))),
        Locks(LockTable.VIDEO_OUTPUT, ((0, U), (1, U), (2, U))),
        Routes(RoutingTable.VIDEO_OUTPUT, ((0, 1), (1, 2), (2, 3))),
    ]
    assert dump == prelude(device, tables)
    assert isinstance(dump[0], Preamble) and dump[0].version == "2.8"
    assert isinstance(dump[-1], EndPrelude)


async def test_unknown_sources_are_left_out_of_the_routing_table(settings_dir):
    vh = api(settings_dir)
    ready(vh)
    assert vh.rt is not None
    vh.rt.state.apply(Crosspoint(0, 1, -1))
    dump = parsed(vh.status_dump(client_at(vh, "127.0.0.1")))
    assert dump[1].video_outputs == 3  # the count stays the router's
    assert dump[5] == Routes(RoutingTable.VIDEO_OUTPUT, ((0, 1), (2, 3)))


async def test_offline_router_shows_device_not_present(settings_dir):
    vh = api(settings_dir)
    vh._resolve()
    assert parsed(vh.status_dump(client_at(vh, "127.0.0.1"))) == [
        Preamble("2.8"), DeviceInfo(present="false")]
    assert vh.full_block("VIDEO OUTPUT ROUTING", client_at(vh, "127.0.0.1")) is None
    assert vh.full_block("VIDEOHUB DEVICE", client_at(vh, "127.0.0.1")) == DeviceInfo(
        present="false")


@pytest.mark.parametrize("protects, letters", [
    ({}, {"videohub 10.0.0.1": U, "videohub 10.0.0.2": U}),
    ({1: Protect(ProtectKind.PROTECT, "videohub 10.0.0.1")},
     {"videohub 10.0.0.1": O, "videohub 10.0.0.2": L}),
    ({0: Protect(ProtectKind.PROTECT, "videohub 10.0.0.1"),
      2: Protect(ProtectKind.PROTECT, "videohub 10.0.0.1")},
     {"videohub 10.0.0.1": O, "videohub 10.0.0.2": L}),
    # someone else on one routed level: nobody may route it all, so L for everyone
    ({0: Protect(ProtectKind.PROTECT, "videohub 10.0.0.1"),
      1: Protect(ProtectKind.PROTECT, "alice")},
     {"videohub 10.0.0.1": L, "videohub 10.0.0.2": L}),
    # a tieline lock stops its owner too
    ({1: Protect(ProtectKind.LOCK, "videohub 10.0.0.1")},
     {"videohub 10.0.0.1": L, "videohub 10.0.0.2": L}),
])
def test_lock_letters_over_the_routed_levels(settings_dir, protects, letters):
    vh = api(settings_dir, levels="all")
    vh._resolve()
    assert vh.rt is not None
    for level, protect in protects.items():
        vh.rt.state.set_protect(level, 2, protect)
    assert {owner: vh.letter(2, owner) for owner in letters} == letters


def test_protects_on_levels_not_routed_do_not_show(settings_dir):
    vh = api(settings_dir, levels=["video", "a1"])
    vh._resolve()
    assert vh.rt is not None
    vh.rt.state.set_protect(2, 0, Protect(ProtectKind.PROTECT, "alice"))
    assert vh.letter(0, "videohub 10.0.0.1") is U
