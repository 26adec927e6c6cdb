"""The ``tieline`` command imports only what the command run needs.

Structural, not timed: which modules a fresh interpreter holds after ``tieline --help``,
``tieline status --help`` and a ``tieline status`` that reaches no server. The start-up
times themselves are measured in tests/benchmarks/test_cli_startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: What no help text and no ``tieline status`` needs: the node's machinery (devices,
#: transports, routing, settings, plugins) and the libraries behind it.
NODE_MACHINERY = {
    "tieline.devices", "tieline.transports", "tieline.routing", "tieline.node",
    "tieline.settings", "tieline.plugin_manager", "tieline.cluster", "tieline.ops",
    "tieline.events", "tieline.model", "tieline.failover", "pluggy", "jsonschema", "asyncssh",
    "serial", "serial_asyncio", "tieline.plugins",
}
#: What only commands that talk to a node need (websockets reads its own version with
#: importlib.metadata, which costs about as much as click).
CLIENT = {"asyncio", "websockets", "ssl", "tieline.client", "importlib.metadata"}

PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
from tieline.cli import main
main(%r)
"""


def modules_after(*args: str) -> set[str]:
    """The modules loaded once ``tieline ARGS`` has run, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE % (list(args),)], capture_output=True,
                          text=True, timeout=60)
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def loaded(modules: set[str], names: set[str]) -> set[str]:
    """Which of ``names`` (or a submodule of one) is in ``modules``."""
    return {n for n in names if any(m == n or m.startswith(n + ".") for m in modules)}


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["route", "--help"],
                                  ["run", "--help"], ["--version"]])
def test_help_loads_neither_the_node_nor_the_client(args):
    modules = modules_after(*args)
    assert "click" in modules
    assert loaded(modules, NODE_MACHINERY | CLIENT) == set()


def test_status_loads_the_client_and_not_the_node():
    modules = modules_after("status", "--server", "ws://127.0.0.1:9")
    assert loaded(modules, {"tieline.client", "websockets", "asyncio"}) \
        == {"tieline.client", "websockets", "asyncio"}
    assert loaded(modules, NODE_MACHINERY) == set()


def test_the_public_surface_still_imports_on_demand():
    """``import tieline`` is light; every name of ``__all__`` still comes when asked."""
    probe = ("import sys, tieline; before = 'tieline.devices' in sys.modules; "
             "from tieline import Driver, hookimpl, EventBus; "
             "print(before, 'tieline.devices' in sys.modules, Driver.__module__)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["False", "True", "tieline.devices"]


def test_every_public_name_has_a_home():
    import tieline

    assert sorted([*tieline._EXPORTS, "__version__"]) == sorted(tieline.__all__)
