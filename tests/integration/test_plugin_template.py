"""The plugin template as an integrator uses it (STYLE.md point 20): ``tieline plugin new``
renders it, the result installs (editable, into this interpreter), its own tests pass,
``tieline plugins`` lists it, and a node runs a router through its driver against its
emulator (``tieline emulate``), all as separate processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import free_port, write_settings
from .kit import TIELINE, installed_plugin, run, run_generated_tests, start, stop

NAME = "acme_matrix"
DISTRIBUTION = "tieline-acme-matrix"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The rendered plugin, installed editable into this interpreter; uninstalled after."""
    with installed_plugin(tmp_path_factory.mktemp("kit"), NAME, "driver") as folder:
        yield folder


def test_the_generated_plugins_own_tests_pass(plugin):
    run_generated_tests(plugin)


def test_tieline_plugins_lists_it(plugin):
    listed = json.loads(run(TIELINE, "plugins", "--json", cwd=plugin.parent).stdout)
    (info,) = [p for p in listed["plugins"] if p["name"] == NAME]
    assert info == {"name": NAME, "distribution": DISTRIBUTION, "version": "0.1.0",
                    "hooks": ["tieline_emulators", "tieline_router_drivers"],
                    "status": "loaded", "error": None}


def test_settings_using_its_driver_validate_and_run(plugin, tmp_path):
    port = free_port()
    emulator, _ = start(["emulate", NAME, "--listen", f"127.0.0.1:{port}", "--levels", "2",
                          "--inputs", "8", "--outputs", "8"], f"emulating {NAME}")
    node = None
    try:
        folder = write_settings(tmp_path / "lab", {"tieline.json": {
            "node": {"name": "lab"},
            "routers": [{"id": "studio", "driver": NAME, "levels": ["video", "audio"],
                         "sources": 8, "destinations": 8, "keepalive_interval_s": 2,
                         "transport": {"type": "tcp", "host": "127.0.0.1", "port": port}}],
            "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
            "auth": {"loopback_anonymous_level": 2},
        }})
        valid = run(TIELINE, "validate", "--settings", str(folder))
        assert "valid (1 router(s), 1 API(s)" in valid.stdout
        node, banner = start(["run", "--settings", str(folder)], " serving ")
        url = banner.split(" serving ")[1].split()[0]
        routed = run(TIELINE, "route", "3", "5", "--server", url)
        assert routed.stdout.strip().endswith("on video, audio: confirmed"), routed.stdout
        tally = json.loads(run(TIELINE, "tally", "--json", "--server", url).stdout)
        (router,) = tally["routers"]
        assert router["id"] == "studio"
        for level in ("video", "audio"):
            assert {"level": level, "destination": 3, "source": 5} in router["crosspoints"]
        assert len(router["crosspoints"]) == 16  # the whole state was read
    finally:
        if node is not None:
            assert "tieline: stopped" in stop(node)
        stop(emulator)
