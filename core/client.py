"""Python client for the WebSocket API, with endpoint failover.

::

    async with Client(["ws://10.0.0.1:8181", "ws://10.0.0.2:8181"], token=TOKEN) as client:
        await client.subscribe()                 # mirror state and receive events
        await client.route("studio", 5, 3)       # returns after the router confirmed it
        print(client.routers["studio"].source("video", 5))

Numbers are 1-based, levels are named, as in the API.

Failover (``failover=True``, the default):

- **Connecting.** Endpoints are tried in order. A node whose hello says it is ``standby`` is
  not used while an active node answers: the client tries the active node the standby
  names first (adding its URL to ``endpoints`` when new), then the other endpoints. A
  standby is used only when no active node answers; reads work there, writes are held
  (see *Standby* below).
- **Epochs.** The client remembers the highest ``epoch`` any node announced
  (``max_epoch``, kept across reconnects). A node announcing a lower one is not
  authoritative (a node left behind by a failover): the client refuses it when connecting
  and leaves it when it is the connected one; it never sends it a request.
- **A dead server** is declared after ``heartbeat_timeout_ms`` (from the server's hello)
  without any message, or when the connection closes. The client then looks for a node:
  the active node the lost one named, then the endpoints after the lost one, the lost one
  last; passes repeat every 25 ms for about 2 s, then with a backoff growing to 1 s, for
  at most ``failover_timeout_s``. On the new node it authenticates again, subscribes again if it was
  subscribed (the mirror is refreshed in place from the new snapshot; listeners and event
  streams carry on), sends the requests that were waiting, and gives listeners a
  ``reconnected`` event. When no node takes over in time, the client closes: ``closed``
  becomes true, listeners get a ``closed`` event, event streams end, and every waiting
  request raises :class:`ConnectionLost`.
- **Requests.** An acknowledged request (its response arrived) is never sent again and
  never lost. A request made while the client is between nodes waits for the next one. A
  request sent but not answered when its connection was lost is sent again on the next node
  when it is idempotent (:data:`IDEMPOTENT_REQUESTS`: doing it twice leaves what doing it
  once does), unless :attr:`Client.max_lost_connections` connections were lost while it
  waited, and only within ``retry_window_s`` of the call (a route made much later than asked
  would surprise the operator). Otherwise, and for any other request (plugin commands), it
  raises :class:`ConnectionLost` saying whether it may have been carried out.
- **Standby.** When the connected node becomes standby (a ``status`` event: subscribed
  clients only) or refuses a write with the error ``standby``, the client moves to the
  active node it names, or to any active endpoint, and sends the refused write there. While
  no active node answers, it stays, holds the write and tries again with backoff (at once
  when the node announces it is active), until ``retry_window_s`` after the call; then the
  write raises the node's :class:`~tieline.errors.NodeStandby` error.

Events the client makes itself, given to listeners and event streams like the server's
(they are not API messages)::

    {"type": "event", "event": "disconnected", "endpoint": URL, "reason": TEXT}
    {"type": "event", "event": "reconnected", "endpoint": URL, "previous": URL,
     "reason": TEXT, "node": STATUS, "resubscribed": BOOL}
    {"type": "event", "event": "closed", "reason": TEXT}      # failover gave up
    {"type": "event", "event": "overflow", "lost": N}           # an event stream fell behind

An event stream (:meth:`Client.events`) holds at most ``maxsize`` events that were not
read. One that falls further behind drops what does not fit, and gives, once it was read
down to empty, an ``overflow`` event saying how many it dropped; then it queues again. Its
reader then knows its own view is incomplete: the client's mirror (``client.routers``) is
kept up to date whatever the streams do, and a ``snapshot`` gives the rest.

**Host names with several addresses.** An endpoint whose host is a name (not an IP
address) stands for every address the name resolves to (A and AAAA records, in the
resolver's order): DNS failover, the way a site may give one name to both servers. The
name is resolved again at each pass over the endpoints, so an address taken out of the DNS
is not tried after the next pass, and a new one is. Each address is tried as its own
endpoint; the URL (its host name) is still what TLS checks and what the ``Host`` header
says.

With ``failover=False`` the client keeps one connection: when it ends, waiting requests
raise :class:`ConnectionLost`, and a standby's refusal is raised as is.

**Staying on the node asked** (``follow_active=False``): the client uses the first endpoint
that answers, in order, whatever its state and epoch, and never moves because of them: a
standby is used as it is (its status, snapshot and events are that node's own), the
active node it names is not tried, a lower epoch is no reason to leave, and a write it
refuses raises :class:`~tieline.errors.NodeStandby` at once. This is how ``tieline
status`` reads a backup's own status. Losing the connection is handled as ``failover``
says (the next endpoint that answers, again whatever its state).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import itertools
import json
import logging
import random
import socket
import ssl as ssl_module
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State as WsState

from . import errors
from .backoff import backoff
from .errors import NodeStandby, RequestError, TielineError

log = logging.getLogger(__name__)

PROTOCOL = 1

#: Requests sent again on the next node when their connection was lost before the answer:
#: doing one twice leaves what doing it once does (a route sets a crosspoint, a release of
#: nothing is not an error, subscribing twice keeps one subscription).
IDEMPOTENT_REQUESTS = frozenset({
    "ping", "status", "snapshot", "subscribe", "unsubscribe", "panels",
    "route", "salvo", "protect", "lock", "release", "label",
})

_ERRORS: dict[str, type[RequestError]] = {
    cls.code: cls
    for cls in (errors.InvalidRequest, errors.NotFound, errors.OutOfRange,
                errors.NotAuthenticated, errors.PermissionDenied, errors.Refused,
                errors.RouterOffline, errors.ConfirmTimeout, errors.ReadOnly,
                errors.NotSaved)
}


class ConnectionLost(TielineError):
    """The connection to the server failed, or the server stopped answering."""


#: What can go wrong reaching one endpoint; the client then tries the next.
_CONNECT_ERRORS = (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed,
                   ConnectionLost, ValueError)


def _decode(raw: str | bytes) -> Any:
    """A server message; ValueError for anything :mod:`json` cannot read (nesting too deep
    included, and a number beyond Python's int-parsing limit)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def error_from(payload: dict[str, Any]) -> RequestError:
    """The exception for an API error payload (``code``, ``message``, ``field``)."""
    code = payload.get("code", "error")
    message = payload.get("message", "")
    field_name = payload.get("field")
    if code == "protected":
        return errors.Protected(message, owner=payload.get("owner", ""), field=field_name)
    if code == "standby":
        return errors.NodeStandby(message, active=payload.get("active"))
    cls = _ERRORS.get(code)
    if cls is None:
        error = RequestError(message, field=field_name)
        error.code = code
        return error
    return cls(message, field=field_name)


@dataclass
class RouterMirror:
    """A router as the client last heard of it. Numbers 1-based; sources None when unknown."""

    id: str
    levels: list[str]
    sources: int
    destinations: int
    online: bool
    labels: dict[str, list[str]]
    crosspoints: dict[str, list[int | None]]
    protects: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> RouterMirror:
        return cls(
            id=data["id"], levels=list(data["levels"]), sources=data["sources"],
            destinations=data["destinations"], online=data["online"],
            labels={k: list(v) for k, v in data["labels"].items()},
            crosspoints={k: list(v) for k, v in data["crosspoints"].items()},
            protects={(p["level"], p["destination"]): {"kind": p["kind"], "owner": p["owner"]}
                      for p in data["protects"]},
        )

    def source(self, level: str, destination: int) -> int | None:
        """The 1-based source feeding a 1-based destination on ``level``."""
        return self.crosspoints[level][destination - 1]

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "crosspoints":
            for xp in event["crosspoints"]:
                self.crosspoints[xp["level"]][xp["destination"] - 1] = xp["source"]
        elif kind == "labels":
            ports = self.labels["sources" if event["kind"] == "source" else "destinations"]
            for item in event["labels"]:
                ports[item["index"] - 1] = item["text"] or str(item["index"])
        elif kind == "protect":
            key = (event["level"], event["destination"])
            if event["protect"] is None:
                self.protects.pop(key, None)
            else:
                self.protects[key] = event["protect"]
        elif kind == "device":
            self.online = event["online"]


class _Link:
    """One WebSocket connection to one node, from its greeting to its end."""

    def __init__(self, url: str, ws: ClientConnection, greeting: dict[str, Any]) -> None:
        self.url = url
        self.ws = ws
        self.greeting = greeting
        node = greeting.get("node")
        self.node: dict[str, Any] = dict(node) if isinstance(node, dict) else {}
        self.reader: asyncio.Task[None] | None = None
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}  #: the client's own
        self.held: list[dict[str, Any]] = []  #: events received before the link was in use
        self.ended = asyncio.Event()
        self.reason: str | None = None  #: why it ended
        self.abandon: str | None = None  #: why the client closes it (set before closing)
        self.retired = False  #: replaced by a link to an active node
        self.refused_active: str | None = None  #: ``active`` of its last standby refusal
        self.active_again = asyncio.Event()  #: a status event said it is active (again)

    @property
    def epoch(self) -> int:
        epoch = self.node.get("epoch")
        return epoch if isinstance(epoch, int) else 0

    @property
    def standby(self) -> bool:
        return self.node.get("state") == "standby"

    def describe(self) -> str:
        name = self.node.get("node")
        return f"node '{name}' at {self.url}" if name else self.url


