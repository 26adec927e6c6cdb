"""The Extron SIS driver: controller-side glue between the codec and the device link.

Reference: ``shared/protocols/extron-sis.md`` (the notes; § numbers below).

Connect (§1.1, §4)
    Over Telnet/TCP (port 23) or serial the device may ask ``Password:``; the session
    answers with the router's ``password`` and waits for ``Login Administrator|User``.
    With no ``password`` in settings it starts at once (a prompt is then an error that says
    to set one); with one it waits :attr:`ExtronDriver.login_wait_s` for the prompt and goes
    on without it if none comes. Over SSH the transport logs in (port 22023, user and
    password in the ``transport`` block) and the shell is ready after its banner. Telnet
    option requests are refused (``DO`` -> ``WONT``, ``WILL`` -> ``DONT``), as the Companion
    XTP module does.

Sync
    Only reads, never a tie: ``Esc3CV`` (verbose 3: changes made elsewhere are reported,
    reads are tagged), ``I`` (size, compared with settings), then ``Y%`` and/or ``Y$`` for
    every configured output and ``EscNNI``/``EscNNO`` for every port's name. When the last
    of them is answered the session reports :class:`~tieline.devices.SyncDone`.

Levels (§10)
    The router's ``planes`` setting names the Extron plane of each tieline level, in
    order: ``video`` (ties ``X*Y%``, reads ``Y%``), ``audio`` (``X*Y$``, ``Y$``) or
    ``all`` (ties ``X*Y!``, video and audio together; reads ``Y%``). The default
    ``["video", "audio"]`` makes level 1 video and level 2 audio; a route on both with one
    source is one ``X*Y!`` tie (audio follows video).

Numbers (§2)
    Wire numbers are 1-based; input 0 ("no input") and inputs beyond the configured sources
    are reported as :data:`tieline.model.UNKNOWN`.

Confirmation (§2, §5)
    Responses come back in order, one per command. Every tie is answered ``OutYY InXX
    All|Vid|Aud`` once made: that is the tally that confirms it; ``Exx`` refuses it with
    the error in words. Commands are pipelined, at most :attr:`ExtronDriver.max_in_flight`
    unanswered at a time. A response that does not answer the oldest command in flight (a
    tie report of another controller's change, in verbose 3) is a change made elsewhere.

Changes made elsewhere (§4)
    Tie reports become tallies; ``Qik``, ``RprNN``, ``Reconfig`` and other unknown lines
    mean "something changed": every tie is read again (at most one re-read at a time, and
    one more if anything happened meanwhile). A periodic re-read (``reread_interval_s``) is
    the safety net.

Keepalive (§1.2)
    ``Q`` (firmware query) after :attr:`ExtronDriver.keepalive_interval_s` of silence, well
    inside the device's 5-minute idle timeout.

No protects or locks exist in SIS (§10): tieline holds them itself. Names are the device's
``NI``/``NO`` names (§6). The clear-all command ``0*!`` is never sent (§2).
"""

from __future__ import annotations

import enum
import logging
import re
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
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
    RequestRefused,
    RouterSpec,
    SyncDone,
    TallyReport,
    Transport,
)

from .codec import (
    DO,
    DONT,
    WILL,
    WONT,
    Banner,
    BulkReport,
    Codec,
    ErrorCode,
    Firmware,
    Information,
    LoggedIn,
    Message,
    NameReport,
    Number,
    PartNumber,
    Password,
    PasswordPrompt,
    Plane,
    PresetRecalled,
    PresetSaved,
    QueryFirmware,
    QueryInformation,
    QuickTie,
    QuickTieDone,
    ReadName,
    ReadTie,
    Role,
    SetName,
    SetVerbose,
    Telnet,
    Text,
    Tie,
    TieAllReport,
    TieReport,
    TimeoutReport,
    VerboseReport,
    describe_error,
    validate_name,
)

log = logging.getLogger(__name__)

