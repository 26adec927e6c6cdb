"""The node settles its memory (Node._settle_memory): once started, and a second after
subscribers came or went or a router's whole state was read, it collects every garbage
cycle and freezes the survivors out of the cyclic garbage collector's walks, so that a full
collection later walks only what came since. Freezing must never keep what is gone."""

from __future__ import annotations

import asyncio
import gc

from .helpers import RawClient, api_url, running_node


def _settings(settings_dir):
    return settings_dir({"tieline.json": {
        "node": {"name": "settle"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                     "sources": 8, "destinations": 8}],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
        "auth": {"loopback_anonymous_level": 1},
    }})


async def _settled(node, before: int) -> int:
    """Wait for the next settle after ``before`` settles; the settles so far."""
    async with asyncio.timeout(node.settle_max_delay_s + 5):
        while node.settles <= before:
            await asyncio.sleep(0.05)
    return node.settles


async def _subscribers(node, count: int) -> list[RawClient]:
    clients = [await RawClient.open(api_url(node)) for _ in range(count)]
    for client in clients:
        await client.request("subscribe", snapshot=False)
    return clients


async def test_subscribers_are_frozen_out_of_full_collections_and_freed_when_gone(
        settings_dir):
    async with running_node(_settings(settings_dir)) as node:
        node.settle_quiet_s = 0.2
        settles = await _settled(node, 0)  # once started
        clients = await _subscribers(node, 20)
        settles = await _settled(node, settles)
        # what a full collection walks now leaves out the subscribers' connections
        walked = len(gc.get_objects())
        frozen_with_clients = gc.get_freeze_count()
        for client in clients:
            await client.close()
        settles = await _settled(node, settles)
        frozen_without = gc.get_freeze_count()
        assert frozen_without < frozen_with_clients  # their objects were collected

        for _ in range(5):  # subscribers coming and going: nothing piles up frozen
            for client in await _subscribers(node, 20):
                await client.close()
            settles = await _settled(node, settles)
        assert gc.get_freeze_count() <= frozen_without * 1.02 + 500
        assert len(gc.get_objects()) < walked + 2000


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_garbage_cycles_frozen_at_one_settle_are_collected_at_the_next(settings_dir):
    import weakref

    async with running_node(_settings(settings_dir)) as node:
        node.settle_quiet_s = 0.2
        settles = await _settled(node, 0)
        cycle = _Cycle()
        ref = weakref.ref(cycle)
        node.settle_memory_soon()
        settles = await _settled(node, settles)  # the cycle, alive, is frozen now
        del cycle  # garbage now, but only the cyclic collector can free it
        gc.collect()  # a collection at any time does not walk frozen objects
        assert ref() is not None
        node.settle_memory_soon()
        await _settled(node, settles)
        assert ref() is None  # the next settle unfroze and collected it
