"""The Blackmagic Videohub Ethernet Protocol, sans-I/O, for both roles.

References, cited next to each rule below:

* **[VH §n]**: tieline's protocol notes, ``shared/protocols/videohub.md``, section *n*;
* **[BMD]**: Blackmagic Design, *Videohub Developer Information* ("Videohub Ethernet
  Protocol", protocol text v2.3 and the later manual editions the notes quote).

The same :class:`Codec` serves the controller (tieline's driver; any Videohub client) and
the device (tieline's emulator; the Videohub TCP API server): bytes in with
:meth:`Codec.receive_data`, parsed blocks out with :meth:`Codec.next_event` /
:meth:`Codec.events`; blocks in with :meth:`Codec.send`, bytes out. No sockets, no asyncio,
no clock. :func:`prelude` puts a device's blocks in the order real devices send their
status dump [VH §3.2].

Framing [VH §2, BMD]
    Everything is a *block*: a header line and body lines, ended by an empty line. A header
    is upper-case words and a colon (``VIDEO OUTPUT ROUTING:``); ``ACK`` and ``NAK`` are the
    only headers without a colon and have no body. Lines end in LF; a CR before the LF is
    dropped, and so is whitespace at the start of a line (videohubctrl's tolerance, [VH §2]).
    Empty lines between blocks are skipped. A line is at most :data:`MAX_LINE` bytes and a
    block at most :data:`MAX_BLOCK` bytes. Control characters other than TAB are not
    allowed. Text is UTF-8 (not specified by Blackmagic [VH §1]); a line that is not valid
    UTF-8 is read as Latin-1 so that a device with old labels stays usable.

Bodies [VH §2, §4]
    *Indexed* lines ``<index> <value>``: the index is a decimal number, 0-based; only the
    first token is the index, the rest of the line (spaces included, possibly empty) is the
    value. *Key/value* lines ``<key>: <value>`` (``PROTOCOL PREAMBLE``, ``VIDEOHUB DEVICE``,
    ``CONFIGURATION``, ``ALARM STATUS``, ``NETWORK``, ``NETWORK INTERFACE <n>``).

    A peer MUST ignore blocks it does not recognise and lines it does not recognise inside
    known blocks [VH §2]: unknown blocks come out as :class:`UnknownBlock`, and lines of a
    known block that do not parse are kept in the block's ``unparsed`` field (the device
    role answers such a request with ``NAK`` [VH §7]; the controller role applies the
    rest).

Roles [VH §5]
    A header with no body from a controller asks for that block in full (``PING:`` asks for
    nothing and is answered ``ACK`` [VH §8]): the device role parses it as
    :class:`StatusRequest` or :class:`Ping`. From a device, the same form is a block with no
    items (``END PRELUDE:`` [VH §3.3], or an empty table). ``ACK``/``NAK`` only come from
    the device.

Errors: bytes that break the framing (a block that does not start with a header, a control
character, an over-long line or block, ``ACK`` from a controller) raise
:class:`~tieline.errors.RemoteProtocolError` and nothing else. The offending block is
discarded up to its empty line first, so the codec stays usable: the device role answers
``NAK`` [VH §7] and carries on; the driver drops the connection and resyncs. Sending a
block the role does not send, or one that cannot be framed (a line break in a label, an
index out of range), raises ``ValueError``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tieline import RemoteProtocolError

#: The protocol version tieline's device role announces by default [VH §3.4, §10].
PROTOCOL_VERSION = "2.8"
#: Versions from which devices end their status dump with ``END PRELUDE:`` [VH §3.3, §10].
END_PRELUDE_SINCE = (2, 7)
#: Longest line, in bytes, LF included.
MAX_LINE = 4096
#: Largest block, in bytes (a 288-output prelude's largest block is a few kB [VH §9]).
MAX_BLOCK = 4 << 20
#: Largest index or count (9 digits).
MAX_NUMBER = 999_999_999


class Role(enum.Enum):
    """Which end of the connection a codec is."""

    CONTROLLER = "controller"
    DEVICE = "device"


# -------------------------------------------------------------------------------------------
# Block kinds [VH §4]: the enum values are the headers without their colon.
# -------------------------------------------------------------------------------------------


class LabelTable(enum.Enum):
    """Label blocks, ``<index> <text>`` [VH §4]."""

    INPUT = "INPUT LABELS"
    OUTPUT = "OUTPUT LABELS"
    MONITORING_OUTPUT = "MONITORING OUTPUT LABELS"
    SERIAL_PORT = "SERIAL PORT LABELS"
    FRAME = "FRAME LABELS"  #: Workgroup Videohub only


class RoutingTable(enum.Enum):
    """Routing blocks, ``<destination> <source>`` [VH §4].

    The monitoring header reads ``VIDEO MONITORING OUTPUT ROUTING`` although its label and
    lock headers read ``MONITORING OUTPUT ...`` [VH §4, BMD].
    """

    VIDEO_OUTPUT = "VIDEO OUTPUT ROUTING"
    VIDEO_MONITORING_OUTPUT = "VIDEO MONITORING OUTPUT ROUTING"
    SERIAL_PORT = "SERIAL PORT ROUTING"
    PROCESSING_UNIT = "PROCESSING UNIT ROUTING"  #: Workgroup Videohub only
    FRAME_BUFFER = "FRAME BUFFER ROUTING"  #: Workgroup Videohub only

    @property
    def allows_none(self) -> bool:
        """Whether ``-1`` ("not connected") is a valid source [VH §4, §7]."""
        return self in _ROUTING_WITH_NONE


_ROUTING_WITH_NONE = frozenset({
    RoutingTable.SERIAL_PORT, RoutingTable.PROCESSING_UNIT, RoutingTable.FRAME_BUFFER,
})


class LockTable(enum.Enum):
    """Lock blocks, ``<index> U|O|L`` from the device, ``O|U|F`` from a controller [VH §6]."""

    VIDEO_OUTPUT = "VIDEO OUTPUT LOCKS"
    MONITORING_OUTPUT = "MONITORING OUTPUT LOCKS"
    SERIAL_PORT = "SERIAL PORT LOCKS"
    PROCESSING_UNIT = "PROCESSING UNIT LOCKS"
    FRAME_BUFFER = "FRAME BUFFER LOCKS"


class LockState(enum.Enum):
    """A lock letter [VH §6]."""

    UNLOCKED = "U"  #: device: unlocked; controller: release a lock it owns
    OWNED = "O"  #: device: locked by the recipient's own IP address; controller: take it
    LOCKED = "L"  #: device only: locked by another client
    FORCE = "F"  #: controller only: unlock a port someone else locked


_LOCK_LETTERS_FROM = {
    Role.DEVICE: frozenset({LockState.UNLOCKED, LockState.OWNED, LockState.LOCKED}),
    Role.CONTROLLER: frozenset({LockState.UNLOCKED, LockState.OWNED, LockState.FORCE}),
}


class ValueTable(enum.Enum):
    """Other indexed blocks whose value is one word [VH §4]."""

    SERIAL_PORT_DIRECTIONS = "SERIAL PORT DIRECTIONS"  #: control | slave | auto
    VIDEO_INPUT_STATUS = "VIDEO INPUT STATUS"  #: BNC | Optical | None (Thunderbolt seen)
    VIDEO_OUTPUT_STATUS = "VIDEO OUTPUT STATUS"  #: BNC | Optical | None
    SERIAL_PORT_STATUS = "SERIAL PORT STATUS"  #: RS422 | None
    TAKE_MODE = "TAKE MODE"  #: true | false per output (2.8, undocumented [VH §14])


#: Key/value blocks other than the preamble and the device block [VH §4]: ``CONFIGURATION``
#: (2.7+), ``ALARM STATUS`` (Universal 288), ``NETWORK`` and ``NETWORK INTERFACE <n>`` (2.8).
_KEY_VALUE_HEADER = re.compile(r"CONFIGURATION|ALARM STATUS|NETWORK|NETWORK INTERFACE [0-9]{1,4}")

PREAMBLE_HEADER = "PROTOCOL PREAMBLE"
DEVICE_HEADER = "VIDEOHUB DEVICE"
END_PRELUDE_HEADER = "END PRELUDE"
PING_HEADER = "PING"


# -------------------------------------------------------------------------------------------
# Messages (events and commands): frozen, slotted, one class per kind of block.
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base class of every block."""


