"""The Videohub TCP API against real nodes, real sockets on 127.0.0.1.

Videohub clients here are written by hand (:class:`HandClient`: bytes in, bytes out, split on
the empty line), not with the plugin's codec, so these tests do not depend on it. Clients
that must be different lock owners connect from different loopback addresses (127.0.0.2,
127.0.0.3 …): a Videohub owns locks per IP address [VH §6]. Ordering checks use a ``PING:``
as a fence: the server answers in order, so everything it sent a client before the fence's
``ACK`` has arrived when the ``ACK`` has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tieline.auth import hash_token
from tieline.failover import State
from tieline.model import PortKind, Protect, ProtectKind
from tieline.plugins.swp08.emulator import SWP08Emulator

from .helpers import RawClient, api_url, running_node

TOKENS = {"operator": "vh-route-token", "admin": "vh-admin-token"}
LEVELS = {"operator": 2, "admin": 3}
ACK = ("ACK", [])
NAK = ("NAK", [])

Block = tuple[str, list[str]]


class HandClient:
    """A Videohub client by hand: a socket, bytes written out, blocks split on ``\\n\\n``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""
        self.raw_prelude = b""

    @classmethod
    async def open(cls, server: tuple[str, int], address: str = "127.0.0.1", *,
                   prelude: bool = True) -> HandClient:
        """Connect to ``server`` from ``address`` (a loopback address); read the status dump."""
        client = cls(*await asyncio.open_connection(*server, local_addr=(address, 0)))
        if prelude:
            client.raw_prelude = await client.read_until(b"END PRELUDE:\n\n")
        return client

    async def _more(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            data = await self.reader.read(65536)
        assert data, "the server closed the connection"
        self.buffer += data

    async def read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        """Every byte up to and including ``marker``."""
        while marker not in self.buffer:
            await self._more(timeout)
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    async def block(self, timeout: float = 5.0) -> Block:
        """The next block: its header line and its body lines."""
        raw = await self.read_until(b"\n\n", timeout)
        lines = raw[:-2].decode().split("\n")
        return lines[0], lines[1:]

    async def blocks_until(self, header: str) -> list[Block]:
        """Blocks up to and including the next one with ``header``."""
        out = [await self.block()]
        while out[-1][0] != header:
            out.append(await self.block())
        return out

    async def next_of(self, header: str) -> Block:
        """The next block with ``header`` (others are skipped)."""
        return (await self.blocks_until(header))[-1]

    def send(self, text: str) -> None:
        self.writer.write(text.encode())

    async def ask(self, text: str) -> list[Block]:
        """Send a request and a PING: what came back, up to the PING's ACK (excluded)."""
        self.send(text + "PING:\n\n")
        blocks = []
        # the request's own reply, then anything, then the PING's ACK (the last ACK)
        while True:
            blocks.append(await self.block())
            if blocks[-1] == ACK and len([b for b in blocks if b in (ACK, NAK)]) >= 2:
                return blocks[:-1]

    async def fence(self) -> list[Block]:
        """Everything sent to this client before now (a PING answered in order)."""
        self.send("PING:\n\n")
        blocks = [await self.block()]
        while blocks[-1] != ACK:
            blocks.append(await self.block())
        return blocks[:-1]

    async def closed(self, timeout: float = 5.0) -> bytes:
        """Read until the server closes the connection; what came before."""
        data = b""
        async with asyncio.timeout(timeout):
            while chunk := await self.reader.read(65536):
                data += chunk
        return data

    def close(self) -> None:
        self.writer.close()


def blocks_of(raw: bytes) -> list[Block]:
    """A byte string cut into blocks, by hand."""
    out = []
    for part in raw.decode().split("\n\n")[:-1]:
        lines = part.split("\n")
        out.append((lines[0], lines[1:]))
    return out


# -- settings and nodes ------------------------------------------------------------------------


def settings(settings_dir: Callable[..., Path], apis: list[dict[str, Any]], *,
             routers: list[dict[str, Any]] | None = None, name: str = "settings") -> Path:
    routers = routers or [{"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                           "sources": 16, "destinations": 16, "label_store": "settings"}]
    return settings_dir({
        "tieline.json": {
            "node": {"name": "vh-api-test"},
            "routers": routers,
            # port 0 twice on one address counts as a clash: each API has its own address
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}]
                    + [{"type": "videohub", "listen": f"127.0.1.{i}:0", **api}
                       for i, api in enumerate(apis, 1)],
            "auth": {"users_file": "users.json"},
        },
        "users.json": {"users": [{"name": n, "level": LEVELS[n], "token_sha256": hash_token(t)}
                                 for n, t in TOKENS.items()]},
    }, name)


def vh_port(node: Any, index: int = 1) -> tuple[str, int]:
    """Where the node's Videohub API number ``index`` (in ``apis``) listens."""
    return node.apis[index].host, node.apis[index].port


async def ws(node: Any, user: str = "operator") -> RawClient:
    return await RawClient.open(api_url(node), TOKENS[user])


def device(node: Any, router: str = "studio") -> Any:
    """The in-process simulated router behind ``router``."""
    return node.routing.routers[router].driver.device


@pytest.fixture
async def node(settings_dir):
    async with running_node(settings(settings_dir, [{"router": "studio"}])) as node:
        yield node


# -- the status dump ---------------------------------------------------------------------------


async def test_status_dump_is_what_a_2_8_device_sends(settings_dir):
    """Exact bytes, in the block order of real 2.8 devices [VH §3.2], with the counts."""
    folder = settings(settings_dir, [{
        "router": "small", "model_name": "Blackmagic Smart Videohub 4 x 3",
        "friendly_name": "Studio B", "unique_id": "7C2E0D0726A0"}], routers=[
        {"id": "small", "driver": "simulator", "levels": ["video"], "sources": 4,
         "destinations": 3, "label_store": "settings"}])
    (folder / "labels.json").write_text(
        '{"routers": {"small": {"sources": {"2": "CAM 2"}, "destinations": {"1": "PGM"}}}}')
    async with running_node(folder) as node:
        client = await HandClient.open(vh_port(node))
        assert client.raw_prelude == (
            b"PROTOCOL PREAMBLE:\nVersion: 2.8\n\n"
            b"VIDEOHUB DEVICE:\nDevice present: true\nModel name: Blackmagic Smart Videohub 4 x 3\n"
            b"Friendly name: Studio B\nUnique ID: 7C2E0D0726A0\nVideo inputs: 4\n"
            b"Video processing units: 0\nVideo outputs: 3\nVideo monitoring outputs: 0\n"
            b"Serial ports: 0\n\n"
            b"INPUT LABELS:\n0 Input 1\n1 CAM 2\n2 Input 3\n3 Input 4\n\n"
            b"OUTPUT LABELS:\n0 PGM\n1 Output 2\n2 Output 3\n\n"
            b"VIDEO OUTPUT LOCKS:\n0 U\n1 U\n2 U\n\n"
            b"VIDEO OUTPUT ROUTING:\n0 0\n1 1\n2 2\n\n"
            b"END PRELUDE:\n\n")
        assert client.buffer == b""  # nothing after END PRELUDE until something happens
        assert await client.fence() == []
        client.close()


async def test_status_dump_defaults_and_counts_follow_the_router(node):
    client = await HandClient.open(vh_port(node))
    blocks = blocks_of(client.raw_prelude)
    assert [h for h, _ in blocks] == [
        "PROTOCOL PREAMBLE:", "VIDEOHUB DEVICE:", "INPUT LABELS:", "OUTPUT LABELS:",
        "VIDEO OUTPUT LOCKS:", "VIDEO OUTPUT ROUTING:", "END PRELUDE:"]
    device_block = dict(line.split(": ", 1) for line in blocks[1][1])
    assert device_block["Model name"] == "tieline Videohub"
    assert device_block["Friendly name"] == "studio"
    assert len(device_block["Unique ID"]) == 12 and int(device_block["Unique ID"], 16) >= 0
    assert (device_block["Video inputs"], device_block["Video outputs"]) == ("16", "16")
    for _, lines in blocks[2:6]:
        assert [int(line.split(" ", 1)[0]) for line in lines] == list(range(16))
    # the same unique ID on every connection and from a second node with the same settings
    again = await HandClient.open(vh_port(node))
    assert blocks_of(again.raw_prelude)[1] == blocks[1]
    client.close()
    again.close()


# -- routing -----------------------------------------------------------------------------------


async def test_route_is_acked_then_broadcast_and_the_router_changed(node):
    a, b = await HandClient.open(vh_port(node)), await HandClient.open(vh_port(node))
    watcher = await ws(node)
    await watcher.request("subscribe", snapshot=False)
    for round_ in range(20):  # ACK always comes first, then the change [VH §5.2, §11]
        source = 2 + round_ % 5
        a.send(f"VIDEO OUTPUT ROUTING:\n4 {source}\n\n")
        assert await a.block() == ACK
        assert await a.block() == ("VIDEO OUTPUT ROUTING:", [f"4 {source}"])
        assert await b.block() == ("VIDEO OUTPUT ROUTING:", [f"4 {source}"])
        assert device(node).source(0, 4) == source
    assert device(node).source(1, 4) == 4  # the audio level was not touched (level: video)
    for round_ in range(20):  # the WebSocket API saw each one
        event = await watcher.next_event()
        assert event["crosspoints"] == [
            {"level": "video", "destination": 5, "source": 3 + round_ % 5}]
    assert await a.fence() == [] and await b.fence() == []
    for c in (a, b):
        c.close()
    await watcher.close()


async def test_route_already_made_is_acked_and_shown_to_the_requester(node):
    a, b = await HandClient.open(vh_port(node)), await HandClient.open(vh_port(node))
    assert await a.ask("VIDEO OUTPUT ROUTING:\n6 6\n\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", ["6 6"])]
    assert await b.fence() == []  # nothing changed: nothing broadcast
    a.close()
    b.close()


