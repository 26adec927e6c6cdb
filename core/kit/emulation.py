"""Device emulators: the shared part of every protocol plugin's emulator.

Every protocol plugin ships an emulator built on its own codec (device role), used by the
tests and by integrators without hardware (``tieline emulate NAME``). What every emulator
needs is here: several controllers at once, over TCP, in-process memory pipes or any byte
stream (a serial line, an SSH channel); a bounded outgoing buffer per controller (a
controller that stops reading is dropped, never the device); a log of the latest commands
received (a ring buffer: an emulator runs for weeks, as the embedded simulator of every
node does); tracked tasks and one clean ``close()``.

A subclass implements :meth:`DeviceEmulator.controller_connected` (make the controller's
codec, send a greeting or a status dump) and :meth:`DeviceEmulator.data_received` (feed the
codec, act, reply with :meth:`EmulatorPeer.send` or :meth:`DeviceEmulator.broadcast`).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import itertools
import json
import logging
import socket
import time
from collections.abc import Coroutine
from typing import Any, ClassVar

from ..transports import ByteStream, StreamPair, memory_pipe

log = logging.getLogger(__name__)


class EmulatorPeer:
    """One connected controller: its stream, its bounded outgoing buffer, its own state.

    :param name: how logs and the command log name it (``127.0.0.1:40312``, ``local-1``).
    :attr state: whatever the emulator keeps per controller (its codec, its login state …).
    """

    def __init__(self, name: str, stream: ByteStream, limit: int) -> None:
        self.name = name
        self.stream = stream
        self.limit = limit
        self.state: Any = None
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []
        self._out = bytearray()
        self._ready = asyncio.Event()

    def send(self, data: bytes) -> None:
        """Queue bytes; a controller that lets more than ``limit`` pile up is dropped."""
        if self.closed or not data:
            return
        self._out += data
        if len(self._out) > self.limit:
            log.warning("emulator: dropping controller %s: %d bytes queued and not read",
                        self.name, len(self._out))
            self.abort()
            return
        self._ready.set()

    async def write_loop(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._out:
                    data = bytes(self._out)
                    self._out.clear()
                    self.stream.write(data)
                    del data  # a whole state dump must not live on while the loop waits
                    await self.stream.drain()
        except (ConnectionError, OSError):
            self.abort()

    def abort(self) -> None:
        """Close the connection and stop its tasks (not the calling one: it ends by itself)."""
        if self.closed:
            return
        self.closed = True
        self._out.clear()
        self.stream.close()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


class _SshServerStream:
    """A ByteStream over the server side of an SSH session (an asyncssh process)."""

    def __init__(self, process: Any) -> None:
        self.process = process

    async def read(self, n: int) -> bytes:
        return await self.process.stdin.read(n)

    def write(self, data: bytes) -> None:
        self.process.stdout.write(data)

    async def drain(self) -> None:
        await self.process.stdout.drain()

    def close(self) -> None:
        self.process.exit(0)

    async def wait_closed(self) -> None:
        return None


class DeviceEmulator(abc.ABC):
    """Base class of device emulators.

    :param max_outgoing_bytes: per controller, how much unread output is kept before the
        controller is dropped.
    """

    #: the NAME of ``tieline emulate NAME``.
    name: ClassVar[str]
    #: whether ``tieline emulate`` offers ``--serial DEVICE`` for it.
    serial: ClassVar[bool] = False
    read_size = 65536

    #: how many controllers may be connected at once (None: any number). A controller
    #: beyond it is disconnected at once, as a serial-to-IP server that takes one
    #: connection does (``tieline emulate --max-controllers``).
    max_controllers: int | None = None

    #: how many commands :attr:`command_log` keeps, the oldest dropped first (None: every
    #: one). A command of one 4 KiB line can carry hundreds of crosspoints (tens of KB
    #: parsed), so 100 keep at most a few MB. Read when the emulator is made: a test that
    #: needs more sets it on the class first
    #: (``monkeypatch.setattr(SimulatorEmulator, "command_log_size", None)``).
    command_log_size: int | None = 100

    def __init__(self, *, max_outgoing_bytes: int = 1 << 20) -> None:
        self.max_outgoing_bytes = max_outgoing_bytes
        #: the latest commands received, oldest first: (controller name, parsed command).
        self.command_log: collections.deque[tuple[str, Any]] = collections.deque(
            maxlen=self.command_log_size)
        self._peers: set[EmulatorPeer] = set()
        self._names = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._servers: list[Any] = []
        self._closing = False
        self._started = False

    @classmethod
    def from_cli(cls, *, inputs: int, outputs: int, levels: int) -> DeviceEmulator:
        """Build one for ``tieline emulate`` (override when the constructor differs)."""
        return cls(inputs=inputs, outputs=outputs, levels=levels)  # type: ignore[call-arg]

    # -- what a protocol implements ----------------------------------------------------
    @abc.abstractmethod
    def controller_connected(self, peer: EmulatorPeer) -> None:
        """A controller connected: set ``peer.state`` (its codec) and greet it if the
        protocol says so."""

    @abc.abstractmethod
    async def data_received(self, peer: EmulatorPeer, data: bytes) -> None:
        """Bytes from a controller. Log each parsed command with :meth:`log_command`."""

    async def started(self) -> None:
        """Called once, before the first controller is served (start device tasks here)."""

    #: when set, every command received is also appended to this file as a JSON line
    #: ``{"t": <unix time>, "peer": name, "command": repr}`` (``tieline emulate
    #: --command-log``), so that other processes (tests, people) can see what was sent.
    command_log_file: Any = None

    def log_command(self, peer: EmulatorPeer, command: Any) -> None:
        self.command_log.append((peer.name, command))
        if self.command_log_file is not None:
            self.command_log_file.write(json.dumps(
                {"t": time.time(), "peer": peer.name, "command": repr(command)}) + "\n")
            self.command_log_file.flush()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start (idempotent; every ``connect``/``serve_*`` calls it)."""
        if self._closing:
            raise RuntimeError(f"this {type(self).__name__} was closed; make a new one")
        if not self._started:
            self._started = True
            await self.started()

    async def close(self) -> None:
        """Stop serving, drop every controller and stop every task."""
        self._closing = True
        for server in self._servers:
            server.close()
        for peer in list(self._peers):
            self.drop(peer)
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> DeviceEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a task that :meth:`close` will cancel and reap."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s emulator: task %s failed", self.name, task.get_name(),
                      exc_info=task.exception())

    # -- connections -------------------------------------------------------------------
    async def connect(self) -> ByteStream:
        """A new in-process controller connection (a memory pipe served by the device)."""
        await self.start()
        ours, theirs = memory_pipe()
        self.serve_stream(ours, f"local-{next(self._names)}")
        return theirs

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
        """Accept controllers over TCP; the server is closed by :meth:`close`."""
        await self.start()
        server = await asyncio.start_server(self._accept, host, port)
        self._servers.append(server)
        return server

    async def serve_ssh(
        self, host: str = "127.0.0.1", port: int = 0, *, username: str, password: str,
        host_key: Any = None,
    ) -> Any:
        """Accept controllers over SSH (asyncssh): one session channel each.

        :param host_key: an asyncssh private key; a new Ed25519 key when None (read it from
            the returned server's ``host_key`` attribute to pin it in a known_hosts file).
        :returns: the asyncssh server (``.sockets[0].getsockname()`` has its port).
        """
        import asyncssh

        await self.start()
        key = host_key or asyncssh.generate_private_key("ssh-ed25519")
        emulator = self

        class _Server(asyncssh.SSHServer):
            def begin_auth(self, user: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, user: str, given: str) -> bool:
                return user == username and given == password

        async def session(process: Any) -> None:
            stream = _SshServerStream(process)
            peername = process.get_extra_info("peername") or ("?", 0)
            peer = emulator.serve_stream(stream, f"ssh {peername[0]}:{peername[1]}")
            await asyncio.gather(*peer.tasks, return_exceptions=True)

        server = await asyncssh.create_server(
            _Server, host, port, server_host_keys=[key], process_factory=session,
            encoding=None,
        )
        server.host_key = key  # type: ignore[attr-defined]
        self._servers.append(server)
        return server

    def add_server(self, server: Any) -> None:
        """Have :meth:`close` close another server (an SSH listener, say)."""
        self._servers.append(server)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host, port = (writer.get_extra_info("peername") or ("?", 0))[:2]
        if self.max_controllers is not None and len(self._peers) >= self.max_controllers:
            log.warning("%s emulator: refused controller %s:%s: %d already connected "
                        "(--max-controllers %d)", self.name, host, port, len(self._peers),
                        self.max_controllers)
            writer.close()
            return
        self.serve_stream(StreamPair(reader, writer), f"{host}:{port}")

    def serve_stream(self, stream: ByteStream, name: str) -> EmulatorPeer:
        """Serve one controller on an already connected stream (serial line, SSH channel).

        The emulator must have been started (``await start()`` or ``async with``).
        """
        if not self._started:
            raise RuntimeError(f"start the {self.name} emulator before serving a stream")
        peer = EmulatorPeer(name, stream, self.max_outgoing_bytes)
        self._peers.add(peer)
        self.controller_connected(peer)
        peer.tasks.append(self.spawn(self._serve(peer), f"{self.name} {name}"))
        peer.tasks.append(self.spawn(peer.write_loop(), f"{self.name} {name} writer"))
        return peer

    def drop(self, peer: EmulatorPeer) -> None:
        """Disconnect one controller."""
        self._peers.discard(peer)
        peer.abort()

    @property
    def peers(self) -> list[EmulatorPeer]:
        return list(self._peers)

    @property
    def controllers(self) -> list[str]:
        """Names of the controllers connected now."""
        return sorted(peer.name for peer in self._peers)

    async def disconnect_all(self) -> None:
        """Close every controller connection (as a device reboot or a cable pull would)."""
        peers = list(self._peers)
        for peer in peers:
            self.drop(peer)
        tasks = [task for peer in peers for task in peer.tasks if not task.done()]
        if tasks:
            await asyncio.wait(tasks)

    def broadcast(self, data: bytes) -> None:
        """Send bytes to every connected controller."""
        for peer in list(self._peers):
            peer.send(data)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are to every controller (to test their handling of garbage)."""
        self.broadcast(data)

    async def _serve(self, peer: EmulatorPeer) -> None:
        try:
            while not peer.closed:
                try:
                    data = await peer.stream.read(self.read_size)
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                await self.data_received(peer, data)
        finally:
            self.drop(peer)

    async def serve_forever(self) -> None:
        """Wait until cancelled (for ``tieline emulate``), then close."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()
