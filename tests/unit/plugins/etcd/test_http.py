"""The sans-I/O HTTP/1.1 layer of the etcd plugin (``tieline.plugins.etcd.http``), on h11.

Bytes in, events out, no sockets: requests as bytes; responses framed by Content-Length,
chunked (unary and streamed, lines split anywhere), or by the connection's close; several
exchanges on one connection; what the layer refuses (and that it refuses with
:class:`HttpError` and a clear message, never anything else: h11's errors are translated);
the bounds on sizes; and fuzzing: valid exchanges fed in random pieces give the same
events, garbage raises only ``HttpError``. The same over real sockets, through the client:
tests/integration/test_etcd_wire.py.

The traces in tests/fixtures/etcd/ are bytes etcd 3.4.23's gateway sent (see its README).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import h11
import pytest

from tieline.plugins.etcd.http import (
    MAX_BODY,
    MAX_HEAD,
    End,
    GatewayConnection,
    Head,
    HttpError,
    Line,
)

TRACES = Path(__file__).parents[3] / "fixtures" / "etcd"
REAL_GRANT = (TRACES / "grant.http").read_bytes()
REAL_REVOKE_404 = (TRACES / "revoke-404.http").read_bytes()
REAL_KEEPALIVE = (TRACES / "keepalive.http").read_bytes()
REAL_WATCH_OPEN = (TRACES / "watch-open.http").read_bytes()


def response(status: int, body: bytes, *headers: str, reason: str = "X",
             version: str = "HTTP/1.1") -> bytes:
    """A response with ``headers``; a Content-Length is added unless one says chunked."""
    lines = [f"{version} {status} {reason}", *headers]
    if not any(h.lower().startswith(("transfer-encoding", "content-length")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes, status: int = 200, trailer: bytes = b"") -> bytes:
    """A chunked response made of exactly these chunks (sizes in hex), then the last chunk."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return response(status, body + b"0\r\n" + trailer + b"\r\n",
                    "Transfer-Encoding: chunked")


def connection() -> GatewayConnection:
    """A connection whose request is sent: it expects a response."""
    conn = GatewayConnection("127.0.0.1:2379")
    conn.request("/v3/kv/range", {"key": "a2V5"})
    return conn


def feed(conn: GatewayConnection, data: bytes) -> list:
    """The events once ``data`` arrived (``b""``: the close)."""
    conn.receive_data(data)
    return list(conn.events())


def feed_all(data: bytes, *, eof: bool = False) -> list:
    conn = connection()
    events = feed(conn, data)
    if eof:
        events += feed(conn, b"")
    return events


def feed_pieces(pieces: list[bytes], *, eof: bool = False,
                conn: GatewayConnection | None = None) -> list:
    """Feed ``pieces`` one call each (empty ones skipped: ``b""`` is the close)."""
    conn = conn or connection()
    events = []
    for piece in pieces:
        if piece:
            events += feed(conn, piece)
    if eof:
        events += feed(conn, b"")
    return events


def split_randomly(data: bytes, rng: random.Random) -> list[bytes]:
    """``data`` in pieces of random sizes (often 1 byte, sometimes empty, sometimes long)."""
    pieces, i = [], 0
    while i < len(data):
        size = rng.choice([0, 1, 1, 2, 3, rng.randint(1, 16), rng.randint(1, 400)])
        pieces.append(data[i:i + size])
        i += size
    return pieces


def lines_of(events: list) -> list:
    return [e.value for e in events if isinstance(e, Line)]


# -- requests ---------------------------------------------------------------------------------
def test_request_is_a_keep_alive_post_with_compact_json():
    data = GatewayConnection("127.0.0.1:2379").request("/v3/lease/grant", {"TTL": 1, "ID": "7"})
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v3/lease/grant HTTP/1.1"
    assert "Host: 127.0.0.1:2379" in lines
    assert "Content-Type: application/json" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert not any(line.lower().startswith(("connection:", "transfer-encoding:"))
                   for line in lines)
    assert body == b'{"TTL":1,"ID":"7"}'
    assert json.loads(body) == {"TTL": 1, "ID": "7"}