@dataclass(frozen=True, slots=True)
class Preamble(Message):
    """``PROTOCOL PREAMBLE:``, always the first block from a device [VH §3.4].

    :param version: ``"2.8"`` … (minor bump = compatible; everything known is major 2);
        None when the block has no ``Version:`` line.
    :param extra: other ``(key, value)`` lines, in order.
    :param unparsed: lines that are not ``key: value``.
    """

    version: str | None = PROTOCOL_VERSION
    extra: tuple[tuple[str, str], ...] = ()
    unparsed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceInfo(Message):
    """``VIDEOHUB DEVICE:`` [VH §3.5]. A field is None when its line is absent (the 2.3
    text has no friendly name or unique ID; a 2.8 Videohub 12G sends only inputs and
    outputs among the counts).

    :param present: ``true``; ``false`` (no router attached to a Videohub Server) or
        ``needs_update`` (firmware mismatch): nothing else follows until that changes.
    :param model_name: e.g. ``Blackmagic Smart Videohub 40 x 40``.
    :param friendly_name: the user-set name.
    :param unique_id: hex string.
    :param video_inputs: number of inputs (valid input indexes 0 … N-1).
    :param video_processing_units: Workgroup Videohub only, else 0.
    :param video_outputs: number of outputs.
    :param video_monitoring_outputs: monitoring outputs (older Studio Videohub), else 0.
    :param serial_ports: RS-422 deck ports, else 0.
    :param extra: other ``(key, value)`` lines, in order.
    :param unparsed: lines that are not ``key: value``, or counts that are not numbers.
    """

    present: str | None = "true"
    model_name: str | None = None
    friendly_name: str | None = None
    unique_id: str | None = None
    video_inputs: int | None = None
    video_processing_units: int | None = None
    video_outputs: int | None = None
    video_monitoring_outputs: int | None = None
    serial_ports: int | None = None
    extra: tuple[tuple[str, str], ...] = ()
    unparsed: tuple[str, ...] = ()


