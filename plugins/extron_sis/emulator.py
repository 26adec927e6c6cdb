"""An emulated Extron matrix switcher, on the device role of the SIS codec (codec.py).

Reference: ``shared/protocols/extron-sis.md`` (the notes), §9 "Emulator checklist". It is
stateful and serves several controllers at once, over Telnet/TCP, SSH (the base class's
:meth:`~tieline.kit.emulation.DeviceEmulator.serve_ssh`) and serial lines, as the real device:

* on an IP connection it sends the copyright banner and a date line; with a password set,
  over Telnet/TCP, ``Password:`` and the login loop (wrong -> ``Password:`` again; right ->
  ``Login Administrator`` or ``Login User``). SSH sessions are logged in by SSH (as
  administrator) and get the banner only; serial lines get nothing and need no login (§1.1);
* verbose mode per connection: 0 on IP, 1 on serial (§4); ``Esc n CV`` changes it;
* ties ``X*Y!/%/&/$``, ``X*!`` (and ``0*!``, which clears every tie, as the device does),
  quick multiple ties, reads (tagged in modes 2/3), ``Y!`` -> ``E14`` when video and audio
  are broken away, the DXP bulk view ``VC``, ``I``, ``Q``, ``N``, global presets, port names
  ``NI``/``NO``, idle timeouts ``TC`` (a silent IP connection is dropped after 5 minutes);
* every change is reported to every other logged-in connection in verbose mode 1 or 3 in
  the form of the command's response (``OutYY InXX All``: documented for mode 3; the notes
  leave mode 1's form unconfirmed, so the same line is used); a quick tie and a recalled
  preset are reported as ``Qik`` and ``RprNN``, a saved preset as ``SprNN``, a new name as
  ``NmiNN,name`` (the notes do not say whether names are reported: this follows mode 3's
  "resembles the command response");
* errors: ``E01`` input out of range, ``E12`` output out of range, ``E10`` unknown command
  (and, an emulator's choice the notes leave open, audio commands on a video-only frame,
  ``levels=1``), ``E11`` bad or empty preset, ``E13`` bad value or name (names: at most 12
  characters, as on DXP), ``E14`` ``Y!`` on a broken-away output, ``E24`` an administrator's
  command (save a preset, set a name, the global timeout) from a user-level login;
* garbage (bytes that make no command) is answered with **one** ``E10`` per run: from the
  first bad byte up to the next command or the next line end (CR or LF). The notes (§1.3,
  §5, §9.4) say an unknown command gets ``E10`` but not what a device answers to a stream
  of bytes that are no commands; one error per byte would send 5 bytes back for every byte
  of line noise. A line end closes a run because an Esc-command ends with CR (each
  unknown Esc-command gets its ``E10``, so a controller waiting for an answer gets one) and
  a person typing ends each try with Enter. Before a Telnet login the same holds for the
  ``Password:`` prompt that answers a bad password line.

Numbers are 1-based as on the wire. Initially output ``o`` is fed by input
``(o - 1) % inputs + 1`` on every plane, ports are named ``Input 1`` … ``Output 1`` …, no
preset is stored. The latest commands received are kept in :attr:`command_log`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tieline import ByteStream, DeviceEmulator, EmulatorPeer, PortKind, RemoteProtocolError

from .codec import (
    DO,
    WILL,
    Banner,
    BulkReport,
    ClearAllTies,
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
    QueryPartNumber,
    QuickTie,
    QuickTieDone,
    ReadBulk,
    ReadName,
    ReadTie,
    ReadTimeout,
    ReadVerbose,
    RecallPreset,
    Role,
    SavePreset,
    SetName,
    SetTimeout,
    SetVerbose,
    Telnet,
    Text,
    Tie,
    TieAllReport,
    TieReport,
    TieToAll,
    TimeoutReport,
    VerboseReport,
    validate_name,
)

log = logging.getLogger(__name__)

#: How ``serve_stream`` names its links: ``tcp`` (Telnet), ``ssh``, ``serial``.
LINKS = ("tcp", "ssh", "serial")
#: Telnet options the emulator offers on connect when asked to (echo, suppress go-ahead).
TELNET_OFFERS = ((WILL, 1), (WILL, 3), (DO, 24))


@dataclass(slots=True)
class Connection:
    """One controller's session state (``peer.state``)."""

    codec: Codec
    link: str
    verbose: int
    logged_in: bool
    administrator: bool
    idle_timeout_s: float
    last_rx: float = 0.0
    #: the codec's ``line_ends`` when a run of garbage was last answered; None once a
    #: command has been read since (one error per run, see the module docstring).
    garbage_run: int | None = None


