"""The tree is the architecture (STYLE.md point 1, README "Layout"): the root of core/ holds
the routing machine, the rest lives in sub-packages, and the core names no plugin."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"

#: the routing machine, the helpers it shares, the public surface and the Python client
ROOT_MODULES = {
    "__init__", "__main__", "model", "events", "routing", "devices", "transports", "failover",
    "hookspecs", "plugin_manager", "node", "auth", "apis", "errors", "addresses", "backoff",
    "logs", "client",
}
SUB_PACKAGES = {"settings", "cluster", "kit", "ops", "cli"}
#: what may name a bundled plugin because it is data: the demo's settings
DATA = {CORE / "ops" / "demo.py"}


def test_the_root_of_core_holds_the_machine():
    assert {p.stem for p in CORE.glob("*.py")} == ROOT_MODULES
    assert {p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()} == SUB_PACKAGES


def _plugin_names() -> set[str]:
    """Every bundled plugin's name, and every driver, API, strategy and emulator name the
    bundled plugins provide."""
    from tieline.plugin_manager import Plugins

    plugins = Plugins()
    names = {ep.name for ep in importlib.metadata.entry_points(group="tieline")
             if ep.value.startswith("tieline.plugins.")}
    for found in (plugins.drivers(), plugins.client_apis(), plugins.strategies(),
                  plugins.failover_actions(), plugins.emulators()):
        names |= {name for name, (plugin, _) in found.items() if plugin in names}
    return names


def test_the_core_names_no_plugin():
    """No string of the core's code is the name of a bundled plugin or of what one provides
    (docstrings may name them as examples; the demo's settings are data)."""
    names = _plugin_names()
    assert {"websocket", "simulator", "vip", "lease"} <= names
    found = []
    for path in sorted(CORE.rglob("*.py")):
        if path in DATA:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                           ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
                  for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in names
                  and id(node) not in docstrings]
    assert found == []


def test_bundled_emulators_are_named_like_their_drivers():
    """Each bundled emulator registers under its driver's name (``tieline emulate
    extron_sis`` for the driver ``extron_sis``), and its class is named like the driver's:
    ``VideohubDriver`` and ``VideohubEmulator``, as the driver template's ``MatrixDriver``
    and ``MatrixEmulator``."""
    from tieline.plugin_manager import Plugins

    plugins = Plugins()
    drivers = plugins.drivers()
    emulators = {name: found for name, found in plugins.emulators().items()
                 if found[1].__module__.startswith("tieline.plugins.")}
    assert {"videohub", "simulator", "swp08", "extron_sis"} <= set(emulators)
    unlike = []
    for name, (plugin, cls) in sorted(emulators.items()):
        driver = drivers.get(name)
        if driver is None or driver[0] != plugin:
            unlike.append(f"emulator '{name}' of plugin '{plugin}': no driver of that name")
        elif cls.__name__ != driver[1].__name__.removesuffix("Driver") + "Emulator":
            unlike.append(f"emulator '{name}': class {cls.__name__} for {driver[1].__name__}")
    assert unlike == []
