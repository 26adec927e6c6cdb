"""The Videohub driver: controller-side glue between the codec and the device link.

How the device's words map onto tieline's model (see also docs/settings.md):

Levels
    A Videohub has one video routing table (``VIDEO OUTPUT ROUTING``) and, on some models,
    separate tables for monitoring outputs and RS-422 serial ports [VH §4]. By default the
    router's single level drives the video table. The router block's ``tables`` maps each
    of the router's levels, in order, to ``video``, ``monitoring`` or ``serial``; a level
    without a table is refused at once. Serial routing's ``-1`` ("not connected") becomes
    an unknown source.

Labels
    ``INPUT LABELS`` are the source labels and ``OUTPUT LABELS`` the destination labels
    (``device_labels``); monitoring-output and serial-port labels are not mapped (tieline
    has one label per port). A label the device refuses is logged; the request then times
    out, as the core has no refusal for labels.

Locks [VH §6]
    A Videohub lock stops other clients, never its owner: it is a tieline **protect**
    (ARCHITECTURE.md), held by the device (``device_protects = {protect}``); a tieline
    *lock* (nobody may route) is held by tieline itself. ``L`` (locked by a client at
    another IP address, whom the device does not name) becomes a protect owned by
    :data:`OTHER_OWNER`; ``O`` (locked from this host's IP address) a protect owned by the
    tieline user who asked for it when this driver knows, else by :data:`OWN_OWNER`;
    ``U`` no protect. Releasing someone else's lock (force, an administrator) sends ``F``.
    Only changes are reported (kept across reconnects), so a tieline lock on an output the
    device shows unlocked survives a resync.

Confirmation [VH §5.3]
    ``ACK`` only says a request was understood; a route is acknowledged to tieline only
    when a ``VIDEO OUTPUT ROUTING`` block shows the requested input on the output. ``NAK``,
    or a status block after the ``ACK`` showing something else (a device may ACK a route to
    an output locked by another client and leave it unchanged), refuses the request at once
    (:class:`~tieline.devices.RequestRefused`, naming :data:`OTHER_OWNER` when the output
    is locked by another client). Devices send only changed lines [VH §5.4], so a request
    that changes nothing may get no status block: when nothing has settled it
    ``confirm_grace_ms`` after the ACK, the driver asks for the whole table (a status
    request, never a route) and decides from that.

Start and keepalive [VH §3.3, §8]
    The device sends its whole state on connect. The session sends ``PING:`` at once; the
    dump is over at ``END PRELUDE:`` (2.7+), or, on older firmware, at the ``ACK`` of that
    PING once ``VIDEOHUB DEVICE`` and ``VIDEO OUTPUT ROUTING`` have arrived (the device
    answers in order), or after 0.3 s of silence following them. Keepalive: ``PING:`` when
    idle for 5 s; the link is given up after 10 s without data. Nothing but status requests
    and PINGs is ever sent during start-up: the device is the truth.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from tieline import (
    UNKNOWN,
    Crosspoint,
    DeviceReport,
    Driver,
    DriverSession,
    InvalidRequest,
    LabelRefused,
    LabelReport,
    LinkError,
    LogOnce,
    PortKind,
    Protect,
    ProtectKind,
    ProtectReport,
    Refused,
    RequestRefused,
    RouterSpec,
    SyncDone,
    TallyReport,
    Transport,
)

from .codec import (
    Ack,
    Codec,
    DeviceInfo,
    EndPrelude,
    KeyValues,
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
    UnknownBlock,
    header_of,
    version_tuple,
)

log = logging.getLogger(__name__)

#: Owner of a lock held by another client (``L``): the device does not say who [VH §6].
OTHER_OWNER = "another Videohub client"
#: Owner of a lock held from this host's IP address (``O``) when no tieline user asked for it.
OWN_OWNER = "a Videohub client on this host"

#: Table names of the router block's ``tables`` and the blocks they stand for [VH §4].
TABLES: dict[str, tuple[RoutingTable, LockTable]] = {
    "video": (RoutingTable.VIDEO_OUTPUT, LockTable.VIDEO_OUTPUT),
    "monitoring": (RoutingTable.VIDEO_MONITORING_OUTPUT, LockTable.MONITORING_OUTPUT),
    "serial": (RoutingTable.SERIAL_PORT, LockTable.SERIAL_PORT),
}
_LABEL_KINDS = {LabelTable.INPUT: PortKind.SOURCE, LabelTable.OUTPUT: PortKind.DESTINATION}
_LABEL_TABLES = {kind: table for table, kind in _LABEL_KINDS.items()}
_PORT_WORDS = {RoutingTable.VIDEO_OUTPUT: "output", RoutingTable.VIDEO_MONITORING_OUTPUT:
               "monitoring output", RoutingTable.SERIAL_PORT: "serial port"}


class _Request:
    """A block sent to the device, waiting for its ACK/NAK and then for its status block.

    :param kind: ``route``, ``lock``, ``label``, ``dump`` (a status request) or ``ping``.
    :param header: the block's header.
    :param level: the tieline level of a route or lock.
    :param items: what is still to be confirmed: port -> expected input, letter or text.
    :param owner: who asked (route and lock requests).
    """

    __slots__ = ("kind", "header", "level", "items", "owner", "acked", "grace_at")

    def __init__(self, kind: str, header: str, level: int | None = None,
                 items: dict[int, Any] | None = None, owner: str | None = None) -> None:
        self.kind = kind
        self.header = header
        self.level = level
        self.items: dict[int, Any] = items or {}
        self.owner = owner
        self.acked = False
        self.grace_at: float | None = None


class VideohubSession(DriverSession):
    """One connection to a Videohub, controller side.

    :param driver: the driver (its settings, and what outlives a connection: the owners of
        this host's locks, what has been logged once).
    """

    #: silence after VIDEOHUB DEVICE and VIDEO OUTPUT ROUTING that ends a dump without
    #: END PRELUDE [VH §3.3].
    sync_quiet_s = 0.3

    def __init__(self, driver: VideohubDriver) -> None:
        super().__init__()
        self.driver = driver
        self.spec = driver.spec
        self._codec = Codec(Role.CONTROLLER)
        self._grace_s = driver.confirm_grace_s
        #: requests waiting for their ACK/NAK, in the order sent [VH §5.3].
        self._fifo: deque[_Request] = deque()
        #: per header, per port: the latest request waiting for a status line.
        self._awaiting: dict[str, dict[int, _Request]] = {}
        #: requests ACKed whose status has not arrived yet.
        self._acked: list[_Request] = []
        #: per header: full blocks announced by the ACK of our status request.
        self._full_expected: dict[str, int] = {}
        self._dumps_pending: set[str] = set()
        #: lock letters as the device last sent them on this connection.
        self._letters: dict[tuple[LockTable, int], LockState] = {}
        self._synced = False
        self._seen_device = False
        self._seen_routing = False
        self._sync_pinged = False
        self._last_rx = 0.0
        #: what the device has said of itself on this connection.
        self.version: str | None = None
        self.device: DeviceInfo | None = None

    # -- device -> core ----------------------------------------------------------------
    def connection_made(self, now: float) -> None:
        # The prelude comes unprompted; the ACK of this PING follows it [VH §3.3].
        self._last_rx = now
        self._request(Ping(), _Request("sync", "PING"))

    def receive_data(self, data: bytes, now: float) -> list[DeviceReport]:
        self._last_rx = now
        self._codec.receive_data(data)
        out: list[DeviceReport] = []
        for message in self._codec.events():
            self._handle(message, now, out)
        return out

    def _handle(self, message: Message, now: float, out: list[DeviceReport]) -> None:
        unparsed = getattr(message, "unparsed", ())
        if unparsed:
            self.driver.log_once.log(
                f"unparsed {header_of(message)}", logging.WARNING,
                "router '%s': ignoring %d line(s) of %s that do not parse, e.g. %r",
                self.spec.id, len(unparsed), header_of(message), unparsed[0][:80])
        match message:
            case Routes(table, routes):
                self._routes(table, routes, out)
            case Locks(table, locks):
                self._locks(table, locks, out)
            case Labels(table, labels):
                self._labels(table, labels, out)
            case Ack():
                self._acknowledged(now, out)
            case Nak():
                self._refused_by_nak(out)
            case DeviceInfo():
                self._device_info(message)
            case Preamble(version):
                self._preamble(version)
            case EndPrelude():
                self._sync(out)
            case UnknownBlock(header):
                self.driver.log_once.log(
                    f"unknown {header}", logging.INFO,
                    "router '%s': skipping the unknown block %r the device sends", self.spec.id,
                    header)
            case PortValues() | KeyValues():
                self.driver.log_once.log(
                    f"unused {header_of(message)}", logging.DEBUG,
                    "router '%s': %s is not used by tieline", self.spec.id, header_of(message))

    def _preamble(self, version: str | None) -> None:
        self.version = version
        parsed = version_tuple(version)
        if parsed is None or parsed[0] != 2:
            self.driver.log_once.log(
                f"version {version}", logging.WARNING,
                "router '%s': the device speaks Videohub protocol %s; tieline knows major "
                "version 2 and carries on, but the device may not be understood",
                self.spec.id, version)

    def _device_info(self, info: DeviceInfo) -> None:
        present = (info.present or "true").strip().casefold()
        if present != "true":
            why = ("no router is attached to the Videohub Server" if present == "false" else
                   "the router's firmware needs updating" if present == "needs_update" else
                   f"the device is not present ({info.present!r})")
            raise LinkError(f"{why} (VIDEOHUB DEVICE says 'Device present: {info.present}')")
        self.device = info
        self._seen_device = True
        self.driver.check_size(info)

    def _routes(self, table: RoutingTable, routes: tuple[tuple[int, int], ...],
                out: list[DeviceReport]) -> None:
        if table is RoutingTable.VIDEO_OUTPUT:
            self._seen_routing = True
        level = self.driver.route_levels.get(table)
        if level is None:
            return
        out.append(TallyReport(tuple(
            Crosspoint(level, dest, UNKNOWN if src < 0 else src) for dest, src in routes)))
        self._settle(table.value, routes, out)

    def _locks(self, table: LockTable, locks: tuple[tuple[int, LockState], ...],
               out: list[DeviceReport]) -> None:
        level = self.driver.lock_levels.get(table)
        if level is None:
            return
        awaiting = self._awaiting.get(table.value, {})
        reported = self.driver.reported_protects
        for port, letter in locks:
            self._letters[(table, port)] = letter
            key = (table, port)
            if letter is LockState.UNLOCKED:
                protect = None
            elif letter is LockState.LOCKED:
                protect = Protect(ProtectKind.PROTECT, OTHER_OWNER)
            else:
                request = awaiting.get(port)
                before = reported.get(key)
                if request is not None and request.items[port] is LockState.OWNED:
                    owner = request.owner or OWN_OWNER
                elif before is not None and before.owner != OTHER_OWNER:
                    owner = before.owner
                else:
                    owner = OWN_OWNER
                protect = Protect(ProtectKind.PROTECT, owner)
            # Report changes only: a tieline-held lock on a port the device reports as
            # unlocked stays (the device knows nothing of it). Awaited ports always report.
            if port in awaiting or reported.get(key) != protect:
                if protect is None:
                    reported.pop(key, None)
                else:
                    reported[key] = protect
                out.append(ProtectReport(level, port, protect))
        self._settle(table.value, locks, out)

    def _labels(self, table: LabelTable, labels: tuple[tuple[int, str], ...],
                out: list[DeviceReport]) -> None:
        kind = _LABEL_KINDS.get(table)
        if kind is None:
            return
        out.append(LabelReport(kind, labels))
        self._settle(table.value, labels, out)

    # -- confirmation ------------------------------------------------------------------
    def _settle(self, header: str, items: Iterable[tuple[int, Any]],
                out: list[DeviceReport]) -> None:
        """Match a status block against the requests waiting for it [VH §5.3]."""
        full = self._full_expected.get(header, 0) > 0
        if full:
            self._full_expected[header] -= 1
            self._dumps_pending.discard(header)
        awaiting = self._awaiting.get(header)
        if awaiting:
            for port, value in items:
                request = awaiting.get(port)
                if request is None:
                    continue
                if value == request.items[port]:
                    self._done(request, port)
                elif request.acked:
                    # after the ACK the device shows something else: not carried out
                    self._refuse(request, port, out, shown=value)
        if full:
            for request in [r for r in self._acked if r.header == header]:
                for port in list(request.items):
                    self._refuse(request, port, out, shown=None)

    def _done(self, request: _Request, port: int) -> None:
        request.items.pop(port, None)
        awaiting = self._awaiting.get(request.header)
        if awaiting is not None and awaiting.get(port) is request:
            del awaiting[port]
        if not request.items and request in self._acked:
            self._acked.remove(request)

    def _refuse(self, request: _Request, port: int, out: list[DeviceReport], *,
                shown: Any = None, nak: bool = False) -> None:
        expected = request.items.get(port)
        self._done(request, port)
        if request.kind == "label":
            is_input = request.header == LabelTable.INPUT.value
            reason = (f"the Videohub did not take the label {expected!r} for "
                      f"{'input' if is_input else 'output'} {port + 1}{' (NAK)' if nak else ''}")
            log.warning("router '%s': %s", self.spec.id, reason)
            out.append(LabelRefused(PortKind.SOURCE if is_input else PortKind.DESTINATION,
                                    port, reason))
            return
        owner = None
        lock_table = self.driver.level_tables[request.level][1]  # type: ignore[index]
        letter = self._letters.get((lock_table, port))
        routing_table = self.driver.level_tables[request.level][0]  # type: ignore[index]
        what = f"{_PORT_WORDS.get(routing_table, 'output')} {port + 1}"
        if letter is LockState.LOCKED:
            owner = OTHER_OWNER
        locked = f"; {what} is locked by {OTHER_OWNER}" if owner else ""
        if nak:
            verb = "route" if request.kind == "route" else (
                "lock" if expected is LockState.OWNED else "unlock")
            reason = f"the Videohub refused to {verb} {what} (NAK){locked}"
        elif request.kind == "route":
            if shown is None:
                reason = (f"the Videohub acknowledged the route but its routing table does not "
                          f"show {what} on input {expected + 1}{locked}")
            else:
                source = "no input" if shown < 0 else f"input {shown + 1}"
                why = locked or " (another client may have routed it at the same time)"
                reason = f"the Videohub acknowledged the route but kept {what} on {source}{why}"
        elif expected is LockState.OWNED:
            reason = f"the Videohub did not lock {what}{locked}"
        else:
            reason = f"the Videohub did not unlock {what}{locked}"
        out.append(RequestRefused(request.level, port, reason, owner))

    def _acknowledged(self, now: float, out: list[DeviceReport]) -> None:
        if not self._fifo:
            log.debug("router '%s': ACK with no request outstanding", self.spec.id)
            return
        request = self._fifo.popleft()
        if request.kind == "sync":
            self._sync_pinged = True
            if self._seen_device and self._seen_routing:
                self._sync(out)
        elif request.kind == "dump":
            self._full_expected[request.header] = self._full_expected.get(request.header, 0) + 1
        elif request.items:
            request.acked = True
            request.grace_at = now + self._grace_s
            self._acked.append(request)

    def _refused_by_nak(self, out: list[DeviceReport]) -> None:
        if not self._fifo:
            log.debug("router '%s': NAK with no request outstanding", self.spec.id)
            return
        request = self._fifo.popleft()
        if request.kind == "dump":
            self._dumps_pending.discard(request.header)
            log.warning("router '%s': the device refused to send %s (NAK)", self.spec.id,
                        request.header)
            for waiting in [r for r in self._acked if r.header == request.header]:
                for port in list(waiting.items):
                    self._refuse(waiting, port, out, shown=None)
        elif request.kind in ("ping", "sync"):
            log.debug("router '%s': PING answered NAK", self.spec.id)
        else:
            for port in list(request.items):
                self._refuse(request, port, out, nak=True)

    def _sync(self, out: list[DeviceReport]) -> None:
        if not self._synced:
            self._synced = True
            out.append(SyncDone())

    # -- timers ------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        deadlines = []
        if not self._synced and self._seen_device and self._seen_routing:
            deadlines.append(self._last_rx + self.sync_quiet_s)
        deadlines += [r.grace_at for r in self._acked
                      if r.grace_at is not None and r.header not in self._dumps_pending]
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> list[DeviceReport]:
        out: list[DeviceReport] = []
        if (not self._synced and self._seen_device and self._seen_routing
                and now >= self._last_rx + self.sync_quiet_s):
            self._sync(out)  # older firmware: no END PRELUDE, and the line went quiet
        for request in list(self._acked):
            if (request.grace_at is not None and now >= request.grace_at
                    and request.header not in self._dumps_pending):
                # nothing settled it: ask for the whole table (a read, never a route)
                self._dumps_pending.add(request.header)
                self._request(StatusRequest(request.header), _Request("dump", request.header))
        return out

    # -- core -> device ----------------------------------------------------------------
    def _request(self, message: Message, request: _Request) -> None:
        try:
            data = self._codec.send(message)
        except ValueError as exc:
            raise InvalidRequest(
                f"router '{self.spec.id}': the request cannot be sent to the Videohub: {exc}"
            ) from None
        self._send(data)
        self._fifo.append(request)
        if request.items:
            awaiting = self._awaiting.setdefault(request.header, {})
            for port in request.items:
                older = awaiting.get(port)
                if older is not None:
                    # the newer request decides the port: a refusal names only a port, so
                    # the older one must not refuse it (its waiter settles by the tally)
                    self._done(older, port)
                awaiting[port] = request

    def _tables(self, level: int, what: str) -> tuple[RoutingTable, LockTable]:
        tables = self.driver.level_tables.get(level)
        if tables is None:
            name = self.spec.levels[level] if 0 <= level < len(self.spec.levels) else level
            raise Refused(
                f"router '{self.spec.id}': level '{name}' drives no Videohub table, so it "
                f"cannot {what}; map it to one with the router's \"tables\" setting",
                field="levels")
        return tables

    def route(self, crosspoints: Sequence[Crosspoint], owner: str) -> None:
        by_level: dict[int, dict[int, int]] = {}
        for xp in crosspoints:  # every level is checked before anything is sent
            self._tables(xp.level, "be routed")
            by_level.setdefault(xp.level, {})[xp.destination] = xp.source
        for level, routes in by_level.items():
            table = self.driver.level_tables[level][0]
            # one block: the device applies its lines together [VH §5.2]
            self._request(Routes(table, tuple(routes.items())),
                          _Request("route", table.value, level, dict(routes), owner))

    def protect(self, level: int, destination: int, kind: ProtectKind, owner: str) -> None:
        if kind is not ProtectKind.PROTECT:
            raise InvalidRequest(f"router '{self.spec.id}': a Videohub holds protects only")
        table = self._tables(level, "be protected")[1]
        self._lock(level, table, destination, LockState.OWNED, LockState.OWNED, owner)

    def release(self, level: int, destination: int, owner: str, force: bool) -> None:
        table = self._tables(level, "be released")[1]
        theirs = self._letters.get((table, destination)) is LockState.LOCKED
        letter = LockState.FORCE if theirs and force else LockState.UNLOCKED
        self._lock(level, table, destination, letter, LockState.UNLOCKED, owner)

    def _lock(self, level: int, table: LockTable, port: int, send: LockState,
              expect: LockState, owner: str) -> None:
        self._request(Locks(table, ((port, send),)),
                      _Request("lock", table.value, level, {port: expect}, owner))

    def set_label(self, kind: PortKind, index: int, text: str) -> None:
        table = _LABEL_TABLES[PortKind(kind)]
        self._request(Labels(table, ((index, text),)),
                      _Request("label", table.value, None, {index: text}))

    def keepalive(self, now: float) -> None:
        self._request(Ping(), _Request("ping", "PING"))


class VideohubDriver(Driver):
    """A Blackmagic Videohub (or anything serving the Videohub Ethernet Protocol) over TCP."""

    name = "videohub"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "tables": {
                "type": "array",
                "items": {"enum": list(TABLES)},
                "minItems": 1,
                "maxItems": len(TABLES),
                "uniqueItems": True,
                "default": ["video"],
                "description": "the Videohub routing table each level drives, in the order "
                               "of the router's levels",
            },
            "confirm_grace_ms": {
                "type": "integer",
                "minimum": 10,
                "maximum": 10000,
                "default": 250,
                "description": "how long after an ACK to wait for the status block before "
                               "asking the device for the whole table",
            },
        },
    }
    transports = ("tcp",)
    transport_defaults: ClassVar[dict[str, dict[str, Any]]] = {"tcp": {"port": 9990}}
    allows_second_controller = True
    device_protects = frozenset({ProtectKind.PROTECT})
    device_labels = True
    keepalive_interval_s = 5.0
    keepalive_timeout_s = 10.0
    sync_timeout_s = 15.0

    def __init__(self, spec: RouterSpec, options: dict[str, Any],
                 transport: Transport | None) -> None:
        super().__init__(spec, options, transport)
        names = list(options.get("tables", ["video"]))
        self.confirm_grace_s = options.get("confirm_grace_ms", 250) / 1000
        #: tieline level -> (routing table, lock table).
        self.level_tables: dict[int, tuple[RoutingTable, LockTable]] = {
            level: TABLES[name] for level, name in enumerate(names[: len(spec.levels)])
        }
        self.route_levels = {t[0]: level for level, t in self.level_tables.items()}
        self.lock_levels = {t[1]: level for level, t in self.level_tables.items()}
        #: the protects this driver has reported, by (lock table, port): kept across
        #: connections so that only changes are reported, and owners are remembered.
        self.reported_protects: dict[tuple[LockTable, int], Protect] = {}
        #: what the device says that is logged once, across connections
        self.log_once = LogOnce(log, max_keys=64)
        if len(names) != len(spec.levels):
            log.warning(
                "router '%s' has %d level(s) but \"tables\" names %d (%s); %s", spec.id,
                len(spec.levels), len(names), ", ".join(names),
                "the levels after the last table drive nothing" if len(names) < len(spec.levels)
                else "the extra tables are not used")

    def new_session(self) -> VideohubSession:
        return VideohubSession(self)

    def check_size(self, info: DeviceInfo) -> None:
        """Warn once when the device's size differs from the router's settings [VH §3.5]."""
        counts = {"video": (info.video_inputs, info.video_outputs),
                  "monitoring": (info.video_inputs, info.video_monitoring_outputs),
                  "serial": (info.serial_ports, info.serial_ports)}
        for level, (routing, _) in self.level_tables.items():
            name = next(n for n, t in TABLES.items() if t[0] is routing)
            sources, destinations = counts[name]
            if sources is None or destinations is None:
                continue
            if (sources, destinations) != (self.spec.sources, self.spec.destinations):
                self.log_once.log(
                    f"size {level} {sources} {destinations}", logging.WARNING,
                    "router '%s': the device's %s table has %d sources and %d destinations; "
                    "settings say %d and %d for level '%s'. Only the part both have is "
                    "controlled; fix the settings.", self.spec.id, name, sources, destinations,
                    self.spec.sources, self.spec.destinations, self.spec.levels[level])
