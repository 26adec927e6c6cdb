"""Byte streams between tieline and devices: TCP, serial (pyserial-asyncio), SSH (asyncssh).

A :class:`Transport` is built from the ``"transport"`` block of a router's settings and
opens a :class:`ByteStream`. The device link (devices.py) owns timers and reconnects; a
transport only connects and moves bytes.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .addresses import parse_hostport
from .errors import LinkError
from .plugin_manager import hookimpl

__all__ = ["ByteStream", "SerialTransport", "SshTransport", "StreamPair", "TcpTransport",
           "Transport", "memory_pipe", "open_fd_stream", "parse_hostport"]


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
    :param defaults: the driver's defaults for this transport type (``Driver.transport_defaults``,
        e.g. ``{"port": 9990}`` or ``{"baudrate": 38400, "parity": "O"}``); the block wins.
    :param folder: the settings folder, for files the block names (SSH keys, known hosts).
    """

    name: ClassVar[str]
    settings_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def __init__(self, options: dict[str, Any], *, defaults: dict[str, Any] | None = None,
                 folder: Path | None = None) -> None:
        self.options = {**(defaults or {}), **options}
        self.folder = folder or Path(".")

    async def open(self) -> ByteStream:
        """Connect; raise :class:`LinkError` with a readable reason on failure."""
        raise NotImplementedError

    @classmethod
    def check(cls, options: dict[str, Any], *, defaults: dict[str, Any],
              folder: Path) -> list[tuple[str, str]]:
        """Problems no schema can state, as ``(key, message)`` pairs (checked by validate).

        :param options: the block as written; :param defaults: the driver's defaults.
        """
        return []

    def describe(self) -> str:
        """Where this transport goes, for log lines (``tcp://10.0.0.5:9990``)."""
        return self.name


_HOST = {"type": "string", "format": "host",
         "description": "Device address: a host name, an IPv4 or an IPv6 address (no brackets)."}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535,
         "description": "TCP port; default: the driver's usual port."}


def _needs_port(options: dict[str, Any], defaults: dict[str, Any]) -> list[tuple[str, str]]:
    if "port" not in options and "port" not in defaults:
        return [("port", "this driver has no usual port: give \"port\"")]
    return []


class TcpTransport(Transport):
    """TCP client with TCP keepalive and Nagle off (small command frames)."""

    name = "tcp"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "type": {"const": "tcp"},
            "host": _HOST,
            "port": _PORT,
        },
        "required": ["type", "host"],
        "additionalProperties": False,
    }

    @classmethod
    def check(cls, options: dict[str, Any], *, defaults: dict[str, Any],
              folder: Path) -> list[tuple[str, str]]:
        return _needs_port(options, defaults)

    async def open(self) -> ByteStream:
        host, port = self.options["host"], self.options.get("port")
        if port is None:
            raise LinkError(f"no port given for {host} and the driver has no default")
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise LinkError(f"cannot connect to {self.describe()}: {exc.strerror or exc}") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return StreamPair(reader, writer)

    def describe(self) -> str:
        return f"tcp://{self.options['host']}:{self.options.get('port')}"


class SerialTransport(Transport):
    """A serial line (RS-232/RS-422) through pyserial-asyncio.

    Defaults for baud rate, parity, data and stop bits come from the driver (the protocol's
    usual settings), and the block overrides them.
    """

    name = "serial"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "type": {"const": "serial"},
            "device": {"type": "string", "minLength": 1,
                       "description": "Serial device (/dev/ttyS0, /dev/ttyUSB0 …)."},
            "baudrate": {"type": "integer", "minimum": 50, "maximum": 4000000,
                         "description": "Bits per second; default: the driver's."},
            "parity": {"enum": ["N", "E", "O", "M", "S"],
                       "description": "Parity: N none, E even, O odd, M mark, S space."},
            "bytesize": {"enum": [5, 6, 7, 8], "description": "Data bits."},
            "stopbits": {"enum": [1, 1.5, 2], "description": "Stop bits."},
            "rtscts": {"type": "boolean", "description": "RTS/CTS hardware flow control."},
        },
        "required": ["type", "device"],
        "additionalProperties": False,
    }

    async def open(self) -> ByteStream:
        import serial  # pyserial, installed with pyserial-asyncio
        import serial_asyncio

        o = self.options
        try:
            reader, writer = await serial_asyncio.open_serial_connection(
                url=o["device"], baudrate=o.get("baudrate", 9600), parity=o.get("parity", "N"),
                bytesize=o.get("bytesize", 8), stopbits=o.get("stopbits", 1),
                rtscts=o.get("rtscts", False),
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.describe()}: {exc}") from exc
        return StreamPair(reader, writer)

    def describe(self) -> str:
        o = self.options
        return (f"serial://{o['device']} {o.get('baudrate', 9600)} "
                f"{o.get('bytesize', 8)}{o.get('parity', 'N')}{o.get('stopbits', 1)}")


class SshStream:
    """A ByteStream over an SSH session channel (asyncssh)."""

    def __init__(self, connection: Any, reader: Any, writer: Any) -> None:
        self.connection = connection
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
        self.connection.close()

    def abort(self) -> None:
        self.connection.abort()

    async def wait_closed(self) -> None:
        await self.connection.wait_closed()


