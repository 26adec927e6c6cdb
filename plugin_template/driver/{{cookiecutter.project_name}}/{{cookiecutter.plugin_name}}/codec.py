"""The {{cookiecutter.driver_name}} wire protocol, sans-I/O, for both ends of a connection.

This module is the protocol's specification; replace it with your device's protocol and
cite the vendor's document here. One :class:`Codec` serves the controller (the driver) and
the device (the emulator): bytes in with :meth:`Codec.receive_data`, parsed messages out
with :meth:`Codec.next_event` / :meth:`Codec.events`; messages in with :meth:`Codec.send`,
bytes out. No sockets, no asyncio, no clock: it is tested without a network.

Framing
    ASCII text lines ending in LF; a CR just before the LF is dropped (telnet). A line is
    at most :data:`MAX_LINE` bytes, LF included. Blank lines are ignored. Keywords are
    upper case; fields are separated by single or repeated spaces.

Fields
    Numbers are decimal and **1-based on the wire** (level 1 is the first level), at most
    :data:`MAX_NUMBER`. The messages below carry them **0-based**, as tieline does: the
    codec converts, so nothing else has to.

Controller -> device::

    XPT <level> <dst> <src>      set a crosspoint; the device answers TALLY (or ERROR)
    DUMP                         ask for the whole state; the device answers SIZE, one
                                 TALLY per crosspoint, then END
    PING                         the device answers PONG

Device -> controller::

    SIZE <levels> <sources> <destinations>   first line of the answer to DUMP
    TALLY <level> <dst> <src>    a crosspoint is set: after every change, to every
                                 controller (a change made at the frame's panel too), and
                                 to the requester alone for an XPT that changed nothing, so
                                 every XPT is confirmed
    END                          the answer to DUMP is complete
    PONG                         the answer to PING
    ERROR <level>|- <dst>|- <text>   a request was refused (``-``: not about one level or
                                 destination, e.g. a line the device could not parse)

Example (``>`` controller to device, ``<`` device to controller)::

    > DUMP
    < SIZE 1 2 2
    < TALLY 1 1 1
    < TALLY 1 2 2
    < END
    > XPT 1 2 1
    < TALLY 1 2 1
    > XPT 1 9 1
    < ERROR 1 9 destination 9 out of range (1-2)

Errors: bytes that break these rules raise :class:`tieline.RemoteProtocolError` and
nothing else. The offending line is consumed first (an over-long line is skipped up to its
LF), so the codec stays usable: the emulator answers ``ERROR - - syntax error`` once per
run of bad lines and carries on; the driver drops the connection and resyncs. Sending a message this role does not
send, or a number out of range, raises ``ValueError``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tieline import Crosspoint, LineFramer, RemoteProtocolError

#: Longest line, in bytes, LF included.
MAX_LINE = 128
#: Largest number on the wire (1-based).
MAX_NUMBER = 9999


class Role(enum.Enum):
    """Which end of the connection a codec is."""

    CONTROLLER = "controller"
    DEVICE = "device"


# -- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base class of every protocol message."""


@dataclass(frozen=True, slots=True)
class Xpt(Message):
    """``XPT``: controller -> device, set one crosspoint (0-based)."""

    crosspoint: Crosspoint


@dataclass(frozen=True, slots=True)
class Dump(Message):
    """``DUMP``: controller -> device, ask for the whole state."""


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """``PING``: controller -> device."""


@dataclass(frozen=True, slots=True)
class Size(Message):
    """``SIZE``: device -> controller, the router's size (first line of a dump)."""

    levels: int
    sources: int
    destinations: int


@dataclass(frozen=True, slots=True)
class Tally(Message):
    """``TALLY``: device -> controller, this crosspoint is set (0-based)."""

    crosspoint: Crosspoint


@dataclass(frozen=True, slots=True)
class End(Message):
    """``END``: device -> controller, the dump is complete."""


@dataclass(frozen=True, slots=True)
class Pong(Message):
    """``PONG``: device -> controller, the answer to PING."""


@dataclass(frozen=True, slots=True)
class Error(Message):
    """``ERROR``: device -> controller, a request was refused.

    :param level: the request's level (0-based), or None.
    :param destination: the request's destination (0-based), or None.
    :param text: the reason in words.
    """

    level: int | None
    destination: int | None
    text: str


_SENT_BY: dict[Role, frozenset[type[Message]]] = {
    Role.CONTROLLER: frozenset({Xpt, Dump, Ping}),
    Role.DEVICE: frozenset({Size, Tally, End, Pong, Error}),
}
_KEYWORDS: dict[type[Message], str] = {
    Xpt: "XPT", Dump: "DUMP", Ping: "PING", Size: "SIZE", Tally: "TALLY", End: "END",
    Pong: "PONG", Error: "ERROR",
}
_NUMBER = re.compile(r"[0-9]{1,4}")
_TEXT = re.compile(r"[\x20-\x7e]*")  # printable ASCII


# -- parsing ---------------------------------------------------------------------------------


def _number(token: str, what: str) -> int:
    """A 1-based wire number as a 0-based int."""
    if not _NUMBER.fullmatch(token) or int(token) == 0:
        raise RemoteProtocolError(f"{what} must be a number 1–{MAX_NUMBER}, not {token[:16]!r}")
    return int(token) - 1


def _count(token: str, what: str) -> int:
    """A size (kept as it is)."""
    return _number(token, what) + 1