class _Refused(Exception):
    """A command answered with an error code."""

    def __init__(self, code: int) -> None:
        self.code = code


def _link_of(name: str) -> str:
    """The link of a controller from its name: the base class names SSH sessions
    ``ssh HOST:PORT``; ``tieline emulate --serial`` names a line by its device path."""
    if name.startswith("ssh "):
        return "ssh"
    if name.startswith(("/", "serial")):
        return "serial"
    return "tcp"


class ExtronEmulator(DeviceEmulator):
    """An Extron matrix switcher: video only (``levels=1``) or video and audio (2).

    :param inputs: number of inputs (1–9999).
    :param outputs: number of outputs (1–9999).
    :param levels: 1 (video only) or 2 (video and audio planes, breakaway).
    :param password: the administrator password; None = no login on Telnet/TCP.
    :param user_password: the user password (user rights: ties, presets recall, reads).
    :param response_delay_s: how long the device takes to answer each command (a slow device).
    :param pad: digits responses are zero-padded to; by default 2, or 3 on frames of more
        than 99 ports (§1.3).
    :param presets: number of global presets (32 on DXP/CrossPoint, §6).
    :param idle_timeout_s: silent IP connections are dropped after this (§1.2).
    :param telnet_negotiation: offer Telnet options on TCP connect (the device may, §1).
    :param model: the model name in the banner.
    """

    name = "extron_sis"
    serial = True
    #: the line settings of ``tieline emulate extron_sis --serial`` (§1: 9600 8N1).
    serial_defaults: ClassVar[dict[str, Any]] = {
        "baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1}
    firmware = "1.23"
    part_number = "60-1234-01"

    def __init__(
        self, inputs: int = 16, outputs: int = 16, levels: int = 2, *,
        password: str | None = None, user_password: str | None = None,
        response_delay_s: float = 0.0, pad: int | None = None, presets: int = 32,
        idle_timeout_s: float = 300.0, telnet_negotiation: bool = False,
        model: str | None = None, max_outgoing_bytes: int | None = None,
    ) -> None:
        for what, count in (("inputs", inputs), ("outputs", outputs)):
            if not 1 <= count <= 9999:
                raise ValueError(f"an Extron emulator has 1–9999 {what}, not {count}")
        if levels not in (1, 2):
            raise ValueError(f"an Extron matrix has 1 (video) or 2 (video, audio) planes, "
                             f"not {levels}")
        if response_delay_s < 0:
            raise ValueError(f"response_delay_s must be 0 or more, not {response_delay_s}")
        super().__init__(max_outgoing_bytes=max_outgoing_bytes or max(
            1 << 20, 64 * (inputs + outputs)))
        self.inputs = inputs
        self.outputs = outputs
        self.levels = levels
        self.password = password
        self.user_password = user_password
        self.response_delay_s = response_delay_s
        self.pad = pad if pad is not None else (3 if max(inputs, outputs) > 99 else 2)
        self.presets = presets
        self.idle_timeout_s = idle_timeout_s
        self.telnet_negotiation = telnet_negotiation
        self.model = model or f"Matrix {inputs}x{outputs} {'AV' if levels == 2 else 'V'}"
        #: per output (index 0 unused), the input on each plane; 0 = untied.
        self.video = [0] + [(o - 1) % inputs + 1 for o in range(1, outputs + 1)]
        self.audio = list(self.video)
        self.names: dict[PortKind, list[str]] = {
            PortKind.SOURCE: [""] + [f"Input {i}" for i in range(1, inputs + 1)],
            PortKind.DESTINATION: [""] + [f"Output {o}" for o in range(1, outputs + 1)],
        }
        #: stored global presets: number -> (video, audio) lists like the live ones.
        self.stored: dict[int, tuple[list[int], list[int]]] = {}
        self._encoder = Codec(Role.DEVICE, pad=self.pad)
        self._next_link: str | None = None

    @classmethod
    def from_cli(cls, *, inputs: int, outputs: int, levels: int) -> ExtronEmulator:
        if levels not in (1, 2) or inputs > 9999 or outputs > 9999:
            import click

            raise click.UsageError(
                "the extron emulator takes --levels 1 (video) or 2 (video and audio) and at "
                "most 9999 inputs and outputs")
        return cls(inputs, outputs, levels)

    # -- connections -------------------------------------------------------------------
    def serve_stream(self, stream: ByteStream, name: str, *, link: str | None = None
                     ) -> EmulatorPeer:
        """Serve one controller; ``link`` (``tcp``, ``ssh`` or ``serial``) decides the
        greeting, login and verbose default, and is taken from ``name`` when not given."""
        if link is not None and link not in LINKS:
            raise ValueError(f"link must be one of {', '.join(LINKS)}, not {link!r}")
        self._next_link = link or _link_of(name)
        try:
            return super().serve_stream(stream, name)
        finally:
            self._next_link = None

    def controller_connected(self, peer: EmulatorPeer) -> None:
        link = self._next_link or _link_of(peer.name)
        login = link == "tcp" and self.password is not None
        conn = Connection(
            codec=Codec(Role.DEVICE, telnet=link == "tcp", pad=self.pad), link=link,
            verbose=1 if link == "serial" else 0, logged_in=not login, administrator=True,
            idle_timeout_s=self.idle_timeout_s, last_rx=asyncio.get_running_loop().time(),
        )
        peer.state = conn
        greeting = b""
        if link == "tcp" and self.telnet_negotiation:
            greeting += b"".join(conn.codec.send(Telnet(c, o)) for c, o in TELNET_OFFERS)
        if link != "serial":
            greeting += conn.codec.send(Banner(
                f"(c) Copyright 2024, Extron Electronics, {self.model}, V{self.firmware}, "
                f"{self.part_number}"))
            greeting += conn.codec.send(Text("Tue, 05 Mar 2024 10:11:12"))
        if login:
            greeting += conn.codec.send(PasswordPrompt())
        peer.send(greeting)
        if link != "serial":
            peer.tasks.append(self.spawn(self._idle_watch(peer), f"extron {peer.name} idle"))

    async def _idle_watch(self, peer: EmulatorPeer) -> None:
        """Drop an IP connection silent for its idle timeout (§1.2)."""
        loop = asyncio.get_running_loop()
        conn: Connection = peer.state
        while not peer.closed:
            remaining = conn.last_rx + conn.idle_timeout_s - loop.time()
            if remaining <= 0:
                log.info("extron emulator: %s silent for %g s: closing it", peer.name,
                         conn.idle_timeout_s)
                self.drop(peer)
                return
            await asyncio.sleep(remaining)

    async def data_received(self, peer: EmulatorPeer, data: bytes) -> None:
        conn: Connection = peer.state
        conn.last_rx = asyncio.get_running_loop().time()
        conn.codec.receive_data(data)
        while not peer.closed:
            try:
                message = conn.codec.next_event()
            except RemoteProtocolError as exc:
                log.debug("extron emulator: bad command from %s: %s", peer.name, exc)
                if conn.garbage_run == conn.codec.line_ends:
                    continue  # this run of garbage was answered already
                conn.garbage_run = conn.codec.line_ends
                if conn.logged_in:
                    await self._delay()
                    peer.send(conn.codec.send(ErrorCode(10)))
                else:
                    peer.send(conn.codec.send(PasswordPrompt()))
                continue
            if message is None:
                break
            conn.garbage_run = None
            self.log_command(peer, message)
            await self._handle(peer, conn, message)

    async def _delay(self) -> None:
        if self.response_delay_s > 0:
            await asyncio.sleep(self.response_delay_s)

    # -- commands ----------------------------------------------------------------------
    async def _handle(self, peer: EmulatorPeer, conn: Connection, message: Message) -> None:
        if isinstance(message, Telnet):
            return  # the controller's answer to our offers: nothing to do
        if isinstance(message, Password):
            self._login(peer, conn, message.text)
            return
        if not conn.logged_in:  # cannot happen while the codec waits for the password
            peer.send(conn.codec.send(PasswordPrompt()))
            return
        await self._delay()
        try:
            reply = self._command(peer, conn, message)
        except _Refused as refused:
            reply = ErrorCode(refused.code)
        if reply is not None:
            peer.send(conn.codec.send(reply))

    def _login(self, peer: EmulatorPeer, conn: Connection, given: str) -> None:
        if given == self.password:
            conn.logged_in, conn.administrator = True, True
        elif self.user_password is not None and given == self.user_password:
            conn.logged_in, conn.administrator = True, False
        else:
            peer.send(conn.codec.send(PasswordPrompt()))
            return
        peer.send(conn.codec.send(LoggedIn(conn.administrator)))

    def _command(self, peer: EmulatorPeer, conn: Connection, message: Message
                 ) -> Message | None:
        match message:
            case Tie(source, output, plane):
                self._check_plane(plane)
                self._check_input(source, allow_none=True)
                self._check_output(output)
                self._set(output, source, plane)
                reply: Message = TieReport(output, source, plane)
                self._report(reply, exclude=peer)
                return reply
            case TieToAll() | ClearAllTies():
                source = message.input if isinstance(message, TieToAll) else 0
                plane = message.plane
                self._check_plane(plane)
                self._check_input(source, allow_none=True)
                for output in range(1, self.outputs + 1):
                    self._set(output, source, plane)
                reply = TieAllReport(source, plane)
                self._report(reply, exclude=peer)
                return reply
            case QuickTie(ties):
                for tie in ties:
                    self._check_plane(tie.plane)
                    self._check_input(tie.input, allow_none=True)
                    self._check_output(tie.output)
                for tie in ties:
                    self._set(tie.output, tie.input, tie.plane)
                self._report(QuickTieDone(), exclude=peer)
                return QuickTieDone()
            case ReadTie(output, plane):
                self._check_plane(plane)
                self._check_output(output)
                value = self._get(output, plane)
                if conn.verbose in (2, 3):
                    return TieReport(output, value, plane)
                return Number(str(value).zfill(self.pad))
            case ReadBulk(preset, start, plane):
                self._check_plane(plane)
                self._check_output(start)
                video, audio = self._preset(preset) if preset else (self.video, self.audio)
                row = video if plane is Plane.VIDEO else audio
                return BulkReport(tuple(row[o] if o <= self.outputs else None
                                        for o in range(start, start + 16)), plane)
            case SetVerbose(mode):
                if mode > 3:
                    raise _Refused(13)
                conn.verbose = mode
                return VerboseReport(mode)
            case ReadVerbose():
                return Number(str(conn.verbose))
            case QueryFirmware():
                return Firmware(self.firmware)
            case QueryInformation():
                size = f"V{self.inputs}X{self.outputs}"
                return Information(size if self.levels == 1
                                   else f"{size} A{self.inputs}X{self.outputs}")
            case QueryPartNumber():
                return PartNumber(self.part_number)
            case SavePreset(preset):
                self._admin(conn)
                if not 1 <= preset <= self.presets:
                    raise _Refused(11)
                self.stored[preset] = (list(self.video), list(self.audio))
                self._report(PresetSaved(preset), exclude=peer)
                return PresetSaved(preset)
            case RecallPreset(preset):
                self.video[:], self.audio[:] = (list(row) for row in self._preset(preset))
                self._report(PresetRecalled(preset), exclude=peer)
                return PresetRecalled(preset)
            case SetName(kind, number, text):
                self._admin(conn)
                self._check_port(kind, number)
                try:
                    validate_name(text)
                except ValueError:
                    raise _Refused(13) from None
                if len(text) > 12:
                    raise _Refused(13)
                self.names[kind][number] = text
                reply = NameReport(kind, number, text)
                self._report(reply, exclude=peer)
                return reply
            case ReadName(kind, number):
                self._check_port(kind, number)
                text = self.names[kind][number]
                return NameReport(kind, number, text) if conn.verbose in (2, 3) else Text(text)
            case SetTimeout(scope, tens):
                if not 1 <= tens <= 65000:
                    raise _Refused(13)
                if scope == 1:
                    self._admin(conn)
                    self.idle_timeout_s = tens * 10.0
                else:
                    conn.idle_timeout_s = tens * 10.0
                return TimeoutReport(scope, tens)
            case ReadTimeout(scope):
                seconds = conn.idle_timeout_s if scope == 0 else self.idle_timeout_s
                return TimeoutReport(scope, round(seconds / 10))
        raise _Refused(10)  # pragma: no cover - every command the codec parses is above

    def _admin(self, conn: Connection) -> None:
        if not conn.administrator:
            raise _Refused(24)

    def _check_plane(self, plane: Plane) -> None:
        if plane is Plane.AUDIO and self.levels == 1:
            raise _Refused(10)

    def _check_input(self, source: int, *, allow_none: bool = False) -> None:
        if not (0 if allow_none else 1) <= source <= self.inputs:
            raise _Refused(1)

    def _check_output(self, output: int) -> None:
        if not 1 <= output <= self.outputs:
            raise _Refused(12)

    def _check_port(self, kind: PortKind, number: int) -> None:
        if kind is PortKind.SOURCE:
            self._check_input(number)
        else:
            self._check_output(number)

    def _preset(self, preset: int) -> tuple[list[int], list[int]]:
        if preset not in self.stored:
            raise _Refused(11)
        return self.stored[preset]

    def _set(self, output: int, source: int, plane: Plane) -> None:
        if plane in (Plane.ALL, Plane.VIDEO, Plane.RGB):
            self.video[output] = source
        if plane in (Plane.ALL, Plane.AUDIO) and self.levels == 2:
            self.audio[output] = source

    def _get(self, output: int, plane: Plane) -> int:
        if plane is Plane.AUDIO:
            return self.audio[output]
        if plane is Plane.ALL and self.levels == 2 and self.video[output] != self.audio[output]:
            raise _Refused(14)
        return self.video[output]

    def _report(self, message: Message, *, exclude: EmulatorPeer | None = None) -> None:
        """Tell every other logged-in connection in verbose mode 1 or 3 (§4)."""
        data = self._encoder.send(message)
        for peer in self.peers:
            conn: Connection | None = peer.state
            if peer is not exclude and conn is not None and conn.logged_in \
                    and conn.verbose in (1, 3):
                peer.send(data)

    # -- the frame's own panel -------------------------------------------------------------
    def panel_tie(self, input: int, output: int, plane: Plane = Plane.ALL, *,
                  report: str = "tie") -> None:
        """Tie at the front panel (1-based, ``input`` 0 unties), as a user at the frame.

        :param report: what connections in verbose 1/3 are told: ``"tie"`` (``OutYY InXX
            All``), ``"qik"`` (``Qik``, older families: which tie is not said) or
            ``"none"`` (a change tieline can only find by reading).
        """
        if report not in ("tie", "qik", "none"):
            raise ValueError(f"report must be tie, qik or none, not {report!r}")
        if not 0 <= input <= self.inputs or not 1 <= output <= self.outputs:
            raise ValueError(f"input {input} or output {output} out of range "
                             f"(0–{self.inputs}, 1–{self.outputs})")
        if plane is Plane.AUDIO and self.levels == 1:
            raise ValueError("a video-only frame has no audio plane")
        self._set(output, input, plane)
        if report == "tie":
            self._report(TieReport(output, input, plane))
        elif report == "qik":
            self._report(QuickTieDone())

    def panel_recall(self, preset: int) -> None:
        """Recall a stored preset at the front panel; connections are told ``RprNN``."""
        if preset not in self.stored:
            raise ValueError(f"preset {preset} is empty")
        self.video[:], self.audio[:] = (list(row) for row in self.stored[preset])
        self._report(PresetRecalled(preset))

    def panel_name(self, kind: PortKind, number: int, text: str) -> None:
        """Name a port at the frame; connections in verbose 1/3 are told."""
        validate_name(text)
        self.names[kind][number] = text
        self._report(NameReport(kind, number, text))

    def send_line(self, text: str) -> None:
        """Send a line to every logged-in connection in verbose 1/3 (``Reconfig``, …)."""
        self._report(Text(text))

    def tie(self, output: int, plane: Plane = Plane.VIDEO) -> int:
        """The input feeding ``output`` on ``plane`` now (1-based; 0 = untied)."""
        return self.audio[output] if plane is Plane.AUDIO else self.video[output]

    def set_ties(self, video: Mapping[int, int] | None = None,
                 audio: Mapping[int, int] | None = None) -> None:
        """Set ties without telling anyone (a frame changed while tieline was away)."""
        for output, source in (video or {}).items():
            self.video[output] = source
        for output, source in (audio or {}).items():
            self.audio[output] = source
