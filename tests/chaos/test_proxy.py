"""The fault-injecting proxy against a real echo server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from .proxy import FaultProxy


@pytest.fixture
async def echo():
    """An echo server that also records each connection's peer address."""
    peers: list[tuple[str, int]] = []
    handlers: set[asyncio.Task] = set()

    async def serve(reader, writer):
        handlers.add(asyncio.current_task())
        peers.append(writer.get_extra_info("peername")[:2])
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[:2], peers
    server.close()
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    await server.wait_closed()


@pytest.fixture
async def proxy(echo):
    address, _ = echo
    async with FaultProxy(("127.0.0.1", 0), address, bind="127.0.0.2", seed=1) as made:
        yield made


async def connect(proxy):
    return await asyncio.open_connection(*proxy.address)


async def roundtrip(reader, writer, data: bytes, timeout: float = 2.0) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


async def test_it_forwards_both_ways_from_the_bound_address(proxy, echo):
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"hello") == b"hello"
    big = bytes(range(256)) * 4096  # 1 MiB
    assert await roundtrip(reader, writer, big, timeout=10) == big
    assert echo[1][0][0] == "127.0.0.2"
    assert proxy.stats["up"].bytes == proxy.stats["down"].bytes == 5 + len(big)
    writer.close()


async def test_delay_makes_every_byte_late_in_order(proxy):
    reader, writer = await connect(proxy)
    proxy.delay(0.2, "up")
    started = time.monotonic()
    for i in range(5):
        writer.write(b"%d" % i)
    assert await asyncio.wait_for(reader.readexactly(5), 3) == b"01234"
    assert 0.19 <= time.monotonic() - started < 1.0
    proxy.heal()
    started = time.monotonic()
    assert await roundtrip(reader, writer, b"x") == b"x"
    assert time.monotonic() - started < 0.1
    writer.close()


async def test_hold_one_way_is_a_silent_cut_and_heal_delivers_what_was_held(proxy):
    reader, writer = await connect(proxy)
    proxy.hold("down")  # the answers stop arriving; the requests still go
    writer.write(b"first")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(5), 0.3)
    assert proxy.stats["up"].bytes == 5 and proxy.stats["down"].bytes == 0
    writer.write(b"second")
    proxy.heal()
    assert await asyncio.wait_for(reader.readexactly(11), 2) == b"firstsecond"
    writer.close()


async def test_hold_pushes_back_on_a_sender_once_it_holds_enough(echo):
    address, _ = echo
    async with FaultProxy(("127.0.0.1", 0), address, max_held=1 << 16) as proxy:
        reader, writer = await connect(proxy)
        proxy.hold("up")
        writer.write(b"x" * (32 << 20))  # far more than the proxy and the kernel hold
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writer.drain(), 0.5)
        assert proxy.stats["up"].bytes == 0
        writer.transport.abort()


async def test_loss_delays_chunks_by_retransmissions_but_loses_nothing(echo):
    address, _ = echo
    async with FaultProxy(("127.0.0.1", 0), address, rto_s=0.05, seed=3) as proxy:
        reader, writer = await connect(proxy)
        proxy.loss(0.5, "up")
        received = b""
        for i in range(20):
            received += await roundtrip(reader, writer, b"%02d" % i)
        assert received == b"".join(b"%02d" % i for i in range(20))
        assert proxy.stats["up"].lost_chunks > 3
        writer.close()


async def test_cut_resets_connections_and_refuses_new_ones_until_healed(proxy):
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"a") == b"a"
    proxy.cut()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await roundtrip(reader, writer, b"b")
    reader2, writer2 = await connect(proxy)  # accepted by the kernel, then reset
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await roundtrip(reader2, writer2, b"c")
    proxy.heal()
    reader3, writer3 = await connect(proxy)
    assert await roundtrip(reader3, writer3, b"d") == b"d"
    writer3.close()


async def test_drop_resets_open_connections_only(proxy):
    reader, writer = await connect(proxy)
    assert await roundtrip(reader, writer, b"a") == b"a"
    assert proxy.connections == 1
    proxy.drop()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await roundtrip(reader, writer, b"b")
    reader2, writer2 = await connect(proxy)
    assert await roundtrip(reader2, writer2, b"c") == b"c"
    writer2.close()


async def test_a_half_close_is_passed_on(proxy):
    reader, writer = await connect(proxy)
    writer.write(b"bye")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 2) == b"bye"  # echoed, then the end
    writer.close()


def test_bad_arguments_are_refused():
    proxy = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", 9))
    with pytest.raises(ValueError):
        proxy.hold("sideways")
    with pytest.raises(ValueError):
        proxy.loss(1.0)
