"""The peer link over real SSH (asyncssh) on 127.0.0.1: messages, requests, membership,
reconnects, the cluster key both ways, and peers that misbehave.

Nothing here asserts how long something takes: tests wait for a condition, with a generous
bound so that a bug fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncssh
import pytest

from tieline.devices import backoff
from tieline.errors import PermissionDenied
from tieline.cluster.peerlink import (
    SUBSYSTEM,
    Peer,
    PeerLink,
    PeerLinkError,
    PeerRequestRefused,
    PeerTimeout,
    TCP_THIN_LINEAR_TIMEOUTS,
    format_address,
)

LOGGER = "tieline.cluster.peerlink"


def fast_backoff():
    return backoff(initial=0.02, cap=0.1)


async def eventually(condition: Callable[[], object], what: str, timeout: float = 10) -> None:
    """Wait until ``condition()`` is true (polling); fail naming ``what`` if it never is."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"never happened: {what}")


class Inbox:
    """An on_message handler that records (peer, message) and answers some requests."""

    def __init__(self) -> None:
        self.received: list[tuple[Peer, dict[str, Any]]] = []
        self.link: PeerLink | None = None
        self.stall = asyncio.Event()  # "stall" messages wait for it
        self.later: list[dict[str, Any]] = []  # "later" requests, answered by the test

    async def __call__(self, peer: Peer, message: dict[str, Any]) -> Any:
        self.received.append((peer, message))
        kind = message["type"]
        if kind == "echo":
            return {"echo": message.get("value"), "by": self.link.node if self.link else None}
        if kind == "later":
            self.later.append(message)
            return None
        if kind == "refuse":
            raise PermissionDenied("needs permission level 3", field="level")
        if kind == "crash":
            raise ZeroDivisionError("a bug")
        if kind == "stall":
            await self.stall.wait()
        return None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.received if m["type"] == kind]


def make_link(name: str, key: asyncssh.SSHKey, inbox: Inbox | None = None,
              port: int = 0, **options: Any) -> tuple[PeerLink, Inbox]:
    inbox = inbox or Inbox()
    options.setdefault("heartbeat_timeout_s", 3.0)
    options.setdefault("backoff_factory", fast_backoff)
    link = PeerLink(node=name, listen=("127.0.0.1", port), peers=[], key=key,
                    on_message=inbox, **options)
    inbox.link = link
    return link, inbox


def address(link: PeerLink) -> str:
    assert link.listen_address is not None
    return format_address(*link.listen_address)


@contextlib.asynccontextmanager
async def cluster(key: asyncssh.SSHKey, count: int, **options: Any
                  ) -> AsyncIterator[list[tuple[PeerLink, Inbox]]]:
    """``count`` started links, each listing every other one, all connected."""
    nodes = [make_link(f"node{i}", key, **options) for i in range(count)]
    try:
        for link, _ in nodes:
            await link.start()
        for link, _ in nodes:
            link.set_peers([other.listen_address for other, _ in nodes if other is not link])
        await eventually(lambda: all(p.connected for link, _ in nodes
                                     for p in link.peers.values()), "every link connected")
        yield nodes
    finally:
        for link, _ in nodes:
            await link.close()
        for link, _ in nodes:
            assert not link._tasks, f"{link.node}: tasks left after close: {link._tasks}"


@pytest.fixture
def key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def records(caplog: pytest.LogCaptureFixture, text: str, level: int | None = None) -> list:
    return [r for r in caplog.records if r.name == LOGGER and text in r.getMessage()
            and (level is None or r.levelno == level)]


# -------------------------------------------------------------------------------------------
# Messages between working nodes
# -------------------------------------------------------------------------------------------


