"""The API in a real tieline node, in-process, with a router on tieline's bundled simulator,
spoken to by raw TCP clients on 127.0.0.1 (what a control system does)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tieline import Crosspoint, Node, Permission, Principal, SettingsError
from tieline.kit.testing import running_node, write_settings
from {{cookiecutter.plugin_name}}.codec import (
    Codec,
    End,
    Error,
    Level,
    Message,
    Ok,
    Pong,
    Role,
    Route,
    Tally,
)
from {{cookiecutter.plugin_name}}.server import LineApi

TIMEOUT = 10.0  #: a bound on waiting, never a measurement
ALICE = Principal("alice", Permission.ROUTE)


@contextlib.asynccontextmanager
async def lab(folder: Path, sources: int = 8, destinations: int = 8,
              **options: Any) -> AsyncIterator[Node]:
    """A node with the routers ``studio`` (video, audio) and ``booth`` (video), simulated,
    and this API on a free port."""
    write_settings(folder, {"tieline.json": {
        "node": {"name": "lab"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                     "sources": sources, "destinations": destinations},
                    {"id": "booth", "driver": "simulator", "levels": ["video"],
                     "sources": 4, "destinations": 4}],
        "apis": [{"type": "{{cookiecutter.api_name}}", "listen": "127.0.0.1:0", **options}],
    }})
    async with running_node(folder) as node:
        yield node


def api_of(node: Node) -> LineApi:
    (api,) = [api for api in node.apis if isinstance(api, LineApi)]
    return api


class Client:
    """A raw TCP client speaking the protocol through the client role of the codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.codec = Codec(Role.CLIENT)

    @classmethod
    async def connect(cls, node: Node, **socket_options: int) -> Client:
        sock = socket.socket()
        for option, value in socket_options.items():
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), value)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", api_of(node).port))
        return cls(*await asyncio.open_connection(sock=sock))

    def send(self, line: str | bytes) -> None:
        self.writer.write(line.encode() + b"\n" if isinstance(line, str) else line)

    async def next(self) -> Message | None:
        """The next message from the server; None when it closed the connection."""
        async with asyncio.timeout(TIMEOUT):
            while (message := self.codec.next_event()) is None:
                data = await self.reader.read(65536)
                if not data:
                    return None
                self.codec.receive_data(data)
        return message

    async def until(self, done: Callable[[list[Message]], bool]) -> list[Message]:
        """Messages, until ``done(messages)`` holds."""
        messages: list[Message] = []
        while not done(messages):
            message = await self.next()
            assert message is not None, f"closed after {messages}"
            messages.append(message)
        return messages

    async def ask(self, line: str | bytes) -> Message:
        self.send(line)
        message = await self.next()
        assert message is not None
        return message

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with lab(tmp_path / "lab") as node:
        yield node


@pytest.fixture
async def client(node: Node) -> AsyncIterator[Client]:
    client = await Client.connect(node)
    yield client
    await client.close()


def tallies(messages: list[Message]) -> set[Tally]:
    return {m for m in messages if isinstance(m, Tally)}


async def test_ping(client):
    assert await client.ask("PING") == Pong()


async def test_route_is_confirmed_then_pushed_to_every_client(node, client):
    other = await Client.connect(node)
    client.send("ROUTE studio 3 5")
    made = {Tally("studio", Crosspoint(0, 2, 4)), Tally("studio", Crosspoint(1, 2, 4))}
    # the TALLY lines may come before or after the OK
    got = await client.until(lambda ms: Ok(Route("studio", 2, 4)) in ms and tallies(ms) >= made)
    assert len(got) == 3
    assert tallies(await other.until(lambda ms: tallies(ms) >= made)) == made
    state = node.routing.router("studio").state
    assert (state.source(0, 2), state.source(1, 2)) == (4, 4)
    # one level; a route that is made already is confirmed and changes nothing
    assert await client.ask("ROUTE studio 3 5 2") == Ok(Route("studio", 2, 4, (1,)))
    await other.close()


async def test_a_route_made_elsewhere_arrives_as_a_tally(node, client):
    assert await client.ask("PING") == Pong()  # connected and served
    await node.routing.route(ALICE, "studio", 6, 1, ["audio"])
    assert await client.next() == Tally("studio", Crosspoint(1, 6, 1))


async def test_tally_and_levels_queries(node, client):
    client.send("TALLY? studio")
    dump = await client.until(lambda ms: End() in ms)
    state = node.routing.router("studio").state
    assert dump == [*(Tally("studio", xp) for xp in state.crosspoints()), End()]
    assert len(dump) == 17
    client.send("levels? studio")
    assert await client.until(lambda ms: End() in ms) == [
        Level("studio", 0, "video"), Level("studio", 1, "audio"), End()]


