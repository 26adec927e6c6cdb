"""A small asyncio client for etcd's v3 JSON gateway: leases, a put-if-absent transaction,
reads and watches, over a list of endpoints.

Why not a library: the maintained asyncio clients speak gRPC (grpcio and protobuf, large
binary wheels) and take one endpoint; the gateway is plain HTTP/1.1 and JSON, measured as
fast as gRPC for a keepalive (about 1 ms on loopback), and the failover strategy needs exact
control of every deadline. HTTP/1.1 is h11's, through :mod:`.http` (sans-I/O: JSON in, JSON
documents out, sizes bounded).

The gateway's JSON is proto3's: 64-bit integers are strings, keys and values are base64, and
fields with a zero value are left out (a failed transaction has no ``succeeded``; a
keepalive for a lost lease has no ``TTL``; a put event has no ``type``). This module hides
all three.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tieline import parse_hostport

from .http import End, GatewayConnection, Head, HttpError, Line

log = logging.getLogger(__name__)


class EtcdError(Exception):
    """etcd answered with an error (``code`` is the gRPC status code)."""

    def __init__(self, message: str, code: int = 0, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class EtcdUnavailable(Exception):
    """No endpoint answered in time (the message says what each one did)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyValue:
        return cls(key=b64decode(data.get("key", "")).decode("utf-8", "replace"),
                   value=b64decode(data.get("value", "")),
                   create_revision=int(data.get("create_revision", 0)),
                   mod_revision=int(data.get("mod_revision", 0)),
                   lease=int(data.get("lease", 0)))


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: str  #: "PUT" or "DELETE"
    kv: KeyValue
    revision: int  #: the header's revision


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> bytes:
    """The range end that covers every key starting with ``prefix`` (etcd's convention)."""
    data = bytearray(prefix.encode())
    while data and data[-1] == 0xFF:
        data.pop()
    if not data:
        return b"\0"
    data[-1] += 1
    return bytes(data)


