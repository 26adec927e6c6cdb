"""The browser tests' own fixtures do what the panel's tests rely on: nodes with users of
every level that can be killed and restarted on the same port, emulators that log what a
node sent them, and asyncio helpers callable while the browser is open."""

from __future__ import annotations

import asyncio

import pytest

from tests.failover.cluster import status_of

from .browsing import APIError, run_async


def test_node_users_kill_and_restart(page, node):
    """Each level's token works as that level; a SIGKILLed node is gone, and comes back on
    the same port with the same users when restarted."""
    tieline = node()
    assert tieline.request("status", user="watcher")["ok"]
    with pytest.raises(APIError, match="permission level 2"):
        tieline.request("route", user="watcher", router="studio", destination=1, source=2)
    assert tieline.request("route", user="operator", router="studio", destination=1,
                           source=2)["ok"]
    assert [tieline.token(level) for level in (1, 2, 3)] == [
        tieline.tokens["watcher"], tieline.tokens["operator"], tieline.tokens["admin"]]
    tieline.kill()
    assert tieline.status() is None
    tieline.start()
    assert tieline.status()["status"] == "Standalone is active"


def test_async_helpers_run_while_the_browser_is_open(page, node):
    """With Playwright's sync API open, asyncio.run fails in the test's thread; run_async
    runs the failover tests' async helpers in a thread of their own."""
    tieline = node()
    page.goto("about:blank")  # Playwright is open and has run a call
    coroutine = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="running event loop"):
        asyncio.run(coroutine)
    coroutine.close()
    status = run_async(lambda: status_of(tieline.ws_url, tieline.tokens["admin"]))
    assert status["routers"] == [{"id": "studio", "online": True}]
    with pytest.raises(ZeroDivisionError):
        run_async(lambda: asyncio.sleep(0, 1 / 0))


def test_a_node_drives_an_emulator(node, emulator):
    """A node's Videohub router against ``tieline emulate videohub``: a route reaches the
    emulator, which logs the command (0-based: output 2 from input 4)."""
    hub = emulator("videohub", inputs=8, outputs=8)
    tieline = node(routers=[{"id": "hub", "driver": "videohub", "levels": ["video"],
                             "sources": 8, "destinations": 8, "transport": hub.transport}])
    response = tieline.request("route", user="operator", router="hub", destination=3,
                               source=5)
    assert response["result"]["crosspoints"] == [{"level": "video", "destination": 3,
                                                  "source": 5}]
    assert any("routes=((2, 4),)" in c["command"] for c in hub.commands()), hub.commands()
