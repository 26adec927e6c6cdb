"""The WebSocket JSON API server.

One :class:`Connection` per client. On connect the server sends ``hello`` (protocol
version, the node's status, heartbeat timing, maximum message size); the client answers
with its own ``hello`` carrying a token. Until then every other request is refused.

The same address serves the operator's web panel over plain HTTP (https with ``tls``):
a request without ``Upgrade: websocket`` is answered by http.py (``GET /`` the panel,
``GET /panel/<path>`` its files, everything else 404), every response with a strict
Content-Security-Policy and the other security headers.

Browsers: a web page can open a WebSocket to any address, loopback included, and the
browser then sends an ``Origin`` header naming the page's site. A handshake carrying an
``Origin`` is accepted only from the node's own panel (the origin is this very request's
``Host``, on this API's port), from the panels of the other members of its cluster (their
advertised client URLs), or from an origin listed in ``allowed_origins`` (origins.py).
Any other is refused with HTTP 403 before any message is read, and logged with the origin
it carried (once a minute per origin; repeats at debug). A connection from a web page
whose origin's host is not a loopback IP literal or ``localhost`` never gets the anonymous
loopback level (``auth.loopback_anonymous_level``): a foreign name made to resolve to
127.0.0.1 (DNS rebinding) would otherwise drive the routers with the rights of the node's
own machine; its hello needs a token. Clients that are not browsers send no ``Origin``
and are not affected.

The ``panels`` request answers the panels of the API's ``panels`` option (panels.py),
every default filled in.

Requests are validated against ``schemas/api/request/`` and answered with ``response``
messages (``ok`` and a ``result``, or an ``error`` naming the field); a message that cannot
be read is answered ``invalid`` and the connection stays. Requests that wait for nothing
(hello, ping, status, snapshot, subscribe, unsubscribe, panels) are answered in order by the
connection's reading loop, which does not read on while the client does not read its
responses. Requests that may wait for a router or a peer (route, salvo, protect, lock,
release, label, failover, members, plugin commands) run concurrently, so a slow router
never delays a ping; :data:`MAX_IN_FLIGHT` of them may be waiting per connection, more are
refused. One refused before it reaches a router (not permitted, out of range …) holds no
place: before refusing, the loop lets the requests it has just read run their checks.

Events: one fan-out task per API reads the node's event bus, encodes each event once, and
writes it straight into every subscribed connection whose socket is keeping up; a connection
that is behind gets it in its own bounded backlog, drained by its own task. A client whose
backlog overflows has stopped reading: its TCP connection is cut at once (no close
handshake: a close frame would wait behind everything already queued for it), what was
queued for it is dropped, and it never slows the others. A heartbeat goes to every
connection that sent nothing for ``heartbeat_timeout_ms / 3``: one task per API checks them
all every half of that (a task per connection would be a thousand more objects for the
garbage collector to walk with a thousand clients), so a quiet connection gets one within
half an interval of it being due.

Logs: a short call (``tieline status``, a script that routes and leaves) is logged at
DEBUG only: the connection opening (websockets' own lines, all moved to DEBUG), who
authenticated, and its end. A subscriber (a panel, a long-lived client) is logged at INFO
when it first subscribes and when it goes, once each. Refused origins and clients cut for
being too slow are WARNINGs, as above.
"""

from __future__ import annotations

import asyncio
import collections
import http
import importlib.resources
import json
import logging
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

import tieline
from tieline import (
    ClientApi,
    InvalidRequest,
    NotAuthenticated,
    Permission,
    PortKind,
    Principal,
    ProtectKind,
    RateLimitedLog,
    RequestError,
    RouterSpec,
    RoutingService,
    Subscription,
    TielineError,
    parse_hostport,
)

from . import messages, panels
from .http import PanelFiles, is_websocket, respond, secure
from .origins import OriginPolicy, anonymous_allowed, parse_origin