def parse_endpoint(url: str) -> tuple[str, int]:
    """``http://HOST:PORT`` -> (host, port).

    :raises ValueError: naming what is wrong.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"expected http://HOST:PORT, not {url!r}")
    try:  # the host and port checked as every address in settings is
        return parse_hostport(parts.netloc, default_port=2379, port_zero=False)
    except ValueError as exc:
        raise ValueError(f"endpoint {exc}") from None


def _error(value: Any, status: int) -> EtcdError:
    """The gateway's error document: ``{"error": TEXT, "code": N, "message": TEXT}`` (a
    streamed one nests it: ``{"error": {"grpc_code": N, "message": TEXT, …}}``)."""
    if not isinstance(value, dict):
        return EtcdError(f"HTTP {status}: {value!r}"[:200], status=status)
    inner = value.get("error")
    if isinstance(inner, dict):
        value = inner
    message = value.get("message") or value.get("error") or f"HTTP {status}"
    code = value.get("code", value.get("grpc_code", 0))
    try:
        code = int(code)
    except (TypeError, ValueError):
        code = 0
    return EtcdError(str(message), code=code, status=status)


class _Connection:
    """One HTTP/1.1 connection to one endpoint; one exchange at a time."""

    def __init__(self, url: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.url = url
        self.host = urlsplit(url).netloc
        self.reader = reader
        self.writer = writer
        self.http = GatewayConnection(self.host)
        self.reusable = True
        self.answered = False  #: whether the current exchange received any byte

    @classmethod
    async def open(cls, url: str) -> _Connection:
        host, port = parse_endpoint(url)
        reader, writer = await asyncio.open_connection(host, port)
        return cls(url, reader, writer)

    async def exchange(self, path: str, body: Any) -> AsyncIterator[Any]:
        """Send one request; yield every JSON document of the response (unwrapped from
        ``{"result": …}`` when streamed). Raises :class:`EtcdError` for an error status."""
        self.reusable = False  # until this response's End: an interrupted exchange spoils it
        self.answered = False
        self.writer.write(self.http.request(path, body))
        await self.writer.drain()
        status = 0
        while True:
            data = await self.reader.read(65536)
            self.answered = self.answered or bool(data)
            self.http.receive_data(data)  # b"": the server closed the connection
            for event in self.http.events():
                if isinstance(event, Head):
                    status = event.status
                elif isinstance(event, Line):
                    value = event.value
                    if status != 200 or (isinstance(value, dict) and "error" in value
                                         and "result" not in value):
                        raise _error(value, status)
                    if isinstance(value, dict) and "result" in value:
                        value = value["result"]
                    yield value
                elif isinstance(event, End):
                    self.reusable = event.keep_alive
                    return
            if not data:  # and no End: nothing of an answer came
                raise ConnectionResetError(f"{self.url} closed the connection")

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


class EtcdClient:
    """Calls to etcd over its JSON gateway, trying ``endpoints`` in turn.

    :param endpoints: ``http://HOST:PORT`` URLs of the etcd cluster's members.
    :param connect_timeout_s: how long one endpoint may take to accept a connection.
    """

    def __init__(self, endpoints: Sequence[str], *, connect_timeout_s: float = 1.0) -> None:
        if not endpoints:
            raise ValueError("give at least one etcd endpoint")
        for url in endpoints:
            parse_endpoint(url)
        self.endpoints = list(endpoints)
        self.connect_timeout_s = connect_timeout_s
        self._current = 0  #: index of the endpoint that last answered
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _connect(self, failures: list[str]) -> _Connection:
        for i in range(len(self.endpoints)):
            index = (self._current + i) % len(self.endpoints)
            url = self.endpoints[index]
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    conn = await _Connection.open(url)
            except (OSError, TimeoutError) as exc:
                failures.append(f"{url}: {exc or type(exc).__name__}")
                continue
            self._current = index
            return conn
        raise EtcdUnavailable("no etcd endpoint answered: " + "; ".join(failures))

    async def call(self, path: str, body: Any, *, timeout: float) -> dict[str, Any]:
        """One unary call, within ``timeout`` seconds in all.

        A kept-alive connection that the server closed meanwhile is replaced by one to the
        next endpoint, and the call sent again there (the server never saw it); a call that
        failed once the server may have seen it is not repeated (the caller decides whether
        it is safe to).

        :raises EtcdError: etcd refused it.
        :raises EtcdUnavailable: no endpoint reachable.
        :raises TimeoutError: no answer in time (the connection is dropped).
        """
        deadline = asyncio.get_running_loop().time() + timeout
        async with asyncio.timeout_at(deadline):  # waiting for another call counts too
            await self._lock.acquire()
        try:
            failures: list[str] = []
            try:
                async with asyncio.timeout_at(deadline):
                    for attempt in (1, 2):
                        reused = self._conn is not None
                        if (self._conn is None or not self._conn.reusable
                                or self._conn.reader.at_eof()):
                            if self._conn is not None:
                                self._conn.close()
                            self._conn, reused = await self._connect(failures), False
                        conn = self._conn
                        result: Any = {}
                        try:
                            async for value in conn.exchange(path, body):
                                result = value
                        except (OSError, HttpError) as exc:
                            conn.close()
                            self._conn = None
                            self._current = (self._current + 1) % len(self.endpoints)
                            if reused and not conn.answered and attempt == 1:
                                # a kept-alive connection the server had closed: the request
                                # never reached it; once more on a new connection
                                failures.append(f"{conn.url}: {exc}")
                                continue
                            raise EtcdUnavailable(f"{conn.url}: {exc}") from exc
                        if not conn.reusable:
                            conn.close()
                            self._conn = None
                        return result if isinstance(result, dict) else {}
                    raise AssertionError("unreachable")
            except TimeoutError:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                    self._current = (self._current + 1) % len(self.endpoints)
                raise
        finally:
            self._lock.release()

    # -- leases ----------------------------------------------------------------------------
    async def grant(self, ttl_s: int, *, timeout: float) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds; etcd may raise a short TTL)."""
        answer = await self.call("/v3/lease/grant", {"TTL": ttl_s}, timeout=timeout)
        if answer.get("error"):
            raise EtcdError(str(answer["error"]))
        return int(answer["ID"]), int(answer.get("TTL", 0))

    async def keepalive(self, lease: int, *, timeout: float) -> int:
        """Renew ``lease``; its TTL now, 0 when the lease is gone (expired or revoked)."""
        answer = await self.call("/v3/lease/keepalive", {"ID": str(lease)}, timeout=timeout)
        return int(answer.get("TTL", 0))

    async def revoke(self, lease: int, *, timeout: float) -> None:
        """Revoke ``lease`` (its keys are deleted at once); a lease already gone is fine."""
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)}, timeout=timeout)
        except EtcdError as exc:
            if exc.code != 5:  # NotFound: expired or revoked already
                raise

    # -- keys ------------------------------------------------------------------------------
    async def get_prefix(self, prefix: str, *, timeout: float) -> tuple[list[KeyValue], int]:
        """(every key that starts with ``prefix``, in key order; the store's revision)."""
        answer = await self.call("/v3/kv/range", {"key": b64(prefix or "\0"),
                                                  "range_end": b64(prefix_end(prefix))},
                                 timeout=timeout)
        return ([KeyValue.from_json(kv) for kv in answer.get("kvs") or []],
                int(answer.get("header", {}).get("revision", 0)))

    async def get(self, key: str, *, timeout: float) -> tuple[KeyValue | None, int]:
        """(the key, or None; the store's revision)."""
        answer = await self.call("/v3/kv/range", {"key": b64(key)}, timeout=timeout)
        kvs = answer.get("kvs") or []
        return (KeyValue.from_json(kvs[0]) if kvs else None,
                int(answer.get("header", {}).get("revision", 0)))

    async def create(self, key: str, value: bytes, lease: int, *,
                     timeout: float) -> tuple[bool, KeyValue | None, int]:
        """Put ``key`` bound to ``lease`` only if it does not exist.

        :returns: (created, the key as it is when not created, the store's revision; when
            created the revision is the key's create revision).
        """
        answer = await self.call("/v3/kv/txn", {
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": b64(key), "value": b64(value),
                                         "lease": str(lease)}}],
            "failure": [{"request_range": {"key": b64(key)}}],
        }, timeout=timeout)
        revision = int(answer.get("header", {}).get("revision", 0))
        if answer.get("succeeded"):
            return True, None, revision
        kvs = []
        for response in answer.get("responses") or []:
            kvs = (response.get("response_range") or {}).get("kvs") or kvs
        return False, (KeyValue.from_json(kvs[0]) if kvs else None), revision

    async def delete(self, key: str, *, timeout: float) -> int:
        """Delete ``key``; how many keys were deleted (0 or 1)."""
        answer = await self.call("/v3/kv/deleterange", {"key": b64(key)}, timeout=timeout)
        return int(answer.get("deleted", 0))

    async def put_if_created(self, guard: str, create_revision: int, key: str, value: bytes,
                             lease: int, *, timeout: float) -> bool:
        """Put ``key`` (on ``lease``) only while ``guard`` is the key created at
        ``create_revision``; whether it was put."""
        answer = await self.call("/v3/kv/txn", {
            "compare": [{"key": b64(guard), "target": "CREATE", "result": "EQUAL",
                         "create_revision": str(create_revision)}],
            "success": [{"request_put": {"key": b64(key), "value": b64(value),
                                         "lease": str(lease)}}],
        }, timeout=timeout)
        return bool(answer.get("succeeded"))

    async def delete_if_stale(self, key: str, create_revision: int, beat: str,
                              beat_revision: int, *, timeout: float) -> bool:
        """Delete ``key`` if it is still the one created at ``create_revision`` and ``beat``
        was not modified since ``beat_revision`` (0: ``beat`` does not exist)."""
        answer = await self.call("/v3/kv/txn", {
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": str(create_revision)},
                        {"key": b64(beat), "target": "MOD", "result": "EQUAL",
                         "mod_revision": str(beat_revision)}],
            "success": [{"request_delete_range": {"key": b64(key)}}],
        }, timeout=timeout)
        return bool(answer.get("succeeded"))

    async def delete_if(self, key: str, create_revision: int, *, timeout: float) -> bool:
        """Delete ``key`` if it is still the one created at ``create_revision``."""
        answer = await self.call("/v3/kv/txn", {
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": str(create_revision)}],
            "success": [{"request_delete_range": {"key": b64(key)}}],
        }, timeout=timeout)
        return bool(answer.get("succeeded"))

    async def put(self, key: str, value: bytes, *, lease: int = 0, timeout: float) -> int:
        """Put ``key`` (bound to ``lease`` when given); the store's revision."""
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        answer = await self.call("/v3/kv/put", body, timeout=timeout)
        return int(answer.get("header", {}).get("revision", 0))

    # -- watches ---------------------------------------------------------------------------
    async def watch(self, key: str, start_revision: int, *,
                    prefix: bool = False) -> AsyncIterator[WatchEvent]:
        """Changes of ``key`` (of every key under it with ``prefix``) from
        ``start_revision`` on, on a connection of its own.

        Ends (returns) when the connection ends; raises :class:`EtcdUnavailable` when no
        endpoint can be reached. Close the iterator to stop watching.
        """
        conn = await self._connect([])
        try:
            request = {"key": b64((key or "\0") if prefix else key),
                       "start_revision": str(start_revision)}
            if prefix:
                request["range_end"] = b64(prefix_end(key))
            body = {"create_request": request}
            async for result in conn.exchange("/v3/watch", body):
                if result.get("canceled"):
                    raise EtcdError(result.get("cancel_reason") or "watch canceled")
                revision = int(result.get("header", {}).get("revision", 0))
                for event in result.get("events") or []:
                    yield WatchEvent(event.get("type", "PUT"), KeyValue.from_json(event["kv"]),
                                     revision)
        except (OSError, HttpError) as exc:
            raise EtcdUnavailable(f"watch on {conn.url}: {exc}") from exc
        except EtcdError as exc:  # a member stopping ends its streams with an error line
            raise EtcdUnavailable(f"watch on {conn.url} ended: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                conn.close()
