"""The simulated router: a stateful device speaking the simulator protocol (codec.py).

Several controllers may connect at once, in-process (:meth:`SimulatorEmulator.connect`, over
a memory pipe) or over TCP (:meth:`SimulatorEmulator.serve_tcp`). The device holds the
truth: it enforces protects and locks, applies routes after its switching delay, in the
order received, and tells every connected controller of every change. Changes can also be
made at the frame, as a hardware panel would (:meth:`SimulatorEmulator.panel_route`).
A line it cannot parse is answered ``ERR syntax``, once per run of such lines (until the
next line it can parse): garbage is not answered line by line.

The latest commands received are kept in :attr:`SimulatorEmulator.command_log` (the base
class's ring buffer) so tests can prove what a controller sent (for example, that no ROUTE
was sent while it started).
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections.abc import Mapping
from dataclasses import dataclass

from tieline import (
    Crosspoint,
    DeviceEmulator,
    EmulatorPeer,
    PortKind,
    Protect,
    ProtectKind,
    RemoteProtocolError,
)

from .codec import (
    MAX_NUMBER,
    Codec,
    Dump,
    End,
    ErrorReply,
    Hello,
    Info,
    Label,
    Message,
    Ping,
    Pong,
    Release,
    Role,
    Route,
    SetProtect,
    Tally,
    Unprotect,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Controller:
    """One controller's state (``peer.state``)."""

    codec: Codec
    #: a line that did not parse was answered, and no good line has come since.
    in_garbage: bool = False