def test_request_counts_bytes_not_characters():
    data = GatewayConnection("h").request("/v3/kv/put", {"value": "é" * 3})
    head, _, body = data.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(body)}".encode() in head


def test_a_request_before_the_response_is_complete_is_a_bug_of_the_caller():
    conn = connection()
    feed(conn, REAL_GRANT[:-1])
    with pytest.raises(h11.LocalProtocolError):
        conn.request("/v3/kv/range", {})


# -- framing ----------------------------------------------------------------------------------
def test_content_length_body_from_etcd():
    events = feed_all(REAL_GRANT)
    assert len(events) == 3
    head, line, end = events
    assert isinstance(head, Head) and head.status == 200
    assert head.headers["content-type"] == "application/json"  # names lower-cased
    assert head.headers["content-length"] == "149"
    assert line == Line({"header": {"cluster_id": "8030582347798903623",
                                    "member_id": "9874900395291874382", "revision": "1",
                                    "raft_term": "2"},
                         "ID": "1463285089503204103", "TTL": "1"})
    assert end == End(keep_alive=True)


@pytest.mark.parametrize("trace", [REAL_GRANT, REAL_REVOKE_404, REAL_KEEPALIVE,
                                   REAL_WATCH_OPEN], ids=["grant", "revoke-404",
                                                          "keepalive", "watch-open"])
def test_every_trace_fed_byte_by_byte_gives_the_same_events(trace):
    pieces = [trace[i:i + 1] for i in range(len(trace))]
    assert feed_pieces(pieces) == feed_all(trace)


@pytest.mark.parametrize("trace", [REAL_GRANT, REAL_REVOKE_404, REAL_KEEPALIVE,
                                   REAL_WATCH_OPEN], ids=["grant", "revoke-404",
                                                          "keepalive", "watch-open"])
def test_every_trace_cut_at_every_byte_gives_the_same_events(trace):
    whole = feed_all(trace)
    for cut in range(1, len(trace)):
        assert feed_pieces([trace[:cut], trace[cut:]]) == whole, cut


def test_no_event_before_the_head_is_complete():
    conn = connection()
    assert feed(conn, REAL_GRANT[:40]) == []
    head_end = REAL_GRANT.index(b"\r\n\r\n") + 4
    events = feed(conn, REAL_GRANT[40:head_end])
    assert [type(e) for e in events] == [Head]
    assert feed(conn, REAL_GRANT[head_end:-1]) == []  # the body is not whole yet
    assert [type(e) for e in feed(conn, REAL_GRANT[-1:])] == [Line, End]


def test_chunked_unary_error_body_with_trailer():
    events = feed_all(REAL_REVOKE_404)
    assert [type(e) for e in events] == [Head, Line, End]
    assert events[0].status == 404
    assert events[0].headers["transfer-encoding"] == "chunked"
    assert events[1].value == {"error": "etcdserver: requested lease not found",
                               "message": "etcdserver: requested lease not found", "code": 5}
    assert events[2] == End(keep_alive=True)


def test_chunked_unary_body_split_over_chunks_without_newline():
    body = json.dumps({"kvs": [{"key": "a2V5", "value": "x" * 50}], "count": "1"}).encode()
    data = chunked(body[:7], body[7:8], body[8:])
    assert lines_of(feed_all(data)) == [json.loads(body)]


def test_keepalive_stream_from_etcd():
    events = feed_all(REAL_KEEPALIVE)
    assert [type(e) for e in events] == [Head, Line, End]
    assert events[1].value["result"]["ID"] == "123"
    assert "TTL" not in events[1].value["result"]  # a lost lease: zero fields are left out


def test_stream_with_several_lines_in_one_chunk():
    data = chunked(b'{"result":{"n":1}}\n{"result":{"n":2}}\n{"result":{"n":3}}\n')
    assert lines_of(feed_all(data)) == [{"result": {"n": n}} for n in (1, 2, 3)]


