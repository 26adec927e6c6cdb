"""A fault-injecting TCP proxy (asyncio, userspace), for a kernel without netem or netfilter.

The harness puts one in the path it wants to hurt (the peer link between two nodes, a
node's router connection) and drives it from its own event loop::

    proxy = FaultProxy(("10.1.2.3", 7401), ("10.1.2.4", 7401))
    await proxy.start()
    proxy.hold("up")          # a one-way cut: what the client sends stops arriving
    proxy.delay(0.4)          # every byte, both ways, 400 ms late
    proxy.loss(0.3)           # 30 % "packet loss"
    proxy.cut()               # the link is down: connections reset, new ones refused
    proxy.drop()              # reset every connection once (new ones are fine)
    proxy.heal()              # all of it undone
    await proxy.close()

**Directions.** ``up`` is what the connecting side (the client) sends, ``down`` what the
listening side answers.

**What "loss" means through a TCP proxy.** The proxy is not on the wire: it sees a byte
stream, not packets, and TCP never delivers a stream with a hole in it. Dropping chunks
would hand the receiver a corrupt stream (an SSH connection would die of a bad MAC at once:
a loud fault, not a silent one). So the proxy plays what TCP makes of packet loss:

* ``hold`` (a blackhole, a one-way or two-way silent cut): bytes stop arriving; they are
  kept, in order, and the sender is not told. The proxy stops reading once it holds
  ``max_held`` bytes, so the sender's socket buffers fill and its writes block, as with a
  real cut. Keepalives over that stream go unanswered and the endpoints give up by
  themselves. When healed, what was held arrives, late and in order, as TCP's
  retransmissions would deliver it: the receiver reads old messages first (the "stale
  heartbeats in the socket" case).
* ``loss(p)``: each chunk is "lost" with probability ``p`` and so arrives one
  retransmission timeout (``rto_s``, doubled for each further loss of the same chunk) late,
  and the chunks behind it wait for it (head-of-line blocking). Nothing is dropped. A
  sender whose socket has Linux's ``TCP_THIN_LINEAR_TIMEOUTS`` (the peer link sets it)
  keeps the timeout linear for its first 6 re-sends while the stream is thin: a proxy
  standing for such a sender's path is made with ``linear_retries=6``.
* ``delay(s)``: every chunk arrives ``s`` late, in order.

``cut`` is the loud fault (a link set down): open connections are reset (RST) and new
ones are refused at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

UP, DOWN = "up", "down"
BOTH = (UP, DOWN)


@dataclass
class Impairment:
    """What one direction suffers now."""

    delay_s: float = 0.0
    loss: float = 0.0
    hold: bool = False

    @property
    def clean(self) -> bool:
        return not self.hold and self.delay_s == 0 and self.loss == 0


@dataclass
class DirectionStats:
    chunks: int = 0
    bytes: int = 0
    lost_chunks: int = 0


@dataclass(eq=False)
class _Pipe:
    """One proxied connection: two pumps, each a reader and a writer joined by a queue."""

    client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    server: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a link that goes away does to its connections."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()


class FaultProxy:
    """Forward TCP connections from ``listen`` to ``target``, with faults on demand.

    :param listen: where the proxy listens (``(host, 0)`` picks a port; see ``address``).
    :param target: where it connects for each accepted connection.
    :param bind: the local address of its outgoing connections (so that the target can
        tell which proxy a connection comes from).
    :param max_held: bytes held per direction of a connection before the proxy stops
        reading from the sender.
    :param rto_s: the retransmission delay a "lost" chunk suffers.
    :param linear_retries: how many re-sends of one chunk wait ``rto_s`` each before the
        timeout doubles (Linux's thin-stream linear timeouts: 6; plain TCP: 0).
    :param seed: for the loss draws (repeatable runs).
    :param socket_factory: makes the proxy's sockets (the listening one and each outgoing
        one), unconnected: a socket made in another network namespace stays there, so a
        proxy driven from this process can sit inside a namespace of a test network.
    :param connect_factory: makes the outgoing sockets, when they belong in another
        namespace than the listening one (default: ``socket_factory``).
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], *,
                 bind: str | None = None, max_held: int = 1 << 20, rto_s: float = 0.2,
                 linear_retries: int = 0, seed: int | None = None, name: str = "proxy",
                 socket_factory: Callable[[], Awaitable[socket.socket]] | None = None,
                 connect_factory: Callable[[], Awaitable[socket.socket]] | None = None,
                 ) -> None:
        self.socket_factory = socket_factory
        self.connect_factory = connect_factory or socket_factory
        self.listen = listen
        self.target = target
        self.bind = bind
        self.max_held = max_held
        self.rto_s = rto_s
        self.linear_retries = linear_retries
        self.name = name
        self.rng = random.Random(seed)
        self.impairments = {UP: Impairment(), DOWN: Impairment()}
        self.refusing = False
        self.stats = {UP: DirectionStats(), DOWN: DirectionStats()}
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[_Pipe] = set()
        self._changed = {UP: asyncio.Event(), DOWN: asyncio.Event()}

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def connections(self) -> int:
        return len(self._pipes)

    # -- control -------------------------------------------------------------------------
    def _directions(self, direction: str) -> tuple[str, ...]:
        if direction == "both":
            return BOTH
        if direction not in BOTH:
            raise ValueError(f"direction must be 'up', 'down' or 'both', not {direction!r}")
        return (direction,)

    def _set(self, direction: str, **changes: object) -> None:
        for d in self._directions(direction):
            for key, value in changes.items():
                setattr(self.impairments[d], key, value)
            self._changed[d].set()

    def hold(self, direction: str = "both") -> None:
        """Stop delivering (kept in order, delivered on heal): a silent cut."""
        self._set(direction, hold=True)

    def release(self, direction: str = "both") -> None:
        self._set(direction, hold=False)

    def delay(self, seconds: float, direction: str = "both") -> None:
        self._set(direction, delay_s=float(seconds))

    def loss(self, probability: float, direction: str = "both") -> None:
        if not 0 <= probability < 1:
            raise ValueError("loss probability must be in [0, 1)")
        self._set(direction, loss=float(probability))

    def cut(self) -> None:
        """A link down: every connection reset, new ones refused until :meth:`heal`."""
        self.refusing = True
        self.drop()

    def drop(self) -> None:
        """Reset every open connection (both ends see it at once)."""
        for pipe in list(self._pipes):
            self._close_pipe(pipe)

    def heal(self) -> None:
        """Undo every fault: what was held is delivered, new connections are accepted."""
        self.refusing = False
        self._set("both", hold=False, delay_s=0.0, loss=0.0)

    @property
    def clean(self) -> bool:
        return not self.refusing and all(i.clean for i in self.impairments.values())

    # -- life ----------------------------------------------------------------------------
    async def start(self) -> FaultProxy:
        if self.socket_factory is None:
            self._server = await asyncio.start_server(self._accept, *self.listen)
            return self
        sock = await self.socket_factory()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(self.listen)
        sock.listen(64)
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._accept, sock=sock)
        return self

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        local = (self.bind, 0) if self.bind else None
        if self.connect_factory is None:
            return await asyncio.open_connection(*self.target, local_addr=local)
        sock = await self.connect_factory()
        try:
            sock.setblocking(False)
            if local:
                sock.bind(local)
            await asyncio.get_running_loop().sock_connect(sock, self.target)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            self._close_pipe(pipe)
        tasks = [t for p in list(self._pipes) for t in p.tasks]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the pumps -----------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing:
            _abort(writer)
            return
        sock = writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            up_reader, up_writer = await asyncio.wait_for(self._open_target(), 5)
        except (OSError, TimeoutError):
            _abort(writer)
            return
        sock = up_writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.refusing:  # cut while connecting
            _abort(writer)
            _abort(up_writer)
            return
        pipe = _Pipe((reader, writer), (up_reader, up_writer))
        self._pipes.add(pipe)
        pipe.tasks = [
            asyncio.create_task(self._pump(pipe, UP, reader, up_writer), name=f"{self.name} up"),
            asyncio.create_task(self._pump(pipe, DOWN, up_reader, writer),
                                name=f"{self.name} down"),
        ]

    def _close_pipe(self, pipe: _Pipe) -> None:
        if pipe not in self._pipes:
            return
        self._pipes.discard(pipe)
        _abort(pipe.client[1])
        _abort(pipe.server[1])
        for task in pipe.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _pump(self, pipe: _Pipe, direction: str, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        """Read from one side; deliver to the other in order, each chunk at its due time
        and only while the direction is not held."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        held = asyncio.Semaphore(max(1, self.max_held // 65536))
        loop = asyncio.get_running_loop()
        stats = self.stats[direction]

        async def read() -> None:
            last_due = 0.0
            try:
                while True:
                    await held.acquire()
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    now = loop.time()
                    imp = self.impairments[direction]
                    due = now + imp.delay_s
                    rto, resends = self.rto_s, 0
                    while imp.loss and self.rng.random() < imp.loss:
                        stats.lost_chunks += 1
                        due += rto
                        resends += 1
                        if resends > self.linear_retries:
                            rto *= 2
                    last_due = max(last_due, due)  # in order: never before the one ahead
                    queue.put_nowait((last_due, chunk))
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                queue.put_nowait(None)

        reading = asyncio.create_task(read(), name=f"{self.name} {direction} reader")
        try:
            while (item := await queue.get()) is not None:
                due, chunk = item
                while True:
                    imp = self.impairments[direction]
                    # a delay set or cleared since the chunk was read moves its due time
                    wait = due - loop.time() if imp.delay_s or imp.loss else 0.0
                    if not imp.hold and wait <= 0:
                        break
                    self._changed[direction].clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(None if imp.hold else wait):
                            await self._changed[direction].wait()
                writer.write(chunk)
                held.release()
                stats.chunks += 1
                stats.bytes += len(chunk)
                await writer.drain()
            # the sender closed: pass the end on (a half-close), the other pump goes on
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()
        except (OSError, ConnectionError):
            self._close_pipe(pipe)
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading
            if all(t.done() or t is asyncio.current_task() for t in pipe.tasks) \
                    and pipe in self._pipes:
                self._pipes.discard(pipe)
                with contextlib.suppress(Exception):
                    pipe.client[1].close()
                    pipe.server[1].close()
