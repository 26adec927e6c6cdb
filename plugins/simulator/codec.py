"""The simulator's wire protocol: a small text line protocol, sans-I/O, for both roles.

This module is the protocol's specification (the simulator is tieline's own device, so
there is no vendor document). The same :class:`Codec` serves the controller (the driver)
and the device (the emulator): bytes in with :meth:`Codec.receive_data`, parsed messages
out with :meth:`Codec.next_event` / :meth:`Codec.events`; messages in with
:meth:`Codec.send`, bytes out. No sockets, no asyncio, no clock.

Framing
    UTF-8 text lines ending in LF; a CR just before the LF is dropped (telnet). A line is
    at most :data:`MAX_LINE` bytes, LF included. Blank lines are ignored. Keywords are
    upper case; fields are separated by spaces (runs of spaces are accepted except inside
    a label's text). Control characters other than TAB are not allowed anywhere.

Fields
    * numbers are decimal, 0-based, at most 9 digits: ``level``, ``dest``, ``src``, ``index``;
    * ``owner`` is percent-encoded UTF-8 (RFC 3986 style: ``%20`` for a space) so it is one
      field whatever it contains; a lone ``-`` means "no owner" where that is allowed;
    * ``text`` (labels, errors) is the rest of the line, spaces included, possibly empty;
    * ``kind`` is ``protect`` (only the owner may route) or ``lock`` (nobody may route until
      the owner releases it, or someone releases it with force);
    * ``S`` / ``D`` name sources and destinations in labels.

Controller -> device::

    HELLO <version>                       say hello; the device answers HELLO <version>
    DUMP                                  ask for the whole state (answer below)
    ROUTE <owner> <level> <dest> <src> [<level> <dest> <src> ...]
                                          set crosspoints; one line may carry many, and
                                          a salvo is many lines sent without waiting
    PROTECT <level> <dest> <kind> <owner> protect or lock a destination
    RELEASE <level> <dest> <owner> 0|1    release it; 1 = force (someone else's)
    LABEL S|D <index> <text>              set a port's label
    PING                                  the device answers PONG

Device -> controller::

    HELLO <version>                       the answer to HELLO
    INFO <levels> <sources> <destinations>  first line of the answer to DUMP, followed by
    LABEL S|D <index> <text>              every label,
    XP <level> <dest> <src> [...]         every crosspoint,
    PROTECT <level> <dest> <kind> <owner> every protect and lock,
    END                                   and this line: the state has been sent in full
    XP <level> <dest> <src> [...]         after every change, to every controller; to the
                                          requester alone for crosspoints it asked for that
                                          were already set (so every ROUTE is confirmed)
    PROTECT <level> <dest> <kind> <owner> after a protect (to the requester alone if
    UNPROTECT <level> <dest>              nothing changed), and after a release
    LABEL S|D <index> <text>              after a label change (likewise)
    PONG                                  the answer to PING
    ERR <code> <level>|- <dest>|- <owner>|- <text>
                                          a request was refused; ``owner`` is the holder of
                                          the protect that refused it. Codes: ``protected``,
                                          ``locked``, ``not_owner`` (a release without
                                          force), ``range`` (a number outside the router),
                                          ``syntax`` (a line the device could not parse;
                                          once per run of such lines)

Errors: bytes that do not follow these rules raise :class:`~tieline.errors.RemoteProtocolError`
and nothing else. The offending line is consumed first (an over-long line is skipped up to
its LF), so a codec stays usable after the error: the emulator answers ``ERR syntax`` and
carries on, the driver drops the connection and resyncs. Sending a message the role does not
send, or one that cannot be framed (a control character in a label, an empty owner), raises
``ValueError``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from tieline import Crosspoint, LineFramer, PortKind, ProtectKind, RemoteProtocolError

#: The protocol version both sides send in HELLO.
PROTOCOL_VERSION = 1
#: Longest line, in bytes, LF included.
MAX_LINE = 4096
#: Largest number a field may carry (9 digits).
MAX_NUMBER = 999_999_999


class Role(enum.Enum):
    """Which end of the connection a codec is."""

    CONTROLLER = "controller"
    DEVICE = "device"


# -------------------------------------------------------------------------------------------
# Messages: each is sent by one role (or both) and parsed by the other.
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base class of every protocol message."""


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """``HELLO``: both ends, controller first. :param version: protocol version."""

    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Dump(Message):
    """``DUMP``: controller -> device, ask for the whole state."""