async def test_multi_line_route_is_one_take(node):
    a = await HandClient.open(vh_port(node))
    a.send("VIDEO OUTPUT ROUTING:\n0 5\n1 5\n2 9\n\n")
    assert await a.block() == ACK
    seen: dict[str, str] = {}
    while len(seen) < 3:
        header, lines = await a.block()
        assert header == "VIDEO OUTPUT ROUTING:"
        seen.update(line.split(" ") for line in lines)
    assert seen == {"0": "5", "1": "5", "2": "9"}
    assert [device(node).source(0, d) for d in range(3)] == [5, 5, 9]
    a.close()


async def test_all_levels_follow(settings_dir):
    folder = settings(settings_dir, [{"router": "studio", "levels": "all"},
                                     {"router": "studio", "level": "audio",
                                      "levels": ["video", "audio"]}])
    async with running_node(folder) as node:
        video, audio = (await HandClient.open(vh_port(node, 1)),
                        await HandClient.open(vh_port(node, 2)))
        assert await video.ask("VIDEO OUTPUT ROUTING:\n3 11\n\n") == [
            ACK, ("VIDEO OUTPUT ROUTING:", ["3 11"])]
        assert (device(node).source(0, 3), device(node).source(1, 3)) == (11, 11)
        assert await audio.next_of("VIDEO OUTPUT ROUTING:") == ("VIDEO OUTPUT ROUTING:",
                                                                ["3 11"])
        # a breakaway elsewhere shows only to the API that shows that level
        operator = await ws(node)
        assert (await operator.request("route", router="studio", destination=8, source=2,
                                       levels=["audio"]))["ok"]
        assert await audio.next_of("VIDEO OUTPUT ROUTING:") == ("VIDEO OUTPUT ROUTING:",
                                                                ["7 1"])
        assert await video.fence() == []
        await operator.close()
        video.close()
        audio.close()