async def test_two_nodes_exchange_messages_both_ways(key):
    async with cluster(key, 2) as [(a, inbox_a), (b, inbox_b)]:
        to_b, to_a = address(b), address(a)
        assert a.peers[to_b].name == "node1" and b.peers[to_a].name == "node0"
        assert a.send(to_b, {"type": "heartbeat", "epoch": 3, "text": "héllo"})
        assert b.send(to_a, {"type": "heartbeat", "epoch": 4})
        await eventually(lambda: inbox_a.received and inbox_b.received, "both received")
        (peer, message), = inbox_b.received
        assert message == {"type": "heartbeat", "epoch": 3, "text": "héllo", "node": "node0"}
        assert peer is b.peers[to_a]  # incoming messages map to the configured peer
        (peer, message), = inbox_a.received
        assert message == {"type": "heartbeat", "epoch": 4, "node": "node1"}
        assert peer is a.peers[to_b]
        assert peer.last_heard is not None and peer.heard_within(60)

        # messages from one node arrive in order
        for i in range(200):
            assert a.send(to_b, {"type": "seq", "i": i})
        await eventually(lambda: len(inbox_b.of_type("seq")) == 200, "200 messages")
        assert [m["i"] for m in inbox_b.of_type("seq")] == list(range(200))

        # Nagle is off on both ends of both connections, and a lost segment of this thin
        # stream is re-sent after linear timeouts, not doubling ones (Linux)
        conns = [a._outgoing[to_b].conn, b._outgoing[to_a].conn,
                 *a._server_conns, *b._server_conns]
        assert len(conns) == 4
        for conn in conns:
            sock = conn.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            if sys.platform.startswith("linux"):
                assert sock.getsockopt(socket.IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS)


async def test_three_nodes_broadcast(key):
    async with cluster(key, 3) as nodes:
        for link, _ in nodes:
            assert link.broadcast({"type": "heartbeat", "from": link.node}) == 2
        for link, inbox in nodes:
            await eventually(lambda: len(inbox.received) == 2, f"{link.node} heard both")
            senders = sorted(m["from"] for _, m in inbox.received)
            assert senders == sorted(other.node for other, _ in nodes if other is not link)
            for peer, message in inbox.received:
                assert peer.address in link.peers and peer.name == message["node"]


async def test_request_and_reply(key, caplog):
    async with cluster(key, 2) as [(a, _), (b, inbox_b)]:
        to_b = address(b)
        reply = await a.request(to_b, {"type": "echo", "value": [1, 2]}, timeout=10)
        assert reply["echo"] == [1, 2] and reply["by"] == "node1"
        assert reply["type"] == "reply" and reply["node"] == "node1"
        assert isinstance(reply["reply_to"], int)

        # several at once, answered out of order by reply()
        pending = [asyncio.create_task(a.request(to_b, {"type": "later", "n": n}, timeout=10))
                   for n in range(3)]
        await eventually(lambda: len(inbox_b.later) == 3, "three requests arrived")
        for request in reversed(inbox_b.later):
            assert b.reply(request, {"n": request["n"], "type": "done"})
            assert not b.reply(request, {"n": -1})  # once only
        results = await asyncio.gather(*pending)
        assert [(r["type"], r["n"]) for r in results] == [("done", 0), ("done", 1), ("done", 2)]
        assert not b.reply({"type": "later", "id": 1, "node": "node0"}, {})  # not a request it got

        with pytest.raises(PeerRequestRefused) as refused:
            await a.request(to_b, {"type": "refuse"}, timeout=10)
        assert refused.value.code == "forbidden" and refused.value.error["field"] == "level"
        assert refused.value.peer == to_b

        with caplog.at_level(logging.ERROR, logger=LOGGER):
            with pytest.raises(PeerRequestRefused, match="internal") as crashed:
                await a.request(to_b, {"type": "crash"}, timeout=10)
        assert "ZeroDivisionError" in crashed.value.error["message"]
        assert records(caplog, "the handler of 'crash' requests failed", logging.ERROR)

        with pytest.raises(PeerTimeout, match=f"peer {to_b} did not answer 'later'"):
            await a.request(to_b, {"type": "later"}, timeout=0.2)
        with pytest.raises(PeerLinkError, match="not a peer of this node"):
            await a.request("127.0.0.1:1", {"type": "echo"}, timeout=1)

        # the link still works after all that
        assert (await a.request(to_b, {"type": "echo", "value": 5}, timeout=10))["echo"] == 5


