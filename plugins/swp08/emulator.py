"""An SW-P-08 router (the spec's "controller") built on the DEVICE role of codec.py.

It follows the emulator checklist of the protocol notes (§9): several controllers at once
over TCP (each connection its own link, as Appendix III describes) and on serial lines
(:meth:`~tieline.kit.emulation.DeviceEmulator.serve_stream`); ``DLE ACK`` for every valid frame
at once, ``DLE NAK`` for a damaged one; its own frames re-sent on NAK or after 1 s without
ACK, up to 5 times; state per matrix × level × destination; names per matrix and level.

Answers (notes §5–§7): 01/129 → 03/131 to the asker; 02/130 → the route, then 04/132 to
every controller (the requester included; also when the route was already set, unless
``echo_unchanged`` is False); 21/149 → 23 (or 22 with ``dump_format="byte"``) / 151 in
messages of at most 64 tallies; 100–103 and 228–231 → 106/107 and 234/235; 117 changes
names and NAMES UPDATED (30) follows ``names_updated_delay_s`` after the last change; 08 →
09; 97 → 98; protects 10/12/14 (and extended) → 11, or 13/15 to everyone (also when the
change was not made); 17 → 18; 07 accepted and ignored; anything else, and a malformed
message, → 99 INVALID MESSAGE (with ``answer_invalid``), never in answer to a 99.

A reply uses the extended form when the request did, or when its numbers need it (ports
above 1023, matrix or level above 15); a broadcast uses the form its numbers need, except
to the requester of an extended CONNECT.

Behaviour the notes leave open (§14), chosen here: a CONNECT to a destination protected by
another device number changes nothing and is answered with CONNECTED naming the source that
stays, to the requester; a controller's device number is the one it last used in a PROTECT
CONNECT/DISCONNECT. Fault injection for tests: ``response_delay_s`` (everything, ACKs
included, is that late), ``switch_delay_s`` (routes take effect that late, in order),
``reply_before_ack`` (replies go out before the ACK of their request), ``byte_count_skew``
(every byte count off by that much, checksum consistent), ``unsupported`` (commands treated
as unknown).
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections.abc import Iterable
from typing import Any, ClassVar

from tieline import DeviceEmulator, EmulatorPeer, RemoteProtocolError

from .codec import (
    EXTENDED_MAX_ML,
    EXTENDED_MAX_PORT,
    NAMES_PER_MESSAGE,
    NORMAL_MAX_ML,
    NORMAL_MAX_PORT,
    TALLIES_PER_DUMP,
    Codec,
    Connect,
    Connected,
    Delivered,
    DestinationNames,
    DestinationNamesRequest,
    DualStatus,
    DualStatusRequest,
    FrameError,
    ImplementationRequest,
    ImplementationStatus,
    Interrogate,
    InvalidMessage,
    Maintenance,
    Message,
    NameKind,
    NamesUpdated,
    ProtectConnect,
    ProtectConnected,
    ProtectDeviceName,
    ProtectDeviceNameRequest,
    ProtectDisconnect,
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
    command_of,
    receives,
    sends,
)

log = logging.getLogger(__name__)

#: The line settings of an RS-422 SW-P-08 port (notes §1).
SERIAL_DEFAULTS: dict[str, Any] = {"baudrate": 38400, "bytesize": 8, "parity": "N",
                                   "stopbits": 1}


class _Link:
    """What the emulator keeps per controller: its codec, its timer's wake-up, its device
    number (from its protect requests) and whether it speaks the extended form."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.wake = asyncio.Event()
        self.device: int | None = None