#: DeviceInfo fields in the order devices send them, with their keys [VH §3.5].
_DEVICE_KEYS: tuple[tuple[str, str, bool], ...] = (
    ("present", "Device present", False),
    ("model_name", "Model name", False),
    ("friendly_name", "Friendly name", False),
    ("unique_id", "Unique ID", False),
    ("video_inputs", "Video inputs", True),
    ("video_processing_units", "Video processing units", True),
    ("video_outputs", "Video outputs", True),
    ("video_monitoring_outputs", "Video monitoring outputs", True),
    ("serial_ports", "Serial ports", True),
)
_DEVICE_FIELD_BY_KEY = {key.casefold(): (name, numeric) for name, key, numeric in _DEVICE_KEYS}


@dataclass(frozen=True, slots=True)
class Labels(Message):
    """A label block [VH §4, §5.2]: from the device the labels (all in a dump, the changed
    ones in an update); from a controller the labels to set.

    :param table: which labels.
    :param labels: ``(index, text)`` pairs, 0-based; text may be empty or hold spaces.
    :param unparsed: lines that are not ``<index> <text>``.
    """

    table: LabelTable
    labels: tuple[tuple[int, str], ...]
    unparsed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Routes(Message):
    """A routing block [VH §4, §5.2]: from the device the routes (all, or the changed
    ones); from a controller the routes to make, applied together.

    :param table: which routing table.
    :param routes: ``(destination, source)`` pairs, 0-based; source ``-1`` = not connected
        (serial, processing-unit and frame-buffer tables only).
    :param unparsed: lines that are not ``<destination> <source>``.
    """

    table: RoutingTable
    routes: tuple[tuple[int, int], ...]
    unparsed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Locks(Message):
    """A lock block [VH §6]. The device personalises it: ``O`` for the recipient's own
    locks, ``L`` for everyone else's.

    :param table: which ports.
    :param locks: ``(index, letter)`` pairs, 0-based.
    :param unparsed: lines that are not ``<index> <letter>``, or letters the sender's role
        does not send (``L`` from a controller, ``F`` from a device).
    """

    table: LockTable
    locks: tuple[tuple[int, LockState], ...]
    unparsed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PortValues(Message):
    """Serial port directions, hardware status, per-output take mode [VH §4].

    :param table: which block.
    :param values: ``(index, word)`` pairs, 0-based; words are kept as sent.
    :param unparsed: lines that are not ``<index> <word>``.
    """

    table: ValueTable
    values: tuple[tuple[int, str], ...]
    unparsed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyValues(Message):
    """``CONFIGURATION:``, ``ALARM STATUS:``, ``NETWORK:``, ``NETWORK INTERFACE <n>:``
    [VH §4]; undocumented by Blackmagic, kept as sent.

    :param header: the header without its colon.
    :param items: ``(key, value)`` pairs in order.
    :param unparsed: lines that are not ``key: value``.
    """

    header: str
    items: tuple[tuple[str, str], ...]
    unparsed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EndPrelude(Message):
    """``END PRELUDE:``: device -> controller, the status dump is over (2.7+) [VH §3.3]."""


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """``PING:``: controller -> device; answered ``ACK`` [VH §8]."""


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """``ACK``: device -> controller, a request block was *understood* (not necessarily
    carried out: the status block that follows says) [VH §5.3]."""


@dataclass(frozen=True, slots=True)
class Nak(Message):
    """``NAK``: device -> controller, a request block was not understood or cannot be
    actioned [VH §5.3]."""


@dataclass(frozen=True, slots=True)
class StatusRequest(Message):
    """A header with no body from a controller: send me this block in full [VH §5.1].

    :param header: the header without its colon (``VIDEO OUTPUT ROUTING``).
    """

    header: str


