"""The Python client's endpoint failover against real nodes (in-process, real sockets).

Each node runs its own simulated router: what is tested is where the client sends its
requests, so a route shows on the router of the node that carried it out. A node's status
is set by hand with ``node.failover.update(...)``, as a failover strategy would set it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tieline.auth import hash_token
from tieline.client import Client, ConnectionLost
from tieline.errors import NodeStandby
from tieline.failover import State
from tieline.node import Node

from ..conftest import free_port
from .helpers import api_url, running_node

TIELINE = str(Path(sys.executable).with_name("tieline"))
TOKEN = "op-token"


def node_files(name: str, *, switch_delay_ms: int = 0,
               heartbeat_timeout_ms: int = 1500) -> dict[str, object]:
    return {
        "tieline.json": {
            "node": {"name": name},
            "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                         "sources": 16, "destinations": 16, "switch_delay_ms": switch_delay_ms,
                         "confirm_timeout_ms": 20000}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0",
                      "heartbeat_timeout_ms": heartbeat_timeout_ms}],
            "auth": {"users_file": "users.json"},
        },
        "users.json": {"users": [{"name": "op", "level": 2, "token_sha256": hash_token(TOKEN)}]},
    }


@pytest.fixture
def start(settings_dir) -> Callable[..., Any]:
    """``await start("a", ...)`` runs a node until the test ends; stop it earlier with
    ``node.stop()``."""
    stack = contextlib.AsyncExitStack()

    async def start_node(name: str, **options: Any) -> Node:
        return await stack.enter_async_context(
            running_node(settings_dir(node_files(name, **options), name=name)))

    start_node.stack = stack  # type: ignore[attr-defined]
    return start_node


@pytest.fixture
async def nodes(start) -> AsyncIterator[Callable[..., Any]]:
    async with start.stack:
        yield start


def source_on(node: Node, destination: int) -> int:
    """The 1-based source feeding ``destination`` on the node's own router."""
    return node.routing.routers["studio"].state.source(0, destination - 1) + 1


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"still waiting for: {what}") from None


def routes_in_flight(node: Node) -> int:
    return sum(task.get_name() == "ws route" and not task.done()
               for conn in node.apis[0].connections for task in conn.tasks)


async def test_first_endpoint_dead_second_used(nodes):
    b = await nodes("b")
    dead = f"ws://127.0.0.1:{free_port()}"
    async with Client([dead, api_url(b)], token=TOKEN) as client:
        assert client.endpoint == api_url(b)
        await client.route("studio", 3, 7)
    assert source_on(b, 3) == 7


async def test_standby_greeting_leads_to_the_active_it_names(nodes):
    a, b = await nodes("a"), await nodes("b")
    a.failover.update(state=State.STANDBY, active=api_url(b), epoch=4)
    b.failover.update(epoch=4)
    async with Client([api_url(a)], token=TOKEN) as client:
        assert client.endpoint == api_url(b)
        assert client.endpoints == [api_url(a), api_url(b)]  # learnt from the standby
        assert client.node["state"] == "active" and client.max_epoch == 4
        await client.route("studio", 2, 9)
    assert source_on(b, 2) == 9
    assert source_on(a, 2) == 2  # the standby's router was not touched


async def test_only_standbys_reads_work_and_a_write_waits_for_promotion(nodes):
    a = await nodes("a")
    a.failover.update(state=State.STANDBY)  # no active node known
    async with Client([api_url(a)], token=TOKEN) as client:
        assert client.endpoint == api_url(a) and client.node["state"] == "standby"
        await client.subscribe()
        assert client.routers["studio"].source("video", 4) == 4
        routed = asyncio.create_task(client.route("studio", 4, 11))
        await until(lambda: client.waiting == 1, "the write held after the standby refused it")
        assert not routed.done()
        a.failover.update(state=State.ACTIVE, epoch=1)  # the strategy promotes it
        result = await asyncio.wait_for(routed, 10)
        assert result["crosspoints"] == [{"level": "video", "destination": 4, "source": 11}]
    assert source_on(a, 4) == 11


async def test_write_refused_past_the_retry_window_raises_node_standby(nodes):
    a = await nodes("a")
    a.failover.update(state=State.STANDBY)
    async with Client([api_url(a)], token=TOKEN, retry_window_s=0.3) as client:
        with pytest.raises(NodeStandby, match="no active node took the 'route' request "
                                              "within 0.3 s") as info:
            await client.route("studio", 4, 11)
        assert info.value.active is None
    assert source_on(a, 4) == 4


