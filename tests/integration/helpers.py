"""Helpers for integration tests: run a real node in-process, talk to it over real sockets."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from websockets.asyncio.client import ClientConnection, connect

from tieline.settings import catalog
from tieline.node import Node
from tieline.kit.testing import running_node as running_node  # re-exported for the tests

#: the tieline command of this environment
TIELINE = str(Path(sys.executable).with_name("tieline"))


def run_until_serving(folder: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """``tieline run --settings folder`` as a process, until it says it is serving, then
    SIGTERM: its (exit status, stdout, stderr). Fails with its stderr if it stops first."""
    proc = subprocess.Popen([TIELINE, "run", "--settings", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if " serving " in line:
                break
        else:
            stderr = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"tieline run stopped: {stderr}")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def api_url(node: Node, index: int = 0) -> str:
    return node.apis[index].describe()


_server_validators = {
    name: Draft202012Validator(schema) for name, schema in catalog.api_server_schemas().items()
}


def check_server_message(message: dict[str, Any]) -> dict[str, Any]:
    """Assert that a server message matches its schema in schemas/api/server/."""
    validator = _server_validators[message["type"]]
    errors = list(validator.iter_errors(message))
    assert not errors, f"{message} does not match its schema: {errors[0].message}"
    return message


class RawClient:
    """A bare WebSocket client speaking the JSON API by hand (no tieline client code)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    @classmethod
    async def open(cls, url: str, token: str | None = None, *, auth: bool = True,
                   **kwargs: Any) -> RawClient:
        ws = await connect(url, proxy=None, compression=None, **kwargs)
        client = cls(ws)
        client.hello = check_server_message(json.loads(await ws.recv()))
        if auth:
            response = await client.request("hello", protocol=1,
                                            **({"token": token} if token else {}))
            assert response["ok"], response
        return client

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            message = json.loads(await self.ws.recv())
        return check_server_message(message)

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def request(self, message_type: str, **fields: Any) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id
        await self.ws.send(json.dumps({"type": message_type, "id": request_id, **fields}))
        return await self.response(request_id)

    async def response(self, request_id: Any, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if message["type"] == "response" and message["id"] == request_id:
                    return message
                if message["type"] == "event":
                    self.events.append(message)

    async def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.events:
            return self.events.pop(0)
        while True:
            message = await self.recv(timeout)
            if message["type"] == "event":
                return message

    async def close(self) -> None:
        await self.ws.close()