async def test_bad_routes_are_naked_and_change_nothing(node):
    a = await HandClient.open(vh_port(node))
    for request in ("VIDEO OUTPUT ROUTING:\n16 1\n\n",  # output out of range
                    "VIDEO OUTPUT ROUTING:\n1 16\n\n",  # input out of range
                    "VIDEO OUTPUT ROUTING:\n0 3\n1 99\n\n",  # one bad line: nothing is made
                    "VIDEO OUTPUT ROUTING:\n0 x\n\n",  # not a number
                    "VIDEO OUTPUT ROUTING:\n1 -1\n\n",  # "not connected": serial tables only
                    "VIDEO MONITORING OUTPUT ROUTING:\n0 1\n\n",  # no monitoring outputs
                    "SERIAL PORT ROUTING:\n0 1\n\n"):
        assert await a.ask(request) == [NAK], request
    assert [device(node).source(0, d) for d in range(2)] == [0, 1]
    a.close()


async def test_route_to_an_output_protected_by_a_websocket_user_is_naked(node):
    a = await HandClient.open(vh_port(node))
    operator = await ws(node)
    assert (await operator.request("protect", router="studio", destination=3))["ok"]
    assert await a.next_of("VIDEO OUTPUT LOCKS:") == ("VIDEO OUTPUT LOCKS:", ["2 L"])
    assert await a.ask("VIDEO OUTPUT ROUTING:\n2 7\n\n") == [NAK]
    assert await a.ask("VIDEO OUTPUT LOCKS:\n2 U\n\n") == [NAK]  # not its lock
    assert await a.ask("VIDEO OUTPUT LOCKS:\n2 F\n\n") == [NAK]  # force not allowed
    assert device(node).source(0, 2) == 2
    # a tieline *lock* (nobody may route) shows L too
    assert (await operator.request("lock", router="studio", destination=9))["ok"]
    assert await a.next_of("VIDEO OUTPUT LOCKS:") == ("VIDEO OUTPUT LOCKS:", ["8 L"])
    assert await a.ask("VIDEO OUTPUT ROUTING:\n8 1\n\n") == [NAK]
    assert (await operator.request("release", router="studio", destination=3))["ok"]
    assert await a.next_of("VIDEO OUTPUT LOCKS:") == ("VIDEO OUTPUT LOCKS:", ["2 U"])
    assert await a.ask("VIDEO OUTPUT ROUTING:\n2 7\n\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", ["2 7"])]
    await operator.close()
    a.close()


async def test_standby_node_naks_changes_and_still_answers_reads(node):
    a = await HandClient.open(vh_port(node))
    node.failover.update(state=State.STANDBY)
    assert await a.ask("VIDEO OUTPUT ROUTING:\n1 5\n\n") == [NAK]
    assert await a.ask("VIDEO OUTPUT LOCKS:\n1 O\n\n") == [NAK]
    assert await a.ask("VIDEO OUTPUT ROUTING:\n\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", [f"{d} {d}" for d in range(16)])]
    assert device(node).source(0, 1) == 1
    node.failover.update(state=State.ACTIVE)
    assert await a.ask("VIDEO OUTPUT ROUTING:\n1 5\n\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", ["1 5"])]
    a.close()


async def test_pipelined_blocks_are_answered_in_order(node):
    a = await HandClient.open(vh_port(node))
    a.send("".join(f"VIDEO OUTPUT ROUTING:\n{d} 15\n\nPING:\n\n" for d in range(10))
           + "VIDEO OUTPUT ROUTING:\n99 1\n\nVIDEO OUTPUT ROUTING:\n10 15\n\n")
    replies = []
    while len(replies) < 22:
        block = await a.block()
        if block[0] in ("ACK", "NAK"):
            replies.append(block[0])
    assert replies == ["ACK"] * 20 + ["NAK", "ACK"]
    assert [device(node).source(0, d) for d in range(11)] == [15] * 11
    a.close()


# -- changes made elsewhere ---------------------------------------------------------------------


