"""The {{cookiecutter.api_name}} line protocol, sans-I/O, for both ends of a connection.

This module is the protocol's specification: a small ASCII line-control protocol of the kind
control systems speak (Crestron, AMX, Q-SYS, Bitfocus Companion modules), one request per
line, one reply per request, and an unprompted ``TALLY`` line whenever a crosspoint changes.
Change it to the protocol your control system expects, and keep this docstring its spec.
One :class:`Codec` serves the server (:mod:`.server`) and a client (the tests, or your own
tools): bytes in with :meth:`Codec.receive_data`, parsed messages out with
:meth:`Codec.next_event` / :meth:`Codec.events`; messages in with :meth:`Codec.send`, bytes
out. No sockets, no asyncio, no clock: it is tested without a network.

Framing
    ASCII text lines ending in LF; a CR just before the LF is dropped (telnet, and control
    systems that end lines with CR LF). A line is at most :data:`MAX_LINE` bytes, LF
    included; a longer one is refused and skipped up to its LF. Blank lines are ignored.
    Keywords are sent upper case and accepted in any case; fields are separated by one or
    more spaces.

Fields
    ``<router>``: a router's id as the settings name it (letters, digits, ``.``, ``_``,
    ``-``; never a space). ``<dst>``, ``<src>``, ``<level>``: **1-based** numbers, as people
    see them (level 1 is the first of the router's ``levels`` in tieline.json), at most
    :data:`MAX_NUMBER`. The messages below carry them **0-based**, as tieline does: the codec
    converts, so nothing else has to. ``<levels>``: one or more levels, comma-separated
    without spaces (``1`` or ``1,2``).

Client -> server (each request gets exactly one reply, in the order the requests came)::

    PING                                   PONG
    ROUTE <router> <dst> <src> [<levels>]  OK once the router's tally confirmed the route
                                           (on every level when <levels> is left out), or
                                           ERROR
    TALLY? <router>                        one TALLY per known crosspoint, then END; or ERROR
    LEVELS? <router>                       one LEVEL per level, then END; or ERROR

Server -> client::

    PONG                                   the answer to PING
    OK ROUTE <router> <dst> <src> [<levels>]   the route is made; the request, echoed
    ERROR <code> <text>                    a request was refused. <code> is tieline's error
                                           code: invalid (the line did not parse),
                                           not_found, out_of_range, forbidden (permission
                                           level too low), protected, refused, offline,
                                           timeout, standby; <text> says why and names the
                                           field at fault
    TALLY <router> <level> <dst> <src>     a crosspoint: in the answer to TALLY?, and
                                           unprompted after every change, made anywhere
    LEVEL <router> <level> <name>          a level's name (the rest of the line; may hold
                                           spaces)
    END                                    the answer to TALLY? or LEVELS? is complete

Unprompted ``TALLY`` lines come between replies, never inside one, and may come before or
after the ``OK`` of the route that caused them. A route that was made already changes
nothing: it gets its ``OK`` and no ``TALLY``.

Example (``>`` client to server, ``<`` server to client)::

    > ROUTE studio 2 5
    < TALLY studio 1 2 5
    < TALLY studio 2 2 5
    < OK ROUTE studio 2 5
    > ROUTE studio 9 1 1
    < ERROR out_of_range router 'studio': destination 9 out of range (1-8)
    > route studio x 1
    < ERROR invalid ROUTE: <dst> must be a number 1-65535, not 'x'
    > TALLY? studio
    < TALLY studio 1 1 1
    < ...
    < END

Errors: bytes that break these rules raise :class:`tieline.RemoteProtocolError` and nothing
else. The offending line is consumed first (an over-long line is skipped up to its LF), so
the codec stays usable: the server answers ``ERROR invalid <reason>`` and carries on. Sending
a message this role does not send, or a field out of range, raises ``ValueError``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from tieline import Crosspoint, LineFramer, RemoteProtocolError

#: Longest line, in bytes, LF included.
MAX_LINE = 1024
#: Largest number on the wire (1-based).
MAX_NUMBER = 65535


class Role(enum.Enum):
    """Which end of the connection a codec is."""

    CLIENT = "client"
    SERVER = "server"


# -- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base class of every protocol message."""


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """``PING``: client -> server."""


@dataclass(frozen=True, slots=True)
class Route(Message):
    """``ROUTE``: client -> server, route ``source`` to ``destination`` (0-based).

    :param levels: 0-based level numbers; empty for every level.
    """

    router: str
    destination: int
    source: int
    levels: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TallyQuery(Message):
    """``TALLY?``: client -> server, ask for every known crosspoint of ``router``."""

    router: str


@dataclass(frozen=True, slots=True)
class LevelsQuery(Message):
    """``LEVELS?``: client -> server, ask for the names of ``router``'s levels."""

    router: str