@dataclass(eq=False)
class _Call:
    """One request of the user, from the call until its answer (through failovers)."""

    id: int
    message: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    created: float  #: loop time of the call
    retryable: bool
    link: _Link | None = None  #: where it waits for its answer; None: waiting for a node
    sent: bool = False
    losses: int = 0  #: connections lost while it waited for its answer
    refusal: NodeStandby | None = None  #: set while held after a standby's refusal
    uncertain: bool = False  #: a connection was lost while it waited: it may have been done
    lost: str | None = None  #: why the last connection it was sent on ended
    timer: asyncio.TimerHandle | None = None

    @property
    def type(self) -> str:
        return str(self.message["type"])


def _key(url: str) -> str:
    return url.strip().rstrip("/")


def _delays(rng: random.Random | None = None) -> Iterator[float]:
    """Pauses between passes over the endpoints after a loss: 25 ms for about 2 s (a
    takeover, or a virtual IP moving, lasts that long at most in the fast profiles, and a
    refused connection costs nothing), then growing to 1 s."""
    rng = rng or random.Random()
    for _ in range(80):
        yield 0.025 * (1 + rng.uniform(-0.3, 0.3))
    yield from backoff(initial=0.1, factor=2.0, cap=1.0, jitter=0.3, rng=rng)