@dataclass(frozen=True, slots=True)
class UnknownBlock(Message):
    """A block this codec does not know; a peer must skip it [VH §2].

    :param header: the header without its colon.
    :param lines: its body lines, as received.
    """

    header: str
    lines: tuple[str, ...] = ()


_SENT_BY: dict[Role, frozenset[type[Message]]] = {
    Role.CONTROLLER: frozenset({StatusRequest, Ping, Labels, Routes, Locks, PortValues,
                                KeyValues, UnknownBlock}),
    Role.DEVICE: frozenset({Preamble, DeviceInfo, Labels, Routes, Locks, PortValues, KeyValues,
                            EndPrelude, Ack, Nak, UnknownBlock}),
}

_LABEL_HEADERS = {t.value: t for t in LabelTable}
_ROUTING_HEADERS = {t.value: t for t in RoutingTable}
_LOCK_HEADERS = {t.value: t for t in LockTable}
_VALUE_HEADERS = {t.value: t for t in ValueTable}

# A header: upper-case words (digits, spaces and a few marks allowed), then a colon [VH §2].
_HEADER = re.compile(rb"([A-Z][A-Z0-9 _./-]{0,62}):")
_HEADER_TEXT = re.compile(r"[A-Z][A-Z0-9 _./-]{0,62}")
_FORBIDDEN = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_FORBIDDEN_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_INDEX = re.compile(r"[0-9]{1,9}")
_SOURCE = re.compile(r"-1|[0-9]{1,9}")
_VERSION = re.compile(r"([0-9]{1,4})\.([0-9]{1,4})")


def version_tuple(version: str | None) -> tuple[int, int] | None:
    """``"2.8"`` -> ``(2, 8)``; None for anything else."""
    match = _VERSION.fullmatch(version or "")
    return (int(match[1]), int(match[2])) if match else None


# -------------------------------------------------------------------------------------------
# Parsing a complete block.
# -------------------------------------------------------------------------------------------


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def _indexed(lines: list[str]) -> Iterator[tuple[int, str] | str]:
    """``(index, value)`` for each line, or the line itself when it has no index."""
    for line in lines:
        token, _, value = line.partition(" ")
        if _INDEX.fullmatch(token):
            yield int(token), value
        else:
            yield line


def _key_values(lines: list[str]) -> Iterator[tuple[str, str] | str]:
    for line in lines:
        key, colon, value = line.partition(":")
        key = key.rstrip(" \t")
        if colon and key:
            yield key, value.lstrip(" \t")
        else:
            yield line


def _parse_labels(table: LabelTable, lines: list[str]) -> Labels:
    labels, unparsed = [], []
    for item in _indexed(lines):
        (labels if isinstance(item, tuple) else unparsed).append(item)
    return Labels(table, tuple(labels), tuple(unparsed))  # type: ignore[arg-type]


def _parse_routes(table: RoutingTable, lines: list[str]) -> Routes:
    routes, unparsed = [], []
    for line, item in zip(lines, _indexed(lines)):
        if isinstance(item, tuple):
            value = item[1].strip(" \t")
            if _SOURCE.fullmatch(value) and (value != "-1" or table.allows_none):
                routes.append((item[0], int(value)))
                continue
        unparsed.append(line)
    return Routes(table, tuple(routes), tuple(unparsed))


def _parse_locks(table: LockTable, lines: list[str], sender: Role) -> Locks:
    locks, unparsed = [], []
    allowed = _LOCK_LETTERS_FROM[sender]
    for line, item in zip(lines, _indexed(lines)):
        if isinstance(item, tuple):
            try:
                state = LockState(item[1].strip(" \t"))
            except ValueError:
                state = None
            if state in allowed:
                locks.append((item[0], state))
                continue
        unparsed.append(line)
    return Locks(table, tuple(locks), tuple(unparsed))  # type: ignore[arg-type]


def _parse_values(table: ValueTable, lines: list[str]) -> PortValues:
    values, unparsed = [], []
    for line, item in zip(lines, _indexed(lines)):
        if isinstance(item, tuple) and item[1].strip(" \t"):
            values.append((item[0], item[1].strip(" \t")))
        else:
            unparsed.append(line)
    return PortValues(table, tuple(values), tuple(unparsed))


def _parse_preamble(lines: list[str]) -> Preamble:
    version, extra, unparsed = None, [], []
    for item in _key_values(lines):
        if isinstance(item, str):
            unparsed.append(item)
        elif item[0].casefold() == "version" and version is None:
            version = item[1].rstrip(" \t")
        else:
            extra.append(item)
    return Preamble(version, tuple(extra), tuple(unparsed))