@dataclass(frozen=True, slots=True)
class Info(Message):
    """``INFO``: device -> controller, the router's size (first line of a dump)."""

    levels: int
    sources: int
    destinations: int


@dataclass(frozen=True, slots=True)
class End(Message):
    """``END``: device -> controller, the dump is complete."""


@dataclass(frozen=True, slots=True)
class Route(Message):
    """``ROUTE``: controller -> device, set crosspoints on behalf of ``owner``."""

    owner: str
    crosspoints: tuple[Crosspoint, ...]


@dataclass(frozen=True, slots=True)
class Tally(Message):
    """``XP``: device -> controller, these crosspoints are set (changed or confirmed)."""

    crosspoints: tuple[Crosspoint, ...]


@dataclass(frozen=True, slots=True)
class SetProtect(Message):
    """``PROTECT``: from a controller a request, from the device a report (it now holds)."""

    level: int
    destination: int
    kind: ProtectKind
    owner: str


@dataclass(frozen=True, slots=True)
class Unprotect(Message):
    """``UNPROTECT``: device -> controller, the destination is free."""

    level: int
    destination: int


@dataclass(frozen=True, slots=True)
class Release(Message):
    """``RELEASE``: controller -> device; ``force`` releases someone else's protect."""

    level: int
    destination: int
    owner: str
    force: bool = False


@dataclass(frozen=True, slots=True)
class Label(Message):
    """``LABEL``: from a controller a request, from the device a report."""

    kind: PortKind
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """``PING``: controller -> device."""


@dataclass(frozen=True, slots=True)
class Pong(Message):
    """``PONG``: device -> controller, the answer to PING."""


@dataclass(frozen=True, slots=True)
class ErrorReply(Message):
    """``ERR``: device -> controller, a request was refused.

    :param code: ``protected``, ``locked``, ``not_owner``, ``range`` or ``syntax``.
    :param level: the request's level, or None.
    :param destination: the request's destination, or None.
    :param owner: the holder of the protect that refused it, or None.
    :param text: the reason in words.
    """

    code: str
    level: int | None
    destination: int | None
    owner: str | None
    text: str


#: Error codes whose ``owner`` names the holder of a protect.
OWNER_CODES = frozenset({"protected", "locked", "not_owner"})

_SENT_BY: dict[Role, frozenset[type[Message]]] = {
    Role.CONTROLLER: frozenset({Hello, Dump, Route, SetProtect, Release, Label, Ping}),
    Role.DEVICE: frozenset({Hello, Info, End, Tally, SetProtect, Unprotect, Label, Pong,
                            ErrorReply}),
}
_KEYWORDS: dict[type[Message], str] = {
    Hello: "HELLO", Dump: "DUMP", Info: "INFO", End: "END", Route: "ROUTE", Tally: "XP",
    SetProtect: "PROTECT", Unprotect: "UNPROTECT", Release: "RELEASE", Label: "LABEL",
    Ping: "PING", Pong: "PONG", ErrorReply: "ERR",
}
_PORT_LETTER = {PortKind.SOURCE: "S", PortKind.DESTINATION: "D"}

_NUMBER = re.compile(r"[0-9]{1,9}")
_OWNER = re.compile(r"(?:[!-$&-~]|%[0-9A-Fa-f]{2})+")
_CODE = re.compile(r"[a-z_]{1,32}")
_LABEL_ARGS = re.compile(r" *([SD]) +([0-9]{1,9})(?: (.*))?", re.DOTALL)
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


