"""HTTP/1.1 for etcd's JSON gateway, sans-I/O: requests to bytes, bytes to responses.

etcd (3.4 and later) serves its v3 API as JSON over HTTP (the grpc-gateway): every call is a
``POST /v3/...`` with a JSON body. Unary calls answer with one JSON document
(``Content-Length`` or chunked); streaming calls (``/v3/watch``, ``/v3/lease/keepalive``)
answer chunked, one JSON document per line, each wrapped in ``{"result": …}``.

:func:`encode_request` makes a request's bytes; :class:`ResponseParser` is fed the bytes
that arrive and yields :class:`Head`, :class:`Line` (a streaming response's JSON line, or a
whole unary body) and :class:`End` events. Nothing here does I/O, so it is tested (and
fuzzed) with plain bytes; :mod:`.client` runs it over asyncio streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_LINE = 16 * 1024  #: longest status or header line
MAX_BODY = 16 * 1024 * 1024  #: largest body or streamed document


class HttpError(Exception):
    """The server's bytes are not the HTTP/1.1 the gateway speaks (the connection must go)."""


def encode_request(host: str, path: str, body: Any) -> bytes:
    """A ``POST path`` with ``body`` as JSON, keeping the connection open."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode("ascii") + data


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


class ResponseParser:
    """Parses one response after another from a connection's bytes.

    Feed bytes with :meth:`feed` and iterate the events it returns. A body that is not
    JSON raises :class:`HttpError` naming what came; so does anything that is not HTTP/1.1.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "head"
        self._remaining = 0  #: bytes left in the body (content-length) or the chunk
        self._text = bytearray()  #: body bytes not yet parsed as JSON
        self._chunked = False
        self._keep_alive = True

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        return list(self._events())

    def eof(self) -> list[Event]:
        """The server closed the connection: a body delimited by the close ends here."""
        if self._state == "close-body":
            events = list(self._json_lines(final=True))
            self._state = "head"
            return [*events, End(keep_alive=False)]
        if self._state != "head" or self._buffer:
            raise HttpError("the connection closed in the middle of a response")
        return []

    # -- internals ----------------------------------------------------------------------
    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise HttpError(f"a line longer than {MAX_LINE} bytes")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 2]
        return line

    def _take_remaining(self) -> bool:
        """Move what the buffer holds of the body (or chunk) still expected into the body.

        :returns: whether all of it has arrived.
        """
        take = min(self._remaining, len(self._buffer))
        self._append(self._buffer[:take])
        del self._buffer[:take]
        self._remaining -= take
        return not self._remaining

    def _events(self) -> Iterator[Event]:
        while True:
            if self._state == "head":
                head = self._parse_head()
                if head is None:
                    return
                yield head
            elif self._state == "body":
                if not self._take_remaining():
                    return
                yield from self._json_lines(final=True)
                yield self._end()
            elif self._state == "close-body":
                self._append(self._buffer)
                self._buffer.clear()
                yield from self._json_lines(final=False)
                return
            elif self._state == "chunk-size":
                line = self._line()
                if line is None:
                    return
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise HttpError(f"bad chunk size {line[:40]!r}") from None
                if size < 0 or size > MAX_BODY:
                    raise HttpError(f"chunk of {size} bytes")
                self._remaining = size
                self._state = "chunk" if size else "trailer"
            elif self._state == "chunk":
                if not self._take_remaining():
                    return
                yield from self._json_lines(final=False)
                self._state = "chunk-end"
            elif self._state == "chunk-end":
                if len(self._buffer) < 2:
                    return
                if self._buffer[:2] != b"\r\n":
                    raise HttpError("a chunk not followed by CRLF")
                del self._buffer[:2]
                self._state = "chunk-size"
            elif self._state == "trailer":
                line = self._line()
                if line is None:
                    return
                if line == b"":
                    yield from self._json_lines(final=True)
                    yield self._end()

    def _parse_head(self) -> Head | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE * 8:
                raise HttpError("response headers too long")
            return None
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[:end + 4]
        parts = lines[0].split(" ", 2)
        if (len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3
                or not (parts[1].isascii() and parts[1].isdigit())):
            raise HttpError(f"not an HTTP/1.1 status line: {lines[0][:60]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise HttpError(f"bad header line {line[:60]!r}")
            headers[name.strip().lower()] = value.strip()
        status = int(parts[1])
        self._keep_alive = headers.get("connection", "").lower() != "close" \
            and parts[0] == "HTTP/1.1"
        self._text.clear()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked, self._state = True, "chunk-size"
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise HttpError(f"bad Content-Length {headers['content-length']!r}") from None
            if length < 0 or length > MAX_BODY:
                raise HttpError(f"a body of {length} bytes")
            self._chunked, self._remaining, self._state = False, length, "body"
        else:
            self._chunked, self._keep_alive, self._state = False, False, "close-body"
        return Head(status, headers)

    def _append(self, data: bytes | bytearray) -> None:
        self._text += data
        if len(self._text) > MAX_BODY:
            raise HttpError(f"a document larger than {MAX_BODY} bytes")

    def _json_lines(self, *, final: bool) -> Iterator[Line]:
        """Whole JSON lines of the body so far (and the rest when ``final``)."""
        while True:
            end = self._text.find(b"\n")
            if end < 0:
                break
            line = bytes(self._text[:end]).strip()
            del self._text[:end + 1]
            if line:
                yield Line(_json(line))
        if final:
            rest = bytes(self._text).strip()
            self._text.clear()
            if rest:
                yield Line(_json(rest))

    def _end(self) -> End:
        self._state = "head"
        return End(self._keep_alive)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise HttpError(f"a body that is not JSON: {data[:80]!r}") from None
