"""HTTP/1.1 for etcd's JSON gateway, sans-I/O: JSON requests to bytes, bytes to JSON documents.

etcd (3.4 and later) serves its v3 API as JSON over HTTP (the grpc-gateway): every call is a
``POST /v3/...`` with a JSON body. Unary calls answer with one JSON document
(``Content-Length`` or chunked); streaming calls (``/v3/watch``, ``/v3/lease/keepalive``)
answer chunked, one JSON document per line, each wrapped in ``{"result": …}``.

HTTP/1.1 itself is h11's (:class:`h11.Connection`, a sans-I/O HTTP/1.1 state machine): the
request's bytes, the status line and headers, ``Content-Length``, chunked bodies and their
trailers, bodies delimited by the close, keep-alive. This module adds what is etcd's: JSON
bodies, streamed bodies cut into JSON lines, bounds on sizes, and one error type.

:class:`GatewayConnection` is one client connection: :meth:`~GatewayConnection.request` gives
a request's bytes; :meth:`~GatewayConnection.receive_data` is fed the bytes that arrive
(``b""`` when the server closed the connection) and :meth:`~GatewayConnection.events` yields
:class:`Head`, :class:`Line` (a streaming response's JSON line, or a whole unary body) and
:class:`End` events. Nothing here does I/O, so it is tested (and fuzzed) with plain bytes;
:mod:`.client` runs it over asyncio streams.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h11

MAX_HEAD = 64 * 1024  #: longest response head, chunk-size line or trailer
MAX_BODY = 16 * 1024 * 1024  #: largest body or streamed document


class HttpError(Exception):
    """The server's bytes are not the HTTP/1.1 the gateway speaks, or exceed a bound (the
    connection must go)."""


@dataclass(frozen=True, slots=True)
class Head:
    status: int
    headers: dict[str, str]  #: names lower-cased


@dataclass(frozen=True, slots=True)
class Line:
    """One JSON document: a whole unary body, or one line of a streamed body."""

    value: Any


@dataclass(frozen=True, slots=True)
class End:
    """The response is complete; ``keep_alive`` says whether the connection may be reused."""

    keep_alive: bool


Event = Head | Line | End


class GatewayConnection:
    """One HTTP/1.1 connection to etcd's gateway, one exchange at a time.

    Call :meth:`request` for each request, after the previous response's :class:`End` with
    ``keep_alive`` (else open a new connection); feed what arrives to :meth:`receive_data`
    and take the events from :meth:`events`. Anything the server sends that is not HTTP/1.1,
    a body that is not JSON, a head longer than :data:`MAX_HEAD` and a document larger than
    :data:`MAX_BODY` raise :class:`HttpError` naming what came, once the events before it
    are out; nothing else is raised for the server's bytes.

    :param host: the ``Host`` header (the endpoint's ``HOST:PORT``).
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self._text = bytearray()  #: body bytes not yet parsed as JSON
        self._received = False  #: whether any byte arrived since the last request
        self._closed = False  #: whether the server closed the connection

    def request(self, path: str, body: Any) -> bytes:
        """The bytes of a ``POST path`` with ``body`` as compact JSON, keeping the connection
        open."""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        content = json.dumps(body, separators=(",", ":")).encode()
        wire = self._h11.send(h11.Request(method="POST", target=path, headers=[
            ("Host", self.host), ("Content-Type", "application/json"),
            ("Content-Length", str(len(content)))]))
        wire += self._h11.send(h11.Data(data=content)) + self._h11.send(h11.EndOfMessage())
        self._text.clear()
        self._received = bool(self._h11.trailing_data[0])  # bytes that came unasked, if any
        return wire

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` when it closed the connection.

        After a close, :meth:`events` ends a body delimited by the close, raises
        :class:`HttpError` in the middle of any other response, and yields nothing when no
        byte of the response came (the caller says so).
        """
        if data:
            self._received = True
        else:
            self._closed = True
            if not self._received:
                return
        self._h11.receive_data(data)

    def events(self) -> Iterator[Event]:
        """The events that the bytes received so far complete, in order, until more bytes
        are needed.

        :raises HttpError: where the bytes go wrong (after the events before that point).
        """
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise HttpError(_explain(exc, closed=self._closed)) from None
            if event is h11.NEED_DATA or event is h11.PAUSED \
                    or isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Response):
                yield self._head(event)
            elif isinstance(event, h11.Data):
                start = len(self._text)  # the bytes before hold no newline
                self._text += event.data
                if len(self._text) > MAX_BODY:
                    raise HttpError(f"a document larger than {MAX_BODY} bytes")
                yield from self._json_lines(final=False, start=start)
            elif isinstance(event, h11.EndOfMessage):
                yield from self._json_lines(final=True)
                # reused only if kept alive, not closed, and with no byte nobody asked for
                yield End(self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE
                          and self._h11.trailing_data == (b"", False))
            # an InformationalResponse (1xx) is followed by the response proper

    # -- internals ----------------------------------------------------------------------
    @staticmethod
    def _head(response: h11.Response) -> Head:
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in response.headers}
        length = headers.get("content-length")  # digits only, checked by h11
        if length is not None and int(length) > MAX_BODY:
            raise HttpError(f"a body of {length} bytes (at most {MAX_BODY})")
        return Head(response.status_code, headers)

    def _json_lines(self, *, final: bool, start: int = 0) -> Iterator[Line]:
        """Whole JSON lines of the body so far (and the rest when ``final``); no newline
        comes before ``start``."""
        while (end := self._text.find(b"\n", start)) >= 0:
            line = bytes(self._text[:end]).strip()
            del self._text[:end + 1]
            start = 0
            if line:
                yield Line(_json(line))
        if final:
            rest = bytes(self._text).strip()
            self._text.clear()
            if rest:
                yield Line(_json(rest))


_BYTEARRAY = re.compile(r"""bytearray\((b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"))\)""")


def _explain(exc: h11.RemoteProtocolError, *, closed: bool) -> str:
    """h11's complaint as this module's message."""
    if closed:
        return "the connection closed in the middle of a response"
    if exc.error_status_hint == 431:  # h11's only use of it: a head or line too long
        return f"a response head or chunk line longer than {MAX_HEAD} bytes"
    text = _BYTEARRAY.sub(r"\1", str(exc))  # "illegal status line: b'SSH-2.0-…'"
    return f"not HTTP/1.1: {text[:160]}"


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise HttpError(f"a body that is not JSON: {data[:80]!r}") from None