def _parse_device(lines: list[str]) -> DeviceInfo:
    fields: dict[str, object] = {"present": None}
    extra, unparsed = [], []
    for line, item in zip(lines, _key_values(lines)):
        if isinstance(item, str):
            unparsed.append(item)
            continue
        known = _DEVICE_FIELD_BY_KEY.get(item[0].casefold())
        if known is None or known[0] in fields and fields[known[0]] is not None:
            extra.append(item)
            continue
        name, numeric = known
        value = item[1].rstrip(" \t")
        if numeric:
            if not _INDEX.fullmatch(value):
                unparsed.append(line)
                continue
            fields[name] = int(value)
        else:
            fields[name] = value
    return DeviceInfo(**fields, extra=tuple(extra),  # type: ignore[arg-type]
                      unparsed=tuple(unparsed))


def _parse_key_values(header: str, lines: list[str]) -> KeyValues:
    items, unparsed = [], []
    for item in _key_values(lines):
        (unparsed if isinstance(item, str) else items).append(item)
    return KeyValues(header, tuple(items), tuple(unparsed))  # type: ignore[arg-type]


def _parse_block(header: str, lines: list[str], receiver: Role) -> Message:
    """One complete block, as ``receiver`` reads it [VH §2, §4, §5]."""
    sender = Role.DEVICE if receiver is Role.CONTROLLER else Role.CONTROLLER
    if not lines:
        if receiver is Role.DEVICE:
            return Ping() if header == PING_HEADER else StatusRequest(header)
        if header == END_PRELUDE_HEADER:
            return EndPrelude()
    if header in _ROUTING_HEADERS:
        return _parse_routes(_ROUTING_HEADERS[header], lines)
    if header in _LABEL_HEADERS:
        return _parse_labels(_LABEL_HEADERS[header], lines)
    if header in _LOCK_HEADERS:
        return _parse_locks(_LOCK_HEADERS[header], lines, sender)
    if header in _VALUE_HEADERS:
        return _parse_values(_VALUE_HEADERS[header], lines)
    if header == PREAMBLE_HEADER:
        return _parse_preamble(lines)
    if header == DEVICE_HEADER:
        return _parse_device(lines)
    if _KEY_VALUE_HEADER.fullmatch(header):
        return _parse_key_values(header, lines)
    return UnknownBlock(header, tuple(lines))


# -------------------------------------------------------------------------------------------
# Encoding.
# -------------------------------------------------------------------------------------------


def _enc_index(value: int, what: str = "index") -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NUMBER:
        raise ValueError(f"{what} {value!r} is not a number 0–{MAX_NUMBER}")
    return str(value)