@dataclass(frozen=True, slots=True)
class Pong(Message):
    """``PONG``: server -> client, the answer to PING."""


@dataclass(frozen=True, slots=True)
class Ok(Message):
    """``OK ROUTE``: server -> client, ``request`` is made (confirmed by the router)."""

    request: Route


@dataclass(frozen=True, slots=True)
class Error(Message):
    """``ERROR``: server -> client, a request was refused.

    :param code: tieline's error code (:attr:`tieline.RequestError.code`), e.g. ``protected``.
    :param text: the reason in words (printable ASCII; the server replaces anything else).
    """

    code: str
    text: str


@dataclass(frozen=True, slots=True)
class Tally(Message):
    """``TALLY``: server -> client, ``crosspoint`` (0-based) of ``router`` is set."""

    router: str
    crosspoint: Crosspoint


@dataclass(frozen=True, slots=True)
class Level(Message):
    """``LEVEL``: server -> client, the name of ``router``'s level ``level`` (0-based)."""

    router: str
    level: int
    name: str


@dataclass(frozen=True, slots=True)
class End(Message):
    """``END``: server -> client, the answer to TALLY? or LEVELS? is complete."""


_SENT_BY: dict[Role, frozenset[type[Message]]] = {
    Role.CLIENT: frozenset({Ping, Route, TallyQuery, LevelsQuery}),
    Role.SERVER: frozenset({Pong, Ok, Error, Tally, Level, End}),
}
_KEYWORDS: dict[type[Message], str] = {
    Ping: "PING", Route: "ROUTE", TallyQuery: "TALLY?", LevelsQuery: "LEVELS?", Pong: "PONG",
    Ok: "OK", Error: "ERROR", Tally: "TALLY", Level: "LEVEL", End: "END",
}
_NUMBER = re.compile(r"[0-9]{1,5}")
_ROUTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # as tieline.json's router ids
_CODE = re.compile(r"[a-z][a-z_]{0,31}")
_TEXT = re.compile(r"[\x20-\x7e]*")  # printable ASCII
_ASCII = str.maketrans({"–": "-", "—": "-", "…": "...", "←": "<-", "→": "->", "‘": "'",
                        "’": "'", "“": '"', "”": '"'})


def ascii_text(text: str) -> str:
    """``text`` as printable ASCII: dashes and arrows spelt out, anything else ``?``."""
    text = text.translate(_ASCII).encode("ascii", "replace").decode("ascii")
    return re.sub(r"[^\x20-\x7e]", " ", text)


# -- parsing ---------------------------------------------------------------------------------


def _number(token: str, what: str) -> int:
    """A 1-based wire number as a 0-based int."""
    if not _NUMBER.fullmatch(token) or not 1 <= int(token) <= MAX_NUMBER:
        raise RemoteProtocolError(f"<{what}> must be a number 1-{MAX_NUMBER}, not {token[:16]!r}")
    return int(token) - 1


def _router(token: str) -> str:
    if not _ROUTER.fullmatch(token):
        raise RemoteProtocolError(f"<router> must be a router id (letters, digits, '.', '_', "
                                  f"'-'), not {token[:16]!r}")
    return token


def _levels(token: str) -> tuple[int, ...]:
    levels = tuple(_number(part, "levels") for part in token.split(","))
    if len(set(levels)) != len(levels):
        raise RemoteProtocolError(f"<levels> names a level twice: {token[:32]!r}")
    return levels


def _fields(rest: str, keyword: str, usage: str, low: int, high: int) -> list[str]:
    fields = rest.split()
    if not low <= len(fields) <= high:
        raise RemoteProtocolError(f"expected {keyword} {usage}, got {len(fields)} field(s)")
    return fields


def _route(rest: str, keyword: str = "ROUTE") -> Route:
    fields = _fields(rest, keyword, "<router> <dst> <src> [<levels>]", 3, 4)
    return Route(_router(fields[0]), _number(fields[1], "dst"), _number(fields[2], "src"),
                 _levels(fields[3]) if len(fields) == 4 else ())


def _tally(rest: str) -> Tally:
    router, level, dst, src = _fields(rest, "TALLY", "<router> <level> <dst> <src>", 4, 4)
    return Tally(_router(router), Crosspoint(_number(level, "level"), _number(dst, "dst"),
                                             _number(src, "src")))


def _level(rest: str) -> Level:
    fields = rest.split(None, 2)
    if len(fields) != 3:
        raise RemoteProtocolError("expected LEVEL <router> <level> <name>")
    return Level(_router(fields[0]), _number(fields[1], "level"), fields[2].strip())


def _error(rest: str) -> Error:
    code, _, text = rest.strip().partition(" ")
    if not _CODE.fullmatch(code):
        raise RemoteProtocolError(f"<code> must be a lower-case error code, not {code[:16]!r}")
    return Error(code, text.strip())


