"""The etcd client's HTTP/1.1 (h11, through ``tieline.plugins.etcd.http``) over real sockets.

A tiny asyncio server on 127.0.0.1 plays etcd: it answers with the bytes etcd 3.4.23 sent
(tests/fixtures/etcd/), cut at every byte boundary, or misbehaves (garbage, an oversized
body, a close in the middle of a response, a stall). The normal paths also run against a
real etcd (the ``etcd`` fixture): large values and a long watch stream, many reads each.
Errors must be :class:`EtcdUnavailable` naming the endpoint and what was wrong; the
client must go on working on a new connection afterwards.

No test asserts a tight timing: bounds are generous so that a bug fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tieline.plugins.etcd.client import EtcdClient, EtcdError, EtcdUnavailable, WatchEvent
from tieline.plugins.etcd.http import MAX_BODY

TRACES = Path(__file__).parents[1] / "fixtures" / "etcd"
GRANT = (TRACES / "grant.http").read_bytes()
REVOKE_404 = (TRACES / "revoke-404.http").read_bytes()
WATCH_OPEN = (TRACES / "watch-open.http").read_bytes()
T = 5.0  #: timeout of calls that are expected to answer
PAUSE_S = 0.002  #: between two writes, so that the client reads them apart

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, bytes] | None:
    """The next request's (request line, body); None when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines
                  if line.lower().startswith("content-length:"))
    return lines[0], await reader.readexactly(length)


async def write_apart(writer: asyncio.StreamWriter, *pieces: bytes) -> None:
    """Each piece in its own write, with a pause between them."""
    for i, piece in enumerate(pieces):
        if i:
            await asyncio.sleep(PAUSE_S)
        writer.write(piece)
        await writer.drain()


