"""Programs that test_vip_failover.py runs inside the LAN's network namespaces.

Every record is one JSON line on stdout, flushed at once; times are ``time.monotonic_ns()``
(CLOCK_MONOTONIC: one clock for every process on the machine, whatever its network
namespace, so the benchmark compares them with its own)::

    python vip_client.py routes --url ws://VIP:8181 --token T [--interval 0.02]
        # tieline.client.Client([VIP URL]), subscribed; one awaited route every --interval
        {"ack": true, "t_ns": …, "sent_ns": …, "endpoint": URL, "node": NAME, "epoch": N, …}
        {"ack": false, "t_ns": …, "sent_ns": …, "error": TEXT}
        {"event": "disconnected" | "reconnected" | "closed", "t_ns": …, …}

    python vip_client.py responder --name a --port 7000
        # a TCP server on 0.0.0.0:PORT: answers a line "who" with the node's name

    python vip_client.py probe --host VIP --port 7000 [--interval 0.02]
        # a new TCP connection to HOST:PORT every --interval, asks "who"
        {"t_ns": …, "sent_ns": …, "node": NAME}  or  {"t_ns": …, "sent_ns": …, "error": TEXT}

Each runs until SIGTERM (or SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from typing import Any


def out(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def routes(args: argparse.Namespace, stop: asyncio.Event) -> None:
    from tieline.client import Client

    vip = args.url
    client = Client([vip], token=args.token, failover_timeout_s=None, retry_window_s=30)

    def listener(event: dict[str, Any]) -> None:
        if event.get("event") in ("disconnected", "reconnected", "closed"):
            out({"event": event["event"], "t_ns": time.monotonic_ns(),
                 "endpoint": event.get("endpoint"), "reason": event.get("reason"),
                 "node": (event.get("node") or {}).get("node")})

    client.add_listener(listener)
    await client.connect()
    await client.subscribe()
    out({"event": "connected", "t_ns": time.monotonic_ns(), "endpoint": client.endpoint,
         "node": client.node.get("node"), "epoch": client.node.get("epoch")})
    n = 0
    last: dict[int, int] = {}
    while not stop.is_set():
        # the VIP only: a standby reached through it names the active node's own URL, which
        # the client adds to its endpoints; the benchmark measures the VIP, so forget it
        if client.endpoints != [vip]:
            client.endpoints = [vip]
        n += 1
        destination, source = n % args.destinations + 1, n % 15 + 1
        if last.get(destination) == source:
            source = source % 15 + 1
        sent = time.monotonic_ns()
        try:
            await client.route("studio", destination, source)
        except Exception as exc:  # noqa: BLE001 - a failed route is a result
            out({"ack": False, "t_ns": time.monotonic_ns(), "sent_ns": sent,
                 "error": f"{type(exc).__name__}: {exc}"})
        else:
            last[destination] = source
            out({"ack": True, "t_ns": time.monotonic_ns(), "sent_ns": sent,
                 "endpoint": client.endpoint, "node": client.node.get("node"),
                 "epoch": client.node.get("epoch"), "destination": destination,
                 "source": source})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.interval)
    await client.close()


async def responder(args: argparse.Namespace, stop: asyncio.Event) -> None:
    answer = (args.name + "\n").encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()).strip() == b"who":
                writer.write(answer)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "0.0.0.0", args.port, reuse_address=True)
    out({"event": "listening", "t_ns": time.monotonic_ns(), "port": args.port})
    async with server:
        await stop.wait()


async def probe(args: argparse.Namespace, stop: asyncio.Event) -> None:
    while not stop.is_set():
        sent = time.monotonic_ns()
        writer = None
        try:
            async with asyncio.timeout(args.timeout):
                reader, writer = await asyncio.open_connection(args.host, args.port)
                writer.write(b"who\n")
                name = (await reader.readline()).decode().strip()
            if not name:
                raise ConnectionError("closed without an answer")
            out({"t_ns": time.monotonic_ns(), "sent_ns": sent, "node": name})
        except (OSError, TimeoutError) as exc:
            out({"t_ns": time.monotonic_ns(), "sent_ns": sent,
                 "error": f"{type(exc).__name__}: {exc}"})
        finally:
            if writer is not None:
                writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("routes")
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--destinations", type=int, default=16)
    p = sub.add_parser("responder")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("probe")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--timeout", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await {"routes": routes, "responder": responder, "probe": probe}[args.mode](args, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