#: The plane names of the ``planes`` setting.
PLANES = ("video", "audio", "all")
_TIE_PLANE = {"video": Plane.VIDEO, "audio": Plane.AUDIO, "all": Plane.ALL}
_READ_PLANE = {"video": Plane.VIDEO, "audio": Plane.AUDIO, "all": Plane.VIDEO}
_PLANE_WORDS = {Plane.ALL: "video and audio", Plane.VIDEO: "video", Plane.RGB: "RGB",
                Plane.AUDIO: "audio"}
#: Ties per quick multiple tie command (§2 gives no limit; kept small for any frame's buffer).
QUICK_TIE_MAX = 16
#: Unsolicited lines that change no tie (§4, §7: mutes, front-panel lock).
_HARMLESS = re.compile(r"(exe\d|vmt|amt)", re.I)
#: Responses that report state: they never answer a query about something else.
_STATE_REPORTS = (TieReport, TieAllReport, QuickTieDone, PresetRecalled, NameReport,
                  PasswordPrompt, LoggedIn, Telnet)
#: Lines an untagged name read may come back as (verbose 0/1 answer just the name).
_UNTAGGED = (Text, Number, Firmware, PartNumber, Information, Banner)


def _compatible(a: Plane, b: Plane) -> bool:
    """Whether a response's plane answers a command's (``%`` and ``&`` are synonyms)."""
    return a == b or {a, b} == {Plane.VIDEO, Plane.RGB}


class _Phase(enum.Enum):
    LOGIN = "login"  #: waiting for the password prompt or the login confirmation
    SYNC = "sync"  #: the first full read is under way
    ONLINE = "online"


@dataclass(slots=True)
class _Pending:
    """One command sent (or waiting to be sent) and what its answer means."""

    kind: str  #: verbose, info, read, name, tie, quick, label, keepalive
    command: Message
    data: bytes
    levels: tuple[int, ...] = ()  #: read: the levels the answer reports
    crosspoints: tuple[Crosspoint, ...] = ()  #: tie/quick: what it was asked to set
    sync: bool = False  #: part of the first full read
    reread: bool = False  #: part of a full re-read