class FakeEtcd:
    """A server on 127.0.0.1 that runs ``serve`` for each connection."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.connections = 0
        self.requests: list[str] = []  #: request lines, as read by ``serve`` (see :meth:`read`)
        self.url = ""  #: set once it listens
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, reader: asyncio.StreamReader) -> tuple[str, bytes] | None:
        request = await read_request(reader)
        if request is not None:
            self.requests.append(request[0])
        return request

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: what a misbehaving server may cause
        finally:
            writer.close()
            self._tasks.discard(task)

    async def __aenter__(self) -> FakeEtcd:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def client_of(fake: FakeEtcd) -> AsyncIterator[EtcdClient]:
    client = EtcdClient([fake.url])
    try:
        yield client
    finally:
        await client.close()


def answering(*answers: bytes | list[bytes]) -> Serve:
    """Each request gets the next answer (a list: its pieces written apart), on whichever
    connection it came; when none is left, the connection stays open until the client
    closes it."""
    left = iter(answers)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            answer = next(left, None)
            if answer is None:
                await reader.read()
                return
            await write_apart(writer, *(answer if isinstance(answer, list) else [answer]))
    return serve


async def watch_events(client: EtcdClient, count: int) -> list[WatchEvent]:
    watch = client.watch("/k", 1)
    try:
        async with asyncio.timeout(T):
            return [await anext(watch) for _ in range(count)]
    finally:
        await watch.aclose()


# -- the gateway's bytes, cut anywhere --------------------------------------------------------
async def test_a_watch_stream_split_at_every_byte_boundary_gives_the_same_events():
    cut = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is not None:
            await write_apart(writer, WATCH_OPEN[:cut], WATCH_OPEN[cut:])
            await reader.read()  # the stream stays open until the client leaves

    async with FakeEtcd(serve) as fake, client_of(fake) as client:
        expected = await watch_events(client, 2)
        assert [(e.kind, e.kv.key, e.kv.value, e.revision) for e in expected] == [
            ("PUT", "/k", b"v", 2), ("DELETE", "/k", b"", 3)]
        for cut in range(1, len(WATCH_OPEN)):
            assert await watch_events(client, 2) == expected, f"cut at byte {cut}"
        assert fake.connections == len(WATCH_OPEN)  # a connection of its own for each watch


async def test_a_watch_stream_one_byte_per_write_gives_the_same_events():
    pieces = [WATCH_OPEN[i:i + 1] for i in range(len(WATCH_OPEN))]
    async with FakeEtcd(answering(WATCH_OPEN)) as whole, client_of(whole) as client:
        expected = await watch_events(client, 2)
    async with FakeEtcd(answering(pieces)) as fake, client_of(fake) as client:
        assert await watch_events(client, 2) == expected


async def test_a_unary_answer_split_at_every_byte_boundary_on_one_kept_alive_connection():
    answers = [[GRANT[:cut], GRANT[cut:]] for cut in range(1, len(GRANT))]
    async with FakeEtcd(answering(*answers)) as fake, client_of(fake) as client:
        for _ in answers:
            assert await client.grant(1, timeout=T) == (1463285089503204103, 1)
    assert fake.connections == 1
    # an error answer (chunked, with a trailer) cut anywhere is etcd's error
    answers = [[REVOKE_404[:cut], REVOKE_404[cut:]] for cut in range(1, len(REVOKE_404))]
    async with FakeEtcd(answering(*answers)) as fake, client_of(fake) as client:
        for _ in answers:
            with pytest.raises(EtcdError, match="requested lease not found") as caught:
                await client.call("/v3/lease/revoke", {"ID": "1"}, timeout=T)
            assert (caught.value.code, caught.value.status) == (5, 404)
    assert fake.connections == len(answers)  # an error ends the exchange early: not reused


# -- a misbehaving etcd -----------------------------------------------------------------------
@pytest.mark.parametrize(("answer", "reason"), [
    (b"HTTP/2 200\r\n\r\n", "not HTTP/1.1: illegal status line: b'HTTP/2 200'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
     "not HTTP/1.1: conflicting Content-Length headers"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     "not HTTP/1.1: illegal chunk header: b'zz\\r\\n'"),
    (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
     b"Content-Length: 19\r\n\r\n404 page not found\n",
     "a body that is not JSON: b'404 page not found'"),
])
async def test_a_malformed_answer_is_etcd_unavailable_naming_the_endpoint(answer, reason):
    async with FakeEtcd(answering(answer, GRANT)) as fake, client_of(fake) as client:
        with pytest.raises(EtcdUnavailable) as caught:
            await client.grant(1, timeout=T)
        assert str(caught.value) == f"{fake.url}: {reason}"
        # the spoilt connection is dropped; the next call works on a new one
        assert await client.grant(1, timeout=T) == (1463285089503204103, 1)
        assert fake.connections == 2


async def test_a_malformed_watch_stream_is_etcd_unavailable_naming_the_endpoint():
    garbage = WATCH_OPEN + b"zz\r\n"
    async with FakeEtcd(answering(garbage)) as fake, client_of(fake) as client:
        watch = client.watch("/k", 1)
        async with asyncio.timeout(T):
            assert [(await anext(watch)).kind for _ in range(2)] == ["PUT", "DELETE"]
            with pytest.raises(EtcdUnavailable) as caught:
                await anext(watch)
        assert str(caught.value) == (f"watch on {fake.url}: not HTTP/1.1: "
                                     "illegal chunk header: b'zz\\r\\n'")


async def test_an_oversized_body_is_refused_from_its_head():
    """Content-Length above the bound: refused at once, not read."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode()
    async with FakeEtcd(answering(head)) as fake, client_of(fake) as client:
        with pytest.raises(EtcdUnavailable) as caught:
            await client.grant(1, timeout=T)
    assert str(caught.value) == (f"{fake.url}: a body of {MAX_BODY + 1} bytes "
                                 f"(at most {MAX_BODY})")


async def test_an_oversized_streamed_document_is_refused_as_it_comes():
    """A chunked body whose document never ends: refused once past the bound."""
    sent = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b'["' + b"x" * (256 * 1024)
        while sent < 4 * MAX_BODY:  # until the client hangs up (ConnectionError)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            sent += len(piece)

    async with FakeEtcd(serve) as fake, client_of(fake) as client:
        watch = client.watch("/k", 1)
        with pytest.raises(EtcdUnavailable) as caught:
            async with asyncio.timeout(30):
                await anext(watch)
        await watch.aclose()
    assert str(caught.value) == (f"watch on {fake.url}: a document larger than "
                                 f"{MAX_BODY} bytes")
    assert sent < 3 * MAX_BODY  # it stopped reading there (give or take socket buffers)