class SimulatorEmulator(DeviceEmulator):
    """An in-process router of any size and level count.

    Initially destination ``d`` is fed by source ``d % sources`` on every level, sources
    are labelled "Input 1" … and destinations "Output 1" … (1-based, like a Videohub),
    and nothing is protected.

    :param levels: number of levels.
    :param sources: number of sources (inputs).
    :param destinations: number of destinations (outputs).
    :param switch_delay_s: how long a route takes to take effect (routes keep their order).
    :param labels: labels replacing the defaults: ``{PortKind: {index: text}}``, 0-based.
    :param max_outgoing_bytes: per controller, how much unread output is kept before the
        controller is dropped; by default twice a full dump, and at least 1 MiB.
    """

    name = "simulator"
    #: routes waiting for the switching delay before the readers are held back.
    max_pending_routes = 10_000

    def __init__(
        self, levels: int, sources: int, destinations: int, switch_delay_s: float = 0.0,
        labels: Mapping[PortKind, Mapping[int, str]] | None = None, *,
        max_outgoing_bytes: int | None = None,
    ) -> None:
        for what, count in (("levels", levels), ("sources", sources),
                            ("destinations", destinations)):
            if not 1 <= count <= MAX_NUMBER:
                raise ValueError(f"a simulated router needs 1–{MAX_NUMBER} {what}, not {count}")
        if switch_delay_s < 0:
            raise ValueError(f"switch_delay_s must be 0 or more, not {switch_delay_s}")
        self.levels = levels
        self.sources = sources
        self.destinations = destinations
        self.switch_delay_s = switch_delay_s
        row = array("i", (d % sources for d in range(destinations)))
        #: per level, the source of each destination.
        self.crosspoints: list[array] = [array("i", row) for _ in range(levels)]
        self.labels: dict[PortKind, list[str]] = {
            PortKind.SOURCE: [f"Input {i + 1}" for i in range(sources)],
            PortKind.DESTINATION: [f"Output {i + 1}" for i in range(destinations)],
        }
        for kind, texts in (labels or {}).items():
            for index, text in texts.items():
                self.labels[PortKind(kind)][index] = text
        #: protects and locks by (level, destination).
        self.protects: dict[tuple[int, int], Protect] = {}
        dump_estimate = levels * destinations * 16 + (sources + destinations) * 48
        super().__init__(max_outgoing_bytes=max_outgoing_bytes or max(1 << 20, 2 * dump_estimate))
        self._encoder = Codec(Role.DEVICE)
        self._pending: asyncio.Queue[tuple[float, EmulatorPeer, Route]] | None = None
        self._routes_waiting = 0  #: routes queued or being delayed by the switcher

    @classmethod
    def from_cli(cls, *, inputs: int, outputs: int, levels: int) -> SimulatorEmulator:
        return cls(levels, inputs, outputs)

    # -- the DeviceEmulator part -------------------------------------------------------
    async def started(self) -> None:
        self._pending = asyncio.Queue(self.max_pending_routes)
        self.spawn(self._switcher(), "simulator switcher")

    def controller_connected(self, peer: EmulatorPeer) -> None:
        peer.state = _Controller(Codec(Role.DEVICE))

    async def data_received(self, peer: EmulatorPeer, data: bytes) -> None:
        controller: _Controller = peer.state
        codec = controller.codec
        codec.receive_data(data)
        while not peer.closed:
            try:
                message = codec.next_event()
            except RemoteProtocolError as exc:
                log.debug("simulator: bad line from %s: %s", peer.name, exc)
                if not controller.in_garbage:  # one error per run of bad lines
                    controller.in_garbage = True
                    peer.send(self._encoder.send(
                        ErrorReply("syntax", None, None, None, _printable(str(exc)))
                    ))
                continue
            if message is None:
                break
            controller.in_garbage = False
            self.log_command(peer, message)
            await self._handle(peer, message)

    # -- commands ----------------------------------------------------------------------
    async def _handle(self, peer: EmulatorPeer, message: Message) -> None:
        match message:
            case Route():
                assert self._pending is not None
                if self.switch_delay_s > 0 or self._routes_waiting:
                    due = asyncio.get_running_loop().time() + self.switch_delay_s
                    self._routes_waiting += 1
                    await self._pending.put((due, peer, message))
                else:
                    self._apply_route(peer, message)
            case Hello():
                peer.send(self._encoder.send(Hello()))
            case Dump():
                peer.send(self._dump())
            case SetProtect():
                self._protect(peer, message)
            case Release():
                self._release(peer, message)
            case Label(kind, index, text):
                if index >= len(self.labels[kind]):
                    self._refuse(peer, "range", None, None, None,
                                 f"{kind} {index + 1} out of range (1–{len(self.labels[kind])})")
                else:
                    self._set_label(kind, index, text, requester=peer)
            case Ping():
                peer.send(self._encoder.send(Pong()))

    async def _switcher(self) -> None:
        assert self._pending is not None
        loop = asyncio.get_running_loop()
        while True:
            due, peer, route = await self._pending.get()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._routes_waiting -= 1
            self._apply_route(peer, route)

    def _apply_route(self, peer: EmulatorPeer, route: Route) -> None:
        changed: list[Crosspoint] = []
        confirmed: list[Crosspoint] = []
        for xp in route.crosspoints:
            if not self._check_crosspoint(peer, xp):
                continue
            protect = self.protects.get((xp.level, xp.destination))
            if protect is not None and (protect.kind is ProtectKind.LOCK
                                        or protect.owner != route.owner):
                self._refuse(
                    peer, "locked" if protect.kind is ProtectKind.LOCK else "protected",
                    xp.level, xp.destination, protect.owner,
                    f"destination {xp.destination + 1} on level {xp.level + 1} is "
                    f"{protect.kind}ed by {protect.owner}",
                )
                continue
            row = self.crosspoints[xp.level]
            if row[xp.destination] == xp.source:
                confirmed.append(xp)
            else:
                row[xp.destination] = xp.source
                changed.append(xp)
        if changed:
            self._broadcast(Tally(tuple(changed)))
        if confirmed:
            peer.send(self._encoder.send(Tally(tuple(confirmed))))

    def _check_crosspoint(self, peer: EmulatorPeer, xp: Crosspoint) -> bool:
        for what, value, count in (("level", xp.level, self.levels),
                                   ("destination", xp.destination, self.destinations),
                                   ("source", xp.source, self.sources)):
            if value >= count:
                self._refuse(peer, "range", xp.level, xp.destination, None,
                             f"{what} {value + 1} out of range (1–{count})")
                return False
        return True

    def _protect(self, peer: EmulatorPeer, request: SetProtect) -> None:
        if not self._check_crosspoint(peer, Crosspoint(request.level, request.destination, 0)):
            return
        key = (request.level, request.destination)
        current = self.protects.get(key)
        if current is not None and current.owner != request.owner:
            self._refuse(
                peer, "locked" if current.kind is ProtectKind.LOCK else "protected",
                request.level, request.destination, current.owner,
                f"destination {request.destination + 1} on level {request.level + 1} is "
                f"already {current.kind}ed by {current.owner}",
            )
            return
        wanted = Protect(request.kind, request.owner)
        if current == wanted:
            peer.send(self._encoder.send(request))
            return
        self.protects[key] = wanted
        self._broadcast(request)

    def _release(self, peer: EmulatorPeer, request: Release) -> None:
        if not self._check_crosspoint(peer, Crosspoint(request.level, request.destination, 0)):
            return
        key = (request.level, request.destination)
        current = self.protects.get(key)
        released = Unprotect(request.level, request.destination)
        if current is None:
            peer.send(self._encoder.send(released))
        elif current.owner == request.owner or request.force:
            del self.protects[key]
            self._broadcast(released)
        else:
            self._refuse(
                peer, "not_owner", request.level, request.destination, current.owner,
                f"destination {request.destination + 1} on level {request.level + 1} is "
                f"{current.kind}ed by {current.owner}; only its owner may release it "
                "(or force it)",
            )

    def _set_label(self, kind: PortKind, index: int, text: str,
                   requester: EmulatorPeer | None = None) -> None:
        label = Label(kind, index, text)
        if self.labels[kind][index] == text:
            if requester is not None:
                requester.send(self._encoder.send(label))
            return
        self.labels[kind][index] = text
        self._broadcast(label)

    def _refuse(self, peer: EmulatorPeer, code: str, level: int | None, destination: int | None,
                owner: str | None, text: str) -> None:
        peer.send(self._encoder.send(ErrorReply(code, level, destination, owner, text)))

    def _broadcast(self, message: Message) -> None:
        self.broadcast(self._encoder.send(message))

    def _dump(self) -> bytes:
        send = self._encoder.send
        parts = [send(Info(self.levels, self.sources, self.destinations))]
        for kind, texts in self.labels.items():
            parts += [send(Label(kind, index, text)) for index, text in enumerate(texts)]
        for level, row in enumerate(self.crosspoints):
            parts.append(send(Tally(tuple(
                Crosspoint(level, dest, src) for dest, src in enumerate(row)
            ))))
        for (level, dest), protect in sorted(self.protects.items()):
            parts.append(send(SetProtect(level, dest, protect.kind, protect.owner)))
        parts.append(send(End()))
        return b"".join(parts)

    # -- the frame's own panel -------------------------------------------------------------
    def panel_route(self, level: int, destination: int, source: int) -> None:
        """Route at the frame, as a hardware panel would: at once, whatever the protects.

        Every connected controller is told.
        """
        for what, value, count in (("level", level, self.levels),
                                   ("destination", destination, self.destinations),
                                   ("source", source, self.sources)):
            if not 0 <= value < count:
                raise ValueError(f"{what} {value} out of range (0–{count - 1})")
        row = self.crosspoints[level]
        if row[destination] != source:
            row[destination] = source
            self._broadcast(Tally((Crosspoint(level, destination, source),)))

    def panel_label(self, kind: PortKind, index: int, text: str) -> None:
        """Change a label at the frame; every connected controller is told."""
        if not 0 <= index < len(self.labels[kind]):
            raise ValueError(f"{kind} {index} out of range (0–{len(self.labels[kind]) - 1})")
        self._encoder.send(Label(kind, index, text))  # raises ValueError if unsendable
        self._set_label(kind, index, text)

    def source(self, level: int, destination: int) -> int:
        """The source feeding ``destination`` on ``level`` now."""
        return self.crosspoints[level][destination]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
