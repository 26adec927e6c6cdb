"""RoutingService behaviour that needs a slow or absent device."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tieline.errors import InvalidRequest
from tieline.model import Permission, PortKind, Principal

from .helpers import RawClient, api_url, running_node


async def test_unconfirmed_route_times_out_with_a_clear_error(settings_dir):
    folder = settings_dir({"tieline.json": {
        "node": {"name": "slow"},
        "routers": [{"id": "slow", "driver": "simulator", "levels": ["video"], "sources": 4,
                     "destinations": 4, "switch_delay_ms": 400, "confirm_timeout_ms": 50}],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
        "auth": {"loopback_anonymous_level": 2},
    }})
    async with running_node(folder) as node:
        client = await RawClient.open(api_url(node))
        await client.request("subscribe", snapshot=False)
        response = await client.request("route", router="slow", destination=2, source=3)
        assert response["error"] == {
            "code": "timeout",
            "message": "router 'slow': the device did not confirm destination 2 ← source 3 on "
                       "level video within 0.05 s; it may be refusing it or the link may be "
                       "slow (check the tally)"}
        # the device made the route later: the tally shows it, as it shows everything
        event = await client.next_event(timeout=5)
        assert event["crosspoints"] == [{"level": "video", "destination": 2, "source": 3}]
        await client.close()


async def test_request_to_an_offline_router_fails_at_once(settings_dir):
    folder = settings_dir({"tieline.json": {
        "node": {"name": "off"},
        "routers": [{"id": "far", "driver": "simulator", "levels": ["video"], "sources": 4,
                     "destinations": 4, "transport": {"type": "tcp", "host": "127.0.0.1",
                                                       "port": 9}}],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
        "auth": {"loopback_anonymous_level": 2},
    }})
    async with running_node(folder, online=False) as node:
        client = await RawClient.open(api_url(node))
        response = await asyncio.wait_for(
            client.request("route", router="far", destination=1, source=2), 1)
        assert response["error"]["code"] == "offline"
        assert response["error"]["message"].startswith(
            "router 'far' is offline (tcp://127.0.0.1:9); the request was not sent")
        status = await client.request("status")
        assert status["result"]["routers"] == [{"id": "far", "online": False}]
        await client.close()


@pytest.mark.parametrize("label_store", ["settings", "device"])
async def test_a_label_that_is_not_unicode_is_refused_naming_text(settings_dir, caplog,
                                                                   label_store):
    """Whatever API hands it on, a lone surrogate never reaches labels.json or a device."""
    folder = settings_dir({"tieline.json": {
        "node": {"name": "labels"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"], "sources": 4,
                     "destinations": 4, "label_store": label_store}],
    }})
    async with running_node(folder) as node:
        admin = Principal("admin", Permission.ADMIN)
        with pytest.raises(InvalidRequest) as info:
            await node.routing.set_label(admin, "studio", PortKind.SOURCE, 0, "CAM \ud800")
        assert info.value.field == "text"
        assert "lone surrogate" in info.value.message
        assert node.routing.routers["studio"].state.label(PortKind.SOURCE, 0) == "Input 1"
        assert not (node.settings.folder / "labels.json").exists()
        await node.routing.set_label(admin, "studio", PortKind.SOURCE, 0, "CAM \U0001F3A5")
        assert node.routing.routers["studio"].state.label(PortKind.SOURCE, 0) == "CAM \U0001F3A5"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
