"""Chaos clients: control panels that route, take salvos, protect and write labels through
the WebSocket API while the nemesis works, and record every operation (:class:`Op`).

A client speaks the API with a raw ``websockets`` connection and behaves as docs/api.md
("Several nodes: failover") asks of a client that holds several endpoints: it prefers the
active node (a standby's hello or ``standby`` error names it), never uses a node announcing
an epoch lower than one it has seen, declares a silent server dead after its
``heartbeat_timeout_ms``, and moves on. It never retries a request by itself: each attempt
is an operation of its own in the history, with the node it went to, the epoch that node
announced on that connection, and its outcome (``ok``, the error code, or ``unknown`` when
no answer came: the connection died, or the answer took longer than ``timeout_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from .history import ERROR, OK, UNKNOWN, Crosspoint, Op, Port, RouterInfo


class Lost(Exception):
    """The connection died before the answer came."""


@dataclass
class Connection:
    """One authenticated, subscribed connection to one node."""

    node: str
    ws: Any
    status: dict[str, Any]
    timeout_s: float
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None
    ids: Any = field(default_factory=lambda: itertools.count(1))
    closed: bool = False

    async def _read(self) -> None:
        try:
            while True:
                raw = await asyncio.wait_for(self.ws.recv(), self.timeout_s)
                message = json.loads(raw)
                if message.get("type") == "response":
                    future = self.pending.pop(str(message.get("id")), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("type") == "event" and message.get("event") == "status":
                    self.status = message.get("status") or self.status
        except (TimeoutError, WebSocketException, OSError, ValueError):
            pass  # dead, silent for too long, or closed
        finally:
            self.closed = True
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(Lost())
            self.pending.clear()
            with contextlib.suppress(Exception):
                await self.ws.close()

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read(), name=f"client reader {self.node}")

    async def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.closed:
            raise Lost()
        rid = f"r{next(self.ids)}"
        future = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        try:
            await self.ws.send(json.dumps({**message, "id": rid}))
        except (WebSocketException, OSError) as exc:
            self.pending.pop(rid, None)
            raise Lost() from exc
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(rid, None)

    async def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader


async def open_connection(node: str, url: str, token: str, heartbeat_timeout_s: float,
                          sock_timeout: float = 2.0) -> Connection:
    ws = await asyncio.wait_for(connect(url, proxy=None, compression=None, open_timeout=2,
                                        ping_interval=None, close_timeout=1), sock_timeout)
    try:
        hello = json.loads(await asyncio.wait_for(ws.recv(), sock_timeout))
        conn = Connection(node, ws, hello["node"], heartbeat_timeout_s + 0.5)
        conn.start()
        answer = await conn.request({"type": "hello", "protocol": 1, "token": token},
                                    sock_timeout)
        if not answer.get("ok"):
            raise ConnectionError(f"hello refused by {node}: {answer.get('error')}")
        conn.status = answer["result"].get("node", conn.status)
        await conn.request({"type": "subscribe", "snapshot": False}, sock_timeout)
        return conn
    except BaseException:
        with contextlib.suppress(Exception):
            await ws.close()
        raise


@dataclass
class Workload:
    """What the clients do: destinations of their own and shared ones, salvos, labels."""

    routers: dict[str, RouterInfo]
    salvos: dict[str, tuple[Crosspoint, ...]]  #: name -> the crosspoints it asks
    own: dict[str, list[int]]  #: client -> its own destinations (on every router)
    shared: list[int]
    label_routers: list[str]
    #: operation weights
    weights: dict[str, float] = field(default_factory=lambda: {
        "route_own": 40, "route_shared": 25, "salvo": 10, "protect": 8, "label": 12})


class ChaosClient:
    """One control panel (see the module docstring).

    :param urls: node -> WebSocket URL.
    :param record: called with each finished :class:`Op`.
    """

    def __init__(self, name: str, token: str, urls: dict[str, str], workload: Workload,
                 rng: random.Random, record: Callable[[Op], None], *,
                 heartbeat_timeout_s: float, timeout_s: float = 6.0,
                 pause_s: tuple[float, float] = (0.02, 0.12)) -> None:
        self.name = name
        self.token = token
        self.urls = urls
        self.nodes_by_url = {u: n for n, u in urls.items()}
        self.workload = workload
        self.rng = rng
        self.record = record
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.timeout_s = timeout_s
        self.pause_s = pause_s
        self.conn: Connection | None = None
        self.max_epoch = 0
        self.prefer: str | None = None
        self.seq = itertools.count(1)
        self.protected: set[tuple[str, int]] = set()

    # -- choosing a node ---------------------------------------------------------------
    def _usable(self, conn: Connection) -> bool:
        epoch = conn.status.get("epoch", 0)
        if epoch < self.max_epoch:
            return False  # behind: not authoritative
        self.max_epoch = max(self.max_epoch, epoch)
        return True

    async def _connect(self) -> Connection | None:
        """The active node if one answers; else a standby that is not behind; else None."""
        order = list(self.urls)
        self.rng.shuffle(order)
        if self.prefer in order:
            order.remove(self.prefer)
            order.insert(0, self.prefer)
        fallback: Connection | None = None
        tried: set[str] = set()
        queue = list(order)
        while queue:
            node = queue.pop(0)
            if node in tried:
                continue
            tried.add(node)
            try:
                conn = await open_connection(node, self.urls[node], self.token,
                                             self.heartbeat_timeout_s)
            except (OSError, TimeoutError, WebSocketException, ConnectionError, Lost,
                    ValueError, KeyError):
                continue
            if not self._usable(conn):
                await conn.close()
                continue
            if conn.status.get("state") == "active":
                if fallback is not None:
                    await fallback.close()
                return conn
            hint = self.nodes_by_url.get(conn.status.get("active") or "")
            if hint is not None and hint not in tried:
                queue.insert(0, hint)
            if fallback is None:
                fallback = conn
            else:
                await conn.close()
        return fallback

    async def _connection(self) -> Connection | None:
        conn = self.conn
        if conn is not None and (conn.closed or not self._usable(conn)
                                 or conn.status.get("state") != "active"):
            await conn.close()
            conn = self.conn = None
        if conn is None:
            conn = self.conn = await self._connect()
        return conn

    # -- one operation -----------------------------------------------------------------
    async def perform(self, kind: str, request: dict[str, Any], **fields: Any) -> Op:
        conn = await self._connection()
        seq = next(self.seq)
        if conn is None:
            op = Op(self.name, seq, kind, None, time.time(), time.time(), ERROR,
                    "unreachable", args=request, **fields)
            self.record(op)
            return op
        epoch = conn.status.get("epoch")
        invoke = time.time()
        try:
            answer = await conn.request(request, self.timeout_s)
        except (Lost, TimeoutError):
            op = Op(self.name, seq, kind, conn.node, invoke, None, UNKNOWN, epoch=epoch,
                    args=request, **fields)
            self.record(op)
            await conn.close()
            return op
        complete = time.time()
        if answer.get("ok"):
            op = Op(self.name, seq, kind, conn.node, invoke, complete, OK, epoch=epoch,
                    confirmed=self._confirmed(kind, request, answer.get("result") or {}),
                    args=request, **fields)
        else:
            error = answer.get("error") or {}
            code = error.get("code", "error")
            op = Op(self.name, seq, kind, conn.node, invoke, complete, ERROR, code,
                    epoch=epoch, args=request, message=error.get("message"), **fields)
            if code == "standby":
                self.prefer = self.nodes_by_url.get(error.get("active") or "")
                await conn.close()
                self.conn = None
        self.record(op)
        return op

    def _confirmed(self, kind: str, request: dict[str, Any],
                   result: dict[str, Any]) -> tuple[Crosspoint, ...]:
        if kind == "route":
            router = request["router"]
            return tuple((router, x["level"], x["destination"], x["source"])
                         for x in result.get("crosspoints", []))
        if kind == "salvo":
            router = result.get("router", "")
            return tuple((router, x["level"], x["destination"], x["source"])
                         for x in result.get("taken", []))
        return ()

    # -- the workload ------------------------------------------------------------------
    def _route(self, router: str, dest: int, source: int) -> tuple[str, dict, dict]:
        levels = self.workload.routers[router].levels
        return "route", {"type": "route", "router": router, "destination": dest,
                         "source": source}, {
            "asked": tuple((router, lv, dest, source) for lv in levels)}

    def next_operation(self) -> tuple[str, dict[str, Any], dict[str, Any]]:
        w = self.workload
        kinds, weights = zip(*w.weights.items())
        choice = self.rng.choices(kinds, weights)[0]
        router = self.rng.choice(sorted(w.routers))
        source = self.rng.randint(1, w.routers[router].sources)
        if choice == "route_own":
            return self._route(router, self.rng.choice(w.own[self.name]), source)
        if choice == "route_shared":
            return self._route(router, self.rng.choice(w.shared), source)
        if choice == "salvo":
            name = self.rng.choice(sorted(w.salvos))
            return "salvo", {"type": "salvo", "name": name}, {"asked": w.salvos[name]}
        if choice == "protect":
            dest = self.rng.choice(w.own[self.name])
            ports: tuple[Port, ...] = tuple((router, lv, dest)
                                            for lv in w.routers[router].levels)
            if (router, dest) in self.protected:
                self.protected.discard((router, dest))
                return "release", {"type": "release", "router": router, "destination": dest,
                                   "force": True}, {"ports": ports}
            self.protected.add((router, dest))
            return "protect", {"type": "protect", "router": router, "destination": dest}, {
                "ports": ports}
        router = self.rng.choice(w.label_routers)
        table = self.rng.choice(["sources", "destinations"])
        size = w.routers[router].sources if table == "sources" \
            else w.routers[router].destinations
        index = self.rng.randint(1, size)
        text = self.rng.choice(["", f"{self.name}-{self.rng.randint(0, 999)}"])
        return "label", {"type": "label", "router": router, "kind": table[:-1],
                         "index": index, "text": text}, {
            "item": f"labels/{router}/{table}/{index}", "value": text or None}

    async def run(self, stop: asyncio.Event) -> None:
        """Operate until ``stop`` is set (the operation in flight then finishes)."""
        try:
            while not stop.is_set():
                kind, request, fields = self.next_operation()
                op = await self.perform(kind, request, **fields)
                pause = self.rng.uniform(*self.pause_s)
                if op.node is None or op.error == "standby":
                    pause += 0.05  # nobody to talk to: look again soon, not in a tight loop
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        finally:
            if self.conn is not None:
                await self.conn.close()
                self.conn = None