def _fields(rest: str, keyword: str, count: int) -> list[str]:
    fields = rest.split()
    if len(fields) != count:
        raise RemoteProtocolError(f"{keyword} takes {count} field(s), got {len(fields)}")
    return fields


def _crosspoint(rest: str, keyword: str) -> Crosspoint:
    level, dst, src = _fields(rest, keyword, 3)
    return Crosspoint(_number(level, "level"), _number(dst, "destination"),
                      _number(src, "source"))


def _parse_error(rest: str) -> Message:
    fields = rest.split(None, 2)  # the text keeps its own spacing
    if len(fields) < 2:
        raise RemoteProtocolError("ERROR takes <level>|- <dst>|- <text>")
    level, dst = fields[:2]
    return Error(None if level == "-" else _number(level, "level"),
                 None if dst == "-" else _number(dst, "destination"),
                 fields[2] if len(fields) == 3 else "")


def _no_fields(message: Message) -> Callable[[str], Message]:
    def parse(rest: str) -> Message:
        if rest.strip():
            raise RemoteProtocolError(f"{_KEYWORDS[type(message)]} takes no fields")
        return message

    return parse


_PARSERS: dict[type[Message], Callable[[str], Message]] = {
    Xpt: lambda rest: Xpt(_crosspoint(rest, "XPT")),
    Tally: lambda rest: Tally(_crosspoint(rest, "TALLY")),
    Size: lambda rest: Size(*(_count(f, "size") for f in _fields(rest, "SIZE", 3))),
    Error: _parse_error,
    Dump: _no_fields(Dump()), Ping: _no_fields(Ping()), End: _no_fields(End()),
    Pong: _no_fields(Pong()),
}


# -- encoding --------------------------------------------------------------------------------


def _wire(value: int, what: str) -> str:
    """A 0-based int as a 1-based wire number."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_NUMBER:
        raise ValueError(f"{what} {value!r} is out of range (0–{MAX_NUMBER - 1}, 0-based)")
    return str(value + 1)


def _wire_crosspoint(xp: Crosspoint) -> str:
    return (f"{_wire(xp.level, 'level')} {_wire(xp.destination, 'destination')} "
            f"{_wire(xp.source, 'source')}")


class Codec:
    """One end of a {{cookiecutter.driver_name}} connection.

    :param role: which end this is: it decides what :meth:`send` accepts and what the peer
        may send.
    """

    def __init__(self, role: Role) -> None:
        self.role = role
        self._lines = LineFramer(MAX_LINE)  # tieline's bounded line splitter
        peer = Role.DEVICE if role is Role.CONTROLLER else Role.CONTROLLER
        self._parsers = {_KEYWORDS[m]: _PARSERS[m] for m in _SENT_BY[peer]}

    # -- receiving -------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; parse them with :meth:`next_event`."""
        self._lines.receive_data(data)

    def next_event(self) -> Message | None:
        """The next complete message from the peer, or None until more data arrives.

        :raises RemoteProtocolError: for a line that breaks the protocol. The line has been
            consumed (an over-long one is skipped up to its LF); the codec may be used
            further.
        """
        line = self._lines.next_line()  # without its CR LF; blank lines skipped
        return None if line is None else self._parse(line)

    def events(self) -> Iterator[Message]:
        """Every complete message received so far (stops at the first protocol error)."""
        while (event := self.next_event()) is not None:
            yield event

    def _parse(self, line: bytes) -> Message:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise RemoteProtocolError("line is not ASCII text", line[:32]) from None
        if not _TEXT.fullmatch(text):
            raise RemoteProtocolError("line contains a control character", line[:32])
        keyword, _, rest = text.lstrip(" ").partition(" ")
        parser = self._parsers.get(keyword)
        if parser is None:
            raise RemoteProtocolError(
                f"unknown message {keyword[:16]!r} (a {self.role.value} expects "
                f"{', '.join(sorted(self._parsers))})", line[:32])
        try:
            return parser(rest)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{keyword}: {exc}", line[:32]) from None

    # -- sending ---------------------------------------------------------------------------
    def send(self, message: Message) -> bytes:
        """The bytes that carry ``message``.

        :raises ValueError: when this role does not send ``message`` or a field is out of
            range.
        """
        if type(message) not in _SENT_BY[self.role]:
            raise ValueError(f"a {self.role.value} does not send {type(message).__name__}")
        match message:
            case Xpt(xp) | Tally(xp):
                line = f"{_KEYWORDS[type(message)]} {_wire_crosspoint(xp)}"
            case Size(levels, sources, destinations):
                counts = (_wire(n - 1, "size") for n in (levels, sources, destinations))
                line = "SIZE " + " ".join(counts)
            case Error(level, destination, text):
                if not _TEXT.fullmatch(text):
                    raise ValueError(f"error text {text!r} is not printable ASCII")
                line = (f"ERROR {'-' if level is None else _wire(level, 'level')} "
                        f"{'-' if destination is None else _wire(destination, 'destination')} "
                        f"{text}")
            case _:
                line = _KEYWORDS[type(message)]
        data = line.encode("ascii")[: MAX_LINE - 1] + b"\n"
        return data


__all__ = [
    "MAX_LINE", "MAX_NUMBER", "Codec", "Dump", "End", "Error", "Message", "Ping", "Pong",
    "Role", "Size", "Tally", "Xpt",
]