def _enc_text(text: str, what: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{what} {text!r} is not text")
    if _FORBIDDEN_TEXT.search(text):
        raise ValueError(f"{what} {text!r} contains a line break or control character")
    return text


def _enc_key(key: str) -> str:
    _enc_text(key, "key")
    if not key.strip(" \t") or ":" in key or key != key.strip(" \t"):
        raise ValueError(f"key {key!r} must be non-empty, without a colon or outer spaces")
    return key


def _enc_header(header: str) -> str:
    if not isinstance(header, str) or not _HEADER_TEXT.fullmatch(header):
        raise ValueError(f"{header!r} is not a block header (upper-case words)")
    return header


class Codec:
    """One end of a Videohub protocol connection.

    :param role: which end this is; it decides what :meth:`send` accepts and how the peer's
        blocks are read.
    :param max_line: the longest line accepted, LF included.
    :param max_block: the largest block accepted, in bytes.
    """

    def __init__(self, role: Role, *, max_line: int = MAX_LINE,
                 max_block: int = MAX_BLOCK) -> None:
        self.role = role
        self.max_line = max_line
        self.max_block = max_block
        self._buffer = bytearray()
        self._scanned = 0  #: bytes at the start of the buffer known to hold no LF
        self._header: str | None = None  #: the block being read
        self._lines: list[bytes] = []
        self._block_bytes = 0
        self._skip_line = False  #: discarding the rest of an over-long line
        self._skip_block = False  #: discarding up to the next empty line after an error

    # -- receiving ---------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; parse them with :meth:`next_event`."""
        self._buffer += data

    def events(self) -> Iterator[Message]:
        """Every complete block received so far (stops at the first protocol error)."""
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> Message | None:
        """The next complete block from the peer, or None until more data arrives.

        :raises RemoteProtocolError: for bytes that break the framing. The bad block has
            been discarded (up to its empty line); the codec may be used further.
        """
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                if self._skip_line:
                    buffer.clear()
                    self._scanned = 0
                    return None
                if len(buffer) >= self.max_line:
                    head = bytes(buffer[:64])
                    buffer.clear()
                    self._scanned = 0
                    self._skip_line = True
                    self._fail_block()
                    raise RemoteProtocolError(f"line longer than {self.max_line} bytes", head)
                self._scanned = len(buffer)
                return None
            raw = bytes(buffer[:end])
            del buffer[: end + 1]
            self._scanned = 0
            if self._skip_line:
                self._skip_line = False
                continue
            if end + 1 > self.max_line:
                self._fail_block()
                raise RemoteProtocolError(f"line longer than {self.max_line} bytes", raw[:64])
            event = self._line(raw)
            if event is not None:
                return event

    def _fail_block(self) -> None:
        """Forget the block being read and skip up to the next empty line."""
        self._header = None
        self._lines = []
        self._block_bytes = 0
        self._skip_block = True

    def _line(self, raw: bytes) -> Message | None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]  # CRLF accepted [VH §1]
        line = raw.lstrip(b" \t")  # leading whitespace dropped [VH §2]
        if not line.rstrip(b" \t"):  # an empty line ends a block [VH §2]
            if self._skip_block:
                self._skip_block = False
                return None
            if self._header is None:
                return None  # empty lines between blocks
            header, lines = self._header, self._lines
            self._header, self._lines, self._block_bytes = None, [], 0
            return _parse_block(header, [_decode(b) for b in lines], self.role)
        if self._skip_block:
            return None
        if _FORBIDDEN.search(line):
            self._fail_block()
            raise RemoteProtocolError("line contains a control character", raw[:64])
        if self._header is not None:
            self._block_bytes += len(raw) + 1
            if self._block_bytes > self.max_block:
                header = self._header
                self._fail_block()
                raise RemoteProtocolError(
                    f"block {header[:40]!r} longer than {self.max_block} bytes", raw[:64])
            self._lines.append(line)
            return None
        word = line.rstrip(b" \t")
        if word in (b"ACK", b"NAK"):  # the only headers without a colon [VH §2]
            if self.role is Role.DEVICE:
                raise RemoteProtocolError(
                    f"a controller does not send {word.decode()}", raw[:64])
            return Ack() if word == b"ACK" else Nak()
        match = _HEADER.fullmatch(word)
        if match is None:
            self._fail_block()
            raise RemoteProtocolError(
                "expected a block header (upper-case words and a colon), ACK or NAK", raw[:64])
        self._header = match[1].decode("ascii")
        self._lines = []
        self._block_bytes = len(raw) + 1
        return None

    # -- sending -----------------------------------------------------------------------
    def send(self, message: Message) -> bytes:
        """The bytes that carry ``message``: one block, ended by an empty line.

        :raises ValueError: when this role does not send ``message`` or it cannot be framed.
        """
        if type(message) not in _SENT_BY[self.role]:
            raise ValueError(f"a {self.role.value} does not send {type(message).__name__}")
        lines: list[str]
        match message:
            case Ack():
                return b"ACK\n\n"
            case Nak():
                return b"NAK\n\n"
            case Ping():
                header, lines = PING_HEADER, []
            case EndPrelude():
                header, lines = END_PRELUDE_HEADER, []
            case StatusRequest(header=header):
                header, lines = _enc_header(header), []
            case Preamble(version, extra):
                lines = [] if version is None else [f"Version: {_enc_text(version, 'version')}"]
                lines += [f"{_enc_key(k)}: {_enc_text(v, 'value')}" for k, v in extra]
                header = PREAMBLE_HEADER
            case DeviceInfo():
                lines = []
                for name, key, numeric in _DEVICE_KEYS:
                    value = getattr(message, name)
                    if value is not None:
                        text = _enc_index(value, key) if numeric else _enc_text(value, key)
                        lines.append(f"{key}: {text}")
                lines += [f"{_enc_key(k)}: {_enc_text(v, 'value')}" for k, v in message.extra]
                header = DEVICE_HEADER
            case Labels(table, labels):
                header = LabelTable(table).value
                lines = [f"{_enc_index(i)} {_enc_text(t, 'label')}" for i, t in labels]
            case Routes(table, routes):
                table = RoutingTable(table)
                header = table.value
                lines = [f"{_enc_index(d, 'destination')} {self._enc_source(table, s)}"
                         for d, s in routes]
            case Locks(table, locks):
                header = LockTable(table).value
                lines = [f"{_enc_index(i)} {self._enc_lock(s)}" for i, s in locks]
            case PortValues(table, values):
                header = ValueTable(table).value
                lines = [f"{_enc_index(i)} {self._enc_word(v)}" for i, v in values]
            case KeyValues(header, items):
                if not _KEY_VALUE_HEADER.fullmatch(header):
                    raise ValueError(f"{header!r} is not a key/value block")
                lines = [f"{_enc_key(k)}: {_enc_text(v, 'value')}" for k, v in items]
            case UnknownBlock(header, body):
                header = _enc_header(header)
                lines = [_enc_text(line, "line") for line in body]
                if any(not line.strip(" \t") for line in lines):
                    raise ValueError("a block line may not be empty (it would end the block)")
            case _:  # pragma: no cover - every sendable type is matched above
                raise ValueError(f"cannot send {message!r}")
        if not lines and self.role is Role.CONTROLLER and not isinstance(
                message, (Ping, StatusRequest)):
            raise ValueError(
                f"an empty {type(message).__name__} block from a controller would ask for the "
                "block in full; send StatusRequest for that")
        return self._frame(header, lines)

    def send_all(self, messages: Iterable[Message]) -> bytes:
        """The bytes of several blocks, in order."""
        return b"".join(self.send(m) for m in messages)

    def _frame(self, header: str, lines: list[str]) -> bytes:
        text = header + ":\n" + "".join(line + "\n" for line in lines) + "\n"
        data = text.encode("utf-8")
        longest = max((len(line.encode("utf-8")) + 1 for line in lines), default=0)
        if longest > self.max_line:
            raise ValueError(f"a line of {longest} bytes is longer than {self.max_line}")
        if len(data) > self.max_block:
            raise ValueError(f"block of {len(data)} bytes is larger than {self.max_block}")
        return data

    def _enc_source(self, table: RoutingTable, source: int) -> str:
        if source == -1 and table.allows_none and not isinstance(source, bool):
            return "-1"
        return _enc_index(source, "source")

    def _enc_lock(self, state: LockState) -> str:
        state = LockState(state)
        if state not in _LOCK_LETTERS_FROM[self.role]:
            raise ValueError(f"a {self.role.value} does not send lock letter {state.value}")
        return state.value

    @staticmethod
    def _enc_word(value: str) -> str:
        _enc_text(value, "value")
        if not value.strip(" \t") or value != value.strip(" \t"):
            raise ValueError(f"value {value!r} must be non-empty without outer spaces")
        return value


