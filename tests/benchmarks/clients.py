"""Benchmark clients, run in their own process by harness.ClientProcess.

Raw ``websockets`` clients speaking the JSON API by hand (not ``tieline.client``), so that
what is measured is the server. The process talks to the benchmark in JSON lines: it prints
``{"ready": ...}`` once connected, waits for a line on stdin to start, prints its results,
and exits when stdin closes.

Modes::

    clients.py routes URL ROUTER CLIENTS COUNT WARMUP DESTINATIONS SOURCES SNAPSHOT
        CLIENTS connections, each making (WARMUP + COUNT / CLIENTS) sequential routes on its
        own destinations; prints the round trip of each (perf_counter_ns). With SNAPSHOT=1
        the current sources are read first so that every route changes the crosspoint.
    clients.py snapshot URL REPEAT
        one connection asking for the snapshot REPEAT times; prints the size, the time from
        request to the whole response received, and the time to parse it.
    clients.py swarm URL CLIENTS [raw|websockets]
        CLIENTS subscribed connections; for every crosspoints event, once every client has
        it, prints the arrival times (monotonic_ns) keyed by (destination, source). ``raw``
        (the default) is a minimal hand-written WebSocket client in one epoll loop, whose
        arrival time is when the bytes are read; ``websockets`` uses the library's asyncio
        client, whose arrival time is when ``recv`` hands the message over (one task
        wake-up per message).
    clients.py soak URL ROUTER CLIENTS DESTINATIONS SOURCES
        CLIENTS connections sharing the destinations, each with one route in flight per
        destination of its own (pipelined; every route changes the crosspoint, on every
        level), and one subscribed connection reading every event, as a panel would. Each
        stdin line asks for more work: ``{"routes": N}`` or ``{"salvos": N, "names": [...]}``
        (taken one at a time, the names in turn); each is answered ``{"done": N,
        "errors": E, "wall_ns": T}``. Ends when stdin closes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import resource
import select
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1 << 20)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


class Client:
    """One connection: greeting read, ``hello`` sent."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0

    @classmethod
    async def open(cls, url: str) -> Client:
        ws = await connect(url, compression=None, max_size=None, proxy=None,
                           ping_interval=None, open_timeout=60)
        client = cls(ws)
        greeting = json.loads(await ws.recv())
        assert greeting["type"] == "hello", greeting
        response = await client.request({"type": "hello", "protocol": 1})
        assert response["ok"], response
        return client

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        request_id = self.next_id
        await self.ws.send(json.dumps({**message, "id": request_id}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply["type"] == "response" and reply["id"] == request_id:
                return reply


async def routes(url: str, router: str, clients: int, count: int, warmup: int,
                 destinations: int, sources: int, snapshot: int) -> None:
    conns = [await Client.open(url) for _ in range(clients)]
    current = [d % sources for d in range(destinations)]
    if snapshot:
        reply = await conns[0].request({"type": "snapshot", "routers": [router]})
        first_level = next(iter(reply["result"]["routers"][0]["crosspoints"].values()))
        current = [(s - 1) if s is not None else 0 for s in first_level]
    stdin = await stdin_lines()
    emit({"ready": clients})
    await stdin.readline()

    async def run(k: int, client: Client) -> tuple[list[int], int]:
        mine = list(range(k, destinations, clients))
        rtts: list[int] = []
        errors = 0
        ws = client.ws
        for i in range(warmup + count // clients):
            dest = mine[i % len(mine)]
            source = (current[dest] + 1) % sources
            client.next_id += 1
            request_id = client.next_id
            text = json.dumps({"type": "route", "id": request_id, "router": router,
                               "destination": dest + 1, "source": source + 1})
            t0 = time.perf_counter_ns()
            await ws.send(text)
            while True:
                raw = await ws.recv()
                t1 = time.perf_counter_ns()
                reply = json.loads(raw)
                if reply["type"] == "response" and reply["id"] == request_id:
                    break
            rtts.append(t1 - t0)
            if reply["ok"]:
                current[dest] = source
            else:
                errors += 1
        return rtts, errors

    t0 = time.perf_counter_ns()
    results = await asyncio.gather(*(run(k, c) for k, c in enumerate(conns)))
    wall = time.perf_counter_ns() - t0
    emit({"rtt_ns": [r for r, _ in results], "errors": sum(e for _, e in results),
          "wall_ns": wall})
    await stdin.read()
    for c in conns:
        await c.ws.close()


async def snapshot(url: str, repeat: int) -> None:
    client = await Client.open(url)
    stdin = await stdin_lines()
    emit({"ready": 1})
    await stdin.readline()
    receive_ns: list[int] = []
    parse_ns: list[int] = []
    size = 0
    for i in range(repeat):
        text = json.dumps({"type": "snapshot", "id": f"s{i}"})
        t0 = time.perf_counter_ns()
        await client.ws.send(text)
        while True:
            raw = await client.ws.recv()
            if raw.startswith('{"type":"response"'):
                break
        t1 = time.perf_counter_ns()
        reply = json.loads(raw)
        t2 = time.perf_counter_ns()
        assert reply["ok"] and reply["id"] == f"s{i}", str(reply)[:200]
        receive_ns.append(t1 - t0)
        parse_ns.append(t2 - t1)
        size = len(raw.encode("utf-8"))
    emit({"receive_ns": receive_ns, "parse_ns": parse_ns, "bytes": size})
    await stdin.read()
    await client.ws.close()


class RawWebSocket:
    """A minimal blocking-then-polled client WebSocket (RFC 6455) for the swarm.

    The handshake, ``hello`` and ``subscribe`` are made with a blocking socket; then the
    socket joins the swarm's epoll loop. Framing is done by hand so that a message costs the
    swarm a ``recv`` and a few microseconds: the arrival time is taken as the bytes are read.
    """

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._read()
        head = bytes(self.buffer[:end]).decode("latin-1")
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        assert head.startswith("HTTP/1.1 101") and accept in head, head
        del self.buffer[:end + 4]

    def _read(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data
        return data

    def send_text(self, text: str) -> None:
        payload = text.encode()
        assert len(payload) < 126, "only short client messages are needed"
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Complete frames in the buffer: (opcode, payload)."""
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset:offset + length])
            del buffer[:offset + length]
            yield opcode, payload

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message`` and block until its response (other messages are skipped)."""
        self.send_text(json.dumps(message))
        while True:
            for opcode, payload in self.frames():
                if opcode == 0x1 and payload.startswith(b'{"type":"response"'):
                    return json.loads(payload)
            self._read()


def raw_swarm(url: str, clients: int) -> None:
    """The swarm with :class:`RawWebSocket`: one epoll loop, no asyncio."""
    host, _, port = url.removeprefix("ws://").partition(":")
    conns: dict[int, RawWebSocket] = {}
    for _ in range(clients):
        ws = RawWebSocket(host, int(port))
        for message in ({"type": "hello", "id": 1, "protocol": 1},
                        {"type": "subscribe", "id": 2, "snapshot": False}):
            reply = ws.request(message)
            assert reply["ok"], reply
        ws.sock.setblocking(False)
        conns[ws.sock.fileno()] = ws
    poller = select.epoll()
    for fd in conns:
        poller.register(fd, select.EPOLLIN)
    stdin = sys.stdin.fileno()
    poller.register(stdin, select.EPOLLIN)
    arrivals: dict[tuple[int, int], list[int]] = defaultdict(list)
    dropped = 0
    emit({"ready": clients})
    running = True
    while running:
        for fd, _ in poller.poll():
            if fd == stdin:
                if not os.read(stdin, 4096):  # the benchmark closed our stdin: stop
                    running = False
                continue
            ws = conns[fd]
            try:
                ws._read()
            except (ConnectionError, BlockingIOError) as exc:
                if isinstance(exc, ConnectionError):
                    poller.unregister(fd)
                    dropped += 1
                continue
            t = time.monotonic_ns()
            for opcode, payload in ws.frames():
                if opcode == 0x1 and payload.startswith(b'{"type":"event"'):
                    record_event(arrivals, clients, t, payload)
    emit({"done": True, "dropped": dropped, "incomplete": len(arrivals)})
    for ws in conns.values():
        ws.sock.close()


def record_event(arrivals: dict[tuple[int, int], list[int]], clients: int, t: int,
                 text: str | bytes) -> None:
    """Note that a client had a crosspoints event at ``t``; emit when all have it."""
    event = json.loads(text)
    if event["event"] != "crosspoints":
        return
    first = event["crosspoints"][0]
    key = (first["destination"], first["source"])
    times = arrivals[key]
    times.append(t)
    if len(times) == clients:
        emit({"key": list(key), "t_ns": times})
        del arrivals[key]


async def websockets_swarm(url: str, clients: int) -> None:
    """The swarm with the ``websockets`` asyncio client: one task per connection."""
    gate = asyncio.Semaphore(50)  # the server's listen backlog is 100
    arrivals: dict[tuple[int, int], list[int]] = defaultdict(list)

    async def join() -> Client:
        async with gate:
            client = await Client.open(url)
            reply = await client.request({"type": "subscribe", "snapshot": False})
            assert reply["ok"], reply
            return client

    async def follow(client: Client) -> None:
        async for raw in client.ws:
            if raw.startswith('{"type":"event"'):
                record_event(arrivals, clients, time.monotonic_ns(), raw)

    conns = await asyncio.gather(*(join() for _ in range(clients)))
    tasks = [asyncio.create_task(follow(c)) for c in conns]
    stdin = await stdin_lines()
    emit({"ready": clients})
    await stdin.read()  # until the benchmark closes our stdin
    emit({"done": True, "dropped": sum(t.done() for t in tasks), "incomplete": len(arrivals)})
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(c.ws.close() for c in conns), return_exceptions=True)


async def soak(url: str, router: str, clients: int, destinations: int, sources: int) -> None:
    conns = [await Client.open(url) for _ in range(clients)]
    panel = await Client.open(url)
    reply = await panel.request({"type": "subscribe"})
    assert reply["ok"], reply
    levels = reply["result"]["routers"]
    first_level = next(iter(next(r for r in levels if r["id"] == router)["crosspoints"].values()))
    current = [(s - 1) if s is not None else 0 for s in first_level][:destinations]
    events = 0

    async def watch() -> None:
        nonlocal events
        async for raw in panel.ws:
            if raw.startswith('{"type":"event"'):
                events += 1

    watcher = asyncio.create_task(watch())
    salvo_turn = 0

    async def routes_on(client: Client, mine: list[int], count: int) -> int:
        """``count`` routes on ``client``, one in flight per destination of ``mine``."""
        ws, errors, sent = client.ws, 0, 0
        in_flight: dict[int, tuple[int, int]] = {}  # request id -> (destination, source)

        async def send(dest: int) -> None:
            nonlocal sent
            sent += 1
            client.next_id += 1
            source = (current[dest] + 1) % sources
            in_flight[client.next_id] = (dest, source)
            await ws.send(json.dumps({"type": "route", "id": client.next_id, "router": router,
                                      "destination": dest + 1, "source": source + 1}))

        for dest in mine[:count]:
            await send(dest)
        while in_flight:
            reply = json.loads(await ws.recv())
            if reply.get("type") != "response":
                continue
            dest, source = in_flight.pop(reply["id"])
            if reply["ok"]:
                current[dest] = source
            else:
                errors += 1
            if sent < count:
                await send(dest)
        return errors

    async def salvos(count: int, names: list[str]) -> int:
        nonlocal salvo_turn
        errors = 0
        for _ in range(count):
            name = names[salvo_turn % len(names)]
            salvo_turn += 1
            reply = await conns[0].request({"type": "salvo", "name": name})
            if not reply["ok"] or reply["result"]["refused"]:
                errors += 1
        return errors

    stdin = await stdin_lines()
    emit({"ready": clients})
    while line := await stdin.readline():
        work = json.loads(line)
        t0 = time.perf_counter_ns()
        if "routes" in work:
            count = work["routes"]
            shares = [count // clients + (k < count % clients) for k in range(clients)]
            errors = sum(await asyncio.gather(*(
                routes_on(c, list(range(k, destinations, clients)), n)
                for k, (c, n) in enumerate(zip(conns, shares)))))
        else:
            count = work["salvos"]
            errors = await salvos(count, work["names"])
        emit({"done": count, "errors": errors, "wall_ns": time.perf_counter_ns() - t0,
              "events": events})
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    for c in [*conns, panel]:
        await c.ws.close()


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "routes":
        url, router, *numbers = args
        asyncio.run(routes(url, router, *map(int, numbers)))
    elif mode == "snapshot":
        asyncio.run(snapshot(args[0], int(args[1])))
    elif mode == "swarm":
        url, clients, library = args[0], int(args[1]), (args[2:] or ["raw"])[0]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < clients + 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, clients + 1024), hard))
        if library == "raw":
            raw_swarm(url, clients)
        else:
            asyncio.run(websockets_swarm(url, clients))
    elif mode == "soak":
        url, router, *numbers = args
        asyncio.run(soak(url, router, *map(int, numbers)))
    else:
        raise SystemExit(f"unknown mode {mode!r}; expected routes, snapshot, swarm or soak")


if __name__ == "__main__":
    main(sys.argv[1:])
