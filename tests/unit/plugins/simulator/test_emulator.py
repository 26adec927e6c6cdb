"""The simulated router as a device: what controllers speaking the protocol see."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tieline.model import Crosspoint, PortKind, Protect, ProtectKind
from tieline.plugins.simulator.codec import (
    Codec,
    Dump,
    End,
    ErrorReply,
    Hello,
    Info,
    Label,
    Message,
    Ping,
    Pong,
    Release,
    Role,
    Route,
    SetProtect,
    Tally,
    Unprotect,
)
from tieline.plugins.simulator.emulator import SimulatorEmulator
from tieline.transports import ByteStream, StreamPair

PROTECT, LOCK = ProtectKind.PROTECT, ProtectKind.LOCK


class Controller:
    """A bare controller: the codec over a stream, no tieline link."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.codec = Codec(Role.CONTROLLER)
        self.received: list[Message] = []

    def send(self, *messages: Message) -> None:
        self.stream.write(b"".join(self.codec.send(m) for m in messages))

    async def read(self, count: int = 1) -> list[Message]:
        """The next ``count`` messages."""
        async with asyncio.timeout(2):
            while len(self.received) < count:
                data = await self.stream.read(65536)
                assert data, "the device closed the connection"
                self.codec.receive_data(data)
                self.received += self.codec.events()
        out, self.received = self.received[:count], self.received[count:]
        return out

    async def quiet(self) -> None:
        """Assert nothing more arrives for a moment."""
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await self.read()

    async def dump(self) -> list[Message]:
        self.send(Dump())
        messages: list[Message] = []
        while not messages or messages[-1] != End():
            messages += await self.read()
        return messages


@pytest.fixture
async def device():
    async with SimulatorEmulator(2, 3, 5) as device:
        yield device


async def controller(device: SimulatorEmulator) -> Controller:
    return Controller(await device.connect())


async def test_fresh_device_has_full_tally_and_videohub_labels(device):
    c = await controller(device)
    c.send(Hello())
    assert await c.read() == [Hello(1)]
    dump = await c.dump()
    assert dump[0] == Info(2, 3, 5)
    labels = [m for m in dump if isinstance(m, Label)]
    assert labels[0] == Label(PortKind.SOURCE, 0, "Input 1")
    assert labels[-1] == Label(PortKind.DESTINATION, 4, "Output 5")
    tally = [xp for m in dump if isinstance(m, Tally) for xp in m.crosspoints]
    assert tally == [Crosspoint(level, d, d % 3) for level in range(2) for d in range(5)]


async def test_labels_given_replace_the_defaults():
    async with SimulatorEmulator(1, 2, 2, labels={PortKind.SOURCE: {1: "Cam 2"}}) as device:
        dump = await (await controller(device)).dump()
    assert Label(PortKind.SOURCE, 1, "Cam 2") in dump
    assert Label(PortKind.SOURCE, 0, "Input 1") in dump


async def test_changes_go_to_every_controller_and_confirmations_to_the_requester(device):
    a, b = await controller(device), await controller(device)
    a.send(Route("a", (Crosspoint(0, 4, 2), Crosspoint(1, 4, 1))))
    change = [Tally((Crosspoint(0, 4, 2),))]
    assert await a.read() == change and await b.read() == change  # 1 <- 1 was already set
    assert await a.read() == [Tally((Crosspoint(1, 4, 1),))]
    await b.quiet()
    assert device.source(0, 4) == 2
    b.send(Ping())
    assert await b.read() == [Pong()]
    assert [type(m) for _, m in device.command_log] == [Route, Ping]
    assert device.command_log[0][0] != device.command_log[1][0]  # two controllers


async def test_protect_only_its_owner_may_route(device):
    a, b = await controller(device), await controller(device)
    a.send(SetProtect(0, 1, PROTECT, "a b"))
    assert await b.read() == [SetProtect(0, 1, PROTECT, "a b")]
    await a.read()
    b.send(Route("b", (Crosspoint(0, 1, 0),)), SetProtect(0, 1, LOCK, "b"))
    assert await b.read(2) == [
        ErrorReply("protected", 0, 1, "a b", "destination 2 on level 1 is protected by a b"),
        ErrorReply("protected", 0, 1, "a b",
                   "destination 2 on level 1 is already protected by a b"),
    ]
    a.send(Route("a b", (Crosspoint(0, 1, 0),)))
    assert await a.read() == [Tally((Crosspoint(0, 1, 0),))]
    assert device.protects == {(0, 1): Protect(PROTECT, "a b")}


async def test_lock_stops_everyone_until_released(device):
    a, b = await controller(device), await controller(device)
    a.send(SetProtect(1, 2, LOCK, "a"), Route("a", (Crosspoint(1, 2, 0),)))
    assert await a.read(2) == [
        SetProtect(1, 2, LOCK, "a"),
        ErrorReply("locked", 1, 2, "a", "destination 3 on level 2 is locked by a"),
    ]
    b.send(Release(1, 2, "b", False))
    assert (await b.read(2))[1].code == "not_owner"
    b.send(Release(1, 2, "b", True))
    assert await b.read() == [Unprotect(1, 2)] and await a.read() == [Unprotect(1, 2)]
    b.send(Release(1, 2, "b", False))  # nothing held: confirmed to the requester only
    assert await b.read() == [Unprotect(1, 2)]
    await a.quiet()
    assert device.protects == {}