def test_stream_with_a_line_split_across_chunks():
    one, two = b'{"result":{"n":1,"pad":"' + b"p" * 100 + b'"}}\n', b'{"result":{"n":2}}\n'
    data = chunked(one[:10], one[10:11], one[11:] + two[:5], two[5:])
    values = lines_of(feed_all(data))
    assert [v["result"]["n"] for v in values] == [1, 2]


def test_stream_lines_come_out_as_soon_as_they_are_whole():
    """A watch never ends: each line must be an event when its last byte arrives."""
    conn = connection()
    events = feed(conn, REAL_WATCH_OPEN[:200])
    assert [type(e) for e in events] == [Head]
    events = feed(conn, REAL_WATCH_OPEN[200:])
    assert [type(e) for e in events] == [Line, Line, Line]
    created, put, delete = (e.value["result"] for e in events)
    assert created["created"] is True
    assert put["events"][0]["kv"]["key"] == "L2s=" and "type" not in put["events"][0]
    assert delete["events"][0]["type"] == "DELETE"
    # a line split across receive_data() calls and across chunks
    line = b'{"result":{"events":[{"type":"DELETE","kv":{"key":"L2s="}}]}}\n'
    wire = b"%x\r\n%s\r\n%x\r\n%s\r\n" % (20, line[:20], len(line) - 20, line[20:])
    assert feed(conn, wire[:3]) == []
    assert feed(conn, wire[3:30]) == []
    assert lines_of(feed(conn, wire[30:])) == [json.loads(line)]
    assert feed(conn, b"0\r\n\r\n") == [End(keep_alive=True)]


def test_blank_lines_in_a_stream_are_skipped():
    data = chunked(b'\n{"a":1}\n\r\n\n{"b":2}\n')
    assert lines_of(feed_all(data)) == [{"a": 1}, {"b": 2}]


def test_chunk_extensions_are_ignored():
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'7;name=value\r\n{"a":1}\r\n0\r\n\r\n')
    assert lines_of(feed_all(data)) == [{"a": 1}]


def test_empty_body_gives_head_then_end():
    events = feed_all(response(200, b""))
    assert [type(e) for e in events] == [Head, End]
    assert events[1] == End(keep_alive=True)
    events = feed_all(chunked())
    assert [type(e) for e in events] == [Head, End]


def test_an_informational_response_before_the_response_is_skipped():
    events = feed_all(b"HTTP/1.1 100 Continue\r\n\r\n" + REAL_GRANT)
    assert [type(e) for e in events] == [Head, Line, End] and events[0].status == 200


def test_exchanges_one_after_another_on_one_connection():
    conn = GatewayConnection("127.0.0.1:2379")
    statuses = []
    for answer in (REAL_GRANT, REAL_REVOKE_404, REAL_KEEPALIVE, response(200, b""), REAL_GRANT):
        conn.request("/v3/lease/grant", {"TTL": 1})
        events = feed(conn, answer)
        assert isinstance(events[0], Head) and events[-1] == End(keep_alive=True)
        statuses.append(events[0].status)
    assert statuses == [200, 404, 200, 200, 200]
    assert feed(conn, b"") == []  # a close between exchanges is clean


def test_bytes_after_a_response_spoil_the_connection():
    """Nobody asked for them: were the connection reused, they would answer the next
    request."""
    events = feed_all(REAL_GRANT + REAL_GRANT)
    assert [type(e) for e in events] == [Head, Line, End]
    assert events[-1] == End(keep_alive=False)


def test_connection_close_ends_keep_alive():
    events = feed_all(response(200, b'{"a":1}', "Connection: close"))
    assert events[-1] == End(keep_alive=False)
    events = feed_all(response(200, b'{"a":1}', "connection: Close"))
    assert events[-1] == End(keep_alive=False)
    events = feed_all(response(200, b'{"a":1}', "Connection: keep-alive"))
    assert events[-1] == End(keep_alive=True)


def test_http_1_0_is_not_kept_alive():
    events = feed_all(response(200, b'{"a":1}', version="HTTP/1.0"))
    assert [type(e) for e in events] == [Head, Line, End]
    assert events[-1] == End(keep_alive=False)


