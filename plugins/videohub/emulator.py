"""An emulated Blackmagic Videohub on the device role of the codec.

It behaves as the protocol notes describe a real Videohub [VH §11]: on accept it sends its
status dump (in the block order of real devices, ``END PRELUDE:`` from protocol 2.7) without
being asked; it answers every request block, in order, with ``ACK`` or ``NAK``; a header
alone gets ``ACK`` and the whole block; a change is validated in full (any bad line: ``NAK``
and nothing changes), acknowledged, applied, and then sent to **every** connected client,
the requester included, as a block of the changed lines only [VH §5.4]; ``PING:`` gets
``ACK``. Locks are owned per client IP address [VH §6] and rendered per recipient (``O`` to
the owner, ``L`` to everyone else); a route to an output locked by another address is
answered ``NAK`` (default, as reported from production) or ``ACK`` followed by the
unchanged route (``locked_route="ack"``) — the notes allow both [VH §5.3, §14].

Test helpers change the device as its front panel or another client would
(:meth:`VideohubEmulator.panel_route`, :meth:`~VideohubEmulator.panel_label`,
:meth:`~VideohubEmulator.panel_lock`), inject blocks, and slow every reply down
(``response_delay_s``). The latest blocks received are in :attr:`command_log`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tieline import DeviceEmulator, EmulatorPeer, RemoteProtocolError

from .codec import (
    DEVICE_HEADER,
    MAX_NUMBER,
    PREAMBLE_HEADER,
    PROTOCOL_VERSION,
    Ack,
    Codec,
    DeviceInfo,
    KeyValues,
    LabelTable,
    Labels,
    Locks,
    LockState,
    LockTable,
    Message,
    Nak,
    Ping,
    PortValues,
    Preamble,
    Role,
    Routes,
    RoutingTable,
    StatusRequest,
    UnknownBlock,
    ValueTable,
    prelude,
    version_tuple,
)

log = logging.getLogger(__name__)

_DIRECTIONS = ("control", "slave", "auto")  # [VH §4]


@dataclass
class _Table:
    """One routable set of ports: its routes, locks and labels [VH §4]."""

    routing: RoutingTable
    locks: LockTable
    labels: LabelTable
    sources: int
    routes: list[int]
    names: list[str]
    owners: dict[int, str] = field(default_factory=dict)  #: port -> owner key

    @property
    def size(self) -> int:
        return len(self.routes)

    def source_ok(self, source: int) -> bool:
        return 0 <= source < self.sources or (source == -1 and self.routing.allows_none)


class _Client:
    """What the emulator keeps per connected client."""

    def __init__(self, owner: str) -> None:
        self.codec = Codec(Role.DEVICE)
        self.owner = owner  #: the key its locks are owned by


class VideohubEmulator(DeviceEmulator):
    """A Videohub with ``inputs`` x ``outputs`` video, and optionally monitoring outputs and
    RS-422 serial ports.

    Initially output ``o`` shows input ``o % inputs`` (serial port ``p``: not connected),
    inputs are labelled ``Input 1`` …, outputs ``Output 1`` … (as a new Videohub is), and
    nothing is locked.

    :param inputs: video inputs.
    :param outputs: video outputs.
    :param monitoring_outputs: monitoring outputs (older Studio Videohub), 0 for none.
    :param serial_ports: RS-422 deck ports, 0 for none.
    :param version: protocol version announced; from 2.7 the dump ends with ``END PRELUDE``
        and has ``CONFIGURATION``; before 2.4 the device block has no friendly name or
        unique ID [VH §10].
    :param labels: ``{LabelTable: {index: text}}`` replacing default labels.
    :param locked_route: the answer to a route to an output locked by another client:
        ``"nak"`` or ``"ack"`` (ACK, then the unchanged route to the requester) [VH §5.3].
    :param lock_owner: ``"address"`` (a real device: one owner per client IP address) or
        ``"connection"`` (one per connection: two clients on one host are two owners, for
        tests on 127.0.0.1).
    :param response_delay_s: how long the device takes to answer each request.
    :param present: the ``Device present`` value; anything but ``true`` sends only the
        preamble and the device block, and refuses every request [VH §3.5].
    """

    name = "videohub"
    serial = False

    def __init__(
        self, inputs: int = 16, outputs: int = 16, *, monitoring_outputs: int = 0,
        serial_ports: int = 0, version: str = PROTOCOL_VERSION, model_name: str | None = None,
        friendly_name: str | None = None, unique_id: str = "7C2E0D0726A0",
        labels: Mapping[LabelTable, Mapping[int, str]] | None = None,
        locked_route: str = "nak", lock_owner: str = "address", response_delay_s: float = 0.0,
        present: str = "true", max_outgoing_bytes: int | None = None,
    ) -> None:
        for what, count, least in (("inputs", inputs, 1), ("outputs", outputs, 1),
                                   ("monitoring_outputs", monitoring_outputs, 0),
                                   ("serial_ports", serial_ports, 0)):
            if not least <= count <= MAX_NUMBER:
                raise ValueError(f"a Videohub needs {least}–{MAX_NUMBER} {what}, not {count}")
        if version_tuple(version) is None:
            raise ValueError(f"version {version!r} is not major.minor")
        if locked_route not in ("nak", "ack"):
            raise ValueError(f"locked_route must be 'nak' or 'ack', not {locked_route!r}")
        if lock_owner not in ("address", "connection"):
            raise ValueError(f"lock_owner must be 'address' or 'connection', not {lock_owner!r}")
        if response_delay_s < 0:
            raise ValueError(f"response_delay_s must be 0 or more, not {response_delay_s}")
        self.inputs = inputs
        self.version = version
        self._version = version_tuple(version) or (0, 0)
        self.locked_route = locked_route
        self.lock_owner = lock_owner
        self.response_delay_s = response_delay_s
        self.present = present
        size = f"{inputs} x {outputs}" if inputs != outputs else f"{inputs} x {inputs}"
        self.model_name = model_name or f"Blackmagic Smart Videohub {size}"
        self.friendly_name = friendly_name or f"Smart Videohub {size}"
        self.unique_id = unique_id
        self.input_labels = [f"Input {i + 1}" for i in range(inputs)]
        #: the routable tables by name: ``video``, and ``monitoring``/``serial`` if any.
        self.tables: dict[str, _Table] = {"video": _Table(
            RoutingTable.VIDEO_OUTPUT, LockTable.VIDEO_OUTPUT, LabelTable.OUTPUT, inputs,
            [o % inputs for o in range(outputs)], [f"Output {o + 1}" for o in range(outputs)])}
        if monitoring_outputs:
            self.tables["monitoring"] = _Table(
                RoutingTable.VIDEO_MONITORING_OUTPUT, LockTable.MONITORING_OUTPUT,
                LabelTable.MONITORING_OUTPUT, inputs,
                [o % inputs for o in range(monitoring_outputs)],
                [f"Monitoring {o + 1}" for o in range(monitoring_outputs)])
        if serial_ports:
            self.tables["serial"] = _Table(
                RoutingTable.SERIAL_PORT, LockTable.SERIAL_PORT, LabelTable.SERIAL_PORT,
                serial_ports, [-1] * serial_ports,
                [f"Serial {p + 1}" for p in range(serial_ports)])
        self.directions = ["auto"] * serial_ports
        self.take_mode = False
        for table, texts in (labels or {}).items():
            names = self._label_list(LabelTable(table))
            if names is None:
                raise ValueError(f"this Videohub has no {LabelTable(table).value}")
            for index, text in texts.items():
                names[index] = text
        ports = inputs + outputs + monitoring_outputs + serial_ports
        super().__init__(max_outgoing_bytes=max_outgoing_bytes or max(1 << 20, 200 * ports))
        self._encoder = Codec(Role.DEVICE)

    @classmethod
    def from_cli(cls, *, inputs: int, outputs: int, levels: int) -> VideohubEmulator:
        if levels != 1:
            import click

            raise click.UsageError(
                f"a Videohub has one video level; --levels must be 1, not {levels}")
        return cls(inputs, outputs)

    # -- the DeviceEmulator part -------------------------------------------------------
    def controller_connected(self, peer: EmulatorPeer) -> None:
        owner = peer.name
        if self.lock_owner == "address" and ":" in owner:
            owner = owner.rsplit(":", 1)[0]  # per IP address, not per connection [VH §6]
        peer.state = _Client(owner)
        peer.send(self._encoder.send_all(self._prelude(peer.state)))

    async def data_received(self, peer: EmulatorPeer, data: bytes) -> None:
        client: _Client = peer.state
        client.codec.receive_data(data)
        while not peer.closed:
            try:
                message = client.codec.next_event()
            except RemoteProtocolError as exc:  # ill-formed request block -> NAK [VH §7]
                log.debug("videohub emulator: bad block from %s: %s", peer.name, exc)
                await self._delay()
                peer.send(self._encoder.send(Nak()))
                continue
            if message is None:
                break
            self.log_command(peer, message)
            await self._delay()
            if not peer.closed:
                self._handle(peer, message)

    async def _delay(self) -> None:
        if self.response_delay_s > 0:
            await asyncio.sleep(self.response_delay_s)

    # -- the status dump ---------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        """The ``VIDEOHUB DEVICE`` block [VH §3.5]."""
        newer = self._version >= (2, 4)
        monitoring = self.tables.get("monitoring")
        serial = self.tables.get("serial")
        return DeviceInfo(
            present=self.present, model_name=self.model_name,
            friendly_name=self.friendly_name if newer else None,
            unique_id=self.unique_id if newer else None,
            video_inputs=self.inputs, video_processing_units=0,
            video_outputs=self.tables["video"].size,
            video_monitoring_outputs=monitoring.size if monitoring else 0,
            serial_ports=serial.size if serial else 0,
        )

    def _prelude(self, client: _Client) -> list[Message]:
        if self.present != "true":  # nothing else follows [VH §3.5]
            return [Preamble(self.version), self.device_info()]
        blocks: list[Message] = [Labels(LabelTable.INPUT, tuple(enumerate(self.input_labels)))]
        for table in self.tables.values():
            blocks += [
                Labels(table.labels, tuple(enumerate(table.names))),
                self._locks_for(client, table, range(table.size)),
                Routes(table.routing, tuple(enumerate(table.routes))),
            ]
        if self.directions:
            blocks.append(PortValues(ValueTable.SERIAL_PORT_DIRECTIONS,
                                     tuple(enumerate(self.directions))))
        if self._version >= (2, 7):
            blocks.append(self._configuration())
        return prelude(self.device_info(), blocks, version=self.version)

    def _configuration(self) -> KeyValues:
        return KeyValues("CONFIGURATION", (("Take Mode", "true" if self.take_mode else "false"),))

    def _locks_for(self, client: _Client, table: _Table, ports: Iterable[int]) -> Locks:
        """A lock block as ``client`` sees it: O its own, L others' [VH §6]."""
        letters = []
        for port in ports:
            owner = table.owners.get(port)
            letter = (LockState.UNLOCKED if owner is None else
                      LockState.OWNED if owner == client.owner else LockState.LOCKED)
            letters.append((port, letter))
        return Locks(table.locks, tuple(letters))

    def _block(self, client: _Client, header: str) -> Message | None:
        """The whole block named ``header``, or None when this device has none [VH §5.1]."""
        if header == LabelTable.INPUT.value:
            return Labels(LabelTable.INPUT, tuple(enumerate(self.input_labels)))
        for table in self.tables.values():
            if header == table.routing.value:
                return Routes(table.routing, tuple(enumerate(table.routes)))
            if header == table.locks.value:
                return self._locks_for(client, table, range(table.size))
            if header == table.labels.value:
                return Labels(table.labels, tuple(enumerate(table.names)))
        if header == ValueTable.SERIAL_PORT_DIRECTIONS.value and self.directions:
            return PortValues(ValueTable.SERIAL_PORT_DIRECTIONS, tuple(enumerate(self.directions)))
        if header == DEVICE_HEADER:
            return self.device_info()
        if header == PREAMBLE_HEADER:
            return Preamble(self.version)
        if header == "CONFIGURATION" and self._version >= (2, 7):
            return self._configuration()
        return None

    # -- requests ----------------------------------------------------------------------
    def _handle(self, peer: EmulatorPeer, message: Message) -> None:
        client: _Client = peer.state
        if self.present != "true":
            self._reply(peer, Nak())
            return
        match message:
            case Ping():
                self._reply(peer, Ack())  # [VH §8]
            case StatusRequest(header):
                block = self._block(client, header)
                self._reply(peer, Nak() if block is None else Ack())
                if block is not None:
                    self._reply(peer, block)
            case Routes():
                self._route(peer, message)
            case Labels():
                self._label(peer, message)
            case Locks():
                self._lock(peer, message)
            case PortValues(table=ValueTable.SERIAL_PORT_DIRECTIONS):
                self._directions(peer, message)
            case PortValues(table=ValueTable.VIDEO_INPUT_STATUS | ValueTable.VIDEO_OUTPUT_STATUS
                            | ValueTable.SERIAL_PORT_STATUS):
                self._reply(peer, Ack())  # hardware status from a client is ignored [VH §4]
            case KeyValues(header="CONFIGURATION"):
                self._configure(peer, message)
            case _:
                self._reply(peer, Nak())  # not a block this device takes [VH §7]

    def _reply(self, peer: EmulatorPeer, message: Message) -> None:
        peer.send(self._encoder.send(message))

    def _table(self, message: Message) -> _Table | None:
        for table in self.tables.values():
            if getattr(message, "table", None) in (table.routing, table.locks, table.labels):
                return table
        return None

    def _route(self, peer: EmulatorPeer, request: Routes) -> None:
        table = self._table(request)
        wanted = dict(request.routes)
        if (table is None or request.unparsed or not wanted
                or not all(0 <= d < table.size and table.source_ok(s) for d, s in wanted.items())):
            self._reply(peer, Nak())
            return
        owner = peer.state.owner
        locked = [d for d in wanted if table.owners.get(d, owner) != owner]
        if locked and self.locked_route == "nak":
            self._reply(peer, Nak())
            return
        self._reply(peer, Ack())
        changed = []
        for dest, source in wanted.items():
            if dest not in locked and table.routes[dest] != source:
                table.routes[dest] = source
                changed.append((dest, source))
        if changed:
            self._broadcast(Routes(table.routing, tuple(changed)))
        if locked:  # acknowledged, then shown unchanged [VH §5.3]
            self._reply(peer, Routes(table.routing, tuple((d, table.routes[d]) for d in locked)))

    def _label(self, peer: EmulatorPeer, request: Labels) -> None:
        names = self._label_list(request.table)
        wanted = dict(request.labels)
        if (names is None or request.unparsed or not wanted
                or not all(0 <= i < len(names) for i in wanted)):
            self._reply(peer, Nak())
            return
        changed = tuple((i, t) for i, t in wanted.items() if names[i] != t)
        try:
            update = self._encoder.send(Labels(request.table, changed)) if changed else b""
        except ValueError:  # a label this device could not send back
            self._reply(peer, Nak())
            return
        self._reply(peer, Ack())
        for index, text in changed:
            names[index] = text
        self.broadcast(update)

    def _label_list(self, which: LabelTable) -> list[str] | None:
        if which is LabelTable.INPUT:
            return self.input_labels
        for table in self.tables.values():
            if table.labels is which:
                return table.names
        return None

    def _lock(self, peer: EmulatorPeer, request: Locks) -> None:
        table = self._table(request)
        wanted = dict(request.locks)
        owner = peer.state.owner
        if (table is None or request.unparsed or not wanted
                or not all(0 <= p < table.size for p in wanted)):
            self._reply(peer, Nak())
            return
        # taking or releasing someone else's lock needs F (force) [VH §6]
        if any(letter in (LockState.OWNED, LockState.UNLOCKED)
               and table.owners.get(port, owner) != owner for port, letter in wanted.items()):
            self._reply(peer, Nak())
            return
        self._reply(peer, Ack())
        changed = []
        for port, letter in wanted.items():
            new = owner if letter is LockState.OWNED else None
            if table.owners.get(port) != new:
                if new is None:
                    del table.owners[port]
                else:
                    table.owners[port] = new
                changed.append(port)
        self._broadcast_locks(table, changed)

    def _directions(self, peer: EmulatorPeer, request: PortValues) -> None:
        wanted = dict(request.values)
        if (request.unparsed or not wanted or not all(
                0 <= p < len(self.directions) and d in _DIRECTIONS for p, d in wanted.items())):
            self._reply(peer, Nak())
            return
        self._reply(peer, Ack())
        changed = tuple((p, d) for p, d in wanted.items() if self.directions[p] != d)
        for port, direction in changed:
            self.directions[port] = direction
        if changed:
            self._broadcast(PortValues(ValueTable.SERIAL_PORT_DIRECTIONS, changed))

    def _configure(self, peer: EmulatorPeer, request: KeyValues) -> None:
        items = dict(request.items)
        if (self._version < (2, 7)
                or request.unparsed or set(items) != {"Take Mode"}
                or items["Take Mode"] not in ("true", "false")):
            self._reply(peer, Nak())
            return
        self._reply(peer, Ack())
        take_mode = items["Take Mode"] == "true"
        if take_mode != self.take_mode:
            self.take_mode = take_mode
            self._broadcast(self._configuration())

    def _broadcast(self, message: Message) -> None:
        self.broadcast(self._encoder.send(message))

    def _broadcast_locks(self, table: _Table, ports: list[int]) -> None:
        """Tell every client of changed locks, each with its own letters [VH §6]."""
        if not ports:
            return
        for peer in self.peers:
            if isinstance(peer.state, _Client):
                peer.send(self._encoder.send(self._locks_for(peer.state, table, ports)))

    # -- the frame's own panel, and test hooks -------------------------------------------
    def panel_route(self, output: int, source: int, table: str = "video") -> None:
        """Route as a front panel or hardware control panel would: at once, locks or not;
        every client is told."""
        t = self.tables[table]
        if not 0 <= output < t.size or not t.source_ok(source):
            raise ValueError(f"{table} route {output} <- {source} out of range")
        if t.routes[output] != source:
            t.routes[output] = source
            self._broadcast(Routes(t.routing, ((output, source),)))

    def panel_label(self, which: LabelTable, index: int, text: str) -> None:
        """Change a label at the device; every client is told."""
        names = self._label_list(LabelTable(which))
        if names is None or not 0 <= index < len(names):
            raise ValueError(f"{LabelTable(which).value} {index} out of range")
        update = self._encoder.send(Labels(LabelTable(which), ((index, text),)))
        if names[index] != text:
            names[index] = text
            self.broadcast(update)

    def panel_lock(self, output: int, owner: str | None = "10.0.0.7",
                   table: str = "video") -> None:
        """Lock ``output`` as a client at address ``owner`` would (None unlocks it)."""
        t = self.tables[table]
        if not 0 <= output < t.size:
            raise ValueError(f"{table} port {output} out of range")
        if t.owners.get(output) != owner:
            if owner is None:
                del t.owners[output]
            else:
                t.owners[output] = owner
            self._broadcast_locks(t, [output])

    def inject_block(self, header: str, lines: Iterable[str] = ()) -> None:
        """Send every client a block the protocol does not define (clients must skip it)."""
        self._broadcast(UnknownBlock(header, tuple(lines)))

    def source(self, output: int, table: str = "video") -> int:
        """The input (or serial port) feeding ``output`` now."""
        return self.tables[table].routes[output]

    def lock_owner_of(self, output: int, table: str = "video") -> str | None:
        """Who holds the lock on ``output`` (an address, or a connection name), or None."""
        return self.tables[table].owners.get(output)

    def label(self, which: LabelTable, index: int) -> str:
        names = self._label_list(LabelTable(which))
        if names is None:
            raise ValueError(f"this Videohub has no {LabelTable(which).value}")
        return names[index]

    def commands(self, kind: type[Message] | tuple[type[Message], ...] = Message,
                 peer: str | None = None) -> list[Any]:
        """The blocks received, of ``kind``, from ``peer`` (every controller when None)."""
        return [m for name, m in self.command_log
                if isinstance(m, kind) and (peer is None or name == peer)]
