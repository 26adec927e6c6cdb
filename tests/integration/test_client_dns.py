"""Clients follow DNS: a host name with several addresses is several endpoints, resolved
again at every pass (core/client.py). The client runs in a mount namespace of its own whose
/etc/hosts is a file of the test's: the name resolves, through the system's resolver, to
what the test says, and the test changes it while the client runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tieline.kit.testing import free_port

from .helpers import running_node

NAME = "tieline-pair.test"

CLIENT = """
import asyncio, json, sys
from tieline.client import Client

async def main(url):
    loop = asyncio.get_running_loop()
    async with Client(url, failover_timeout_s=20, connect_timeout=1.0) as client:
        for _ in range(2):
            status = await client.status()
            print(json.dumps({"node": status["node"], "endpoint": client.endpoint}), flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)

asyncio.run(main(sys.argv[1]))
"""


def _why_not() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot make a mount namespace: {probe.stderr.decode().strip()}"
    return None


def _settings(settings_dir, name: str, listen: str):
    return settings_dir({"tieline.json": {
        "node": {"name": name},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                     "sources": 4, "destinations": 4}],
        "apis": [{"type": "websocket", "listen": listen}],
        "auth": {"loopback_anonymous_level": 1},
    }}, name=name)


async def test_a_name_is_resolved_again_at_every_pass(settings_dir, tmp_path):
    why = _why_not()
    if why:
        pytest.skip(why)
    port = free_port("127.0.0.2")
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {NAME}\n")
    async with contextlib.AsyncExitStack() as node_b_stack:
        node_b = await node_b_stack.enter_async_context(
            running_node(_settings(settings_dir, "node-b", f"127.0.0.2:{port}")))
        node_a_stack = contextlib.AsyncExitStack()
        await node_a_stack.enter_async_context(
            running_node(_settings(settings_dir, "node-a", f"127.0.0.1:{port}")))
        script = tmp_path / "client.py"
        script.write_text(CLIENT)
        proc = await asyncio.create_subprocess_exec(
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind "{hosts}" /etc/hosts && exec "$0" "$@"',
            sys.executable, str(script), f"ws://{NAME}:{port}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdin is not None

            async def line() -> dict:
                async with asyncio.timeout(30):
                    raw = await proc.stdout.readline()
                if not raw:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise AssertionError(f"the client stopped: {err.decode()[-2000:]}")
                return json.loads(raw)

            first = await line()
            assert first["node"] == "node-a", first
            # the name now points at the other node only (it was never in the DNS
            # before), and the first node dies: the client resolves again and moves
            hosts.write_text(f"127.0.0.1 localhost\n127.0.0.2 {NAME}\n")  # same inode
            await node_a_stack.aclose()
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            second = await line()
            assert second["node"] == "node-b", second
            assert second["endpoint"] == f"ws://{NAME}:{port}"
            assert node_b.apis[0].connections  # it is connected to node b
            proc.stdin.write(b"done\n")
            await proc.stdin.drain()
            async with asyncio.timeout(30):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await node_a_stack.aclose()


async def test_every_address_of_a_name_is_an_endpoint(settings_dir, tmp_path):
    """Both addresses in the DNS, the first one hung from the start (it takes the TCP
    connection and never answers, as a paused node does): the client gives it its connect
    timeout, then reaches the second. Connecting to the name alone would try the first
    address only, again and again: the TCP connection to it succeeds."""
    import socket

    why = _why_not()
    if why:
        pytest.skip(why)
    port = free_port("127.0.0.2")
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {NAME}\n127.0.0.2 {NAME}\n")
    hung = socket.socket()
    hung.bind(("127.0.0.1", port))
    hung.listen(16)  # never accepted, never answered
    async with running_node(_settings(settings_dir, "node-b", f"127.0.0.2:{port}")):
        script = tmp_path / "client.py"
        script.write_text(CLIENT)
        result = await asyncio.to_thread(subprocess.run, [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind "{hosts}" /etc/hosts && exec "$0" "$@"',
            sys.executable, str(script), f"ws://{NAME}:{port}"],
            input="a\nb\n", capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        first = json.loads(result.stdout.splitlines()[0])
        assert first["node"] == "node-b"
    hung.close()