# -------------------------------------------------------------------------------------------
# The status dump, as real devices send it.
# -------------------------------------------------------------------------------------------

#: Block order of a status dump [VH §3.2]: the union of the real-device captures (Universal
#: 288 at 2.3; Smart Videohub 20x20 at 2.7; CleanSwitch 12x12 and Videohub 10x10 12G at
#: 2.8). Monitoring-output blocks follow their video-output counterparts, and the
#: processing-unit and frame blocks the serial ones: no capture shows them, so that much is
#: inferred from the documented order [VH §3.1].
DUMP_ORDER: tuple[str, ...] = (
    PREAMBLE_HEADER, DEVICE_HEADER, "NETWORK", "NETWORK INTERFACE",
    LabelTable.INPUT.value, ValueTable.VIDEO_INPUT_STATUS.value,
    LabelTable.OUTPUT.value, LabelTable.MONITORING_OUTPUT.value,
    LockTable.VIDEO_OUTPUT.value, LockTable.MONITORING_OUTPUT.value,
    RoutingTable.VIDEO_OUTPUT.value, RoutingTable.VIDEO_MONITORING_OUTPUT.value,
    ValueTable.VIDEO_OUTPUT_STATUS.value,
    LabelTable.SERIAL_PORT.value, LockTable.SERIAL_PORT.value, RoutingTable.SERIAL_PORT.value,
    ValueTable.SERIAL_PORT_DIRECTIONS.value, ValueTable.SERIAL_PORT_STATUS.value,
    RoutingTable.PROCESSING_UNIT.value, LockTable.PROCESSING_UNIT.value,
    LabelTable.FRAME.value, RoutingTable.FRAME_BUFFER.value, LockTable.FRAME_BUFFER.value,
    "ALARM STATUS", "CONFIGURATION", ValueTable.TAKE_MODE.value,
)
_DUMP_RANK = {header: rank for rank, header in enumerate(DUMP_ORDER)}

#: Which VIDEOHUB DEVICE count sizes each table [VH §3.1, §3.5].
_COUNT_OF: dict[str, str] = {
    LabelTable.INPUT.value: "video_inputs",
    ValueTable.VIDEO_INPUT_STATUS.value: "video_inputs",
    LabelTable.OUTPUT.value: "video_outputs",
    LockTable.VIDEO_OUTPUT.value: "video_outputs",
    RoutingTable.VIDEO_OUTPUT.value: "video_outputs",
    ValueTable.VIDEO_OUTPUT_STATUS.value: "video_outputs",
    ValueTable.TAKE_MODE.value: "video_outputs",
    LabelTable.MONITORING_OUTPUT.value: "video_monitoring_outputs",
    LockTable.MONITORING_OUTPUT.value: "video_monitoring_outputs",
    RoutingTable.VIDEO_MONITORING_OUTPUT.value: "video_monitoring_outputs",
    LabelTable.SERIAL_PORT.value: "serial_ports",
    LockTable.SERIAL_PORT.value: "serial_ports",
    RoutingTable.SERIAL_PORT.value: "serial_ports",
    ValueTable.SERIAL_PORT_DIRECTIONS.value: "serial_ports",
    ValueTable.SERIAL_PORT_STATUS.value: "serial_ports",
    RoutingTable.PROCESSING_UNIT.value: "video_processing_units",
    LockTable.PROCESSING_UNIT.value: "video_processing_units",
}


