"""No Python warning from a library on stderr: what an operator sees of each command that
loads plugins or keys (issue 12). asyncssh's modules, imported when the failover plugins
load, raise ``CryptographyDeprecationWarning`` with recent ``cryptography`` releases."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tieline.testing import write_settings

TIELINE = str(Path(sys.executable).with_name("tieline"))
#: how the warnings module prints a warning: ``FILE:LINE: CATEGORY: message``.
WARNING_LINE = re.compile(r"^.*:\d+: \w*Warning: ", re.MULTILINE)


@pytest.fixture
def env(tmp_path):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONWARNINGS", "TIELINE_SETTINGS")}
    return dict(environment, XDG_CONFIG_HOME=str(tmp_path / "config"))


@pytest.fixture
def settings(tmp_path):
    return write_settings(tmp_path / "settings", {"tieline.json": {
        "node": {"name": "quiet"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                     "sources": 4, "destinations": 4}],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
    }})


def assert_no_warning(stderr: str) -> None:
    assert not WARNING_LINE.search(stderr), stderr


@pytest.mark.parametrize("args", [
    ["plugins"],
    ["validate", "--settings", "{settings}"],
    ["keys", "generate", "{tmp}/keys"],
], ids=["plugins", "validate", "keys generate"])
def test_commands_print_no_warning(args, env, settings, tmp_path):
    args = [a.format(settings=settings, tmp=tmp_path) for a in args]
    result = subprocess.run([TIELINE, *args], capture_output=True, text=True, timeout=60,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_warning(result.stderr)


def test_run_prints_no_warning(env, settings):
    proc = subprocess.Popen([TIELINE, "run", "--settings", str(settings)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if " serving " in line:
                break
        else:
            pytest.fail(f"tieline run stopped: {proc.stderr.read()}")  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert_no_warning(stderr)
