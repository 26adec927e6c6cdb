"""Python client for the WebSocket API.

::

    async with Client(["ws://10.0.0.1:8181", "ws://10.0.0.2:8181"], token=TOKEN) as client:
        await client.subscribe()                 # mirror state and receive events
        await client.route("studio", 5, 3)       # returns after the router confirmed it
        print(client.routers["studio"].source("video", 5))

Numbers are 1-based, levels are named, as in the API. The client holds a list of endpoints
and connects to the first that answers; it watches the server's heartbeat and declares the
connection dead after ``heartbeat_timeout_ms`` (from the server's hello) without a message.
(Moving to another endpoint after a failure, resubscribing and retrying unacknowledged
requests belong to the failover work.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl as ssl_module
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from . import errors
from .errors import RequestError, TielineError

log = logging.getLogger(__name__)

PROTOCOL = 1

_ERRORS: dict[str, type[RequestError]] = {
    cls.code: cls
    for cls in (errors.InvalidRequest, errors.NotFound, errors.OutOfRange,
                errors.NotAuthenticated, errors.PermissionDenied, errors.Refused,
                errors.RouterOffline, errors.ConfirmTimeout, errors.ReadOnly)
}


class ConnectionLost(TielineError):
    """The connection to the server failed, or the server stopped answering."""


def error_from(payload: dict[str, Any]) -> RequestError:
    """The exception for an API error payload (``code``, ``message``, ``field``)."""
    code = payload.get("code", "error")
    message = payload.get("message", "")
    field_name = payload.get("field")
    if code == "protected":
        return errors.Protected(message, owner=payload.get("owner", ""), field=field_name)
    if code == "standby":
        return errors.NodeStandby(message, active=payload.get("active"))
    cls = _ERRORS.get(code)
    if cls is None:
        error = RequestError(message, field=field_name)
        error.code = code
        return error
    return cls(message, field=field_name)


@dataclass
class RouterMirror:
    """A router as the client last heard of it. Numbers 1-based; sources None when unknown."""

    id: str
    levels: list[str]
    sources: int
    destinations: int
    online: bool
    labels: dict[str, list[str]]
    crosspoints: dict[str, list[int | None]]
    protects: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> RouterMirror:
        return cls(
            id=data["id"], levels=list(data["levels"]), sources=data["sources"],
            destinations=data["destinations"], online=data["online"],
            labels={k: list(v) for k, v in data["labels"].items()},
            crosspoints={k: list(v) for k, v in data["crosspoints"].items()},
            protects={(p["level"], p["destination"]): {"kind": p["kind"], "owner": p["owner"]}
                      for p in data["protects"]},
        )

    def source(self, level: str, destination: int) -> int | None:
        """The 1-based source feeding a 1-based destination on ``level``."""
        return self.crosspoints[level][destination - 1]

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "crosspoints":
            for xp in event["crosspoints"]:
                self.crosspoints[xp["level"]][xp["destination"] - 1] = xp["source"]
        elif kind == "labels":
            ports = self.labels["sources" if event["kind"] == "source" else "destinations"]
            for item in event["labels"]:
                ports[item["index"] - 1] = item["text"] or str(item["index"])
        elif kind == "protect":
            key = (event["level"], event["destination"])
            if event["protect"] is None:
                self.protects.pop(key, None)
            else:
                self.protects[key] = event["protect"]
        elif kind == "device":
            self.online = event["online"]


class Client:
    """A connection to a tieline node's WebSocket API.

    :param endpoints: ``ws://`` or ``wss://`` URLs, tried in order (a comma-separated string
        is accepted too).
    :param token: the user's token (None: anonymous, loopback only where settings allow).
    :param connect_timeout: seconds allowed per endpoint for connect and hello.
    :param ssl: an SSLContext for wss:// endpoints (e.g. trusting a private CA).
    """

    def __init__(
        self, endpoints: str | Sequence[str], *, token: str | None = None,
        connect_timeout: float = 3.0, ssl: ssl_module.SSLContext | None = None,
        client_name: str = "tieline-python",
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise ValueError("give at least one endpoint URL, e.g. ws://127.0.0.1:8181")
        self.endpoints = list(endpoints)
        self.token = token
        self.connect_timeout = connect_timeout
        self.ssl = ssl
        self.client_name = client_name
        self.endpoint: str | None = None
        self.hello: dict[str, Any] = {}
        self.user: dict[str, Any] = {}
        self.node: dict[str, Any] = {}
        self.routers: dict[str, RouterMirror] = {}
        self.salvos: list[dict[str, Any]] = []
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._last_seen = 0.0
        self._closed: asyncio.Event = asyncio.Event()
        self.close_reason: str | None = None

    # -- connection --------------------------------------------------------------------
    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect to the first endpoint that answers and authenticate.

        :raises ConnectionLost: when no endpoint could be reached (every reason listed).
        :raises RequestError: when the server refused the token.
        """
        failures = []
        for url in self.endpoints:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await self._open(url)
                return
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed,
                    ConnectionLost) as exc:
                failures.append(f"{url}: {_describe(exc)}")
                await self._drop()
            except RequestError:  # the server refused our hello: do not try the others
                await self._drop("hello refused")
                raise
        raise ConnectionLost("cannot reach any tieline server: " + "; ".join(failures))

    async def _open(self, url: str) -> None:
        options: dict[str, Any] = {}
        if url.startswith("wss:") and self.ssl is not None:
            options["ssl"] = self.ssl  # else websockets verifies against the system's CAs
        ws = await connect(url, compression=None, proxy=None, ping_interval=None,
                           max_size=None, close_timeout=2, **options)
        self._ws = ws
        self._closed = asyncio.Event()
        self.close_reason = None
        hello = json.loads(await ws.recv())
        if hello.get("type") != "hello":
            raise ConnectionLost(f"expected hello from the server, got {hello.get('type')!r}")
        self.hello = hello
        self.node = hello["node"]
        self.endpoint = url
        self._last_seen = time.monotonic()
        self._reader = asyncio.create_task(self._read(ws), name=f"tieline client {url}")
        hello_request: dict[str, Any] = {"protocol": PROTOCOL, "client": self.client_name}
        if self.token:
            hello_request["token"] = self.token
        result = await self.request("hello", **hello_request)
        self.user = result["user"]
        self.node = result["node"]

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        await self._drop("closed by the client")

    async def _drop(self, reason: str = "connection failed") -> None:
        ws, self._ws = self._ws, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if ws is not None:
            await ws.close()
        self._fail_pending(reason)

    def _fail_pending(self, reason: str) -> None:
        self.close_reason = self.close_reason or reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(
                    f"connection to {self.endpoint} lost before the answer ({reason}); the "
                    "request may or may not have been carried out"))
        self._pending.clear()
        self._closed.set()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._closed.is_set()

    async def wait_closed(self) -> str | None:
        """Wait until the connection ends; return why."""
        await self._closed.wait()
        return self.close_reason

    async def _read(self, ws: ClientConnection) -> None:
        timeout = self.hello.get("heartbeat_timeout_ms", 1500) / 1000
        reason = "server closed the connection"
        try:
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        raw = await ws.recv()
                except TimeoutError:
                    reason = f"no message from the server for {timeout:g} s (server dead?)"
                    log.warning("tieline server %s: %s", self.endpoint, reason)
                    return
                self._last_seen = time.monotonic()
                self._dispatch(json.loads(raw))
        except ConnectionClosed as exc:
            reason = f"server closed the connection ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        finally:
            self._fail_pending(reason)
            if self._ws is ws:
                asyncio.get_running_loop().create_task(ws.close())

    def _dispatch(self, message: dict[str, Any]) -> None:
        mtype = message.get("type")
        if mtype == "response":
            future = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                if message["ok"]:
                    future.set_result(message.get("result", {}))
                else:
                    future.set_exception(error_from(message["error"]))
        elif mtype == "event":
            router = self.routers.get(message.get("router", ""))
            if router is not None:
                router.apply(message)
            if message["event"] == "status":
                self.node = message["status"]
            for listener in list(self._listeners):
                listener(message)

    # -- requests ----------------------------------------------------------------------
    async def request(self, message_type: str, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its response.

        :returns: the response's ``result``.
        :raises RequestError: the server's error (subclass by code).
        :raises ConnectionLost: when the connection ends first.
        """
        if self._ws is None or self._closed.is_set():
            raise ConnectionLost(f"not connected ({self.close_reason or 'never connected'})")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message = {"type": message_type, "id": request_id, **fields}
        try:
            await self._ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            self._pending.pop(request_id, None)
            raise ConnectionLost(f"connection to {self.endpoint} closed: {exc}") from exc
        return await future

    async def subscribe(self) -> None:
        """Mirror the node's state (``routers``, ``salvos``) and start receiving events."""
        snapshot = await self.request("subscribe")
        self._load(snapshot)

    async def snapshot(self) -> dict[str, Any]:
        snapshot = await self.request("snapshot")
        self._load(snapshot)
        return snapshot

    def _load(self, snapshot: dict[str, Any]) -> None:
        self.routers = {r["id"]: RouterMirror.from_snapshot(r) for r in snapshot["routers"]}
        self.salvos = snapshot["salvos"]

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(event)`` for every event message (after the mirror applied it)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.remove(listener)

    def events(self) -> EventStream:
        """Event messages from now on, as an async iterator; it ends with the connection.

        The stream starts queueing at once (before the first ``anext``); ``aclose()`` it when
        done. Subscribe first, or no events come.
        """
        return EventStream(self)

    async def status(self) -> dict[str, Any]:
        return await self.request("status")

    async def route(self, router: str, destination: int, source: int,
                    levels: Sequence[str] | None = None) -> dict[str, Any]:
        """Route 1-based ``source`` to ``destination``; returns after the router confirmed it."""
        fields: dict[str, Any] = {"router": router, "destination": destination, "source": source}
        if levels:
            fields["levels"] = list(levels)
        return await self.request("route", **fields)

    async def salvo(self, name: str) -> dict[str, Any]:
        """Take a salvo; the result lists ``taken`` and ``refused`` crosspoints."""
        return await self.request("salvo", name=name)

    async def protect(self, router: str, destination: int,
                      levels: Sequence[str] | None = None) -> None:
        await self.request("protect", router=router, destination=destination,
                           **({"levels": list(levels)} if levels else {}))

    async def lock(self, router: str, destination: int,
                   levels: Sequence[str] | None = None) -> None:
        await self.request("lock", router=router, destination=destination,
                           **({"levels": list(levels)} if levels else {}))

    async def release(self, router: str, destination: int,
                      levels: Sequence[str] | None = None, *, force: bool = False) -> None:
        await self.request("release", router=router, destination=destination, force=force,
                           **({"levels": list(levels)} if levels else {}))

    async def label(self, router: str, kind: str, index: int, text: str) -> None:
        await self.request("label", router=router, kind=kind, index=index, text=text)


class EventStream:
    """Events of one :class:`Client`, queued from the moment the stream was made."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        client.add_listener(self._queue.put_nowait)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self._queue.empty():
            return self._queue.get_nowait()
        closed = self._client._closed
        if closed.is_set():
            raise StopAsyncIteration
        getter = asyncio.ensure_future(self._queue.get())
        closer = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closer.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._queue.put_nowait in self._client._listeners:
            self._client.remove_listener(self._queue.put_nowait)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__
