"""The simulator driver: controller-side glue between the codec and the device link.

Without a ``"transport"`` block the driver starts an in-process :class:`SimulatorEmulator`
sized from the router's settings and talks to it over a memory pipe; with one (``tcp``, for
example to ``tieline emulate simulator``) it connects like any hardware driver. Either way
the same bytes go through the same :class:`tieline.devices.DeviceLink`.

Settings (the router block): ``switch_delay_ms`` — how long the in-process simulator takes
to make a route (default 0).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from tieline import (
    ByteStream,
    Crosspoint,
    DeviceReport,
    Driver,
    DriverSession,
    InvalidRequest,
    LabelReport,
    LinkError,
    PortKind,
    Protect,
    ProtectKind,
    ProtectReport,
    RemoteProtocolError,
    RequestRefused,
    RouterSpec,
    SyncDone,
    TallyReport,
    Transport,
)

from .codec import (
    OWNER_CODES,
    PROTOCOL_VERSION,
    Codec,
    Dump,
    End,
    ErrorReply,
    Hello,
    Info,
    Label,
    Message,
    Ping,
    Release,
    Role,
    Route,
    SetProtect,
    Tally,
    Unprotect,
)
from .emulator import SimulatorEmulator

log = logging.getLogger(__name__)

#: consecutive tallies are merged into one report up to about this many crosspoints
MERGE_TALLIES = 4096


class SimulatorSession(DriverSession):
    """One connection to a simulated router, controller side.

    :param spec: the router's shape from settings (for log lines and size checks).
    """

    def __init__(self, spec: RouterSpec) -> None:
        super().__init__()
        self.spec = spec
        self._codec = Codec(Role.CONTROLLER)
        self._dumping = False
        #: the device's size, once it has said.
        self.info: Info | None = None

    def _queue(self, message: Message) -> None:
        try:
            self._send(self._codec.send(message))
        except ValueError as exc:
            raise InvalidRequest(
                f"router '{self.spec.id}': the request cannot be sent to the simulator: {exc}"
            ) from None

    # -- device -> core ----------------------------------------------------------------
    def connection_made(self, now: float) -> None:
        self._queue(Hello())
        self._queue(Dump())
        self._dumping = True

    def receive_data(self, data: bytes, now: float) -> list[DeviceReport]:
        self._codec.receive_data(data)
        # Consecutive tallies and same-kind labels are merged: a dump is a few reports.
        out: list[DeviceReport | list[Crosspoint] | tuple[PortKind, list[tuple[int, str]]]]
        out = []
        for message in self._codec.events():
            match message:
                case Tally(crosspoints):
                    # merged up to a level's worth: a whole dump as one report would make
                    # one event of every crosspoint, all alive at once
                    if out and isinstance(out[-1], list) and len(out[-1]) < MERGE_TALLIES:
                        out[-1].extend(crosspoints)
                    else:
                        out.append(list(crosspoints))
                case Label(kind, index, text):
                    last = out[-1] if out else None
                    if isinstance(last, tuple) and last[0] is kind:
                        last[1].append((index, text))
                    else:
                        out.append((kind, [(index, text)]))
                case SetProtect(level, destination, kind, owner):
                    out.append(ProtectReport(level, destination, Protect(kind, owner)))
                case Unprotect(level, destination):
                    out.append(ProtectReport(level, destination, None))
                case ErrorReply(code, level, destination, owner, text):
                    if destination is None:
                        log.warning("router '%s': the simulator said %s: %s",
                                    self.spec.id, code, text)
                    else:
                        out.append(RequestRefused(
                            level, destination, text, owner if code in OWNER_CODES else None
                        ))
                case End():
                    if self._dumping:
                        self._dumping = False
                        out.append(SyncDone())
                case Info():
                    self._check_size(message)
                case Hello(version) if version != PROTOCOL_VERSION:
                    raise RemoteProtocolError(
                        f"the simulator speaks protocol version {version}; this tieline "
                        f"speaks {PROTOCOL_VERSION}"
                    )
        return [
            TallyReport(tuple(item)) if isinstance(item, list)
            else LabelReport(item[0], tuple(item[1])) if isinstance(item, tuple)
            else item
            for item in out
        ]

    def _check_size(self, info: Info) -> None:
        first = self.info is None
        self.info = info
        spec = self.spec
        if first and (info.levels, info.sources, info.destinations) != (
            len(spec.levels), spec.sources, spec.destinations
        ):
            log.warning(
                "router '%s': the simulator has %d level(s), %d sources and %d destinations; "
                "settings say %d, %d and %d. Only the part both have is controlled; fix the "
                "settings or the simulator's size.",
                spec.id, info.levels, info.sources, info.destinations, len(spec.levels),
                spec.sources, spec.destinations,
            )

    # -- core -> device ----------------------------------------------------------------
    def route(self, crosspoints: Sequence[Crosspoint], owner: str) -> None:
        self._queue(Route(owner, tuple(crosspoints)))

    def protect(self, level: int, destination: int, kind: ProtectKind, owner: str) -> None:
        self._queue(SetProtect(level, destination, kind, owner))

    def release(self, level: int, destination: int, owner: str, force: bool) -> None:
        self._queue(Release(level, destination, owner, force))

    def set_label(self, kind: PortKind, index: int, text: str) -> None:
        self._queue(Label(kind, index, text))

    def keepalive(self, now: float) -> None:
        self._queue(Ping())


class SimulatorDriver(Driver):
    """The simulator: in-process by default, or a simulator served over TCP."""

    name = "simulator"
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "switch_delay_ms": {
                "type": "number",
                "minimum": 0,
                "maximum": 60000,
                "default": 0,
                "description": "how long the in-process simulator takes to make a route, "
                               "in milliseconds",
            },
        },
    }
    transports = ("tcp",)
    transport_required = False
    allows_second_controller = True
    device_protects = frozenset({ProtectKind.PROTECT, ProtectKind.LOCK})
    device_labels = True
    keepalive_interval_s = 2.0
    keepalive_timeout_s = 6.0
    sync_timeout_s = 10.0

    def __init__(
        self, spec: RouterSpec, options: dict[str, Any], transport: Transport | None
    ) -> None:
        super().__init__(spec, options, transport)
        #: the in-process device while the link runs (None with a transport block).
        self.device: SimulatorEmulator | None = None

    async def start(self) -> None:
        if self.transport is None:
            self.device = SimulatorEmulator(
                len(self.spec.levels), self.spec.sources, self.spec.destinations,
                switch_delay_s=self.options.get("switch_delay_ms", 0) / 1000,
            )
            await self.device.start()

    async def stop(self) -> None:
        device, self.device = self.device, None
        if device is not None:
            await device.close()

    async def open(self) -> ByteStream:
        if self.transport is not None:
            return await super().open()
        if self.device is None:
            raise LinkError(f"router '{self.spec.id}': the in-process simulator is not running")
        return await self.device.connect()

    def describe(self) -> str:
        return self.transport.describe() if self.transport else "in-process simulator"

    def new_session(self) -> SimulatorSession:
        return SimulatorSession(self.spec)