class SWP08Emulator(DeviceEmulator):
    """An SW-P-08 router of ``matrices`` × ``levels``, ``sources`` × ``destinations`` each.

    At start destination ``d`` takes source ``d % sources`` everywhere, sources are named
    ``SRC 1`` …, destinations ``DST 1`` … (cut to the name length asked), nothing is
    protected, and protect device ``n`` is named ``DEV n``.

    :param switch_delay_s: how long a route takes to take effect (routes keep their order).
    :param response_delay_s: how long the device takes to look at what it receives (its
        ACKs are late too: more than ``ack_timeout_s`` makes controllers re-send).
    :param dump_format: ``"word"`` (23) or ``"byte"`` (22, when every number fits a byte).
    :param echo_unchanged: broadcast CONNECTED for a route that was already set.
    :param unsupported: command bytes the device does not implement.
    :param answer_invalid: answer unknown and malformed messages with 99 INVALID MESSAGE.
    :param reply_before_ack: send replies before the ACK of their request (a deviation).
    :param byte_count_skew: add this to every byte count sent (a deviation).
    :param names_updated_delay_s: NAMES UPDATED (30) follows the last name change this late.
    """

    name = "swp08"
    serial = True
    serial_defaults: ClassVar[dict[str, Any]] = SERIAL_DEFAULTS

    def __init__(
        self, sources: int = 16, destinations: int = 16, levels: int = 1, *, matrices: int = 1,
        switch_delay_s: float = 0.0, response_delay_s: float = 0.0,
        dump_format: str = "word", echo_unchanged: bool = True,
        unsupported: Iterable[int] = (), answer_invalid: bool = True,
        reply_before_ack: bool = False, byte_count_skew: int = 0,
        ack_timeout_s: float = 1.0, retries: int = 5, names_updated_delay_s: float = 5.0,
        max_outgoing_bytes: int | None = None,
    ) -> None:
        for what, count, most in (("sources", sources, EXTENDED_MAX_PORT + 1),
                                  ("destinations", destinations, EXTENDED_MAX_PORT + 1),
                                  ("levels", levels, EXTENDED_MAX_ML + 1),
                                  ("matrices", matrices, EXTENDED_MAX_ML + 1)):
            if not 1 <= count <= most:
                raise ValueError(f"an SW-P-08 router has 1–{most} {what}, not {count}")
        if dump_format not in ("word", "byte"):
            raise ValueError(f"dump_format must be 'word' or 'byte', not {dump_format!r}")
        self.sources = sources
        self.destinations = destinations
        self.levels = levels
        self.matrices = matrices
        self.switch_delay_s = switch_delay_s
        self.response_delay_s = response_delay_s
        self.dump_format = dump_format
        self.echo_unchanged = echo_unchanged
        self.unsupported = frozenset(unsupported)
        self.answer_invalid = answer_invalid
        self.reply_before_ack = reply_before_ack
        self.byte_count_skew = byte_count_skew
        self.ack_timeout_s = ack_timeout_s
        self.retries = retries
        self.names_updated_delay_s = names_updated_delay_s
        row = array("i", (d % sources for d in range(destinations)))
        #: (matrix, level) -> the source of each destination.
        self.crosspoints: dict[tuple[int, int], array] = {
            (m, lv): array("i", row) for m in range(matrices) for lv in range(levels)}
        #: source names by (matrix, level), destination names by matrix (only those changed).
        self.source_names: dict[tuple[int, int], dict[int, str]] = {}
        self.destination_names: dict[int, dict[int, str]] = {}
        #: (matrix, level, destination) -> (ProtectState, device number).
        self.protects: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.device_names: dict[int, str] = {}
        super().__init__(max_outgoing_bytes=max_outgoing_bytes or max(
            1 << 20, 4 * levels * matrices * destinations * 2))
        self._pending: asyncio.Queue[tuple[float, EmulatorPeer | None, Connect]] | None = None
        self._routes_waiting = 0
        self._names_timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_cli(cls, *, inputs: int, outputs: int, levels: int) -> SWP08Emulator:
        return cls(inputs, outputs, levels)

    # -- the DeviceEmulator part ------------------------------------------------------------
    async def started(self) -> None:
        self._pending = asyncio.Queue()
        self.spawn(self._switcher(), "swp08 switcher")

    async def close(self) -> None:
        if self._names_timer is not None:
            self._names_timer.cancel()
        await super().close()

    def controller_connected(self, peer: EmulatorPeer) -> None:
        peer.state = _Link(Codec(
            Role.DEVICE, ack_timeout_s=self.ack_timeout_s, retries=self.retries,
            auto_ack=not self.reply_before_ack, byte_count_skew=self.byte_count_skew))
        peer.tasks.append(self.spawn(self._timer(peer), f"swp08 {peer.name} timer"))

    async def data_received(self, peer: EmulatorPeer, data: bytes) -> None:
        if self.response_delay_s > 0:
            await asyncio.sleep(self.response_delay_s)
        link: _Link = peer.state
        link.codec.receive_data(data, asyncio.get_running_loop().time())
        self._process(peer)

    def _process(self, peer: EmulatorPeer) -> None:
        """Everything the codec has for us: commands, link events, errors."""
        link: _Link = peer.state
        codec = link.codec
        while not peer.closed:
            try:
                event = codec.next_event()
            except FrameError as exc:
                log.debug("swp08 emulator: damaged data from %s: %s", peer.name, exc)
                continue
            except RemoteProtocolError as exc:
                log.debug("swp08 emulator: malformed message from %s: %s", peer.name, exc)
                if self.answer_invalid and exc.data and exc.data[0] != 99:
                    self._reply(peer, InvalidMessage(exc.data[0]))
                if not codec.auto_ack:
                    codec.acknowledge()
                continue
            if event is None:
                break
            if isinstance(event, Delivered):
                continue
            if isinstance(event, Undelivered):
                log.warning("swp08 emulator: %s did not acknowledge %s after %d attempts; "
                            "dropped", peer.name, type(event.message).__name__, event.attempts)
                continue
            self.log_command(peer, event)
            self._handle(peer, event)
            if not codec.auto_ack:
                codec.acknowledge()
        self._flush(peer)

    def _flush(self, peer: EmulatorPeer) -> None:
        link: _Link = peer.state
        peer.send(link.codec.data_to_send())
        link.wake.set()

    async def _timer(self, peer: EmulatorPeer) -> None:
        """The peer's ACK timer: re-send or give up frames it did not acknowledge."""
        link: _Link = peer.state
        loop = asyncio.get_running_loop()
        while not peer.closed:
            deadline = link.codec.next_deadline()
            link.wake.clear()
            try:
                async with asyncio.timeout(None if deadline is None
                                           else max(0.0, deadline - loop.time())):
                    await link.wake.wait()
            except TimeoutError:
                pass
            link.codec.tick(loop.time())
            self._process(peer)

    # -- sending -------------------------------------------------------------------------------
    def _reply(self, peer: EmulatorPeer, message: Message) -> None:
        link: _Link = peer.state
        if peer.closed:
            return
        try:
            link.codec.send(message, asyncio.get_running_loop().time())
        except OverflowError:
            log.warning("swp08 emulator: dropping %s: it acknowledges nothing", peer.name)
            self.drop(peer)
            return
        self._flush(peer)

    def _broadcast_message(self, make: Any, requester: EmulatorPeer | None = None,
                           requester_extended: bool = False) -> None:
        """``make(extended)`` to every controller, in the form each needs."""
        for peer in self.peers:
            extended = requester_extended if peer is requester else False
            self._reply(peer, make(extended))

    # -- commands --------------------------------------------------------------------------------
    def _handle(self, peer: EmulatorPeer, message: Message) -> None:
        command = command_of(message)
        if command in self.unsupported or isinstance(message, UnknownMessage):
            if self.answer_invalid and command != 99:
                self._reply(peer, InvalidMessage(command))
            return
        match message:
            case Interrogate(m, lv, d, ext):
                row = self._row(peer, command, m, lv, d)
                if row is not None:
                    self._reply(peer, self._tally(Tally, m, lv, d, row[d], ext))
            case Connect():
                if self._row(peer, command, message.matrix, message.level, message.destination,
                             message.source) is None:
                    return
                if self.switch_delay_s > 0 or self._routes_waiting:
                    assert self._pending is not None
                    due = asyncio.get_running_loop().time() + self.switch_delay_s
                    self._routes_waiting += 1
                    self._pending.put_nowait((due, peer, message))
                else:
                    self._apply(peer, message)
            case TallyDumpRequest(m, lv, ext):
                if self._row(peer, command, m, lv, 0) is not None:
                    for part in self._dump(m, lv, ext):
                        self._reply(peer, part)
            case SourceNamesRequest(m, lv, length, source, ext):
                if self._row(peer, command, m, lv, 0, source or 0) is not None:
                    first, count = (0, self.sources) if source is None else (source, 1)
                    names = [self.source_name(i, lv, m) for i in range(first, first + count)]
                    for start, chunk in _chunks(names, NAMES_PER_MESSAGE[length]):
                        self._reply(peer, SourceNames(
                            m, lv, length, first + start, tuple(n[:length] for n in chunk),
                            ext or self._needs_ext(m, lv)))
            case DestinationNamesRequest(m, length, dest, ext):
                if self._row(peer, command, m, 0, dest or 0) is not None:
                    first, count = (0, self.destinations) if dest is None else (dest, 1)
                    names = [self.destination_name(i, m) for i in range(first, first + count)]
                    for start, chunk in _chunks(names, NAMES_PER_MESSAGE[length]):
                        self._reply(peer, DestinationNames(
                            m, length, first + start, tuple(n[:length] for n in chunk),
                            ext or self._needs_ext(m, 0)))
            case UpdateName(kind, _length, m, lv, first, names):
                self._update_names(kind, m, lv, first, names)
            case DualStatusRequest():
                self._reply(peer, DualStatus(slave_active=False, this_active=True, idle_state=0))
            case ImplementationRequest():
                self._reply(peer, ImplementationStatus(
                    tuple(sorted(_commands(sends(Role.DEVICE)) - self.unsupported)),
                    tuple(sorted(receives(Role.DEVICE) - self.unsupported))))
            case ProtectInterrogate(m, lv, d, ext):
                if self._row(peer, command, m, lv, d) is not None:
                    state, device = self.protects.get((m, lv, d), (ProtectState.NONE, 0))
                    self._reply(peer, ProtectTally(m, lv, d, state, device,
                                                   ext or self._needs_ext(m, lv, d, device)))
            case ProtectConnect(m, lv, d, device, ext):
                if self._row(peer, command, m, lv, d) is not None:
                    peer.state.device = device
                    state, owner = self.protects.get((m, lv, d), (ProtectState.NONE, 0))
                    if state == ProtectState.NONE or (state == ProtectState.PROBEL
                                                      and owner == device):
                        self.protects[(m, lv, d)] = (ProtectState.PROBEL, device)
                    self._broadcast_protect(ProtectConnected, m, lv, d, peer, ext)
            case ProtectDisconnect(m, lv, d, device, ext):
                if self._row(peer, command, m, lv, d) is not None:
                    peer.state.device = device
                    state, owner = self.protects.get((m, lv, d), (ProtectState.NONE, 0))
                    if state == ProtectState.PROBEL and owner == device:
                        del self.protects[(m, lv, d)]
                    self._broadcast_protect(ProtectDisconnected, m, lv, d, peer, ext)
            case ProtectDeviceNameRequest(device):
                self._reply(peer, ProtectDeviceName(device, self.device_name(device)[:8]))
            case Maintenance():
                log.info("swp08 emulator: MAINTENANCE %d from %s accepted and ignored",
                         message.function, peer.name)
            case InvalidMessage(bad):
                log.info("swp08 emulator: %s says command %d was invalid", peer.name, bad)

    def _row(self, peer: EmulatorPeer, command: int, matrix: int, level: int, *numbers: int
             ) -> array | None:
        """The row of (matrix, level) if it and ``numbers`` (destination, then source) exist;
        otherwise answer 99 and return None."""
        row = self.crosspoints.get((matrix, level))
        limits = (self.destinations, self.sources)
        if row is None or any(n >= limit for n, limit in zip(numbers, limits)):
            if self.answer_invalid:
                self._reply(peer, InvalidMessage(command))
            return None
        return row

    @staticmethod
    def _needs_ext(matrix: int, level: int, *numbers: int) -> bool:
        return matrix > NORMAL_MAX_ML or level > NORMAL_MAX_ML or any(
            n > NORMAL_MAX_PORT for n in numbers)

    def _tally(self, cls: type, matrix: int, level: int, dest: int, src: int,
               extended: bool) -> Tally | Connected:
        if extended or self._needs_ext(matrix, level, dest, src):
            return cls(matrix, level, dest, src, True, status=0)
        return cls(matrix, level, dest, src)

    async def _switcher(self) -> None:
        assert self._pending is not None
        loop = asyncio.get_running_loop()
        while True:
            due, peer, connect = await self._pending.get()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._routes_waiting -= 1
            self._apply(peer, connect)

    def _apply(self, peer: EmulatorPeer | None, connect: Connect) -> None:
        m, lv, d, s = connect.matrix, connect.level, connect.destination, connect.source
        row = self.crosspoints[(m, lv)]
        state, owner = self.protects.get((m, lv, d), (ProtectState.NONE, 0))
        requester_device = None if peer is None or peer.state is None else peer.state.device
        if state != ProtectState.NONE and (state != ProtectState.PROBEL
                                           or owner != requester_device):
            if peer is not None and not peer.closed:
                self._reply(peer, self._tally(Connected, m, lv, d, row[d], connect.extended))
            return
        changed = row[d] != s
        row[d] = s
        if changed or self.echo_unchanged:
            self._broadcast_message(lambda ext: self._tally(Connected, m, lv, d, s, ext),
                                    peer, connect.extended)

    def _dump(self, matrix: int, level: int, extended: bool) -> list[Message]:
        row = self.crosspoints[(matrix, level)]
        extended = extended or self._needs_ext(matrix, level, self.destinations - 1,
                                               self.sources - 1)
        byte = (not extended and self.dump_format == "byte" and self.destinations <= 256
                and self.sources <= 192)
        out: list[Message] = []
        for first, chunk in _chunks(list(row), TALLIES_PER_DUMP):
            if byte:
                out.append(TallyDumpByte(matrix, level, first, tuple(chunk)))
            else:
                out.append(TallyDumpWord(matrix, level, first, tuple(chunk), extended))
        return out

    def _broadcast_protect(self, cls: type, m: int, lv: int, d: int, requester: EmulatorPeer,
                           requester_extended: bool) -> None:
        state, device = self.protects.get((m, lv, d), (ProtectState.NONE, 0))
        if state == ProtectState.NONE and requester.state.device is not None:
            device = requester.state.device
        self._broadcast_message(
            lambda ext: cls(m, lv, d, state, device, ext or self._needs_ext(m, lv, d, device)),
            requester, requester_extended)

    def _update_names(self, kind: int, matrix: int, level: int, first: int,
                      names: tuple[str, ...]) -> None:
        if kind == NameKind.SOURCE and (matrix, level) in self.crosspoints:
            table = self.source_names.setdefault((matrix, level), {})
            limit = self.sources
        elif kind == NameKind.DESTINATION_ASSOCIATION and matrix < self.matrices:
            table = self.destination_names.setdefault(matrix, {})
            limit = self.destinations
        else:
            return
        for offset, text in enumerate(names):
            if first + offset < limit:
                table[first + offset] = text
        self._names_changed()

    def _names_changed(self) -> None:
        """NAMES UPDATED follows the last change by ``names_updated_delay_s`` (notes §6)."""
        if self._names_timer is not None:
            self._names_timer.cancel()
        self._names_timer = asyncio.get_running_loop().call_later(
            self.names_updated_delay_s, self._names_updated)

    def _names_updated(self) -> None:
        self._names_timer = None
        bitmap = sum(1 << m for m in range(min(self.matrices, 32)))
        self._broadcast_message(lambda ext: NamesUpdated(bitmap, 0b11))

    # -- the frame's own panel and state ----------------------------------------------------------
    def panel_route(self, level: int, destination: int, source: int, matrix: int = 0) -> None:
        """Route at the frame, as a panel would: at once, whatever the protects; every
        controller is told (CONNECTED)."""
        self._check(matrix, level, destination, source)
        row = self.crosspoints[(matrix, level)]
        if row[destination] != source:
            row[destination] = source
            self._broadcast_message(
                lambda ext: self._tally(Connected, matrix, level, destination, source, ext))

    def panel_protect(self, level: int, destination: int, device: int,
                      state: int = ProtectState.PROBEL, matrix: int = 0) -> None:
        """Protect a destination for ``device`` at the frame; every controller is told."""
        self._check(matrix, level, destination)
        if state == ProtectState.NONE:
            self.protects.pop((matrix, level, destination), None)
            cls: type = ProtectDisconnected
        else:
            self.protects[(matrix, level, destination)] = (state, device)
            cls = ProtectConnected
        self._broadcast_message(lambda ext: cls(
            matrix, level, destination, state, device,
            self._needs_ext(matrix, level, destination, device)))

    def panel_unprotect(self, level: int, destination: int, matrix: int = 0) -> None:
        """Remove a protect at the frame; every controller is told."""
        device = self.protects.get((matrix, level, destination), (0, 0))[1]
        self.panel_protect(level, destination, device, ProtectState.NONE, matrix)

    def panel_name(self, kind: str, index: int, text: str, level: int = 0,
                   matrix: int = 0) -> None:
        """Rename a ``"source"`` (of ``level``) or a ``"destination"`` at the frame; NAMES
        UPDATED follows."""
        if kind == "source":
            self._check(matrix, level, 0, index)
            self.source_names.setdefault((matrix, level), {})[index] = text
        else:
            self._check(matrix, 0, index)
            self.destination_names.setdefault(matrix, {})[index] = text
        self._names_changed()

    def _check(self, matrix: int, level: int, destination: int, source: int = 0) -> None:
        if (matrix, level) not in self.crosspoints:
            raise ValueError(f"no matrix {matrix} level {level} (0-based; "
                             f"{self.matrices} matrices × {self.levels} levels)")
        if not 0 <= destination < self.destinations or not 0 <= source < self.sources:
            raise ValueError(f"destination {destination} or source {source} out of range "
                             f"(0–{self.destinations - 1}, 0–{self.sources - 1})")

    def source(self, level: int, destination: int, matrix: int = 0) -> int:
        """The source feeding ``destination`` on ``level`` now."""
        return self.crosspoints[(matrix, level)][destination]

    def source_name(self, index: int, level: int = 0, matrix: int = 0) -> str:
        return self.source_names.get((matrix, level), {}).get(index, f"SRC {index + 1}")

    def destination_name(self, index: int, matrix: int = 0) -> str:
        return self.destination_names.get(matrix, {}).get(index, f"DST {index + 1}")

    def device_name(self, device: int) -> str:
        return self.device_names.get(device, f"DEV {device}")


def _chunks(items: list[Any], size: int) -> list[tuple[int, list[Any]]]:
    return [(start, items[start:start + size]) for start in range(0, len(items), size)]


def _commands(classes: Iterable[type[Message]]) -> set[int]:
    """Command bytes of the normal and extended forms of ``classes`` (for 98)."""
    table = {Tally: (3, 131), Connected: (4, 132), DualStatus: (9,), ProtectTally: (11, 139),
             ProtectConnected: (13, 141), ProtectDisconnected: (15, 143),
             ProtectDeviceName: (18,), TallyDumpByte: (22,), TallyDumpWord: (23, 151),
             NamesUpdated: (30,), ImplementationStatus: (98,), InvalidMessage: (99,),
             SourceNames: (106, 234), DestinationNames: (107, 235)}
    return {code for cls in classes for code in table.get(cls, ())}
