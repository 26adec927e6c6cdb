"""Pro-Bel / Snell SW-P-08 "General Remote Control Protocol": a sans-I/O codec for both roles.

Sources: tieline's protocol notes ``shared/protocols/swp08.md`` (cited "notes §N") and the
vendor document they paraphrase, *SW-P-08 General Remote Control Protocol, Part I, Issue 32*,
Snell Ltd, 2014 (cited "spec"; §2 data link, §3 router commands, §4 protocol commands,
§9 worked examples, Appendix III "SW-P-08 over IP").

Words. The spec calls the router's control system the *controller* and the client the
*remote device*; tieline calls them the other way round, so here :attr:`Role.DEVICE` is the
router (the spec's controller, what the emulator plays) and :attr:`Role.CONTROLLER` is the
client (the spec's remote device, what the driver plays).

Three layers, all pure (no sockets, no asyncio, no clock: time is passed in):

1. **Framing** (notes §2, spec §2): ``DLE STX | DATA | BTC | CHK | DLE ETX`` where DATA is the
   command byte and its message bytes, BTC the number of DATA bytes, CHK the two's complement
   of the sum of DATA and BTC, and every ``0x10`` in DATA, BTC or CHK is doubled on the wire.
   ``DLE ACK`` (``10 06``) and ``DLE NAK`` (``10 15``) are two-byte messages of their own and
   may arrive anywhere, even inside a frame going the other way. :func:`encode_frame` builds
   a frame; the decoder inside :class:`Codec` takes one apart.
2. **Messages** (notes §4–§7, spec §3–§4): one frozen dataclass per command, with the normal
   (matrix and level in one byte, ports 0–1023) and the extended form (matrix and level
   0–255, ports 0–65535) of the same command sharing a class and told apart by ``extended``.
   :func:`encode_message` and :func:`decode_message` convert between them and DATA.
3. **The link** (notes §3, spec §2.2): :class:`Codec` acknowledges every well-formed frame
   (``DLE ACK``) and answers a damaged one with ``DLE NAK``; it sends one frame at a time and
   waits for the peer's ACK before the next (stop-and-wait, each direction on its own),
   re-sends on NAK or after ``ack_timeout_s`` without reply, and gives a frame up after
   ``retries`` re-sends (5 by default, as the spec recommends).

Tolerated deviations (notes §3, §5, §6): a reply that arrives before the ACK of its request
(the ACK is awaited all the same, data never has to wait for it); ``DLE ACK``/``DLE NAK``
inside a frame; a byte count off by ``byte_count_tolerance`` (1) when the checksum computed
with the byte count as received is right; tally dumps and name responses longer than the
spec's stated limits (anything a one-byte BTC allows); the STATUS byte of 131/132 present or
not; the level byte that pre-Issue-32 equipment puts in 235.

Errors: bytes that are not a well-formed frame raise :class:`FrameError` (damage on the line:
the sender will retransmit; ``nak`` says whether the codec answered ``DLE NAK``); a
well-formed frame whose content breaks its command's layout raises
:class:`~tieline.errors.RemoteProtocolError` (it has been acknowledged: packaging was right).
Nothing else is raised for any input, and the codec stays usable after either.
A well-formed frame whose command this role does not receive is :class:`UnknownMessage`
(the spec's answer to it is 99 INVALID MESSAGE, or nothing). Sending a message this role does
not send, or one whose numbers do not fit its form, raises ``ValueError``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tieline import RemoteProtocolError

# -------------------------------------------------------------------------------------------
# Constants (notes §2, §4, §6; spec §2.1, §3)
# -------------------------------------------------------------------------------------------

DLE, STX, ETX, ACK, NAK = 0x10, 0x02, 0x03, 0x06, 0x15
#: ``DLE ACK`` and ``DLE NAK`` as sent (notes §2).
ACK_BYTES, NAK_BYTES = bytes((DLE, ACK)), bytes((DLE, NAK))
#: Largest DATA a frame may carry: BTC is one byte (notes §2: "a receiver must accept any
#: DATA length up to 255").
MAX_DATA = 255
#: Normal commands: ports 0–1023, matrix and level 0–15 (notes §4.1, §4.2).
NORMAL_MAX_PORT, NORMAL_MAX_ML = 1023, 15
#: Extended commands: ports 0–65535, matrix and level 0–255 (notes §4.3).
EXTENDED_MAX_PORT, EXTENDED_MAX_ML = 65535, 255
#: Name-length codes and the characters they mean (notes §6).
NAME_LENGTHS = {0: 4, 1: 8, 2: 12, 3: 16, 4: 32}
NAME_CODES = {length: code for code, length in NAME_LENGTHS.items()}
#: Most names one response carries, by name length (notes §6).
NAMES_PER_MESSAGE = {4: 32, 8: 16, 12: 10, 16: 8, 32: 7}
#: Most tallies one tally-dump message carries (notes §5: N ≤ 64).
TALLIES_PER_DUMP = 64


class Role(enum.Enum):
    """Which end of the link a codec is."""

    #: tieline: the spec's "remote device", which asks.
    CONTROLLER = "controller"
    #: the router: the spec's "controller", which answers and broadcasts.
    DEVICE = "device"


class Command(enum.IntEnum):
    """Command bytes, decimal as the spec numbers them (notes §4: "all command numbers in the
    spec are decimal"; §5 crosspoints, §6 names, §7 protocol and protects)."""

    CROSSPOINT_INTERROGATE = 1  # notes §5
    CROSSPOINT_CONNECT = 2  # notes §5
    CROSSPOINT_TALLY = 3  # notes §5
    CROSSPOINT_CONNECTED = 4  # notes §5
    MAINTENANCE = 7  # notes §7
    DUAL_CONTROLLER_STATUS_REQUEST = 8  # notes §7
    DUAL_CONTROLLER_STATUS_RESPONSE = 9  # notes §7
    PROTECT_INTERROGATE = 10  # notes §7
    PROTECT_TALLY = 11  # notes §7
    PROTECT_CONNECT = 12  # notes §7
    PROTECT_CONNECTED = 13  # notes §7
    PROTECT_DISCONNECT = 14  # notes §7
    PROTECT_DISCONNECTED = 15  # notes §7
    PROTECT_DEVICE_NAME_REQUEST = 17  # notes §7
    PROTECT_DEVICE_NAME_RESPONSE = 18  # notes §7
    CROSSPOINT_TALLY_DUMP_REQUEST = 21  # notes §5
    CROSSPOINT_TALLY_DUMP_BYTE = 22  # notes §5
    CROSSPOINT_TALLY_DUMP_WORD = 23  # notes §5 (0x17, not 0x23: notes §4)
    NAMES_UPDATED = 30  # notes §6
    IMPLEMENTATION_REQUEST = 97  # notes §7
    IMPLEMENTATION_STATUS = 98  # notes §7
    INVALID_MESSAGE = 99  # notes §7
    ALL_SOURCE_NAMES_REQUEST = 100  # notes §6
    SINGLE_SOURCE_NAME_REQUEST = 101  # notes §6
    ALL_DEST_ASSOC_NAMES_REQUEST = 102  # notes §6
    SINGLE_DEST_ASSOC_NAME_REQUEST = 103  # notes §6
    SOURCE_NAMES_RESPONSE = 106  # notes §6
    DEST_ASSOC_NAMES_RESPONSE = 107  # notes §6
    UPDATE_NAME_REQUEST = 117  # notes §6
    EXT_CROSSPOINT_INTERROGATE = 129  # notes §5
    EXT_CROSSPOINT_CONNECT = 130  # notes §5
    EXT_CROSSPOINT_TALLY = 131  # notes §5
    EXT_CROSSPOINT_CONNECTED = 132  # notes §5
    # notes §7 "EXTENDED PROTECT family 138–143": each is its normal command + 128, as for
    # the crosspoint commands (Rascular's SW-P-08 Wireshark dissector numbers them so too).
    EXT_PROTECT_INTERROGATE = 138
    EXT_PROTECT_TALLY = 139
    EXT_PROTECT_CONNECT = 140
    EXT_PROTECT_CONNECTED = 141
    EXT_PROTECT_DISCONNECT = 142
    EXT_PROTECT_DISCONNECTED = 143
    EXT_CROSSPOINT_TALLY_DUMP_REQUEST = 149  # notes §5
    EXT_CROSSPOINT_TALLY_DUMP_WORD = 151  # notes §5
    EXT_ALL_SOURCE_NAMES_REQUEST = 228  # notes §6
    EXT_SINGLE_SOURCE_NAME_REQUEST = 229  # notes §6
    EXT_ALL_DEST_ASSOC_NAMES_REQUEST = 230  # notes §6
    EXT_SINGLE_DEST_ASSOC_NAME_REQUEST = 231  # notes §6
    EXT_SOURCE_NAMES_RESPONSE = 234  # notes §6
    EXT_DEST_ASSOC_NAMES_RESPONSE = 235  # notes §6


class ProtectState(enum.IntEnum):
    """The PROTECT byte of protect tallies (notes §7)."""

    NONE = 0
    PROBEL = 1  #: a Pro-Bel protect, owned by a device number
    PROBEL_OVERRIDE = 2  #: a Pro-Bel override protect: not remotely alterable
    OEM = 3  #: a protect set by an OEM system


class NameKind(enum.IntEnum):
    """TYPE byte of UPDATE NAME REQUEST 117 (notes §6)."""

    SOURCE = 0
    SOURCE_ASSOCIATION = 1
    DESTINATION_ASSOCIATION = 2
    UMD = 3


# -------------------------------------------------------------------------------------------
# Messages
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base class of every SW-P-08 message (the DATA of one frame)."""


@dataclass(frozen=True, slots=True)
class Interrogate(Message):
    """CROSSPOINT INTERROGATE 01 / 129 (notes §5), controller → device: which source feeds
    ``destination``? Answered with :class:`Tally` to the asker alone."""

    matrix: int
    level: int
    destination: int
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Connect(Message):
    """CROSSPOINT CONNECT 02 / 130 (notes §5), controller → device: route ``source`` to
    ``destination``. Confirmed by :class:`Connected`, broadcast to every controller."""

    matrix: int
    level: int
    destination: int
    source: int
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Tally(Message):
    """CROSSPOINT TALLY 03 / 131 (notes §5), device → controller: the answer to
    :class:`Interrogate`.

    :param source_bad: normal form only: bit 3 of the multiplier, the "source bad" flag of
        TDM and HD digital routers (notes §4.2).
    :param status: extended form only: the STATUS byte ("for future use", 0), or None when
        the device leaves it out (notes §5).
    """

    matrix: int
    level: int
    destination: int
    source: int
    extended: bool = False
    source_bad: bool = False
    status: int | None = None


@dataclass(frozen=True, slots=True)
class Connected(Message):
    """CROSSPOINT CONNECTED 04 / 132 (notes §5), device → every controller: a route was made
    (by anyone: a panel, another controller). Fields as :class:`Tally`."""

    matrix: int
    level: int
    destination: int
    source: int
    extended: bool = False
    source_bad: bool = False
    status: int | None = None


@dataclass(frozen=True, slots=True)
class TallyDumpRequest(Message):
    """CROSSPOINT TALLY DUMP REQUEST 21 / 149 (notes §5), controller → device: every tally of
    one matrix and level, answered with one or more :class:`TallyDumpByte` or
    :class:`TallyDumpWord`."""

    matrix: int
    level: int
    extended: bool = False


@dataclass(frozen=True, slots=True)
class TallyDumpByte(Message):
    """CROSSPOINT TALLY DUMP (BYTE) 22 (notes §5), device → controller: ``sources[i]`` feeds
    destination ``first + i``; one byte per number (first destination 0–255)."""

    matrix: int
    level: int
    first: int
    sources: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TallyDumpWord(Message):
    """CROSSPOINT TALLY DUMP (WORD) 23 / EXTENDED 151 (notes §5), device → controller:
    ``sources[i]`` feeds destination ``first + i``; 16-bit numbers."""

    matrix: int
    level: int
    first: int
    sources: tuple[int, ...]
    extended: bool = False


@dataclass(frozen=True, slots=True)
class DualStatusRequest(Message):
    """DUAL CONTROLLER STATUS REQUEST 08 (notes §7), controller → device."""


@dataclass(frozen=True, slots=True)
class DualStatus(Message):
    """DUAL CONTROLLER STATUS RESPONSE 09 (notes §7), device → controller.

    :param slave_active: B1 bit 0: the slave (second) controller card is the active one.
    :param this_active: B1 bit 1 (Issue 30 on): the controller answering is the active one.
    :param idle_state: B2: 0 idle card OK, 1 missing or faulty, 2 unknown.
    """

    slave_active: bool
    this_active: bool
    idle_state: int


@dataclass(frozen=True, slots=True)
class ProtectInterrogate(Message):
    """PROTECT INTERROGATE 10 / 138 (notes §7), controller → device; answered with
    :class:`ProtectTally`."""

    matrix: int
    level: int
    destination: int
    extended: bool = False


@dataclass(frozen=True, slots=True)
class ProtectTally(Message):
    """PROTECT TALLY 11 / 139 (notes §7), device → controller.

    :param state: a :class:`ProtectState` value (0 none).
    :param device: the device number owning the protect (0–1023 normal, 0–65535 extended).
    """

    matrix: int
    level: int
    destination: int
    state: int
    device: int
    extended: bool = False


@dataclass(frozen=True, slots=True)
class ProtectConnect(Message):
    """PROTECT CONNECT 12 / 140 (notes §7), controller → device: protect ``destination`` for
    device number ``device``. The device broadcasts :class:`ProtectConnected`, also when it
    did not make the change."""

    matrix: int
    level: int
    destination: int
    device: int
    extended: bool = False


@dataclass(frozen=True, slots=True)
class ProtectConnected(Message):
    """PROTECT CONNECTED 13 / 141 (notes §7), device → every controller. Fields as
    :class:`ProtectTally`."""

    matrix: int
    level: int
    destination: int
    state: int
    device: int
    extended: bool = False


@dataclass(frozen=True, slots=True)
class ProtectDisconnect(Message):
    """PROTECT DISCONNECT 14 / 142 (notes §7), controller → device: release a protect held by
    device number ``device``."""

    matrix: int
    level: int
    destination: int
    device: int
    extended: bool = False


@dataclass(frozen=True, slots=True)
class ProtectDisconnected(Message):
    """PROTECT DISCONNECTED 15 / 143 (notes §7), device → every controller. Fields as
    :class:`ProtectTally` (the state after the request)."""

    matrix: int
    level: int
    destination: int
    state: int
    device: int
    extended: bool = False


@dataclass(frozen=True, slots=True)
class ProtectDeviceNameRequest(Message):
    """PROTECT DEVICE NAME REQUEST 17 (notes §7), controller → device: the name of device
    number ``device`` (0–1023)."""

    device: int


@dataclass(frozen=True, slots=True)
class ProtectDeviceName(Message):
    """PROTECT DEVICE NAME RESPONSE 18 (notes §7), device → controller: an 8-character name."""

    device: int
    name: str


@dataclass(frozen=True, slots=True)
class NamesUpdated(Message):
    """NAMES UPDATED 30 (notes §6), device → controller, 5 s after names changed.

    :param matrices: the 4-byte matrix bitmap as an integer (high byte first).
    :param name_types: the 4-byte name-type flag bitmap as an integer.
    """

    matrices: int
    name_types: int


@dataclass(frozen=True, slots=True)
class SourceNamesRequest(Message):
    """ALL SOURCE NAMES 100 / SINGLE SOURCE NAME 101, extended 228 / 229 (notes §6),
    controller → device; answered with :class:`SourceNames`.

    :param length: name length in characters: 4, 8, 12, 16 or 32.
    :param source: the one source to name, or None for all of them.
    """

    matrix: int
    level: int
    length: int
    source: int | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class DestinationNamesRequest(Message):
    """ALL DEST ASSOCIATION NAMES 102 / SINGLE 103, extended 230 / 231 (notes §6),
    controller → device; answered with :class:`DestinationNames`. Destinations are named per
    matrix (their association), not per level."""

    matrix: int
    length: int
    destination: int | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class SourceNames(Message):
    """SOURCE NAMES RESPONSE 106 / 234 (notes §6), device → controller: ``names[i]`` is the
    name of source ``first + i``. Names are decoded from fixed-width fields with trailing
    spaces and NULs removed (notes §6, §14: padding not confirmed)."""

    matrix: int
    level: int
    length: int
    first: int
    names: tuple[str, ...]
    extended: bool = False


@dataclass(frozen=True, slots=True)
class DestinationNames(Message):
    """DEST ASSOCIATION NAMES RESPONSE 107 / 235 (notes §6), device → controller. A level
    nibble in 107 and the level byte older equipment puts in 235 are accepted and dropped."""

    matrix: int
    length: int
    first: int
    names: tuple[str, ...]
    extended: bool = False


@dataclass(frozen=True, slots=True)
class UpdateName(Message):
    """UPDATE NAME REQUEST 117 (notes §6), controller → device: change names in the device's
    database. The device sends no answer (read the names back to see the result).

    :param kind: which names (:class:`NameKind`).
    :param length: 4, 8, 12 or 16 characters (32 is not allowed in 117).
    """

    kind: int
    length: int
    matrix: int
    level: int
    first: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImplementationRequest(Message):
    """IMPLEMENTATION REQUEST 97 (notes §7), controller → device. Optional in practice."""


@dataclass(frozen=True, slots=True)
class ImplementationStatus(Message):
    """IMPLEMENTATION STATUS 98 (notes §7), device → controller: the command codes the device
    sends (``output_commands``) and accepts (``input_commands``)."""

    output_commands: tuple[int, ...]
    input_commands: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class InvalidMessage(Message):
    """INVALID MESSAGE 99 (notes §7), either way: the message with command ``command`` was not
    understood. Never answered with another 99."""

    command: int


@dataclass(frozen=True, slots=True)
class Maintenance(Message):
    """MAINTENANCE 07 (notes §7), controller → device: ``function`` (0 hard reset, 1 soft
    reset, 2 clear protects, 3 configure modules, 4 database transfer) and its bytes.
    tieline never sends it; the emulator accepts and ignores it."""

    function: int
    arguments: bytes = b""


@dataclass(frozen=True, slots=True)
class UnknownMessage(Message):
    """A well-formed frame whose command this role does not receive (either way)."""

    command: int
    payload: bytes = b""


# -------------------------------------------------------------------------------------------
# Link events
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """The peer acknowledged (``DLE ACK``) ``message``, the very object given to ``send``."""

    message: Message


@dataclass(frozen=True, slots=True)
class Undelivered:
    """``message`` was given up after ``attempts`` transmissions (notes §3: 5 re-sends).

    :param reason: why the last one failed ("no DLE ACK within 1 s", "DLE NAK").
    """

    message: Message
    attempts: int
    reason: str


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """``message`` was withdrawn (:meth:`Codec.withdraw`) while in flight and its ACK did
    not come in time: it is not sent again, and the next frame goes."""

    message: Message


Event = Message | Delivered | Undelivered | Withdrawn


class FrameError(RemoteProtocolError):
    """Bytes on the line that are not a well-formed frame: damage the link layer recovers from
    (notes §2, §3: the sender re-sends what it got no ACK for).

    :param nak: whether the codec answered with ``DLE NAK`` (a complete frame with a wrong
        checksum or byte count).
    """

    def __init__(self, message: str, data: bytes = b"", *, nak: bool = False) -> None:
        super().__init__(message, data)
        self.nak = nak


# -------------------------------------------------------------------------------------------
# Message layouts: encoding (our messages) and decoding (the peer's)
# -------------------------------------------------------------------------------------------


def _check(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer {low}–{high}, not {value!r}")
    return value


def _ml(matrix: int, level: int) -> int:
    """Matrix/level byte of normal commands: matrix in bits 7–4, level in 3–0 (notes §4.1)."""
    return (_check(matrix, 0, NORMAL_MAX_ML, "matrix (normal form)") << 4) | _check(
        level, 0, NORMAL_MAX_ML, "level (normal form)")


def _mult(high: int, low: int, what_high: str, what_low: str) -> tuple[int, int, int]:
    """Multiplier and two 7-bit numbers (notes §4.2): ``(MULT, high MOD 128, low MOD 128)``."""
    _check(high, 0, NORMAL_MAX_PORT, f"{what_high} (normal form)")
    _check(low, 0, NORMAL_MAX_PORT, f"{what_low} (normal form)")
    return ((high >> 7) << 4) | (low >> 7), high & 0x7F, low & 0x7F


def _word(value: int, what: str) -> bytes:
    """A 16-bit number as ``DIV 256, MOD 256`` (notes §4.3)."""
    return _check(value, 0, EXTENDED_MAX_PORT, what).to_bytes(2, "big")


def _ext_ml(matrix: int, level: int) -> bytes:
    return bytes((_check(matrix, 0, EXTENDED_MAX_ML, "matrix"),
                  _check(level, 0, EXTENDED_MAX_ML, "level")))


def _name_code(length: int, allowed: tuple[int, ...] = (4, 8, 12, 16, 32)) -> int:
    if length not in allowed or isinstance(length, bool):
        raise ValueError(f"name length must be one of {', '.join(map(str, allowed))}, "
                         f"not {length!r}")
    return NAME_CODES[length]


def encode_name(text: str, length: int) -> bytes:
    """A name as its fixed-width field: printable ASCII, padded with spaces (notes §6)."""
    if not isinstance(text, str) or len(text) > length:
        raise ValueError(f"name {text!r} is longer than {length} characters")
    if any(not " " <= c <= "~" for c in text):
        raise ValueError(f"name {text!r} is not printable ASCII")
    return text.ljust(length).encode("ascii")


def decode_name(field: bytes) -> str:
    """A fixed-width name field as text: trailing spaces and NULs removed (notes §6, §14),
    bytes outside printable ASCII shown as ``?``."""
    text = field.rstrip(b" \x00").decode("latin-1")
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _names(names: tuple[str, ...], length: int) -> bytes:
    if not isinstance(names, tuple) or not 0 < len(names) <= 255:
        raise ValueError(f"a names message carries 1–255 names, not {len(names)}")
    return b"".join(encode_name(n, length) for n in names)


def _xp_request(normal: int, extended: int, m: Any) -> bytes:
    if m.extended:
        return bytes((extended,)) + _ext_ml(m.matrix, m.level) + _word(m.destination, "destination")
    mult, dest, _ = _mult(m.destination, 0, "destination", "source")
    return bytes((normal, _ml(m.matrix, m.level), mult, dest))


def _xp(normal: int, extended: int, m: Any, *, flags: bool = False) -> bytes:
    if m.extended:
        if flags and m.source_bad:
            raise ValueError("source_bad exists only in the normal form")
        out = (bytes((extended,)) + _ext_ml(m.matrix, m.level) + _word(m.destination, "destination")
               + _word(m.source, "source"))
        if flags and m.status is not None:
            out += bytes((_check(m.status, 0, 255, "status"),))
        return out
    if flags and m.status is not None:
        raise ValueError("status exists only in the extended form")
    mult, dest, src = _mult(m.destination, m.source, "destination", "source")
    if flags and m.source_bad:
        mult |= 0x08
    return bytes((normal, _ml(m.matrix, m.level), mult, dest, src))


def _protect_state(normal: int, extended: int, m: Any) -> bytes:
    state = _check(m.state, 0, 255, "protect state")
    if m.extended:
        return (bytes((extended,)) + _ext_ml(m.matrix, m.level) + bytes((state,))
                + _word(m.destination, "destination") + _word(m.device, "device"))
    mult, dest, dev = _mult(m.destination, m.device, "destination", "device")
    return bytes((normal, _ml(m.matrix, m.level), state, mult, dest, dev))


def _protect_request(normal: int, extended: int, m: Any) -> bytes:
    if m.extended:
        return (bytes((extended,)) + _ext_ml(m.matrix, m.level)
                + _word(m.destination, "destination") + _word(m.device, "device"))
    mult, dest, dev = _mult(m.destination, m.device, "destination", "device")
    return bytes((normal, _ml(m.matrix, m.level), mult, dest, dev))


def _dump_word(m: TallyDumpWord) -> bytes:
    count = len(m.sources)
    if not 0 < count <= 125:
        raise ValueError(f"a tally dump carries 1–125 tallies, not {count}")
    _check(m.first + count - 1, 0, EXTENDED_MAX_PORT, "last destination")
    body = _word(m.first, "first destination") + b"".join(_word(s, "source") for s in m.sources)
    if m.extended:
        return bytes((151,)) + _ext_ml(m.matrix, m.level) + bytes((count,)) + body
    return bytes((23, _ml(m.matrix, m.level), count)) + body


def _dump_byte(m: TallyDumpByte) -> bytes:
    count = len(m.sources)
    if not 0 < count <= 251:
        raise ValueError(f"a byte tally dump carries 1–251 tallies, not {count}")
    _check(m.first, 0, 255, "first destination (byte dump)")
    return bytes((22, _ml(m.matrix, m.level), count, m.first)) + bytes(
        _check(s, 0, 255, "source (byte dump)") for s in m.sources)


def _source_names_request(m: SourceNamesRequest) -> bytes:
    code = _name_code(m.length)
    if m.extended:
        head = _ext_ml(m.matrix, m.level) + bytes((code,))
        if m.source is None:
            return bytes((228,)) + head
        return bytes((229,)) + head + _word(m.source, "source")
    head = bytes((_ml(m.matrix, m.level), code))
    if m.source is None:
        return bytes((100,)) + head
    return bytes((101,)) + head + _word(m.source, "source")


def _dest_names_request(m: DestinationNamesRequest) -> bytes:
    code = _name_code(m.length)
    if m.extended:
        head = bytes((_check(m.matrix, 0, EXTENDED_MAX_ML, "matrix"), code))
        if m.destination is None:
            return bytes((230,)) + head
        return bytes((231,)) + head + _word(m.destination, "destination")
    head = bytes((_ml(m.matrix, 0), code))
    if m.destination is None:
        return bytes((102,)) + head
    return bytes((103,)) + head + _word(m.destination, "destination")


def _names_response(m: SourceNames | DestinationNames) -> bytes:
    code = _name_code(m.length)
    names = _names(m.names, m.length)
    _check(m.first + len(m.names) - 1, 0, EXTENDED_MAX_PORT, "last name's number")
    tail = bytes((code,)) + _word(m.first, "first") + bytes((len(m.names),)) + names
    if isinstance(m, SourceNames):
        if m.extended:
            return bytes((234,)) + _ext_ml(m.matrix, m.level) + tail
        return bytes((106, _ml(m.matrix, m.level))) + tail
    if m.extended:
        return bytes((235, _check(m.matrix, 0, EXTENDED_MAX_ML, "matrix"))) + tail
    return bytes((107, _ml(m.matrix, 0))) + tail


def _update_name(m: UpdateName) -> bytes:
    code = _name_code(m.length, (4, 8, 12, 16))
    return (bytes((117, _check(m.kind, 0, 3, "name kind"), code,
                   _check(m.matrix, 0, 255, "matrix"), _check(m.level, 0, 255, "level")))
            + _word(m.first, "first") + bytes((len(m.names),)) + _names(m.names, m.length))


def _protect_device_name_request(m: ProtectDeviceNameRequest) -> bytes:
    mult, _, dev = _mult(0, m.device, "destination", "device")
    return bytes((17, mult, dev))


def _protect_device_name(m: ProtectDeviceName) -> bytes:
    mult, _, dev = _mult(0, m.device, "destination", "device")
    return bytes((18, mult, dev)) + encode_name(m.name, 8)


def _implementation_status(m: ImplementationStatus) -> bytes:
    outs, ins = tuple(m.output_commands), tuple(m.input_commands)
    if len(outs) + len(ins) > MAX_DATA - 3:
        raise ValueError("too many command codes for one message")
    return bytes((98, len(outs), len(ins))) + bytes(
        _check(c, 0, 255, "command code") for c in outs + ins)


_ENCODERS: dict[type[Message], Callable[[Any], bytes]] = {
    Interrogate: lambda m: _xp_request(1, 129, m),
    Connect: lambda m: _xp(2, 130, m),
    Tally: lambda m: _xp(3, 131, m, flags=True),
    Connected: lambda m: _xp(4, 132, m, flags=True),
    Maintenance: lambda m: bytes((7, _check(m.function, 0, 255, "function"))) + bytes(m.arguments),
    DualStatusRequest: lambda m: b"\x08",
    DualStatus: lambda m: bytes((9, (1 if m.slave_active else 0) | (2 if m.this_active else 0),
                                 _check(m.idle_state, 0, 255, "idle state"))),
    ProtectInterrogate: lambda m: _xp_request(10, 138, m),
    ProtectTally: lambda m: _protect_state(11, 139, m),
    ProtectConnect: lambda m: _protect_request(12, 140, m),
    ProtectConnected: lambda m: _protect_state(13, 141, m),
    ProtectDisconnect: lambda m: _protect_request(14, 142, m),
    ProtectDisconnected: lambda m: _protect_state(15, 143, m),
    ProtectDeviceNameRequest: lambda m: _protect_device_name_request(m),
    ProtectDeviceName: _protect_device_name,
    TallyDumpRequest: lambda m: (bytes((149,)) + _ext_ml(m.matrix, m.level) if m.extended
                                 else bytes((21, _ml(m.matrix, m.level)))),
    TallyDumpByte: _dump_byte,
    TallyDumpWord: _dump_word,
    NamesUpdated: lambda m: (bytes((30,)) + _check(m.matrices, 0, 2**32 - 1, "matrices").to_bytes(
        4, "big") + _check(m.name_types, 0, 2**32 - 1, "name types").to_bytes(4, "big")),
    ImplementationRequest: lambda m: b"\x61",
    ImplementationStatus: _implementation_status,
    InvalidMessage: lambda m: bytes((99, _check(m.command, 0, 255, "command"))),
    SourceNamesRequest: _source_names_request,
    DestinationNamesRequest: _dest_names_request,
    SourceNames: _names_response,
    DestinationNames: _names_response,
    UpdateName: _update_name,
    UnknownMessage: lambda m: bytes((_check(m.command, 0, 255, "command"),)) + bytes(m.payload),
}


#: message class -> (normal command, extended command) (notes §5–§7).
_COMMANDS: dict[type[Message], tuple[int, int]] = {
    Interrogate: (1, 129), Connect: (2, 130), Tally: (3, 131), Connected: (4, 132),
    Maintenance: (7, 7), DualStatusRequest: (8, 8), DualStatus: (9, 9),
    ProtectInterrogate: (10, 138), ProtectTally: (11, 139), ProtectConnect: (12, 140),
    ProtectConnected: (13, 141), ProtectDisconnect: (14, 142), ProtectDisconnected: (15, 143),
    ProtectDeviceNameRequest: (17, 17), ProtectDeviceName: (18, 18),
    TallyDumpRequest: (21, 149), TallyDumpByte: (22, 22), TallyDumpWord: (23, 151),
    NamesUpdated: (30, 30), ImplementationRequest: (97, 97), ImplementationStatus: (98, 98),
    InvalidMessage: (99, 99), SourceNames: (106, 234), DestinationNames: (107, 235),
    UpdateName: (117, 117),
}


def command_of(message: Message) -> int:
    """The command byte ``message`` is sent with (without encoding it)."""
    if isinstance(message, UnknownMessage):
        return message.command
    if isinstance(message, SourceNamesRequest):
        return (228 if message.extended else 100) + (message.source is not None)
    if isinstance(message, DestinationNamesRequest):
        return (230 if message.extended else 102) + (message.destination is not None)
    normal, extended = _COMMANDS[type(message)]
    return extended if getattr(message, "extended", False) else normal


def encode_message(message: Message) -> bytes:
    """The DATA (command byte and message bytes) of ``message``.

    :raises ValueError: when a number does not fit the message's form, or DATA would be
        longer than :data:`MAX_DATA`.
    """
    try:
        encoder = _ENCODERS[type(message)]
    except KeyError:
        raise ValueError(f"{message!r} is not an SW-P-08 message") from None
    data = encoder(message)
    if len(data) > MAX_DATA:
        raise ValueError(f"{type(message).__name__} would be {len(data)} bytes; a frame "
                         f"carries at most {MAX_DATA}")
    return data


# -- decoding ---------------------------------------------------------------------------------


def _bad(name: str, why: str, data: bytes) -> RemoteProtocolError:
    return RemoteProtocolError(f"{name} ({data[0]:d}): {why}", bytes(data[:64]))


def _length(data: bytes, name: str, *expected: int) -> None:
    if len(data) - 1 not in expected:
        want = " or ".join(map(str, expected))
        raise _bad(name, f"takes {want} byte(s) after the command, got {len(data) - 1}", data)


def _split_ml(byte: int) -> tuple[int, int]:
    return byte >> 4, byte & 0x0F


def _seven(data: bytes, name: str, *values: int) -> None:
    if any(v > 0x7F for v in values):
        raise _bad(name, "a number byte of a normal command must be 0–127 (notes §4.2)", data)


def _d_xp_request(cls: type, name: str) -> Callable[[bytes], Message]:
    def decode(data: bytes) -> Message:
        if data[0] >= 128:
            _length(data, name, 4)
            return cls(data[1], data[2], int.from_bytes(data[3:5], "big"), True)
        _length(data, name, 3)
        matrix, level = _split_ml(data[1])
        _seven(data, name, data[3])
        return cls(matrix, level, ((data[2] >> 4) & 7) * 128 + data[3])
    return decode


def _d_xp(cls: type, name: str, flags: bool) -> Callable[[bytes], Message]:
    def decode(data: bytes) -> Message:
        if data[0] >= 128:
            _length(data, name, *((6, 7) if flags else (6,)))
            dest, src = int.from_bytes(data[3:5], "big"), int.from_bytes(data[5:7], "big")
            if flags:
                return cls(data[1], data[2], dest, src, True,
                           status=data[7] if len(data) == 8 else None)
            return cls(data[1], data[2], dest, src, True)
        _length(data, name, 4)
        matrix, level = _split_ml(data[1])
        mult = data[2]
        _seven(data, name, data[3], data[4])
        dest, src = ((mult >> 4) & 7) * 128 + data[3], (mult & 7) * 128 + data[4]
        if flags:
            return cls(matrix, level, dest, src, source_bad=bool(mult & 0x08))
        return cls(matrix, level, dest, src)
    return decode


def _d_protect_state(cls: type, name: str) -> Callable[[bytes], Message]:
    def decode(data: bytes) -> Message:
        if data[0] >= 128:
            _length(data, name, 7)
            return cls(data[1], data[2], int.from_bytes(data[4:6], "big"), data[3],
                       int.from_bytes(data[6:8], "big"), True)
        _length(data, name, 5)
        matrix, level = _split_ml(data[1])
        mult = data[3]
        _seven(data, name, data[4], data[5])
        return cls(matrix, level, ((mult >> 4) & 7) * 128 + data[4], data[2],
                   (mult & 7) * 128 + data[5])
    return decode


def _d_protect_request(cls: type, name: str) -> Callable[[bytes], Message]:
    def decode(data: bytes) -> Message:
        if data[0] >= 128:
            _length(data, name, 6)
            return cls(data[1], data[2], int.from_bytes(data[3:5], "big"),
                       int.from_bytes(data[5:7], "big"), True)
        _length(data, name, 4)
        matrix, level = _split_ml(data[1])
        mult = data[2]
        _seven(data, name, data[3], data[4])
        return cls(matrix, level, ((mult >> 4) & 7) * 128 + data[3], (mult & 7) * 128 + data[4])
    return decode


def _d_dump_request(data: bytes) -> Message:
    if data[0] >= 128:
        _length(data, "CROSSPOINT TALLY DUMP REQUEST", 2)
        return TallyDumpRequest(data[1], data[2], True)
    _length(data, "CROSSPOINT TALLY DUMP REQUEST", 1)
    return TallyDumpRequest(*_split_ml(data[1]))


def _d_dump_byte(data: bytes) -> Message:
    name = "CROSSPOINT TALLY DUMP (BYTE)"
    if len(data) < 4 or data[2] == 0 or len(data) != 4 + data[2]:
        raise _bad(name, "needs ML, N ≥ 1, first destination and N sources", data)
    return TallyDumpByte(*_split_ml(data[1]), data[3], tuple(data[4:]))


def _d_dump_word(data: bytes) -> Message:
    name = "CROSSPOINT TALLY DUMP (WORD)"
    head = 6 if data[0] >= 128 else 5
    count = data[head - 3] if len(data) >= head else 0
    if len(data) < head or count == 0 or len(data) != head + 2 * count:
        raise _bad(name, "needs matrix/level, N ≥ 1, first destination and N 16-bit sources",
                   data)
    first = int.from_bytes(data[head - 2:head], "big")
    if first + count - 1 > EXTENDED_MAX_PORT:
        raise _bad(name, "destinations beyond 65535", data)
    sources = tuple(int.from_bytes(data[i:i + 2], "big") for i in range(head, len(data), 2))
    if data[0] >= 128:
        return TallyDumpWord(data[1], data[2], first, sources, True)
    return TallyDumpWord(*_split_ml(data[1]), first, sources)


def _d_names(data: bytes, offset: int) -> tuple[int, int, tuple[str, ...]] | None:
    """``(length, first, names)`` from ``LEN, FIRST_HI, FIRST_LO, COUNT, names`` at
    ``offset``, or None when the bytes do not have that layout."""
    if len(data) < offset + 4 or data[offset] not in NAME_LENGTHS:
        return None
    length = NAME_LENGTHS[data[offset]]
    count = data[offset + 3]
    start = offset + 4
    if count == 0 or len(data) != start + count * length:
        return None
    first = int.from_bytes(data[offset + 1:offset + 3], "big")
    if first + count - 1 > EXTENDED_MAX_PORT:
        return None
    names = tuple(decode_name(data[i:i + length]) for i in range(start, len(data), length))
    return length, first, names


def _d_source_names(data: bytes) -> Message:
    ext = data[0] >= 128
    parsed = _d_names(data, 3 if ext else 2)
    if parsed is None:
        raise _bad("SOURCE NAMES RESPONSE", "needs a name-length code 0–4, a first number, "
                   "COUNT ≥ 1 and COUNT fixed-width names", data)
    length, first, names = parsed
    if ext:
        return SourceNames(data[1], data[2], length, first, names, True)
    return SourceNames(*_split_ml(data[1]), length, first, names)


def _d_dest_names(data: bytes) -> Message:
    if data[0] >= 128:
        # Issue 32 layout first; then the level byte older issues show (notes §6, 235)
        parsed = _d_names(data, 2) or _d_names(data, 3)
        if parsed is not None:
            return DestinationNames(data[1], *parsed, True)
    else:
        parsed = _d_names(data, 2)
        if parsed is not None:
            return DestinationNames(data[1] >> 4, *parsed)
    raise _bad("DEST ASSOCIATION NAMES RESPONSE", "needs a name-length code 0–4, a first "
               "number, COUNT ≥ 1 and COUNT fixed-width names", data)


def _d_source_names_request(data: bytes) -> Message:
    name = "SOURCE NAMES REQUEST"
    ext = data[0] >= 128
    single = data[0] in (101, 229)
    _length(data, name, (3 if ext else 2) + (2 if single else 0))
    code = data[3] if ext else data[2]
    if code not in NAME_LENGTHS:
        raise _bad(name, f"name-length code {code} is not 0–4", data)
    source = int.from_bytes(data[-2:], "big") if single else None
    if ext:
        return SourceNamesRequest(data[1], data[2], NAME_LENGTHS[code], source, True)
    return SourceNamesRequest(*_split_ml(data[1]), NAME_LENGTHS[code], source)


def _d_dest_names_request(data: bytes) -> Message:
    name = "DEST ASSOCIATION NAMES REQUEST"
    ext = data[0] >= 128
    single = data[0] in (103, 231)
    _length(data, name, 2 + (2 if single else 0))
    if data[2] not in NAME_LENGTHS:
        raise _bad(name, f"name-length code {data[2]} is not 0–4", data)
    dest = int.from_bytes(data[3:5], "big") if single else None
    return DestinationNamesRequest(data[1] if ext else data[1] >> 4, NAME_LENGTHS[data[2]],
                                   dest, ext)


def _d_update_name(data: bytes) -> Message:
    name = "UPDATE NAME REQUEST"
    if len(data) < 8 or data[1] > 3 or data[2] not in (0, 1, 2, 3):
        raise _bad(name, "needs TYPE 0–3, LEN 0–3, matrix, level, first, N and N names", data)
    length, count = NAME_LENGTHS[data[2]], data[7]
    if count == 0 or len(data) != 8 + count * length:
        raise _bad(name, f"N={count} names of {length} characters do not fill the message",
                   data)
    names = tuple(decode_name(data[i:i + length]) for i in range(8, len(data), length))
    return UpdateName(data[1], length, data[3], data[4], int.from_bytes(data[5:7], "big"), names)


def _d_protect_device_name_request(data: bytes) -> Message:
    _length(data, "PROTECT DEVICE NAME REQUEST", 2)
    _seven(data, "PROTECT DEVICE NAME REQUEST", data[2])
    return ProtectDeviceNameRequest((data[1] & 7) * 128 + data[2])


def _d_protect_device_name(data: bytes) -> Message:
    _length(data, "PROTECT DEVICE NAME RESPONSE", 10)
    _seven(data, "PROTECT DEVICE NAME RESPONSE", data[2])
    return ProtectDeviceName((data[1] & 7) * 128 + data[2], decode_name(data[3:11]))


def _d_dual_status(data: bytes) -> Message:
    _length(data, "DUAL CONTROLLER STATUS RESPONSE", 2)
    return DualStatus(bool(data[1] & 1), bool(data[1] & 2), data[2])


def _d_names_updated(data: bytes) -> Message:
    _length(data, "NAMES UPDATED", 8)
    return NamesUpdated(int.from_bytes(data[1:5], "big"), int.from_bytes(data[5:9], "big"))


def _d_implementation_status(data: bytes) -> Message:
    if len(data) < 3 or len(data) != 3 + data[1] + data[2]:
        raise _bad("IMPLEMENTATION STATUS", "needs m, n, m and n command codes", data)
    return ImplementationStatus(tuple(data[3:3 + data[1]]), tuple(data[3 + data[1]:]))


def _d_fixed(message: Message, name: str) -> Callable[[bytes], Message]:
    def decode(data: bytes) -> Message:
        _length(data, name, 0)
        return message
    return decode


def _d_invalid(data: bytes) -> Message:
    _length(data, "INVALID MESSAGE", 1)
    return InvalidMessage(data[1])


def _d_maintenance(data: bytes) -> Message:
    if len(data) < 2:
        raise _bad("MAINTENANCE", "needs a function byte", data)
    return Maintenance(data[1], bytes(data[2:]))


#: What each role receives: command byte -> decoder (the peer's messages, notes §5–§7).
_DEVICE_RECEIVES: dict[int, Callable[[bytes], Message]] = {
    1: _d_xp_request(Interrogate, "CROSSPOINT INTERROGATE"),
    129: _d_xp_request(Interrogate, "EXT. CROSSPOINT INTERROGATE"),
    2: _d_xp(Connect, "CROSSPOINT CONNECT", False),
    130: _d_xp(Connect, "EXT. CROSSPOINT CONNECT", False),
    7: _d_maintenance,
    8: _d_fixed(DualStatusRequest(), "DUAL CONTROLLER STATUS REQUEST"),
    10: _d_xp_request(ProtectInterrogate, "PROTECT INTERROGATE"),
    138: _d_xp_request(ProtectInterrogate, "EXT. PROTECT INTERROGATE"),
    12: _d_protect_request(ProtectConnect, "PROTECT CONNECT"),
    140: _d_protect_request(ProtectConnect, "EXT. PROTECT CONNECT"),
    14: _d_protect_request(ProtectDisconnect, "PROTECT DISCONNECT"),
    142: _d_protect_request(ProtectDisconnect, "EXT. PROTECT DISCONNECT"),
    17: _d_protect_device_name_request,
    21: _d_dump_request,
    149: _d_dump_request,
    97: _d_fixed(ImplementationRequest(), "IMPLEMENTATION REQUEST"),
    99: _d_invalid,
    100: _d_source_names_request,
    101: _d_source_names_request,
    228: _d_source_names_request,
    229: _d_source_names_request,
    102: _d_dest_names_request,
    103: _d_dest_names_request,
    230: _d_dest_names_request,
    231: _d_dest_names_request,
    117: _d_update_name,
}
_CONTROLLER_RECEIVES: dict[int, Callable[[bytes], Message]] = {
    3: _d_xp(Tally, "CROSSPOINT TALLY", True),
    131: _d_xp(Tally, "EXT. CROSSPOINT TALLY", True),
    4: _d_xp(Connected, "CROSSPOINT CONNECTED", True),
    132: _d_xp(Connected, "EXT. CROSSPOINT CONNECTED", True),
    9: _d_dual_status,
    11: _d_protect_state(ProtectTally, "PROTECT TALLY"),
    139: _d_protect_state(ProtectTally, "EXT. PROTECT TALLY"),
    13: _d_protect_state(ProtectConnected, "PROTECT CONNECTED"),
    141: _d_protect_state(ProtectConnected, "EXT. PROTECT CONNECTED"),
    15: _d_protect_state(ProtectDisconnected, "PROTECT DISCONNECTED"),
    143: _d_protect_state(ProtectDisconnected, "EXT. PROTECT DISCONNECTED"),
    18: _d_protect_device_name,
    22: _d_dump_byte,
    23: _d_dump_word,
    151: _d_dump_word,
    30: _d_names_updated,
    98: _d_implementation_status,
    99: _d_invalid,
    106: _d_source_names,
    234: _d_source_names,
    107: _d_dest_names,
    235: _d_dest_names,
}
_RECEIVES = {Role.DEVICE: _DEVICE_RECEIVES, Role.CONTROLLER: _CONTROLLER_RECEIVES}
_SENT_BY: dict[Role, frozenset[type[Message]]] = {
    Role.CONTROLLER: frozenset({
        Interrogate, Connect, Maintenance, DualStatusRequest, ProtectInterrogate,
        ProtectConnect, ProtectDisconnect, ProtectDeviceNameRequest, TallyDumpRequest,
        ImplementationRequest, InvalidMessage, SourceNamesRequest, DestinationNamesRequest,
        UpdateName, UnknownMessage,
    }),
    Role.DEVICE: frozenset({
        Tally, Connected, DualStatus, ProtectTally, ProtectConnected, ProtectDisconnected,
        ProtectDeviceName, TallyDumpByte, TallyDumpWord, NamesUpdated, ImplementationStatus,
        InvalidMessage, SourceNames, DestinationNames, UnknownMessage,
    }),
}


def receives(role: Role) -> frozenset[int]:
    """The command bytes a codec of ``role`` decodes into messages (others: UnknownMessage)."""
    return frozenset(_RECEIVES[role])


def sends(role: Role) -> frozenset[type[Message]]:
    """The message classes a codec of ``role`` sends."""
    return _SENT_BY[role]


def decode_message(role: Role, data: bytes) -> Message:
    """The message a codec of ``role`` receives in ``data`` (a frame's DATA, ≥ 1 byte).

    :raises RemoteProtocolError: when the bytes break the command's layout.
    """
    decoder = _RECEIVES[role].get(data[0])
    if decoder is None:
        return UnknownMessage(data[0], bytes(data[1:]))
    return decoder(bytes(data))


# -------------------------------------------------------------------------------------------
# Framing (notes §2, spec §2.1)
# -------------------------------------------------------------------------------------------


def checksum(data: bytes, btc: int | None = None) -> int:
    """CHK: the 8-bit two's complement of the sum of DATA and BTC (notes §2)."""
    return -(sum(data) + (len(data) if btc is None else btc)) & 0xFF


def encode_frame(data: bytes, *, byte_count_skew: int = 0) -> bytes:
    """``DLE STX | DATA BTC CHK (0x10 doubled) | DLE ETX`` (notes §2).

    :param byte_count_skew: added to BTC (the checksum is computed with the skewed value):
        only for emulators that test a peer's tolerance of off-by-one byte counts.
    """
    if not 0 < len(data) <= MAX_DATA:
        raise ValueError(f"DATA must be 1–{MAX_DATA} bytes, not {len(data)}")
    btc = (len(data) + byte_count_skew) & 0xFF
    body = bytes(data) + bytes((btc, checksum(data, btc)))
    return b"\x10\x02" + body.replace(b"\x10", b"\x10\x10") + b"\x10\x03"


_IDLE, _IDLE_DLE, _FRAME, _FRAME_DLE = range(4)
#: raw (unstuffed) bytes between DLE STX and DLE ETX: DATA, BTC, CHK, and one byte of
#: slack for a byte count off by one.
_MAX_BODY = MAX_DATA + 3


class _Ack:
    pass


class _Nak:
    pass


_ACK_ITEM, _NAK_ITEM = _Ack(), _Nak()


class _FrameDecoder:
    """The receive state machine of notes §2. Items: DATA bytes, ``_ACK_ITEM``, ``_NAK_ITEM``.

    Errors are reported at fixed points of the byte stream (a garbage run when the next
    DLE sequence starts or when it reaches ``max_garbage`` bytes), so the same bytes give the
    same items and errors however they are split.
    """

    def __init__(self, byte_count_tolerance: int, max_garbage: int) -> None:
        self.tolerance = byte_count_tolerance
        self.max_garbage = max_garbage
        self._buf = bytearray()
        self._pos = 0
        self._state = _IDLE
        self._frame = bytearray()
        self._garbage = 0
        self._held: object | None = None  #: an item waiting behind a garbage report
        self.skewed = 0  #: frames accepted with an off-by-one byte count

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def _garbage_error(self) -> FrameError:
        count, self._garbage = self._garbage, 0
        return FrameError(f"{count} byte(s) outside any frame discarded (notes §2: resync)")

    def next(self) -> bytes | object | None:
        if self._held is not None:
            item, self._held = self._held, None
            return item
        buf = self._buf
        while self._pos < len(buf):
            state = self._state
            if state == _IDLE:
                end = buf.find(DLE, self._pos)
                stop = len(buf) if end < 0 else end
                take = min(stop - self._pos, self.max_garbage - self._garbage)
                self._pos += take
                self._garbage += take
                if self._garbage >= self.max_garbage:
                    raise self._garbage_error()
                if end < 0:
                    return None
                self._pos += 1
                self._state = _IDLE_DLE
            elif state == _IDLE_DLE:
                byte = buf[self._pos]
                self._pos += 1
                if byte == STX:
                    self._state = _FRAME
                    self._frame.clear()
                    if self._garbage:
                        raise self._garbage_error()
                elif byte in (ACK, NAK):
                    self._state = _IDLE
                    item = _ACK_ITEM if byte == ACK else _NAK_ITEM
                    if self._garbage:
                        self._held = item
                        raise self._garbage_error()
                    return item
                elif byte == DLE:  # the first DLE was stray; this one may start something
                    self._garbage += 1
                    if self._garbage >= self.max_garbage:
                        raise self._garbage_error()
                else:  # a stray DLE ETX, or DLE and any other byte
                    self._state = _IDLE
                    self._garbage += 2
                    if self._garbage >= self.max_garbage:
                        raise self._garbage_error()
            elif state == _FRAME:
                end = buf.find(DLE, self._pos)
                stop = len(buf) if end < 0 else end
                take = min(stop - self._pos, _MAX_BODY + 1 - len(self._frame))
                self._frame += buf[self._pos:self._pos + take]
                self._pos += take
                if len(self._frame) > _MAX_BODY:
                    return self._too_long()
                if end < 0 or self._pos < end:
                    return None
                self._pos += 1
                self._state = _FRAME_DLE
            else:  # _FRAME_DLE
                byte = buf[self._pos]
                self._pos += 1
                if byte == DLE:
                    self._frame.append(DLE)
                    self._state = _FRAME
                    if len(self._frame) > _MAX_BODY:
                        return self._too_long()
                elif byte == ETX:
                    self._state = _IDLE
                    return self._finish()
                elif byte in (ACK, NAK):  # embedded in a frame (notes §2)
                    self._state = _FRAME
                    return _ACK_ITEM if byte == ACK else _NAK_ITEM
                elif byte == STX:
                    lost = len(self._frame)
                    self._frame.clear()
                    self._state = _FRAME
                    raise FrameError(f"frame interrupted by a new DLE STX ({lost} byte(s) lost)")
                else:
                    self._state = _IDLE
                    lost = bytes(self._frame[:64])
                    self._frame.clear()
                    raise FrameError(f"DLE followed by {byte:02X} inside a frame "
                                     "(only 10, 03, 02, 06 or 15 may follow)", lost)
        return None

    def _too_long(self) -> None:
        head = bytes(self._frame[:64])
        self._frame.clear()
        self._state = _IDLE
        raise FrameError(f"frame longer than {_MAX_BODY} bytes without DLE ETX; discarded", head)

    def _finish(self) -> bytes:
        body = bytes(self._frame)
        self._frame.clear()
        if len(body) < 3:
            raise FrameError(f"frame of {len(body)} byte(s) is too short for DATA, BTC and CHK",
                             body, nak=True)
        if sum(body) & 0xFF:
            raise FrameError(f"bad checksum {body[-1]:02X} (expected "
                             f"{checksum(body[:-2], body[-2]):02X})", body, nak=True)
        data, btc = body[:-2], body[-2]
        if btc != len(data):
            if abs(btc - len(data)) > self.tolerance:
                raise FrameError(f"byte count {btc} but {len(data)} DATA byte(s)", body, nak=True)
            self.skewed += 1
        return data


# -------------------------------------------------------------------------------------------
# The link: ACK/NAK, stop-and-wait, retries (notes §3, spec §2.2)
# -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class LinkStats:
    """What a codec has done since it was made (for logs and benchmarks)."""

    frames_sent: int = 0  #: frames sent for the first time
    retransmissions: int = 0  #: frames sent again (NAK or no ACK in time)
    frames_received: int = 0  #: well-formed frames received
    damaged_frames: int = 0  #: frame errors (bad checksum, count, DLE sequence, garbage)
    acks_received: int = 0
    naks_received: int = 0
    acks_sent: int = 0
    naks_sent: int = 0
    stray_acks: int = 0  #: ACK or NAK with no frame waiting for it
    skewed_byte_counts: int = 0  #: frames accepted with a byte count off by one
    bytes_sent: int = 0
    bytes_received: int = 0


_UNSET: Any = object()


@dataclass(slots=True)
class _Outgoing:
    message: Message
    frame: bytes
    attempts: int = 0
    sent_at: float | None = None
    #: withdrawn while in flight: its ACK is still awaited, but it is never sent again
    final: bool = False


class Codec:
    """One end of an SW-P-08 link, ``role`` deciding what it sends and receives.

    Feed the peer's bytes with :meth:`receive_data`, read what they mean with
    :meth:`next_event` / :meth:`events`, queue messages with :meth:`send`, and write
    :meth:`data_to_send` to the peer after each of these calls. Call :meth:`tick` at
    :meth:`next_deadline` for the ACK timer.

    :param ack_timeout_s: how long a frame waits for ``DLE ACK`` before it is sent again
        (notes §3: 1 s).
    :param retries: re-sends before a frame is given up (notes §3: 5).
    :param byte_count_tolerance: how far BTC may be from the DATA length in a frame that is
        still accepted (its checksum must be right).
    :param auto_ack: answer each well-formed frame with ``DLE ACK`` at once (as the spec asks:
        within 10 ms); with False call :meth:`acknowledge` yourself.
    :param byte_count_skew: added to the byte count of every frame sent (fault injection for
        emulators; 0 otherwise).
    :param max_queue: most messages waiting to be sent; :meth:`send` raises
        ``OverflowError`` beyond it.
    :param max_garbage: a run of bytes outside any frame is reported (FrameError) at most
        every this many bytes.
    """

    def __init__(
        self, role: Role, *, ack_timeout_s: float = 1.0, retries: int = 5,
        byte_count_tolerance: int = 1, auto_ack: bool = True, byte_count_skew: int = 0,
        max_queue: int = 1 << 16, max_garbage: int = 256,
    ) -> None:
        self.role = role
        self.ack_timeout_s = ack_timeout_s
        self.retries = retries
        self.auto_ack = auto_ack
        self.byte_count_skew = byte_count_skew
        self.max_queue = max_queue
        self.stats = LinkStats()
        self._decoder = _FrameDecoder(byte_count_tolerance, max_garbage)
        self._receives = _RECEIVES[role]
        self._sends = _SENT_BY[role]
        self._events: deque[Event] = deque()
        self._queue: deque[_Outgoing] = deque()
        self._in_flight: _Outgoing | None = None
        self._out = bytearray()
        self._now: float | None = None

    # -- time ---------------------------------------------------------------------------
    def _clock(self, now: float) -> None:
        self._now = now
        flying = self._in_flight
        if flying is not None and flying.sent_at is None:
            flying.sent_at = now  # sent by a call that did not know the time

    # -- receiving -----------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        """Add bytes from the peer (read them with :meth:`next_event`)."""
        self._clock(now)
        self.stats.bytes_received += len(data)
        self._decoder.feed(data)

    def next_event(self) -> Event | None:
        """The next message or link event, or None until more data arrives.

        :raises FrameError: for bytes that are not a well-formed frame (answered with
            ``DLE NAK`` when ``nak``).
        :raises RemoteProtocolError: for a well-formed frame that breaks its command's layout
            (it has been acknowledged). The codec may be used further after either.
        """
        if self._events:
            return self._events.popleft()
        while True:
            try:
                item = self._decoder.next()
            except FrameError as exc:
                self.stats.damaged_frames += 1
                if exc.nak:
                    self._out += NAK_BYTES
                    self.stats.naks_sent += 1
                raise
            if item is None:
                return None
            if item is _ACK_ITEM:
                event = self._acked()
            elif item is _NAK_ITEM:
                event = self._naked()
            else:
                assert isinstance(item, bytes)
                self.stats.frames_received += 1
                self.stats.skewed_byte_counts = self._decoder.skewed
                if self.auto_ack:
                    self.acknowledge()
                decoder = self._receives.get(item[0])
                if decoder is None:
                    return UnknownMessage(item[0], bytes(item[1:]))
                return decoder(item)
            if event is not None:
                return event

    def events(self) -> Iterator[Event]:
        """Every event available now (stops at the first error, which it raises)."""
        while (event := self.next_event()) is not None:
            yield event

    def acknowledge(self) -> None:
        """Queue ``DLE ACK`` (done for each frame already unless ``auto_ack`` is False)."""
        self._out += ACK_BYTES
        self.stats.acks_sent += 1

    def _acked(self) -> Event | None:
        self.stats.acks_received += 1
        flying = self._in_flight
        if flying is None:
            self.stats.stray_acks += 1
            return None
        self._in_flight = None
        self._next_frame()
        return Delivered(flying.message)

    def _naked(self) -> Event | None:
        self.stats.naks_received += 1
        flying = self._in_flight
        if flying is None:
            self.stats.stray_acks += 1
            return None
        return self._retry(flying, "DLE NAK")

    def _retry(self, flying: _Outgoing, reason: str) -> Event | None:
        if flying.final:  # withdrawn: never sent again
            self._in_flight = None
            self._next_frame()
            return Withdrawn(flying.message)
        if flying.attempts > self.retries:
            self._in_flight = None
            self._next_frame()
            return Undelivered(flying.message, flying.attempts, reason)
        self.stats.retransmissions += 1
        self._transmit(flying)
        return None

    # -- sending -------------------------------------------------------------------------
    def send(self, message: Message, now: float | None = None) -> None:
        """Queue ``message``; it goes out when every frame before it has been acknowledged.

        :param now: the time, when the caller knows it (else the ACK timer starts at the next
            call that passes the time).
        :raises ValueError: when this role does not send ``message`` or it does not fit.
        :raises OverflowError: when ``max_queue`` messages are already waiting.
        """
        if type(message) not in self._sends:
            raise ValueError(f"a {self.role.value} does not send {type(message).__name__}")
        if len(self._queue) >= self.max_queue:
            raise OverflowError(f"{len(self._queue)} SW-P-08 messages already wait to be sent")
        frame = encode_frame(encode_message(message), byte_count_skew=self.byte_count_skew)
        if now is not None:
            self._clock(now)
        self._queue.append(_Outgoing(message, frame))
        if self._in_flight is None:
            self._next_frame(now)

    def _next_frame(self, now: Any = _UNSET) -> None:
        if self._queue:
            entry = self._queue.popleft()
            self._in_flight = entry
            self.stats.frames_sent += 1
            self._transmit(entry, now)

    def _transmit(self, entry: _Outgoing, now: Any = _UNSET) -> None:
        """Put ``entry`` on the line; its ACK timer starts at ``now`` (None: not known yet;
        unset: the time of the call being handled)."""
        entry.attempts += 1
        entry.sent_at = self._now if now is _UNSET else now
        self._out += entry.frame

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer since the last call."""
        data = bytes(self._out)
        self._out.clear()
        self.stats.bytes_sent += len(data)
        return data

    # -- timers --------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called (the ACK timer of the frame in flight), or None."""
        flying = self._in_flight
        if flying is None or flying.sent_at is None:
            return None
        return flying.sent_at + self.ack_timeout_s

    def tick(self, now: float) -> None:
        """Advance the ACK timer to ``now``: re-send, or give up (:class:`Undelivered` from
        :meth:`next_event`)."""
        self._clock(now)
        flying = self._in_flight
        if flying is not None and flying.sent_at is not None and \
                now >= flying.sent_at + self.ack_timeout_s:
            event = self._retry(flying, f"no DLE ACK within {self.ack_timeout_s:g} s")
            if event is not None:
                self._events.append(event)

    # -- state ---------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Messages not yet acknowledged: the one in flight and those queued."""
        return len(self._queue) + (self._in_flight is not None)

    @property
    def in_flight(self) -> Message | None:
        """The message sent and waiting for its ACK."""
        return None if self._in_flight is None else self._in_flight.message

    def withdraw(self, predicate: Callable[[Message], bool]) -> list[Message]:
        """Take back every message ``predicate`` selects that is not yet on the line: those
        queued, and the one in flight if its bytes are still in :meth:`data_to_send`'s
        buffer (a frame never sent is dropped; a re-send not yet handed out is taken back).
        One in flight that went out already keeps waiting for its ACK but is never sent
        again (:class:`Withdrawn` if the ACK does not come).

        :returns: the messages dropped without ever going out.
        """
        dropped = [entry.message for entry in self._queue if predicate(entry.message)]
        if dropped:
            self._queue = deque(e for e in self._queue if not predicate(e.message))
        flying = self._in_flight
        if flying is not None and predicate(flying.message):
            while flying.attempts > 0 and (start := self._out.rfind(flying.frame)) >= 0:
                del self._out[start:start + len(flying.frame)]  # a copy still ours
                flying.attempts -= 1
            if flying.attempts == 0:  # it never went out: as if never sent
                self._in_flight = None
                self.stats.frames_sent -= 1
                dropped.append(flying.message)
                self._next_frame()
            else:
                flying.final = True
        return dropped

    def clear_queue(self) -> list[Message]:
        """Drop the messages not yet sent (the one in flight stays); return them."""
        dropped = [entry.message for entry in self._queue]
        self._queue.clear()
        return dropped


__all__ = [
    "ACK_BYTES", "Codec", "Command", "Connect", "Connected", "Delivered", "DestinationNames",
    "DestinationNamesRequest", "DualStatus", "DualStatusRequest", "EXTENDED_MAX_ML",
    "EXTENDED_MAX_PORT", "Event", "FrameError", "ImplementationRequest", "ImplementationStatus",
    "Interrogate", "InvalidMessage", "LinkStats", "MAX_DATA", "Maintenance", "Message",
    "NAK_BYTES", "NAMES_PER_MESSAGE", "NAME_CODES", "NAME_LENGTHS", "NORMAL_MAX_ML",
    "NORMAL_MAX_PORT", "NameKind", "NamesUpdated", "ProtectConnect", "ProtectConnected",
    "ProtectDeviceName", "ProtectDeviceNameRequest", "ProtectDisconnect", "ProtectDisconnected",
    "ProtectInterrogate", "ProtectState", "ProtectTally", "Role", "SourceNames",
    "SourceNamesRequest", "TALLIES_PER_DUMP", "Tally", "TallyDumpByte", "TallyDumpRequest",
    "TallyDumpWord", "Undelivered", "UnknownMessage", "UpdateName", "Withdrawn", "checksum",
    "command_of", "decode_message", "decode_name", "encode_frame", "encode_message", "encode_name", "receives", "sends",
]