def test_body_delimited_by_close_ends_at_eof():
    conn = connection()
    events = feed(conn, 
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"a":1}\n{"b"')
    assert [type(e) for e in events] == [Head, Line]  # whole lines come out at once
    assert events[1].value == {"a": 1}
    assert feed(conn, b":2}") == []  # the last line may not be whole: wait for the close
    assert feed(conn, b"") == [Line({"b": 2}), End(keep_alive=False)]


def test_body_delimited_by_close_may_be_empty():
    conn = connection()
    assert [type(e) for e in feed(conn, b"HTTP/1.1 200 OK\r\n\r\n")] == [Head]
    assert feed(conn, b"") == [End(keep_alive=False)]


def test_a_close_before_any_byte_of_the_response_is_no_event():
    """The caller says so (the client: "closed the connection"), and knows that nothing
    of an answer came."""
    assert feed(connection(), b"") == []


def test_error_status_bodies_are_lines_like_any_other():
    body = (b'{"error":"invalid character \'x\' looking for beginning of value",'
            b'"message":"invalid character \'x\' looking for beginning of value","code":3}')
    events = feed_all(response(400, body, reason="Bad Request"))
    assert events[0].status == 400
    assert events[1].value["code"] == 3
    assert events[2] == End(keep_alive=True)
    streamed = chunked(b'{"error":{"grpc_code":14,"http_code":503,"message":"no leader"}}\n')
    assert lines_of(feed_all(streamed))[0]["error"]["grpc_code"] == 14


def test_status_line_without_reason():
    events = feed_all(b"HTTP/1.1 204\r\nContent-Length: 0\r\n\r\n")
    assert [type(e) for e in events] == [Head, End] and events[0].status == 204


# -- refused ----------------------------------------------------------------------------------
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(("data", "message"), [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not HTTP/1.1: illegal status line: b'SSH-2.0-OpenSSH_9.2'"),
    (b"\r\n\r\n", "not HTTP/1.1: no response line received"),
    (b"HTTP/2 200\r\n\r\n", "not HTTP/1.1: illegal status line: b'HTTP/2 200'"),
    (b"HTTP/1.1 OK 200\r\n\r\n", "illegal status line"),
    (b"HTTP/1.1\r\n\r\n", "illegal status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "illegal status line"),
    (b"HTTP/1.1 \xb200 OK\r\nContent-Length: 0\r\n\r\n", "illegal status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "illegal header line: b'no colon here'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "not HTTP/1.1: bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
     "conflicting Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding: chunked"),
    (f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode(),
     f"a body of {MAX_BODY + 1} bytes (at most {MAX_BODY})"),
    (CHUNKED_HEAD + b"zz\r\n", "not HTTP/1.1: illegal chunk header: b'zz\\r\\n'"),
    (CHUNKED_HEAD + b"\r\n", "illegal chunk header"),
    (CHUNKED_HEAD + b"-5\r\n", "illegal chunk header"),
    (CHUNKED_HEAD + b"2\r\n{}XX", "not HTTP/1.1: malformed chunk footer: b'XX'"),
    (CHUNKED_HEAD + b"2\r\n{}\r\n0\r\nno colon\r\n\r\n", "illegal header line"),  # trailer
    (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
     b"Content-Length: 19\r\n\r\n404 page not found\n",  # what etcd says for a wrong path
     "a body that is not JSON: b'404 page not found'"),
    (CHUNKED_HEAD + b"8\r\n{\"a\":1}\n\r\n6\r\nnope!\n\r\n", "a body that is not JSON: b'nope!'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n\xff\xfe\x00", "a body that is not JSON"),
])
def test_garbage_raises_http_error_saying_what_is_wrong(data, message):
    with pytest.raises(HttpError) as caught:
        feed_all(data)
    assert message in str(caught.value)
    assert "bytearray" not in str(caught.value)


def test_the_events_before_garbage_come_out_before_the_error():
    conn = connection()
    conn.receive_data(REAL_WATCH_OPEN + b"zz\r\n")
    events = conn.events()
    assert [type(next(events)) for _ in range(4)] == [Head, Line, Line, Line]
    with pytest.raises(HttpError, match="illegal chunk header"):
        next(events)


def test_an_error_is_kept_short():
    with pytest.raises(HttpError) as caught:
        feed_all(b"X" * 20_000 + b"\r\n\r\n")
    assert len(str(caught.value)) < 200


def test_oversize_head_is_refused_before_it_ends():
    conn = connection()
    feed(conn, b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(HttpError, match=f"a response head or chunk line longer than {MAX_HEAD}"):
        for _ in range(MAX_HEAD // 1000 + 2):
            feed(conn, b"X-Pad: " + b"p" * 991 + b"\r\n")


def test_oversize_chunk_size_line_is_refused():
    conn = connection()
    feed(conn, CHUNKED_HEAD)
    with pytest.raises(HttpError, match=f"a response head or chunk line longer than {MAX_HEAD}"):
        feed(conn, b"1" * (MAX_HEAD + 1))


def test_oversize_streamed_document_is_refused():
    """Streamed lines may add up to any size, but one document may not exceed MAX_BODY."""
    conn = connection()
    feed(conn, CHUNKED_HEAD)
    piece = b'{"a":"' + b"x" * (1024 * 1024) + b'"}\n'
    for _ in range(20):  # 20 MiB of lines, none too long
        assert len(lines_of(feed(conn, b"%x\r\n%s\r\n" % (len(piece), piece)))) == 1
    line = b"[" + b"1," * (1024 * 1024)
    with pytest.raises(HttpError, match=f"a document larger than {MAX_BODY} bytes"):
        for _ in range(MAX_BODY // len(line) + 2):  # one line that never ends
            feed(conn, b"%x\r\n%s\r\n" % (len(line), line))


def test_a_chunk_larger_than_max_body_is_refused_as_it_comes():
    """h11 streams a chunk's bytes as they arrive (a declared size reserves nothing); the
    document they make is refused past MAX_BODY."""
    conn = connection()
    feed(conn, CHUNKED_HEAD + b"%x\r\n" % (4 * MAX_BODY))
    with pytest.raises(HttpError, match=f"a document larger than {MAX_BODY} bytes"):
        for _ in range(MAX_BODY // (1024 * 1024) + 1):
            feed(conn, b"x" * (1024 * 1024))


def test_oversize_close_delimited_body_is_refused():
    conn = connection()
    feed(conn, b"HTTP/1.1 200 OK\r\n\r\n")
    with pytest.raises(HttpError, match="a document larger than"):
        feed(conn, b"x" * (MAX_BODY + 1))


@pytest.mark.parametrize("cut", [
    10,                                     # in the status line
    REAL_GRANT.index(b"\r\n\r\n") + 2,      # in the head's final CRLF
    REAL_GRANT.index(b"\r\n\r\n") + 4,      # the head is complete, no body yet
    len(REAL_GRANT) - 1,                    # one byte short of the body
])
def test_eof_in_the_middle_of_a_content_length_response_raises(cut):
    conn = connection()
    feed(conn, REAL_GRANT[:cut])
    with pytest.raises(HttpError, match="closed in the middle of a response"):
        feed(conn, b"")


@pytest.mark.parametrize("cut", [
    REAL_REVOKE_404.index(b"6c\r\n") + 1,    # in a chunk size
    REAL_REVOKE_404.index(b"6c\r\n") + 10,   # in a chunk
    REAL_REVOKE_404.index(b"\r\n0\r\n"),     # before a chunk's CRLF
    REAL_REVOKE_404.index(b"\r\n0\r\n") + 2,  # before the last chunk
    len(REAL_REVOKE_404) - 2,                # in the trailer
])
def test_eof_in_the_middle_of_a_chunked_response_raises(cut):
    conn = connection()
    feed(conn, REAL_REVOKE_404[:cut])
    with pytest.raises(HttpError, match="closed in the middle of a response"):
        feed(conn, b"")


def test_eof_in_an_open_watch_raises():
    conn = connection()
    assert len(lines_of(feed(conn, REAL_WATCH_OPEN))) == 3
    with pytest.raises(HttpError, match="closed in the middle of a response"):
        feed(conn, b"")


def test_deeply_nested_json_raises_http_error():
    """json.loads raises RecursionError (not ValueError) for absurdly deep nesting."""
    with pytest.raises(HttpError, match="not JSON"):
        feed_all(response(200, b"[" * 100_000))


# -- fuzzing ----------------------------------------------------------------------------------
def valid_exchanges(rng: random.Random) -> list[bytes]:
    """Responses to one request each, the last one delimited by the close."""
    parts = [REAL_GRANT, REAL_REVOKE_404, REAL_KEEPALIVE, response(200, b""), chunked()]
    for _ in range(rng.randint(1, 4)):
        lines = b"".join(json.dumps({"result": {"n": rng.randint(0, 10**18),
                                                "pad": "é" * rng.randint(0, 50)}}).encode()
                         + b"\n" for _ in range(rng.randint(1, 5)))
        cuts = sorted(rng.sample(range(1, len(lines)), min(3, len(lines) - 1)))
        pieces = [lines[a:b] for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
        parts.append(chunked(*pieces, trailer=rng.choice([b"", b"X-T: 1\r\n"])))
    rng.shuffle(parts)
    parts.append(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                 b'{"result":{"last":true}}\n{"result":{"tail":1}}')
    return parts


def run_exchanges(parts: list[list[bytes]]) -> list:
    """On one connection: a request, then the pieces of its response, for each response;
    then the close. A response that did not end takes the next one's bytes as its own, as
    a connection would; a connection that may not be reused takes no more."""
    conn = GatewayConnection("127.0.0.1:2379")
    events: list = []
    ended, reusable = True, True
    for pieces in parts:
        if ended:
            if not reusable:
                return events
            conn.request("/v3/watch", {"create_request": {"key": "a2V5"}})
            ended = False
        for piece in pieces:
            if not piece:
                continue
            for event in feed(conn, piece):
                events.append(event)
                if isinstance(event, End):
                    ended, reusable = True, event.keep_alive
    return events + feed(conn, b"")


@pytest.mark.parametrize("seed", range(8))
def test_fuzz_random_splits_give_the_same_events(seed):
    rng = random.Random(seed)
    parts = valid_exchanges(rng)
    expected = run_exchanges([[part] for part in parts])
    assert len([e for e in expected if isinstance(e, Head)]) == len(parts) >= 7
    assert [e for e in expected if isinstance(e, End)][:-1] == [End(True)] * (len(parts) - 1)
    assert expected[-1] == End(keep_alive=False)
    assert lines_of(expected)[-1] == {"result": {"tail": 1}}
    for _ in range(25):
        assert run_exchanges([split_randomly(part, rng) for part in parts]) == expected
    assert run_exchanges([[p[i:i + 1] for i in range(len(p))] for p in parts]) == expected


def mutate(data: bytes, rng: random.Random) -> bytes:
    """``data`` with a few random bytes changed, inserted, deleted or cut off."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(data) + 1)
        what = rng.choice(["flip", "insert", "delete", "cut", "crlf"])
        if what == "flip" and where < len(data):
            data[where] = rng.choice([rng.randrange(48, 58), rng.randrange(256)])
        elif what == "insert":
            data[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 5)))
        elif what == "delete":
            del data[where:where + rng.randint(1, 5)]
        elif what == "cut":
            del data[where:]
        else:
            data[where:where] = b"\r\n"
    return bytes(data)


@pytest.mark.parametrize("seed", range(8))
def test_fuzz_garbage_only_ever_raises_http_error(seed):
    rng = random.Random(seed)
    samples = [[bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))]
               for _ in range(100)]
    samples += [[b"HTTP/1.1 " + bytes(rng.randrange(256) for _ in range(200))]
                for _ in range(50)]
    for _ in range(300):
        parts = valid_exchanges(rng)
        for i in rng.sample(range(len(parts)), rng.randint(1, 3)):
            parts[i] = mutate(parts[i], rng)
        samples.append(parts)
    for parts in samples:
        try:
            run_exchanges([split_randomly(part, rng) for part in parts])
        except HttpError:
            pass
        # anything else fails the test, naming the sample
