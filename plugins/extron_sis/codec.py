"""Extron SIS (Simple Instruction Set) for matrix switchers: a sans-I/O codec, both roles.

References: ``shared/protocols/extron-sis.md`` ("the notes"; § numbers below) and the Extron
user guides it cites (CrossPoint/MAV Plus programmer's guide, DXP DVI/HDMI, MTPX Plus, SMX,
FOX Matrix, Matrix 12800). The same :class:`Codec` serves the controller (the driver: it
sends commands and parses the device's responses) and the device (the emulator: it parses
commands and sends responses). Bytes in with :meth:`Codec.receive_data`, messages out with
:meth:`Codec.next_event` / :meth:`Codec.events`; messages in with :meth:`Codec.send`, bytes
out. No sockets, no asyncio, no clock.

Numbers in every message are the wire's: **1-based**, input ``0`` = "no input" (§2).

Framing, controller -> device (§1.3)
    Commands need no delimiter. A simple command is digits and ``*`` separators ended by
    its terminating symbol (``!`` ``%`` ``$`` ``&`` ``,`` ``.`` ``Q`` ``I`` ``N``); an
    Esc-command is ``ESC`` (0x1B) … ``CR``. Commands may follow each other in one string.
    Letters are case-insensitive. Numeric fields take 1 to :data:`MAX_DIGITS` digits (the
    notes: 1–3; 4 are accepted for frames beyond 999 ports). Spaces, TABs, CRs and LFs
    between commands are ignored. After the device has sent ``Password:`` the next line
    (up to CR or LF) is the password (§1.1).

Framing, device -> controller (§1.3)
    Every response is a line ending CR LF (a lone CR or LF also ends one). The exception is
    the login prompt ``Password:``, recognised at the start of a line without a line end
    (§1.1: "do not rely on a trailing line end"). Lines are at most :data:`MAX_LINE` bytes
    of printable characters and TABs (bytes above 0x7F are read as Latin-1: names, banners);
    any other control character is a protocol error. A blank line is ``Text("")``. Numbers are zero-padded to 2 digits
    on most frames, 3 on large ones, unpadded on DXP: parsed with ``\\d+`` whatever the width.

Telnet (§1)
    With ``telnet=True`` (TCP port 23) IAC sequences are taken out of the stream in both
    roles and reported as :class:`Telnet` events; the driver refuses every option.

Errors: bytes that break these rules raise :class:`~tieline.errors.RemoteProtocolError` and
nothing else, after the offending command or line has been consumed (an over-long one is
skipped to its end), so the codec stays usable: the emulator answers ``E10`` and carries on,
the driver drops the connection and resyncs. Sending a message the role does not send, or
one that cannot be framed, raises ``ValueError``.

The destructive "clear every tie" command ``0*!`` (§2: "destructive") is its own message,
:class:`ClearAllTies`, and a controller codec refuses to encode it unless it was made with
``allow_clear_all=True``. tieline's driver never makes one so: no code path sends it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass

from tieline import PortKind, RemoteProtocolError

#: Longest response line, in bytes, line end excluded.
MAX_LINE = 2048
#: Longest command (an Esc-command such as a quick multiple tie, ESC and CR excluded).
MAX_COMMAND = 4096
#: Longest simple command before its terminator (digits and ``*``).
MAX_SIMPLE = 32
#: Digits a numeric field may have (§1.3 says 1–3; 4 for frames beyond 999 ports).
MAX_DIGITS = 4
#: Largest port number on the wire.
MAX_PORT = 10 ** MAX_DIGITS - 1
#: Longest password accepted at the ``Password:`` prompt.
MAX_PASSWORD = 128
#: Longest Telnet subnegotiation skipped (IAC SB … IAC SE).
MAX_SUBNEGOTIATION = 256

ESC, CR, LF = 0x1B, 0x0D, 0x0A
#: Telnet bytes (RFC 854): IAC, the option verbs, subnegotiation.
IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240

#: Characters the manuals forbid in names (§1.3).
INVALID_NAME_CHARACTERS = frozenset("+~,@='[]{}<>\";:|\\?")


class Role(enum.Enum):
    """Which end of the connection a codec is."""

    CONTROLLER = "controller"
    DEVICE = "device"


class Plane(enum.Enum):
    """What a tie switches (§2): its command symbol is the value.

    ``ALL`` is video and audio together; ``RGB`` is a synonym of ``VIDEO`` on video models.
    """

    ALL = "!"
    VIDEO = "%"
    RGB = "&"
    AUDIO = "$"

    @property
    def tag(self) -> str:
        """The word that names the plane in responses: ``All``, ``Vid``, ``RGB``, ``Aud``."""
        return _TAGS[self]


_TAGS = {Plane.ALL: "All", Plane.VIDEO: "Vid", Plane.RGB: "RGB", Plane.AUDIO: "Aud"}
_PLANE_OF_TAG = {tag.lower(): plane for plane, tag in _TAGS.items()}

#: What each error code means on matrix switchers (§5).
ERROR_CODES: dict[int, str] = {
    1: "invalid input number (the device has fewer inputs)",
    6: "invalid input change (auto-switching may be on)",
    10: "command not recognised",
    11: "invalid preset number, or the preset is empty",
    12: "invalid output number (the device has fewer outputs)",
    13: "value out of range",
    14: "not valid for this configuration (e.g. video and audio broken away)",
    17: "invalid command for this signal type (older frames: timeout writing presets)",
    21: "invalid room number",
    22: "the device is busy",
    24: "privilege violation (this needs the administrator password)",
    25: "device not present",
    26: "maximum number of connections exceeded",
    27: "invalid event number",
    28: "bad file name or file not found",
    30: "hardware failure",
    31: "no port pass-through to break",
    33: "bad file type",
    35: "account does not exist",
}


def describe_error(code: int, detail: str = "") -> str:
    """``E12`` in words: ``"E12 invalid output number (the device has fewer outputs)"``."""
    text = f"E{code:02d} {ERROR_CODES.get(code, 'unknown error code')}"
    return f"{text}: {detail}" if detail else text


# -------------------------------------------------------------------------------------------
# Messages. Controller -> device: commands (§2, §3, §4, §6, §7). Device -> controller:
# responses. Telnet: both.
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base class of every protocol message."""


