"""The {{cookiecutter.driver_name}} driver: controller-side glue between the codec and tieline.

tieline's device link does all the I/O and timing (connect, keepalive, reconnect with
backoff); the driver only says what the device needs (:class:`MatrixDriver`) and turns
bytes into reports and requests into bytes (:class:`MatrixSession`, pure like the codec).

* On every (re)connect the session asks for the whole state (``DUMP``) and reports
  :class:`tieline.SyncDone` at ``END``: tieline follows the device, it never replays
  remembered routes.
* A route is confirmed by the device's ``TALLY``; ``ERROR`` refuses it.
* When the line is idle the link calls :meth:`MatrixSession.keepalive` (``PING``); no
  answer within the timeout drops the connection and reconnects.

Settings (the router block)::

    {"id": "studio", "driver": "{{cookiecutter.driver_name}}", "levels": ["video"],
     "sources": 16, "destinations": 16,
     "transport": {"type": "tcp", "host": "10.0.0.20", "port": 7700},
     "keepalive_interval_s": 5}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from tieline import (
    Crosspoint,
    DeviceReport,
    Driver,
    DriverSession,
    InvalidRequest,
    RequestRefused,
    RouterSpec,
    SyncDone,
    TallyReport,
    Transport,
)

from .codec import Codec, Dump, End, Error, Message, Ping, Role, Size, Tally, Xpt

log = logging.getLogger(__name__)


class MatrixSession(DriverSession):
    """One connection to a {{cookiecutter.driver_name}} router, controller side.

    :param spec: the router's shape from settings (for log lines and size checks).
    """

    def __init__(self, spec: RouterSpec) -> None:
        super().__init__()
        self.spec = spec
        self._codec = Codec(Role.CONTROLLER)
        self._dumping = False
        #: the device's size, once it has said.
        self.size: Size | None = None

    def _queue(self, message: Message) -> None:
        try:
            self._send(self._codec.send(message))
        except ValueError as exc:
            raise InvalidRequest(f"router '{self.spec.id}': cannot send that to the "
                                 f"{{cookiecutter.driver_name}} router: {exc}") from None

    # -- device -> tieline -----------------------------------------------------------------
    def connection_made(self, now: float) -> None:
        self._queue(Dump())
        self._dumping = True

    def receive_data(self, data: bytes, now: float) -> list[DeviceReport]:
        self._codec.receive_data(data)  # RemoteProtocolError: the link resyncs
        reports: list[DeviceReport] = []
        tallies: list[Crosspoint] = []  # consecutive tallies make one report
        for message in self._codec.events():
            if isinstance(message, Tally):
                tallies.append(message.crosspoint)
                continue
            if tallies:
                reports.append(TallyReport(tuple(tallies)))
                tallies = []
            match message:
                case Size():
                    self._check_size(message)
                case End() if self._dumping:
                    self._dumping = False
                    reports.append(SyncDone())
                case Error(level, destination, text) if destination is not None:
                    reports.append(RequestRefused(level, destination, text))
                case Error(text=text):
                    log.warning("router '%s': the device said: %s", self.spec.id, text)
        if tallies:
            reports.append(TallyReport(tuple(tallies)))
        return reports

    def _check_size(self, size: Size) -> None:
        first, self.size = self.size is None, size
        spec = self.spec
        if first and (size.levels, size.sources, size.destinations) != (
                len(spec.levels), spec.sources, spec.destinations):
            log.warning(
                "router '%s': the device has %d level(s), %d sources and %d destinations; "
                "settings say %d, %d and %d. Only the part both have is controlled; fix the "
                "settings.", spec.id, size.levels, size.sources, size.destinations,
                len(spec.levels), spec.sources, spec.destinations)

    # -- tieline -> device -----------------------------------------------------------------
    def route(self, crosspoints: Sequence[Crosspoint], owner: str) -> None:
        # the device confirms every XPT with a TALLY, changed or not
        for xp in crosspoints:
            self._queue(Xpt(xp))

    def keepalive(self, now: float) -> None:
        self._queue(Ping())


class MatrixDriver(Driver):
    """The {{cookiecutter.driver_name}} router over TCP."""

    name = "{{cookiecutter.driver_name}}"
    #: JSON Schema of the driver's own keys in a router block (tieline adds the common
    #: ones: id, driver, levels, sources, destinations, transport …).
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "keepalive_interval_s": {
                "type": "number", "minimum": 0.1, "maximum": 60, "default": 5,
                "description": "send PING after this many seconds without data from the "
                               "device; give the connection up after three times as long",
            },
        },
    }
    transports = ("tcp",)
    transport_required = True
    transport_defaults: ClassVar[dict[str, dict[str, Any]]] = {"tcp": {"port": 7700}}
    allows_second_controller = True  # the device tells every controller of every change
    sync_timeout_s = 10.0

    def __init__(self, spec: RouterSpec, options: dict[str, Any],
                 transport: Transport | None) -> None:
        super().__init__(spec, options, transport)
        self.keepalive_interval_s = float(options.get("keepalive_interval_s", 5))
        self.keepalive_timeout_s = 3 * self.keepalive_interval_s

    def new_session(self) -> MatrixSession:
        return MatrixSession(self.spec)
