"""The Videohub TCP API: tieline seen by any Videohub client as a Videohub.

``{"type": "videohub", "listen": "127.0.0.1:9990", "router": "studio"}`` in ``apis`` serves
the Blackmagic Videohub Ethernet Protocol on a TCP port and maps it onto one tieline router,
so that Videohub control panels and software control any router tieline drives. The server
is the device role of :mod:`.codec`, and behaves as the protocol notes describe a real
Videohub (**[VH §n]** = ``shared/protocols/videohub.md``, section *n*).

Settings (the ``apis`` entry; docs/settings.md has the table)
    ``router`` (required): the router's id. ``level``: the level Videohub clients see
    (``VIDEO OUTPUT ROUTING`` shows its crosspoints); by default the first level of
    ``levels``, else the router's first level. ``levels``: the levels a route or lock from a
    Videohub client sets: a list of level names, or ``"all"`` (all levels follow); by
    default just ``level``. ``level`` must be one of ``levels``. ``model_name``,
    ``friendly_name`` (default: the router's id) and ``unique_id`` (default: 12 hex digits
    derived from the node's name, the router and ``listen``, so stable across restarts) fill
    ``VIDEOHUB DEVICE``; the counts come from the router. The Videohub protocol has no
    authentication [VH §1], so: ``clients`` lists the networks clients may connect from
    (default: loopback only; others are closed at once); ``permission`` is every client's
    tieline permission level (1 watch only, 2 route and lock — the default —, 3 also change
    labels); ``force_unlock`` lists the networks whose clients may force-unlock (``F``)
    locks held by others (default: nobody); ``max_clients``, ``max_block_bytes`` and
    ``client_buffer_bytes`` bound what clients may cost.

Connecting [VH §3]
    The server sends its whole state unprompted, in the block order of real 2.8 devices
    (:func:`.codec.prelude`): ``PROTOCOL PREAMBLE`` (``Version: 2.8``), ``VIDEOHUB DEVICE``
    (model name, friendly name, unique ID, the router's sources and destinations as video
    inputs and outputs, no processing units, monitoring outputs or serial ports),
    ``INPUT LABELS``, ``OUTPUT LABELS``, ``VIDEO OUTPUT LOCKS`` (rendered for this client),
    ``VIDEO OUTPUT ROUTING``, ``END PRELUDE``. A port without a label shows its 1-based
    number, as tieline shows it to people. An output whose source tieline does not know is
    left out of the routing table (the router reports every one once it is online).

Requests [VH §5, §7, §8]
    Each client's blocks are answered strictly in order, one ``ACK`` or ``NAK`` per block
    (a per-client queue; one block at a time). ``PING:`` → ``ACK``. A header alone (a status
    request) → ``ACK`` and the block in full, or ``NAK`` for a block this server does not
    have. ``VIDEO OUTPUT ROUTING`` lines are routes, ``VIDEO OUTPUT LOCKS`` lines locks,
    ``INPUT LABELS``/``OUTPUT LABELS`` lines labels; hardware status blocks from a client
    are ignored and answered ``ACK`` (as the emulator does); anything else — unknown blocks,
    blocks for ports this server does not have, ``CONFIGURATION`` (no take mode), lines
    that do not parse, bytes that break the framing — is answered ``NAK``. A block is checked
    whole first (ranges, the node being active, permission, protects in the way, the router
    being online): any problem is a ``NAK`` and nothing changes. Then every line goes
    through the RoutingService, together (a multi-line block is one take), and the block is
    answered ``ACK`` only when tieline confirmed every line: a route when the router's tally
    shows it, a lock when the protect is set. A refusal after that point (the router or a
    policy plugin said no, no confirmation in time, the node went standby) is a ``NAK``;
    lines already made stay made, and the status blocks say so ([VH §5.3]: clients update
    their model from status blocks only). Route to an output locked by another client:
    ``NAK``, the default the notes give [VH §5.3, §11].

ACK, then the change [VH §5.2, §5.4, §11 item 5]
    Changes go to **every** client, the requester included, as blocks of the changed lines
    only; the requester gets them **after** its ``ACK``. Since tieline publishes the tally
    (and the fan-out may write it) before the route call returns, a client's broadcasts
    are held back while one of its change requests is in flight and written right after
    the ``ACK``/``NAK``, in the order they came. Lines the request asked for that were
    already so (a route that is already made changes nothing, so nothing is broadcast) are
    then sent to the requester alone, as they are now, so that a client waiting for the
    status block to confirm its request (our driver does) need not re-read the table.

Broadcasts (one event-bus subscription per API; each block encoded once)
    ``CrosspointsChanged`` on the shown level → ``VIDEO OUTPUT ROUTING`` with the changed
    lines; ``LabelsChanged`` → ``INPUT LABELS``/``OUTPUT LABELS``; ``ProtectChanged`` on one
    of ``levels`` → ``VIDEO OUTPUT LOCKS``, rendered per client [VH §6]. Changes made
    anywhere — Videohub clients, WebSocket clients, other controllers, the device's own
    panel — arrive the same way. ``DeviceOffline`` → ``VIDEOHUB DEVICE`` with
    ``Device present: false``, and nothing else is sent or answered but ``PING``, the
    preamble and the device block until ``DeviceOnline`` re-sends every block except the
    preamble [VH §3.5]; a client that connects meanwhile gets the preamble and that device
    block only, as the emulator does. A client that connects gets no event older than its
    status dump. Writes never wait: a client whose unread output passes
    ``client_buffer_bytes`` (beyond one full status dump) is disconnected, and never slows
    the others.

Locks [VH §6, ARCHITECTURE.md]
    A Videohub lock is a tieline **protect** owned by the client's IP address, as a real
    Videohub owns locks per address: principal ``videohub <address>``; two clients on one
    host are one owner. ``O`` takes a protect on every level of ``levels``; ``U`` releases
    the client's own; ``F`` releases anyone's (a tieline user's protect or lock included)
    and is allowed only from ``force_unlock`` networks, made with permission level 3.
    Shown letters, per client and output, over ``levels``: ``L`` when any protect there is
    someone else's or is a tieline *lock* (nobody may route), else ``O`` when this client's
    address holds one, else ``U``. Protects set by tieline users and by the device
    itself show as ``L``.

Bounds: a line is at most :data:`.codec.MAX_LINE` bytes and a block ``max_block_bytes``; a
longer one is answered ``NAK`` and skipped up to its empty line. At most :data:`MAX_PENDING`
blocks of one client wait for their reply; beyond that its socket is not read (TCP flow
control holds the client back) and neither is it while its replies are not being read.
Garbage, half blocks, endless lines or a disconnect in the middle of a block concern that
client's connection only. Browsers: a web page can make a browser send an HTTP request to
this port, whose body would read as blocks; a line that opens like an HTTP request (``POST
/ HTTP/1.1``) cuts the connection before anything after it is read. Every refused client
is logged with its reason, at WARNING at most once a minute per reason whatever its
address (the others at DEBUG, counted). A client that half-closes gets its pending replies, then the
connection closes.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from tieline import (
    UNKNOWN,
    ClientApi,
    CrosspointsChanged,
    DeviceOffline,
    DeviceOnline,
    Event,
    InvalidRequest,
    LabelsChanged,
    OutOfRange,
    Permission,
    PermissionDenied,
    PortKind,
    Principal,
    ProtectChanged,
    ProtectKind,
    Protected,
    RateLimitedLog,
    RemoteProtocolError,
    RequestError,
    RouterOffline,
    RouterRuntime,
    RouterSpec,
    RoutingService,
    Subscription,
    TielineError,
    parse_hostport,
)

from .codec import (
    DEVICE_HEADER,
    PREAMBLE_HEADER,
    PROTOCOL_VERSION,
    Ack,
    Codec,
    DeviceInfo,
    LabelTable,
    Labels,
    Locks,
    LockState,
    LockTable,
    Message,
    Nak,
    Ping,
    PortValues,
    Preamble,
    Role,
    Routes,
    RoutingTable,
    StatusRequest,
    ValueTable,
    prelude,
)

if TYPE_CHECKING:
    from tieline import Node

log = logging.getLogger(__name__)

#: Blocks of one client read and not yet answered; beyond this its socket is not read.
MAX_PENDING = 64
#: Longest label a client may set, in characters (as the WebSocket API and labels.json).
MAX_LABEL = 64
#: Longest label text sent to clients (longer device labels are cut).
MAX_LABEL_SENT = 255
#: Who may connect when settings do not say: this host only.
DEFAULT_CLIENTS = ("127.0.0.0/8", "::1/128")

_ACK = Codec(Role.DEVICE).send(Ack())  # encoded once: b"ACK\n\n" [VH §2]
_NAK = Codec(Role.DEVICE).send(Nak())
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: A refused client is logged at WARNING at most this often per reason (seconds).
REFUSAL_LOG_INTERVAL_S = 60.0

#: The request line an HTTP client opens with. A web page can make a browser send one to
#: this port (``fetch(..., {mode: "no-cors"})``), with a body that would read as blocks.
_HTTP_REQUEST = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH) "
                           rb"(/|\*|[A-Za-z][A-Za-z0-9+.-]*://)")
_LABEL_TABLES = {LabelTable.INPUT: PortKind.SOURCE, LabelTable.OUTPUT: PortKind.DESTINATION}
_HARDWARE_STATUS = frozenset({ValueTable.VIDEO_INPUT_STATUS, ValueTable.VIDEO_OUTPUT_STATUS,
                              ValueTable.SERIAL_PORT_STATUS})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A peer's address; an IPv4-mapped IPv6 address (dual-stack socket) as IPv4."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _networks(api: str, key: str, texts: Iterable[str]) -> tuple[Network, ...]:
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise TielineError(
                f"{api}: {key} entry '{text}' is not an address or network; write "
                "'10.0.0.7', '10.0.0.0/8' or '::1/128'") from None
    return tuple(out)


def _plan_levels(options: dict[str, Any], spec: RouterSpec) -> tuple[str, list[str]]:
    """The level shown and the levels a route sets; ValueError saying what is wrong."""
    wanted = options.get("levels")
    shown = options.get("level")
    if wanted == "all":
        names = list(spec.levels)
    elif wanted is None:
        names = [shown or spec.levels[0]]
    else:
        names = list(wanted)
    shown = shown or names[0]
    for name in [shown, *names]:
        if name not in spec.levels:
            raise ValueError(f"router '{spec.id}' has no level '{name}'; its levels are "
                             f"{', '.join(spec.levels)}")
    if shown not in names:
        raise ValueError(f"\"level\" '{shown}' must be one of \"levels\" "
                         f"({', '.join(names)}): clients see the level they route")
    return shown, names


@dataclass(frozen=True, slots=True)
class _Garbage(Message):
    """Stands in a client's queue for bytes that broke the framing (answered NAK [VH §7]).

    :param reason: the codec's complaint.
    """

    reason: str


class VideohubApi(ClientApi):
    """``{"type": "videohub", "listen": "127.0.0.1:9990", "router": "studio"}`` in ``apis``."""

    name = "videohub"
    settings_schema: ClassVar[dict[str, Any]] = {
        "properties": {
            "router": {
                "description": "The id of the router Videohub clients control.",
                "type": "string", "minLength": 1,
            },
            "level": {
                "description": "The level Videohub clients see; one of 'levels'.",
                "type": "string", "minLength": 1,
            },
            "levels": {
                "description": "The levels a route or lock from a Videohub client sets: "
                               "level names, or \"all\".",
                "anyOf": [
                    {"const": "all"},
                    {"type": "array", "items": {"type": "string", "minLength": 1},
                     "minItems": 1, "uniqueItems": True},
                ],
            },
            "model_name": {
                "description": "text without line breaks or control characters ('Model "
                               "name' in VIDEOHUB DEVICE)",
                "type": "string", "minLength": 1, "maxLength": 64,
                "pattern": "^[^\\x00-\\x1f\\x7f]*$", "default": "tieline Videohub",
            },
            "friendly_name": {
                "description": "text without line breaks or control characters ('Friendly "
                               "name' in VIDEOHUB DEVICE; the router's id by default)",
                "type": "string", "minLength": 1, "maxLength": 64,
                "pattern": "^[^\\x00-\\x1f\\x7f]*$",
            },
            "unique_id": {
                "description": "12 hex digits ('Unique ID' in VIDEOHUB DEVICE; derived from "
                               "the node, the router and 'listen' by default)",
                "type": "string", "pattern": "^[0-9A-Fa-f]{12}$",
            },
            "permission": {
                "description": "Every Videohub client's permission level: 1 watch, 2 route "
                               "and lock, 3 also change labels.",
                "type": "integer", "minimum": 1, "maximum": 3, "default": 2,
            },
            "clients": {
                "description": "Addresses or networks Videohub clients may connect from.",
                "type": "array", "items": {"type": "string", "minLength": 1},
                "default": list(DEFAULT_CLIENTS),
            },
            "force_unlock": {
                "description": "Addresses or networks whose clients may force-unlock (F) "
                               "what others hold.",
                "type": "array", "items": {"type": "string", "minLength": 1}, "default": [],
            },
            "max_clients": {
                "description": "Clients connected at once; more are closed at once.",
                "type": "integer", "minimum": 1, "maximum": 10000, "default": 64,
            },
            "max_block_bytes": {
                "description": "Largest block a client may send; a larger one is NAKed.",
                "type": "integer", "minimum": 4096, "maximum": 4194304, "default": 262144,
            },
            "client_buffer_bytes": {
                "description": "Unread output kept for one client, beyond one status dump, "
                               "before it is disconnected.",
                "type": "integer", "minimum": 65536, "maximum": 67108864, "default": 1048576,
            },
        },
        "required": ["router"],
    }

    @classmethod
    def check(cls, options: dict[str, Any],
              routers: Mapping[str, RouterSpec]) -> list[tuple[str, str]]:
        spec = routers.get(options.get("router", ""))
        if spec is None:
            known = ", ".join(sorted(routers)) or "none"
            return [("router", f"no router '{options.get('router')}'; routers: {known}")]
        try:
            _plan_levels(options, spec)
        except ValueError as exc:
            return [("levels" if "levels" in options else "level", str(exc))]
        problems = []
        for key in ("clients", "force_unlock"):
            for text in options.get(key, ()):
                try:
                    ipaddress.ip_network(text, strict=False)
                except ValueError:
                    problems.append((key, f"'{text}' is not an address or network; write "
                                     "'10.0.0.7', '10.0.0.0/8' or '::1/128'"))
        return problems

    def __init__(self, node: Node, options: dict[str, Any]) -> None:
        super().__init__(node, options)
        self.listen: str = options["listen"]
        self.host, self.port = parse_hostport(self.listen)
        self.router_id: str = options["router"]
        self.permission = Permission(options.get("permission", 2))
        self.max_clients: int = options.get("max_clients", 64)
        self.max_block_bytes: int = options.get("max_block_bytes", 262144)
        self.client_buffer_bytes: int = options.get("client_buffer_bytes", 1048576)
        self.model_name: str = options.get("model_name", "tieline Videohub")
        self.friendly_name: str = options.get("friendly_name", self.router_id)
        self.unique_id: str = options.get("unique_id") or hashlib.sha1(
            f"{node.settings.node_name}\n{self.router_id}\n{self.listen}".encode()
        ).hexdigest()[:12].upper()
        self.clients: set[VideohubClient] = set()
        self.server: asyncio.Server | None = None
        # set by start(), from the router
        self.rt: RouterRuntime | None = None
        self.level = 0  #: the level shown
        self.levels: tuple[int, ...] = ()  #: the levels routes and locks set
        self.level_names: tuple[str, ...] = ()
        self.allowed: tuple[Network, ...] = ()
        self.force_allowed: tuple[Network, ...] = ()
        self._encoder = Codec(Role.DEVICE)
        self._events: Subscription | None = None
        self._fanout_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0  #: events fanned out so far
        self._present = False  #: what the last device block broadcast said
        #: refusals, each reason warned about at most once a minute
        self._refusals = RateLimitedLog(log, REFUSAL_LOG_INTERVAL_S)
        #: per destination, the protects over ``levels`` when its lock block was last sent.
        self._locks_sent: dict[int, tuple[Any, ...]] = {}

    @property
    def what(self) -> str:
        """How logs and errors name this API (the port it got, when ``listen`` says 0)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"videohub API on {host}:{self.port}"

    def describe(self) -> str:
        if self.rt is None:
            return self.what
        level = self.rt.state.spec.levels[self.level]
        follow = f", routes set {', '.join(self.level_names)}" if len(self.levels) > 1 else ""
        return f"{self.what} (router '{self.router_id}', level {level}{follow})"

    # -- lifecycle ---------------------------------------------------------------------
    def _resolve(self) -> None:
        """Check the settings against the node's routers (raise TielineError if wrong)."""
        routing = self.node.routing
        rt = routing.routers.get(self.router_id)
        if rt is None:
            known = ", ".join(sorted(routing.routers)) or "none"
            raise TielineError(
                f"{self.what}: no router '{self.router_id}'; this node has: {known}. Fix "
                "\"router\" in its apis entry")
        spec = rt.state.spec
        try:
            shown, names = _plan_levels(self.options, spec)
        except ValueError as exc:
            raise TielineError(f"{self.what}: {exc}") from None
        self.rt = rt
        self.level = spec.level_index(shown)
        self.levels = tuple(spec.level_index(n) for n in names)
        self.level_names = tuple(names)
        self.allowed = _networks(self.what, "clients",
                                 self.options.get("clients", DEFAULT_CLIENTS))
        self.force_allowed = _networks(self.what, "force_unlock",
                                       self.options.get("force_unlock", ()))

    async def start(self) -> None:
        self._resolve()
        assert self.rt is not None
        # the bus never waits for us; we never wait for a client (see _fanout)
        self._events = self.node.bus.subscribe(f"{self.what}", maxsize=1_000_000)
        self._present = self.rt.state.online
        self._fanout_task = asyncio.create_task(self._fanout(self._events),
                                                name=f"{self.what} fan-out")
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(
                lambda: VideohubClient(self), self.host, self.port)
        except OSError as exc:
            await self._stop_fanout()
            raise TielineError(
                f"{self.what} cannot listen: {exc.strerror or exc}; is another program "
                "serving that port? Change 'listen' in tieline.json") from exc
        self.port = self.server.sockets[0].getsockname()[1]

    async def _stop_fanout(self) -> None:
        if self._fanout_task is not None:
            self._fanout_task.cancel()
            await asyncio.gather(self._fanout_task, return_exceptions=True)
        if self._events is not None:
            self._events.close("API closed")

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        await self._stop_fanout()
        for client in list(self.clients):
            client.abort()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        if self.server is not None:
            await self.server.wait_closed()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- clients coming and going ------------------------------------------------------
    def admit(self, client: VideohubClient) -> str | None:
        """Why ``client`` may not connect, or None."""
        ip = _address(client.address)
        if ip is None or not any(ip in net for net in self.allowed):
            return f"its address is not in \"clients\" of the {self.what}"
        if len(self.clients) >= self.max_clients:
            return f"{self.max_clients} clients are connected (\"max_clients\")"
        return None

    def refused(self, client: VideohubClient, reason: str, *, kind: str | None = None) -> None:
        """Log a refused client: each kind of refusal (``kind``, else ``reason``) at WARNING
        at most once a minute, whatever address it comes from; repeats at DEBUG, counted."""
        self._refusals.log(kind or reason, logging.WARNING,
                           "%s: refusing Videohub client %s: %s", self.what, client.peer, reason)

    def joined(self, client: VideohubClient) -> None:
        """Register ``client``: it gets events published from now on (its dump has the rest)."""
        pending = self._events.pending() if self._events is not None else 0
        client.after = self._seq + pending
        self.clients.add(client)

    def may_force(self, client: VideohubClient) -> bool:
        ip = _address(client.address)
        return ip is not None and any(ip in net for net in self.force_allowed)

    # -- rendering the state -------------------------------------------------------------
    @property
    def online(self) -> bool:
        return self.rt is not None and self.rt.state.online

    def device_info(self) -> DeviceInfo:
        """``VIDEOHUB DEVICE`` [VH §3.5]: the router's size, or ``Device present: false``."""
        assert self.rt is not None
        if not self.online:
            return DeviceInfo(present="false")
        spec = self.rt.state.spec
        return DeviceInfo(
            present="true", model_name=self.model_name, friendly_name=self.friendly_name,
            unique_id=self.unique_id, video_inputs=spec.sources, video_processing_units=0,
            video_outputs=spec.destinations, video_monitoring_outputs=0, serial_ports=0)

    def label_text(self, kind: PortKind, index: int, text: str | None = None) -> str:
        """A label as Videohub clients see it: never empty, no control characters."""
        assert self.rt is not None
        if text is None:
            text = self.rt.state.labels[kind][index]
        return _CONTROL.sub("?", text or str(index + 1))[:MAX_LABEL_SENT]

    def labels_block(self, table: LabelTable, indexes: Iterable[int] | None = None) -> Labels:
        assert self.rt is not None
        kind = _LABEL_TABLES[table]
        if indexes is None:
            indexes = range(len(self.rt.state.labels[kind]))
        return Labels(table, tuple((i, self.label_text(kind, i)) for i in indexes))

    def routes_block(self, outputs: Iterable[int] | None = None) -> Routes:
        """The shown level's routing; outputs whose source is not known are left out."""
        assert self.rt is not None
        row = self.rt.state.level_sources(self.level)
        if outputs is None:
            outputs = range(len(row))
        return Routes(RoutingTable.VIDEO_OUTPUT,
                      tuple((d, row[d]) for d in outputs if row[d] != UNKNOWN))

    def letter(self, destination: int, owner: str) -> LockState:
        """The lock letter ``owner`` sees for ``destination``, over the routed levels [VH §6]."""
        assert self.rt is not None
        state = self.rt.state
        owned = False
        for level in self.levels:
            protect = state.protect(level, destination)
            if protect is None:
                continue
            if protect.kind is ProtectKind.LOCK or protect.owner != owner:
                return LockState.LOCKED
            owned = True
        return LockState.OWNED if owned else LockState.UNLOCKED

    def locks_block(self, owner: str, outputs: Iterable[int] | None = None) -> Locks:
        assert self.rt is not None
        if outputs is None:
            outputs = range(self.rt.state.spec.destinations)
        return Locks(LockTable.VIDEO_OUTPUT, tuple((d, self.letter(d, owner)) for d in outputs))

    def tables(self, owner: str) -> list[Message]:
        """Every table, as ``owner`` sees it (locks are personal)."""
        return [self.labels_block(LabelTable.INPUT), self.labels_block(LabelTable.OUTPUT),
                self.locks_block(owner), self.routes_block()]

    def status_dump(self, client: VideohubClient) -> bytes:
        """What a client gets on connect [VH §3]."""
        device = self.device_info()
        if not self.online:  # nothing else follows until that changes [VH §3.5]
            return self._encoder.send_all([Preamble(PROTOCOL_VERSION), device])
        blocks = self.tables(client.principal.name)
        routes = blocks[-1]
        assert isinstance(routes, Routes)
        if len(routes.routes) == device.video_outputs:
            return self._encoder.send_all(prelude(device, blocks))
        # some sources are not known yet: prelude() checks only full tables
        messages = prelude(replace(device, video_outputs=None), blocks)
        messages[1] = device
        return self._encoder.send_all(messages)

    def full_block(self, header: str, client: VideohubClient) -> Message | None:
        """The block a status request names, in full; None when this server has none."""
        if header == PREAMBLE_HEADER:
            return Preamble(PROTOCOL_VERSION)
        if header == DEVICE_HEADER:
            return self.device_info()
        if not self.online:
            return None
        if header == RoutingTable.VIDEO_OUTPUT.value:
            return self.routes_block()
        if header == LockTable.VIDEO_OUTPUT.value:
            return self.locks_block(client.principal.name)
        for table in _LABEL_TABLES:
            if header == table.value:
                return self.labels_block(table)
        return None

    def encode(self, *messages: Message) -> bytes:
        return self._encoder.send_all(messages)

    # -- the fan-out -----------------------------------------------------------------------
    async def _fanout(self, events: Subscription) -> None:
        """Turn each event into one block, encoded once, written to every client."""
        async for event in events:
            self._seq += 1
            try:
                self._publish(event)
            except Exception:  # a bug must cost one event, not every client's updates
                log.exception("%s: could not send %s to its clients", self.what, event)

    def _publish(self, event: Event) -> None:
        assert self.rt is not None
        state = self.rt.state
        match event:
            case DeviceOffline(router=router) if router == self.router_id:
                if self._present:
                    self._present = False
                    self._to_all(self.encode(DeviceInfo(present="false")))
            case DeviceOnline(router=router) if router == self.router_id:
                self._present = True
                self._locks_sent.clear()
                device = self.encode(self.device_info())
                rendered: dict[str, bytes] = {}
                for client in list(self.clients):
                    owner = client.principal.name
                    if owner not in rendered:
                        rendered[owner] = device + self.encode(*self.tables(owner))
                    client.deliver(self._seq, rendered[owner])
            case _ if not self._present or not self.clients:
                # nothing but the device block while the router is away [VH §3.5]; whoever
                # connects next gets the locks in its dump, so forget what was sent
                self._locks_sent.clear()
            case CrosspointsChanged(router=router, crosspoints=crosspoints) \
                    if router == self.router_id:
                lines = tuple((xp.destination, xp.source) for xp in crosspoints
                              if xp.level == self.level and xp.source != UNKNOWN)
                if lines:
                    self._to_all(self.encode(Routes(RoutingTable.VIDEO_OUTPUT, lines)))
            case LabelsChanged(router=router, kind=kind, labels=labels) \
                    if router == self.router_id:
                table = LabelTable.INPUT if kind is PortKind.SOURCE else LabelTable.OUTPUT
                self._to_all(self.encode(Labels(table, tuple(
                    (i, self.label_text(kind, i, t)) for i, t in labels))))
            case ProtectChanged(router=router, level=level, destination=destination) \
                    if router == self.router_id and level in self.levels:
                # one block when a lock on several levels arrives as one event per level
                shown = tuple(state.protect(lv, destination) for lv in self.levels)
                if self._locks_sent.get(destination) == shown:
                    return
                self._locks_sent[destination] = shown
                by_letter: dict[LockState, bytes] = {}
                for client in list(self.clients):
                    letter = self.letter(destination, client.principal.name)
                    data = by_letter.get(letter)
                    if data is None:
                        data = by_letter[letter] = self.encode(
                            Locks(LockTable.VIDEO_OUTPUT, ((destination, letter),)))
                    client.deliver(self._seq, data)

    def _to_all(self, data: bytes) -> None:
        seq = self._seq
        for client in list(self.clients):
            client.deliver(seq, data)

    # -- change requests ---------------------------------------------------------------
    async def change(self, client: VideohubClient, request: Message) -> bytes:
        """Carry out a change block; return what to send the requester after its ACK.

        :raises RequestError: when it is refused (the client gets NAK).
        """
        unparsed = getattr(request, "unparsed", ())
        if unparsed:
            raise InvalidRequest(f"line {unparsed[0][:40]!r} does not parse")
        match request:
            case Routes():
                return await self._route(client, request)
            case Locks():
                return await self._lock(client, request)
            case Labels():
                return await self._label(client, request)
        raise InvalidRequest(f"{type(request).__name__} is not a change")  # pragma: no cover

    def _check_protects(self, principal: Principal, destination: int, *,
                        release: bool = False) -> None:
        """Raise Protected when someone else's protect (or any lock) is in the way."""
        assert self.rt is not None
        state = self.rt.state
        for level in self.levels:
            protect = state.protect(level, destination)
            if protect is None:
                continue
            theirs = protect.owner != principal.name
            if theirs or (not release and protect.blocks(principal)):
                raise Protected(
                    f"router '{self.router_id}': destination {destination + 1} on level "
                    f"{state.spec.levels[level]} is {protect.kind}ed by {protect.owner}",
                    owner=protect.owner, field="destination")

    async def _all(self, calls: Sequence[Any]) -> None:
        """Run requests together; raise the first failure once all have finished."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _route(self, client: VideohubClient, request: Routes) -> bytes:
        if request.table is not RoutingTable.VIDEO_OUTPUT:
            raise InvalidRequest(f"this Videohub has no {request.table.value}")
        assert self.rt is not None
        routing, state, principal = self.node.routing, self.rt.state, client.principal
        routing.failover.require_active()
        RoutingService.require(principal, Permission.ROUTE, "route")
        wanted = dict(request.routes)
        for destination, source in wanted.items():
            state.spec.check_destination(destination)
            state.spec.check_source(source)
            self._check_protects(principal, destination)
        if not state.online:
            raise RouterOffline(f"router '{self.router_id}' is offline")
        row = state.level_sources(self.level)
        already = [d for d, s in wanted.items() if row[d] == s]
        await self._all([routing.route(principal, self.router_id, d, s, self.level_names)
                         for d, s in wanted.items()])
        return self.encode(self.routes_block(already)) if already else b""

    async def _lock(self, client: VideohubClient, request: Locks) -> bytes:
        if request.table is not LockTable.VIDEO_OUTPUT:
            raise InvalidRequest(f"this Videohub has no {request.table.value}")
        assert self.rt is not None
        routing, state, principal = self.node.routing, self.rt.state, client.principal
        routing.failover.require_active()
        RoutingService.require(principal, Permission.ROUTE, "lock outputs")
        wanted = dict(request.locks)
        if LockState.FORCE in wanted.values() and not self.may_force(client):
            raise PermissionDenied(
                f"{principal.name} may not force-unlock outputs: add its address to "
                "\"force_unlock\"")
        for port, letter in wanted.items():
            state.spec.check_destination(port)
            if letter is not LockState.FORCE:
                self._check_protects(principal, port, release=letter is LockState.UNLOCKED)
        expect = {LockState.OWNED: LockState.OWNED}
        already = [p for p, letter in wanted.items()
                   if self.letter(p, principal.name) is expect.get(letter, LockState.UNLOCKED)]
        admin = Principal(principal.name, Permission.ADMIN, principal.address)
        calls = []
        for port, letter in wanted.items():
            if letter is LockState.OWNED:
                calls.append(routing.protect(principal, self.router_id, port, self.level_names,
                                             ProtectKind.PROTECT))
            elif letter is LockState.UNLOCKED:
                calls.append(routing.release(principal, self.router_id, port, self.level_names))
            else:
                calls.append(routing.release(admin, self.router_id, port, self.level_names,
                                             force=True))
        await self._all(calls)
        return self.encode(self.locks_block(principal.name, already)) if already else b""

    async def _label(self, client: VideohubClient, request: Labels) -> bytes:
        kind = _LABEL_TABLES.get(request.table)
        if kind is None:
            raise InvalidRequest(f"this Videohub has no {request.table.value}")
        assert self.rt is not None
        routing, state, principal = self.node.routing, self.rt.state, client.principal
        RoutingService.require(principal, Permission.ADMIN, "change labels")
        wanted = dict(request.labels)
        for index, text in wanted.items():
            if not 0 <= index < len(state.labels[kind]):
                raise OutOfRange(f"router '{self.router_id}': {kind} {index + 1} out of range "
                                 f"(1–{len(state.labels[kind])})", field="index")
            if len(text) > MAX_LABEL:
                raise InvalidRequest(f"label {text[:20]!r}… is longer than {MAX_LABEL} "
                                     "characters", field="text")
        already = [i for i, t in wanted.items() if state.labels[kind][i] == t]
        await self._all([routing.set_label(principal, self.router_id, kind, i, t)
                         for i, t in wanted.items()])
        return self.encode(self.labels_block(request.table, already)) if already else b""


class VideohubClient(asyncio.Protocol):
    """One connected Videohub client: its parser, its queue of blocks, its replies."""

    def __init__(self, api: VideohubApi) -> None:
        self.api = api
        self.transport: asyncio.Transport | None = None
        self.address = "?"  #: the peer's IP address
        self.peer = "?"  #: address and port, for logs
        self.principal = Principal("videohub ?", Permission.NONE)
        self.codec = Codec(Role.DEVICE, max_block=api.max_block_bytes)
        self.pending: collections.deque[Message] = collections.deque()
        self.after = 0  #: events up to this one were in the status dump
        self.limit = api.client_buffer_bytes
        self.holding = False  #: a change request is in flight: broadcasts wait for its reply
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.closed = False
        self.joined = False
        self._reading = True
        self._eof = False
        self._wake = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._worker: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername") or ("?", 0)
        self.address = str(peername[0])
        self.peer = (f"[{self.address}]:{peername[1]}" if ":" in self.address
                     else f"{self.address}:{peername[1]}")
        api = self.api
        reason = api.admit(self)
        if reason is not None:
            api.refused(self, reason)
            self.closed = True
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ip = _address(self.address)
        self.principal = Principal(f"videohub {ip}", api.permission, str(ip))
        api.joined(self)
        self.joined = True
        log.info("%s: Videohub client %s connected", api.what, self.peer)
        dump = api.status_dump(self)
        self.limit = api.client_buffer_bytes + len(dump)
        self.write(dump)
        self._worker = api.spawn(self._work(), f"videohub client {self.peer}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.api.clients.discard(self)
        if self._worker is not None:
            self._worker.cancel()
        if self.joined:
            log.info("%s: Videohub client %s disconnected%s", self.api.what, self.peer,
                     f" ({exc})" if exc else "")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.codec.receive_data(data)
        self._parse()

    def eof_received(self) -> bool:
        self._eof = True  # answer what was sent, then close (see _work)
        self._wake.set()
        return True

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- reading -------------------------------------------------------------------------
    def _parse(self) -> None:
        """Queue complete blocks, up to MAX_PENDING; stop reading the socket beyond it."""
        while len(self.pending) < MAX_PENDING:
            try:
                message = self.codec.next_event()
            except RemoteProtocolError as exc:
                if _HTTP_REQUEST.match(exc.data):  # nothing after it may be read
                    self.api.refused(self, "it sent an HTTP request (a web page in a browser?): "
                                     f"{exc.data[:40]!r}; connection cut", kind="http")
                    self.pending.clear()
                    self.abort()
                    return
                log.debug("%s: bad block from %s: %s", self.api.what, self.peer, exc)
                message = _Garbage(str(exc))
            if message is None:
                if not self._reading and not self.closed and self.transport is not None:
                    self._reading = True
                    self.transport.resume_reading()
                return
            self.pending.append(message)
            self._wake.set()
        if self._reading and self.transport is not None and not self.closed:
            self._reading = False
            self.transport.pause_reading()

    async def _work(self) -> None:
        """Answer this client's blocks one at a time, in order [VH §5.3]."""
        while not self.closed:
            if not self.pending:
                if self._eof:
                    assert self.transport is not None
                    self.transport.close()
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._writable.wait()  # a client that does not read its replies waits
            message = self.pending.popleft()
            self._parse()
            await self._serve(message)

    async def _serve(self, message: Message) -> None:
        api = self.api
        match message:
            case Ping():
                self.write(_ACK)  # [VH §8]
            case StatusRequest(header=header):
                block = api.full_block(header, self)
                self.write(_NAK if block is None else _ACK + api.encode(block))  # [VH §5.1]
            case Routes() | Locks() | Labels() if api.online:
                await self._change(message)
            case PortValues(table=table) if table in _HARDWARE_STATUS:
                self.write(_ACK)  # hardware status from a client is ignored [VH §4, §7]
            case _:
                self.write(_NAK)  # unknown, garbage, or not while the router is away [VH §7]

    async def _change(self, message: Message) -> None:
        """ACK or NAK the change, then the broadcasts it caused [VH §5.4, §11]."""
        self.holding = True
        reply, after = _NAK, b""
        try:
            after = await self.api.change(self, message)
            reply = _ACK
        except RequestError as exc:
            log.debug("%s: NAK to %s: %s", self.api.what, self.peer, exc)
        except Exception:  # a bug must cost one request, not the connection
            log.exception("%s: request from %s failed", self.api.what, self.peer)
        self.holding = False
        held, self.held, self.held_bytes = self.held, [], 0
        self.write(b"".join([reply, *held, after]))

    # -- writing ---------------------------------------------------------------------------
    def deliver(self, seq: int, data: bytes) -> None:
        """A broadcast block (event number ``seq``): now, or after the pending reply."""
        if self.closed or seq <= self.after:
            return
        if self.holding:
            self.held.append(data)
            self.held_bytes += len(data)
            if self.held_bytes > self.limit:
                self.drop(f"{self.held_bytes} bytes of changes waiting")
            return
        self.write(data)

    def write(self, data: bytes) -> None:
        if self.closed or not data or self.transport is None:
            return
        self.transport.write(data)
        queued = self.transport.get_write_buffer_size()
        if queued > self.limit:
            self.drop(f"{queued} bytes sent and not read")

    def drop(self, reason: str) -> None:
        """Disconnect a client that does not keep up; the others never wait for it."""
        log.warning("%s: dropping Videohub client %s: too slow, %s", self.api.what, self.peer,
                    reason)
        self.abort()

    def abort(self) -> None:
        self.closed = True
        self.api.clients.discard(self)
        self.held.clear()
        if self.transport is not None:
            self.transport.abort()