# -- controller -> device --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tie(Message):
    """``X*Y!`` / ``%`` / ``&`` / ``$`` (§2): tie ``input`` to ``output`` on ``plane``.

    ``input`` 0 unties the output.
    """

    input: int
    output: int
    plane: Plane


@dataclass(frozen=True, slots=True)
class TieToAll(Message):
    """``X*!`` (§2): tie ``input`` (1 or more) to every output on ``plane``."""

    input: int
    plane: Plane


@dataclass(frozen=True, slots=True)
class ClearAllTies(Message):
    """``0*!`` (§2): untie every output on ``plane``. **Destructive**; see the module doc."""

    plane: Plane = Plane.ALL


@dataclass(frozen=True, slots=True)
class ReadTie(Message):
    """``Y%`` / ``Y$`` / ``Y&`` / ``Y!`` (§3): which input feeds ``output`` on ``plane``."""

    output: int
    plane: Plane


@dataclass(frozen=True, slots=True)
class QuickTie(Message):
    """``Esc+Q X*Y! X*Y% … CR`` (§2): several ties made at once; the device answers ``Qik``."""

    ties: tuple[Tie, ...]


@dataclass(frozen=True, slots=True)
class SetVerbose(Message):
    """``Esc n CV CR`` (§4): verbose mode 0–3 for this connection; answered ``Vrb n``."""

    mode: int


@dataclass(frozen=True, slots=True)
class ReadVerbose(Message):
    """``Esc CV CR`` (§4): the connection's verbose mode, answered with the bare number."""


@dataclass(frozen=True, slots=True)
class QueryFirmware(Message):
    """``Q`` (§3, §1.2): the firmware version; tieline's keepalive."""


@dataclass(frozen=True, slots=True)
class QueryInformation(Message):
    """``I`` (§3): model-dependent information, the size on matrix frames."""


@dataclass(frozen=True, slots=True)
class QueryPartNumber(Message):
    """``N`` (§3): the part number."""


@dataclass(frozen=True, slots=True)
class SavePreset(Message):
    """``N,`` (§6): save the current ties as global preset ``preset``."""

    preset: int


@dataclass(frozen=True, slots=True)
class RecallPreset(Message):
    """``N.`` (§6): recall global preset ``preset`` (many ties change at once)."""

    preset: int


@dataclass(frozen=True, slots=True)
class SetName(Message):
    """``Esc N,name NI CR`` / ``NO`` (§6): name input (``kind`` SOURCE) or output ``number``."""

    kind: PortKind
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class ReadName(Message):
    """``Esc N NI CR`` / ``NO`` (§6): the name of input or output ``number``."""

    kind: PortKind
    number: int


@dataclass(frozen=True, slots=True)
class ReadBulk(Message):
    """``Esc preset*start*1|2 VC CR`` (§3, DXP): 16 ties from output ``start``.

    :param preset: 0 = the current ties, else a global preset's.
    :param plane: ``VIDEO`` (1) or ``AUDIO`` (2).
    """

    preset: int
    start: int
    plane: Plane


@dataclass(frozen=True, slots=True)
class SetTimeout(Message):
    """``Esc scope*n TC CR`` (§1.2): idle timeout in 10-second units (1–65000).

    :param scope: 0 = this connection, 1 = the default for new connections.
    """

    scope: int
    tens: int


@dataclass(frozen=True, slots=True)
class ReadTimeout(Message):
    """``Esc scope TC CR`` (§1.2): read an idle timeout."""

    scope: int


@dataclass(frozen=True, slots=True)
class Password(Message):
    """The line a controller sends after ``Password:`` (§1.1)."""

    text: str