async def test_node_stopping_with_routes_pending_fails_over(nodes):
    a = await nodes("a", switch_delay_ms=2000)  # a's routes stay pending
    b = await nodes("b")
    url_a = api_url(a)  # while a listens
    events: list[dict] = []
    async with Client([url_a, api_url(b)], token=TOKEN) as client:
        await client.subscribe()
        client.add_listener(events.append)
        stream = client.events()
        acknowledged = await client.route("studio", 1, 9)  # made on a, acknowledged
        assert acknowledged["crosspoints"][0]["source"] == 9
        pending = [asyncio.create_task(client.route("studio", d, 10 + d)) for d in (2, 3, 4)]
        await until(lambda: routes_in_flight(a) == 3, "three routes pending on node a")
        a.stop()
        more = [asyncio.create_task(client.route("studio", d, 10 + d)) for d in (5, 6)]
        results = await asyncio.wait_for(asyncio.gather(*pending, *more), 15)
        for d, result in zip((2, 3, 4, 5, 6), results, strict=True):
            assert result["crosspoints"] == [{"level": "video", "destination": d,
                                              "source": 10 + d}]
        assert client.endpoint == api_url(b) and client.connected
        kinds = [e["event"] for e in events]
        assert "disconnected" in kinds and "reconnected" in kinds
        assert kinds.index("disconnected") < kinds.index("reconnected")
        reconnected = next(e for e in events if e["event"] == "reconnected")
        assert reconnected["previous"] == url_a
        assert reconnected["endpoint"] == api_url(b)
        assert reconnected["resubscribed"] is True
        assert "server closed the connection" in reconnected["reason"]
        # the mirror was refreshed from b's snapshot and follows b's events
        mirror = client.routers["studio"]
        await until(lambda: all(mirror.source("video", d) == 10 + d for d in range(2, 7)),
                    "the mirror showing b's routes")
        assert mirror.source("video", 1) == 1  # b never got the acknowledged route
        streamed = []
        async with asyncio.timeout(5):
            async for event in stream:  # the stream carried on through the failover
                streamed.append(event["event"])
                if event["event"] == "reconnected":
                    break
        assert "disconnected" in streamed
        await stream.aclose()
    assert [source_on(b, d) for d in range(1, 7)] == [1, 12, 13, 14, 15, 16]