class ExtronSession(DriverSession):
    """One connection to an Extron matrix switcher, controller side.

    :param spec: the router's shape from settings.
    :param planes: the Extron plane of each tieline level (``video``, ``audio``, ``all``);
        levels beyond the list have none.
    :param password: the answer to ``Password:``, or None.
    :param link: the transport type (``tcp``, ``ssh``, ``serial``): Telnet on ``tcp`` only,
        and over ``ssh`` no prompt is waited for.
    :param reread_interval_s: read every tie again this often once online (0: never).
    :param quick_tie: send routes on several outputs as quick multiple ties (atomic).
    :param name_max_length: longest name the device takes.
    :param max_in_flight: commands sent and not yet answered, at most.
    :param login_wait_s: how long to wait for ``Password:`` (and then for the login).
    :param log_once: the problems logged once, shared by the sessions of one router (so a
        reconnection does not log them again).
    """

    def __init__(
        self, spec: RouterSpec, *, planes: Sequence[str] = ("video", "audio"),
        password: str | None = None, link: str = "tcp", reread_interval_s: float = 300.0,
        quick_tie: bool = False, name_max_length: int = 12, max_in_flight: int = 32,
        login_wait_s: float = 3.0, log_once: LogOnce | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.password = password
        self.link = link
        self.reread_interval_s = reread_interval_s
        self.quick_tie = quick_tie
        self.name_max_length = name_max_length
        self.max_in_flight = max(1, max_in_flight)
        self.login_wait_s = login_wait_s
        self._log_once = log_once if log_once is not None else LogOnce(log, max_keys=64)
        self._codec = Codec(Role.CONTROLLER, telnet=link == "tcp")
        count = len(spec.levels)
        self._planes: tuple[str | None, ...] = tuple(
            planes[level] if level < len(planes) else None for level in range(count))
        mapped = [(level, p) for level, p in enumerate(self._planes) if p is not None]
        #: per read plane, the levels its answer reports.
        self._read_levels: dict[Plane, tuple[int, ...]] = {}
        for level, p in mapped:
            plane = _READ_PLANE[p]
            self._read_levels[plane] = self._read_levels.get(plane, ()) + (level,)
        #: per plane of a tie report, the levels it changes.
        self._report_levels: dict[Plane, tuple[int, ...]] = {
            Plane.ALL: tuple(level for level, _ in mapped),
            Plane.VIDEO: tuple(level for level, p in mapped if p in ("video", "all")),
            Plane.RGB: tuple(level for level, p in mapped if p in ("video", "all")),
            Plane.AUDIO: tuple(level for level, p in mapped if p == "audio"),
        }
        self._phase = _Phase.LOGIN
        self._password_sent = False
        self._login_deadline: float | None = None
        self._greeting = True  #: nothing answered yet: banner lines are ignored
        self._urgent: deque[_Pending] = deque()  #: requests: ties, names, keepalives
        self._backlog: deque[_Pending] = deque()  #: reads of the whole state
        self._inflight: deque[_Pending] = deque()
        self._sync_left = 0
        self._reread_left = 0
        self._reread_again = False
        self._next_reread: float | None = None
        self._telnet_answered: set[tuple[int, int | None]] = set()
        self._now = 0.0
        #: the device's size from ``I`` (inputs, outputs), once it has said.
        self.size: tuple[int, int] | None = None

    # -- the connection ----------------------------------------------------------------
    def connection_made(self, now: float) -> None:
        self._now = now
        if self.password is not None and self.link != "ssh":
            self._login_deadline = now + self.login_wait_s
        else:
            self._start_sync()

    def keepalive(self, now: float) -> None:
        if self._phase is _Phase.LOGIN:
            return  # anything sent now would be taken for the password
        if not any(p.kind == "keepalive" for p in (*self._inflight, *self._urgent)):
            self._enqueue(_Pending("keepalive", QueryFirmware(), self._encode(QueryFirmware())),
                          urgent=True)

    def next_deadline(self) -> float | None:
        if self._phase is _Phase.LOGIN:
            return self._login_deadline
        if self._phase is _Phase.ONLINE:
            return self._next_reread
        return None

    def tick(self, now: float) -> list[DeviceReport]:
        self._now = now
        if self._phase is _Phase.LOGIN and self._login_deadline is not None \
                and now >= self._login_deadline:
            if self._password_sent:
                self._log_once.log("no-login", logging.WARNING, "router '%s': the device did "
                                   "not confirm the login after the password; going on",
                                   self.spec.id)
            else:
                self._log_once.log("no-prompt", logging.INFO, "router '%s': the device did not "
                                   "ask for a password within %g s; going on without "
                                   "logging in", self.spec.id, self.login_wait_s)
            self._start_sync()
        elif self._phase is _Phase.ONLINE and self._next_reread is not None \
                and now >= self._next_reread:
            self._next_reread = now + self.reread_interval_s
            self._start_reread()
        return []

    def _start_sync(self) -> None:
        self._phase = _Phase.SYNC
        self._login_deadline = None
        self._greeting = True
        entries = [
            _Pending("verbose", SetVerbose(3), self._encode(SetVerbose(3))),
            _Pending("info", QueryInformation(), self._encode(QueryInformation())),
            *self._reads(),
        ]
        for kind, count in ((PortKind.SOURCE, self.spec.sources),
                            (PortKind.DESTINATION, self.spec.destinations)):
            for number in range(1, count + 1):
                command = ReadName(kind, number)
                entries.append(_Pending("name", command, self._encode(command)))
        for entry in entries:
            entry.sync = True
            self._enqueue(entry)
        self._sync_left = len(entries)

    def _reads(self) -> list[_Pending]:
        """A read of every configured output on every plane a level maps to."""
        entries = []
        for output in range(1, self.spec.destinations + 1):
            for plane, levels in self._read_levels.items():
                command = ReadTie(output, plane)
                entries.append(_Pending("read", command, self._encode(command), levels=levels))
        return entries

    def _start_reread(self) -> None:
        """Read every tie again (once at a time; once more if asked again meanwhile)."""
        if self._phase is not _Phase.ONLINE or self._reread_left:
            self._reread_again = True
            return
        self._reread_again = False
        entries = self._reads()
        for entry in entries:
            entry.reread = True
            self._enqueue(entry)
        self._reread_left = len(entries)

    # -- sending -----------------------------------------------------------------------
    def _encode(self, message: Message) -> bytes:
        try:
            return self._codec.send(message)
        except ValueError as exc:
            raise InvalidRequest(
                f"router '{self.spec.id}': the request cannot be sent to the Extron: {exc}"
            ) from None

    def _enqueue(self, entry: _Pending, *, urgent: bool = False) -> None:
        """Queue a command; ``urgent`` ones (what a user waits for) overtake the reads of
        a full re-read still waiting to be sent."""
        (self._urgent if urgent else self._backlog).append(entry)
        self._pump()

    def _pump(self) -> None:
        while len(self._inflight) < self.max_in_flight and (self._urgent or self._backlog):
            entry = (self._urgent or self._backlog).popleft()
            self._send(entry.data)
            self._inflight.append(entry)

    #: what a withdrawn session does not send any more: changes to the router
    _CHANGES = frozenset({"tie", "quick", "label"})

    def withdraw(self) -> list[Hashable]:
        """The node may not act: ties and label writes still waiting for a place in the
        window of commands in flight are dropped (those sent stay sent: the Extron
        protocol re-sends nothing). Reads and keepalives go on. Returns the items of the
        commands dropped (the link fails them: not sent)."""
        dropped: list[_Pending] = []
        for queue in (self._urgent, self._backlog):
            kept = [entry for entry in queue if entry.kind not in self._CHANGES]
            dropped += [entry for entry in queue if entry.kind in self._CHANGES]
            queue.clear()
            queue.extend(kept)
        items: list[Hashable] = []
        for entry in dropped:
            if entry.kind == "label":
                items.append(("label", entry.command.kind, entry.command.number - 1))
            else:
                items.extend(("dst", xp.level, xp.destination) for xp in entry.crosspoints)
        if dropped:
            log.info("router '%s': %d command(s) not sent: this node may not act now",
                     self.spec.id, len(dropped))
        return items

    # -- core -> device ----------------------------------------------------------------
    def route(self, crosspoints: Sequence[Crosspoint], owner: str) -> None:
        by_output: dict[int, dict[int, int]] = {}
        for xp in crosspoints:
            if not 0 <= xp.level < len(self._planes) or self._planes[xp.level] is None:
                raise InvalidRequest(
                    f"router '{self.spec.id}': level {xp.level + 1} has no Extron plane; "
                    "list one per level in the router's \"planes\" setting",
                    field="levels",
                )
            by_output.setdefault(xp.destination + 1, {})[xp.level] = xp.source
        ties: list[tuple[Tie, tuple[Crosspoint, ...]]] = []
        for output, wanted in by_output.items():
            ties += self._ties_for(output, wanted)
        if self.quick_tie and len(ties) > 1:
            for start in range(0, len(ties), QUICK_TIE_MAX):
                chunk = ties[start:start + QUICK_TIE_MAX]
                command = QuickTie(tuple(tie for tie, _ in chunk))
                self._enqueue(_Pending("quick", command, self._encode(command),
                                       crosspoints=tuple(x for _, xps in chunk for x in xps)),
                              urgent=True)
            return
        for tie, covered in ties:
            self._enqueue(_Pending("tie", tie, self._encode(tie), crosspoints=covered),
                          urgent=True)

    def _ties_for(self, output: int, wanted: dict[int, int]
                  ) -> list[tuple[Tie, tuple[Crosspoint, ...]]]:
        """The ties that set ``wanted`` (level -> source) on ``output``: one ``!`` tie for
        an ``all`` level or for video and audio with one source, else one per plane."""
        dest = output - 1
        by_plane = {self._planes[level]: (level, source) for level, source in wanted.items()}
        ties: list[tuple[Tie, tuple[Crosspoint, ...]]] = []
        follow = by_plane.get("all")
        if follow is None and "video" in by_plane and "audio" in by_plane \
                and by_plane["video"][1] == by_plane["audio"][1]:
            follow = by_plane["video"]
        if follow is not None:
            source = follow[1]
            covered = tuple(Crosspoint(level, dest, src) for level, src in wanted.items()
                            if src == source)
            ties.append((Tie(source + 1, output, Plane.ALL), covered))
            wanted = {level: src for level, src in wanted.items() if src != source}
        for level, source in wanted.items():
            plane = _TIE_PLANE[self._planes[level]]  # type: ignore[index]
            ties.append((Tie(source + 1, output, plane), (Crosspoint(level, dest, source),)))
        return ties

    def set_label(self, kind: PortKind, index: int, text: str) -> None:
        try:
            validate_name(text)
        except ValueError as exc:
            raise InvalidRequest(f"router '{self.spec.id}': {exc}", field="text") from None
        if len(text) > self.name_max_length:
            raise InvalidRequest(
                f"router '{self.spec.id}': Extron names are at most {self.name_max_length} "
                f"characters (the router's \"name_max_length\"); {text!r} has {len(text)}",
                field="text",
            )
        command = SetName(kind, index + 1, text)
        self._enqueue(_Pending("label", command, self._encode(command)), urgent=True)

    # -- device -> core ----------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> list[DeviceReport]:
        self._now = now
        self._codec.receive_data(data)
        out: list[Any] = []
        for event in self._codec.events():
            self._handle(event, out)
        self._pump()
        return [
            TallyReport(tuple(item)) if isinstance(item, list)
            else LabelReport(item[0], tuple(item[1])) if isinstance(item, tuple)
            else item
            for item in out
        ]

    def _handle(self, event: Message, out: list[Any]) -> None:
        if isinstance(event, Telnet):
            self._answer_telnet(event)
            return
        if isinstance(event, PasswordPrompt):
            self._prompted()
            return
        if self._phase is _Phase.LOGIN:
            if isinstance(event, LoggedIn) and self._password_sent:
                if not event.administrator:
                    self._log_once.log("user", logging.INFO, "router '%s': logged in with user "
                                       "rights; names cannot be set (give the administrator "
                                       "password)", self.spec.id)
                self._start_sync()
            else:
                log.debug("router '%s': before login: %r", self.spec.id, event)
            return
        head = self._inflight[0] if self._inflight else None
        if head is not None and self._answers(head, event):
            self._inflight.popleft()
            self._greeting = False
            self._answered(head, event, out)
            if head.sync:
                self._sync_left -= 1
                if self._sync_left == 0:
                    self._synced(out)
            if head.reread:
                self._reread_left -= 1
                if self._reread_left == 0 and self._reread_again:
                    self._start_reread()
        else:
            self._unsolicited(event, out)

    def _prompted(self) -> None:
        """``Password:`` — answer it once; a second one means the password is wrong."""
        if self.password is None:
            raise LinkError(
                f"router '{self.spec.id}': the device asks for a password; give it as "
                "\"password\" in the router's settings"
            )
        if self._password_sent:
            raise LinkError(
                f"router '{self.spec.id}': the device refused the password; check the "
                "router's \"password\" setting"
            )
        if self._phase is not _Phase.LOGIN:
            # the prompt came late: what was sent meanwhile went into the password field
            self._urgent.clear()
            self._backlog.clear()
            self._inflight.clear()
            self._phase = _Phase.LOGIN
        try:
            answer = self._codec.send(Password(self.password))
        except ValueError as exc:
            raise LinkError(f"router '{self.spec.id}': the \"password\" setting cannot be "
                            f"sent: {exc}") from None
        self._password_sent = True
        self._login_deadline = self._now + self.login_wait_s
        self._send(answer)

    def _answer_telnet(self, event: Telnet) -> None:
        """Refuse every option (§1): DO -> WONT, WILL -> DONT, each once."""
        reply = {DO: WONT, WILL: DONT}.get(event.command)
        key = (event.command, event.option)
        if reply is None or key in self._telnet_answered:
            return
        self._telnet_answered.add(key)
        self._send(self._codec.send(Telnet(reply, event.option)))

    @staticmethod
    def _answers(entry: _Pending, event: Message) -> bool:
        """Whether ``event`` is the answer to ``entry`` (the oldest command in flight)."""
        if isinstance(event, ErrorCode):
            return True
        kind, command = entry.kind, entry.command
        if kind == "read":
            assert isinstance(command, ReadTie)
            return isinstance(event, Number) or (
                isinstance(event, TieReport) and event.output == command.output
                and _compatible(command.plane, event.plane))
        if kind == "tie":
            assert isinstance(command, Tie)
            return (isinstance(event, TieReport) and event.output == command.output
                    and _compatible(command.plane, event.plane))
        if kind == "quick":
            return isinstance(event, QuickTieDone)
        if kind in ("name", "label"):
            assert isinstance(command, (ReadName, SetName))
            if isinstance(event, NameReport):
                return event.kind is command.kind and event.number == command.number
            return kind == "name" and isinstance(event, _UNTAGGED)
        if kind == "verbose":
            return isinstance(event, (VerboseReport, Number))
        # keepalive, info: any answer that is not a report of state
        return not isinstance(event, _STATE_REPORTS) and event != Text("")

    def _answered(self, entry: _Pending, event: Message, out: list[Any]) -> None:
        if isinstance(event, ErrorCode):
            self._refused(entry, event, out)
        elif isinstance(event, TieReport):
            self._tally(out, self._report_levels[event.plane], event.output, event.input)
        elif entry.kind == "read" and isinstance(event, Number):
            assert isinstance(entry.command, ReadTie)
            self._tally(out, entry.levels, entry.command.output, event.value)
        elif isinstance(event, QuickTieDone):
            self._confirm_quick(entry)
        elif isinstance(event, NameReport):
            self._label(out, event.kind, event.number, event.text)
        elif entry.kind == "name":
            assert isinstance(entry.command, ReadName)
            text = getattr(event, "text", None) or getattr(event, "version", "")
            self._label(out, entry.command.kind, entry.command.number, text)
        elif entry.kind == "info" and isinstance(event, Information):
            self._check_size(event.text)

    def _refused(self, entry: _Pending, error: ErrorCode, out: list[Any]) -> None:
        words = describe_error(error.code, error.detail)
        command = entry.command
        if entry.kind in ("tie", "quick"):
            if isinstance(command, Tie):
                what = (f"the tie of input {command.input} to output {command.output} "
                        f"({_PLANE_WORDS[command.plane]})")
            else:
                what = "the quick multiple tie (nothing in it was switched)"
            for xp in entry.crosspoints:
                out.append(RequestRefused(xp.level, xp.destination,
                                          f"the Extron refused {what}: {words}"))
        elif entry.kind == "read":
            assert isinstance(command, ReadTie)
            self._log_once.log(f"read-{error.code}", logging.WARNING, "router '%s': the device "
                               "cannot read output %d (%s): %s; check the router's destinations "
                               "and planes against the device", self.spec.id, command.output,
                               _PLANE_WORDS[command.plane], words)
        elif entry.kind == "name":
            self._log_once.log(f"name-{error.code}", logging.INFO, "router '%s': the device "
                               "does not give port names (%s); labels are kept as they are",
                               self.spec.id, words)
        elif entry.kind == "label":
            reason = (f"the device refused the name {getattr(command, 'text', '')!r} "
                      f"({words}); use label_store \"settings\" if it cannot store names")
            log.warning("router '%s': %s", self.spec.id, reason)
            out.append(LabelRefused(command.kind, command.number - 1, reason))
        elif entry.kind == "verbose":
            self._log_once.log("verbose", logging.WARNING, "router '%s': the device refused "
                               "verbose mode 3 (%s); changes made elsewhere will show at the "
                               "next re-read", self.spec.id, words)
        else:
            log.debug("router '%s': %r answered %s", self.spec.id, command, words)

    def _confirm_quick(self, entry: _Pending) -> None:
        """``Qik`` says the ties were made, not which: read them back as the tally."""
        seen: set[tuple[int, Plane]] = set()
        for xp in entry.crosspoints:
            plane = _READ_PLANE[self._planes[xp.level]]  # type: ignore[index]
            key = (xp.destination + 1, plane)
            if key not in seen:
                seen.add(key)
                command = ReadTie(key[0], plane)
                self._enqueue(_Pending("read", command, self._encode(command),
                                       levels=self._read_levels[plane]), urgent=True)

    def _unsolicited(self, event: Message, out: list[Any]) -> None:
        """A line that answers nothing in flight: a change made elsewhere (§4)."""
        if isinstance(event, TieReport):
            self._tally(out, self._report_levels[event.plane], event.output, event.input)
        elif isinstance(event, TieAllReport):
            levels = self._report_levels[event.plane]
            for output in range(1, self.spec.destinations + 1):
                self._tally(out, levels, output, event.input)
        elif isinstance(event, NameReport):
            self._label(out, event.kind, event.number, event.text)
        elif isinstance(event, (QuickTieDone, PresetRecalled)):
            self._start_reread()
        elif isinstance(event, (Text, Number)):
            text = event.text
            if self._greeting or not text or _HARMLESS.match(text):
                log.debug("router '%s': %r", self.spec.id, event)
            else:
                log.debug("router '%s': unsolicited %r: reading every tie again",
                          self.spec.id, text)
                self._start_reread()
        elif isinstance(event, ErrorCode):
            log.warning("router '%s': the device said %s to no command in flight",
                        self.spec.id, describe_error(event.code, event.detail))
        elif isinstance(event, (Banner, Firmware, VerboseReport, PresetSaved, TimeoutReport,
                                Information, PartNumber, LoggedIn, BulkReport)):
            log.debug("router '%s': %r", self.spec.id, event)

    def _synced(self, out: list[Any]) -> None:
        self._phase = _Phase.ONLINE
        out.append(SyncDone())
        if self.reread_interval_s > 0:
            self._next_reread = self._now + self.reread_interval_s
        if self._reread_again:
            self._start_reread()

    # -- reports -----------------------------------------------------------------------
    def _tally(self, out: list[Any], levels: tuple[int, ...], output: int, source: int) -> None:
        dest = output - 1
        if not levels or not 0 <= dest < self.spec.destinations:
            return
        src = source - 1 if 1 <= source <= self.spec.sources else UNKNOWN
        xps = [Crosspoint(level, dest, src) for level in levels]
        if out and isinstance(out[-1], list):
            out[-1].extend(xps)
        else:
            out.append(xps)

    def _label(self, out: list[Any], kind: PortKind, number: int, text: str) -> None:
        index = number - 1
        limit = self.spec.sources if kind is PortKind.SOURCE else self.spec.destinations
        if not 0 <= index < limit:
            return
        last = out[-1] if out else None
        if isinstance(last, tuple) and last[0] is kind:
            last[1].append((index, text))
        else:
            out.append((kind, [(index, text)]))

    def _check_size(self, text: str) -> None:
        m = re.match(r"V(\d+)X(\d+)", text)
        if m is None:
            return
        self.size = (int(m[1]), int(m[2]))
        if self.size != (self.spec.sources, self.spec.destinations):
            self._log_once.log(
                f"size-{self.size}", logging.WARNING, "router '%s': the device says it has "
                "%d inputs and %d outputs (%s); settings say %d sources and %d destinations. "
                "Only the part both have is controlled; fix the settings if they are wrong.",
                self.spec.id, self.size[0], self.size[1], text, self.spec.sources,
                self.spec.destinations)



class ExtronDriver(Driver):
    """Extron matrix switchers over SIS: Telnet/TCP, SSH or serial (§1)."""

    name = "extron_sis"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "password": {
                "type": "string",
                "maxLength": 128,
                "pattern": "^[ -~]*$",
                "description": "Password answered at the device's Password: prompt (Telnet/"
                               "TCP, serial); over SSH the transport's password logs in.",
            },
            "planes": {
                "type": "array",
                "items": {"enum": list(PLANES)},
                "minItems": 1,
                "maxItems": 2,
                "uniqueItems": True,
                "default": ["video", "audio"],
                "description": "The Extron plane of each level, in the router's level order.",
            },
            "quick_tie": {
                "type": "boolean",
                "default": False,
                "description": "Send routes on several outputs as quick multiple ties "
                               "(switched at once).",
            },
            "reread_interval_s": {
                "type": "number",
                "minimum": 0,
                "maximum": 86400,
                "default": 300,
                "description": "Read every tie again this often, in seconds (0: never).",
            },
            "name_max_length": {
                "type": "integer",
                "minimum": 1,
                "maximum": 255,
                "default": 12,
                "description": "Longest port name the device stores.",
            },
        },
    }
    transports = ("tcp", "ssh", "serial")
    transport_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "tcp": {"port": 23},
        "ssh": {"port": 22023},
        "serial": {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1},
    }
    allows_second_controller = True  # up to 200 connections (§1)
    device_protects = frozenset()  # SIS has no protects or locks (§10)
    device_labels = True  # NI/NO names (§6)
    keepalive_interval_s = 20.0  # Q well inside the 5-minute idle timeout (§1.2)
    keepalive_timeout_s = 25.0
    sync_timeout_s = 30.0
    #: how long to wait for the password prompt, and then for the login confirmation.
    login_wait_s: ClassVar[float] = 3.0
    #: commands sent and not yet answered, at most.
    max_in_flight: ClassVar[int] = 32

    @classmethod
    def check(cls, spec: RouterSpec, options: dict[str, Any]) -> list[tuple[str, str]]:
        planes = tuple(options.get("planes", ("video", "audio")))
        if len(spec.levels) > len(planes):
            return [("planes", f"{len(spec.levels)} level(s) but \"planes\" names "
                     f"{len(planes)} ({', '.join(planes)}); give one plane per level "
                     f"(missing for: {', '.join(spec.levels[len(planes):])})")]
        return []

    def __init__(
        self, spec: RouterSpec, options: dict[str, Any], transport: Transport | None
    ) -> None:
        super().__init__(spec, options, transport)
        self.planes: tuple[str, ...] = tuple(options.get("planes", ("video", "audio")))
        self.link = transport.name if transport is not None else "tcp"
        #: problems logged once, across this router's connections
        self._log_once = LogOnce(log, max_keys=64)
        # The first read is one query and one line per output and plane and per name: on a
        # 9600-baud line a large frame needs longer than the default.
        levels = min(len(spec.levels), len(self.planes))
        size = spec.destinations * levels * 24 + (spec.sources + spec.destinations) * 28 + 200
        if self.link == "serial" and transport is not None:
            baudrate = transport.options.get("baudrate", 9600)
            self.sync_timeout_s = max(  # type: ignore[misc]
                type(self).sync_timeout_s, 3 * size * 10 / baudrate + 10)

    def new_session(self) -> ExtronSession:
        return ExtronSession(
            self.spec, planes=self.planes, password=self.options.get("password"),
            link=self.link, reread_interval_s=self.options.get("reread_interval_s", 300),
            quick_tie=self.options.get("quick_tie", False),
            name_max_length=self.options.get("name_max_length", 12),
            max_in_flight=self.max_in_flight, login_wait_s=self.login_wait_s,
            log_once=self._log_once,
        )