# -- device -> controller --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TieReport(Message):
    """``OutYY InXX All|Vid|Aud|RGB`` (§2, §3, §4): ``input`` (0 = none) feeds ``output``.

    The answer to a tie, a tagged read, and (verbose 1/3) a change made elsewhere.
    """

    output: int
    input: int
    plane: Plane


@dataclass(frozen=True, slots=True)
class TieAllReport(Message):
    """``InXX All`` (§2): ``input`` now feeds every output (``In00`` = every tie cleared)."""

    input: int
    plane: Plane


@dataclass(frozen=True, slots=True)
class Number(Message):
    """A bare number (§3): an untagged read (``XX``, 00 = untied) or a verbose mode.

    :param text: the digits as sent (``"03"``); :attr:`value` is the number.
    """

    text: str

    @property
    def value(self) -> int:
        return int(self.text)


@dataclass(frozen=True, slots=True)
class VerboseReport(Message):
    """``Vrb n`` (§4): the connection's verbose mode is now ``mode``."""

    mode: int


@dataclass(frozen=True, slots=True)
class QuickTieDone(Message):
    """``Qik`` (§2, §4): a quick tie was made; unsolicited: a front-panel tie (which one is
    not said)."""


@dataclass(frozen=True, slots=True)
class PresetRecalled(Message):
    """``RprNN`` (§6): global preset ``preset`` was recalled."""

    preset: int


@dataclass(frozen=True, slots=True)
class PresetSaved(Message):
    """``SprNN`` (§6): global preset ``preset`` was saved."""

    preset: int


@dataclass(frozen=True, slots=True)
class NameReport(Message):
    """``NmiNN,name`` / ``NmoNN,name`` (§6): the name of an input (SOURCE) or output."""

    kind: PortKind
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class ErrorCode(Message):
    """``Exx`` (§5), e.g. ``E01``; ``E30:descriptor`` carries a ``detail``."""

    code: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Firmware(Message):
    """``x.xx`` (§3): the answer to ``Q``."""

    version: str


@dataclass(frozen=True, slots=True)
class Information(Message):
    """``V16X16 A16X16`` (§3): the answer to ``I`` on matrix frames."""

    text: str


@dataclass(frozen=True, slots=True)
class PartNumber(Message):
    """``60-nnnn-nn`` (§3): the answer to ``N``."""

    text: str


@dataclass(frozen=True, slots=True)
class BulkReport(Message):
    """``01 02 -- … Vid`` (§3, DXP): the answer to :class:`ReadBulk`.

    :param inputs: one per output from the request's ``start``; None = no such output (``--``).
    """

    inputs: tuple[int | None, ...]
    plane: Plane


@dataclass(frozen=True, slots=True)
class TimeoutReport(Message):
    """``Pti scope*n`` (§1.2): an idle timeout, in 10-second units."""

    scope: int
    tens: int


@dataclass(frozen=True, slots=True)
class Banner(Message):
    """The copyright line sent on connect (§1.1); the text is matched loosely."""

    text: str


@dataclass(frozen=True, slots=True)
class PasswordPrompt(Message):
    """``Password:`` (§1.1), sent without a line end."""


@dataclass(frozen=True, slots=True)
class LoggedIn(Message):
    """``Login Administrator`` / ``Login User`` (§1.1)."""

    administrator: bool


@dataclass(frozen=True, slots=True)
class Text(Message):
    """Any other line (§4: date lines, ``Vmt…``, ``Exe1``, ``Reconfig``, untagged names…).

    A blank line is ``Text("")``. When sent, a text that looks like another response is
    read as that response.
    """

    text: str


# -- both ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Telnet(Message):
    """A Telnet command (§1): ``IAC command [option]``.

    :param command: ``WILL`` 251, ``WONT`` 252, ``DO`` 253, ``DONT`` 254, ``SB`` 250 (a
        subnegotiation, skipped) or another command byte 240–249.
    :param option: the option byte for WILL/WONT/DO/DONT/SB, else None.
    """

    command: int
    option: int | None = None


_CONTROLLER_SENDS: frozenset[type[Message]] = frozenset({
    Tie, TieToAll, ClearAllTies, ReadTie, QuickTie, SetVerbose, ReadVerbose, QueryFirmware,
    QueryInformation, QueryPartNumber, SavePreset, RecallPreset, SetName, ReadName, ReadBulk,
    SetTimeout, ReadTimeout, Password, Telnet,
})
_DEVICE_SENDS: frozenset[type[Message]] = frozenset({
    TieReport, TieAllReport, Number, VerboseReport, QuickTieDone, PresetRecalled, PresetSaved,
    NameReport, ErrorCode, Firmware, Information, PartNumber, BulkReport, TimeoutReport,
    Banner, PasswordPrompt, LoggedIn, Text, Telnet,
})

#: Commands that change ties (what "no route command during start-up" is about).
TIE_COMMANDS: tuple[type[Message], ...] = (Tie, TieToAll, ClearAllTies, QuickTie, RecallPreset)


# -------------------------------------------------------------------------------------------
# Parsing the device's response lines (controller role).
# -------------------------------------------------------------------------------------------