# -------------------------------------------------------------------------------------------
# Parsing one line (the peer's messages).
# -------------------------------------------------------------------------------------------


def _number(token: str, what: str) -> int:
    if not _NUMBER.fullmatch(token):
        raise RemoteProtocolError(f"{what} must be a number 0–{MAX_NUMBER}, not {token!r}")
    return int(token)


def _optional_number(token: str, what: str) -> int | None:
    return None if token == "-" else _number(token, what)


def _owner(token: str) -> str:
    if not _OWNER.fullmatch(token) or token == "-":
        raise RemoteProtocolError(f"owner must be a percent-encoded name, not {token!r}")
    try:
        return unquote_to_bytes(token).decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"owner {token!r} is not percent-encoded UTF-8") from None


def _split(rest: str) -> list[str]:
    return [field for field in rest.split(" ") if field]


def _fields(rest: str, keyword: str, count: int) -> list[str]:
    fields = _split(rest)
    if len(fields) != count:
        raise RemoteProtocolError(f"{keyword} takes {count} field(s), got {len(fields)}")
    return fields


#: the common case of a triples line, read at once: single spaces, numbers only
_PLAIN_TRIPLES = re.compile(r"[0-9]{1,9}(?: [0-9]{1,9})*")


def _triples(fields: list[str], keyword: str) -> tuple[Crosspoint, ...]:
    if not fields or len(fields) % 3:
        raise RemoteProtocolError(
            f"{keyword} takes one or more <level> <dest> <src> triples, got {len(fields)} field(s)"
        )
    numbers = [_number(f, "crosspoint field") for f in fields]
    return tuple(
        Crosspoint(numbers[i], numbers[i + 1], numbers[i + 2]) for i in range(0, len(numbers), 3)
    )


def _parse_hello(rest: str) -> Message:
    (version,) = _fields(rest, "HELLO", 1)
    return Hello(_number(version, "version"))


def _parse_info(rest: str) -> Message:
    levels, sources, destinations = _fields(rest, "INFO", 3)
    return Info(_number(levels, "levels"), _number(sources, "sources"),
                _number(destinations, "destinations"))


def _parse_route(rest: str) -> Message:
    fields = _split(rest)
    if not fields:
        raise RemoteProtocolError("ROUTE needs an owner and crosspoints")
    return Route(_owner(fields[0]), _triples(fields[1:], "ROUTE"))


def _parse_tally(rest: str) -> Message:
    if _PLAIN_TRIPLES.fullmatch(rest):  # what a device sends: no need to look twice
        numbers = list(map(int, rest.split(" ")))
        if numbers and not len(numbers) % 3:
            return Tally(tuple(Crosspoint(numbers[i], numbers[i + 1], numbers[i + 2])
                               for i in range(0, len(numbers), 3)))
    return Tally(_triples(_split(rest), "XP"))


def _parse_protect(rest: str) -> Message:
    level, dest, kind, owner = _fields(rest, "PROTECT", 4)
    try:
        protect_kind = ProtectKind(kind)
    except ValueError:
        raise RemoteProtocolError(f"protect kind must be protect or lock, not {kind!r}") from None
    return SetProtect(_number(level, "level"), _number(dest, "destination"), protect_kind,
                      _owner(owner))


def _parse_unprotect(rest: str) -> Message:
    level, dest = _fields(rest, "UNPROTECT", 2)
    return Unprotect(_number(level, "level"), _number(dest, "destination"))


def _parse_release(rest: str) -> Message:
    level, dest, owner, force = _fields(rest, "RELEASE", 4)
    if force not in ("0", "1"):
        raise RemoteProtocolError(f"RELEASE force must be 0 or 1, not {force!r}")
    return Release(_number(level, "level"), _number(dest, "destination"), _owner(owner),
                   force == "1")


def _parse_label(rest: str) -> Message:
    match = _LABEL_ARGS.fullmatch(rest)
    if match is None:
        raise RemoteProtocolError("LABEL takes S|D <index> <text>")
    kind = PortKind.SOURCE if match[1] == "S" else PortKind.DESTINATION
    return Label(kind, int(match[2]), match[3] or "")


