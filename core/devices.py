"""Device links: a driver's pure protocol session run over a transport.

A router plugin provides a :class:`Driver` (settings, transport needs, capabilities) whose
:meth:`Driver.new_session` returns a :class:`DriverSession`: pure protocol glue over the
plugin's sans-I/O codec (bytes in, :class:`DeviceReport` objects out; :class:`Command`
objects in, bytes queued for :meth:`DriverSession.data_to_send`). The :class:`DeviceLink`
here does all the I/O and timing for every driver: connect, full state read after every
(re)connect, keepalive and half-open detection, reconnect with jittered capped backoff,
online/offline reporting, and the life of every command.

The device is the truth: a link only ever reads state from the device. It never replays
remembered routes, at start, on reconnect or ever.

Commands and their outcomes
===========================

The link is the only caller of its session. The core hands it a command and waits for that
command's own outcome: ``outcome = await link.submit(command, timeout)``. Each *item* of a
command (a crosspoint of a route; the one protect, release or label) ends confirmed,
refused with the device's reason, or timed out, and only by what the device said about it:

- **Confirmed** by the device's own report of the state asked for, read after the command
  was written: a :class:`TallyReport` naming the crosspoint at the source asked for, a
  :class:`ProtectReport` of the protect asked for (None for a release), a
  :class:`LabelReport` with the text asked for.
- **Refused** by a :class:`RequestRefused` for its destination and level, or a
  :class:`LabelRefused` for its port.
- **Timed out** when neither came within ``timeout``; **offline** when the link went down
  first (the command may or may not have been carried out).

**The fence.** The link's :attr:`DeviceLink.guard` (the node's "may I act?") is checked
when a command is handed to the session and before every write. While it says no, the
session withdraws what it still holds of commands (:meth:`DriverSession.withdraw`: queued
frames, re-sends) and only reads and keepalives go out; a command handed over later is
refused with the guard's error, and so is every item the session withdrew before any byte
of it was written (it was never sent: a report that names it now is about someone else's
change, not a confirmation). Commands already written settle as ever, from the router's
reports (or time out). A check and the write after it are two steps: a node stopped
between them (a process stall of any length) writes when it runs again, whatever happened
meanwhile, and no check in a program can prevent it (the device would have to check a
fencing token, and no router protocol has one). The link makes the window one write
wide, checks again after each write, and says so when the fence shut meanwhile.

The devices tieline speaks to have no request ids: a report says *what* is now, not *which
request* it answers. So the link serialises what reports cannot tell apart: two commands
that touch one (level, destination), or one port's label, are never in flight together.
The second is written once the first has its outcome, in the order they were submitted (so
the last one submitted is the last one the device carries out: last write wins at the
device). A report can then only be about the one command in flight on its item, and it was
read after that command was written. Commands on other destinations go in parallel.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from .backoff import backoff
from .errors import (
    ConfirmTimeout,
    LinkError,
    Protected,
    Refused,
    RemoteProtocolError,
    RequestError,
    RouterOffline,
)
from .model import Crosspoint, PortKind, Protect, ProtectKind, RouterSpec
from .transports import ByteStream, Transport

log = logging.getLogger(__name__)


# -------------------------------------------------------------------------------------------
# Reports: what a driver session tells the core about the device.
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """Base class of reports from a driver session."""


@dataclass(frozen=True, slots=True)
class TallyReport(DeviceReport):
    """The device says these crosspoints are now set (changed or not).

    Reports of unchanged crosspoints are how a request for a route that already exists is
    confirmed, so a session reports every tally the device sends.
    """

    crosspoints: tuple[Crosspoint, ...]


@dataclass(frozen=True, slots=True)
class LabelReport(DeviceReport):
    """The device's labels for some ports: ``(index, text)`` pairs, 0-based."""

    kind: PortKind
    labels: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class ProtectReport(DeviceReport):
    """The device's protect state for one destination (``level`` None = every level)."""

    level: int | None
    destination: int
    protect: Protect | None


