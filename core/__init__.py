"""tieline: control broadcast routers, and keep control alive when a controller fails.

This module is the public surface that plugin authors may rely on; a test pins ``__all__``.
Each name is imported from its module when first used (``from tieline import Driver``
works as ever): importing the package itself loads nothing else, so the ``tieline``
command starts without the device, transport and plugin machinery it may not need.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see
    from .devices import (
        Command,
        DeviceReport,
        Driver,
        DriverSession,
        LabelCommand,
        LabelRefused,
        LabelReport,
        Outcome,
        ProtectCommand,
        ProtectReport,
        ReleaseCommand,
        RequestRefused,
        RouteCommand,
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
        NotSaved,
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
        Crosspoint,
        Permission,
        PortKind,
        Principal,
        Protect,
        ProtectKind,
        RouterSpec,
        RouterState,
        Salvo,
        UNKNOWN,
    )
    from .apis import (
        ApiCommand,
        ClientApi,
    )
    from .addresses import parse_hostport
    from .cluster.strategy import PeerLinkStrategy, PeerView
    from .failover import (
        FailoverAction,
        Role,
        State,
        Strategy,
        peer_link_schema,
    )
    from .kit.emulation import DeviceEmulator, EmulatorPeer
    from .kit.framing import LineFramer
    from .logs import LogOnce, RateLimitedLog
    from .node import Node
    from .plugin_manager import (
        await_me_maybe,
        hookimpl,
    )
    from .routing import (
        RouterRuntime,
        RouteRequest,
        RoutingService,
        SalvoResult,
    )
    from .settings.catalog import api_request_schemas
    from .settings.jsonfile import JsonFileError, load_json, write_json_atomic
    from .transports import (
        ByteStream,
        Transport,
        memory_pipe,
    )

#: Where each name of ``__all__`` lives; imported on first use (PEP 562), so that
#: ``import tieline`` (which every ``tieline`` command does first) stays light.
_EXPORTS: dict[str, str] = {
    "Command": "devices",
    "LabelCommand": "devices",
    "Outcome": "devices",
    "ProtectCommand": "devices",
    "ReleaseCommand": "devices",
    "RouteCommand": "devices",
    "DeviceReport": "devices",
    "Driver": "devices",
    "DriverSession": "devices",
    "LabelRefused": "devices",
    "LabelReport": "devices",
    "ProtectReport": "devices",
    "RequestRefused": "devices",
    "SyncDone": "devices",
    "TallyReport": "devices",
    "ConfirmTimeout": "errors",
    "InvalidRequest": "errors",
    "LinkError": "errors",
    "NodeStandby": "errors",
    "NotAuthenticated": "errors",
    "NotFound": "errors",
    "OutOfRange": "errors",
    "PermissionDenied": "errors",
    "PluginError": "errors",
    "Protected": "errors",
    "NotSaved": "errors",
    "ReadOnly": "errors",
    "Refused": "errors",
    "RemoteProtocolError": "errors",
    "RequestError": "errors",
    "RouterOffline": "errors",
    "SettingsError": "errors",
    "SettingsProblem": "errors",
    "TielineError": "errors",
    "CrosspointsChanged": "events",
    "DeviceOffline": "events",
    "DeviceOnline": "events",
    "Event": "events",
    "EventBus": "events",
    "LabelsChanged": "events",
    "NodeStatusChanged": "events",
    "ProtectChanged": "events",
    "SalvosChanged": "events",
    "SettingsChanged": "events",
    "Subscription": "events",
    "Crosspoint": "model",
    "Permission": "model",
    "PortKind": "model",
    "Principal": "model",
    "Protect": "model",
    "ProtectKind": "model",
    "RouterSpec": "model",
    "RouterState": "model",
    "Salvo": "model",
    "UNKNOWN": "model",
    "ApiCommand": "apis",
    "ClientApi": "apis",
    "LogOnce": "logs",
    "RateLimitedLog": "logs",
    "await_me_maybe": "plugin_manager",
    "hookimpl": "plugin_manager",
    "RouteRequest": "routing",
    "RouterRuntime": "routing",
    "RoutingService": "routing",
    "SalvoResult": "routing",
    "parse_hostport": "addresses",
    "PeerLinkStrategy": "cluster.strategy",
    "PeerView": "cluster.strategy",
    "FailoverAction": "failover",
    "Role": "failover",
    "State": "failover",
    "Strategy": "failover",
    "peer_link_schema": "failover",
    "DeviceEmulator": "kit.emulation",
    "EmulatorPeer": "kit.emulation",
    "LineFramer": "kit.framing",
    "Node": "node",
    "api_request_schemas": "settings.catalog",
    "JsonFileError": "settings.jsonfile",
    "load_json": "settings.jsonfile",
    "write_json_atomic": "settings.jsonfile",
    "ByteStream": "transports",
    "Transport": "transports",
    "memory_pipe": "transports",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tieline' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "ApiCommand",
    "ByteStream",
    "ClientApi",
    "Command",
    "ConfirmTimeout",
    "Crosspoint",
    "CrosspointsChanged",
    "DeviceEmulator",
    "DeviceOffline",
    "DeviceOnline",
    "DeviceReport",
    "Driver",
    "DriverSession",
    "EmulatorPeer",
    "Event",
    "EventBus",
    "FailoverAction",
    "InvalidRequest",
    "JsonFileError",
    "LabelCommand",
    "LabelRefused",
    "LabelReport",
    "LabelsChanged",
    "LineFramer",
    "LinkError",
    "LogOnce",
    "Node",
    "NodeStandby",
    "NodeStatusChanged",
    "NotAuthenticated",
    "NotFound",
    "NotSaved",
    "OutOfRange",
    "Outcome",
    "PeerLinkStrategy",
    "PeerView",
    "Permission",
    "PermissionDenied",
    "PluginError",
    "PortKind",
    "Principal",
    "Protect",
    "ProtectChanged",
    "ProtectCommand",
    "ProtectKind",
    "ProtectReport",
    "Protected",
    "RateLimitedLog",
    "ReadOnly",
    "Refused",
    "ReleaseCommand",
    "RemoteProtocolError",
    "RequestError",
    "RequestRefused",
    "Role",
    "RouteCommand",
    "RouteRequest",
    "RouterOffline",
    "RouterRuntime",
    "RouterSpec",
    "RouterState",
    "RoutingService",
    "Salvo",
    "SalvoResult",
    "SalvosChanged",
    "SettingsChanged",
    "SettingsError",
    "SettingsProblem",
    "State",
    "Strategy",
    "Subscription",
    "SyncDone",
    "TallyReport",
    "TielineError",
    "Transport",
    "UNKNOWN",
    "__version__",
    "api_request_schemas",
    "await_me_maybe",
    "hookimpl",
    "load_json",
    "memory_pipe",
    "parse_hostport",
    "peer_link_schema",
    "write_json_atomic",
]