def _parse_error(rest: str) -> Message:
    fields = rest.split(" ", 4)
    if len(fields) < 4:
        raise RemoteProtocolError("ERR takes <code> <level> <dest> <owner> <text>")
    code, level, dest, owner = fields[:4]
    if not _CODE.fullmatch(code):
        raise RemoteProtocolError(f"ERR code must be a lower-case word, not {code!r}")
    return ErrorReply(
        code, _optional_number(level, "level"), _optional_number(dest, "destination"),
        None if owner == "-" else _owner(owner), fields[4] if len(fields) == 5 else "",
    )


def _no_fields(message: Message) -> Callable[[str], Message]:
    def parse(rest: str) -> Message:
        if rest.strip(" "):
            raise RemoteProtocolError(f"{_KEYWORDS[type(message)]} takes no fields")
        return message

    return parse


_PARSERS: dict[type[Message], Callable[[str], Message]] = {
    Hello: _parse_hello, Dump: _no_fields(Dump()), Info: _parse_info, End: _no_fields(End()),
    Route: _parse_route, Tally: _parse_tally, SetProtect: _parse_protect,
    Unprotect: _parse_unprotect, Release: _parse_release, Label: _parse_label,
    Ping: _no_fields(Ping()), Pong: _no_fields(Pong()), ErrorReply: _parse_error,
}


# -------------------------------------------------------------------------------------------
# Encoding (our own messages).
# -------------------------------------------------------------------------------------------