async def test_changes_made_anywhere_reach_every_videohub_client(node):
    clients = [await HandClient.open(vh_port(node), f"127.0.0.{i}") for i in (1, 2, 3)]
    operator, admin = await ws(node), await ws(node, "admin")
    # through the WebSocket API
    assert (await operator.request("route", router="studio", destination=10, source=3))["ok"]
    for c in clients:
        assert await c.next_of("VIDEO OUTPUT ROUTING:") == ("VIDEO OUTPUT ROUTING:", ["9 2"])
    # at the device itself (its own panel)
    device(node).panel_route(0, 11, 14)
    for c in clients:
        assert await c.next_of("VIDEO OUTPUT ROUTING:") == ("VIDEO OUTPUT ROUTING:", ["11 14"])
    device(node).panel_route(1, 11, 2)  # audio only: not shown (the API shows video)
    # labels, kept in settings here
    assert (await admin.request("label", router="studio", kind="source", index=3,
                                text="CAM 3"))["ok"]
    assert (await admin.request("label", router="studio", kind="destination", index=1,
                                text="PGM"))["ok"]
    for c in clients:
        assert await c.next_of("INPUT LABELS:") == ("INPUT LABELS:", ["2 CAM 3"])
        assert await c.next_of("OUTPUT LABELS:") == ("OUTPUT LABELS:", ["0 PGM"])
    # locks and protects held by tieline users show as L to everyone
    assert (await operator.request("protect", router="studio", destination=6))["ok"]
    for c in clients:
        assert await c.next_of("VIDEO OUTPUT LOCKS:") == ("VIDEO OUTPUT LOCKS:", ["5 L"])
    for c in clients:
        assert await c.fence() == []  # nothing else: the audio change was not sent
        c.close()
    await operator.close()
    await admin.close()


async def test_router_offline_then_back_resends_every_block(node):
    a = await HandClient.open(vh_port(node))
    await device(node).disconnect_all()  # the link drops, and comes back by itself
    assert await a.block() == ("VIDEOHUB DEVICE:", ["Device present: false"])
    assert await a.ask("VIDEO OUTPUT ROUTING:\n1 5\n\n") == [NAK]  # as long as it is away
    header, lines = await a.block(timeout=10)
    assert (header, lines[0]) == ("VIDEOHUB DEVICE:", "Device present: true")
    assert [h for h, _ in await a.blocks_until("VIDEO OUTPUT ROUTING:")] == [
        "INPUT LABELS:", "OUTPUT LABELS:", "VIDEO OUTPUT LOCKS:", "VIDEO OUTPUT ROUTING:"]
    assert await a.ask("VIDEO OUTPUT ROUTING:\n1 5\n\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", ["1 5"])]
    a.close()


async def test_client_connecting_while_the_router_is_away_gets_the_device_block_only(
        settings_dir):
    async with SWP08Emulator(16, 16, 1) as swp:
        server = await swp.serve_tcp("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        folder = settings(settings_dir, [{"router": "pb"}], routers=[
            {"id": "pb", "driver": "swp08", "levels": ["video"], "sources": 16,
             "destinations": 16, "transport": {"type": "tcp", "host": "127.0.0.1",
                                               "port": port}}])
        async with running_node(folder) as node:
            server.close()
            await swp.disconnect_all()  # the device is gone
            state = node.routing.routers["pb"].state
            async with asyncio.timeout(5):
                while state.online:
                    await asyncio.sleep(0.01)
            a = await HandClient.open(vh_port(node), prelude=False)
            assert await a.read_until(b"Device present: false\n\n") == (
                b"PROTOCOL PREAMBLE:\nVersion: 2.8\n\nVIDEOHUB DEVICE:\nDevice present: false\n\n")
            assert await a.ask("VIDEO OUTPUT ROUTING:\n\n") == [NAK]
            assert await a.ask("VIDEOHUB DEVICE:\n\n") == [
                ACK, ("VIDEOHUB DEVICE:", ["Device present: false"])]
            a.close()


# -- locks -------------------------------------------------------------------------------------


async def test_locks_are_owned_per_address_and_shown_per_client(node):
    a = await HandClient.open(vh_port(node), "127.0.0.2")
    b = await HandClient.open(vh_port(node), "127.0.0.3")
    assert await a.ask("VIDEO OUTPUT LOCKS:\n5 O\n\n") == [ACK, ("VIDEO OUTPUT LOCKS:", ["5 O"])]
    assert await b.next_of("VIDEO OUTPUT LOCKS:") == ("VIDEO OUTPUT LOCKS:", ["5 L"])
    state = node.routing.routers["studio"].state
    assert state.protect(0, 5) == Protect(ProtectKind.PROTECT, "videohub 127.0.0.2")
    # the owner may route through its lock; nobody else may, nor unlock it
    assert await a.ask("VIDEO OUTPUT ROUTING:\n5 1\n\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", ["5 1"])]
    assert await b.next_of("VIDEO OUTPUT ROUTING:") == ("VIDEO OUTPUT ROUTING:", ["5 1"])
    assert await b.ask("VIDEO OUTPUT ROUTING:\n5 2\n\n") == [NAK]
    assert await b.ask("VIDEO OUTPUT LOCKS:\n5 U\n\n") == [NAK]
    assert await b.ask("VIDEO OUTPUT LOCKS:\n5 O\n\n") == [NAK]
    assert await b.ask("VIDEO OUTPUT LOCKS:\n5 F\n\n") == [NAK]  # force: not allowed here
    operator = await ws(node)
    refused = await operator.request("route", router="studio", destination=6, source=2)
    assert refused["error"]["code"] == "protected"
    assert "protected by videohub 127.0.0.2" in refused["error"]["message"]
    # another connection from the owner's address is the same owner [VH §6]
    a2 = await HandClient.open(vh_port(node), "127.0.0.2")
    assert "5 O" in blocks_of(a2.raw_prelude)[4][1]
    b2 = await HandClient.open(vh_port(node), "127.0.0.4")
    assert "5 L" in blocks_of(b2.raw_prelude)[4][1]
    assert await a2.ask("VIDEO OUTPUT LOCKS:\n\n") == [
        ACK, ("VIDEO OUTPUT LOCKS:", [f"{d} {'O' if d == 5 else 'U'}" for d in range(16)])]
    assert await a2.ask("VIDEO OUTPUT LOCKS:\n5 U\n\n") == [
        ACK, ("VIDEO OUTPUT LOCKS:", ["5 U"])]
    for c in (a, b, b2):
        assert await c.next_of("VIDEO OUTPUT LOCKS:") == ("VIDEO OUTPUT LOCKS:", ["5 U"])
    assert state.protect(0, 5) is None
    assert await b.ask("VIDEO OUTPUT ROUTING:\n5 2\n\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", ["5 2"])]
    # locking what one holds, or unlocking what is free, changes nothing and says so
    assert await b.ask("VIDEO OUTPUT LOCKS:\n7 U\n\n") == [ACK, ("VIDEO OUTPUT LOCKS:", ["7 U"])]
    await operator.close()
    for c in (a, b, a2, b2):
        c.close()