_TAG = r"(all|vid|aud|rgb)"
_RESPONSES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"out(\d+) +in(\d+) +" + _TAG, re.I), "tie"),
    (re.compile(r"in(\d+) +" + _TAG, re.I), "tie_all"),
    (re.compile(r"e(\d\d)(?::(.*))?", re.I), "error"),
    (re.compile(r"vrb(\d)", re.I), "verbose"),
    (re.compile(r"qik", re.I), "quick"),
    (re.compile(r"rpr(\d+)", re.I), "recalled"),
    (re.compile(r"spr(\d+)", re.I), "saved"),
    (re.compile(r"nm([io])(\d+),(.*)", re.I), "name"),
    (re.compile(r"login +(administrator|user)", re.I), "login"),
    (re.compile(r"pti([01])\*(\d+)", re.I), "timeout"),
    (re.compile(r"((?:(?:\d+|--) +)+)(vid|aud)", re.I), "bulk"),
    (re.compile(r"\d+"), "number"),
    (re.compile(r"\d+\.\d+[0-9A-Za-z.\-]*"), "firmware"),
    (re.compile(r"60-\d+-\d+"), "part"),
    (re.compile(r"V\d+X\d+(?: +A\d+X\d+)?"), "information"),
]
_COPYRIGHT = re.compile(r"copyright", re.I)
# Control characters other than TAB; CR and LF end lines before this is checked.
_BAD_IN_LINE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_PASSWORD = b"password:"


def _classify(text: str) -> Message:
    """What a response line means (the first pattern that matches the whole line)."""
    for pattern, kind in _RESPONSES:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        if kind == "tie":
            return TieReport(int(m[1]), int(m[2]), _PLANE_OF_TAG[m[3].lower()])
        if kind == "tie_all":
            return TieAllReport(int(m[1]), _PLANE_OF_TAG[m[2].lower()])
        if kind == "error":
            return ErrorCode(int(m[1]), m[2] or "")
        if kind == "verbose":
            return VerboseReport(int(m[1]))
        if kind == "quick":
            return QuickTieDone()
        if kind == "recalled":
            return PresetRecalled(int(m[1]))
        if kind == "saved":
            return PresetSaved(int(m[1]))
        if kind == "name":
            port = PortKind.SOURCE if m[1].lower() == "i" else PortKind.DESTINATION
            return NameReport(port, int(m[2]), m[3])
        if kind == "login":
            return LoggedIn(m[1].lower() == "administrator")
        if kind == "timeout":
            return TimeoutReport(int(m[1]), int(m[2]))
        if kind == "bulk":
            inputs = tuple(None if f == "--" else int(f) for f in m[1].split())
            return BulkReport(inputs, _PLANE_OF_TAG[m[2].lower()])
        if kind == "number":
            return Number(text)
        if kind == "firmware":
            return Firmware(text)
        if kind == "part":
            return PartNumber(text)
        return Information(text)
    if _COPYRIGHT.search(text):
        return Banner(text)
    return Text(text)


# -------------------------------------------------------------------------------------------
# Parsing commands (device role).
# -------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[0-9]{1,%d}" % MAX_DIGITS)
_ESC_COMMANDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"([0-9])CV", re.I), "set_verbose"),
    (re.compile(r"CV", re.I), "read_verbose"),
    (re.compile(r"\+Q(.+)", re.I | re.S), "quick"),
    (re.compile(r"([0-9]{1,%d}),(.*)N([IO])" % MAX_DIGITS, re.I | re.S), "set_name"),
    (re.compile(r"([0-9]{1,%d})N([IO])" % MAX_DIGITS, re.I), "read_name"),
    (re.compile(r"([0-9]{1,%d})\*([0-9]{1,%d})\*([12])VC" % (MAX_DIGITS, MAX_DIGITS), re.I),
     "bulk"),
    (re.compile(r"([01])\*([0-9]{1,5})TC", re.I), "set_timeout"),
    (re.compile(r"([01])TC", re.I), "read_timeout"),
]
_QUICK_TIE = re.compile(r"([0-9]{1,%d})\*([0-9]{1,%d})([!%%$&])" % (MAX_DIGITS, MAX_DIGITS))
_SIMPLE_CHARS = frozenset(b"0123456789*")
_BLANKS = frozenset(b" \t\r\n")


def _number(field: str, what: str) -> int:
    if not _NUMBER.fullmatch(field):
        raise RemoteProtocolError(f"{what} must be 1–{MAX_DIGITS} digits, not {field!r}")
    return int(field)


