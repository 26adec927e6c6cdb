"""The {{cookiecutter.driver_name}} emulator: a router without hardware, on the same codec.

``tieline emulate {{cookiecutter.driver_name}} --listen 127.0.0.1:7700`` runs it; the tests
serve it on 127.0.0.1 (:meth:`MatrixEmulator.serve_tcp`). Several controllers may connect
at once; every change is told to all of them, including changes made at the frame's own
panel (:meth:`MatrixEmulator.panel_route`). The latest commands received are kept in
``command_log`` (``DeviceEmulator.command_log_size`` of them; None keeps all) so that tests
can prove what a controller sent. A line it cannot parse is answered with one ``ERROR``
per run of such lines (until the next line it can parse): garbage is not answered line by
line, and never echoed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tieline import Crosspoint, DeviceEmulator, EmulatorPeer, RemoteProtocolError

from .codec import MAX_NUMBER, Codec, Dump, End, Error, Message, Ping, Pong, Role, Size, Tally, Xpt

log = logging.getLogger(__name__)


@dataclass
class Controller:
    """What the emulator keeps per connected controller (``EmulatorPeer.state``)."""

    codec: Codec
    #: a line that did not parse was answered, and no good line has come since
    in_garbage: bool = False


class MatrixEmulator(DeviceEmulator):
    """An emulated {{cookiecutter.driver_name}} router, of any size.

    Initially destination ``d`` is fed by source ``d % sources`` on every level.

    :param levels: number of levels.
    :param sources: number of sources (inputs).
    :param destinations: number of destinations (outputs).
    """

    name = "{{cookiecutter.driver_name}}"

    def __init__(self, levels: int = 1, sources: int = 16, destinations: int = 16) -> None:
        for what, count in (("levels", levels), ("sources", sources),
                            ("destinations", destinations)):
            if not 1 <= count <= MAX_NUMBER:
                raise ValueError(f"the emulator needs 1–{MAX_NUMBER} {what}, not {count}")
        super().__init__()
        self.levels, self.sources, self.destinations = levels, sources, destinations
        #: per level, the source of each destination (0-based).
        self.table = [[d % sources for d in range(destinations)] for _ in range(levels)]
        self._encoder = Codec(Role.DEVICE)

    @classmethod
    def from_cli(cls, *, inputs: int, outputs: int, levels: int) -> MatrixEmulator:
        return cls(levels, inputs, outputs)

    # -- the DeviceEmulator part -----------------------------------------------------------
    def controller_connected(self, peer: EmulatorPeer) -> None:
        peer.state = Controller(Codec(Role.DEVICE))  # this protocol has no greeting

    async def data_received(self, peer: EmulatorPeer, data: bytes) -> None:
        controller: Controller = peer.state
        controller.codec.receive_data(data)
        while not peer.closed:
            try:
                message = controller.codec.next_event()
            except RemoteProtocolError as exc:
                log.debug("{{cookiecutter.driver_name}} emulator: bad line from %s: %s",
                          peer.name, exc)
                if not controller.in_garbage:  # one error per run of bad lines
                    controller.in_garbage = True
                    self._reply(peer, Error(None, None, "syntax error"))
                continue
            if message is None:
                break
            controller.in_garbage = False
            self.log_command(peer, message)
            self._handle(peer, message)

    # -- commands --------------------------------------------------------------------------
    def _handle(self, peer: EmulatorPeer, message: Message) -> None:
        match message:
            case Xpt(xp):
                problem = self._check(xp)
                if problem:
                    self._reply(peer, Error(xp.level if xp.level < self.levels else None,
                                            xp.destination, problem))
                elif self.table[xp.level][xp.destination] == xp.source:
                    self._reply(peer, Tally(xp))  # unchanged: confirm to the requester
                else:
                    self.table[xp.level][xp.destination] = xp.source
                    self.broadcast(self._encoder.send(Tally(xp)))
            case Dump():
                peer.send(self._dump())
            case Ping():
                self._reply(peer, Pong())

    def _check(self, xp: Crosspoint) -> str | None:
        for what, value, count in (("level", xp.level, self.levels),
                                   ("destination", xp.destination, self.destinations),
                                   ("source", xp.source, self.sources)):
            if value >= count:
                return f"{what} {value + 1} out of range (1-{count})"
        return None

    def _reply(self, peer: EmulatorPeer, message: Message) -> None:
        peer.send(self._encoder.send(message))

    def _dump(self) -> bytes:
        send = self._encoder.send
        parts = [send(Size(self.levels, self.sources, self.destinations))]
        for level, row in enumerate(self.table):
            parts += [send(Tally(Crosspoint(level, d, s))) for d, s in enumerate(row)]
        parts.append(send(End()))
        return b"".join(parts)

    # -- the frame's own panel -------------------------------------------------------------
    def panel_route(self, level: int, destination: int, source: int) -> None:
        """Route at the frame (0-based), as a hardware panel would; every controller is told."""
        problem = self._check(Crosspoint(level, destination, source))
        if problem or min(level, destination, source) < 0:
            raise ValueError(problem or "numbers are 0-based and not negative")
        if self.table[level][destination] != source:
            self.table[level][destination] = source
            self.broadcast(self._encoder.send(Tally(Crosspoint(level, destination, source))))

    def source(self, level: int, destination: int) -> int:
        """The source feeding ``destination`` on ``level`` now (0-based)."""
        return self.table[level][destination]