class SshTransport(Transport):
    """An SSH session channel (asyncssh), e.g. Extron SIS on port 22023.

    Host keys: ``known_hosts`` names a file in the settings folder. With
    ``"host_key_policy": "strict"`` (the default) the device's key must be in it; with
    ``"accept-new"`` a host not yet in the file is trusted on first connection and its key
    added (a changed key is still refused); ``"ignore"`` checks nothing (tests, labs).
    """

    name = "ssh"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "type": {"const": "ssh"},
            "host": _HOST,
            "port": _PORT,
            "username": {"type": "string", "minLength": 1, "description": "Login name."},
            "password": {"type": "string", "description": "Password (or use key)."},
            "key": {"type": "string", "minLength": 1, "x-settings-file": True,
                    "description": "Private key file in the settings folder."},
            "known_hosts": {"type": "string", "minLength": 1, "x-settings-file": True,
                            "description": "known_hosts file in the settings folder."},
            "host_key_policy": {"enum": ["strict", "accept-new", "ignore"],
                                "description": "How the device's host key is checked."},
        },
        "required": ["type", "host", "username"],
        "additionalProperties": False,
    }

    @classmethod
    def check(cls, options: dict[str, Any], *, defaults: dict[str, Any],
              folder: Path) -> list[tuple[str, str]]:
        problems = _needs_port(options, defaults)
        policy = options.get("host_key_policy", "strict")
        if policy != "ignore" and "known_hosts" not in options:
            problems.append(("known_hosts", f'host_key_policy "{policy}" needs a known_hosts '
                             'file (or "host_key_policy": "ignore", which checks nothing)'))
        if "known_hosts" in options and policy != "ignore":  # "ignore" never reads it
            name = options["known_hosts"]
            path = folder / name
            if path.is_file():
                try:
                    _known_hosts(path)
                except (OSError, UnicodeDecodeError, ValueError) as exc:
                    problems.append(("known_hosts", f"file '{name}' is not a known_hosts file "
                                     f"({_reason(exc)}); one line per host: HOST KEY-TYPE KEY, "
                                     "as ssh-keyscan writes"))
            elif path.exists():
                problems.append(("known_hosts", f"'{name}' is not a file"))
            elif policy == "strict":  # "accept-new" creates it on the first connection
                problems.append(("known_hosts", f"file '{name}' not found in the settings "
                                 "folder"))
        if "key" in options:
            name = options["key"]
            if not (folder / name).is_file():
                problems.append(("key", f"file '{name}' not found in the settings folder"))
            else:
                import asyncssh

                try:
                    asyncssh.read_private_key(folder / name)
                except (OSError, asyncssh.KeyImportError) as exc:
                    problems.append(("key", f"file '{name}' is not a usable SSH private key "
                                     f"({_reason(exc)}); expected an unencrypted private key "
                                     "(OpenSSH or PEM format)"))
        return problems

    async def open(self) -> ByteStream:
        import asyncssh

        o = self.options
        host, port = o["host"], o.get("port", 22)
        policy = o.get("host_key_policy", "strict")
        known_hosts: Any = None
        learn = False
        if policy != "ignore":
            path = self.folder / o["known_hosts"]
            known = path.read_text(encoding="utf-8") if path.exists() else ""
            learn = policy == "accept-new" and not _known(known, host, port)
            try:
                known_hosts = None if learn else asyncssh.import_known_hosts(known)
            except ValueError as exc:  # the file changed since the settings were checked
                raise LinkError(f"{self.describe()}: known_hosts file '{o['known_hosts']}': "
                                f"{exc}") from exc
        keys = [str(self.folder / o["key"])] if "key" in o else None
        try:
            connection = await asyncssh.connect(
                host, port, username=o["username"], password=o.get("password"),
                client_keys=keys, known_hosts=known_hosts, agent_path=None,
            )
        except (OSError, asyncssh.Error) as exc:
            raise LinkError(f"cannot connect to {self.describe()}: {exc}") from exc
        if learn:
            key = connection.get_server_host_key()
            entry = host if port == 22 else f"[{host}]:{port}"
            with open(self.folder / o["known_hosts"], "a", encoding="utf-8") as out:
                out.write(f"{entry} {key.export_public_key().decode().strip()}\n")
        try:
            # stderr merged into stdout: some devices answer on the session's stderr
            process = await connection.create_process(encoding=None, stderr=asyncssh.STDOUT)
        except (OSError, asyncssh.Error) as exc:
            connection.abort()
            raise LinkError(f"{self.describe()}: no session channel: {exc}") from exc
        return SshStream(connection, process.stdout, process.stdin)

    def describe(self) -> str:
        o = self.options
        return f"ssh://{o['username']}@{o['host']}:{o.get('port', 22)}"


def _known_hosts(path: Path) -> object:
    """The known_hosts file at ``path``, parsed as :meth:`SshTransport.open` parses it."""
    import asyncssh

    return asyncssh.import_known_hosts(path.read_text(encoding="utf-8"))


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _known(text: str, host: str, port: int) -> bool:
    entry = host if port == 22 else f"[{host}]:{port}"
    return any(entry in line.split(" ", 1)[0].split(",") for line in text.splitlines())


async def open_fd_stream(fd: int) -> ByteStream:
    """A ByteStream over a file descriptor (the master side of a pseudo-terminal, say).

    The descriptor is duplicated; close the original yourself.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    read_file = os.fdopen(os.dup(fd), "rb", buffering=0)
    write_file = os.fdopen(os.dup(fd), "wb", buffering=0)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_file)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(loop), write_file)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return StreamPair(reader, writer)


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


@hookimpl
def tieline_transports() -> dict[str, type[Transport]]:
    return {"tcp": TcpTransport, "serial": SerialTransport, "ssh": SshTransport}