def _parse_simple(fields: str, terminator: str) -> Message:
    """A simple command: ``fields`` (digits and ``*``) ended by ``terminator``."""
    term = terminator.upper()
    parts = fields.split("*") if fields else []
    if term in "!%$&":
        plane = Plane(term)
        if len(parts) == 1:
            return ReadTie(_number(parts[0], "an output"), plane)
        if len(parts) == 2:
            source = _number(parts[0], "an input")
            if parts[1] == "":
                return ClearAllTies(plane) if source == 0 else TieToAll(source, plane)
            return Tie(source, _number(parts[1], "an output"), plane)
    elif term in ",." and len(parts) == 1:
        preset = _number(parts[0], "a preset")
        return SavePreset(preset) if term == "," else RecallPreset(preset)
    elif not fields and term == "Q":
        return QueryFirmware()
    elif not fields and term == "I":
        return QueryInformation()
    elif not fields and term == "N":
        return QueryPartNumber()
    raise RemoteProtocolError(f"unknown command {(fields + terminator)[:40]!r}")


def _parse_esc(body: bytes) -> Message:
    """An Esc-command: the bytes between ESC and CR."""
    if _BAD_IN_LINE.search(body):
        raise RemoteProtocolError("Esc-command contains a control character", body[:64])
    text = body.decode("latin-1")
    for pattern, kind in _ESC_COMMANDS:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        if kind == "set_verbose":
            return SetVerbose(int(m[1]))
        if kind == "read_verbose":
            return ReadVerbose()
        if kind == "quick":
            ties: list[Tie] = []
            at = 0
            for tie in _QUICK_TIE.finditer(m[1]):
                if tie.start() != at:
                    break
                ties.append(Tie(int(tie[1]), int(tie[2]), Plane(tie[3])))
                at = tie.end()
            if at != len(m[1]) or not ties:
                raise RemoteProtocolError(f"bad quick tie {text[:40]!r}", body[:64])
            return QuickTie(tuple(ties))
        if kind == "set_name":
            kind_ = PortKind.SOURCE if m[3].upper() == "I" else PortKind.DESTINATION
            return SetName(kind_, int(m[1]), m[2])
        if kind == "read_name":
            kind_ = PortKind.SOURCE if m[2].upper() == "I" else PortKind.DESTINATION
            return ReadName(kind_, int(m[1]))
        if kind == "bulk":
            return ReadBulk(int(m[1]), int(m[2]), Plane.VIDEO if m[3] == "1" else Plane.AUDIO)
        if kind == "set_timeout":
            return SetTimeout(int(m[1]), int(m[2]))
        return ReadTimeout(int(m[1]))
    raise RemoteProtocolError(f"unknown Esc-command {text[:40]!r}", body[:64])


# -------------------------------------------------------------------------------------------
# Encoding.
# -------------------------------------------------------------------------------------------


def _port(value: int, what: str, low: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_PORT:
        raise ValueError(f"{what} must be a number {low}–{MAX_PORT}, not {value!r}")
    return str(value)


def _printable(text: str, what: str, *, name: bool = False) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be text, not {text!r}")
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} has characters outside Latin-1") from None
    if _BAD_IN_LINE.search(data) or b"\r" in data or b"\x1b" in data:
        raise ValueError(f"{what} {text!r} contains a control character")
    if name:
        bad = sorted(set(text) & INVALID_NAME_CHARACTERS)
        if bad or not text.isascii():
            raise ValueError(
                f"{what} {text!r} contains characters Extron names may not have: "
                + " ".join(bad or [c for c in text if not c.isascii()])
            )
    return text


def validate_name(text: str) -> str:
    """Check a port name can be sent (§1.3: printable ASCII without ``+~,@='[]{}<>";:|\\?``).

    :raises ValueError: naming the characters that are not allowed.
    """
    return _printable(text, "name", name=True)


