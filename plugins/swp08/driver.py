"""The SW-P-08 driver: controller-side glue between the codec (codec.py) and the device link.

One :class:`SWP08Session` per connection (TCP or serial: the same bytes, notes §1):

* **Start-up and every reconnect** (notes §8): a tally dump request (21, or 149 for the
  extended form) per configured level; if the device does not answer it (99 INVALID MESSAGE,
  or no reply within ``reply_timeout_s``) or stops short, the destinations still unknown are
  interrogated one by one (01/129). Then, with ``names``, all source names of the first
  level (100/228) and all destination association names of its matrix (102/230). The router
  is online (``SyncDone``) once all of that is in or has timed out. Only state reads are
  sent: never a CONNECT.
* **Protects** (notes §7), with ``"protects": "read"``: after start-up every configured
  destination's protect is interrogated (10/138) in the background, behind any route, and
  PROTECT TALLY/CONNECTED/DISCONNECTED (11/13/15 and extended) keep the mirror current. They
  are reported read-only, owned by ``device N`` (with the device's name from 17/18 once
  known). tieline holds its own protects and locks (``device_protects`` is empty): the
  device's protect owner is a device number, one per controller connection, so the device
  cannot tell tieline's users apart, and what a device does with a CONNECT to a protected
  destination is not confirmed (notes §14).
* **Routes**: one CONNECT (02/130) per crosspoint; there is no multi-crosspoint command
  (group salvos 120–125 exist on XD and Eclipse only, notes §7). The link is stop-and-wait
  (notes §3), so a salvo costs one link round trip (frame → ``DLE ACK``) per crosspoint, but
  no CONNECT waits for the previous one's confirmation: the CONNECTED broadcasts (04/132)
  come back while later CONNECTs are still going out. A crosspoint not confirmed by a
  CONNECTED within ``confirm_fallback_s`` of its ACK is interrogated once, for devices that do
  not re-broadcast a route that was already set. A CONNECTED or TALLY naming another source
  for a destination the device reports protected is a refusal naming the protect's owner.
* **Liveness**: the keepalive is a real CROSSPOINT INTERROGATE of the first level's first
  destination (notes §8); a frame left without ``DLE ACK`` after ``retries`` re-sends drops
  the connection (notes §3: the 5-retry rule).
* **Damage**: frames with a bad checksum or byte count are answered ``DLE NAK`` and re-sent
  by the device; other damage (bytes outside frames, broken DLE sequences) is logged and the
  framing resynchronises on the next ``DLE STX`` (notes §2). More than ``retries + 1`` such
  errors in a row, or a well-formed frame whose content breaks its layout, raise
  :class:`~tieline.errors.RemoteProtocolError`: the link drops the connection and re-reads
  everything.
* **Names**: source names are per level, destination names per matrix (association names).
  Label writes use UPDATE NAME REQUEST 117 (4–16 characters), which has no answer; the
  session reads the name back (101/103) and that reply confirms the write.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tieline import (
    Crosspoint,
    DeviceReport,
    Driver,
    DriverSession,
    InvalidRequest,
    LabelReport,
    LinkError,
    LogOnce,
    PortKind,
    Protect,
    ProtectKind,
    ProtectReport,
    RemoteProtocolError,
    RequestRefused,
    RouterSpec,
    SettingsError,
    SettingsProblem,
    SyncDone,
    TallyReport,
    Transport,
)

from .codec import (
    NORMAL_MAX_ML,
    NORMAL_MAX_PORT,
    Codec,
    Connect,
    Connected,
    Delivered,
    DestinationNames,
    DestinationNamesRequest,
    DualStatus,
    FrameError,
    Interrogate,
    InvalidMessage,
    Message,
    NameKind,
    NamesUpdated,
    ProtectConnected,
    ProtectDeviceName,
    ProtectDeviceNameRequest,
    ProtectDisconnected,
    ProtectInterrogate,
    ProtectState,
    ProtectTally,
    Role,
    SourceNames,
    SourceNamesRequest,
    Tally,
    TallyDumpByte,
    TallyDumpRequest,
    TallyDumpWord,
    Undelivered,
    UnknownMessage,
    UpdateName,
    Withdrawn,
    command_of,
)

log = logging.getLogger(__name__)

_WIRE_NUMBER = {"type": "integer", "minimum": 0, "maximum": 255}


@dataclass(frozen=True, slots=True)
class WireLevel:
    """Where a tieline level is on the wire: SW-P-08 matrix and level numbers, 0-based."""

    matrix: int
    level: int


def _wire_levels(spec: RouterSpec, options: dict[str, Any]
                 ) -> tuple[tuple[WireLevel, ...], list[tuple[str, str]]]:
    """The wire matrix and level of each tieline level, and the problems of the settings."""
    matrix = options.get("matrix", 0)
    numbers = options.get("level_numbers", {})
    problems = []
    for name in numbers:
        if name not in spec.levels:
            problems.append(("level_numbers", f"'{name}' is not one of the router's levels ("
                             + ", ".join(spec.levels) + ")"))
    out: list[WireLevel] = []
    seen: dict[WireLevel, str] = {}
    for index, name in enumerate(spec.levels):
        given = numbers.get(name, index)
        if isinstance(given, dict):
            wire = WireLevel(given.get("matrix", matrix), given["level"])
        else:
            wire = WireLevel(matrix, given)
        if wire in seen:
            problems.append(("level_numbers", f"levels '{seen[wire]}' and '{name}' are both "
                             f"SW-P-08 matrix {wire.matrix} level {wire.level}; give each "
                             "level its own"))
        seen.setdefault(wire, name)
        if not (0 <= wire.matrix <= 255 and 0 <= wire.level <= 255):
            problems.append(("level_numbers", f"level '{name}': SW-P-08 numbers are 0–255"))
        out.append(wire)
    return tuple(out), problems


class _Job:
    """One state read: which items (destinations, names …) have come in, and its timer."""

    __slots__ = ("kind", "level", "size", "seen", "remaining", "deadline", "sync", "done",
                 "progress")

    def __init__(self, kind: str, level: int | None, size: int, *, sync: bool) -> None:
        self.kind = kind
        self.level = level  #: tieline level index, for per-level jobs
        self.size = size
        self.seen = bytearray(size)
        self.remaining = size
        self.deadline: float | None = None
        self.sync = sync  #: part of the start-up read (SyncDone waits for it)
        self.done = False
        self.progress = 0  #: items received

    def mark(self, index: int) -> bool:
        if 0 <= index < self.size and not self.seen[index]:
            self.seen[index] = 1
            self.remaining -= 1
            self.progress += 1
            return True
        return False


class _Await:
    """A requested crosspoint waiting for the device to confirm it."""

    __slots__ = ("source", "message", "interrogated")

    def __init__(self, source: int, message: Connect) -> None:
        self.source = source
        self.message = message
        self.interrogated = False


class SWP08Session(DriverSession):
    """One connection to an SW-P-08 router, controller side (the spec's "remote device")."""

    def __init__(self, driver: SWP08Driver) -> None:
        super().__init__()
        self.driver = driver
        self.spec = driver.spec
        self.codec = Codec(Role.CONTROLLER, ack_timeout_s=driver.ack_timeout_s,
                           retries=driver.retries)
        self._now = 0.0
        self._jobs: list[_Job] = []
        self._syncing = False
        self._sync_done = False
        self._request_jobs: dict[int, tuple[Message, _Job]] = {}
        self._last_job: dict[int, _Job | None] = {}  #: by command: job of the last delivered
        self._background: deque[tuple[Message, _Job]] = deque()
        self._awaiting: dict[tuple[int, int], _Await] = {}
        self._fallbacks: deque[tuple[float, tuple[int, int], Connect]] = deque()
        self._last_connect: Connect | None = None
        self._good_data = False  #: a well-formed frame or ACK has arrived
        self._errors_in_a_row = 0
        #: damaged data (once good data came) and unknown commands, logged once
        self._log_once = LogOnce(log, max_keys=64)
        self._asked_device_names: set[int] = set()

    # -- helpers -------------------------------------------------------------------------
    def _queue(self, message: Message, now: float | None = None) -> None:
        try:
            self.codec.send(message, now)
        except (ValueError, OverflowError) as exc:
            raise InvalidRequest(
                f"router '{self.spec.id}': the request cannot be sent over SW-P-08: {exc}"
            ) from None
        self._outgoing += self.codec.data_to_send()

    def _request(self, message: Message, job: _Job, *, background: bool = False) -> None:
        if background:
            self._background.append((message, job))
        else:
            self._request_jobs[id(message)] = (message, job)
            self._queue(message, self._now)

    def _pump(self) -> None:
        """Feed background reads to the codec one at a time, only when nothing else waits."""
        while self._background and self.codec.pending == 0:
            message, job = self._background.popleft()
            if job.done:
                continue
            self._request_jobs[id(message)] = (message, job)
            self._queue(message, self._now)

    def data_to_send(self) -> bytes:
        self._outgoing += self.codec.data_to_send()
        return super().data_to_send()

    # -- start-up --------------------------------------------------------------------------
    def connection_made(self, now: float) -> None:
        self._now = now
        self._syncing = True
        d = self.driver
        for index, wire in enumerate(d.wire_levels):
            job = _Job("tally", index, self.spec.destinations, sync=True)
            self._jobs.append(job)
            extended = d.extended_for(wire, self.spec.destinations - 1, self.spec.sources - 1)
            self._request(TallyDumpRequest(wire.matrix, wire.level, extended), job)
        if d.read_names:
            self._read_names(sync=True)

    def _read_names(self, *, sync: bool) -> None:
        d = self.driver
        wire = d.wire_levels[0]
        extended = d.extended_for(wire)
        job = _Job("source names", 0, self.spec.sources, sync=sync)
        self._jobs.append(job)
        self._request(SourceNamesRequest(wire.matrix, wire.level, d.name_length, None,
                                         extended), job)
        job = _Job("destination names", None, self.spec.destinations, sync=sync)
        self._jobs.append(job)
        self._request(DestinationNamesRequest(wire.matrix, d.name_length, None, extended), job)

    def _read_protects(self) -> None:
        d = self.driver
        destinations = self.spec.destinations
        job = _Job("protects", None, destinations * len(d.wire_levels), sync=False)
        self._jobs.append(job)
        for wire in d.wire_levels:
            for dest in range(destinations):
                extended = d.extended_for(wire, dest)
                self._request(ProtectInterrogate(wire.matrix, wire.level, dest, extended),
                              job, background=True)

    def _check_sync(self, out: list[Any]) -> None:
        if self._syncing and all(job.done for job in self._jobs if job.sync):
            self._syncing = False
            self._sync_done = True
            out.append(SyncDone())
            if self.driver.read_protects:
                self._read_protects()

    # -- device -> core ----------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> list[DeviceReport]:
        self._now = now
        self.codec.receive_data(data, now)
        out: list[Any] = []
        while True:
            try:
                event = self.codec.next_event()
            except FrameError as exc:
                self._damaged(exc)
                continue
            if event is None:
                break
            self._errors_in_a_row = 0
            self._good_data = True
            self._handle(event, now, out)
        self._pump()
        return _merge(out)

    def _damaged(self, exc: FrameError) -> None:
        self._errors_in_a_row += 1
        limit = self.driver.retries + 1
        if self._errors_in_a_row > limit:
            raise RemoteProtocolError(
                f"{self._errors_in_a_row} damaged frames or garbage runs in a row from the "
                f"device (last: {exc}); the line looks unusable", exc.data)
        what = "answered DLE NAK; the device re-sends it" if exc.nak else \
            "discarded; the framing resynchronises at the next DLE STX"
        if self._good_data:
            self._log_once.log("damage", logging.WARNING, "router '%s': damaged data from the "
                               "device (%s); %s", self.spec.id, exc, what)
        else:
            log.debug("router '%s': damaged data from the device (%s); %s", self.spec.id, exc,
                      what)

    def _handle(self, event: Any, now: float, out: list[Any]) -> None:
        match event:
            case Delivered(message):
                self._delivered(message, now)
            case Undelivered(message, attempts, reason):
                raise LinkError(
                    f"the device did not acknowledge {type(message).__name__} after "
                    f"{attempts} attempts ({reason})")
            case Withdrawn(message):
                log.debug("router '%s': withdrawn %s not acknowledged; not sent again",
                          self.spec.id, type(message).__name__)
            case Tally() | Connected():
                self._tally(event, out)
            case TallyDumpWord() | TallyDumpByte():
                self._dump(event, now, out)
            case SourceNames():
                self._source_names(event, now, out)
            case DestinationNames():
                self._destination_names(event, now, out)
            case ProtectTally() | ProtectConnected() | ProtectDisconnected():
                self._protect(event, now, out)
            case ProtectDeviceName(device, name):
                self._device_name(device, name, out)
            case NamesUpdated():
                if self.driver.read_names and self._sync_done:
                    log.info("router '%s': the device says names changed; reading them again",
                             self.spec.id)
                    self._read_names(sync=False)
            case InvalidMessage(command):
                self._invalid(command, now, out)
            case DualStatus(slave_active, this_active, idle_state):
                log.debug("router '%s': dual controller status: slave active %s, this active %s, "
                          "idle %d", self.spec.id, slave_active, this_active, idle_state)
            case UnknownMessage(command):
                self._log_once.log(("unknown", command), logging.INFO, "router '%s': the "
                                   "device sent command %d, which tieline does not use; "
                                   "ignored", self.spec.id, command)
            case _:
                log.debug("router '%s': ignored %r", self.spec.id, event)
        self._timeouts(now, out)

    def _delivered(self, message: Message, now: float) -> None:
        entry = self._request_jobs.pop(id(message), None)
        job = entry[1] if entry is not None and entry[0] is message else None
        command = command_of(message)
        self._last_job[command] = job
        if job is not None and not job.done:
            job.deadline = now + self.driver.reply_timeout_s
        if isinstance(message, Connect):
            self._last_connect = message
            key = self._key_of(message)
            if key is not None:
                self._fallbacks.append((now + self.driver.confirm_fallback_s, key, message))

    def _key_of(self, message: Connect) -> tuple[int, int] | None:
        level = self.driver.by_wire.get((message.matrix, message.level))
        return None if level is None else (level, message.destination)

    def _tally(self, message: Tally | Connected, out: list[Any]) -> None:
        level = self.driver.by_wire.get((message.matrix, message.level))
        if level is None:
            return
        dest, src = message.destination, message.source
        out.append(Crosspoint(level, dest, src))
        for job in self._jobs:
            if job.level == level and job.kind.startswith("tally") and not job.done:
                if job.mark(dest):
                    job.deadline = self._now + self.driver.reply_timeout_s
                    if job.remaining == 0:
                        self._finish(job, out)
        self._check_awaiting(level, dest, src, isinstance(message, Tally), out)

    def _check_awaiting(self, level: int, dest: int, src: int, is_reply: bool,
                        out: list[Any]) -> None:
        waiting = self._awaiting.get((level, dest))
        if waiting is None:
            return
        if waiting.source == src:
            del self._awaiting[(level, dest)]
            return
        held = self.driver.protect_mirror.get((level, dest))
        if held is not None:
            del self._awaiting[(level, dest)]
            owner = self.driver.owner_name(held[1])
            name = self.spec.levels[level]
            out.append(RequestRefused(
                level, dest, f"destination {dest + 1} on level {name} is protected by {owner} "
                f"at the router; it still takes source {src + 1}", owner))
            out.append(ProtectReport(level, dest, self.driver.protect_of(held)))
        elif is_reply and waiting.interrogated:
            del self._awaiting[(level, dest)]  # asked, and the device says otherwise

    def _dump(self, message: TallyDumpWord | TallyDumpByte, now: float, out: list[Any]) -> None:
        level = self.driver.by_wire.get((message.matrix, message.level))
        if level is None:
            return
        first = message.first
        jobs = [j for j in self._jobs
                if j.level == level and j.kind.startswith("tally") and not j.done]
        awaiting = self._awaiting
        for offset, src in enumerate(message.sources):
            dest = first + offset
            out.append(Crosspoint(level, dest, src))
            for job in jobs:
                job.mark(dest)
            if awaiting and (level, dest) in awaiting:
                self._check_awaiting(level, dest, src, False, out)
        for job in jobs:
            job.deadline = now + self.driver.reply_timeout_s
            if job.remaining == 0:
                self._finish(job, out)

    def _source_names(self, message: SourceNames, now: float, out: list[Any]) -> None:
        wire = self.driver.wire_levels[0]
        if (message.matrix, message.level) != (wire.matrix, wire.level):
            return
        labels = [(message.first + i, text) for i, text in enumerate(message.names)]
        out.append((PortKind.SOURCE, labels))
        self._names_progress("source names", [i for i, _ in labels], now, out)

    def _destination_names(self, message: DestinationNames, now: float, out: list[Any]) -> None:
        if message.matrix != self.driver.wire_levels[0].matrix:
            return
        labels = [(message.first + i, text) for i, text in enumerate(message.names)]
        out.append((PortKind.DESTINATION, labels))
        self._names_progress("destination names", [i for i, _ in labels], now, out)

    def _names_progress(self, kind: str, indexes: list[int], now: float, out: list[Any]) -> None:
        for job in self._jobs:
            if job.kind == kind and not job.done:
                for index in indexes:
                    job.mark(index)
                job.deadline = now + self.driver.reply_timeout_s
                if job.remaining == 0:
                    self._finish(job, out)

    def _protect(self, message: ProtectTally | ProtectConnected | ProtectDisconnected,
                 now: float, out: list[Any]) -> None:
        d = self.driver
        if not d.read_protects:
            return
        level = d.by_wire.get((message.matrix, message.level))
        if level is None or message.destination >= self.spec.destinations:
            return
        key = (level, message.destination)
        if message.state == ProtectState.NONE:
            if d.protect_mirror.pop(key, None) is not None:
                out.append(ProtectReport(level, message.destination, None))
        else:
            held = (message.state, message.device)
            if d.protect_mirror.get(key) != held:
                d.protect_mirror[key] = held
                out.append(ProtectReport(level, message.destination, d.protect_of(held)))
            self._ask_device_name(message.device)
        if isinstance(message, ProtectTally):
            for job in self._jobs:
                if job.kind == "protects" and not job.done:
                    job.mark(level * self.spec.destinations + message.destination)
                    job.deadline = now + d.reply_timeout_s
                    if job.remaining == 0:
                        self._finish(job, out)

    def _ask_device_name(self, device: int) -> None:
        if (device <= NORMAL_MAX_PORT and device not in self.driver.device_names
                and device not in self._asked_device_names):
            self._asked_device_names.add(device)
            job = _Job("device name", None, 1, sync=False)
            self._background.appendleft((ProtectDeviceNameRequest(device), job))

    def _device_name(self, device: int, name: str, out: list[Any]) -> None:
        d = self.driver
        if not name or d.device_names.get(device) == name:
            return
        d.device_names[device] = name
        for (level, dest), held in d.protect_mirror.items():
            if held[1] == device:
                out.append(ProtectReport(level, dest, d.protect_of(held)))

    def _invalid(self, command: int, now: float, out: list[Any]) -> None:
        job = self._last_job.get(command)
        if job is not None and not job.done:
            log.info("router '%s': the device does not implement command %d (INVALID MESSAGE)",
                     self.spec.id, command)
            self._give_up(job, out, "the device answered INVALID MESSAGE")
            return
        connect = self._last_connect
        if command in (2, 130) and connect is not None:
            key = self._key_of(connect)
            waiting = self._awaiting.get(key) if key else None
            if key is not None and waiting is not None and waiting.message is connect:
                del self._awaiting[key]
                out.append(RequestRefused(
                    key[0], key[1], f"the router rejected CONNECT of source "
                    f"{connect.source + 1} to destination {connect.destination + 1} "
                    "(INVALID MESSAGE: outside its size?)"))
                return
        log.warning("router '%s': the device answered INVALID MESSAGE to command %d",
                    self.spec.id, command)

    # -- jobs ----------------------------------------------------------------------------
    def _finish(self, job: _Job, out: list[Any]) -> None:
        job.done = True
        job.deadline = None
        if job.kind == "protects" or job.kind == "device name":
            return
        self._check_sync(out)

    def _give_up(self, job: _Job, out: list[Any], why: str) -> None:
        """A job stops short (no reply in time, or INVALID MESSAGE)."""
        job.done = True
        job.deadline = None
        name = self.spec.id
        if job.kind == "tally":
            assert job.level is not None
            wire = self.driver.wire_levels[job.level]
            missing = [dest for dest in range(job.size) if not job.seen[dest]]
            log.info("router '%s': level '%s': the tally dump (%s) covered %d of %d "
                     "destinations; interrogating the other %d one by one", name,
                     self.spec.levels[job.level], why, job.progress, job.size, len(missing))
            fallback = _Job("tally fallback", job.level, job.size, sync=job.sync)
            for dest in range(job.size):
                if job.seen[dest]:
                    fallback.mark(dest)
            self._jobs.append(fallback)
            for dest in missing:
                extended = self.driver.extended_for(wire, dest)
                self._request(Interrogate(wire.matrix, wire.level, dest, extended), fallback,
                              background=True)
        elif job.kind == "tally fallback":
            assert job.level is not None
            log.warning("router '%s': level '%s': %d of %d destinations did not answer (%s); "
                        "they stay unknown. Is the device smaller than settings say?", name,
                        self.spec.levels[job.level], job.remaining, job.size, why)
        elif job.kind in ("source names", "destination names"):
            log.info("router '%s': the device sent %d of %d %s (%s); the others are not read",
                     name, job.progress, job.size, job.kind, why)
        elif job.kind == "protects":
            log.info("router '%s': protects read for %d of %d destinations (%s)", name,
                     job.progress, job.size, why)
        self._check_sync(out)

    def _timeouts(self, now: float, out: list[Any]) -> None:
        for job in list(self._jobs):
            if not job.done and job.deadline is not None and now >= job.deadline:
                self._give_up(job, out, f"nothing for {self.driver.reply_timeout_s:g} s")
        if any(job.done for job in self._jobs) and len(self._jobs) > 16:
            self._jobs = [job for job in self._jobs if not job.done]
        fallbacks = self._fallbacks
        while fallbacks and fallbacks[0][0] <= now:
            _, key, connect = fallbacks.popleft()
            waiting = self._awaiting.get(key)
            if waiting is not None and waiting.message is connect and not waiting.interrogated:
                waiting.interrogated = True
                self._queue(Interrogate(connect.matrix, connect.level, connect.destination,
                                       connect.extended))

    # -- core -> device ------------------------------------------------------------------------
    def route(self, crosspoints: Sequence[Crosspoint], owner: str) -> None:
        d = self.driver
        for xp in crosspoints:
            wire = d.wire_levels[xp.level]
            message = Connect(wire.matrix, wire.level, xp.destination, xp.source,
                              d.extended_for(wire, xp.destination, xp.source))
            self._queue(message)
            self._awaiting[(xp.level, xp.destination)] = _Await(xp.source, message)

    def set_label(self, kind: PortKind, index: int, text: str) -> None:
        d = self.driver
        length = d.name_length
        if length > 16:
            raise InvalidRequest(
                f"router '{self.spec.id}': SW-P-08 cannot write {length}-character names "
                "(UPDATE NAME takes 4–16); set name_length to 16 or less, or keep labels in "
                "settings", field="text")
        if len(text) > length or any(not " " <= c <= "~" for c in text) or text != text.rstrip():
            raise InvalidRequest(
                f"router '{self.spec.id}': an SW-P-08 name is at most {length} printable "
                f"ASCII characters without trailing spaces, not {text!r}", field="text")
        wire = d.wire_levels[0]
        extended = d.extended_for(wire)
        if kind is PortKind.SOURCE:
            self._queue(UpdateName(NameKind.SOURCE, length, wire.matrix, wire.level, index,
                                  (text,)))
            self._queue(SourceNamesRequest(wire.matrix, wire.level, length, index, extended))
        else:
            self._queue(UpdateName(NameKind.DESTINATION_ASSOCIATION, length, wire.matrix, 0,
                                  index, (text,)))
            self._queue(DestinationNamesRequest(wire.matrix, length, index, extended))

    def withdraw(self) -> list[Hashable]:
        """The node may not act: every command (CONNECT, a name written) not yet on the
        line is dropped, and the one in flight is never sent again (the codec's stop-and-
        wait queue and its re-sends). Reads and keepalives go on. Returns the items of the
        commands dropped before they ever went out (the link fails them: not sent)."""
        dropped = self.codec.withdraw(lambda m: isinstance(m, (Connect, UpdateName)))
        items: list[Hashable] = []
        for message in dropped:
            self._request_jobs.pop(id(message), None)
            if isinstance(message, Connect):
                key = self._key_of(message)
                waiting = self._awaiting.get(key) if key is not None else None
                if waiting is not None and waiting.message is message:
                    del self._awaiting[key]
                if key is not None:
                    items.append(("dst", *key))
            elif isinstance(message, UpdateName):
                kind = (PortKind.SOURCE if message.kind == NameKind.SOURCE
                        else PortKind.DESTINATION)
                items.extend(("label", kind, message.first + i)
                             for i in range(len(message.names)))
        if dropped:
            log.info("router '%s': %d command(s) not sent: this node may not act now",
                     self.spec.id, len(dropped))
        return items

    def keepalive(self, now: float) -> None:
        self._now = now
        d = self.driver
        wire = d.wire_levels[0]
        self._queue(Interrogate(wire.matrix, wire.level, 0, d.extended_for(wire)), now)

    # -- timers ----------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        # The codec's ACK timer, the read jobs and the confirmation fallbacks: only timers
        # that are really due. A frame that route() put on the line (route() is not given
        # the time) starts its ACK timer at the next call that passes the time: the device's
        # ACK, any other data, the keepalive.
        deadlines = []
        codec_deadline = self.codec.next_deadline()
        if codec_deadline is not None:
            deadlines.append(codec_deadline)
        deadlines += [job.deadline for job in self._jobs
                      if job.deadline is not None and not job.done]
        fallbacks = self._fallbacks
        while fallbacks:  # drop the heads already confirmed
            _, key, connect = fallbacks[0]
            waiting = self._awaiting.get(key)
            if waiting is not None and waiting.message is connect and not waiting.interrogated:
                deadlines.append(fallbacks[0][0])
                break
            fallbacks.popleft()
        return min(deadlines, default=None)

    def tick(self, now: float) -> list[DeviceReport]:
        self._now = now
        self.codec.tick(now)
        out: list[Any] = []
        while True:
            try:
                event = self.codec.next_event()
            except FrameError as exc:
                self._damaged(exc)
                continue
            if event is None:
                break
            self._handle(event, now, out)
        self._timeouts(now, out)
        self._pump()
        return _merge(out)


def _merge(items: list[Any]) -> list[DeviceReport]:
    """Consecutive crosspoints become one TallyReport, consecutive labels one LabelReport."""
    reports: list[DeviceReport] = []
    crosspoints: list[Crosspoint] = []
    labels: tuple[PortKind, list[tuple[int, str]]] | None = None

    def flush() -> None:
        nonlocal labels
        if crosspoints:
            reports.append(TallyReport(tuple(crosspoints)))
            crosspoints.clear()
        if labels is not None:
            reports.append(LabelReport(labels[0], tuple(labels[1])))
            labels = None

    for item in items:
        if isinstance(item, Crosspoint):
            if labels is not None:
                flush()
            crosspoints.append(item)
        elif isinstance(item, tuple):
            if crosspoints or (labels is not None and labels[0] is not item[0]):
                flush()
            if labels is None:
                labels = (item[0], [])
            labels[1].extend(item[1])
        else:
            flush()
            reports.append(item)
    flush()
    return reports


class SWP08Driver(Driver):
    """Pro-Bel / Snell SW-P-08 over TCP ("SW-P-08 over IP") or a serial line."""

    name = "swp08"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "matrix": {
                **_WIRE_NUMBER, "default": 0,
                "description": "SW-P-08 matrix number as on the wire (0-based) of every level "
                               "that level_numbers does not place elsewhere",
            },
            "level_numbers": {
                "type": "object",
                "default": {},
                "description": "tieline level name -> SW-P-08 level number (0-based), or "
                               "{matrix, level}; unlisted levels keep their position",
                "additionalProperties": {
                    "oneOf": [
                        _WIRE_NUMBER,
                        {"type": "object",
                         "properties": {"matrix": _WIRE_NUMBER, "level": _WIRE_NUMBER},
                         "required": ["level"], "additionalProperties": False},
                    ],
                },
            },
            "extended_commands": {
                "enum": ["auto", "always"], "default": "auto",
                "description": "auto: extended commands only for numbers the normal ones "
                               "cannot carry; always: extended commands for everything",
            },
            "names": {"type": "boolean", "default": True,
                      "description": "read source and destination names from the device"},
            "name_length": {"enum": [4, 8, 12, 16, 32], "default": 8,
                            "description": "characters per name asked of the device"},
            "protects": {"enum": ["read", "off"], "default": "read",
                         "description": "read the device's protects (shown read-only)"},
            "ack_timeout_ms": {"type": "integer", "minimum": 10, "maximum": 10000,
                               "default": 1000,
                               "description": "how long a frame waits for DLE ACK"},
            "retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 5,
                        "description": "re-sends of a frame before the link is dropped"},
        },
    }
    transports = ("tcp", "serial")
    #: RS-422 38400 baud 8N1 (notes §1); TCP has no standard port (notes §1, §14).
    transport_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "serial": {"baudrate": 38400, "bytesize": 8, "parity": "N", "stopbits": 1},
    }
    allows_second_controller = True  # up to 16 TCP clients, and several serial ports
    device_protects: ClassVar[frozenset[ProtectKind]] = frozenset()
    device_labels = True
    keepalive_interval_s = 5.0
    keepalive_timeout_s = 12.0
    sync_timeout_s = 30.0
    #: a state read is given up after this long without any of its replies.
    reply_timeout_s = 2.0
    #: a route not confirmed by CONNECTED this long after its ACK is interrogated.
    confirm_fallback_s = 1.0

    def __init__(
        self, spec: RouterSpec, options: dict[str, Any], transport: Transport | None
    ) -> None:
        super().__init__(spec, options, transport)
        problems = self.check(spec, options)
        if problems:
            raise SettingsError(f"(router '{spec.id}')", [
                SettingsProblem("tieline.json", 0, 0, f"$.routers[id={spec.id}].{key}", text)
                for key, text in problems
            ])
        self.wire_levels, _ = _wire_levels(spec, options)
        self.by_wire = {(w.matrix, w.level): i for i, w in enumerate(self.wire_levels)}
        self.extended_always = options.get("extended_commands", "auto") == "always"
        self.read_names = options.get("names", True)
        self.name_length = options.get("name_length", 8)
        self.read_protects = options.get("protects", "read") == "read"
        self.ack_timeout_s = options.get("ack_timeout_ms", 1000) / 1000
        self.retries = options.get("retries", 5)
        #: the device's protects as last read: (level, destination) -> (state, device).
        #: Kept across connections so protects gone while tieline was away are cleared.
        self.protect_mirror: dict[tuple[int, int], tuple[int, int]] = {}
        #: protect device names (17/18) by device number.
        self.device_names: dict[int, str] = {}
        self.sync_timeout_s = max(type(self).sync_timeout_s, self._sync_estimate())
        #: the session of the current (or last) connection.
        self.session: SWP08Session | None = None

    @classmethod
    def check(cls, spec: RouterSpec, options: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems of a router block that its schema cannot state, as (key, message)."""
        return _wire_levels(spec, options)[1]

    def _sync_estimate(self) -> float:
        """A bound for the start-up read: every destination interrogated one by one, the
        worst case (about 26 bytes each way per destination at the line rate, or 2 ms per
        round trip over TCP)."""
        count = len(self.spec.levels) * self.spec.destinations
        if self.transport is not None and self.transport.name == "serial":
            rate = self.transport.options.get("baudrate", 38400) / 10
            return 10 + 2 * count * 26 / rate
        return 10 + count * 0.002

    def extended_for(self, wire: WireLevel, *numbers: int) -> bool:
        """Whether a message for ``wire`` carrying ``numbers`` needs the extended form
        (notes §4.3: ports above 1023, matrix or level above 15)."""
        return (self.extended_always or wire.matrix > NORMAL_MAX_ML or wire.level > NORMAL_MAX_ML
                or any(n > NORMAL_MAX_PORT for n in numbers))

    def owner_name(self, device: int) -> str:
        """How tieline names the owner of a device protect: ``device 7 (MCR PNL)``."""
        name = self.device_names.get(device)
        return f"device {device} ({name})" if name else f"device {device}"

    def protect_of(self, held: tuple[int, int]) -> Protect:
        """A device protect as tieline's model: an override protect (state 2, not remotely
        alterable) is a lock, any other a protect; either way owned by its device number."""
        state, device = held
        kind = ProtectKind.LOCK if state == ProtectState.PROBEL_OVERRIDE else ProtectKind.PROTECT
        return Protect(kind, self.owner_name(device))

    def new_session(self) -> SWP08Session:
        self.session = SWP08Session(self)
        return self.session
