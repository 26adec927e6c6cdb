"""S101, the framing under Ember+: frames, escaping, CRC, keep-alives, multi-packet messages.

A sans-I/O codec (no sockets, no clock): :class:`S101Decoder` takes the bytes a connection
read and gives events; :func:`frame_message`, :func:`keepalive_request` and
:func:`keepalive_response` give the bytes to write. Both roles use it (the driver and the
emulator). Wire notes: ../shared/protocols/ember-plus.md §2 (from Lawo's "Ember+
Documentation", S101 pp. 78-82).

**Variant 1** (escaping; every provider speaks it, and tieline sends only it): ``FE`` begins
a frame, ``FF`` ends it; inside, every byte >= ``F8`` is sent as ``FD, byte ^ 0x20``. The
frame carries the S101 header, the payload and a CRC-16/CCITT (reflected, polynomial
``0x8408``, initial ``0xFFFF``, inverted, low byte first) over both. **Variant 2** (no
escaping, no CRC; optional since Glow 2.50) is decoded too: ``F8``, a byte giving the
number of length bytes, the length big-endian, the payload.

The header: slot ``00``, message type ``0E`` (EmBER), a command (``00`` EmBER packet, ``01``
keep-alive request, ``02`` keep-alive response), version ``01``; an EmBER packet goes on
with flags (``80`` first, ``40`` last, ``C0`` both, ``00`` a middle one, ``20`` empty), the
DTD (``01``, Glow), the count of application bytes (``02``) and those bytes (the Glow
version, minor then major). A message longer than one packet is cut into several, and
reassembled here before it is decoded.

**Errors.** A damaged frame (bad CRC, an escape before the end, a frame or message beyond
the bounds, a header that is not S101's) is discarded and reported by raising
:class:`FramingError` from :meth:`S101Decoder.next_event`; the decoder has already moved
on, so the caller logs it and asks again (the next ``FE`` starts afresh). Bytes between
frames are skipped and counted. Nothing else is raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn

import re

from tieline import RemoteProtocolError

BOF, EOF, CE, XOR, BOFNE = 0xFE, 0xFF, 0xFD, 0x20, 0xF8
SLOT, MESSAGE_EMBER, VERSION, DTD_GLOW = 0x00, 0x0E, 0x01, 0x01
CMD_EMBER, CMD_KEEPALIVE_REQUEST, CMD_KEEPALIVE_RESPONSE = 0x00, 0x01, 0x02
FLAG_FIRST, FLAG_LAST, FLAG_EMPTY = 0x80, 0x40, 0x20
#: the Glow DTD version sent in the application bytes (2.31, as emberplus-connection does)
GLOW_VERSION = (31, 2)
#: the receiver's CRC over data and the two CRC bytes, when they are right
CRC_GOOD = 0xF0B8
#: payload bytes per packet when a message is cut (emberplus-connection cuts at about 1 kB)
PACKET_PAYLOAD = 1024
#: bytes that may not appear unescaped inside a variant-1 frame (FD, FE, FF are handled)
_INVALID = re.compile(rb"[\xf8-\xfc]")


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """The running CRC-16/CCITT (reflected) of ``data``, not inverted."""
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def s101_crc(data: bytes) -> int:
    """The CRC a frame carries for ``data`` (header and payload): inverted."""
    return ~crc_ccitt(data) & 0xFFFF


def escape(data: bytes) -> bytes:
    """Variant 1 escaping: each byte >= ``F8`` becomes ``FD, byte ^ 0x20``."""
    out = bytearray()
    for byte in data:
        if byte >= BOFNE:
            out += bytes((CE, byte ^ XOR))
        else:
            out.append(byte)
    return bytes(out)


def frame(data: bytes) -> bytes:
    """One variant-1 frame of ``data`` (an S101 header and its payload), with its CRC."""
    crc = s101_crc(data)
    return bytes((BOF,)) + escape(data + bytes((crc & 0xFF, crc >> 8))) + bytes((EOF,))


def keepalive_request() -> bytes:
    return frame(bytes((SLOT, MESSAGE_EMBER, CMD_KEEPALIVE_REQUEST, VERSION)))


def keepalive_response() -> bytes:
    return frame(bytes((SLOT, MESSAGE_EMBER, CMD_KEEPALIVE_RESPONSE, VERSION)))


def frame_message(payload: bytes, *, packet_payload: int = PACKET_PAYLOAD,
                  glow_version: tuple[int, int] = GLOW_VERSION) -> bytes:
    """An EmBER message as frames: one when it fits ``packet_payload`` bytes, else cut
    into first, middle and last packets (an empty payload: one packet flagged empty)."""
    chunks = [payload[i:i + packet_payload] for i in range(0, len(payload), packet_payload)]
    out = bytearray()
    for index, chunk in enumerate(chunks or [b""]):
        flags = (FLAG_FIRST if index == 0 else 0) | (FLAG_LAST if index == len(chunks) - 1
                                                     or not chunks else 0)
        if not chunks:
            flags |= FLAG_EMPTY
        header = bytes((SLOT, MESSAGE_EMBER, CMD_EMBER, VERSION, flags, DTD_GLOW, 2,
                        *glow_version))
        out += frame(header + chunk)
    return bytes(out)


# -- events ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class KeepAliveRequest:
    """The peer asks for a sign of life: answer with :func:`keepalive_response` at once."""


@dataclass(frozen=True, slots=True)
class KeepAliveResponse:
    """The peer answered a keep-alive request."""


@dataclass(frozen=True, slots=True)
class EmberMessage:
    """A whole EmBER message (its packets reassembled): BER bytes for the Glow decoder.

    :param glow_version: the DTD version its first packet named, ``(minor, major)``.
    """

    payload: bytes
    glow_version: tuple[int, int] | None = None


Event = KeepAliveRequest | KeepAliveResponse | EmberMessage


class FramingError(RemoteProtocolError):
    """A frame that is not well-formed S101, discarded (the decoder has moved on)."""


@dataclass
class S101Stats:
    frames: int = 0  #: good frames decoded
    damaged: int = 0  #: frames discarded (FramingError)
    skipped: int = 0  #: bytes outside any frame


@dataclass
class S101Decoder:
    """Bytes in, events out (see the module docstring).

    :param max_frame: the longest frame accepted, unescaped (a peer sending more without
        an end is discarded, not buffered without bound).
    :param max_message: the longest message accepted, its packets together.
    """

    max_frame: int = 64 * 1024
    max_message: int = 16 * 1024 * 1024
    stats: S101Stats = field(default_factory=S101Stats)
    _buffer: bytearray = field(default_factory=bytearray)
    _message: bytearray | None = None
    _message_version: tuple[int, int] | None = None
    _ready: Event | None = None

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def events(self) -> Iterator[Event]:
        """Every event the bytes so far make (raises :class:`FramingError` as
        :meth:`next_event` does; iterate again after it)."""
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes come.

        :raises FramingError: a frame was damaged and discarded; call again.
        """
        if self._ready is not None:
            event, self._ready = self._ready, None
            return event
        while True:
            data = self._next_frame()
            if data is None:
                return None
            event = self._decode(data)
            if event is not None:
                return event

    # -- frames --------------------------------------------------------------------------
    def _next_frame(self) -> bytes | None:
        buf = self._buffer
        starts = [i for i in (buf.find(b"\xfe"), buf.find(b"\xf8")) if i >= 0]
        if not starts:
            self.stats.skipped += len(buf)
            buf.clear()
            return None
        start = min(starts)
        if start:
            self.stats.skipped += start
            del buf[:start]
        if buf[0] == BOFNE:
            return self._variant2()
        return self._variant1()

    def _variant1(self) -> bytes | None:
        buf = self._buffer
        end = buf.find(b"\xff", 1)
        again = buf.find(b"\xfe", 1)
        if again >= 0 and (end < 0 or again < end):  # a new frame begins: this one is lost
            del buf[:again]
            self._damaged(f"frame interrupted by a new BOF after {again - 1} byte(s)")
        if end < 0:
            if len(buf) > 2 * self.max_frame + 2:  # escaped, a frame is at most twice as long
                del buf[:]
                self._damaged(f"frame longer than {self.max_frame} bytes without an end")
            return None
        raw = bytes(buf[1:end])
        del buf[:end + 1]
        if _INVALID.search(raw):
            self._damaged("an unescaped byte above F7 inside a frame")
        parts = raw.split(b"\xfd")
        if any(not part for part in parts[1:]):
            self._damaged("an escape with no byte after it")
        data = parts[0] + b"".join(bytes((part[0] ^ XOR,)) + part[1:] for part in parts[1:])
        if len(data) > self.max_frame:
            self._damaged(f"frame longer than {self.max_frame} bytes")
        return self._checked(data)

    def _variant2(self) -> bytes | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        count = buf[1]
        if count & 0xF8 or count == 0:
            del buf[:2]
            self._damaged(f"variant-2 frame with a length-byte count of {count:#04x}")
        if len(buf) < 2 + count:
            return None
        length = int.from_bytes(buf[2:2 + count], "big")
        if length > self.max_frame:
            del buf[:2 + count]
            self._damaged(f"variant-2 frame of {length} bytes (at most {self.max_frame})")
        end = 2 + count + length
        if len(buf) < end:
            return None
        data = bytes(buf[2 + count:end])
        del buf[:end]
        self.stats.frames += 1
        return data

    def _checked(self, data: bytes) -> bytes:
        if len(data) < 2 or crc_ccitt(data) != CRC_GOOD:
            self._damaged(f"bad CRC on a frame of {len(data)} byte(s)")
        self.stats.frames += 1
        return data[:-2]

    def _damaged(self, why: str) -> NoReturn:
        self.stats.damaged += 1
        raise FramingError(f"S101: {why}; discarded")

    # -- header --------------------------------------------------------------------------
    def _decode(self, data: bytes) -> Event | None:
        if len(data) < 4 or data[0] != SLOT or data[1] != MESSAGE_EMBER:
            self._damaged(f"not an EmBER frame (header {data[:4].hex(' ')})")
        command = data[2]
        if command == CMD_KEEPALIVE_REQUEST:
            return KeepAliveRequest()
        if command == CMD_KEEPALIVE_RESPONSE:
            return KeepAliveResponse()
        if command != CMD_EMBER:
            return None  # a command of a later S101 version: not ours to answer
        if len(data) < 7 or len(data) < 7 + data[6]:
            self._damaged(f"EmBER packet header cut short ({len(data)} bytes)")
        flags, app_count = data[4], data[6]
        app = data[7:7 + app_count]
        payload = data[7 + app_count:]
        version = (app[0], app[1]) if app_count >= 2 else None
        unfinished = None
        if flags & FLAG_FIRST:
            if self._message is not None:
                unfinished = len(self._message)
            self._message, self._message_version = bytearray(), version
        elif self._message is None:
            self._damaged("a packet of a message whose first packet was not seen")
        if not flags & FLAG_EMPTY:
            self._message += payload
        if len(self._message) > self.max_message:
            self._message = None
            self._damaged(f"message longer than {self.max_message} bytes")
        event = None
        if flags & FLAG_LAST:
            event = EmberMessage(bytes(self._message), self._message_version)
            self._message = None
        if unfinished is not None:  # reported; what this packet began goes on
            self._ready = event
            self._damaged(f"a message began before the last one ended: the unfinished one "
                          f"({unfinished} bytes)")
        return event


__all__ = [
    "CRC_GOOD", "EmberMessage", "Event", "FramingError", "KeepAliveRequest",
    "KeepAliveResponse", "S101Decoder", "S101Stats", "crc_ccitt", "escape", "frame",
    "frame_message", "keepalive_request", "keepalive_response", "s101_crc",
]