@dataclass(frozen=True, slots=True)
class SyncDone(DeviceReport):
    """The device has sent its whole state since the connection was made."""


@dataclass(frozen=True, slots=True)
class RequestRefused(DeviceReport):
    """The device refused a request for ``destination`` (``level`` None = every level).

    :param reason: the device's reason in words ("output 5 is locked by 10.0.0.7").
    :param owner: the owner of the protect that caused it, when the device says.
    """

    level: int | None
    destination: int
    reason: str
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class LabelRefused(DeviceReport):
    """The device refused to change the label of one port.

    :param reason: the device's reason in words.
    """

    kind: PortKind
    index: int
    reason: str


# -------------------------------------------------------------------------------------------
# Commands: what the core asks a device to do.
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """Base class of what the core asks a device to do (see the module docstring).

    :param ticket: set by the link when the command is submitted (unique per link); a
        session may name it in its log lines.
    """

    ticket: int = field(default=0, kw_only=True)


@dataclass(frozen=True, slots=True)
class RouteCommand(Command):
    """Set ``crosspoints`` (0-based) for ``owner``; one item per crosspoint."""

    crosspoints: tuple[Crosspoint, ...]
    owner: str


@dataclass(frozen=True, slots=True)
class ProtectCommand(Command):
    """Protect or lock ``destination`` on ``level`` for ``owner`` (only kinds in
    ``Driver.device_protects``)."""

    level: int
    destination: int
    kind: ProtectKind
    owner: str


@dataclass(frozen=True, slots=True)
class ReleaseCommand(Command):
    """Release the protect on ``destination`` on ``level``; someone else's only with
    ``force``."""

    level: int
    destination: int
    owner: str
    force: bool = False


@dataclass(frozen=True, slots=True)
class LabelCommand(Command):
    """Change the label of one port (only when ``Driver.device_labels``)."""

    kind: PortKind
    index: int
    text: str


