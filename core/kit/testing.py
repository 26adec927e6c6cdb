"""Helpers for plugin authors' tests: a real node, in-process, on a settings folder.

A plugin's tests run the plugin inside a real tieline node, with real sockets, as the node
runs it in production (the generated tests of ``tieline plugin new`` do)::

    from tieline.kit.testing import running_node, write_settings

    async def test_my_api(tmp_path):
        folder = write_settings(tmp_path / "lab", {"tieline.json": {
            "node": {"name": "lab"},
            "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                         "sources": 8, "destinations": 8}],
            "apis": [{"type": "my_api", "listen": "127.0.0.1:0"}]}})
        async with running_node(folder) as node:
            ...  # node.apis[0], node.routing, node.status

Nothing here is a mock: ``running_node`` loads the installed plugins and the settings
exactly as ``tieline run`` does, and stops the node cleanly on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from ..node import Node, build_node

__all__ = ["build_node", "free_port", "running_node", "write_settings"]


def write_settings(folder: Path | str, files: Mapping[str, object]) -> Path:
    """Write a settings folder (created if needed): each ``files`` value that is a ``str``
    is written as it is, any other is written as JSON.

    :returns: the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (for settings that need a fixed
    port before the node starts; prefer ``"listen": "127.0.0.1:0"`` where a port may be
    chosen by the system)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def running_node(folder: Path | str, *, online: bool = True, timeout: float = 10.0,
                       prepare: Callable[[Node], None] | None = None) -> AsyncIterator[Node]:
    """Build a node from the settings ``folder``, run it, and stop it on exit.

    :param online: also wait until every router's link is up with its state read.
    :param timeout: how long starting (and, on exit, stopping) may take.
    :param prepare: called with the node after it is built and before it runs (to add a
        listener to ``node.failover.listeners``, say).
    :raises SettingsError: when the folder is invalid.
    :raises TimeoutError: when the node did not start in time.
    :raises Exception: why the node stopped, when it stopped while starting.
    """
    node = build_node(folder)
    if prepare is not None:
        prepare(node)
    task = asyncio.create_task(node.run(), name=f"node {node.settings.node_name}")
    try:
        async with asyncio.timeout(timeout):
            started = asyncio.create_task(node.started.wait())
            done, _ = await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                started.cancel()
                task.result()  # raises why the node stopped
            if online:
                while not all(rt.state.online for rt in node.routing.routers.values()):
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
        yield node
    finally:
        node.stop()
        async with asyncio.timeout(timeout):
            with contextlib.suppress(asyncio.CancelledError):
                await task