@pytest.mark.parametrize(("line", "code", "text"), [
    ("ROUTE studio 9 1", "out_of_range", "destination 9 out of range (1-8)"),
    ("ROUTE studio 1 9 2", "out_of_range", "source 9 out of range (1-8)"),
    ("ROUTE studio 1 1 3", "out_of_range", "level 3 out of range (1-2: video, audio)"),
    ("ROUTE nowhere 1 1", "not_found", "no router 'nowhere'"),
    ("TALLY? nowhere", "not_found", "no router 'nowhere'"),
    ("ROUTE studio x 1", "invalid", "ROUTE: <dst> must be a number"),
    ("ROUTE studio 1 1 video", "invalid", "ROUTE: <levels> must be a number"),
    ("ROUTE studio 1", "invalid", "expected ROUTE <router> <dst> <src> [<levels>]"),
    ("FROB", "invalid", "unknown keyword 'FROB'"),
])
async def test_errors_name_the_field_and_the_connection_stays(client, line, code, text):
    error = await client.ask(line)
    assert isinstance(error, Error) and error.code == code and text in error.text, error
    assert await client.ask("PING") == Pong()


async def test_garbage_and_long_lines_keep_the_connection(client):
    client.send(b"\xff\xfe\x00\n" + b"ROUTE studio " + b"1" * 100_000 + b"\n" + b"\r\n")
    first, second = await client.next(), await client.next()
    assert isinstance(first, Error) and "not ASCII" in first.text
    assert isinstance(second, Error) and "longer than" in second.text
    assert await client.ask("PING") == Pong()


@pytest.mark.parametrize("request_line", ["POST / HTTP/1.1", "GET http://x/ HTTP/1.1"])
async def test_a_web_page_posting_to_the_port_routes_nothing(node, caplog, request_line):
    """A page in a browser can send an HTTP request to the port (``fetch(url, {method:
    "POST", mode: "no-cors", body})``) whose body would read as requests: its request line
    cuts the connection before anything after it is read."""
    before = node.routing.routers["studio"].state.source(0, 0)
    for _ in range(2):
        page = await Client.connect(node)
        body = "ROUTE studio 1 5\n"
        page.send(f"{request_line}\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
                  f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n{body}")
        with contextlib.suppress(ConnectionResetError):
            assert await page.next() is None  # closed, nothing answered
        await page.close()
    assert node.routing.routers["studio"].state.source(0, 0) == before
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "HTTP request" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per address


async def test_permission_1_watches_only(tmp_path):
    async with lab(tmp_path / "lab", permission=1) as node:
        client = await Client.connect(node)
        error = await client.ask("ROUTE studio 1 2")
        assert isinstance(error, Error) and error.code == "forbidden", error
        assert "{{cookiecutter.api_name}} 127.0.0.1 (permission level 1) may not route" in error.text
        client.send("TALLY? studio")
        assert (await client.until(lambda ms: End() in ms))[-1] == End()
        await client.close()


async def test_clients_beyond_max_clients_are_refused(tmp_path):
    async with lab(tmp_path / "lab", max_clients=1) as node:
        first = await Client.connect(node)
        assert await first.ask("PING") == Pong()
        second = await Client.connect(node)
        refused = await second.next()
        assert isinstance(refused, Error) and refused.code == "busy"
        assert await second.next() is None  # and closed
        assert await first.ask("PING") == Pong()
        await first.close()
        await second.close()


async def test_a_client_that_does_not_read_is_dropped_and_the_others_carry_on(tmp_path):
    async with lab(tmp_path / "lab", sources=16, destinations=512) as node:
        api = api_of(node)
        reader = await Client.connect(node)
        sleeper = await Client.connect(node, SO_RCVBUF=4096)
        sleeper.send(b"TALLY? studio\n" * 3000)  # ~70 MB of answers it never reads
        async with asyncio.timeout(TIMEOUT):
            while len(api.clients) > 1:
                assert await reader.ask("PING") == Pong()
        assert await reader.ask("PING") == Pong()
        await reader.close()
        await sleeper.close()


async def test_routers_limits_what_clients_see(tmp_path):
    async with lab(tmp_path / "lab", routers=["studio"]) as node:
        client = await Client.connect(node)
        error = await client.ask("TALLY? booth")
        assert error == Error("not_found", "no router 'booth' here; this API serves: studio")
        await node.routing.route(ALICE, "booth", 0, 3)  # not pushed to these clients
        await node.routing.route(ALICE, "studio", 0, 3, ["video"])
        assert await client.next() == Tally("studio", Crosspoint(0, 0, 3))
        await client.close()


async def test_settings_naming_an_unknown_router_are_refused(tmp_path):
    with pytest.raises(SettingsError, match="no router 'nowhere'; this node has: booth, studio"):
        async with lab(tmp_path / "lab", routers=["nowhere"]):
            pass