class Client:
    """A connection to a tieline cluster's WebSocket API, moving to another node on failure.

    :param endpoints: ``ws://`` or ``wss://`` URLs, tried in order (a comma-separated string
        is accepted too).
    :param token: the user's token (None: anonymous, loopback only where settings allow).
    :param connect_timeout: seconds allowed per endpoint for connect and hello.
    :param ssl: an SSLContext for wss:// endpoints (e.g. trusting a private CA).
    :param failover: move to another node when the connection is lost or the node turns
        standby, and retry what was not acknowledged (see the module's documentation).
    :param follow_active: move to the active node when the node in use is standby (or
        announces an epoch behind one already seen); False: stay on the node asked, to
        read that node's own status (see *Staying on the node asked* in the module's
        documentation).
    :param failover_timeout_s: how long the client looks for a node after losing one before
        it gives up and closes; None: never give up.
    :param retry_window_s: how long after a call its request may still be sent (again) to
        a node; a request not answered by then raises.
    """

    #: A request is not sent again once this many connections were lost while it waited for
    #: its answer: a request that every node it reaches dies on may be what kills them.
    max_lost_connections = 3

    def __init__(
        self, endpoints: str | Sequence[str], *, token: str | None = None,
        connect_timeout: float = 3.0, ssl: ssl_module.SSLContext | None = None,
        client_name: str = "tieline-python", failover: bool = True,
        failover_timeout_s: float | None = 10.0, retry_window_s: float = 5.0,
        follow_active: bool = True,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ValueError("give at least one endpoint URL, e.g. ws://127.0.0.1:8181")
        if failover_timeout_s is not None and failover_timeout_s <= 0:
            raise ValueError(f"failover_timeout_s must be above 0 (or None), not "
                             f"{failover_timeout_s}")
        if retry_window_s < 0:
            raise ValueError(f"retry_window_s must be 0 or more, not {retry_window_s}")
        self.endpoints = list(endpoints)
        self.token = token
        self.connect_timeout = connect_timeout
        self.ssl = ssl
        self.client_name = client_name
        self.failover = failover
        self.follow_active = follow_active
        self.failover_timeout_s = failover_timeout_s
        self.retry_window_s = retry_window_s
        self.endpoint: str | None = None  #: the URL of the node in use
        self.hello: dict[str, Any] = {}  #: that node's greeting
        self.user: dict[str, Any] = {}
        self.node: dict[str, Any] = {}  #: that node's status, as it last told it
        self.max_epoch = 0  #: the highest epoch any node announced (kept across reconnects)
        self.routers: dict[str, RouterMirror] = {}
        self.salvos: list[dict[str, Any]] = []
        self.close_reason: str | None = None  #: why the last connection ended
        self._link: _Link | None = None
        self._links: set[_Link] = set()
        self._ids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._task: asyncio.Task[None] | None = None  #: the failover or a move to the active
        self._tasks: set[asyncio.Task[Any]] = set()  #: connections being closed or retired
        self._recovering = False
        self._closing = False
        self._want_subscribed = False
        self._hunt_delays = _delays()
        self._last_note = ""
        self._last_seen = 0.0
        self._finished = asyncio.Event()

    # -- connection --------------------------------------------------------------------
    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect to the first active node that answers (else a standby) and authenticate;
        with ``follow_active=False``, to the first node that answers.

        :raises ConnectionLost: when no endpoint could be used (every reason listed).
        :raises RequestError: when the server refused the token.
        """
        if self._link is not None or self._recovering:
            await self.close()
        self._closing = False
        self._finished = asyncio.Event()
        self.close_reason = None
        self._want_subscribed = False
        failures: list[str] = []
        try:
            link = await self._connect_any(self.endpoints, failures, active_only=False,
                                           deadline=None, refusal_stops=True)
        except BaseException:
            await self._settle("connect failed")
            raise
        if link is None:
            await self._settle("cannot reach any tieline server")
            raise ConnectionLost("cannot reach any tieline server: " + "; ".join(failures))

    async def close(self) -> None:
        """Close the connection and stop failing over (idempotent).

        Requests still waiting raise :class:`ConnectionLost`.
        """
        self._closing = True
        self._recovering = False
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._link is not None:
            self.close_reason = "closed by the client"
            self._link = None
        await self._settle("closed by the client")

    async def _settle(self, reason: str) -> None:
        """Close every connection, wait for the closing, fail what still waits."""
        for link in list(self._links):
            self._discard(link, reason)
        while True:
            busy = [*self._tasks, *(link.reader for link in self._links
                                    if link.reader is not None and not link.reader.done())]
            if not busy:
                break
            await asyncio.gather(*busy, return_exceptions=True)
        for call in list(self._calls.values()):
            self._fail(call, f"the client was closed ({reason}) before the answer")
        self.close_reason = self.close_reason or reason
        self._finished.set()

    @property
    def connected(self) -> bool:
        """Whether a node is in use now (False while failing over)."""
        return self._link is not None and not self._link.ended.is_set()

    @property
    def closed(self) -> bool:
        """Whether the client is done: closed, never connected, or failover gave up."""
        return self._finished.is_set() or (self._link is None and not self._recovering)

    @property
    def waiting(self) -> int:
        """Requests waiting for a node to take them: not sent yet, or held after a
        standby's refusal."""
        return sum(1 for c in self._calls.values() if c.link is None and not c.future.done())

    async def wait_closed(self) -> str | None:
        """Wait until the connection in use ends; return why.

        With failover the client is by then looking for another node (``closed`` tells
        whether it gave up). Without a connection, returns at once why the last one ended.
        """
        link = self._link
        if link is None:
            return self.close_reason
        await link.ended.wait()
        return link.reason

    async def _connect_any(
        self, candidates: Sequence[str], failures: list[str], *, active_only: bool,
        deadline: float | None, replacing: _Link | None = None, previous: str | None = None,
        reason: str | None = None, refusal_stops: bool = False,
    ) -> _Link | None:
        """One pass over ``candidates``: use the first active node whose epoch is not behind,
        else (unless ``active_only``) the first such standby. A standby's ``active`` is tried
        next. With ``follow_active=False``: the first node that answers, whatever its state
        and epoch. Returns the link now in use, or None; each URL not used adds to ``failures``.
        """
        queue: list[tuple[str, tuple[str, int] | None]] = [(u, None) for u in candidates]
        tried: set[str] = set()
        fallback: _Link | None = None
        try:
            while queue:
                url, address = queue.pop(0)
                key = _key(url) if address is None else f"{_key(url)}@{address}"
                if key in tried:
                    continue
                tried.add(key)
                timeout = self._attempt_timeout(deadline)
                if timeout <= 0:
                    failures.append(f"{url}: not tried, failover time spent")
                    continue
                if address is None:
                    addresses = await self._resolve(url, timeout, failures)
                    if addresses is not None:  # a host name: each of its addresses, in turn
                        queue[:0] = [(url, a) for a in addresses]
                        continue
                try:
                    link = await self._probe(url, timeout, address)
                except _CONNECT_ERRORS as exc:
                    where = url if address is None else f"{url} ({_format(address)})"
                    failures.append(f"{where}: {_describe(exc)}")
                    continue
                problem = self._stale(link)
                if problem:
                    failures.append(f"{url}: {problem}")
                    self._note(f"refused {problem}")
                    self._discard(link, "epoch behind")
                    continue
                if link.standby and self.follow_active:
                    named = link.node.get("active")
                    if isinstance(named, str) and named:
                        self._learn(named)
                        if _key(named) not in tried:
                            queue.insert(0, (named, None))
                    failures.append(f"{url}: {link.describe()} is standby (active: "
                                    f"{named or 'unknown'})")
                    if fallback is None and not active_only:
                        fallback = link
                    else:
                        self._discard(link, "standby")
                    continue
                if await self._try_establish(link, failures, replacing, previous, reason,
                                             refusal_stops):
                    return link
            if fallback is not None:
                link, fallback = fallback, None
                problem = self._stale(link)  # a node seen after it may be ahead
                if problem:
                    failures.append(f"{link.url}: {problem}")
                    self._discard(link, "epoch behind")
                    return None
                if await self._try_establish(link, failures, replacing, previous, reason,
                                             refusal_stops):
                    return link
            return None
        finally:
            if fallback is not None:
                self._discard(fallback, "not used")

    def _attempt_timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.connect_timeout
        return min(self.connect_timeout, deadline - asyncio.get_running_loop().time())

    async def _resolve(self, url: str, timeout: float, failures: list[str]
                       ) -> list[tuple[str, int]] | None:
        """The addresses of ``url``'s host when it is a name (resolved now, every time);
        None when it is an IP address (or cannot be parsed: connecting says why)."""
        try:
            parsed = urlsplit(url)
            host, port = parsed.hostname, parsed.port
        except ValueError:
            return None
        if not host:
            return None
        try:
            ipaddress.ip_address(host)
            return None
        except ValueError:
            pass
        port = port or (443 if parsed.scheme == "wss" else 80)
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            failures.append(f"{url}: cannot resolve {host} ({_describe(exc)})")
            return []
        return list(dict.fromkeys((info[4][0], info[4][1]) for info in infos))

    async def _probe(self, url: str, timeout: float,
                     address: tuple[str, int] | None = None) -> _Link:
        """Open a connection (to ``address`` when given, the URL's host otherwise) and read
        the node's greeting (no hello sent yet)."""
        options: dict[str, Any] = {}
        if url.startswith("wss:") and self.ssl is not None:
            options["ssl"] = self.ssl  # else websockets verifies against the system's CAs
        if address is not None:
            options["host"], options["port"] = address
        async with asyncio.timeout(timeout):
            ws = await connect(url, compression=None, proxy=None, ping_interval=None,
                               max_size=None, close_timeout=2, **options)
            try:
                try:
                    greeting = _decode(await ws.recv())
                except ValueError:
                    raise ConnectionLost("the server's greeting is not JSON") from None
                if not isinstance(greeting, dict) or greeting.get("type") != "hello":
                    kind = greeting.get("type") if isinstance(greeting, dict) else greeting
                    raise ConnectionLost(f"expected hello from the server, got {kind!r}")
            except BaseException:
                ws.transport.abort()
                raise
        link = _Link(url, ws, greeting)
        self._links.add(link)
        return link

    def _stale(self, link: _Link) -> str | None:
        """Why ``link``'s node is not authoritative (its epoch is behind), or None; always
        None when the client stays on the node asked (``follow_active=False``)."""
        if link.epoch < self.max_epoch:
            if not self.follow_active:
                return None
            return (f"{link.describe()} announces epoch {link.epoch}, lower than epoch "
                    f"{self.max_epoch} already seen: not authoritative")
        self.max_epoch = link.epoch
        return None

    def _learn(self, url: str) -> None:
        if _key(url) not in {_key(u) for u in self.endpoints}:
            log.info("tieline client: learnt endpoint %s (the active node, as a standby "
                     "names it)", url)
            self.endpoints.append(url)

    async def _try_establish(self, link: _Link, failures: list[str], replacing: _Link | None,
                             previous: str | None, reason: str | None,
                             refusal_stops: bool) -> bool:
        try:
            await self._establish(link, replacing=replacing, previous=previous, reason=reason)
        except RequestError as exc:
            if refusal_stops:
                raise
            failures.append(f"{link.url}: refused: {exc}")
            return False
        except _CONNECT_ERRORS as exc:
            failures.append(f"{link.url}: {_describe(exc)}")
            return False
        return True

    async def _establish(self, link: _Link, *, replacing: _Link | None, previous: str | None,
                         reason: str | None) -> None:
        """Authenticate on ``link``, subscribe again if wanted, then put it in use."""
        link.reader = asyncio.create_task(self._read(link), name=f"tieline client {link.url}")
        hello: dict[str, Any] = {"protocol": PROTOCOL, "client": self.client_name}
        if self.token:
            hello["token"] = self.token
        try:
            async with asyncio.timeout(self.connect_timeout):
                result = await self._link_request(link, "hello", **hello)
            if isinstance(result.get("node"), dict):
                self._observe_status(link, result["node"])
            problem = self._stale(link)
            if problem:
                raise ConnectionLost(problem)
            snapshot = await self._link_request(link, "subscribe") if self._want_subscribed \
                else None
        except BaseException:
            self._discard(link, "not used")
            raise
        self._commit(link, result["user"], snapshot, replacing, previous, reason)
        await self._send_waiting(link)

    def _commit(self, link: _Link, user: dict[str, Any], snapshot: dict[str, Any] | None,
                replacing: _Link | None, previous: str | None, reason: str | None) -> None:
        """Put ``link`` in use (no await: nothing runs in between)."""
        self._link = link
        self._recovering = False
        self.endpoint = link.url
        self.hello = link.greeting
        self.user = user
        self.node = link.node
        self.close_reason = None
        self._hunt_delays = _delays()
        if snapshot is not None:
            self._load(snapshot)
        if replacing is not None:
            for call in self._calls.values():
                if call.link is replacing and call.retryable:
                    call.link = None  # sent again below, on the active node
            self._retire(replacing)
        if previous is not None:
            self._deliver({"type": "event", "event": "reconnected", "endpoint": link.url,
                           "previous": previous, "reason": reason, "node": dict(link.node),
                           "resubscribed": snapshot is not None})
        held, link.held = link.held, []
        for message in held:
            self._deliver(message)

    def _retire(self, link: _Link) -> None:
        """Stop using ``link``; close it once the requests bound to it are answered."""
        link.retired = True
        link.held = []
        bound = [c.future for c in self._calls.values()
                 if c.link is link and not c.future.done()]

        async def retire() -> None:
            if bound:
                await asyncio.wait(bound, timeout=self.retry_window_s)
            self._discard(link, f"moved to {self.endpoint}")

        self._spawn(retire(), f"tieline client: retire {link.url}")

    def _discard(self, link: _Link, reason: str) -> None:
        """Close ``link`` in the background; its reader ends with ``reason``."""
        link.abandon = link.abandon or reason

        async def close() -> None:
            try:
                await link.ws.close()
            finally:
                if link.reader is None:
                    self._link_ended(link, link.abandon or reason)

        if link.ws.state is not WsState.CLOSED or link.reader is None:
            self._spawn(close(), f"tieline client: close {link.url}")

    def _abandon(self, link: _Link, reason: str) -> None:
        """Leave the node in use (not authoritative): fail over as if it had died."""
        log.warning("tieline client: leaving %s: %s", link.url, reason)
        self._discard(link, reason)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, link: _Link) -> None:
        timeout = link.greeting.get("heartbeat_timeout_ms", 1500) / 1000
        reason = "server closed the connection"
        try:
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        raw = await link.ws.recv()
                except TimeoutError:
                    reason = f"no message from the server for {timeout:g} s (server dead?)"
                    link.ws.transport.abort()  # it would not answer a close frame either
                    return
                self._last_seen = time.monotonic()
                try:
                    message = _decode(raw)
                except ValueError:
                    reason = "the server sent something that is not JSON"
                    return
                if isinstance(message, dict):
                    self._dispatch(link, message)
        except ConnectionClosed as exc:
            reason = ("server closed the connection "
                      f"({exc.rcvd.code if exc.rcvd else 'no close frame'})")
        finally:
            self._link_ended(link, link.abandon or reason)

    def _link_ended(self, link: _Link, reason: str) -> None:
        """``link`` is gone: settle what waited on it; fail over if it was in use."""
        if link.ended.is_set():
            return
        link.reason = reason
        link.ended.set()
        self._links.discard(link)
        for future in link.waiting.values():
            if not future.done():
                future.set_exception(ConnectionLost(f"connection to {link.url} lost: {reason}"))
        link.waiting.clear()
        if link.ws.state is not WsState.CLOSED:
            self._spawn(link.ws.close(), f"tieline client: close {link.url}")
        bound = [c for c in self._calls.values() if c.link is link]
        for call in bound:
            call.uncertain = True
        if link is not self._link:  # retired, or never in use
            for call in bound:
                self._fail(call, f"connection to {link.url} lost before the answer ({reason})")
            return
        self._link = None
        self.close_reason = reason
        if self._closing or not self.failover:
            for call in bound:
                self._fail(call, f"connection to {link.url} lost before the answer ({reason})")
            if not self._closing:
                self._finished.set()
            return
        log.warning("tieline server %s: %s; failing over", link.url, reason)
        for call in bound:
            call.losses += 1
            call.lost = f"connection to {link.url} lost before the answer ({reason})"
            if not call.retryable:
                self._fail(call, call.lost)
            elif call.losses >= self.max_lost_connections:
                self._fail(call, f"{call.lost}; {call.losses} connections were lost while it "
                                 "waited for its answer, so it is not sent again")
            else:
                self._hold(call)
        self._deliver({"type": "event", "event": "disconnected", "endpoint": link.url,
                       "reason": reason})
        self._recovering = True
        previous = self._task
        self._task = asyncio.get_running_loop().create_task(
            self._recover(link, reason, previous), name="tieline client: failover")
        self._task.add_done_callback(self._after_task)

    async def _recover(self, lost: _Link, reason: str,
                       previous: asyncio.Task[None] | None) -> None:
        """Find a node after losing ``lost``, within ``failover_timeout_s``."""
        if previous is not None and previous is not asyncio.current_task():
            previous.cancel()
            await asyncio.gather(previous, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = None if self.failover_timeout_s is None \
            else loop.time() + self.failover_timeout_s
        named = lost.node.get("active") if lost.standby else None
        prefer = named or lost.refused_active
        delays = _delays()
        failures: list[str] = []
        try:
            while True:
                failures = []
                link = await self._connect_any(self._rotation(lost.url, prefer), failures,
                                               active_only=False, deadline=deadline,
                                               previous=lost.url, reason=reason)
                if link is not None:
                    log.info("tieline client: failed over from %s to %s", lost.url, link.url)
                    self._last_note = ""
                    return
                delay = next(delays)
                if deadline is not None and loop.time() + delay >= deadline:
                    break
                self._note(f"no tieline server took over yet ({'; '.join(failures)})",
                           f"; trying again in {delay:.2f} s")
                await asyncio.sleep(delay)
        except Exception as exc:  # a bug: say so rather than leave requests waiting
            log.exception("tieline client: failover failed")
            failures.append(f"internal error: {type(exc).__name__}: {exc}")
        within = "" if self.failover_timeout_s is None else \
            f" within {self.failover_timeout_s:g} s"
        self._give_up(f"lost {lost.url} ({reason}) and no tieline server took over{within}: "
                      f"{'; '.join(failures)}")

    def _rotation(self, lost_url: str, prefer: str | None) -> list[str]:
        """Endpoints to try after losing ``lost_url``: ``prefer``, those after it, it last."""
        keys = [_key(u) for u in self.endpoints]
        if _key(lost_url) in keys:
            i = keys.index(_key(lost_url))
            order = self.endpoints[i + 1:] + self.endpoints[:i + 1]
        else:
            order = [*self.endpoints, lost_url]
        if prefer and _key(prefer) != _key(lost_url):
            order.insert(0, prefer)
        return order

    def _give_up(self, reason: str) -> None:
        log.error("tieline client: %s", reason)
        self._recovering = False
        self.close_reason = reason
        for call in list(self._calls.values()):
            self._fail(call, reason)
        self._deliver({"type": "event", "event": "closed", "reason": reason})
        self._finished.set()

    def _after_task(self, task: asyncio.Task[None]) -> None:
        if task is not self._task:
            return
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("tieline client: failover task failed", exc_info=task.exception())
        if not self._closing and self._link is not None and self._held_by_standby():
            self._ensure_hunt()  # refusals that came while the task ran

    def _held_by_standby(self) -> bool:
        return any(c.refusal is not None and c.link is None and not c.future.done()
                   for c in self._calls.values())

    def _ensure_hunt(self) -> None:
        """Look for the active node (the node in use is standby), unless already looking."""
        if (self._closing or not self.failover or not self.follow_active or self._link is None
                or self._recovering):
            return
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(
            self._hunt(self._link), name="tieline client: move to the active node")
        self._task.add_done_callback(self._after_task)

    async def _hunt(self, link: _Link) -> None:
        """``link``'s node is standby: move to an active node, or wait and send again."""
        named = link.node.get("active") if link.standby else None
        named = named or link.refused_active
        candidates = [u for u in ([named] if named else []) + self.endpoints
                      if _key(u) != _key(link.url)]
        why = f"{link.describe()} is standby"
        failures: list[str] = []
        new = await self._connect_any(candidates, failures, active_only=True, deadline=None,
                                      replacing=link, previous=link.url, reason=why)
        if new is not None:
            log.info("tieline client: moved from %s (standby) to the active node %s",
                     link.url, new.url)
            self._last_note = ""
            return
        if link is not self._link or link.ended.is_set():
            return
        problem = self._stale(link)
        if problem:
            self._abandon(link, problem)
            return
        if not self._held_by_standby():
            self._note(f"{why} and no active node answers ({'; '.join(failures)})")
            return
        delay = next(self._hunt_delays)
        self._note(f"{why} and no active node answers ({'; '.join(failures)})",
                   f"; {self.waiting} request(s) held, trying again in {delay:.2f} s")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await link.active_again.wait()
        if link is self._link and not link.ended.is_set():
            await self._send_waiting(link)

    def _note(self, text: str, detail: str = "") -> None:
        """Log a failover step at INFO once, its repeats (same ``text``) at DEBUG."""
        log.log(logging.DEBUG if text == self._last_note else logging.INFO,
                "tieline client: %s%s", text, detail)
        self._last_note = text

    # -- messages ----------------------------------------------------------------------
    def _dispatch(self, link: _Link, message: dict[str, Any]) -> None:
        mtype = message.get("type")
        if mtype == "response":
            self._response(link, message)
        elif mtype == "event":
            if message.get("event") == "status" and isinstance(message.get("status"), dict):
                self._observe_status(link, message["status"])
            if link is self._link:
                self._deliver(message)
            elif not link.retired:
                link.held.append(message)

    def _response(self, link: _Link, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        future = link.waiting.pop(request_id, None)  # type: ignore[arg-type]
        if future is not None:
            if not future.done():
                if message.get("ok"):
                    future.set_result(message.get("result") or {})
                else:
                    future.set_exception(error_from(message.get("error") or {}))
            return
        call = self._calls.get(request_id)  # type: ignore[arg-type]
        if call is None or call.link is not link or call.future.done():
            return  # answered elsewhere already, or sent again elsewhere
        if message.get("ok"):
            result = message.get("result") or {}
            if call.type == "subscribe":
                self._want_subscribed = True
            elif call.type == "unsubscribe":
                self._want_subscribed = False
            elif call.type == "status":
                self._observe_status(link, {k: v for k, v in result.items() if k != "routers"})
            call.future.set_result(result)
            return
        error = error_from(message.get("error") or {})
        if isinstance(error, NodeStandby) and call.retryable and self.follow_active \
                and not self._closing:
            self._hold(call)
            call.refusal = error
            link.refused_active = error.active or link.refused_active
            link.active_again.clear()
            if error.active:
                self._learn(error.active)
            log.debug("tieline client: %s refused '%s': standby (active: %s)", link.url,
                      call.type, error.active)
            self._ensure_hunt()
            return
        call.future.set_exception(error)

    def _observe_status(self, link: _Link, status: dict[str, Any]) -> None:
        """A node's status (hello, status event or status result): epoch, standby, active."""
        link.node = dict(status)
        epoch = link.epoch
        if link is not self._link:
            self.max_epoch = max(self.max_epoch, epoch)
            return
        self.node = link.node
        if epoch > self.max_epoch:
            self.max_epoch = epoch
        if not self.failover or not self.follow_active or self._closing:
            return
        if epoch < self.max_epoch:
            self._abandon(link, f"{link.describe()} announced epoch {epoch}, lower than "
                                f"epoch {self.max_epoch} already seen: not authoritative")
        elif link.standby:
            named = link.node.get("active")
            if isinstance(named, str) and named:
                self._learn(named)
            link.active_again.clear()
            log.info("tieline client: %s is now standby (active: %s)", link.describe(),
                     named or "unknown")
            self._ensure_hunt()
        else:
            link.active_again.set()
            if self._task is None and self._held_by_standby():
                self._spawn(self._send_waiting(link), "tieline client: send held requests")

    def _deliver(self, message: dict[str, Any]) -> None:
        """An event to the mirror, then to every listener."""
        router = self.routers.get(message.get("router", ""))
        if router is not None:
            router.apply(message)
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                log.exception("tieline client: an event listener failed (it stays)")

    # -- requests ----------------------------------------------------------------------
    async def request(self, message_type: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its response (through failovers).

        :returns: the response's ``result``.
        :raises RequestError: the server's error (subclass by code).
        :raises ConnectionLost: when no node answered it (the message says whether it may
            have been carried out).
        """
        if self._link is None and not self._recovering:
            raise ConnectionLost(f"not connected ({self.close_reason or 'never connected'})")
        loop = asyncio.get_running_loop()
        request_id = next(self._ids)
        call = _Call(request_id, {"type": message_type, "id": request_id, **fields},
                     loop.create_future(), loop.time(),
                     self.failover and message_type in IDEMPOTENT_REQUESTS)
        self._calls[request_id] = call
        try:
            link = self._link
            if link is not None and not link.ended.is_set():
                await self._transmit(call, link)
            else:
                self._hold(call)
            return await call.future
        finally:
            self._calls.pop(request_id, None)
            if call.timer is not None:
                call.timer.cancel()

    async def _transmit(self, call: _Call, link: _Link) -> None:
        call.link = link
        call.sent = True
        call.refusal = None
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        with contextlib.suppress(ConnectionClosed):  # the reader then hands the call on
            await link.ws.send(json.dumps(call.message))

    async def _send_waiting(self, link: _Link) -> None:
        """Send the requests waiting for a node, oldest first, on ``link``."""
        waiting = sorted((c for c in self._calls.values()
                          if c.link is None and not c.future.done()), key=lambda c: c.id)
        for call in waiting:
            if link is not self._link or link.ended.is_set():
                return
            if call.link is None and not call.future.done():
                await self._transmit(call, link)

    def _hold(self, call: _Call) -> None:
        """``call`` waits for a node, until ``retry_window_s`` after it was made."""
        call.link = None
        if call.timer is None and not call.future.done():
            call.timer = asyncio.get_running_loop().call_at(
                call.created + self.retry_window_s, self._expire, call)

    def _expire(self, call: _Call) -> None:
        call.timer = None
        if call.future.done() or call.link is not None:
            return
        if call.refusal is not None:
            call.future.set_exception(NodeStandby(
                f"{call.refusal.message}; no active node took the '{call.type}' request "
                f"within {self.retry_window_s:g} s", active=call.refusal.active))
            return
        self._fail(call, f"not answered within the retry window ({self.retry_window_s:g} s): "
                         f"{call.lost or 'no tieline server connected'}")

    def _fail(self, call: _Call, why: str) -> None:
        if call.future.done():
            return
        if call.uncertain:
            outcome = "the request may or may not have been carried out"
        elif call.sent:
            outcome = "the request was not carried out"
        else:
            outcome = "the request was not sent"
        call.future.set_exception(ConnectionLost(f"'{call.type}' request: {why}; {outcome}"))

    async def _link_request(self, link: _Link, message_type: str,
                            **fields: Any) -> dict[str, Any]:
        """The client's own request on one link (hello, subscribing again)."""
        if link.ended.is_set():
            raise ConnectionLost(f"connection to {link.url} lost: {link.reason}")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        link.waiting[request_id] = future
        try:
            with contextlib.suppress(ConnectionClosed):  # the reader fails the future
                await link.ws.send(json.dumps({"type": message_type, "id": request_id,
                                               **fields}))
            return await future
        finally:
            link.waiting.pop(request_id, None)

    async def subscribe(self) -> None:
        """Mirror the node's state (``routers``, ``salvos``) and start receiving events.

        After a failover the client subscribes again by itself.
        """
        snapshot = await self.request("subscribe")
        self._load(snapshot)

    async def snapshot(self) -> dict[str, Any]:
        snapshot = await self.request("snapshot")
        self._load(snapshot)
        return snapshot

    def _load(self, snapshot: dict[str, Any]) -> None:
        """Replace the mirror; a router known before keeps its RouterMirror object."""
        routers = {}
        for data in snapshot["routers"]:
            mirror = RouterMirror.from_snapshot(data)
            known = self.routers.get(mirror.id)
            if known is not None:
                for item in dataclasses.fields(mirror):
                    setattr(known, item.name, getattr(mirror, item.name))
                mirror = known
            routers[mirror.id] = mirror
        self.routers = routers
        self.salvos = snapshot["salvos"]

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(event)`` for every event message (after the mirror applied it),
        the client's own ``disconnected``, ``reconnected`` and ``closed`` included."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.remove(listener)

    def events(self, maxsize: int = 10_000) -> EventStream:
        """Event messages from now on, as an async iterator; it ends when the client closes
        (not at a failover).

        The stream starts queueing at once (before the first ``anext``); ``aclose()`` it when
        done. Subscribe first, or no events come. At most ``maxsize`` events wait to be read;
        beyond that they are dropped and counted in an ``overflow`` event (see the module).
        """
        return EventStream(self, maxsize)

    async def status(self) -> dict[str, Any]:
        return await self.request("status")

    async def route(self, router: str, destination: int, source: int,
                    levels: Sequence[str] | None = None) -> dict[str, Any]:
        """Route 1-based ``source`` to ``destination``; returns after the router confirmed it."""
        fields: dict[str, Any] = {"router": router, "destination": destination, "source": source}
        if levels:
            fields["levels"] = list(levels)
        return await self.request("route", **fields)

    async def salvo(self, name: str) -> dict[str, Any]:
        """Take a salvo; the result lists ``taken`` and ``refused`` crosspoints."""
        return await self.request("salvo", name=name)

    async def protect(self, router: str, destination: int,
                      levels: Sequence[str] | None = None) -> None:
        await self.request("protect", router=router, destination=destination,
                           **({"levels": list(levels)} if levels else {}))

    async def lock(self, router: str, destination: int,
                   levels: Sequence[str] | None = None) -> None:
        await self.request("lock", router=router, destination=destination,
                           **({"levels": list(levels)} if levels else {}))

    async def release(self, router: str, destination: int,
                      levels: Sequence[str] | None = None, *, force: bool = False) -> None:
        await self.request("release", router=router, destination=destination, force=force,
                           **({"levels": list(levels)} if levels else {}))

    async def label(self, router: str, kind: str, index: int, text: str) -> None:
        await self.request("label", router=router, kind=kind, index=index, text=text)


class EventStream:
    """Events of one :class:`Client`, queued from the moment the stream was made, at most
    ``maxsize`` of them (the others dropped, and counted in an ``overflow`` event)."""

    def __init__(self, client: Client, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("an event stream holds at least one event")
        self._client = client
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.lost = 0  #: events dropped since the last overflow event was read
        client.add_listener(self._put)

    def _put(self, event: dict[str, Any]) -> None:
        if self.lost or self._queue.full():
            self.lost += 1  # once behind, nothing more until the reader caught up
            return
        self._queue.put_nowait(event)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self._queue.empty():
            return self._queue.get_nowait()
        if self.lost:
            lost, self.lost = self.lost, 0
            return {"type": "event", "event": "overflow", "lost": lost}
        finished = self._client._finished
        if finished.is_set():
            raise StopAsyncIteration
        getter = asyncio.ensure_future(self._queue.get())
        closer = asyncio.ensure_future(finished.wait())
        try:
            await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closer.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._put in self._client._listeners:
            self._client.remove_listener(self._put)


def _format(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__
