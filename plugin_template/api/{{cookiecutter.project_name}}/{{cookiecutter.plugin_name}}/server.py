"""The {{cookiecutter.api_name}} API: tieline's routers over the line protocol of :mod:`.codec`.

``{"type": "{{cookiecutter.api_name}}", "listen": "127.0.0.1:7790"}`` in ``apis`` serves the
protocol on a TCP port, for control systems (Crestron, AMX, Q-SYS, Bitfocus Companion …).

Settings (the ``apis`` entry; :attr:`LineApi.settings_schema` describes every key)
    ``listen`` (required): where to listen, and nowhere else. The protocol has **no
    authentication**: every client that reaches the port gets ``permission`` (1 watch: only
    ``TALLY?``/``LEVELS?`` and the pushed tally; 2 route, the default; 3 administer, which
    none of this protocol's verbs needs, but verbs you add may). Each client acts as the
    principal ``{{cookiecutter.api_name}} <its address>``, so protects and logs name it.
    ``routers``: the routers clients may see and route (default: every router of the
    node). ``max_clients``: clients connected at once; more get ``ERROR busy …`` and are
    closed.

How it works
    One task per client reads its lines and answers its requests one at a time, in order:
    a ``ROUTE`` is answered once :meth:`tieline.RoutingService.route` returns, that
    is when the router's tally confirmed it (then that client's next request waits; other
    clients never do). One task, the fan-out, reads the node's event bus and writes every
    ``CrosspointsChanged`` — made by this API, another API, a salvo or the router's own
    panel — to every client as ``TALLY`` lines, encoded once. Writes never wait: a client
    whose unread output passes :data:`MAX_UNREAD` bytes (beyond its largest ``TALLY?``
    answer) is disconnected, so a client that does not read never slows the others. A line
    that does not parse is answered ``ERROR invalid …`` and the connection stays open,
    except an HTTP request line (``POST / HTTP/1.1``): a web page can make a browser send
    one, with a body of requests, so that client is cut before anything after it is read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from tieline import (
    UNKNOWN,
    ClientApi,
    CrosspointsChanged,
    NotFound,
    OutOfRange,
    Permission,
    Principal,
    RemoteProtocolError,
    RequestError,
    RouterRuntime,
    RouterSpec,
    Subscription,
    TielineError,
    parse_hostport,
)

from .codec import (
    Codec,
    End,
    Error,
    Level,
    LevelsQuery,
    Message,
    Ok,
    Ping,
    Pong,
    Role,
    Route,
    Tally,
    TallyQuery,
)

if TYPE_CHECKING:
    from tieline import Node

log = logging.getLogger(__name__)

#: Bytes sent to one client and not read by it, beyond its largest answer, before it is
#: disconnected.
MAX_UNREAD = 1024 * 1024
#: Events the fan-out may fall behind the event bus before the bus drops it.
MAX_EVENTS = 100_000
#: Bytes read from a socket at once.
READ_SIZE = 65536
#: The request line an HTTP client opens with. A web page can make a browser send one to
#: this port (``fetch(..., {mode: "no-cors"})``), with a body that would read as requests.
HTTP_REQUEST = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH) "
                          rb"(/|\*|[A-Za-z][A-Za-z0-9+.-]*://)")


class LineApi(ClientApi):
    """``{"type": "{{cookiecutter.api_name}}", "listen": "127.0.0.1:7790"}`` in ``apis``."""

    name = "{{cookiecutter.api_name}}"
    settings_schema: ClassVar[dict[str, Any]] = {
        "properties": {
            "permission": {
                "description": "Every client's permission level (the protocol has no "
                               "authentication): 1 watch, 2 route, 3 administer (for "
                               "verbs you add that need it).",
                "type": "integer", "minimum": 1, "maximum": 3, "default": 2,
            },
            "routers": {
                "description": "Ids of the routers clients may see and route; every router "
                               "of the node when left out.",
                "type": "array", "items": {"type": "string", "minLength": 1},
                "minItems": 1, "uniqueItems": True,
            },
            "max_clients": {
                "description": "Clients connected at once; more are refused (ERROR busy).",
                "type": "integer", "minimum": 1, "maximum": 10000, "default": 32,
            },
        },
    }

    @classmethod
    def check(cls, options: dict[str, Any],
              routers: Mapping[str, RouterSpec]) -> list[tuple[str, str]]:
        known = ", ".join(sorted(routers)) or "none"
        return [("routers", f"no router '{rid}'; this node has: {known}")
                for rid in options.get("routers", ()) if rid not in routers]

    def __init__(self, node: Node, options: dict[str, Any]) -> None:
        super().__init__(node, options)
        self.host, self.port = parse_hostport(options["listen"])
        self.permission = Permission(options.get("permission", 2))
        self.max_clients: int = options.get("max_clients", 32)
        self.routers: frozenset[str] | None = (frozenset(options["routers"])
                                               if "routers" in options else None)
        self.clients: set[LineClient] = set()
        self.server: asyncio.Server | None = None
        self.encoder = Codec(Role.SERVER)
        self._events: Subscription | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  #: the fan-out, each client's work
        self._handlers: set[asyncio.Task[Any]] = set()  #: asyncio's connection tasks
        self._full_logged = False  #: a refusal for max_clients was logged at WARNING
        self._http_logged: set[str] = set()  #: addresses whose HTTP request was logged

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name} line API on {host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._events = self.node.bus.subscribe(self.describe(), maxsize=MAX_EVENTS)
        self._track(asyncio.create_task(self._fanout(), name=f"{self.describe()} fan-out"),
                    self._tasks)
        try:
            self.server = await asyncio.start_server(self._connected, self.host, self.port)
        except OSError as exc:
            await self.close()
            raise TielineError(
                f"{self.describe()} cannot listen: {exc.strerror or exc}; is another program "
                "serving that port? Change 'listen' in its apis entry") from exc
        self.port = self.server.sockets[0].getsockname()[1]  # the port got for "...:0"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self._events is not None:
            self._events.close("API closed")  # ends the fan-out
        for client in list(self.clients):
            client.abort()
        while self._tasks:  # the fan-out and every client's work, cancelled and reaped
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        if self._handlers:  # asyncio's connection tasks end once their work has
            await asyncio.wait(list(self._handlers))
        if self.server is not None:
            await self.server.wait_closed()

    def _track(self, task: asyncio.Task[Any], tasks: set[asyncio.Task[Any]]) -> None:
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # -- clients ---------------------------------------------------------------------------
    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """One client's connection, from accept to close.

        asyncio runs this as a task of its own; the client's work runs in a task of ours,
        which :meth:`close` may cancel (Python 3.11's streams log a cancelled handler).
        """
        handler = asyncio.current_task()
        assert handler is not None
        self._track(handler, self._handlers)
        client = LineClient(self, reader, writer)
        if len(self.clients) >= self.max_clients:
            level = logging.DEBUG if self._full_logged else logging.WARNING
            self._full_logged = True
            log.log(level, "%s: refusing %s: %d clients are connected (max_clients)",
                    self.describe(), client.peer, self.max_clients)
            client.write(self.encoder.send(Error(
                "busy", f"{self.max_clients} clients are connected; try again later")))
            client.close()
            return
        self.clients.add(client)
        log.info("%s: client %s connected", self.describe(), client.peer)
        work = asyncio.create_task(client.run(), name=f"{self.describe()} {client.peer}")
        self._track(work, self._tasks)
        reason = ""
        try:
            await asyncio.wait([work])
            error = None if work.cancelled() else work.exception()
            if isinstance(error, (ConnectionError, OSError)):
                reason = f" ({error})"
            elif error is not None:  # a bug: it costs this connection, and is logged
                log.error("%s: client %s failed", self.describe(), client.peer,
                          exc_info=error)
        finally:
            work.cancel()
            self.clients.discard(client)
            self._full_logged = False
            client.close()  # what was written still goes out
            log.info("%s: client %s disconnected%s", self.describe(), client.peer, reason)

    def http_request(self, client: LineClient, line: bytes) -> None:
        """Log (once per address, then at debug) a client cut for sending an HTTP request."""
        address = client.principal.address or "?"
        level = logging.DEBUG if address in self._http_logged else logging.WARNING
        if len(self._http_logged) < 1024:
            self._http_logged.add(address)
        log.log(level, "%s: disconnecting %s: it sent an HTTP request (a web page in a "
                "browser?): %r", self.describe(), client.peer, line[:40])

    async def answer(self, principal: Principal, request: Message) -> bytes:
        """The reply to one request.

        :raises RequestError: when tieline refuses it (the client gets ``ERROR``).
        """
        match request:
            case Ping():
                return self.encoder.send(Pong())
            case Route(router, destination, source, levels):
                spec = self._router(router).state.spec
                names = [self._level_name(spec, level) for level in levels]
                # returns once the router's tally confirmed every level (or raises)
                await self.node.routing.route(principal, router, destination, source,
                                              names or None)
                return self.encoder.send(Ok(request))
            case TallyQuery(router):
                state = self._router(router).state
                return self.encoder.send_all(
                    [*(Tally(router, xp) for xp in state.crosspoints()), End()])
            case LevelsQuery(router):
                spec = self._router(router).state.spec
                return self.encoder.send_all(
                    [*(Level(router, i, name) for i, name in enumerate(spec.levels)), End()])
        raise RemoteProtocolError(f"{type(request).__name__} is not a request")

    def _router(self, router_id: str) -> RouterRuntime:
        if self.routers is not None and router_id not in self.routers:
            raise NotFound(f"no router '{router_id}' here; this API serves: "
                           f"{', '.join(sorted(self.routers))}", field="router")
        return self.node.routing.router(router_id)

    @staticmethod
    def _level_name(spec: RouterSpec, level: int) -> str:
        if not 0 <= level < len(spec.levels):
            raise OutOfRange(f"router '{spec.id}': level {level + 1} out of range "
                             f"(1-{len(spec.levels)}: {', '.join(spec.levels)})",
                             field="levels")
        return spec.levels[level]

    # -- the fan-out -----------------------------------------------------------------------
    async def _fanout(self) -> None:
        """Write every crosspoint change to every client, as TALLY lines encoded once."""
        while self._events is not None:
            events = self._events
            async for event in events:
                if isinstance(event, CrosspointsChanged) and self.clients:
                    try:
                        self._publish(event)
                    except Exception:  # a bug must cost one event, not every client's tally
                        log.exception("%s: could not send %s", self.describe(), event)
            if not events.dropped:
                return  # closed by close()
            # the bus dropped us: clients have missed changes; they reconnect and re-read
            log.warning("%s: fell %d events behind; disconnecting its clients",
                        self.describe(), MAX_EVENTS)
            self._events = self.node.bus.subscribe(self.describe(), maxsize=MAX_EVENTS)
            for client in list(self.clients):
                client.abort()

    def _publish(self, event: CrosspointsChanged) -> None:
        if self.routers is not None and event.router not in self.routers:
            return
        data = self.encoder.send_all(Tally(event.router, xp) for xp in event.crosspoints
                                     if xp.source != UNKNOWN)
        for client in list(self.clients):
            client.write(data)


class LineClient:
    """One connected client: its codec, its principal, its output bound."""

    def __init__(self, api: LineApi, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.api = api
        self.reader = reader
        self.writer = writer
        address, port = (writer.get_extra_info("peername") or ("?", 0))[:2]
        self.peer = f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"
        self.principal = Principal(f"{api.name} {address}", api.permission, str(address))
        self.codec = Codec(Role.SERVER)
        self.limit = MAX_UNREAD
        self.closed = False
        sock = writer.get_extra_info("socket")
        if sock is not None:  # replies are small lines: send each at once
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def run(self) -> None:
        """Read requests and answer each, in order, until the client goes."""
        while not self.closed:
            data = await self.reader.read(READ_SIZE)
            if not data:
                return
            self.codec.receive_data(data)
            while not self.closed:
                try:
                    request = self.codec.next_event()
                except RemoteProtocolError as exc:  # that line is gone; the next may be fine
                    if HTTP_REQUEST.match(exc.data):  # a browser's: read nothing after it
                        self.api.http_request(self, exc.data)
                        self.abort()
                        return
                    log.debug("%s: bad line from %s: %s", self.api.describe(), self.peer, exc)
                    self.write(self.api.encoder.send(Error("invalid", str(exc))))
                    continue
                if request is None:
                    break
                self.write(await self._answer(request), reply=True)

    async def _answer(self, request: Message) -> bytes:
        try:
            return await self.api.answer(self.principal, request)
        except RequestError as exc:
            log.debug("%s: %s refused for %s: %s", self.api.describe(), request, self.peer, exc)
            return self.api.encoder.send(Error(exc.code, exc.message))
        except RemoteProtocolError as exc:
            return self.api.encoder.send(Error("invalid", str(exc)))
        except Exception:  # a bug must cost one request, not the connection
            log.exception("%s: %s from %s failed", self.api.describe(), request, self.peer)
            return self.api.encoder.send(Error("error", "internal error; see tieline's log"))

    def write(self, data: bytes, *, reply: bool = False) -> None:
        """Queue ``data``; never wait. Disconnect the client when it does not read."""
        if self.closed or not data:
            return
        if reply:  # a large answer (TALLY?) may take a moment to read
            self.limit = max(self.limit, MAX_UNREAD + len(data))
        self.writer.write(data)
        unread = self.writer.transport.get_write_buffer_size()
        if unread > self.limit:
            log.warning("%s: disconnecting %s: %d bytes sent and not read",
                        self.api.describe(), self.peer, unread)
            self.abort()

    def close(self) -> None:
        """Close the connection once what was written is sent."""
        if not self.closed:
            self.closed = True
            self.writer.close()

    def abort(self) -> None:
        """Close the connection at once (unsent output is dropped)."""
        if not self.closed:
            self.closed = True
            self.writer.transport.abort()
