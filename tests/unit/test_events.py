"""The event bus: bounded queues, slow subscribers dropped, the publisher never waits."""

from __future__ import annotations

import asyncio

from tieline.events import DeviceOnline, EventBus


async def test_events_reach_every_subscriber_in_order():
    bus = EventBus()
    a, b = bus.subscribe("a"), bus.subscribe("b")
    events = [DeviceOnline(f"r{i}") for i in range(5)]
    for event in events:
        bus.publish(event)
    a.close()
    b.close()
    assert [e async for e in a] == events
    assert [e async for e in b] == events


async def test_subscriber_that_never_reads_is_dropped_and_others_keep_up():
    bus = EventBus()
    stuck = bus.subscribe("stuck", maxsize=10)
    reader = bus.subscribe("reader", maxsize=10)
    received = []

    async def read() -> None:
        async for event in reader:
            received.append(event)

    task = asyncio.create_task(read())
    for i in range(100):
        bus.publish(DeviceOnline(str(i)))  # never blocks
        await asyncio.sleep(0)  # the reader gets its turn; the stuck one never reads
    assert stuck.dropped and stuck.closed
    assert "too slow" in stuck.reason
    assert bus.subscriber_count == 1
    reader.close()
    await task
    assert [e.router for e in received] == [str(i) for i in range(100)]
    # the dropped subscriber still yields what it had queued, then ends
    assert [e.router async for e in stuck] == [str(i) for i in range(10)]


async def test_close_wakes_a_waiting_reader():
    bus = EventBus()
    sub = bus.subscribe("x")

    async def read() -> list:
        return [e async for e in sub]

    task = asyncio.create_task(read())
    await asyncio.sleep(0)
    sub.close("bye")
    assert await asyncio.wait_for(task, 1) == []
    bus.publish(DeviceOnline("r"))  # no subscribers left: nothing happens
    assert bus.subscriber_count == 0


async def test_on_drop_is_called_when_a_subscriber_is_dropped():
    bus = EventBus()
    dropped = []
    bus.subscribe("slow", maxsize=2, on_drop=lambda: dropped.append("slow"))
    for i in range(3):
        bus.publish(DeviceOnline(str(i)))
    assert dropped == ["slow"]