@pytest.mark.parametrize("cut", [10, GRANT.index(b"\r\n\r\n") + 4, len(GRANT) - 1])
async def test_a_close_in_the_middle_of_an_answer_is_etcd_unavailable(cut):
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(GRANT[:cut])
        await writer.drain()

    async with FakeEtcd(serve) as fake, client_of(fake) as client:
        with pytest.raises(EtcdUnavailable) as caught:
            await client.grant(1, timeout=T)
    assert str(caught.value) == f"{fake.url}: the connection closed in the middle of a response"


async def test_a_server_that_is_not_etcd_is_etcd_unavailable():
    """An SSH server: its banner, then it closes on the HTTP request."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        await reader.readline()

    async with FakeEtcd(serve) as fake, client_of(fake) as client:
        with pytest.raises(EtcdUnavailable) as caught:
            await client.grant(1, timeout=T)
    assert str(caught.value) == f"{fake.url}: the connection closed in the middle of a response"


async def test_a_close_before_answering_is_etcd_unavailable():
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with FakeEtcd(serve) as fake, client_of(fake) as client:
        with pytest.raises(EtcdUnavailable, match="closed the connection") as caught:
            await client.grant(1, timeout=T)
    assert str(caught.value).startswith(f"{fake.url}: ")


async def test_a_kept_alive_connection_closed_meanwhile_is_replaced_and_the_call_sent_again():
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if fake.connections == 1:  # one answer, then a close (as an idle timeout would)
            await fake.read(reader)
            writer.write(GRANT)
            await writer.drain()
            await fake.read(reader)  # the second request arrives as the close goes
            return
        while await fake.read(reader) is not None:
            writer.write(GRANT)

    async with FakeEtcd(serve) as fake, client_of(fake) as client:
        assert (await client.grant(1, timeout=T))[1] == 1
        assert (await client.grant(1, timeout=T))[1] == 1
    assert fake.connections == 2
    assert len(fake.requests) == 3  # the second call sent once on each connection


async def test_a_stalled_answer_times_out_within_the_call_s_timeout():
    head = GRANT[:GRANT.index(b"\r\n\r\n") + 4]
    async with FakeEtcd(answering(head + GRANT[len(head):][:10])) as fake, \
            client_of(fake) as client:
        with pytest.raises(TimeoutError):
            await client.grant(1, timeout=0.3)
        assert client._conn is None  # dropped: its answer may still come


# -- a real etcd: bodies and streams over many reads ------------------------------------------
async def test_a_large_value_goes_and_comes_back_whole(etcd):
    client = EtcdClient([etcd.url])
    try:
        value = bytes(range(256)) * 4096  # 1 MiB, 1.4 MB as base64 in JSON: many reads
        revision = await client.put("/big", value, timeout=T)
        kv, _ = await client.get("/big", timeout=T)
        assert kv is not None and kv.value == value and kv.mod_revision == revision
        kvs, _ = await client.get_prefix("/b", timeout=T)
        assert [kv.value for kv in kvs] == [value]
    finally:
        await client.close()


async def test_a_long_watch_stream_from_a_real_etcd(etcd):
    client = EtcdClient([etcd.url])
    try:
        _, start = await client.get("/w", timeout=T)
        for n in range(200):
            await client.put("/w", b"%d" % n + b"." * (n * 50), timeout=T)
        watch = client.watch("/w", start + 1)
        try:
            async with asyncio.timeout(10):
                events = [await anext(watch) for _ in range(200)]
        finally:
            await watch.aclose()
        assert [e.kv.value.split(b".")[0] for e in events] == [b"%d" % n for n in range(200)]
        assert [e.kv.mod_revision for e in events] == list(range(start + 1, start + 201))
    finally:
        await client.close()