async def test_force_unlock_only_from_allowed_addresses(settings_dir):
    folder = settings(settings_dir, [{"router": "studio", "levels": "all",
                                      "force_unlock": ["127.0.0.3/32"]}])
    async with running_node(folder) as node:
        a = await HandClient.open(vh_port(node), "127.0.0.2")
        b = await HandClient.open(vh_port(node), "127.0.0.3")
        c = await HandClient.open(vh_port(node), "127.0.0.4")
        state = node.routing.routers["studio"].state
        assert await a.ask("VIDEO OUTPUT LOCKS:\n2 O\n\n") == [
            ACK, ("VIDEO OUTPUT LOCKS:", ["2 O"])]
        assert state.protect(0, 2) == state.protect(1, 2) == Protect(
            ProtectKind.PROTECT, "videohub 127.0.0.2")  # every level routes, every level locks
        assert await c.ask("VIDEO OUTPUT LOCKS:\n2 F\n\n") == [
            ("VIDEO OUTPUT LOCKS:", ["2 L"]), NAK]  # one block for the two levels' protects
        assert await b.ask("VIDEO OUTPUT LOCKS:\n2 F\n\n") == [
            ("VIDEO OUTPUT LOCKS:", ["2 L"]), ACK, ("VIDEO OUTPUT LOCKS:", ["2 U"])]
        assert state.protect(0, 2) is None and state.protect(1, 2) is None
        # a tieline user's protect, too
        operator = await ws(node)
        assert (await operator.request("protect", router="studio", destination=9,
                                       levels=["audio"]))["ok"]
        assert await b.next_of("VIDEO OUTPUT LOCKS:") == ("VIDEO OUTPUT LOCKS:", ["8 L"])
        assert await b.ask("VIDEO OUTPUT LOCKS:\n8 F\n\n") == [
            ACK, ("VIDEO OUTPUT LOCKS:", ["8 U"])]
        assert state.protect(1, 8) is None
        await operator.close()
        for client in (a, b, c):
            client.close()


# -- labels, ping, status requests --------------------------------------------------------------


async def test_labels_need_permission_3(settings_dir):
    folder = settings(settings_dir, [{"router": "studio"},
                                     {"router": "studio", "permission": 3}])
    async with running_node(folder) as node:
        route_only = await HandClient.open(vh_port(node, 1))
        labeller = await HandClient.open(vh_port(node, 2))
        assert await route_only.ask("INPUT LABELS:\n0 CAM 1\n\n") == [NAK]
        assert await labeller.ask("INPUT LABELS:\n0 CAM 1 wide\n1 CAM 2\n\n") == [
            ACK, ("INPUT LABELS:", ["0 CAM 1 wide"]), ("INPUT LABELS:", ["1 CAM 2"])]
        assert await route_only.next_of("INPUT LABELS:") == ("INPUT LABELS:", ["0 CAM 1 wide"])
        assert await route_only.next_of("INPUT LABELS:") == ("INPUT LABELS:", ["1 CAM 2"])
        state = node.routing.routers["studio"].state
        assert state.label(PortKind.SOURCE, 0) == "CAM 1 wide"
        assert await labeller.ask("OUTPUT LABELS:\n15 PGM\n\n") == [
            ACK, ("OUTPUT LABELS:", ["15 PGM"])]
        assert state.label(PortKind.DESTINATION, 15) == "PGM"
        assert await labeller.ask("OUTPUT LABELS:\n16 X\n\n") == [NAK]
        assert await labeller.ask(f"OUTPUT LABELS:\n1 {'x' * 65}\n\n") == [NAK]
        assert await labeller.ask("MONITORING OUTPUT LABELS:\n0 X\n\n") == [NAK]
        assert await labeller.ask("OUTPUT LABELS:\n15 PGM\n\n") == [  # unchanged: shown anyway
            ACK, ("OUTPUT LABELS:", ["15 PGM"])]
        route_only.close()
        labeller.close()


async def test_watch_only_clients_change_nothing(settings_dir):
    async with running_node(settings(settings_dir, [{"router": "studio",
                                                     "permission": 1}])) as node:
        a = await HandClient.open(vh_port(node))
        for request in ("VIDEO OUTPUT ROUTING:\n1 5\n\n", "VIDEO OUTPUT LOCKS:\n1 O\n\n",
                        "INPUT LABELS:\n1 X\n\n"):
            assert await a.ask(request) == [NAK]
        assert device(node).source(0, 1) == 1
        a.close()