def _enc_number(value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NUMBER:
        raise ValueError(f"{value!r} is not a number 0–{MAX_NUMBER}")
    return str(value)


def _enc_owner(owner: str) -> str:
    if not owner:
        raise ValueError("an owner may not be empty")
    token = quote(owner, safe="")
    return "%2D" if token == "-" else token


def _enc_text(text: str) -> str:
    if _FORBIDDEN.search(text):
        raise ValueError(f"text {text!r} contains a control character")
    return text


def _enc_optional(value: int | None) -> str:
    return "-" if value is None else _enc_number(value)


class Codec:
    """One end of a simulator protocol connection.

    :param role: which end this is; it decides what :meth:`send` accepts and what the peer
        may send.
    :param max_line: the longest line accepted and produced, LF included.
    """

    def __init__(self, role: Role, *, max_line: int = MAX_LINE) -> None:
        self.role = role
        self.max_line = max_line
        self._lines = LineFramer(max_line, head=64)
        peer = Role.DEVICE if role is Role.CONTROLLER else Role.CONTROLLER
        self._parsers = {_KEYWORDS[m]: _PARSERS[m] for m in _SENT_BY[peer]}
        self._ours = {_KEYWORDS[m] for m in _SENT_BY[role]} - set(self._parsers)

    # -- receiving ---------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; parse them with :meth:`next_event`."""
        self._lines.receive_data(data)

    def next_event(self) -> Message | None:
        """The next complete message from the peer, or None until more data arrives.

        :raises RemoteProtocolError: for a line that breaks the protocol. The line has been
            consumed; the codec may be used further.
        """
        line = self._lines.next_line()
        return None if line is None else self._parse(line)

    def events(self) -> Iterator[Message]:
        """Every complete message received so far (stops at the first protocol error)."""
        while (event := self.next_event()) is not None:
            yield event

    def _parse(self, line: bytes) -> Message:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("line is not valid UTF-8", line[:64]) from None
        if _FORBIDDEN.search(text):
            raise RemoteProtocolError("line contains a control character", line[:64])
        keyword, _, rest = text.lstrip(" ").partition(" ")
        parser = self._parsers.get(keyword)
        if parser is None:
            if keyword in self._ours:
                peer = "device" if self.role is Role.CONTROLLER else "controller"
                raise RemoteProtocolError(f"a {peer} does not send {keyword}", line[:64])
            raise RemoteProtocolError(f"unknown message {keyword[:32]!r}", line[:64])
        try:
            return parser(rest)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{keyword}: {exc}", line[:64]) from None

    # -- sending -----------------------------------------------------------------------
    def send(self, message: Message) -> bytes:
        """The bytes that carry ``message`` (several lines for a long ROUTE or XP).

        :raises ValueError: when this role does not send ``message`` or it cannot be framed.
        """
        if type(message) not in _SENT_BY[self.role]:
            raise ValueError(f"a {self.role.value} does not send {type(message).__name__}")
        match message:
            case Route(owner, crosspoints):
                return self._triple_lines(f"ROUTE {_enc_owner(owner)}", crosspoints)
            case Tally(crosspoints):
                return self._triple_lines("XP", crosspoints)
            case Hello(version):
                line = f"HELLO {_enc_number(version)}"
            case Info(levels, sources, destinations):
                line = (f"INFO {_enc_number(levels)} {_enc_number(sources)} "
                        f"{_enc_number(destinations)}")
            case SetProtect(level, destination, kind, owner):
                line = (f"PROTECT {_enc_number(level)} {_enc_number(destination)} "
                        f"{ProtectKind(kind).value} {_enc_owner(owner)}")
            case Unprotect(level, destination):
                line = f"UNPROTECT {_enc_number(level)} {_enc_number(destination)}"
            case Release(level, destination, owner, force):
                line = (f"RELEASE {_enc_number(level)} {_enc_number(destination)} "
                        f"{_enc_owner(owner)} {1 if force else 0}")
            case Label(kind, index, text):
                letter = _PORT_LETTER[PortKind(kind)]
                line = f"LABEL {letter} {_enc_number(index)} {_enc_text(text)}"
            case ErrorReply(code, level, destination, owner, text):
                if not _CODE.fullmatch(code):
                    raise ValueError(f"error code {code!r} must be a lower-case word")
                line = (f"ERR {code} {_enc_optional(level)} {_enc_optional(destination)} "
                        f"{'-' if owner is None else _enc_owner(owner)} {_enc_text(text)}")
            case _:
                line = _KEYWORDS[type(message)]
        return self._frame(line)

    def _frame(self, line: str) -> bytes:
        data = line.encode("utf-8") + b"\n"
        if len(data) > self.max_line:
            raise ValueError(f"line of {len(data)} bytes is longer than {self.max_line}")
        return data

    def _triple_lines(self, head: str, crosspoints: tuple[Crosspoint, ...]) -> bytes:
        """``head`` followed by as many triples as fit, repeated until all are sent."""
        lines: list[str] = []
        parts: list[str] = []
        room = self.max_line - 1 - len(head)
        if room < 3 * 10:
            raise ValueError(f"{head[:40]!r} leaves no room for a crosspoint in one line")
        for xp in crosspoints:
            level, destination, source = xp.level, xp.destination, xp.source
            if type(level) is type(destination) is type(source) is int and 0 <= level <= \
                    MAX_NUMBER and 0 <= destination <= MAX_NUMBER and 0 <= source <= MAX_NUMBER:
                triple = f" {level} {destination} {source}"
            else:  # says which one is wrong
                triple = f" {_enc_number(level)} {_enc_number(destination)} {_enc_number(source)}"
            if len(triple) > room:
                lines.append(head + "".join(parts))
                parts.clear()
                room = self.max_line - 1 - len(head)
            parts.append(triple)
            room -= len(triple)
        if parts:
            lines.append(head + "".join(parts))
        return "".join(line + "\n" for line in lines).encode("utf-8")


__all__ = [
    "MAX_LINE", "MAX_NUMBER", "OWNER_CODES", "PROTOCOL_VERSION", "Codec", "Dump", "End",
    "ErrorReply", "Hello", "Info", "Label", "Message", "Ping", "Pong", "Release", "Role",
    "Route", "SetProtect", "Tally", "Unprotect",
]