async def test_requests_out_of_range_are_refused(device):
    c = await controller(device)
    c.send(Route("a", (Crosspoint(2, 0, 0), Crosspoint(0, 5, 0), Crosspoint(0, 0, 3))),
           SetProtect(0, 9, LOCK, "a"), Label(PortKind.SOURCE, 3, "x"))
    errors = await c.read(5)
    assert [(e.code, e.text) for e in errors] == [
        ("range", "level 3 out of range (1–2)"), ("range", "destination 6 out of range (1–5)"),
        ("range", "source 4 out of range (1–3)"), ("range", "destination 10 out of range (1–5)"),
        ("range", "source 4 out of range (1–3)")]


async def test_labels_are_set_and_broadcast(device):
    a, b = await controller(device), await controller(device)
    a.send(Label(PortKind.DESTINATION, 0, "PGM  out ü"))
    assert await b.read() == [Label(PortKind.DESTINATION, 0, "PGM  out ü")]
    assert device.labels[PortKind.DESTINATION][0] == "PGM  out ü"
    await a.read()
    a.send(Label(PortKind.DESTINATION, 0, "PGM  out ü"))
    assert await a.read() == [Label(PortKind.DESTINATION, 0, "PGM  out ü")]
    await b.quiet()
    device.panel_label(PortKind.SOURCE, 2, "Cam 3")
    assert await b.read() == [Label(PortKind.SOURCE, 2, "Cam 3")]


async def test_bad_line_is_answered_and_the_session_goes_on(device):
    c = await controller(device)
    c.stream.write(b"ROUTE nobody\nPING\n")
    error, pong = await c.read(2)
    assert isinstance(error, ErrorReply) and error.code == "syntax"
    assert "ROUTE" in error.text and pong == Pong()


async def test_a_run_of_bad_lines_gets_one_error(device):
    """Garbage is not answered line by line (issue 12: 10 kB in were 185 kB out)."""
    c = await controller(device)
    c.stream.write(b"x\n" * 5000 + b"\xff\xfe garbage\n" * 100 + b"PING\n")
    error, pong = await c.read(2)
    assert isinstance(error, ErrorReply) and error.code == "syntax" and pong == Pong()
    c.stream.write(b"ROUTE nobody\n" * 10 + b"PING\n")  # a new run after a good line
    error, pong = await c.read(2)
    assert isinstance(error, ErrorReply) and error.code == "syntax" and pong == Pong()
    await c.quiet()


async def test_switch_delay_applies_routes_late_and_in_order():
    async with SimulatorEmulator(1, 4, 4, switch_delay_s=0.05) as device:
        c = await controller(device)
        c.send(Route("a", (Crosspoint(0, 0, 1),)), Route("a", (Crosspoint(0, 0, 2),)),
               SetProtect(0, 3, LOCK, "a"))
        # the protect is not delayed: it overtakes the routes, which keep their order
        assert await c.read(3) == [SetProtect(0, 3, LOCK, "a"), Tally((Crosspoint(0, 0, 1),)),
                                   Tally((Crosspoint(0, 0, 2),))]
        assert device.source(0, 0) == 2


async def test_panel_route_is_told_to_every_controller(device):
    a, b = await controller(device), await controller(device)
    device.panel_route(1, 3, 2)
    assert await a.read() == await b.read() == [Tally((Crosspoint(1, 3, 2),))]
    with pytest.raises(ValueError, match="source 3 out of range"):
        device.panel_route(0, 0, 3)


async def test_controller_that_does_not_read_is_dropped(caplog):
    async with SimulatorEmulator(1, 100, 100, max_outgoing_bytes=1000) as device:
        c = await controller(device)
        with caplog.at_level(logging.WARNING):
            c.send(Dump())
            async with asyncio.timeout(2):
                while await c.stream.read(65536):
                    pass
        assert "bytes queued and not read" in caplog.text
        assert device.controllers == []


async def test_close_ends_every_session_and_task():
    device = SimulatorEmulator(1, 2, 2)
    server = await device.serve_tcp("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tcp = Controller(StreamPair(*await asyncio.open_connection("127.0.0.1", port)))
    local = await controller(device)
    tcp.send(Hello())
    assert await tcp.read() == [Hello(1)]
    assert len(device.controllers) == 2
    await device.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("simulator")]
    assert await local.stream.read(10) == b""
    assert await tcp.stream.read(10) == b""
    tcp.stream.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    with pytest.raises(RuntimeError, match="closed"):
        await device.connect()
    await device.close()  # twice is fine


async def test_the_command_log_is_bounded(device):
    """The embedded simulator of every node must not grow with every route (issue 12)."""
    c = await controller(device)
    size = SimulatorEmulator.command_log_size
    assert size is not None
    routes = 2 * size + 10
    c.send(*(Route("a", (Crosspoint(0, d % 5, d % 3),)) for d in range(routes)), Ping())
    async with asyncio.timeout(10):
        while Pong() not in await c.read():
            pass
    assert len(device.command_log) == size
    assert device.command_log[-1][1] == Ping()
    assert device.command_log[-2][1] == Route("a", (Crosspoint(0, (routes - 1) % 5,
                                                               (routes - 1) % 3),))