async def test_a_pending_request_fails_when_the_connection_is_lost(key):
    async with cluster(key, 2) as [(a, _), (b, inbox_b)]:
        to_b = address(b)
        waiting = asyncio.create_task(a.request(to_b, {"type": "later"}, timeout=30))
        await eventually(lambda: inbox_b.later, "the request arrived")
        await b.close()
        with pytest.raises(PeerLinkError, match="connection lost before it replied"):
            await waiting


async def test_set_peers_adds_and_removes(key):
    (a, inbox_a), (b, inbox_b), (c, inbox_c) = (make_link(n, key) for n in "abc")
    try:
        for link in (a, b, c):
            await link.start()
        a.set_peers([b.listen_address])
        b.set_peers([a.listen_address])
        c.set_peers([a.listen_address])
        await eventually(lambda: a.peers[address(b)].connected, "a connected to b")
        assert list(a.peers) == [address(b)]
        assert a.send(address(b), {"type": "one"})
        await eventually(lambda: inbox_b.of_type("one"), "b got one")

        # c is not a peer of a: its messages still arrive, from an unlisted node
        await eventually(lambda: c.peers[address(a)].connected, "c connected to a")
        assert c.send(address(a), {"type": "hi"})
        await eventually(lambda: inbox_a.of_type("hi"), "a got c's message")
        peer = next(p for p, m in inbox_a.received if m["type"] == "hi")
        assert peer.address is None and peer.name == "c"

        # add c: a connects to it, and c's messages now come from the configured peer
        a.set_peers([b.listen_address, f"127.0.0.1:{c.listen_address[1]}"])
        await eventually(lambda: a.peers[address(c)].connected, "a connected to c")
        assert a.send(address(c), {"type": "two"})
        await eventually(lambda: inbox_c.of_type("two"), "c got two")
        assert c.send(address(a), {"type": "hi"})
        await eventually(lambda: len(inbox_a.of_type("hi")) == 2, "a got c's second message")
        assert inbox_a.received[-1][0] is a.peers[address(c)]

        # remove b: dropped at once, and nothing more is sent to it
        removed = a.peers[address(b)]
        a.set_peers([c.listen_address])
        assert list(a.peers) == [address(c)] and not removed.connected
        assert a.send(address(b), {"type": "three"}) is False
        assert a.broadcast({"type": "four"}) == 1
        await eventually(lambda: inbox_c.of_type("four"), "c got four")
        assert not inbox_b.of_type("three") and not inbox_b.of_type("four")
        await eventually(lambda: not b._server_conns, "b's incoming connection from a closed")
    finally:
        for link in (a, b, c):
            await link.close()


