"""Byte streams between tieline and devices: TCP here; serial and SSH join with the drivers.

A :class:`Transport` is built from the ``"transport"`` block of a router's settings and
opens a :class:`ByteStream`. The device link (devices.py) owns timers and reconnects; a
transport only connects and moves bytes.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, ClassVar, Protocol

from .errors import LinkError
from .plugin_manager import hookimpl


class ByteStream(Protocol):
    """A connected, ordered byte stream (what asyncio's StreamReader/Writer pair offers).

    A stream may also offer ``abort()`` (drop the connection without flushing); the device
    link uses it when a connection ends, so a device that stopped reading cannot keep
    stale commands queued.
    """

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; ``b""`` at end of stream."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class StreamPair:
    """A ByteStream over an asyncio ``(StreamReader, StreamWriter)`` pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self, n: int) -> bytes:
        return await self.reader.read(n)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        """Drop the connection without flushing what is buffered."""
        self.writer.transport.abort()

    async def wait_closed(self) -> None:
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class Transport:
    """Base class of transports. Subclasses set ``name`` and ``settings_schema``.

    :param options: the router's ``"transport"`` block (already validated).
    :param default_port: the driver's usual port, used when the block gives none.
    """

    name: ClassVar[str]
    settings_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def __init__(self, options: dict[str, Any], *, default_port: int | None = None) -> None:
        self.options = options
        self.default_port = default_port

    async def open(self) -> ByteStream:
        """Connect; raise :class:`LinkError` with a readable reason on failure."""
        raise NotImplementedError

    @classmethod
    def check(cls, options: dict[str, Any], *, default_port: int | None) -> list[tuple[str, str]]:
        """Problems no schema can state, as ``(key, message)`` pairs (checked by validate)."""
        return []

    def describe(self) -> str:
        """Where this transport goes, for log lines (``tcp://10.0.0.5:9990``)."""
        return self.name


class TcpTransport(Transport):
    """TCP client with TCP keepalive and Nagle off (small command frames)."""

    name = "tcp"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "type": {"const": "tcp"},
            "host": {"type": "string", "minLength": 1, "description": "device address"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        },
        "required": ["type", "host"],
        "additionalProperties": False,
    }

    @classmethod
    def check(cls, options: dict[str, Any], *, default_port: int | None) -> list[tuple[str, str]]:
        if "port" not in options and default_port is None:
            return [("port", "this driver has no usual port: give \"port\"")]
        return []

    @property
    def host(self) -> str:
        return self.options["host"]

    @property
    def port(self) -> int:
        port = self.options.get("port", self.default_port)
        if port is None:
            raise LinkError(f"no port given for {self.host} and the driver has no default")
        return int(port)

    async def open(self) -> ByteStream:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise LinkError(f"cannot connect to {self.describe()}: {exc.strerror or exc}") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return StreamPair(reader, writer)

    def describe(self) -> str:
        return f"tcp://{self.host}:{self.options.get('port', self.default_port)}"


class _MemoryEnd:
    """One end of an in-process byte pipe."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()
        self.peer: _MemoryEnd | None = None
        self.closed = False

    async def read(self, n: int) -> bytes:
        return await self.reader.read(n)

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("memory pipe closed")
        assert self.peer is not None
        if not self.peer.closed:
            self.peer.reader.feed_data(data)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.reader.feed_eof()
            if self.peer is not None and not self.peer.closed:
                self.peer.reader.feed_eof()

    async def wait_closed(self) -> None:
        return None

    def abort(self) -> None:
        self.close()


def memory_pipe() -> tuple[ByteStream, ByteStream]:
    """Two connected in-process byte streams (used for in-process devices such as the simulator)."""
    a, b = _MemoryEnd(), _MemoryEnd()
    a.peer, b.peer = b, a
    return a, b


def parse_hostport(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``"127.0.0.1:8181"`` -> ``("127.0.0.1", 8181)``; ``"[::1]:80"`` for IPv6."""
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"'{text}' has no port; write HOST:PORT")
        return text, default_port
    host = host.strip("[]")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{text}': port must be a number 0–65535")
    return host, int(port)


@hookimpl
def tieline_transports() -> dict[str, type[Transport]]:
    return {"tcp": TcpTransport}
