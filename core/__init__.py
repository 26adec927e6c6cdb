"""tieline: control broadcast routers, and keep control alive when a controller fails.

This module is the public surface that plugin authors may rely on; a test pins ``__all__``.
"""

from __future__ import annotations

import logging

from .devices import (
    DeviceReport,
    Driver,
    DriverSession,
    LabelRefused,
    LabelReport,
    ProtectReport,
    RequestRefused,
    SyncDone,
    TallyReport,
)
from .errors import (
    ConfirmTimeout,
    InvalidRequest,
    LinkError,
    NodeStandby,
    NotAuthenticated,
    NotFound,
    OutOfRange,
    PermissionDenied,
    PluginError,
    Protected,
    ReadOnly,
    Refused,
    RemoteProtocolError,
    RequestError,
    RouterOffline,
    SettingsError,
    SettingsProblem,
    TielineError,
)
from .events import (
    CrosspointsChanged,
    DeviceOffline,
    DeviceOnline,
    Event,
    EventBus,
    LabelsChanged,
    NodeStatusChanged,
    ProtectChanged,
    SalvosChanged,
    SettingsChanged,
    Subscription,
)
from .model import (
    UNKNOWN,
    Crosspoint,
    Permission,
    PortKind,
    Principal,
    Protect,
    ProtectKind,
    RouterSpec,
    RouterState,
    Salvo,
)
from .apis import ApiCommand, ClientApi
from .plugin_manager import await_me_maybe, hookimpl
from .routing import RouteRequest, SalvoResult
from .transports import ByteStream, Transport

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "ApiCommand",
    "ByteStream",
    "ClientApi",
    "ConfirmTimeout",
    "Crosspoint",
    "CrosspointsChanged",
    "DeviceOffline",
    "DeviceOnline",
    "DeviceReport",
    "Driver",
    "DriverSession",
    "Event",
    "EventBus",
    "InvalidRequest",
    "LabelRefused",
    "LabelReport",
    "LabelsChanged",
    "LinkError",
    "NodeStandby",
    "NodeStatusChanged",
    "NotAuthenticated",
    "NotFound",
    "OutOfRange",
    "Permission",
    "PermissionDenied",
    "PluginError",
    "PortKind",
    "Principal",
    "Protect",
    "ProtectChanged",
    "ProtectKind",
    "ProtectReport",
    "Protected",
    "ReadOnly",
    "Refused",
    "RemoteProtocolError",
    "RequestError",
    "RequestRefused",
    "RouteRequest",
    "RouterOffline",
    "RouterSpec",
    "RouterState",
    "Salvo",
    "SalvoResult",
    "SalvosChanged",
    "SettingsChanged",
    "SettingsError",
    "SettingsProblem",
    "Subscription",
    "SyncDone",
    "TallyReport",
    "TielineError",
    "Transport",
    "UNKNOWN",
    "__version__",
    "await_me_maybe",
    "hookimpl",
]
