"""The public surface plugin authors rely on is pinned: changing it is a deliberate act.

A plugin, bundled or third-party, may use nothing else: every bundled plugin imports from
``tieline`` only (and its own modules); it never imports another plugin or a module of the
core (test_bundled_plugins_import_only_the_public_surface).
"""

import ast
from pathlib import Path

import pytest

import tieline

EXPECTED = [
    "Command", "LabelCommand", "Outcome", "ProtectCommand", "ReleaseCommand", "RouteCommand",
    "ApiCommand", "ByteStream", "ClientApi", "ConfirmTimeout", "Crosspoint",
    "CrosspointsChanged", "DeviceOffline", "DeviceOnline", "DeviceReport", "Driver",
    "DriverSession", "Event", "EventBus", "InvalidRequest", "LabelRefused", "LabelReport",
    "LabelsChanged", "LinkError", "NodeStandby", "NodeStatusChanged", "NotAuthenticated",
    "NotFound", "NotSaved", "OutOfRange", "PermissionDenied", "PluginError", "PortKind", "Principal",
    "Protect", "ProtectChanged", "ProtectKind", "ProtectReport", "Protected", "RateLimitedLog",
    "ReadOnly", "Refused", "RemoteProtocolError", "RequestError", "RequestRefused",
    "RouteRequest", "RouterOffline", "RouterSpec", "RouterState", "Salvo", "SalvoResult",
    "SalvosChanged", "SettingsChanged", "SettingsError", "SettingsProblem", "Subscription",
    "SyncDone", "TallyReport", "TielineError", "Transport", "UNKNOWN", "__version__",
    "await_me_maybe", "hookimpl", "Permission",
    # what client APIs drive, and the node they serve (hooks receive it)
    "Node", "RouterRuntime", "RoutingService", "api_request_schemas", "parse_hostport",
    # failover strategies and actions
    "FailoverAction", "PeerLinkStrategy", "PeerView", "Role", "State", "Strategy",
    "peer_link_schema", "JsonFileError", "load_json", "write_json_atomic",
    # device emulators and codecs
    "DeviceEmulator", "EmulatorPeer", "LineFramer", "memory_pipe",
    # a problem logged once while it lasts
    "LogOnce",
]

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
#: third-party plugins' code the repository holds: the test fixture, and the package of
#: each template of ``tieline plugin new`` (before rendering: its own name is a placeholder)
THIRD_PARTY = [ROOT / "tests" / "fixtures" / "thirdparty_plugin" / "tieline_thirdparty_example",
               *sorted(ROOT.glob("plugin_template/*/*/{{cookiecutter.plugin_name}}"))]


def test_all_is_sorted_and_pinned():
    assert tieline.__all__ == sorted(tieline.__all__)
    assert sorted(tieline.__all__) == sorted(EXPECTED)


def test_every_name_is_importable():
    for name in tieline.__all__:
        assert getattr(tieline, name) is not None


def outside_imports(path: Path, package: Path, own: str) -> list[str]:
    """What the module at ``path`` of the plugin package in the folder ``package``, imported
    as ``own``, imports of tieline that a third-party plugin could not: a module of the
    core, another plugin, a name of ``tieline`` outside ``__all__`` (``from tieline import
    catalog``, ``tieline.devices``), each as ``file:line: what``."""
    where = path.relative_to(ROOT)
    depth = len(path.relative_to(package).parts)  # 1: in the package's own folder
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno}: import {alias.name}" for alias in node.names
                      if alias.name.startswith("tieline.")
                      and not alias.name.startswith(own + ".")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: it may not climb out of the plugin's package
                if node.level > depth:
                    found.append(f"{where}:{node.lineno}: from {'.' * node.level}"
                                 f"{node.module or ''} import …")
                continue
            module = node.module or ""
            if module == "tieline":
                found += [f"{where}:{node.lineno}: from tieline import {alias.name} "
                          "(not in tieline.__all__)"
                          for alias in node.names if alias.name not in tieline.__all__]
            elif module.startswith("tieline.") and module != own \
                    and not module.startswith(own + "."):
                found.append(f"{where}:{node.lineno}: from {module} import …")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "tieline" and node.attr not in tieline.__all__:
            found.append(f"{where}:{node.lineno}: tieline.{node.attr} (not in tieline.__all__)")
    return found


def package_outside_imports(package: Path, own: str) -> list[str]:
    return [line for path in sorted(package.rglob("*.py"))
            for line in outside_imports(path, package, own)]


@pytest.mark.parametrize("plugin", sorted(p.name for p in PLUGINS.iterdir()
                                          if (p / "__init__.py").is_file()))
def test_bundled_plugins_import_only_the_public_surface(plugin):
    """Only ``tieline`` (names of ``__all__``) and the plugin's own modules: never a module
    of the core, never another plugin."""
    found = package_outside_imports(PLUGINS / plugin, f"tieline.plugins.{plugin}")
    assert found == [], ("a bundled plugin uses what a third-party plugin cannot; add what "
                         "it needs to tieline.__all__ (core/__init__.py) or do without:\n"
                         + "\n".join(found))


@pytest.mark.parametrize("package", THIRD_PARTY, ids=lambda p: str(p.relative_to(ROOT)))
def test_third_party_plugins_here_import_only_the_public_surface(package):
    """The same for the third-party plugin of the tests and the plugin templates' code
    (their tests may also use :mod:`tieline.kit.testing`)."""
    assert package_outside_imports(package, package.name) == []