async def test_ping_status_requests_and_unknown_blocks(node):
    a = await HandClient.open(vh_port(node))
    prelude = blocks_of(a.raw_prelude)
    a.send("PING:\n\n")
    assert await a.block() == ACK
    for block in prelude[:6]:  # every block of the dump can be asked for
        assert await a.ask(block[0] + "\n\n") == [ACK, block]
    for request in ("END PRELUDE:\n\n", "MONITORING OUTPUT LABELS:\n\n", "SERIAL PORT LOCKS:\n\n",
                    "CONFIGURATION:\n\n", "CONFIGURATION:\nTake Mode: true\n\n",
                    "TEAPOT:\n\n", "TEAPOT STATUS:\n1 hot\n\n"):
        assert await a.ask(request) == [NAK], request
    # hardware status from a client is ignored [VH §4]; CRLF and leading blanks are fine
    assert await a.ask("VIDEO INPUT STATUS:\n0 BNC\n\n") == [ACK]
    assert await a.ask("PING:\r\n\r\n") == [ACK]
    assert await a.ask("  VIDEO OUTPUT ROUTING:\r\n  3 4\r\n\r\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", ["3 4"])]
    a.close()


async def test_half_closed_client_gets_its_replies(node):
    a = await HandClient.open(vh_port(node))
    a.send("PING:\n\nVIDEO OUTPUT ROUTING:\n2 9\n\nPING:\n\n")
    a.writer.write_eof()
    assert blocks_of(await a.closed()) == [ACK, ACK, ("VIDEO OUTPUT ROUTING:", ["2 9"]), ACK]
    assert device(node).source(0, 2) == 9


# -- several instances, who may connect ---------------------------------------------------------


async def test_two_apis_for_two_routers_in_one_node(settings_dir):
    folder = settings(settings_dir, [{"router": "a"}, {"router": "b"}], routers=[
        {"id": rid, "driver": "simulator", "levels": ["video"], "sources": n, "destinations": n}
        for rid, n in (("a", 8), ("b", 12))])
    async with running_node(folder) as node:
        assert vh_port(node, 1) != vh_port(node, 2)
        a, b = await HandClient.open(vh_port(node, 1)), await HandClient.open(vh_port(node, 2))
        assert "Video outputs: 8" in blocks_of(a.raw_prelude)[1][1]
        assert "Video outputs: 12" in blocks_of(b.raw_prelude)[1][1]
        assert await a.ask("VIDEO OUTPUT ROUTING:\n7 1\n\n") == [
            ACK, ("VIDEO OUTPUT ROUTING:", ["7 1"])]
        assert await b.ask("VIDEO OUTPUT ROUTING:\n11 1\n\n") == [
            ACK, ("VIDEO OUTPUT ROUTING:", ["11 1"])]
        assert await a.ask("VIDEO OUTPUT ROUTING:\n11 1\n\n") == [NAK]  # a has 8 outputs
        assert await a.fence() == [] and await b.fence() == []  # nothing from the other
        assert device(node, "a").source(0, 7) == device(node, "b").source(0, 11) == 1
        assert device(node, "b").source(0, 7) == 7
        a.close()
        b.close()


async def test_clients_from_other_networks_and_beyond_max_clients_are_closed(settings_dir):
    folder = settings(settings_dir, [{"router": "studio", "clients": ["127.0.0.2/32"],
                                      "max_clients": 2}])
    async with running_node(folder) as node:
        stranger = await HandClient.open(vh_port(node), "127.0.0.1", prelude=False)
        assert await stranger.closed() == b""
        first = await HandClient.open(vh_port(node), "127.0.0.2")
        second = await HandClient.open(vh_port(node), "127.0.0.2")
        third = await HandClient.open(vh_port(node), "127.0.0.2", prelude=False)
        assert await third.closed() == b""
        second.close()
        async with asyncio.timeout(5):
            while len(node.apis[1].clients) > 1:
                await asyncio.sleep(0.01)
        fourth = await HandClient.open(vh_port(node), "127.0.0.2")
        assert await fourth.fence() == [] and await first.fence() == []
        first.close()
        fourth.close()


