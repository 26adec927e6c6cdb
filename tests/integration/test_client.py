"""The Python client against a real node (and, for dead-server detection, a silent server)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest
from websockets.asyncio.server import serve

from tieline.auth import hash_token
from tieline.client import Client, ConnectionLost
from tieline.errors import NotAuthenticated, PermissionDenied, Protected

from ..conftest import free_port
from .helpers import api_url, running_node


@pytest.fixture
async def node(settings_dir):
    folder = settings_dir({
        "tieline.json": {
            "node": {"name": "client-test"},
            "routers": [{"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                         "sources": 16, "destinations": 16}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"users_file": "users.json", "loopback_anonymous_level": 1},
        },
        "users.json": {"users": [
            {"name": "op", "level": 2, "token_sha256": hash_token("op-token")},
            {"name": "op2", "level": 2, "token_sha256": hash_token("op2-token")}]},
        "salvos.json": {"salvos": [{"name": "s", "router": "studio", "crosspoints": [
            {"destination": 1, "source": 16}, {"destination": 2, "source": 15}]}]},
    })
    async with running_node(folder) as node:
        yield node


async def test_first_reachable_endpoint_is_used(node):
    dead = f"ws://127.0.0.1:{free_port()}"
    async with Client([dead, api_url(node)], token="op-token") as client:
        assert client.endpoint == api_url(node)
        assert client.user == {"name": "op", "level": 2}
        assert client.node["status"] == "Standalone is active"


async def test_route_mirror_and_salvo(node):
    async with Client(api_url(node), token="op-token") as client, \
            Client(api_url(node)) as watcher:
        assert watcher.user["level"] == 1  # anonymous on loopback
        await watcher.subscribe()
        seen = asyncio.Event()
        watcher.add_listener(lambda e: seen.set() if e["event"] == "crosspoints" else None)
        result = await client.route("studio", 7, 2, levels=["audio"])
        assert result["crosspoints"] == [{"level": "audio", "destination": 7, "source": 2}]
        await asyncio.wait_for(seen.wait(), 5)
        mirror = watcher.routers["studio"]
        assert mirror.source("audio", 7) == 2 and mirror.source("video", 7) == 7
        taken = await client.salvo("s")
        assert len(taken["taken"]) == 4 and taken["refused"] == []


async def test_errors_become_exceptions(node):
    async with Client(api_url(node), token="op-token") as op, \
            Client(api_url(node), token="op2-token") as op2, Client(api_url(node)) as watcher:
        await op.protect("studio", 3)
        with pytest.raises(Protected) as info:
            await op2.route("studio", 3, 1)
        assert info.value.owner == "op"
        assert info.value.field == "destination"
        with pytest.raises(PermissionDenied):
            await watcher.route("studio", 3, 1)
        await op.release("studio", 3)
        await op2.route("studio", 3, 1)
    with pytest.raises(NotAuthenticated):
        async with Client(api_url(node), token="nope"):
            pass


async def test_events_iterator(node):
    async with Client(api_url(node), token="op-token") as client:
        await client.subscribe()
        events = client.events()
        await client.route("studio", 4, 9)
        event = await asyncio.wait_for(anext(events), 5)
        assert event["event"] == "crosspoints"
        await events.aclose()


async def test_an_event_stream_that_is_not_read_stays_bounded_and_says_what_it_lost(node):
    async with Client(api_url(node), token="op-token") as client:
        await client.subscribe()
        events = client.events(maxsize=5)
        for n in range(20):  # 20 changes, confirmed: 20 crosspoint events, 5 kept
            await client.route("studio", 1, 2 + n % 2)
        assert events._queue.qsize() == 5
        kept = [await anext(events) for _ in range(5)]
        assert all(e["event"] == "crosspoints" for e in kept)
        assert await anext(events) == {"type": "event", "event": "overflow", "lost": 15}
        await client.route("studio", 2, 7)  # it queues again
        assert (await asyncio.wait_for(anext(events), 5))["event"] == "crosspoints"
        await events.aclose()


async def test_dead_server_detected_within_heartbeat_timeout():
    """A server that says hello and then falls silent (like a hung or SIGSTOPped node)."""

    async def silent(ws):
        await ws.send(json.dumps({
            "type": "hello", "protocol": 1,
            "node": {"node": "n", "role": "standalone", "state": "active", "status": "x",
                     "epoch": 0, "active": None},
            "heartbeat_ms": 100, "heartbeat_timeout_ms": 400, "max_message_bytes": 1 << 20}))
        request = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "response", "id": request["id"], "ok": True,
                                  "result": {"user": {"name": "u", "level": 3},
                                             "node": {"status": "x"}}}))
        await ws.wait_closed()  # silent from here on

    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = Client(f"ws://127.0.0.1:{port}")
        await client.connect()
        pending = asyncio.create_task(client.request("ping"))
        reason = await asyncio.wait_for(client.wait_closed(), 5)
        assert "no message from the server for 0.4 s" in reason
        with pytest.raises(ConnectionLost, match="may or may not have been carried out"):
            await pending
        await client.close()


_HELLO = {"type": "hello", "protocol": 1,
          "node": {"node": "n", "role": "standalone", "state": "active", "status": "x",
                   "epoch": 0, "active": None},
          "heartbeat_ms": 100, "heartbeat_timeout_ms": 1500, "max_message_bytes": 1 << 20}


@pytest.mark.parametrize("garbage", ["[" * 100_000, '{"type": "response", "id": 1, "x": %s}'
                                     % ("9" * 5000)])
async def test_a_server_message_that_cannot_be_read_ends_the_link_with_a_reason(garbage, caplog):
    """Nesting deeper than Python can decode, or a number beyond its int limit, from a
    (broken or hostile) server: the connection ends and says why; nothing else fails."""

    async def broken(ws):
        await ws.send(json.dumps(_HELLO))
        request = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "response", "id": request["id"], "ok": True,
                                  "result": {"user": {"name": "u", "level": 3},
                                             "node": {"status": "x"}}}))
        await ws.recv()
        await ws.send(garbage)
        await ws.wait_closed()

    async def broken_greeting(ws):
        await ws.send(garbage)
        await ws.wait_closed()

    async with serve(broken, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = Client(f"ws://127.0.0.1:{port}", failover=False)
        await client.connect()
        with pytest.raises(ConnectionLost, match="the server sent something that is not JSON"):
            await client.request("ping")
        await client.close()
    async with serve(broken_greeting, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionLost, match="not JSON"):
            await Client(f"ws://127.0.0.1:{port}", failover=False).connect()
    gc.collect()  # a task that failed unseen would be reported now
    await asyncio.sleep(0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_server_stopping_fails_pending_requests(settings_dir, node):
    client = Client(api_url(node), token="op-token")
    await client.connect()
    await node.apis[0].close()
    assert "server closed the connection" in await asyncio.wait_for(client.wait_closed(), 5)
    with pytest.raises(ConnectionLost):
        await client.route("studio", 1, 1)