def command_items(command: Command) -> list[tuple[Hashable, object]]:
    """The items of ``command``, in order: for each, the key that reports name it by (a
    level and destination, or a port's label) and the state that confirms it (a source, a
    protect or None, a label's text)."""
    match command:
        case RouteCommand(crosspoints=crosspoints):
            return [(("dst", xp.level, xp.destination), xp.source) for xp in crosspoints]
        case ProtectCommand(level=level, destination=destination, kind=kind, owner=owner):
            return [(("dst", level, destination), Protect(kind, owner))]
        case ReleaseCommand(level=level, destination=destination):
            return [(("dst", level, destination), None)]
        case LabelCommand(kind=kind, index=index, text=text):
            return [(("label", kind, index), text)]
    raise TypeError(f"not a command: {command!r}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a command: one result per item (in :func:`command_items` order):
    None when the device confirmed it, else why not (:class:`~tieline.errors.Refused`,
    :class:`~tieline.errors.Protected`, :class:`~tieline.errors.ConfirmTimeout`,
    :class:`~tieline.errors.RouterOffline`)."""

    command: Command
    results: tuple[RequestError | None, ...]

    @property
    def confirmed(self) -> bool:
        """Whether the device confirmed every item."""
        return all(result is None for result in self.results)


class DriverSession(abc.ABC):
    """The protocol state of one connection to a device. Pure: no sockets, no clock.

    Commands queue bytes; the device link sends whatever :meth:`data_to_send` returns after
    every call into the session.
    """

    def __init__(self) -> None:
        self._outgoing = bytearray()

    def _send(self, data: bytes) -> None:
        self._outgoing += data

    def data_to_send(self) -> bytes:
        """Bytes queued for the device since the last call."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def connection_made(self, now: float) -> None:
        """The transport connected: queue the login and the full state request.

        The session must report :class:`SyncDone` once the device has sent its whole
        state (crosspoints, and labels and protects where the protocol has them).
        """

    @abc.abstractmethod
    def receive_data(self, data: bytes, now: float) -> list[DeviceReport]:
        """Feed bytes from the device; return what they mean.

        :raises RemoteProtocolError: on bytes the protocol cannot explain. The link logs
            it, drops the connection and resyncs.
        """

    def send(self, command: Command) -> None:
        """Queue the bytes of ``command``; the link writes them, then resolves each of its
        items from the reports that follow (see the module docstring).

        The default hands each kind of command to the method below that queues it; a
        session may handle every :class:`Command` here itself instead.

        :raises InvalidRequest: when the device cannot be asked this (nothing is queued).
        """
        match command:
            case RouteCommand(crosspoints=crosspoints, owner=owner):
                self.route(crosspoints, owner)
            case ProtectCommand(level=level, destination=destination, kind=kind, owner=owner):
                self.protect(level, destination, kind, owner)
            case ReleaseCommand(level=level, destination=destination, owner=owner,
                                force=force):
                self.release(level, destination, owner, force)
            case LabelCommand(kind=kind, index=index, text=text):
                self.set_label(kind, index, text)
            case _:
                raise TypeError(f"not a command: {command!r}")

    @abc.abstractmethod
    def route(self, crosspoints: Sequence[Crosspoint], owner: str) -> None:
        """Queue commands that set ``crosspoints``.

        The device's tally (a :class:`TallyReport` naming each crosspoint) is the
        confirmation; if the protocol does not echo unchanged routes, the session must
        interrogate so that every requested crosspoint is reported.
        """

    def protect(self, level: int, destination: int, kind: ProtectKind, owner: str) -> None:
        """Queue a protect command (only for kinds in ``Driver.device_protects``)."""
        raise NotImplementedError

    def release(self, level: int, destination: int, owner: str, force: bool) -> None:
        """Queue a release command (only for kinds in ``Driver.device_protects``)."""
        raise NotImplementedError

    def set_label(self, kind: PortKind, index: int, text: str) -> None:
        """Queue a label change (only when ``Driver.device_labels``)."""
        raise NotImplementedError

    def withdraw(self) -> Sequence[Hashable]:
        """The node may not act any more (it stopped being the active node, or cannot
        confirm it still is): drop every command not yet on the wire, and never send one
        again (no re-send after a timeout, nothing queued behind the one in flight). Reads
        of the device's state and keepalives go on.

        The link calls this before it writes anything while the node may not act. A
        session that writes each command's bytes at once, when :meth:`send` is called,
        keeps nothing to withdraw: the default does nothing. A session that queues
        commands (stop-and-wait, a window of requests in flight) or re-sends them must
        drop them here: otherwise a node whose epoch was superseded would still change the
        router (docs/plugins.md, "the fence").

        :returns: the items (keys as :func:`command_items` gives them: ``("dst", level,
            destination)``, ``("label", kind, index)``) of the commands dropped before any
            of their bytes went out. The link ends them with the fence's error: they were
            not sent, so no later report may confirm them (another node may make the very
            change meanwhile; this node did not). Leave out a command whose frame went out
            even once: it may have reached the device, and its outcome comes from the
            device's reports (or times out).
        """
        return ()

    def keepalive(self, now: float) -> None:
        """Queue a keepalive that the device answers (the link sends it when idle)."""

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must next be called (retries, timeouts), or None."""
        return None

    def tick(self, now: float) -> list[DeviceReport]:
        """Advance the session's timers to ``now``."""
        return []


class Driver(abc.ABC):
    """A router driver: what a plugin returns from ``tieline_router_drivers``.

    :param spec: the router's shape from settings.
    :param options: the router's whole settings block (driver-specific keys included).
    :param transport: the transport built from the ``"transport"`` block, or None.
    """

    #: the value of ``"driver"`` in a router's settings.
    name: ClassVar[str]
    #: JSON Schema ``properties`` of the driver's own keys in the router block.
    settings_schema: ClassVar[dict[str, Any]] = {}
    #: transport types the driver can run over.
    transports: ClassVar[tuple[str, ...]] = ("tcp",)
    #: whether a ``"transport"`` block is required.
    transport_required: ClassVar[bool] = True
    #: per transport type, the protocol's usual settings, e.g.
    #: ``{"tcp": {"port": 9990}, "serial": {"baudrate": 38400, "parity": "N"}}``.
    transport_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    #: whether the device tolerates another controller beside tieline (warm standby).
    allows_second_controller: ClassVar[bool] = True
    #: protect kinds the device itself holds; other kinds are held by tieline.
    device_protects: ClassVar[frozenset[ProtectKind]] = frozenset()
    #: whether the device stores port labels.
    device_labels: ClassVar[bool] = False
    #: send a keepalive after this long without data from the device.
    keepalive_interval_s: ClassVar[float] = 5.0
    #: give the connection up after this long without data (half-open socket).
    keepalive_timeout_s: ClassVar[float] = 15.0
    #: how long the full state read after connecting may take.
    sync_timeout_s: ClassVar[float] = 30.0

    def __init__(
        self, spec: RouterSpec, options: dict[str, Any], transport: Transport | None
    ) -> None:
        self.spec = spec
        self.options = options
        self.transport = transport

    async def start(self) -> None:
        """Called once before the link first connects (an in-process device starts here)."""

    async def stop(self) -> None:
        """Called once after the link has stopped."""

    async def open(self) -> ByteStream:
        """Open a byte stream to the device (by default through the transport)."""
        if self.transport is None:
            raise LinkError(f"router '{self.spec.id}' has no transport configured")
        return await self.transport.open()

    def describe(self) -> str:
        return self.transport.describe() if self.transport else "in-process"

    @abc.abstractmethod
    def new_session(self) -> DriverSession:
        """A fresh session for a new connection."""

    @classmethod
    def check(cls, spec: RouterSpec, options: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems of a router block that its schema cannot state, as ``(key, message)``
        pairs; ``tieline validate`` and every start report them with file, line and path."""
        return []


class LinkSink(Protocol):
    """Where a device link delivers what it learns (the RoutingService)."""

    def device_reports(self, router: str, reports: list[DeviceReport]) -> None: ...

    def device_online(self, router: str) -> None: ...

    def device_offline(self, router: str, reason: str) -> None: ...


def is_retryable(exc: BaseException) -> bool:
    """Whether a link failure is worth a reconnect (everything a device can cause is)."""
    return isinstance(exc, (LinkError, RemoteProtocolError, OSError, TimeoutError, EOFError))


#: bytes of one chunk that the debug log shows
WIRE_DUMP_BYTES = 256


def wire_dump(data: bytes, limit: int = WIRE_DUMP_BYTES) -> str:
    """Bytes on a device line as the debug log shows them: the count, hex, and the same
    bytes as ASCII between bars (``.`` for a byte that is not printable), at most ``limit``
    of them.

    >>> wire_dump(b"DUMP\\r\\n")
    '6 bytes: 44 55 4d 50 0d 0a |DUMP..|'
    """
    shown = data[:limit]
    text = "".join(chr(b) if 0x20 <= b < 0x7f else "." for b in shown)
    more = f" … (+{len(data) - limit} bytes)" if len(data) > limit else ""
    return f"{len(data)} bytes: {shown.hex(' ')} |{text}|{more}"


class DeviceLink:
    """Runs one driver's session over its transport for as long as the node runs.

    :param driver: the router's driver.
    :param sink: receives reports, and online/offline changes.
    :param clock: monotonic clock (seconds).
    """

    read_size = 65536
    connect_timeout_s = 5.0
    write_timeout_s = 5.0
    #: how long a closing connection may take to flush before the link moves on.
    close_timeout_s = 1.0

    def __init__(
        self, driver: Driver, sink: LinkSink, *, clock: Any = time.monotonic,
        backoff_factory: Any = backoff,
    ) -> None:
        self.driver = driver
        self.router = driver.spec.id
        self.sink = sink
        self.clock = clock
        self._backoff_factory = backoff_factory
        self._stream: ByteStream | None = None
        self._read_timeout: asyncio.Timeout | None = None  #: the wait for device data
        self._session: DriverSession | None = None
        self.online = False
        self.connects = 0  #: successful full-state reads so far
        self._down_since_logged = False
        self._ever_online = False
        self._retry_now = asyncio.Event()
        self._tickets = itertools.count(1)
        #: raises a RequestError when the node may not act (the routing service sets its
        #: fence check): checked when a command is handed to the session and before every
        #: write; while it raises, the session withdraws its commands (see the module)
        self.guard: Callable[[], None] | None = None
        #: per item, the commands that touch it, in the order submitted; the first is the
        #: one that may be in flight
        self._queues: dict[Hashable, collections.deque[_Pending]] = {}
        #: per item, the command written to the device and waiting for its outcome
        self._in_flight: dict[Hashable, _Pending] = {}

    def retry_now(self) -> None:
        """Cut short the wait before the next connection attempt (a failover candidate
        wants the router now, not at the end of a long backoff)."""
        self._retry_now.set()

    # -- commands ----------------------------------------------------------------------
    async def submit(self, command: Command, timeout: float) -> Outcome:
        """Send ``command`` to the device and wait for its own outcome (see the module
        docstring): each item confirmed, refused or timed out, ``timeout`` seconds at most
        after the command was written. It waits first, in order, for the commands
        submitted before it on the same items. The :attr:`guard` is checked at the
        instant it would be written.

        :raises InvalidRequest: the session cannot put the command into the protocol
            (nothing was sent).
        """
        command = replace(command, ticket=next(self._tickets))
        pending = _Pending(command, command_items(command))
        for key in pending.keys:
            self._queues.setdefault(key, collections.deque()).append(pending)
        try:
            self._start_if_first(pending)
            await pending.turn
            self._send(pending)
            if not pending.done.done():
                try:
                    await self._write_queued()
                except LinkError as exc:
                    pending.fail_all(RouterOffline(
                        f"router '{self.router}': {exc.reason}; the link will reconnect. "
                        "The request may or may not have reached the device: check the tally"))
                self._timers_changed()
            if not pending.done.done():
                timer = asyncio.get_running_loop().call_later(
                    timeout, pending.fail_all, ConfirmTimeout(
                        f"router '{self.router}': the device did not confirm within "
                        f"{timeout:g} s"))
                try:
                    await pending.done
                finally:
                    timer.cancel()
            return Outcome(command, tuple(pending.results))  # type: ignore[arg-type]
        finally:
            self._retire(pending)

    def _send(self, pending: _Pending) -> None:
        """Its turn: hand the command to the session (the one place that does), and wait
        for reports on its items from now on."""
        if self.guard is not None:
            try:
                self.guard()
            except RequestError as exc:
                pending.fail_all(exc)
                return
        if not self.online or self._session is None:
            pending.fail_all(RouterOffline(
                f"router '{self.router}' is offline ({self.driver.describe()}); the request "
                "was not sent. Check the device and its connection."))
            return
        self._session.send(pending.command)  # InvalidRequest: nothing queued, nothing sent
        for key in pending.keys:
            self._in_flight[key] = pending

    def _start_if_first(self, pending: _Pending) -> None:
        if not pending.turn.done() and all(
                self._queues[key][0] is pending for key in pending.keys):
            pending.turn.set_result(None)

    def _retire(self, pending: _Pending) -> None:
        """The command has its outcome (or its caller gave up): free its items, and let
        the next command on each of them go."""
        if not pending.turn.done():
            pending.turn.cancel()
        pending.fail_all(RouterOffline(f"router '{self.router}': the request was abandoned"))
        for key in pending.keys:
            if self._in_flight.get(key) is pending:
                del self._in_flight[key]
            queue = self._queues[key]
            queue.remove(pending)
            if queue:
                self._start_if_first(queue[0])
            else:
                del self._queues[key]

    def _resolve(self, reports: list[DeviceReport]) -> None:
        """Reports from the device settle the commands in flight on what they name."""
        in_flight = self._in_flight
        router = self.router
        for report in reports:
            if isinstance(report, TallyReport):
                for xp in report.crosspoints:
                    pending = in_flight.get(("dst", xp.level, xp.destination))
                    if pending is not None:
                        pending.settle(("dst", xp.level, xp.destination), xp.source, None)
            elif isinstance(report, ProtectReport):
                for level in self._levels(report.level):
                    key = ("dst", level, report.destination)
                    pending = in_flight.get(key)
                    if pending is not None:
                        pending.settle(key, report.protect, None)
            elif isinstance(report, LabelReport):
                for index, text in report.labels:
                    key = ("label", report.kind, index)
                    pending = in_flight.get(key)
                    if pending is not None:
                        pending.settle(key, text, None)
            elif isinstance(report, RequestRefused):
                error: RequestError = (
                    Protected(f"router '{router}' refused: {report.reason}", owner=report.owner)
                    if report.owner is not None
                    else Refused(f"router '{router}' refused: {report.reason}"))
                for level in self._levels(report.level):
                    key = ("dst", level, report.destination)
                    pending = in_flight.get(key)
                    if pending is not None:
                        pending.settle(key, _ANY, error)
            elif isinstance(report, LabelRefused):
                key = ("label", report.kind, report.index)
                pending = in_flight.get(key)
                if pending is not None:
                    pending.settle(key, _ANY, Refused(
                        f"router '{router}' refused the label: {report.reason}"))

    def _levels(self, level: int | None) -> range | tuple[int]:
        return range(len(self.driver.spec.levels)) if level is None else (level,)

    def _timers_changed(self) -> None:
        """After a command: give the session the time (a frame queued by ``route()`` starts
        its timers now) and, if its next deadline moved earlier, cut the current wait for
        device data short so that tick() runs on time."""
        session, waiting = self._session, self._read_timeout
        if session is None:
            return
        now = self.clock()
        reports = session.tick(now)
        if reports:
            self._deliver(reports)
        deadline = session.next_deadline()
        if deadline is None or waiting is None or waiting.expired():
            return
        current = waiting.when()
        loop_when = asyncio.get_running_loop().time() + max(0.0, deadline - now)
        if current is None or loop_when < current - 0.001:
            waiting.reschedule(loop_when)

    async def _write_queued(self) -> None:
        """Send what the session queued; raise LinkError (and close the stream) on failure.

        While the node may not act (the guard raises), the session first withdraws its
        commands (only reads and keepalives go out): nothing reaches the router from a node
        whose epoch may have been superseded, not even a re-send or a frame queued in the
        driver. What the session withdrew unsent ends with the guard's error ("not
        sent"). Commands already written keep waiting for their outcome: the router's
        report of one written while the node could act is the truth and is acknowledged;
        one whose frame was withdrawn before it arrived times out ("check the tally").
        """
        session, stream = self._session, self._stream
        if session is None or stream is None:
            return
        acting = False
        if self.guard is not None:
            try:
                self.guard()
                acting = True
            except RequestError as exc:
                in_flight = self._in_flight
                for key in session.withdraw():
                    pending = in_flight.get(key)
                    if pending is not None:  # never sent: not this node's to confirm
                        pending.settle(key, _ANY, exc)
        data = session.data_to_send()
        if not data:
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("router '%s' >> %s", self.router, wire_dump(data))
        try:
            stream.write(data)
            async with asyncio.timeout(self.write_timeout_s):
                await stream.drain()
        except (TimeoutError, OSError) as exc:
            stream.close()
            why = (f"timed out after {self.write_timeout_s:g} s"
                   if isinstance(exc, TimeoutError) else type(exc).__name__)
            raise LinkError(f"could not write to the device ({why})") from exc
        if acting:
            self._check_fence_held()

    def _check_fence_held(self) -> None:
        """After a write made while the node could act: if it may not act now, the fence
        shut between the check and the moment the bytes were the kernel's. No check made
        in a program can close that window (a process stopped, or not scheduled, right
        after its check writes when it runs again; only a device that checked a fencing
        token could refuse it, and no router protocol has one), so it is made as narrow as
        a write and, when crossed, said: what was written may have reached the router
        after the node's epoch was superseded. The router's tally shows what it did."""
        assert self.guard is not None
        try:
            self.guard()
        except RequestError:
            log.warning(
                "router '%s': this node lost the right to act while it was writing to the "
                "router (was the process stalled?); what it wrote may have reached the "
                "router after another node took over. The router's tally is followed as "
                "ever: check it", self.router)

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, read the device's state, follow it; reconnect forever. Cancel to stop."""
        await self.driver.start()
        delays = self._backoff_factory()
        try:
            while True:
                try:
                    await self._connect_and_follow()
                    reason = "the link ended"
                except (LinkError, RemoteProtocolError, OSError, TimeoutError, EOFError) as exc:
                    reason = _reason(exc)
                    if isinstance(exc, RemoteProtocolError):
                        log.warning(
                            "router '%s': unparseable data from the device (%s); resyncing",
                            self.router, exc,
                        )
                was_online = self.online
                self._set_offline(reason)
                if was_online:
                    delays = self._backoff_factory()
                delay = next(delays)
                if not self._down_since_logged:
                    log.warning(
                        "router '%s': %s; retrying in %.1f s and then with backoff",
                        self.router, reason, delay,
                    )
                    self._down_since_logged = True
                else:
                    log.debug("router '%s': %s; retrying in %.1f s", self.router, reason, delay)
                self._retry_now.clear()
                try:
                    async with asyncio.timeout(delay):
                        await self._retry_now.wait()
                except TimeoutError:
                    pass
        finally:
            self._set_offline("tieline is stopping")
            await self.driver.stop()

    async def _connect_and_follow(self) -> None:
        # asyncio.timeout, never wait_for: on 3.11 wait_for can swallow a cancellation
        async with asyncio.timeout(self.connect_timeout_s):
            stream = await self.driver.open()
        session = self.driver.new_session()
        self._stream, self._session = stream, session
        try:
            now = self.clock()
            session.connection_made(now)
            await self._write_queued()
            await self._follow(stream, session, now)
        finally:
            self._stream = self._session = None
            # abort, not close: a device that stopped reading would keep a closing socket
            # (and its buffered commands) alive; nothing queued may reach it after a resync
            abort = getattr(stream, "abort", None)
            if abort is not None:
                abort()
            else:
                stream.close()
            try:
                async with asyncio.timeout(self.close_timeout_s):
                    await stream.wait_closed()
            except (TimeoutError, OSError):
                pass

    async def _follow(self, stream: ByteStream, session: DriverSession, start: float) -> None:
        driver = self.driver
        last_rx = start
        last_keepalive = start
        sync_deadline = start + driver.sync_timeout_s
        while True:
            now = self.clock()
            deadlines = [last_rx + driver.keepalive_timeout_s]
            if not self.online:
                deadlines.append(sync_deadline)
            if now - max(last_rx, last_keepalive) < driver.keepalive_interval_s:
                deadlines.append(max(last_rx, last_keepalive) + driver.keepalive_interval_s)
            session_deadline = session.next_deadline()
            if session_deadline is not None:
                deadlines.append(session_deadline)
            timeout = max(0.0, min(deadlines) - now)
            try:
                async with asyncio.timeout(timeout) as self._read_timeout:
                    data = await stream.read(self.read_size)
            except TimeoutError:
                data = None
            finally:
                self._read_timeout = None
            now = self.clock()
            if data is not None:
                if not data:
                    raise LinkError("the device closed the connection")
                last_rx = now
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("router '%s' << %s", self.router, wire_dump(data))
                self._deliver(session.receive_data(data, now))
            else:
                if now >= last_rx + driver.keepalive_timeout_s:
                    raise LinkError(
                        f"no data from the device for {driver.keepalive_timeout_s:g} s "
                        "(half-open connection or hung device)"
                    )
                if not self.online and now >= sync_deadline:
                    raise LinkError(
                        f"the device did not send its whole state within "
                        f"{driver.sync_timeout_s:g} s"
                    )
                if now - max(last_rx, last_keepalive) >= driver.keepalive_interval_s:
                    session.keepalive(now)
                    last_keepalive = now
            deadline = session.next_deadline()
            if deadline is not None and now >= deadline:
                self._deliver(session.tick(now))
            await self._write_queued()

    def _deliver(self, reports: list[DeviceReport]) -> None:
        if not reports:
            return
        self.sink.device_reports(self.router, reports)
        if self._in_flight:  # the state first, then the outcomes it confirms
            self._resolve(reports)
        if not self.online and any(isinstance(r, SyncDone) for r in reports):
            self.online = True
            self.connects += 1
            if self._down_since_logged or self._ever_online:
                log.info("router '%s': back online (%s)", self.router, self.driver.describe())
            else:
                log.info("router '%s': online (%s)", self.router, self.driver.describe())
            self._ever_online = True
            self._down_since_logged = False
            self.sink.device_online(self.router)

    def _set_offline(self, reason: str) -> None:
        if self.online:
            self.online = False
            self.sink.device_offline(self.router, reason)
        error = RouterOffline(
            f"router '{self.router}' went offline before confirming ({reason}); the request "
            "may or may not have been made: check the tally")
        for pending in set(self._in_flight.values()):
            pending.fail_all(error)


class _Any:
    """Matches every expected state (a refusal settles an item whatever it asked for)."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


_ANY: Any = _Any()
_WAITING: Any = object()


class _Pending:
    """One submitted command: its items, their results so far, and two futures: its turn
    (every item free) and its outcome (every item settled)."""

    __slots__ = ("command", "items", "keys", "by_key", "results", "left", "turn", "done")

    def __init__(self, command: Command, items: list[tuple[Hashable, object]]) -> None:
        loop = asyncio.get_running_loop()
        self.command = command
        self.items = items
        #: per key, the indices of its items (a salvo's report settles one item at a time:
        #: scanning every item each time made a 1,000-crosspoint salvo cost 1,000,000 steps)
        self.by_key: dict[Hashable, list[int]] = {}
        for index, (key, _) in enumerate(items):
            self.by_key.setdefault(key, []).append(index)
        self.keys = list(self.by_key)  # each once, in order
        self.results: list[Any] = [_WAITING] * len(items)
        self.left = len(items)
        self.turn: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()

    def settle(self, key: Hashable, state: object, error: RequestError | None) -> None:
        """The device reported ``state`` on ``key`` (or refused it: ``error``)."""
        results, items = self.results, self.items
        for index in self.by_key.get(key, ()):
            if results[index] is _WAITING and state == items[index][1]:
                results[index] = error
                self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)

    def fail_all(self, error: RequestError) -> None:
        """Every item not settled yet ends with ``error``."""
        for index, result in enumerate(self.results):
            if result is _WAITING:
                self.results[index] = error
        self.left = 0
        if not self.done.done():
            self.done.set_result(None)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out connecting"
    text = str(exc) or type(exc).__name__
    return text