async def test_each_kind_of_refusal_is_logged_whatever_the_address(settings_dir, caplog):
    """A refusal logged for one address does not hide a different refusal from the same
    address; the same refusal again is held back (DEBUG) and counted."""
    caplog.set_level(logging.DEBUG, logger="tieline")
    folder = settings(settings_dir, [{"router": "studio", "clients": ["127.0.0.2/32"],
                                      "max_clients": 1}])

    def warned(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and text in r.getMessage()]

    async with running_node(folder) as node:
        first = await HandClient.open(vh_port(node), "127.0.0.2")
        for _ in range(3):
            extra = await HandClient.open(vh_port(node), "127.0.0.2", prelude=False)
            assert await extra.closed() == b""
        assert len(warned("clients are connected")) == 1
        first.send("POST / HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            await first.closed()
        assert len(warned("it sent an HTTP request")) == 1
        assert len([r for r in caplog.records if "clients are connected" in r.getMessage()]) == 3


# -- misbehaving clients --------------------------------------------------------------------------


async def test_garbage_half_blocks_and_endless_lines_disturb_nobody_else(node):
    good = await HandClient.open(vh_port(node), "127.0.0.2")
    garbage = await HandClient.open(vh_port(node), "127.0.0.3")
    half = await HandClient.open(vh_port(node), "127.0.0.4")
    endless = await HandClient.open(vh_port(node), "127.0.0.5")
    binary = await HandClient.open(vh_port(node), "127.0.0.6")
    # garbage: not a header, a control character, ACK from a client
    assert await garbage.ask("hello there\nmore\n\n") == [NAK]
    assert await garbage.ask("VIDEO OUTPUT ROUTING:\n1\x01 2\n\n") == [NAK]
    assert await garbage.ask("ACK\n\n") == [NAK]
    # a block cut off, then the connection closes in its middle
    half.send("VIDEO OUTPUT ROUTING:\n3 7\n4 ")
    await half.writer.drain()
    half.writer.transport.abort()
    # a line that never ends: NAKed once, the rest thrown away, and the client goes on
    endless.send("VIDEO OUTPUT ROUTING:\n1 ")
    for _ in range(64):
        endless.send("9" * 4096)
    endless.send("\n\n")
    assert await endless.ask("") == [NAK]
    binary.writer.write(bytes(range(256)) * 64 + b"\n\n")
    assert await binary.ask("") == [NAK]
    # everyone else carries on; nothing was routed by any of that
    assert await good.ask("VIDEO OUTPUT ROUTING:\n1 7\n\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", ["1 7"])]
    for i, c in enumerate((garbage, endless, binary)):
        assert await c.next_of("VIDEO OUTPUT ROUTING:") == ("VIDEO OUTPUT ROUTING:", ["1 7"])
        blocks = await c.ask(f"VIDEO OUTPUT ROUTING:\n{10 + i} 7\n\n")
        assert blocks[-2:] == [ACK, ("VIDEO OUTPUT ROUTING:", [f"{10 + i} 7"])]
    assert [device(node).source(0, d) for d in (3, 4)] == [3, 4]
    async with asyncio.timeout(5):
        while len(node.apis[1].clients) != 4:
            await asyncio.sleep(0.01)
    for c in (good, garbage, endless, binary):
        c.close()


@pytest.mark.parametrize("request_line", ["POST / HTTP/1.1", "PUT /x?y HTTP/1.0",
                                          "GET http://127.0.0.1:9990/ HTTP/1.1"])
async def test_a_web_page_posting_to_the_port_routes_nothing(node, caplog, request_line):
    """A page in any browser on a machine that may connect can send an HTTP request to the
    port (``fetch("http://127.0.0.1:9990", {method: "POST", mode: "no-cors", body})``),
    whose body would read as Videohub blocks. Its request line gives it away: the connection
    is cut before anything after it is read, and that is logged."""
    caplog.set_level(logging.DEBUG, logger="tieline")
    for _ in range(2):
        page = await HandClient.open(vh_port(node), "127.0.0.2")
        body = "VIDEO OUTPUT ROUTING:\n0 5\n\nVIDEO OUTPUT LOCKS:\n1 O\n\n"
        page.send(f"{request_line}\r\nHost: 127.0.0.1:9990\r\nOrigin: http://evil.example\r\n"
                  f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}"
                  f"\r\n\r\n{body}")
        try:
            answered = await page.closed()
        except ConnectionResetError:
            answered = b""
        assert b"ACK" not in answered and b"NAK" not in answered
    assert device(node).source(0, 0) == 0 and device(node).source(0, 1) == 1
    assert node.routing.routers["studio"].state.protects == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "HTTP" in r.getMessage()]
    assert len(warnings) == 1 and "127.0.0.2" in warnings[0], warnings  # repeats: debug
    other = await HandClient.open(vh_port(node), "127.0.0.3")  # others are not affected
    assert await other.ask("VIDEO OUTPUT ROUTING:\n1 7\n\n") == [
        ACK, ("VIDEO OUTPUT ROUTING:", ["1 7"])]
    other.close()


async def test_too_large_block_is_naked(settings_dir):
    async with running_node(settings(settings_dir, [{"router": "studio",
                                                     "max_block_bytes": 4096}])) as node:
        a = await HandClient.open(vh_port(node))
        big = "".join(f"{d % 16} {d % 16}\n" for d in range(1000))  # ~5 kB of valid lines
        assert await a.ask(f"VIDEO OUTPUT ROUTING:\n{big}\n") == [NAK]
        assert await a.ask("VIDEO OUTPUT ROUTING:\n1 2\n\n") == [
            ACK, ("VIDEO OUTPUT ROUTING:", ["1 2"])]
        a.close()


