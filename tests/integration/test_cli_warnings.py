"""No Python warning from a library on stderr: what an operator sees of each command that
loads plugins or keys (issue 12). asyncssh's modules, imported when the failover plugins
load, raise ``CryptographyDeprecationWarning`` with recent ``cryptography`` releases."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tieline.kit.testing import write_settings

from .helpers import TIELINE, run_until_serving

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
    status, _, stderr = run_until_serving(settings, env)
    assert status == 0, stderr
    assert_no_warning(stderr)
