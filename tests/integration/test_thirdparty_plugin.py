"""A third-party plugin package (tests/fixtures/thirdparty_plugin, installed into the test
environment as its own distribution) is discovered, and its driver, settings block, route
policy and event observer work from settings."""

from __future__ import annotations

import asyncio

from .helpers import RawClient, api_url, running_node


async def test_third_party_driver_policy_and_observer(settings_dir):
    folder = settings_dir({"tieline.json": {
        "node": {"name": "tp"},
        "routers": [{"id": "echo", "driver": "echo_matrix", "levels": ["video", "audio"],
                     "sources": 8, "destinations": 8}],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
        "auth": {"loopback_anonymous_level": 2},
        "thirdparty_example": {"forbid_destinations": [7], "event_log": "events.log"},
    }})
    async with running_node(folder) as node:
        assert node.plugins.infos["thirdparty_example"].distribution == "tieline-thirdparty-example"
        client = await RawClient.open(api_url(node))
        ok = await client.request("route", router="echo", destination=3, source=5)
        assert ok["ok"], ok
        state = node.routing.routers["echo"].state
        assert (state.source(0, 2), state.source(1, 2)) == (4, 4)
        refused = await client.request("route", router="echo", destination=7, source=5)
        assert refused["error"] == {
            "code": "refused",
            "message": "route refused by policy: destination 7 is reserved by the example plugin"}
        await client.close()
        log = folder / "events.log"
        async with asyncio.timeout(5):
            while "CrosspointsChanged" not in (log.read_text() if log.exists() else ""):
                await asyncio.sleep(0.01)
