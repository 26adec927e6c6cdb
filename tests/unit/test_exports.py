"""The public surface plugin authors rely on is pinned: changing it is a deliberate act."""

import tieline

EXPECTED = [
    "Command", "LabelCommand", "Outcome", "ProtectCommand", "ReleaseCommand", "RouteCommand",
    "ApiCommand", "ByteStream", "ClientApi", "ConfirmTimeout", "Crosspoint",
    "CrosspointsChanged", "DeviceOffline", "DeviceOnline", "DeviceReport", "Driver",
    "DriverSession", "Event", "EventBus", "InvalidRequest", "LabelRefused", "LabelReport", "LabelsChanged",
    "LinkError", "NodeStandby", "NodeStatusChanged", "NotAuthenticated", "NotFound",
    "OutOfRange", "PermissionDenied", "PluginError", "PortKind", "Principal", "Protect",
    "ProtectChanged", "ProtectKind", "ProtectReport", "Protected", "RateLimitedLog",
    "ReadOnly", "Refused",
    "RemoteProtocolError", "RequestError", "RequestRefused", "RouteRequest", "RouterOffline",
    "RouterSpec", "RouterState", "Salvo", "SalvoResult", "SalvosChanged", "SettingsChanged", "SettingsError",
    "SettingsProblem", "Subscription", "SyncDone", "TallyReport", "TielineError", "Transport",
    "UNKNOWN", "__version__", "await_me_maybe", "hookimpl", "Permission",
]


def test_all_is_sorted_and_pinned():
    assert tieline.__all__ == sorted(tieline.__all__)
    assert sorted(tieline.__all__) == sorted(EXPECTED)


def test_every_name_is_importable():
    for name in tieline.__all__:
        assert getattr(tieline, name) is not None