def _ok(rest: str) -> Ok:
    verb, _, more = rest.strip().partition(" ")
    if verb.upper() != "ROUTE":
        raise RemoteProtocolError(f"expected OK ROUTE ..., not OK {verb[:16]!r}")
    return Ok(_route(more, "OK ROUTE"))


def _bare(message: Message) -> Callable[[str], Message]:
    def parse(rest: str) -> Message:
        if rest.strip():
            raise RemoteProtocolError(f"expected {_KEYWORDS[type(message)]} alone")
        return message

    return parse


def _query(cls: type[TallyQuery] | type[LevelsQuery]) -> Callable[[str], Message]:
    return lambda rest: cls(_router(_fields(rest, _KEYWORDS[cls], "<router>", 1, 1)[0]))


_PARSERS: dict[type[Message], Callable[[str], Message]] = {
    Ping: _bare(Ping()), Route: _route, TallyQuery: _query(TallyQuery),
    LevelsQuery: _query(LevelsQuery), Pong: _bare(Pong()), Ok: _ok, Error: _error,
    Tally: _tally, Level: _level, End: _bare(End()),
}


# -- encoding --------------------------------------------------------------------------------


def _wire(value: int, what: str) -> str:
    """A 0-based int as a 1-based wire number."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_NUMBER:
        raise ValueError(f"{what} {value!r} is out of range (0-{MAX_NUMBER - 1}, 0-based)")
    return str(value + 1)


def _wire_router(router: str) -> str:
    if not isinstance(router, str) or not _ROUTER.fullmatch(router):
        raise ValueError(f"router id {router!r} cannot be sent (letters, digits, '.', '_', '-')")
    return router


def _wire_route(route: Route) -> str:
    line = (f"{_wire_router(route.router)} {_wire(route.destination, 'destination')} "
            f"{_wire(route.source, 'source')}")
    if route.levels:
        line += " " + ",".join(_wire(level, "level") for level in route.levels)
    return line


class Codec:
    """One end of a {{cookiecutter.api_name}} connection.

    :param role: which end this is: it decides what :meth:`send` accepts and what the peer
        may send.
    """

    def __init__(self, role: Role) -> None:
        self.role = role
        self._lines = LineFramer(MAX_LINE)  # tieline's bounded line splitter
        peer = Role.SERVER if role is Role.CLIENT else Role.CLIENT
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
        keyword, _, rest = text.strip(" ").partition(" ")
        keyword = keyword.upper()
        parser = self._parsers.get(keyword)
        if parser is None:
            raise RemoteProtocolError(
                f"unknown keyword {keyword[:16]!r}; expected one of "
                f"{', '.join(sorted(self._parsers))}", line[:32])
        try:
            return parser(rest)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{keyword}: {exc}", line[:32]) from None

    # -- sending ---------------------------------------------------------------------------
    def send(self, message: Message) -> bytes:
        """The bytes that carry ``message``.

        :raises ValueError: when this role does not send ``message`` or a field is out of
            range or cannot be sent.
        """
        if type(message) not in _SENT_BY[self.role]:
            raise ValueError(f"a {self.role.value} does not send {type(message).__name__}")
        match message:
            case Route():
                line = f"ROUTE {_wire_route(message)}"
            case Ok(request):
                line = f"OK ROUTE {_wire_route(request)}"
            case TallyQuery(router) | LevelsQuery(router):
                line = f"{_KEYWORDS[type(message)]} {_wire_router(router)}"
            case Tally(router, xp):
                line = (f"TALLY {_wire_router(router)} {_wire(xp.level, 'level')} "
                        f"{_wire(xp.destination, 'destination')} {_wire(xp.source, 'source')}")
            case Level(router, level, name):
                line = f"LEVEL {_wire_router(router)} {_wire(level, 'level')} {ascii_text(name)}"
            case Error(code, text):
                if not _CODE.fullmatch(code):
                    raise ValueError(f"error code {code!r} is not a lower-case word")
                line = f"ERROR {code} {ascii_text(text)}".rstrip()
            case _:
                line = _KEYWORDS[type(message)]
        data = line.encode("ascii")
        if len(data) >= MAX_LINE:
            if not isinstance(message, (Error, Level)):
                raise ValueError(f"{type(message).__name__} is longer than {MAX_LINE} bytes")
            data = data[: MAX_LINE - 1]  # free text is cut, never a field
        return data + b"\n"

    def send_all(self, messages: Iterable[Message]) -> bytes:
        """The bytes that carry ``messages``, in order."""
        return b"".join(map(self.send, messages))


__all__ = [
    "MAX_LINE", "MAX_NUMBER", "Codec", "End", "Error", "Level", "LevelsQuery", "Message",
    "Ok", "Ping", "Pong", "Role", "Route", "Tally", "TallyQuery", "ascii_text",
]
