"""The client-API plugin template as an integrator uses it (STYLE.md point 20):
``tieline plugin new --kind api`` renders it, the result installs (editable, into this
interpreter), its own tests pass, ``tieline plugins`` lists it, and ``tieline run`` serves
it to a raw TCP client, all as separate processes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import free_port, write_settings
from .kit import TIELINE, installed_plugin, run, run_generated_tests, start, stop

NAME = "acme_panel"
DISTRIBUTION = "tieline-acme-panel"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The rendered plugin, installed editable into this interpreter; uninstalled after."""
    with installed_plugin(tmp_path_factory.mktemp("kit"), NAME, "api") as folder:
        yield folder


def test_the_generated_plugins_own_tests_pass(plugin):
    out = run_generated_tests(plugin)
    assert "skipped" not in out, out


def test_tieline_plugins_lists_it(plugin):
    listed = json.loads(run(TIELINE, "plugins", "--json", cwd=plugin.parent).stdout)
    (info,) = [p for p in listed["plugins"] if p["name"] == NAME]
    assert info == {"name": NAME, "distribution": DISTRIBUTION, "version": "0.1.0",
                    "hooks": ["tieline_client_apis"], "status": "loaded", "error": None}


class LineClient:
    """A control system, as little as it takes: lines out, lines in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.lines = self.sock.makefile("rb")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("ascii") + b"\r\n")

    def read_until(self, wanted: str) -> list[str]:
        """Lines up to and including ``wanted`` (unprompted TALLY lines may come first)."""
        lines: list[str] = []
        while not lines or lines[-1] != wanted:
            line = self.lines.readline()
            assert line, f"the server closed the connection after {lines}"
            lines.append(line.decode("ascii").rstrip("\r\n"))
        return lines

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


def test_settings_using_it_validate_and_run(plugin, tmp_path):
    port = free_port()
    folder = write_settings(tmp_path / "lab", {"tieline.json": {
        "node": {"name": "lab"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video", "audio"],
                     "sources": 8, "destinations": 8}],
        "apis": [{"type": NAME, "listen": f"127.0.0.1:{port}", "permission": 2}],
    }})
    valid = run(TIELINE, "validate", "--settings", str(folder))
    assert "valid (1 router(s), 1 API(s)" in valid.stdout
    node, banner = start(["run", "--settings", str(folder)], " serving ")
    try:
        assert f"{NAME} line API on 127.0.0.1:{port}" in banner
        client = LineClient(port)
        try:
            client.send("PING")
            assert client.read_until("PONG") == ["PONG"]
            client.send("ROUTE studio 3 5")
            answer = client.read_until("OK ROUTE studio 3 5")
            assert set(answer) <= {"TALLY studio 1 3 5", "TALLY studio 2 3 5",
                                   "OK ROUTE studio 3 5"}, answer
            client.send("TALLY? studio")
            dump = client.read_until("END")
            assert "TALLY studio 1 3 5" in dump and "TALLY studio 2 3 5" in dump
            assert len([line for line in dump if line.startswith("TALLY studio ")]) >= 16
            client.send("ROUTE studio 9 1")
            client.send("PING")  # the connection stays
            assert client.read_until("PONG")[-2:] == [
                "ERROR out_of_range router 'studio': destination 9 out of range (1-8)", "PONG"]
        finally:
            client.close()
    finally:
        assert "tieline: stopped" in stop(node)