async def test_client_that_never_reads_is_dropped_and_others_get_everything(settings_dir):
    """A raw socket that connects and then never reads: its buffers are made small on both
    ends, so the server's writes to it pile up and it is dropped; the other client gets every
    change meanwhile."""
    folder = settings(settings_dir, [{"router": "big", "client_buffer_bytes": 65536}], routers=[
        {"id": "big", "driver": "simulator", "levels": ["video"], "sources": 1024,
         "destinations": 1024}])
    (folder / "salvos.json").write_text(__import__("json").dumps({"salvos": [
        {"name": name, "router": "big",
         "crosspoints": [{"destination": d, "source": src} for d in range(1, 1025)]}
        for name, src in (("one", 1), ("two", 2))]}))
    async with running_node(folder) as node:
        api = node.apis[1]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((api.host, api.port))
        async with asyncio.timeout(5):
            while not api.clients:
                await asyncio.sleep(0.01)
        (stuck,) = api.clients
        stuck.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        fast = await HandClient.open((api.host, api.port))
        operator = await ws(node)
        rounds = 30
        for i in range(rounds):
            response = await operator.request("salvo", name=("one", "two")[i % 2])
            assert len(response["result"]["taken"]) == 1024
        expected = rounds * 1024 - 1  # the simulator starts with output 0 <- input 0
        received = 0
        while received < expected:
            header, lines = await fast.block(timeout=10)
            assert header == "VIDEO OUTPUT ROUTING:"
            received += len(lines)
        assert received == expected  # every change, none lost or repeated
        assert stuck.closed and stuck not in api.clients
        assert api.clients == {next(iter(api.clients))}  # the fast one only
        sock.close()
        fast.close()
        await operator.close()


# -- end to end ------------------------------------------------------------------------------------


async def test_videohub_client_routes_a_swp08_router(settings_dir):
    async with SWP08Emulator(32, 32, 2) as swp:
        server = await swp.serve_tcp("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        folder = settings(settings_dir, [{"router": "pb", "levels": "all"}], routers=[
            {"id": "pb", "driver": "swp08", "levels": ["video", "audio"], "sources": 32,
             "destinations": 32, "transport": {"type": "tcp", "host": "127.0.0.1",
                                               "port": port}}])
        async with running_node(folder) as node:
            a = await HandClient.open(vh_port(node))
            b = await HandClient.open(vh_port(node))
            assert "Video outputs: 32" in blocks_of(a.raw_prelude)[1][1]
            assert await a.ask("VIDEO OUTPUT ROUTING:\n20 31\n\n") == [
                ACK, ("VIDEO OUTPUT ROUTING:", ["20 31"])]
            assert swp.source(0, 20) == swp.source(1, 20) == 31
            assert await b.next_of("VIDEO OUTPUT ROUTING:") == ("VIDEO OUTPUT ROUTING:",
                                                                ["20 31"])
            swp.panel_route(0, 5, 9)  # the router's own panel
            for c in (a, b):
                assert await c.next_of("VIDEO OUTPUT ROUTING:") == ("VIDEO OUTPUT ROUTING:",
                                                                    ["5 9"])
            assert await a.ask("VIDEO OUTPUT ROUTING:\n32 1\n\n") == [NAK]
            a.close()
            b.close()


async def test_tieline_videohub_driver_drives_a_node_through_its_videohub_api(settings_dir):
    """Node A serves its simulator as a Videohub; node B's router is 'a Videohub' at A's port.

    Routes, protects and labels made through B land on A's router, and A's changes show in B:
    the driver and the API agree."""
    folder_a = settings(settings_dir, [{"router": "studio", "permission": 3}], name="a")
    async with running_node(folder_a) as node_a:
        folder_b = settings_dir({
            "tieline.json": {
                "node": {"name": "vh-api-b"},
                "routers": [{"id": "hub", "driver": "videohub", "levels": ["video"],
                             "sources": 16, "destinations": 16, "confirm_grace_ms": 50,
                             "transport": {"type": "tcp", "host": vh_port(node_a)[0],
                                           "port": vh_port(node_a)[1]}}],
                "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
                "auth": {"users_file": "users.json"},
            },
            "users.json": {"users": [
                {"name": n, "level": LEVELS[n], "token_sha256": hash_token(t)}
                for n, t in TOKENS.items()]},
        }, "b")
        async with running_node(folder_b) as node_b:
            hub = node_b.routing.routers["hub"].state
            assert [hub.source(0, d) for d in range(16)] == list(range(16))
            operator = await ws(node_b)
            response = await operator.request("route", router="hub", destination=4, source=12)
            assert response["ok"], response
            assert device(node_a).source(0, 3) == 11
            # already made: confirmed at once, no table re-read needed
            assert (await operator.request("route", router="hub", destination=4,
                                           source=12))["ok"]
            # a change at A's router shows in B
            device(node_a).panel_route(0, 9, 1)
            async with asyncio.timeout(5):
                while hub.source(0, 9) != 1:
                    await asyncio.sleep(0.01)
            # protects: B's user holds a Videohub lock, which is a protect at A
            assert (await operator.request("protect", router="hub", destination=2))["ok"]
            studio = node_a.routing.routers["studio"].state
            assert studio.protect(0, 1) == Protect(ProtectKind.PROTECT, "videohub 127.0.0.1")
            a_user = await ws(node_a)
            refused = await a_user.request("route", router="studio", destination=2, source=5)
            assert refused["error"]["code"] == "protected"
            # A's own protect shows in B as another client's
            assert (await a_user.request("protect", router="studio", destination=8))["ok"]
            async with asyncio.timeout(5):
                while hub.protect(0, 7) is None:
                    await asyncio.sleep(0.01)
            refused = await operator.request("route", router="hub", destination=8, source=1)
            assert refused["error"]["code"] == "protected", refused
            assert (await operator.request("release", router="hub", destination=2))["ok"]
            assert studio.protect(0, 1) is None
            # labels through B are stored at A (the API allows labels: permission 3)
            admin = await ws(node_b, "admin")
            assert (await admin.request("label", router="hub", kind="source", index=1,
                                        text="CAM 1"))["ok"]
            assert studio.label(PortKind.SOURCE, 0) == "CAM 1"
            for c in (operator, a_user, admin):
                await c.close()