async def test_reconnects_after_the_other_side_restarts(key, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    a, inbox_a = make_link("a", key)
    b, inbox_b = make_link("b", key)
    b2 = None
    try:
        await a.start()
        await b.start()
        a.set_peers([b.listen_address])
        b.set_peers([a.listen_address])
        to_b = address(b)
        peer = a.peers[to_b]
        await eventually(lambda: peer.connected and b.peers[address(a)].connected, "connected")

        await b.close()
        await eventually(lambda: not peer.connected, "a saw b go")
        assert a.send(to_b, {"type": "lost"}) is False
        await eventually(lambda: len(records(caplog, f"peer {to_b}: cannot connect")) >= 3,
                         "a few reconnect attempts")

        b2, inbox_b2 = make_link("b", key, port=b.listen_address[1])
        await b2.start()
        b2.set_peers([a.listen_address])
        await eventually(lambda: peer.connected, "a reconnected to the restarted b")
        await eventually(lambda: b2.peers[address(a)].connected, "b reconnected to a")
        assert a.send(to_b, {"type": "back"})
        assert b2.send(address(a), {"type": "back"})
        await eventually(lambda: inbox_b2.of_type("back") and inbox_a.of_type("back"),
                         "messages both ways after the restart")
        assert not inbox_b.of_type("lost")

        # the loss is logged once, the recovery once; the retries in between at DEBUG
        assert len(records(caplog, f"peer {to_b} (node 'b'): connection lost",
                           logging.WARNING)) == 1
        assert not records(caplog, f"peer {to_b}: cannot connect", logging.WARNING)
        assert len(records(caplog, f"peer {to_b} (node 'b'): connected", logging.INFO)) == 2
    finally:
        await a.close()
        await b.close()
        if b2 is not None:
            await b2.close()


# -------------------------------------------------------------------------------------------
# The cluster key, both ways
# -------------------------------------------------------------------------------------------


class KeyServer(asyncssh.SSHServer):
    """A bare asyncssh server that accepts clients holding ``key`` (for hand-made peers)."""

    def __init__(self, key: asyncssh.SSHKey) -> None:
        self.key = key

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data == self.key.public_data


async def test_a_node_with_another_key_is_refused_both_ways(key, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    good, inbox_good = make_link("good", key)
    intruder, inbox_intruder = make_link("intruder", asyncssh.generate_private_key("ssh-ed25519"))
    try:
        await good.start()
        await intruder.start()
        to_intruder, to_good = address(intruder), address(good)

        # the intruder cannot join: the good node refuses it, and logs that once in the
        # rate limit's interval (the repeats at DEBUG)
        intruder.set_peers([good.listen_address])
        await eventually(lambda: len(records(caplog, "refused a connection from 127.0.0.1")) >= 3,
                         "the intruder tried a few times")
        (warning,) = records(caplog, "refused a connection from 127.0.0.1", logging.WARNING)
        assert "it does not trust this node's host key: it holds another cluster key" \
            in warning.getMessage()
        assert "tieline keys generate" in warning.getMessage()
        # the intruder's side says at every attempt, loudly, that the key is refused
        assert len(records(caplog, f"peer {to_good}: cannot connect (its host key is not the "
                                   "cluster key", logging.ERROR)) >= 3

        # nor can it pose as a peer: the good node refuses its host key, at every attempt
        good.set_peers([intruder.listen_address])
        await eventually(lambda: len(records(caplog, f"peer {to_intruder}: cannot connect "
                                                     "(its host key is not the cluster key",
                                             logging.ERROR)) >= 3,
                         "the good node tried a few times")

        assert not good.peers[to_intruder].connected and not intruder.peers[to_good].connected
        assert good.peers[to_intruder].name is None
        assert good.send(to_intruder, {"type": "secret"}) is False
        assert intruder.send(to_good, {"type": "forged"}) is False
        with pytest.raises(PeerLinkError, match="not connected"):
            await intruder.request(to_good, {"type": "echo"}, timeout=1)
        assert inbox_good.received == [] and inbox_intruder.received == []
    finally:
        await good.close()
        await intruder.close()


async def test_a_client_offering_another_key_is_refused(key, caplog):
    """A client that would accept any host key still cannot authenticate without the key."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    link, inbox = make_link("a", key)
    await link.start()
    try:
        host, port = link.listen_address
        for _ in range(3):
            with pytest.raises(asyncssh.PermissionDenied):
                await asyncssh.connect(
                    host, port, username="mallory", known_hosts=None, config=None,
                    agent_path=None, client_keys=[asyncssh.generate_private_key("ssh-ed25519")])
        await eventually(lambda: len(records(caplog, "refused a connection from 127.0.0.1")) == 3,
                         "three refusals")
        (warning,) = records(caplog, "refused a connection from 127.0.0.1", logging.WARNING)
        assert "(user 'mallory'): it offered a key that is not the cluster key" \
            in warning.getMessage()
        assert inbox.received == []
    finally:
        await link.close()


async def test_every_refused_connection_is_logged_with_its_own_reason(key, caplog):
    """After one refused intruder from an address, garbage and a client with another key
    from the same address each leave a warning with what they actually did; repeats of
    one reason are held back for ``refusal_log_interval_s``, then counted."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    link, inbox = make_link("a", key)
    link._refusals.interval_s = 1.0  # the rate limit, shortened for the test
    link.login_timeout_s = 1.0  # for a client that says nothing at all
    intruder, _ = make_link("intruder", asyncssh.generate_private_key("ssh-ed25519"))
    await link.start()
    await intruder.start()
    host, port = link.listen_address

    def warnings(text: str) -> list:
        return records(caplog, text, logging.WARNING)

    async def garbage(data: bytes) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(data)
        await writer.drain()
        await reader.read()  # until the node drops it
        writer.close()

    try:
        intruder.set_peers([link.listen_address])
        await eventually(lambda: warnings("it holds another cluster key"), "the intruder")
        await intruder.close()

        await garbage(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await eventually(lambda: warnings("it does not speak SSH"), "the garbage")
        (warning,) = warnings("it does not speak SSH")
        assert "another cluster key" not in warning.getMessage()
        assert "not a tieline node" in warning.getMessage()

        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect(host, port, username="mallory", known_hosts=None,
                                   config=None, agent_path=None,
                                   client_keys=[asyncssh.generate_private_key("ssh-ed25519")])
        await eventually(lambda: warnings("it offered a key that is not the cluster key"),
                         "the wrong key")

        reader, writer = await asyncio.open_connection(host, port)  # a port scan
        writer.close()
        await eventually(lambda: warnings("it left before authenticating"), "the scan")

        # the same reason again at once: at DEBUG; after the interval: a warning that
        # counts what was held back
        for _ in range(3):
            await garbage(bytes(range(256)))
        await eventually(lambda: len(records(caplog, "it does not speak SSH")) == 4,
                         "three more")
        assert len(warnings("it does not speak SSH")) == 1
        await asyncio.sleep(1.0)
        await garbage(b"\x00" * 100 + b"\r\n")
        await eventually(lambda: len(warnings("it does not speak SSH")) == 2, "logged again")
        assert "(3 more like it in the last" in warnings("it does not speak SSH")[1].getMessage()

        await garbage(b"")  # says nothing at all
        await eventually(lambda: warnings("it did not log in within 1 s"), "the silent one")
        assert inbox.received == []
    finally:
        await link.close()
        await intruder.close()


# -------------------------------------------------------------------------------------------
# Peers that misbehave
# -------------------------------------------------------------------------------------------


async def raw_session(link: PeerLink, key: asyncssh.SSHKey, node: str = "raw"
                      ) -> tuple[Any, Any]:
    """A hand-made peer: an authenticated SSH session to ``link`` that said hello."""
    host, port = link.listen_address
    conn = await asyncssh.connect(host, port, username=node, config=None, agent_path=None,
                                  known_hosts=([key.convert_to_public()], [], []),
                                  client_keys=[key])
    process = await conn.create_process(subsystem=SUBSYSTEM, encoding=None)
    hello = {"type": "peerlink.hello", "node": node, "protocol": 1}
    process.stdin.write(json.dumps(hello).encode() + b"\n")
    line = await process.stdout.readline()
    assert json.loads(line)["node"] == link.node
    return conn, process


async def read_until_dropped(process: Any) -> bytes:
    """What arrives until the other end ends the connection (cleanly or not)."""
    data = b""
    async with asyncio.timeout(10):
        with contextlib.suppress(asyncssh.ConnectionLost, asyncssh.DisconnectError):
            while chunk := await process.stdout.read(65536):
                data += chunk
    return data


@pytest.mark.parametrize("garbage", [
    b"this is not JSON\n",
    b"[1, 2, 3]\n",
    b'{"type": "x"}\n',  # no "node"
    b'{"type": "x", "node": "someone-else"}\n',
    b'{"type": "peerlink.hello", "node": "raw", "protocol": 1}\n',
    b"x" * 5000,  # longer than the limit, no newline
    b"[" * 3000 + b"\n",  # nested deeper than json can read (RecursionError)
    b'{"type": "heartbeat", "node": "raw", "epoch": NaN}\n',  # not JSON, though Python reads it
])
async def test_garbage_drops_the_connection(key, caplog, garbage):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    link, inbox = make_link("a", key, max_message_bytes=4096)
    await link.start()
    try:
        conn, process = await raw_session(link, key)
        process.stdin.write(b'{"type": "fine", "node": "raw"}\n' + garbage)
        assert await read_until_dropped(process) == b""  # the link dropped it
        conn.close()
        await eventually(lambda: records(caplog, "sent something that is not a peer link message",
                                         logging.WARNING), "logged")
        assert [m["type"] for _, m in inbox.received] == ["fine"]
    finally:
        await link.close()


async def test_a_peer_answering_garbage_is_reconnected_not_given_up(key, caplog):
    """The outgoing side: whatever comes back (here JSON nested too deeply for Python) ends
    that connection, logged, and the link connects again."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    sessions = 0

    async def nested(process: Any) -> None:
        nonlocal sessions
        sessions += 1
        hello = {"type": "peerlink.hello", "node": "weird", "protocol": 1}
        process.stdout.write(json.dumps(hello).encode() + b"\n" + b"[" * 3000 + b"\n")
        await process.channel.wait_closed()

    server = await asyncssh.create_server(
        lambda: KeyServer(key), "127.0.0.1", 0, server_host_keys=[key],
        process_factory=nested, encoding=None, config=None)
    link, _ = make_link("a", key)
    try:
        await link.start()
        link.set_peers([("127.0.0.1", server.get_port())])
        await eventually(lambda: sessions >= 3, "three connections: it keeps reconnecting")
        assert records(caplog, "nested too deeply")
        assert not records(caplog, "failed", logging.ERROR)
    finally:
        await link.close()
        server.close()


async def test_a_session_that_is_not_the_peer_link_is_refused(key):
    link, inbox = make_link("a", key)
    await link.start()
    try:
        host, port = link.listen_address
        async with asyncssh.connect(host, port, username="b", config=None, agent_path=None,
                                    known_hosts=([key.convert_to_public()], [], []),
                                    client_keys=[key]) as conn:
            result = await conn.run("ls /", check=False)
            assert result.exit_status == 1 and not result.stdout
    finally:
        await link.close()


async def test_a_peer_that_stops_reading_is_dropped_without_blocking_the_others(key, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def deaf(process: Any) -> None:
        hello = {"type": "peerlink.hello", "node": "deaf", "protocol": 1}
        process.stdout.write(json.dumps(hello).encode() + b"\n")
        await process.channel.wait_closed()  # and never reads a byte

    server = await asyncssh.create_server(
        lambda: KeyServer(key), "127.0.0.1", 0, server_host_keys=[key], process_factory=deaf,
        encoding=None, config=None)
    to_deaf = f"127.0.0.1:{server.get_port()}"
    a, _ = make_link("a", key, max_message_bytes=64 * 1024, max_queue_bytes=256 * 1024)
    b, inbox_b = make_link("b", key)
    try:
        await a.start()
        await b.start()
        a.set_peers([b.listen_address, to_deaf])
        to_b = address(b)
        await eventually(lambda: all(p.connected for p in a.peers.values()), "a connected")
        chunk = {"type": "settings", "data": "x" * 60_000}
        sent = 0
        while a.send(to_deaf, chunk):  # never blocks; fails once too much is unread
            assert a.send(to_b, {"type": "heartbeat", "n": sent})
            sent += 1
            assert sent < 10_000, "the link never noticed that the peer does not read"
            await asyncio.sleep(0)
        await eventually(lambda: records(caplog, f"peer {to_deaf} (node 'deaf'): connection "
                                                 "lost", logging.WARNING), "the loss logged")
        (lost,) = records(caplog, f"peer {to_deaf} (node 'deaf'): connection lost",
                          logging.WARNING)
        assert "it is not reading" in lost.getMessage()
        await eventually(lambda: len(inbox_b.of_type("heartbeat")) == sent, "b got everything")
        assert a.peers[to_b].connected
        assert (await a.request(to_b, {"type": "echo", "value": 1}, timeout=10))["echo"] == 1
    finally:
        await a.close()
        await b.close()
        server.close()
        await server.wait_closed()


async def test_a_slow_handler_holds_up_nobody_else(key):
    async with cluster(key, 3) as [(a, _), (b, inbox_b), (c, _)]:
        to_b = address(b)
        assert a.send(to_b, {"type": "stall"})
        await eventually(lambda: inbox_b.of_type("stall"), "b's handler is stuck")
        peer_a = b.peers[address(a)]
        heard = peer_a.last_heard
        for n in range(5):
            assert a.send(to_b, {"type": "after", "n": n})
            assert c.send(to_b, {"type": "from_c", "n": n})
        # c's messages are handled; a's are read (last_heard moves) and wait their turn
        await eventually(lambda: len(inbox_b.of_type("from_c")) == 5, "c's messages handled")
        await eventually(lambda: peer_a.last_heard > heard, "a's heartbeats still recorded")
        assert not inbox_b.of_type("after")
        # a's requests are not queued behind its stuck message
        assert (await a.request(to_b, {"type": "echo", "value": 2}, timeout=10))["echo"] == 2
        inbox_b.stall.set()
        await eventually(lambda: len(inbox_b.of_type("after")) == 5, "a's messages, in order")
        assert [m["n"] for m in inbox_b.of_type("after")] == list(range(5))


class FreezableProxy:
    """A TCP relay that can stop moving bytes (a cable pull, or a peer under SIGSTOP)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


async def test_a_peer_that_stops_answering_is_dropped(key, caplog):
    """A half-open connection ends by SSH keepalive, within about heartbeat_timeout_s."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    a, _ = make_link("a", key, heartbeat_timeout_s=0.3)
    b, _ = make_link("b", key, heartbeat_timeout_s=0.3)
    proxy = FreezableProxy(("127.0.0.1", 0))
    try:
        await b.start()
        proxy.target = b.listen_address
        port = await proxy.start()
        await a.start()
        a.set_peers([("127.0.0.1", port)])
        peer = a.peers[f"127.0.0.1:{port}"]
        await eventually(lambda: peer.connected, "connected through the relay")
        proxy.flowing.clear()  # nothing moves, nothing closes
        await eventually(lambda: not peer.connected, "the silent connection was dropped")
        assert records(caplog, "connection lost (Server not responding to keepalive)",
                       logging.WARNING)
        proxy.flowing.set()
        await eventually(lambda: peer.connected, "reconnected once bytes flow again")
    finally:
        await a.close()
        await b.close()
        await proxy.close()


async def test_a_node_listing_itself_is_told_so(key, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    link, inbox = make_link("a", key)
    await link.start()
    try:
        link.set_peers([link.listen_address])
        await eventually(lambda: len(records(caplog, "it is this node itself")) >= 3,
                         "a few attempts")
        assert len(records(caplog, "it is this node itself", logging.WARNING)) == 1
        assert not link.peers[address(link)].connected and inbox.received == []
    finally:
        await link.close()


async def test_messages_map_to_the_peer_before_the_connection_to_it_is_up(key):
    """One-way reachability: b reaches a, a cannot reach b; b's messages still map to the
    peer a lists, because b's hello says which address a knows it by."""
    a, inbox_a = make_link("a", key)
    b, _ = make_link("b", key, advertise="127.0.0.1:1")  # where a (wrongly) looks for b
    try:
        await a.start()
        await b.start()
        a.set_peers(["127.0.0.1:1"])
        b.set_peers([a.listen_address])
        await eventually(lambda: b.peers[address(a)].connected, "b connected to a")
        assert b.send(address(a), {"type": "heartbeat"})
        await eventually(lambda: inbox_a.received, "a got b's heartbeat")
        (peer, _), = inbox_a.received
        assert peer is a.peers["127.0.0.1:1"] and peer.name == "b" and not peer.connected
        assert peer.heard_within(60)
    finally:
        await a.close()
        await b.close()