if TYPE_CHECKING:
    from tieline import Node

log = logging.getLogger(__name__)


class _DebugLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger handed to websockets: its INFO lines (connection open, connection
    closed, connection rejected, server listening, closing, closed) go out at DEBUG; the
    node says what people need itself ("serving …", subscribers, refusals)."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return self.logger.isEnabledFor(logging.DEBUG if level == logging.INFO else level)


_websockets_log = _DebugLogger(log, {})

#: Requests of one connection that may be waiting for a router (or a peer) at once.
MAX_IN_FLIGHT = 256
#: Requests of one connection alive at once (waiting, or their response not yet written
#: because the client does not read); beyond this the connection is not read.
MAX_ALIVE = 2 * MAX_IN_FLIGHT
#: Request types answered without waiting for a router or a peer.
IMMEDIATE = frozenset({"hello", "ping", "status", "snapshot", "subscribe", "unsubscribe",
                       "panels"})
#: A refused origin is logged at WARNING at most this often (seconds); repeats at DEBUG.
ORIGIN_LOG_INTERVAL_S = 60.0


class WebSocketApi(ClientApi):
    """``{"type": "websocket", "listen": "127.0.0.1:8181"}`` in ``apis``."""

    name = "websocket"
    #: the message types answered here (schemas/api/request); plugins' commands take others
    commands: ClassVar[frozenset[str]] = frozenset({
        "hello", "ping", "snapshot", "subscribe", "unsubscribe", "route", "salvo", "protect",
        "lock", "release", "label", "status", "failover", "members", "panels",
    })
    settings_schema: ClassVar[dict[str, Any]] = {
        "properties": {
            "max_message_bytes": {
                "description": "Largest message a client may send; larger ones close the "
                               "connection with code 1009.",
                "type": "integer", "minimum": 1024, "maximum": 67108864, "default": 1048576,
            },
            "heartbeat_timeout_ms": {
                "description": "Clients consider the server dead after this long without a "
                               "message; the server sends a heartbeat every third of it.",
                "type": "integer", "minimum": 300, "maximum": 60000, "default": 1500,
            },
            "subscriber_queue": {
                "description": "Events queued for one client before it is dropped as too slow.",
                "type": "integer", "minimum": 16, "maximum": 1000000, "default": 4096,
            },
            "allowed_origins": {
                "description": "Web page origins (scheme://host[:port]) whose pages may "
                               "connect, beside the node's own panel and its cluster "
                               "members' panels; a connection carrying any other Origin "
                               "header (a browser's) is refused with HTTP 403.",
                "type": "array",
                "items": {"type": "string",
                          "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s@*]+$"},
                "uniqueItems": True,
                "default": [],
            },
            "tls": {
                "description": "Serve wss:// with this certificate and key (PEM files in the "
                               "settings folder).",
                "type": "object",
                "properties": {
                    "certificate": {"description": "Certificate chain (PEM).", "type": "string",
                                    "x-settings-file": True},
                    "key": {"description": "Private key (PEM).", "type": "string",
                            "x-settings-file": True},
                },
                "required": ["certificate", "key"],
                "additionalProperties": False,
            },
            "panels": panels.SETTINGS_SCHEMA,
        },
    }

    @classmethod
    def check(cls, options: dict[str, Any], routers: Mapping[str, RouterSpec]
              ) -> list[tuple[str | tuple[str | int, ...], str]]:
        problems: list[tuple[str | tuple[str | int, ...], str]] = []
        for i, text in enumerate(options.get("allowed_origins", ())):
            if parse_origin(text) is None:
                problems.append((("allowed_origins", i), f"'{text}' is not an origin; write "
                                 "scheme://host[:port] as a browser sends it, e.g. "
                                 "'https://panel.example:8443'"))
        problems += panels.check(options.get("panels"), routers)
        return problems

    def __init__(self, node: Node, options: dict[str, Any]) -> None:
        super().__init__(node, options)
        self.host, self.port = parse_hostport(options["listen"])
        self.max_message_bytes = options.get("max_message_bytes", 1048576)
        self.heartbeat_timeout_ms = options.get("heartbeat_timeout_ms", 1500)
        self.heartbeat_ms = max(100, self.heartbeat_timeout_ms // 3)
        self.subscriber_queue = options.get("subscriber_queue", 4096)
        #: who may open the API from a web page (origins.py)
        self.origins = OriginPolicy("https" if options.get("tls") else "http",
                                    options.get("allowed_origins", ()), self._member_urls)
        #: the ``panels`` request's answer: every default filled in
        self.panels = panels.resolve(options.get("panels"), {
            rid: rt.state.spec for rid, rt in node.routing.routers.items()})
        #: the panel's static files, read when the API starts
        self.panel_files = PanelFiles(None, {})
        #: refused origins, each warned about at most once a minute
        self._origins_refused = RateLimitedLog(log, ORIGIN_LOG_INTERVAL_S)
        self.server: Server | None = None
        self.connections: set[Connection] = set()
        self.subscribers: set[Connection] = set()
        self._events: Subscription | None = None
        self._fanout_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._heartbeat_seq = 0
        self._seq = 0  #: events fanned out so far
        self.extra_schemas = {name: cmd.schema for name, cmd in node.commands.items()}

    def _ssl(self) -> ssl.SSLContext | None:
        tls = self.options.get("tls")
        if not tls:
            return None
        folder = self.node.settings.folder
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(folder / tls["certificate"], folder / tls["key"])
        except (OSError, ssl.SSLError) as exc:
            raise TielineError(
                f"websocket API: cannot load TLS certificate/key from the settings folder: {exc}"
            ) from exc
        return context

    @property
    def scheme(self) -> str:
        return "wss" if self.options.get("tls") else "ws"

    def describe(self) -> str:
        port = self.port
        if self.server is not None and self.server.sockets:
            port = self.server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"

    def client_url(self) -> str:
        """tieline's own clients speak this API: its URL (:meth:`describe`)."""
        return self.describe()

    def page_url(self) -> str:
        """The operator's panel, served on the API's own address (http.py)."""
        scheme, rest = self.describe().split("://", 1)
        return f"{'https' if scheme == 'wss' else 'http'}://{rest}/"

    def _member_urls(self) -> list[str | None]:
        """The client URLs of the other members of the node's cluster, as its failover
        strategy knows them now (none for a standalone node)."""
        strategy = self.node.strategy
        return [] if strategy is None else [peer.get("url") for peer in strategy.peers_status()]

    async def start(self) -> None:
        folder = importlib.resources.files(__package__) / "panel"
        if isinstance(folder, Path):
            self.panel_files = PanelFiles.load(folder)
        else:  # a package inside an archive: no real files to check for links
            log.warning("web panel: %s is not a folder on disk: the panel is not served",
                        folder)
        # the bus never waits for us; we never wait for a client (see _fanout)
        self._events = self.node.bus.subscribe(f"{self.name} API {self.options['listen']}",
                                               maxsize=1_000_000)
        self._fanout_task = asyncio.create_task(self._fanout(self._events), name="ws fan-out")
        self._heartbeat_task = asyncio.create_task(self._heartbeats(), name="ws heartbeats")
        try:
            self.server = await serve(
                self._handle, self.host, self.port, ssl=self._ssl(),
                max_size=self.max_message_bytes, compression=None, close_timeout=2,
                ping_interval=None, logger=_websockets_log,
                process_request=self._process_request, process_response=self._secure,
            )
        except OSError as exc:
            raise TielineError(
                f"websocket API cannot listen on {self.options['listen']}: "
                f"{exc.strerror or exc}; is another tieline running? Change 'listen' in "
                "tieline.json"
            ) from exc

    async def close(self) -> None:
        for task in (self._fanout_task, self._heartbeat_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._events is not None:
            self._events.close("API closed")
        if self.server is None:
            return
        self.server.close(close_connections=True)
        try:
            async with asyncio.timeout(3.0):
                await self.server.wait_closed()
        except TimeoutError:  # clients that do not read cannot take a close frame
            for conn in list(self.connections):
                conn.ws.transport.abort()
            await self.server.wait_closed()

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """A WebSocket handshake goes on to the origin check; any other request is a
        request for a file of the panel (http.py)."""
        if not is_websocket(request):
            return respond(request, self.panel_files)
        return self._check_origin(ws, request)

    def _secure(self, ws: ServerConnection, request: Request, response: Response) -> None:
        """Every HTTP response but a handshake's 101 carries the security headers
        (http.py): files, refusals, and websockets' own answers to bad handshakes."""
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            secure(response.headers, tls=bool(self.options.get("tls")))

    def _check_origin(self, ws: ServerConnection, request: Request) -> Response | None:
        """Refuse (HTTP 403) a handshake carrying an ``Origin`` that is not the node's own
        panel, a cluster member's panel or in ``allowed_origins`` (origins.py).

        Browsers send ``Origin`` with every WebSocket handshake; other clients send none.
        """
        origins = request.headers.get_all("Origin")
        if not origins:
            return None
        hosts = request.headers.get_all("Host")
        local = ws.local_address
        origin = parse_origin(origins[0]) if len(origins) == 1 else None
        if origin is not None:
            why = self.origins.accepts(origin, hosts[0] if len(hosts) == 1 else None,
                                       local[1] if local else None)
            if why is not None:
                log.debug("websocket API %s: a web page of %s connects (%s)", self.describe(),
                          origin, why)
                return None
        shown = ", ".join(origins)[:200]
        address = ws.remote_address[0] if ws.remote_address else "?"
        self._origins_refused.log(
            shown, logging.WARNING, "websocket API %s: refused a connection from %s carrying "
            "Origin %r (a web page in a browser, Host %r); add the origin to "
            "\"allowed_origins\" of this API in tieline.json if that page may control the "
            "routers (the node's own panel and its cluster members' panels need not be "
            "listed)", self.describe(), address, shown, ", ".join(hosts)[:200])
        return ws.respond(http.HTTPStatus.FORBIDDEN,
                          f"Origin {shown} is not allowed to use this API\n")

    def subscribe(self, conn: Connection) -> None:
        """Start sending events to ``conn`` with the first one not yet published.

        Events published but not yet fanned out are already in the snapshot that the
        subscribe response carries (taken in the same step), so ``conn`` skips them.
        """
        pending = self._events.pending() if self._events is not None else 0
        conn.after_seq = self._seq + pending
        self.subscribers.add(conn)
        self.node.settle_memory_soon()  # a long-lived client: settle once they are in

    async def _fanout(self, events: Subscription) -> None:
        """Encode each event once; write it to every subscriber that keeps up."""
        routing = self.node.routing
        async for event in events:
            self._seq += 1
            if not self.subscribers:  # nobody to tell: not even built
                continue
            message = messages.event_message(event, routing)
            if message is None:
                continue
            data = json.dumps(message, separators=(",", ":")).encode()
            seq = self._seq
            direct = [conn.ws for conn in list(self.subscribers) if conn.deliver(seq, data)]
            if direct:
                broadcast(direct, data, text=True)

    async def _heartbeats(self) -> None:
        """A heartbeat to every connection that was sent nothing for a heartbeat interval
        (one with a backlog is being sent events): all in one write each, no task each."""
        interval = self.heartbeat_ms / 1000
        while True:
            await asyncio.sleep(interval / 2)
            now = time.monotonic()
            quiet = [conn for conn in self.connections
                     if not conn.backlog and not conn.dropped
                     and now - conn.last_sent >= interval]
            if not quiet:
                continue
            self._heartbeat_seq += 1
            for conn in quiet:
                conn.last_sent = now
            broadcast([conn.ws for conn in quiet],
                      json.dumps({"type": "heartbeat", "seq": self._heartbeat_seq},
                                 separators=(",", ":")))

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(self, ws)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)


def _error(request_id: Any, error: RequestError) -> dict[str, Any]:
    return {"type": "response", "id": request_id, "ok": False, "error": error.to_dict()}


class Connection:
    """One client connection."""

    def __init__(self, api: WebSocketApi, ws: ServerConnection) -> None:
        self.api = api
        self.ws = ws
        self.node = api.node
        self.routing: RoutingService = api.node.routing
        address = ws.remote_address
        self.address: str | None = address[0] if address else None
        self.principal: Principal | None = None
        origins = ws.request.headers.get_all("Origin") if ws.request is not None else []
        #: the page's origin, for a browser's connection (checked in the handshake)
        self.origin = parse_origin(origins[0]) if len(origins) == 1 else None
        #: whether a hello without a token may get the anonymous loopback level: not for a
        #: web page of a foreign name resolving to loopback (origins.py, DNS rebinding)
        self.anonymous_ok = not origins or (self.origin is not None
                                            and anonymous_allowed(self.origin))
        self.tasks: set[asyncio.Task[None]] = set()  #: every task of this connection
        self.requests: set[asyncio.Task[None]] = set()  #: of these, requests that may wait
        self.waiting = 0  #: of these, how many are waiting for a router (or a peer)
        self.subscribed = False
        self.subscribed_at: float | None = None  #: monotonic time of its first subscribe
        self.client_name = "unnamed client"  #: from its hello, for logs
        self.dropped = False
        self.after_seq = 0  #: events up to this one were in the snapshot sent with subscribe
        self.backlog: collections.deque[bytes] = collections.deque()
        self._backlog_ready = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self.last_sent = time.monotonic()
        self._write_limit = 32768  # websockets' default write_limit (high-water mark)

    async def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        self.last_sent = time.monotonic()
        await self.ws.send(text)

    # -- events ------------------------------------------------------------------------
    def deliver(self, seq: int, data: bytes) -> bool:
        """Take one encoded event; True when it may be written straight to the socket now.

        Called by the fan-out task for every event, in order. A connection that is keeping up
        (empty backlog, socket buffer under the high-water mark) is written directly, in one
        batch with the others; otherwise the event joins this connection's backlog.
        """
        if seq <= self.after_seq or self.dropped:
            return False
        ws = self.ws
        if (not self.backlog and ws.protocol.state is State.OPEN
                and ws.transport.get_write_buffer_size() < self._write_limit):
            self.last_sent = time.monotonic()
            return True
        if len(self.backlog) >= self.api.subscriber_queue:
            self._cut(f"too slow: {len(self.backlog)} events queued and not read")
            return False
        self.backlog.append(data)
        self._backlog_ready.set()
        return False

    async def _drain_backlog(self) -> None:
        try:
            while True:
                await self._backlog_ready.wait()
                self._backlog_ready.clear()
                while self.backlog and not self.dropped:
                    self.last_sent = time.monotonic()
                    await self.ws.send(self.backlog[0], text=True)
                    if self.backlog:
                        self.backlog.popleft()
        except ConnectionClosed:
            return

    async def run(self) -> None:
        try:
            await self.send({
                "type": "hello", "protocol": messages.PROTOCOL,
                "server": f"tieline/{tieline.__version__}",
                "node": self.node.status.to_dict(),
                "heartbeat_ms": self.api.heartbeat_ms,
                "heartbeat_timeout_ms": self.api.heartbeat_timeout_ms,
                "max_message_bytes": self.api.max_message_bytes,
            })
            async for raw in self.ws:
                await self._receive(raw)
        except ConnectionClosed:
            pass
        finally:
            if self in self.api.subscribers:
                self.api.subscribers.discard(self)
                self.node.settle_memory_soon()  # collect what it leaves behind
            self.backlog.clear()
            self._log_end()
            tasks = list(self.tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def describe(self) -> str:
        """Who this is, for logs: address, client software, user."""
        user = f", user {self.principal.name}" if self.principal is not None else ""
        return f"{self.address} ({self.client_name}{user})"

    def _log_end(self) -> None:
        """Say the connection ended: at INFO for a subscriber (its arrival was at INFO
        too), unless it was cut (a WARNING said so); at DEBUG for anything else."""
        code = self.ws.close_code
        how = f"close code {code}" if code is not None else "no close code"
        if self.subscribed_at is not None and not self.dropped:
            log.info("websocket client %s gone after %.0f s (%s)", self.describe(),
                     time.monotonic() - self.subscribed_at, how)
        else:
            log.debug("websocket client %s closed (%s)", self.describe(), how)

    async def _receive(self, raw: str | bytes) -> None:
        """Serve one client message; return when the next one may be read.

        What waits for nothing is answered here, in order; the send waits while the client
        does not read, and so does the next read. What may wait for a router runs in a
        task of its own, counted in ``waiting`` while it waits.
        """
        try:
            message = messages.parse_request(raw, self.api.extra_schemas)
        except messages.InvalidMessage as error:
            await self.send(_error(error.request_id, error))
            return
        if message["type"] in IMMEDIATE:
            await self.send(await self._response(message))
            return
        while len(self.requests) >= MAX_ALIVE:  # their responses wait for the client to read
            await asyncio.wait(self.requests, return_when=asyncio.FIRST_COMPLETED)
        if self.waiting >= MAX_IN_FLIGHT:
            # requests just read have not run yet: let them reach the router (or fail)
            await asyncio.sleep(0)
            if self.waiting >= MAX_IN_FLIGHT:
                error = InvalidRequest(f"too many requests in flight ({MAX_IN_FLIGHT} waiting "
                                       "for a router); wait for responses first")
                await self.send(_error(message.get("id"), error))
                return
        self.waiting += 1  # from now: a request read but not yet run may wait too
        task = asyncio.create_task(self._serve(message), name=f"ws {message['type']}")
        self.requests.add(task)
        self.tasks.add(task)
        task.add_done_callback(self.requests.discard)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, message: dict[str, Any]) -> None:
        """A request that may wait: counted in ``waiting`` until it has its answer."""
        try:
            response = await self._response(message)
        finally:
            self.waiting -= 1
        try:
            await self.send(response)
        except ConnectionClosed:
            pass

    async def _response(self, message: dict[str, Any]) -> dict[str, Any]:
        request_id = message.get("id")
        try:
            result = await self._dispatch(message)
            return {"type": "response", "id": request_id, "ok": True, "result": result or {}}
        except RequestError as error:
            return _error(request_id, error)
        except Exception as exc:  # a bug must cost one request, not the connection
            log.exception("websocket API: %s request failed", message["type"])
            return {"type": "response", "id": request_id, "ok": False,
                    "error": {"code": "error",
                              "message": f"internal error: {type(exc).__name__}: {exc}"}}

    def _require(self, level: Permission, action: str) -> Principal:
        if self.principal is None:
            raise NotAuthenticated("send hello with a token first")
        RoutingService.require(self.principal, level, action)
        return self.principal

    async def _dispatch(self, m: dict[str, Any]) -> dict[str, Any] | None:
        mtype = m["type"]
        routing = self.routing
        if mtype == "hello":
            if m["protocol"] > messages.PROTOCOL:
                raise InvalidRequest(
                    f"protocol {m['protocol']} is not supported; this server speaks "
                    f"{messages.PROTOCOL}", field="protocol")
            if not m.get("token") and not self.anonymous_ok:
                raise NotAuthenticated(
                    f"a token is required: this connection comes from a web page of "
                    f"{self.origin}, and only pages opened at a loopback address (127.0.0.1, "
                    "[::1]) or localhost may connect without one", field="token")
            self.principal = self.node.auth.authenticate(m.get("token"), self.address)
            name = m.get("client") or "unnamed client"  # printable only: it goes to logs
            self.client_name = "".join(c if c.isprintable() else "?" for c in name)
            log.debug("websocket client %s authenticated (level %d)", self.describe(),
                      self.principal.level)
            return {"user": {"name": self.principal.name, "level": int(self.principal.level)},
                    "node": self.node.status.to_dict()}
        if mtype in self.node.commands:
            command = self.node.commands[mtype]
            principal = self._require(command.level, mtype)
            return await command.handler(self.node, principal, m)
        principal = self._require(Permission.WATCH, "watch")
        if mtype == "ping":
            return {}
        if mtype == "panels":
            return {"panels": self.api.panels}
        if mtype == "status":
            return self.node.status_report()
        if mtype == "snapshot":
            return messages.snapshot(routing, m.get("routers"))
        if mtype == "subscribe":
            if not self.subscribed:
                self.subscribed = True
                if self.subscribed_at is None:
                    self.subscribed_at = time.monotonic()
                    log.info("websocket client %s subscribed (level %d)", self.describe(),
                             principal.level)
                self.api.subscribe(self)  # the snapshot below is taken in this same step
                if self._drainer is None:
                    self._drainer = asyncio.create_task(self._drain_backlog(), name="ws backlog")
                    self.tasks.add(self._drainer)
            return messages.snapshot(routing) if m.get("snapshot", True) else {}
        if mtype == "unsubscribe":
            self.subscribed = False
            self.api.subscribers.discard(self)
            return {}
        if mtype == "route":
            done = await routing.route(principal, m["router"], m["destination"] - 1,
                                       m["source"] - 1, m.get("levels"))
            spec = routing.routers[m["router"]].state.spec
            return {"crosspoints": [messages.crosspoint_dict(spec, x.level, x.destination,
                                                             x.source) for x in done]}
        if mtype == "salvo":
            result = await routing.take_salvo(principal, m["name"])
            return messages.salvo_result(result, routing)
        if mtype in ("protect", "lock"):
            await routing.protect(principal, m["router"], m["destination"] - 1, m.get("levels"),
                                  ProtectKind(mtype))
            return {}
        if mtype == "release":
            await routing.release(principal, m["router"], m["destination"] - 1, m.get("levels"),
                                  force=m.get("force", False))
            return {}
        if mtype == "label":
            await routing.set_label(principal, m["router"], PortKind(m["kind"]), m["index"] - 1,
                                    m["text"])
            return {}
        if mtype in ("failover", "members"):
            RoutingService.require(principal, Permission.ADMIN,
                                   "run failover operations" if mtype == "failover"
                                   else "change the cluster's members")
            strategy = self.node.strategy
            if strategy is None:
                raise InvalidRequest(
                    f"node '{self.node.status.node}' is standalone: it has no failover "
                    "strategy", field="type")
            if mtype == "failover":
                return await strategy.switch_back()
            return await strategy.change_member(m["action"], m["address"])
        raise InvalidRequest(f"message type '{mtype}' is not handled here", field="type")

    def _cut(self, reason: str) -> None:
        """Drop a client that stopped reading: cut its TCP connection now, no close
        handshake (a close frame would wait behind everything queued for it), and let go of
        everything queued for it."""
        if self.dropped:
            return
        self.dropped = True
        self.api.subscribers.discard(self)
        self.backlog.clear()
        log.warning("websocket client %s dropped: %s; connection cut", self.address, reason)
        self.ws.transport.abort()  # its write buffer goes with it; run() then cleans up