class FreezingProxy:
    """A TCP relay in front of a node that can stop relaying without closing anything: to
    the client the node looks hung (like a SIGSTOPped process)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        if self.frozen.is_set():
            return  # accepted, never answered
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers.append(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self.tasks.add(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()  # hold everything from now on
                dst.write(data)
                await dst.drain()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.transport.abort()
        if self.server is not None:
            self.server.close()


async def test_hung_node_detected_by_heartbeat_and_route_retried(nodes):
    a = await nodes("a", heartbeat_timeout_ms=300)
    b = await nodes("b")
    proxy = FreezingProxy(a.apis[0].server.sockets[0].getsockname()[1])
    front = await proxy.start()
    events: list[dict] = []
    try:
        async with Client([front, api_url(b)], token=TOKEN) as client:
            client.add_listener(events.append)
            assert client.endpoint == front
            await client.route("studio", 1, 5)  # through the proxy to a
            proxy.frozen.set()
            result = await asyncio.wait_for(client.route("studio", 2, 6), 15)
            assert result["crosspoints"][0]["source"] == 6
            assert client.endpoint == api_url(b)
    finally:
        await proxy.close()
    lost = next(e for e in events if e["event"] == "disconnected")
    assert lost["reason"] == "no message from the server for 0.3 s (server dead?)"
    assert source_on(a, 1) == 5 and source_on(b, 1) == 1
    assert source_on(b, 2) == 6 and source_on(a, 2) == 2


async def test_status_event_standby_moves_the_client_and_listeners_carry_on(nodes):
    a, b = await nodes("a"), await nodes("b")
    events: list[dict] = []
    async with Client([api_url(a), api_url(b)], token=TOKEN) as client:
        await client.subscribe()
        client.add_listener(events.append)
        mirror = client.routers["studio"]
        b.failover.update(epoch=3)  # b took over: a new epoch ...
        a.failover.update(state=State.STANDBY, active=api_url(b), epoch=3)  # ... a follows
        await until(lambda: client.endpoint == api_url(b), "the client on node b")
        reconnected = next(e for e in events if e["event"] == "reconnected")
        assert reconnected["previous"] == api_url(a)
        assert reconnected["reason"] == f"node 'a' at {api_url(a)} is standby"
        assert reconnected["node"]["node"] == "b" and reconnected["resubscribed"]
        assert "disconnected" not in [e["event"] for e in events]  # no gap in service
        await client.route("studio", 8, 3)
        await until(lambda: mirror.source("video", 8) == 3, "b's event in the same mirror")
        assert client.routers["studio"] is mirror
        assert any(e["event"] == "crosspoints" and e["router"] == "studio" for e in events)
    assert source_on(b, 8) == 3 and source_on(a, 8) == 8


async def test_standby_refusal_of_a_write_is_retried_on_the_active(nodes):
    a, b = await nodes("a"), await nodes("b")
    async with Client([api_url(a)], token=TOKEN) as client:  # not subscribed: no status event
        a.failover.update(state=State.STANDBY, active=api_url(b))
        result = await client.route("studio", 5, 12)
        assert result["crosspoints"] == [{"level": "video", "destination": 5, "source": 12}]
        assert client.endpoint == api_url(b)
        assert api_url(b) in client.endpoints
        await client.protect("studio", 5)  # later writes go to b directly
    assert source_on(b, 5) == 12 and source_on(a, 5) == 5
    assert b.routing.routers["studio"].state.protect(0, 4) is not None


async def test_node_with_a_lower_epoch_is_refused(nodes, caplog):
    caplog.set_level(logging.INFO, logger="tieline.client")
    a, b = await nodes("a"), await nodes("b")
    a.failover.update(epoch=5)
    b.failover.update(epoch=3)  # a node left behind by a failover, still saying active
    client = Client([api_url(a), api_url(b)], token=TOKEN)
    await client.connect()
    assert client.endpoint == api_url(a) and client.max_epoch == 5
    await client.close()

    client.endpoints = [api_url(b), api_url(a)]  # the epoch seen is remembered
    await client.connect()
    assert client.endpoint == api_url(a)
    await client.close()

    client.endpoints = [api_url(b)]
    with pytest.raises(ConnectionLost, match=r"node 'b' at .* announces epoch 3, lower than "
                                             r"epoch 5 already seen: not authoritative"):
        await client.connect()

    client.endpoints = [api_url(a), api_url(b)]
    await client.connect()
    caplog.clear()
    a.stop()
    await client.wait_closed()
    routed = asyncio.create_task(client.route("studio", 6, 2))
    await until(lambda: any("refused node 'b'" in r.getMessage() and "epoch 3" in r.getMessage()
                            for r in caplog.records),
                "the client refusing node b during the failover")
    assert not routed.done()
    b.failover.update(epoch=6)  # b is promoted: now it is authoritative
    result = await asyncio.wait_for(routed, 15)
    assert result["crosspoints"][0]["source"] == 2
    assert client.endpoint == api_url(b) and client.max_epoch == 6
    await client.close()
    assert source_on(b, 6) == 2


async def test_gives_up_after_failover_timeout(nodes):
    a = await nodes("a")
    events: list[dict] = []
    async with Client([api_url(a)], token=TOKEN, failover_timeout_s=0.5,
                      retry_window_s=30) as client:
        client.add_listener(events.append)
        stream = client.events()
        a.stop()
        assert "server closed the connection" in await client.wait_closed()
        assert not client.closed  # looking for a node
        with pytest.raises(ConnectionLost, match=r"no tieline server took over within 0.5 s"
                                                 r".*; the request was not sent"):
            await client.route("studio", 1, 2)
        assert client.closed and not client.connected
        assert [e["event"] for e in events] == ["disconnected", "closed"]
        remaining = [event async for event in stream]  # the stream ends with the client
        assert [e["event"] for e in remaining] == ["disconnected", "closed"]
        with pytest.raises(ConnectionLost, match="not connected"):
            await client.status()


async def test_request_waiting_past_the_retry_window_raises(nodes):
    a = await nodes("a")
    async with Client([api_url(a)], token=TOKEN, retry_window_s=0.3) as client:
        a.stop()
        await client.wait_closed()
        with pytest.raises(ConnectionLost, match=r"'route' request: not answered within the "
                                                 r"retry window \(0.3 s\): no tieline server "
                                                 r"connected; the request was not sent"):
            await client.route("studio", 1, 2)
        assert not client.closed  # still looking for a node


async def test_without_failover_a_lost_connection_ends_the_client(nodes):
    a, b = await nodes("a", switch_delay_ms=2000), await nodes("b")
    async with Client([api_url(a), api_url(b)], token=TOKEN, failover=False) as client:
        routed = asyncio.create_task(client.route("studio", 1, 2))
        await until(lambda: routes_in_flight(a) == 1, "the route pending on node a")
        a.stop()
        with pytest.raises(ConnectionLost, match="may or may not have been carried out"):
            await routed
        assert client.closed
        with pytest.raises(ConnectionLost, match="not connected"):
            await client.status()
    assert source_on(b, 1) == 1


async def test_cli_route_lands_on_the_active_node(nodes):
    a, b = await nodes("a"), await nodes("b")
    a.failover.update(state=State.STANDBY, active=api_url(b))
    env = dict(os.environ, TIELINE_TOKEN=TOKEN)
    env.pop("TIELINE_SERVER", None)
    done = await asyncio.to_thread(
        subprocess.run, [TIELINE, "route", "7", "3", "--server", f"{api_url(a)},{api_url(b)}"],
        capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("studio: destination 7 (Output 7) ← source 3 (Input 3) on "
                                   "video: confirmed")
    assert source_on(b, 7) == 3 and source_on(a, 7) == 7
