"""Which web pages may open the WebSocket API, and what they may do anonymously
(plugins/websocket_api/origins.py): real nodes, real sockets, real WebSocket clients that
send the headers a browser would.

A browser sets ``Host`` from the URL it opens and ``Origin`` from the page. To play a page
of ``http://evil.example:PORT`` whose name resolves to 127.0.0.1 (DNS rebinding), the
client opens ``ws://evil.example:PORT`` but its TCP connection goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tieline.auth import hash_token
from tieline.cluster.peerlink import generate_cluster_key
from tieline.errors import SettingsError
from tieline.node import Node

from .helpers import RawClient, api_url, running_node

TOKEN = "operator-token"


def _settings(settings_dir, *, anonymous: int = 2, name: str = "settings",
              **api: Any) -> Path:
    return settings_dir({
        "tieline.json": {
            "node": {"name": "origins"},
            "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                         "sources": 8, "destinations": 8}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0", **api}],
            "auth": {"users_file": "users.json", "loopback_anonymous_level": anonymous},
        },
        "users.json": {"users": [{"name": "operator", "level": 2,
                                  "token_sha256": hash_token(TOKEN)}]},
    }, name=name)


@pytest.fixture
async def node(settings_dir) -> AsyncIterator[Node]:
    async with running_node(_settings(settings_dir,
                                      allowed_origins=["https://panel.example:8443",
                                                       "http://127.0.0.1:3000"])) as node:
        yield node


def _port(node: Node) -> int:
    return node.apis[0].server.sockets[0].getsockname()[1]


async def _page(node: Node, origin: str | None, *, host: str = "127.0.0.1",
                url_port: int | None = None, token: str | None = None,
                **kwargs: Any) -> RawClient:
    """A connection as a page of ``origin`` opening ``ws://HOST:URL_PORT`` makes it (the
    TCP connection always to the node's port on 127.0.0.1); hello sent with ``token``
    when given."""
    port = _port(node)
    extra = {"origin": origin} if origin is not None else {}
    c = await RawClient.open(f"ws://{host}:{url_port or port}/", auth=False, host="127.0.0.1",
                             port=port, **extra, **kwargs)
    if token is not None:
        assert (await c.request("hello", protocol=1, token=token))["ok"]
    return c


async def _anonymous_hello(c: RawClient) -> dict[str, Any]:
    return await c.request("hello", protocol=1)


async def _refused(node: Node, origin: str | None, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        await _page(node, origin, **kwargs)
    return info.value.response.status_code


async def test_the_nodes_own_panel_connects_and_gets_anonymous_loopback_rights(node):
    port = _port(node)
    for host, origin in (("127.0.0.1", f"http://127.0.0.1:{port}"),
                         ("localhost", f"http://localhost:{port}"),
                         ("LocalHost", f"http://localhost:{port}")):
        c = await _page(node, origin, host=host)
        hello = await _anonymous_hello(c)
        assert hello["result"]["user"] == {"name": "anonymous@127.0.0.1", "level": 2}
        assert (await c.request("route", router="studio", destination=1, source=2))["ok"]
        assert (await c.request("panels"))["ok"]
        await c.close()


async def test_foreign_pages_are_refused_with_403_and_logged_once(node, caplog):
    port = _port(node)
    caplog.set_level(logging.DEBUG, logger="tieline")
    refused = [
        "http://evil.example",  # a page elsewhere, opening ws://127.0.0.1:PORT
        f"http://evil.example:{port}",
        f"http://127.0.0.1:{port + 1}",  # another local service's page
        f"https://127.0.0.1:{port}",  # the wrong scheme: this API has no TLS
        f"http://127.0.0.1:{port}/",  # not an origin
        "null",  # a sandboxed frame, a file:// page
        "https://panel.example",  # listed with port 8443 only
        "http://127.0.0.1:3000.evil.example",
    ]
    for origin in refused:
        assert await _refused(node, origin) == 403, origin
    assert node.apis[0].connections == set()
    # two Origin headers: refused, whatever they say
    assert await _refused(node, None, additional_headers=[
        ("Origin", f"http://127.0.0.1:{port}"), ("Origin", f"http://127.0.0.1:{port}")]) == 403
    # a Host naming another port than the one the connection reached
    assert await _refused(node, f"http://127.0.0.1:{port + 1}", url_port=port + 1) == 403
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "refused a connection" in r.getMessage()]
    # one each; the last origin was refused before (at debug now)
    assert len(warnings) == len(refused) + 1, warnings
    for _ in range(3):
        await _refused(node, "http://evil.example")
    again = [r for r in caplog.records if r.levelno == logging.WARNING
             and "'http://evil.example'" in r.getMessage()]
    assert len(again) == 1  # once a minute per origin; the repeats at debug


async def test_dns_rebinding_is_same_origin_but_gets_no_anonymous_rights(node):
    """evil.example made to resolve to 127.0.0.1: Host and Origin both name it, so the
    page is, for the browser and for the origin check, the node's own; it must still
    not act with the loopback anonymous level."""
    port = _port(node)
    c = await _page(node, f"http://evil.example:{port}", host="evil.example")
    hello = await _anonymous_hello(c)
    assert not hello["ok"]
    assert hello["error"]["code"] == "unauthenticated" and hello["error"]["field"] == "token"
    assert f"web page of http://evil.example:{port}" in hello["error"]["message"]
    for mtype, fields in (("route", {"router": "studio", "destination": 1, "source": 5}),
                          ("panels", {}), ("snapshot", {})):
        assert (await c.request(mtype, **fields))["error"]["code"] == "unauthenticated"
    assert node.routing.routers["studio"].state.source(0, 0) != 4
    empty = await c.request("hello", protocol=1, token="")
    assert not empty["ok"]  # an empty token is no token (the schema refuses it)
    # a token works: the operator typed it into this very page
    assert (await c.request("hello", protocol=1, token=TOKEN))["result"]["user"]["name"] == \
        "operator"
    assert (await c.request("route", router="studio", destination=1, source=5))["ok"]
    await c.close()


async def test_allowed_origins_connect_with_a_token_and_only_loopback_ones_anonymously(node):
    listed = await _page(node, "https://panel.example:8443", host="panel.example")
    assert not (await _anonymous_hello(listed))["ok"]
    assert (await listed.request("hello", protocol=1, token=TOKEN))["ok"]
    await listed.close()
    local = await _page(node, "http://127.0.0.1:3000")  # a page of a local dev server
    assert (await _anonymous_hello(local))["result"]["user"]["level"] == 2


async def test_no_origin_is_not_a_browser_and_is_unchanged(node):
    c = await _page(node, None)
    assert (await _anonymous_hello(c))["result"]["user"]["level"] == 2
    assert (await c.request("route", router="studio", destination=2, source=3))["ok"]
    await c.close()
    # even through a name: Host alone does not make a browser
    c = await _page(node, None, host="evil.example")
    assert (await _anonymous_hello(c))["ok"]
    await c.close()


async def test_own_panel_without_anonymous_access_needs_a_token(settings_dir):
    async with running_node(_settings(settings_dir, anonymous=0)) as node:
        c = await _page(node, f"http://127.0.0.1:{_port(node)}")
        hello = await _anonymous_hello(c)
        assert hello["error"]["code"] == "unauthenticated"
        assert (await c.request("hello", protocol=1, token=TOKEN))["ok"]
        await c.close()


@pytest.mark.parametrize("entry", ["https://panel.example:99999", "http://pa nel.example",
                                   "https://panel.example:8443.evil.example"])
async def test_allowed_origins_must_be_origins_a_browser_can_send(settings_dir, entry):
    with pytest.raises(SettingsError) as info:
        async with running_node(_settings(settings_dir, allowed_origins=[entry])):
            pass
    assert "allowed_origins" in str(info.value)


# -- cluster members -------------------------------------------------------------------------

def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports of 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


async def test_the_panels_of_the_clusters_members_connect(settings_dir, tmp_path):
    """Two nodes of a lease cluster, in this process: a page served by one may open the
    other's API (after a failover the panel moves there); a page of a node that is no
    member may not."""
    peer_a, peer_b, api_a, api_b, stranger = free_ports(5)
    key_folder = tmp_path / "key"
    generate_cluster_key(key_folder)

    def folder(name: str, role: str, api: int, peer: int, other: int) -> Path:
        path = settings_dir({
            "tieline.json": {
                "node": {"name": name, "role": role},
                "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                             "sources": 8, "destinations": 8}],
                "apis": [{"type": "websocket", "listen": f"127.0.0.1:{api}"}],
                "auth": {"users_file": "users.json", "loopback_anonymous_level": 2},
                "failover": {"strategy": "lease", "listen": f"127.0.0.1:{peer}",
                             "peers": [f"127.0.0.1:{other}"], "key": "cluster.key",
                             "heartbeat_ms": 50, "renew_deadline_ms": 300, "lease_ms": 600,
                             "hold_down_s": 1},
            },
            "users.json": {"users": [{"name": "operator", "level": 2,
                                      "token_sha256": hash_token(TOKEN)}]},
        }, name=name)
        for file in ("cluster.key", "cluster.key.pub"):
            (path / file).write_bytes((key_folder / file).read_bytes())
        (path / "cluster.key").chmod(0o600)
        return path

    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            running_node(folder("a", "main", api_a, peer_a, peer_b)))
        b = await stack.enter_async_context(
            running_node(folder("b", "backup", api_b, peer_b, peer_a)))
        async with asyncio.timeout(10):
            while not all(any(p["url"] for p in n.strategy.peers_status()) for n in (a, b)):
                await asyncio.sleep(0.02)
        assert [p["url"] for p in a.strategy.peers_status()] == [api_url(b)]
        # b's panel, on a's API; a's panel on b's API
        for node, page in ((a, f"http://127.0.0.1:{api_b}"), (b, f"http://127.0.0.1:{api_a}")):
            c = await _page(node, page)
            assert (await c.request("hello", protocol=1, token=TOKEN))["ok"]
            assert (await c.request("status"))["ok"]
            await c.close()
        # the member's page, served by a loopback address, keeps the anonymous rights
        c = await _page(a, f"http://127.0.0.1:{api_b}")
        assert (await _anonymous_hello(c))["ok"]
        await c.close()
        # not a member: another port on the same machine, the member over https
        for page in (f"http://127.0.0.1:{stranger}", f"https://127.0.0.1:{api_b}"):
            assert await _refused(a, page) == 403, page