class Codec:
    """One end of an Extron SIS connection.

    :param role: which end this is; it decides what :meth:`send` accepts and what the peer
        may send.
    :param telnet: take Telnet IAC sequences out of the stream (TCP port 23).
    :param pad: (device role) digits numbers are zero-padded to in responses: 2 on most
        frames, 3 on large ones, 0 for none (DXP).
    :param allow_clear_all: (controller role) allow encoding :class:`ClearAllTies`. Only for
        a user's explicit "clear every tie" request; tieline's driver never sets it.
    """

    def __init__(self, role: Role, *, telnet: bool = False, pad: int = 2,
                 allow_clear_all: bool = False) -> None:
        self.role = role
        self.telnet = telnet
        self.pad = pad
        self.allow_clear_all = allow_clear_all
        #: (device role) the next line is a password: set by sending :class:`PasswordPrompt`.
        self.awaiting_password = False
        #: line ends (CR or LF) received so far, between commands or ending a line: the
        #: emulator answers one error per run of garbage up to a line end (or a command).
        self.line_ends = 0
        self._raw = bytearray()
        self._item = bytearray()  #: the line or command being assembled
        self._after_cr = False  #: one LF right after a CR belongs to it
        self._skipping = False  #: discarding the rest of an over-long line or command
        self._esc = False  #: (device role) inside an Esc-command
        self._ends = re.compile(rb"[\r\n\xff]" if telnet else rb"[\r\n]")

    # -- receiving ---------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; parse them with :meth:`next_event`."""
        self._raw += data

    def events(self) -> Iterator[Message]:
        """Every complete message received so far (stops at the first protocol error)."""
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> Message | None:
        """The next complete message from the peer, or None until more data arrives.

        :raises RemoteProtocolError: for bytes that break the protocol. They have been
            consumed; the codec may be used further.
        """
        if self.role is Role.CONTROLLER:
            return self._next_response()
        return self._next_command()

    def _telnet(self) -> Message | bytes | None:
        """An IAC sequence at the start of the buffer: an event, the literal byte of
        ``IAC IAC``, or None when incomplete."""
        raw = self._raw
        if len(raw) < 2:
            return None
        command = raw[1]
        if command == IAC:
            del raw[:2]
            return b"\xff"
        if command in (WILL, WONT, DO, DONT):
            if len(raw) < 3:
                return None
            option = raw[2]
            del raw[:3]
            return Telnet(command, option)
        if command == SB:
            end = raw.find(bytes((IAC, SE)), 2, MAX_SUBNEGOTIATION)
            if end < 0:
                if len(raw) >= MAX_SUBNEGOTIATION:
                    del raw[:2]
                    raise RemoteProtocolError(
                        f"Telnet subnegotiation longer than {MAX_SUBNEGOTIATION} bytes")
                return None
            option = raw[2] if end > 2 else None
            del raw[:end + 2]
            return Telnet(SB, option)
        if 240 <= command <= 249:
            del raw[:2]
            return Telnet(command)
        del raw[:2]
        raise RemoteProtocolError(f"bad Telnet command byte {command}", bytes((IAC, command)))

    def _take(self, count: int, limit: int, what: str) -> None:
        """Move ``count`` bytes from the buffer into the item (bounded by ``limit``)."""
        if not count:
            return
        if not self._skipping:
            self._item += self._raw[:count]
        del self._raw[:count]
        if len(self._item) > limit:
            head = bytes(self._item[:64])
            self._item.clear()
            self._skipping = True
            raise RemoteProtocolError(f"{what} longer than {limit} bytes", head)

    def _line_end(self) -> tuple[bytes | None, Message | bytes | None]:
        """Collect bytes up to CR/LF (or an IAC).

        :returns: ``(line, None)`` for a complete line (None when it was being skipped),
            ``(None, event)`` for a Telnet event or literal, ``(None, None)`` to wait.
        """
        raw = self._raw
        limit, what = ((MAX_LINE, "line") if self.role is Role.CONTROLLER
                       else (MAX_PASSWORD, "password") if self.awaiting_password
                       else (MAX_COMMAND, "Esc-command"))
        match = self._ends.search(raw)
        if match is None:
            self._take(len(raw), limit, what)
            return None, None
        self._take(match.start(), limit, what)
        if raw[0] == IAC:
            event = self._telnet()
            if event == b"\xff":
                self._take_literal_ff(limit, what)
                return None, b""
            return None, event
        self._after_cr = raw[0] == CR
        del raw[0]
        self.line_ends += 1
        line = bytes(self._item)
        self._item.clear()
        if self._skipping:
            self._skipping = False
            self._esc = False  # the over-long Esc-command ends here too
            return None, b""
        return line, None

    def _take_literal_ff(self, limit: int, what: str) -> None:
        self._raw[0:0] = b"\xff"
        self._take(1, limit, what)

    def _swallow_lf(self) -> bool:
        """Drop an LF that completes a CR LF; True if the buffer is empty."""
        if self._after_cr and self._raw:
            self._after_cr = False
            if self._raw[0] == LF:
                del self._raw[0]
        return not self._raw

    def _next_response(self) -> Message | None:
        raw = self._raw
        while True:
            if self._swallow_lf():
                return None
            if not self._item and not self._skipping:
                head = bytes(raw[:len(_PASSWORD)]).lower()
                if head == _PASSWORD:
                    del raw[:len(_PASSWORD)]
                    return PasswordPrompt()
                if _PASSWORD.startswith(head):
                    return None  # perhaps the prompt: wait for more
            line, event = self._line_end()
            if line is not None:
                return self._parse_line(line)
            if event == b"":
                continue
            return event  # type: ignore[return-value]

    def _parse_line(self, line: bytes) -> Message:
        if _BAD_IN_LINE.search(line) or ESC in line:
            raise RemoteProtocolError("response line contains a control character", line[:64])
        text = line.decode("latin-1")
        message = _classify(text.strip(" \t"))
        if isinstance(message, (Text, NameReport, Banner)):
            message = _classify(text)  # keep the spaces of free text
        return message

    def _next_command(self) -> Message | None:
        raw = self._raw
        while True:
            if self._swallow_lf():
                return None
            if self.awaiting_password or self._esc or self._skipping:
                line, event = self._line_end()
                if event == b"":
                    continue
                if event is not None:
                    return event  # type: ignore[return-value]
                if line is None:
                    return None
                if self.awaiting_password:
                    self.awaiting_password = False
                    if _BAD_IN_LINE.search(line) or ESC in line:
                        raise RemoteProtocolError("password contains a control character")
                    return Password(line.decode("latin-1"))
                self._esc = False
                return _parse_esc(line)
            byte = raw[0]
            if self.telnet and byte == IAC:
                event = self._telnet()
                if event is None:
                    return None
                if event == b"\xff":
                    self._item.clear()
                    raise RemoteProtocolError("byte 0xFF in a command")
                return event  # type: ignore[return-value]
            if byte in _SIMPLE_CHARS:
                self._item.append(byte)
                del raw[0]
                if len(self._item) > MAX_SIMPLE:
                    self._item.clear()  # the digits so far are dropped; parsing goes on
                    raise RemoteProtocolError(f"command longer than {MAX_SIMPLE} characters")
                continue
            if not self._item and byte in _BLANKS:
                del raw[0]
                if byte in (CR, LF):
                    self.line_ends += 1
                continue
            del raw[0]
            fields = self._item.decode("ascii")
            self._item.clear()
            if byte == ESC:
                self._esc = True
                if fields:
                    raise RemoteProtocolError(f"command {fields!r} cut off by an Esc-command")
                continue
            if byte < 0x20 or byte >= 0x7F:
                raise RemoteProtocolError(f"byte 0x{byte:02X} in a command", bytes([byte]))
            return _parse_simple(fields, chr(byte))

    # -- sending -----------------------------------------------------------------------
    def send(self, message: Message) -> bytes:
        """The bytes that carry ``message``.

        :raises ValueError: when this role does not send ``message`` or it cannot be framed.
        """
        sends = _CONTROLLER_SENDS if self.role is Role.CONTROLLER else _DEVICE_SENDS
        if type(message) not in sends:
            raise ValueError(f"a {self.role.value} does not send {type(message).__name__}")
        if isinstance(message, Telnet):
            return self._send_telnet(message)
        if self.role is Role.CONTROLLER:
            return self._send_command(message)
        return self._send_response(message)

    @staticmethod
    def _send_telnet(message: Telnet) -> bytes:
        command, option = message.command, message.option
        if command in (WILL, WONT, DO, DONT):
            if not isinstance(option, int) or not 0 <= option <= 255:
                raise ValueError(f"Telnet option must be a byte, not {option!r}")
            return bytes((IAC, command, option))
        if 240 < command <= 249 and command != SB and option is None:
            return bytes((IAC, command))
        raise ValueError(f"cannot send Telnet command {command} {option}")

    def _send_command(self, message: Message) -> bytes:
        match message:
            case Tie(source, output, plane):
                text = f"{_port(source, 'input', 0)}*{_port(output, 'output')}{Plane(plane).value}"
            case TieToAll(source, plane):
                text = f"{_port(source, 'input')}*{Plane(plane).value}"
            case ClearAllTies(plane):
                if not self.allow_clear_all:
                    raise ValueError(
                        "refusing to encode the clear-all-ties command 0*!: it unties every "
                        "output; only a user's explicit request may send it "
                        "(Codec(allow_clear_all=True))"
                    )
                text = f"0*{Plane(plane).value}"
            case ReadTie(output, plane):
                text = f"{_port(output, 'output')}{Plane(plane).value}"
            case QuickTie(ties):
                if not ties:
                    raise ValueError("a quick tie needs at least one tie")
                body = "".join(
                    f"{_port(t.input, 'input', 0)}*{_port(t.output, 'output')}"
                    f"{Plane(t.plane).value}" for t in ties)
                if len(body) + 2 > MAX_COMMAND:
                    raise ValueError(f"quick tie of {len(ties)} ties is too long for one command")
                text = f"\x1b+Q{body}\r"
            case SetVerbose(mode):
                if mode not in (0, 1, 2, 3):
                    raise ValueError(f"verbose mode must be 0–3, not {mode!r}")
                text = f"\x1b{mode}CV\r"
            case ReadVerbose():
                text = "\x1bCV\r"
            case QueryFirmware():
                text = "Q"
            case QueryInformation():
                text = "I"
            case QueryPartNumber():
                text = "N"
            case SavePreset(preset):
                text = f"{_port(preset, 'preset')},"
            case RecallPreset(preset):
                text = f"{_port(preset, 'preset')}."
            case SetName(kind, number, name):
                validate_name(name)
                text = f"\x1b{_port(number, 'port')},{name}N{_port_letter(kind)}\r"
                if len(text) - 2 > MAX_COMMAND:
                    raise ValueError("name too long")
            case ReadName(kind, number):
                text = f"\x1b{_port(number, 'port')}N{_port_letter(kind)}\r"
            case ReadBulk(preset, start, plane):
                digit = {Plane.VIDEO: 1, Plane.AUDIO: 2}.get(Plane(plane))
                if digit is None:
                    raise ValueError("a bulk read is of VIDEO or AUDIO")
                text = f"\x1b{_port(preset, 'preset', 0)}*{_port(start, 'output')}*{digit}VC\r"
            case SetTimeout(scope, tens):
                if scope not in (0, 1) or not isinstance(tens, int) or not 1 <= tens <= 65000:
                    raise ValueError(f"timeout scope 0|1 and 1–65000 tens of seconds, "
                                     f"not {scope!r}, {tens!r}")
                text = f"\x1b{scope}*{tens}TC\r"
            case ReadTimeout(scope):
                if scope not in (0, 1):
                    raise ValueError(f"timeout scope must be 0 or 1, not {scope!r}")
                text = f"\x1b{scope}TC\r"
            case Password(secret):
                _printable(secret, "password")
                if "\n" in secret or len(secret) > MAX_PASSWORD:
                    raise ValueError("password too long or with a line end")
                text = f"{secret}\r"
            case _:  # pragma: no cover - _CONTROLLER_SENDS lists every case above
                raise ValueError(f"cannot send {message!r}")
        return text.encode("latin-1")

    def _n(self, value: int, what: str, low: int = 0) -> str:
        return _port(value, what, low).zfill(self.pad)

    def _send_response(self, message: Message) -> bytes:
        match message:
            case TieReport(output, source, plane):
                line = (f"Out{self._n(output, 'output', 1)} In{self._n(source, 'input')} "
                        f"{Plane(plane).tag}")
            case TieAllReport(source, plane):
                line = f"In{self._n(source, 'input')} {Plane(plane).tag}"
            case Number(text):
                if not text.isdigit() or not text.isascii():
                    raise ValueError(f"a number is digits, not {text!r}")
                line = text
            case VerboseReport(mode):
                if mode not in (0, 1, 2, 3):
                    raise ValueError(f"verbose mode must be 0–3, not {mode!r}")
                line = f"Vrb{mode}"
            case QuickTieDone():
                line = "Qik"
            case PresetRecalled(preset):
                line = f"Rpr{_port(preset, 'preset', 0).zfill(2)}"
            case PresetSaved(preset):
                line = f"Spr{_port(preset, 'preset', 0).zfill(2)}"
            case NameReport(kind, number, text):
                line = (f"Nm{_port_letter(kind).lower()}{_port(number, 'port').zfill(2)},"
                        f"{_printable(text, 'name')}")
            case ErrorCode(code, detail):
                if not isinstance(code, int) or not 0 <= code <= 99:
                    raise ValueError(f"error code must be 0–99, not {code!r}")
                line = f"E{code:02d}" + (f":{_printable(detail, 'detail')}" if detail else "")
            case Firmware(text) | Information(text) | PartNumber(text) | Banner(text):
                line = _printable(text, type(message).__name__)
                if _classify(line) != message:
                    raise ValueError(f"{line!r} would not be read as {type(message).__name__}")
            case BulkReport(inputs, plane):
                if Plane(plane) not in (Plane.VIDEO, Plane.AUDIO) or not inputs:
                    raise ValueError("a bulk report has inputs and is VIDEO or AUDIO")
                fields = ["--" if i is None else self._n(i, "input") for i in inputs]
                line = " ".join(fields) + f" {Plane(plane).tag}"
            case TimeoutReport(scope, tens):
                if scope not in (0, 1) or not isinstance(tens, int) or not 0 <= tens <= 99999:
                    raise ValueError(f"bad timeout {scope!r}*{tens!r}")
                line = f"Pti{scope}*{tens}"
            case PasswordPrompt():
                self.awaiting_password = True
                return b"\r\nPassword:"
            case LoggedIn(administrator):
                return b"\r\nLogin " + (b"Administrator" if administrator else b"User") + b"\r\n"
            case Text(text):
                line = _printable(text, "text")
            case _:  # pragma: no cover - _DEVICE_SENDS lists every case above
                raise ValueError(f"cannot send {message!r}")
        data = line.encode("latin-1")
        if len(data) > MAX_LINE:
            raise ValueError(f"line of {len(data)} bytes is longer than {MAX_LINE}")
        return data + b"\r\n"


def _port_letter(kind: PortKind) -> str:
    return "I" if PortKind(kind) is PortKind.SOURCE else "O"


__all__ = [
    "DO", "DONT", "ERROR_CODES", "IAC", "INVALID_NAME_CHARACTERS", "MAX_COMMAND", "MAX_DIGITS",
    "MAX_LINE", "MAX_PORT", "SB", "SE", "TIE_COMMANDS", "WILL", "WONT", "Banner", "BulkReport",
    "ClearAllTies", "Codec", "ErrorCode", "Firmware", "Information", "LoggedIn", "Message",
    "NameReport", "Number", "PartNumber", "Password", "PasswordPrompt", "Plane",
    "PresetRecalled", "PresetSaved", "QueryFirmware", "QueryInformation", "QueryPartNumber",
    "QuickTie", "QuickTieDone", "ReadBulk", "ReadName", "ReadTie", "ReadTimeout",
    "ReadVerbose", "RecallPreset", "Role", "SavePreset", "SetName", "SetTimeout", "SetVerbose",
    "Telnet", "Text", "Tie", "TieAllReport", "TieReport", "TieToAll", "TimeoutReport",
    "VerboseReport", "describe_error", "validate_name",
]