def header_of(message: Message) -> str:
    """The header of a block, without its colon."""
    match message:
        case Labels(table=table) | Routes(table=table) | Locks(table=table) | \
                PortValues(table=table):
            return table.value
        case KeyValues(header=header) | UnknownBlock(header=header) | StatusRequest(header=header):
            return header
        case Preamble():
            return PREAMBLE_HEADER
        case DeviceInfo():
            return DEVICE_HEADER
        case EndPrelude():
            return END_PRELUDE_HEADER
        case Ping():
            return PING_HEADER
        case Ack():
            return "ACK"
        case Nak():
            return "NAK"
    raise ValueError(f"{message!r} is not a block")


def _items(message: Message) -> tuple[tuple[int, object], ...] | None:
    match message:
        case Labels(labels=items) | Routes(routes=items) | Locks(locks=items) | \
                PortValues(values=items):
            return items  # type: ignore[return-value]
    return None


def prelude(device: DeviceInfo, blocks: Iterable[Message], *,
            version: str = PROTOCOL_VERSION) -> list[Message]:
    """A device's status dump, as real devices send it on accept [VH §3].

    :param device: the ``VIDEOHUB DEVICE`` block; its counts must match the tables.
    :param blocks: the device's other blocks (labels, locks personalised for the recipient,
        routing, status, configuration …), in any order; no preamble, device block or
        ``END PRELUDE``.
    :param version: the protocol version announced in the preamble; from 2.7 the dump ends
        with ``END PRELUDE:`` [VH §3.3, §10].
    :returns: ``PROTOCOL PREAMBLE``, ``VIDEOHUB DEVICE``, the blocks in the order of
        :data:`DUMP_ORDER` (unknown blocks after the known ones), and ``END PRELUDE`` when
        the version has it.
    :raises ValueError: when a table does not list exactly ports 0 … N-1 for the count N
        that ``device`` gives it (a 0 count means the block is absent [VH §3.1]), or the
        version is not ``major.minor``.
    """
    parsed = version_tuple(version)
    if parsed is None:
        raise ValueError(f"protocol version {version!r} is not major.minor")
    ordered: list[tuple[int, int, Message]] = []
    for position, block in enumerate(blocks):
        if isinstance(block, (Preamble, DeviceInfo, EndPrelude, Ack, Nak, Ping, StatusRequest)):
            raise ValueError(f"{type(block).__name__} is not a table of the status dump")
        header = header_of(block)
        count_field = _COUNT_OF.get(header)
        items = _items(block)
        if count_field is not None and items is not None:
            count = getattr(device, count_field)
            if count is not None and [i for i, _ in items] != list(range(count)):
                raise ValueError(
                    f"{header} must list ports 0–{count - 1} in order: VIDEOHUB DEVICE "
                    f"gives {count_field.replace('_', ' ')} = {count}")
        rank = _DUMP_RANK.get(header)
        if rank is None and header.startswith("NETWORK INTERFACE "):
            rank = _DUMP_RANK["NETWORK INTERFACE"]
        ordered.append((len(DUMP_ORDER) if rank is None else rank, position, block))
    ordered.sort(key=lambda entry: entry[:2])
    out: list[Message] = [Preamble(version), device]
    out += [block for _, _, block in ordered]
    if parsed >= END_PRELUDE_SINCE:
        out.append(EndPrelude())
    return out


__all__ = [
    "DEVICE_HEADER", "DUMP_ORDER", "END_PRELUDE_HEADER", "END_PRELUDE_SINCE", "MAX_BLOCK",
    "MAX_LINE", "MAX_NUMBER", "PING_HEADER", "PREAMBLE_HEADER", "PROTOCOL_VERSION", "Ack",
    "Codec", "DeviceInfo", "EndPrelude", "KeyValues", "LabelTable", "Labels", "LockState",
    "LockTable", "Locks", "Message", "Nak", "Ping", "PortValues", "Preamble", "Role",
    "RoutingTable", "Routes", "StatusRequest", "UnknownBlock", "ValueTable", "header_of",
    "prelude", "version_tuple",
]
