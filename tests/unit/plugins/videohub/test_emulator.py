"""The emulated Videohub as a device: what clients speaking the protocol see."""

from __future__ import annotations

import asyncio

import click
import pytest

from tieline.plugins.videohub.codec import (
    Ack,
    Codec,
    DeviceInfo,
    EndPrelude,
    KeyValues,
    LabelTable,
    Labels,
    Locks,
    LockState,
    LockTable,
    Message,
    Nak,
    Ping,
    PortValues,
    Preamble,
    Role,
    Routes,
    RoutingTable,
    StatusRequest,
    UnknownBlock,
    ValueTable,
)
from tieline.plugins.videohub.emulator import VideohubEmulator
from tieline.transports import ByteStream, StreamPair

U, O, L, F = LockState.UNLOCKED, LockState.OWNED, LockState.LOCKED, LockState.FORCE
VIDEO, VLOCKS = RoutingTable.VIDEO_OUTPUT, LockTable.VIDEO_OUTPUT


class Client:
    """A bare Videohub client: the codec over a stream, no tieline link."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.codec = Codec(Role.CONTROLLER)
        self.received: list[Message] = []

    def send(self, *messages: Message) -> None:
        self.stream.write(self.codec.send_all(messages))

    def send_raw(self, data: bytes) -> None:
        self.stream.write(data)

    async def read(self, count: int = 1) -> list[Message]:
        async with asyncio.timeout(2):
            while len(self.received) < count:
                data = await self.stream.read(65536)
                assert data, "the device closed the connection"
                self.codec.receive_data(data)
                self.received += self.codec.events()
        out, self.received = self.received[:count], self.received[count:]
        return out

    async def quiet(self) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await self.read()

    async def prelude(self, end: type[Message] = EndPrelude) -> list[Message]:
        blocks: list[Message] = []
        while not blocks or not isinstance(blocks[-1], end):
            blocks += await self.read()
        return blocks


async def client(device: VideohubEmulator, prelude: bool = True) -> Client:
    c = Client(await device.connect())
    if prelude:
        await c.prelude()
    return c


@pytest.fixture
async def device():
    async with VideohubEmulator(3, 4) as device:
        yield device


async def test_prelude_is_what_a_2_8_device_sends():
    async with VideohubEmulator(2, 2) as device:
        stream = await device.connect()
        expected = (
            b"PROTOCOL PREAMBLE:\nVersion: 2.8\n\n"
            b"VIDEOHUB DEVICE:\nDevice present: true\nModel name: Blackmagic Smart Videohub 2 x 2\n"
            b"Friendly name: Smart Videohub 2 x 2\nUnique ID: 7C2E0D0726A0\nVideo inputs: 2\n"
            b"Video processing units: 0\nVideo outputs: 2\nVideo monitoring outputs: 0\n"
            b"Serial ports: 0\n\n"
            b"INPUT LABELS:\n0 Input 1\n1 Input 2\n\nOUTPUT LABELS:\n0 Output 1\n1 Output 2\n\n"
            b"VIDEO OUTPUT LOCKS:\n0 U\n1 U\n\nVIDEO OUTPUT ROUTING:\n0 0\n1 1\n\n"
            b"CONFIGURATION:\nTake Mode: false\n\nEND PRELUDE:\n\n")
        data = b""
        async with asyncio.timeout(2):
            while len(data) < len(expected):
                data += await stream.read(65536)
        assert data == expected


async def test_prelude_of_a_2_3_device_has_no_end_prelude_and_no_newer_keys():
    async with VideohubEmulator(2, 3, version="2.3", serial_ports=2, monitoring_outputs=1) as dev:
        c = Client(await dev.connect())
        blocks = await c.prelude(end=PortValues)
        assert blocks[0] == Preamble("2.3")
        assert blocks[1] == DeviceInfo("true", "Blackmagic Smart Videohub 2 x 3", None, None,
                                       2, 0, 3, 1, 2)
        assert [type(b).__name__ + ":" + getattr(b, "table", b).__class__.__name__
                for b in blocks[2:]] == [
            "Labels:LabelTable", "Labels:LabelTable", "Labels:LabelTable", "Locks:LockTable",
            "Locks:LockTable", "Routes:RoutingTable", "Routes:RoutingTable",
            "Labels:LabelTable", "Locks:LockTable", "Routes:RoutingTable",
            "PortValues:ValueTable"]
        assert Routes(RoutingTable.SERIAL_PORT, ((0, -1), (1, -1))) in blocks
        await c.quiet()  # nothing after the last table: no END PRELUDE at 2.3


async def test_route_is_acked_then_changed_lines_go_to_every_client(device):
    a, b = await client(device), await client(device)
    a.send(Routes(VIDEO, ((0, 2), (1, 1))))  # 1 <- 1 is already set
    assert await a.read(2) == [Ack(), Routes(VIDEO, ((0, 2),))]
    assert await b.read() == [Routes(VIDEO, ((0, 2),))]
    a.send(Routes(VIDEO, ((1, 1),)))  # nothing changes: only the ACK [VH §5.4]
    assert await a.read() == [Ack()]
    await a.quiet()
    await b.quiet()
    assert device.source(0) == 2
    assert device.commands(Routes) == [Routes(VIDEO, ((0, 2), (1, 1))), Routes(VIDEO, ((1, 1),))]


@pytest.mark.parametrize("request_", [
    b"VIDEO OUTPUT ROUTING:\n0 1\n1 x\n\n",  # one bad line: nothing changes
    b"VIDEO OUTPUT ROUTING:\n0 1\n4 1\n\n",  # output out of range
    b"VIDEO OUTPUT ROUTING:\n0 3\n\n",  # input out of range
    b"VIDEO OUTPUT ROUTING:\n0 -1\n\n",  # -1 means nothing for video
    b"SERIAL PORT ROUTING:\n0 1\n\n",  # a table this device lacks
    b"SOMETHING NEW:\n1 x\n\n", b"VIDEOHUB DEVICE:\nVideo inputs: 3\n\n",
    b"INPUT LABELS:\n3 x\n\n", b"VIDEO OUTPUT LOCKS:\n0 L\n\n", b"TAKE MODE:\n0 true\n\n",
    b"CONFIGURATION:\nTake Mode: maybe\n\n", b"\x00garbage\n\n", b"ACK\n\n",
])
async def test_bad_requests_are_nakked_and_change_nothing(device, request_):
    c = await client(device)
    c.send_raw(request_)
    c.send(Ping())
    assert await c.read(2) == [Nak(), Ack()]
    assert [device.source(o) for o in range(4)] == [0, 1, 2, 0]
    assert device.label(LabelTable.INPUT, 0) == "Input 1" and device.lock_owner_of(0) is None


async def test_status_requests_get_ack_and_the_whole_block(device):
    c = await client(device)
    for header in ("VIDEO OUTPUT ROUTING", "INPUT LABELS", "OUTPUT LABELS", "VIDEO OUTPUT LOCKS",
                   "VIDEOHUB DEVICE", "PROTOCOL PREAMBLE", "CONFIGURATION", "SERIAL PORT ROUTING"):
        c.send(StatusRequest(header))
    replies = await c.read(15)
    assert replies[:2] == [Ack(), Routes(VIDEO, ((0, 0), (1, 1), (2, 2), (3, 0)))]
    assert replies[3] == Labels(LabelTable.INPUT, ((0, "Input 1"), (1, "Input 2"), (2, "Input 3")))
    assert replies[7] == Locks(VLOCKS, ((0, U), (1, U), (2, U), (3, U)))
    assert replies[9].video_outputs == 4 and replies[11] == Preamble("2.8")
    assert replies[13] == KeyValues("CONFIGURATION", (("Take Mode", "false"),))
    assert replies[14] == Nak()  # no serial ports on this model


async def test_locks_are_per_owner_and_rendered_per_client(device):
    a, b = await client(device), await client(device)
    a.send(Locks(VLOCKS, ((2, O),)))
    assert await a.read(2) == [Ack(), Locks(VLOCKS, ((2, O),))]
    assert await b.read() == [Locks(VLOCKS, ((2, L),))]
    b.send(Routes(VIDEO, ((2, 0),)), Locks(VLOCKS, ((2, O),)), Locks(VLOCKS, ((2, U),)))
    assert await b.read(3) == [Nak(), Nak(), Nak()]  # someone else's: only F releases it
    a.send(Routes(VIDEO, ((2, 0),)))  # the owner may route
    assert await a.read(2) == [Ack(), Routes(VIDEO, ((2, 0),))]
    assert await b.read() == [Routes(VIDEO, ((2, 0),))]
    b.send(Locks(VLOCKS, ((2, F),)))
    assert await b.read(2) == [Ack(), Locks(VLOCKS, ((2, U),))]
    assert await a.read() == [Locks(VLOCKS, ((2, U),))]
    c = await client(device)  # a newcomer sees the truth in its dump
    assert device.lock_owner_of(2) is None
    a.send(Locks(VLOCKS, ((1, O),)))
    await a.read(2)
    assert (await c.read()) == [Locks(VLOCKS, ((1, L),))]


async def test_locked_route_can_be_acked_and_shown_unchanged():
    async with VideohubEmulator(3, 4, locked_route="ack") as device:
        a, b = await client(device), await client(device)
        device.panel_lock(1)  # a client at 10.0.0.7
        assert await a.read() == [Locks(VLOCKS, ((1, L),))]
        await b.read()
        a.send(Routes(VIDEO, ((0, 2), (1, 2))))
        assert await a.read(3) == [Ack(), Routes(VIDEO, ((0, 2),)), Routes(VIDEO, ((1, 1),))]
        assert await b.read() == [Routes(VIDEO, ((0, 2),))]
        await b.quiet()


async def test_lock_ownership_is_per_address_over_tcp():
    async with VideohubEmulator(3, 4) as device:
        server = await device.serve_tcp()
        port = server.sockets[0].getsockname()[1]
        a = Client(StreamPair(*await asyncio.open_connection("127.0.0.1", port)))
        b = Client(StreamPair(*await asyncio.open_connection("127.0.0.1", port)))
        await a.prelude()
        await b.prelude()
        a.send(Locks(VLOCKS, ((0, O),)))
        assert await a.read(2) == [Ack(), Locks(VLOCKS, ((0, O),))]
        assert await b.read() == [Locks(VLOCKS, ((0, O),))]  # same IP address: same owner
        assert device.lock_owner_of(0) == "127.0.0.1"
        b.send(Locks(VLOCKS, ((0, U),)))
        assert await b.read(2) == [Ack(), Locks(VLOCKS, ((0, U),))]
        a.stream.close()
        b.stream.close()


async def test_lock_ownership_per_connection_for_tests_on_one_host():
    async with VideohubEmulator(3, 4, lock_owner="connection") as device:
        server = await device.serve_tcp()
        port = server.sockets[0].getsockname()[1]
        a = Client(StreamPair(*await asyncio.open_connection("127.0.0.1", port)))
        b = Client(StreamPair(*await asyncio.open_connection("127.0.0.1", port)))
        await a.prelude()
        await b.prelude()
        a.send(Locks(VLOCKS, ((0, O),)))
        assert await b.read() == [Locks(VLOCKS, ((0, L),))]
        a.stream.close()
        b.stream.close()


async def test_labels_are_set_and_broadcast_changed_only(device):
    a, b = await client(device), await client(device)
    a.send(Labels(LabelTable.OUTPUT, ((0, "PGM  out ü"), (1, "Output 2"))))
    assert await a.read(2) == [Ack(), Labels(LabelTable.OUTPUT, ((0, "PGM  out ü"),))]
    assert await b.read() == [Labels(LabelTable.OUTPUT, ((0, "PGM  out ü"),))]
    device.panel_label(LabelTable.INPUT, 2, "")
    assert await b.read() == [Labels(LabelTable.INPUT, ((2, ""),))]


async def test_monitoring_serial_directions_and_take_mode():
    async with VideohubEmulator(2, 2, monitoring_outputs=2, serial_ports=2) as device:
        c = await client(device)
        c.send(Routes(RoutingTable.VIDEO_MONITORING_OUTPUT, ((1, 0),)),
               Routes(RoutingTable.SERIAL_PORT, ((0, 1), (1, -1))),
               PortValues(ValueTable.SERIAL_PORT_DIRECTIONS, ((0, "control"),)),
               PortValues(ValueTable.SERIAL_PORT_DIRECTIONS, ((0, "sideways"),)),
               KeyValues("CONFIGURATION", (("Take Mode", "true"),)),
               PortValues(ValueTable.VIDEO_INPUT_STATUS, ((0, "BNC"),)),
               Locks(LockTable.SERIAL_PORT, ((1, O),)))
        assert await c.read(12) == [
            Ack(), Routes(RoutingTable.VIDEO_MONITORING_OUTPUT, ((1, 0),)),
            Ack(), Routes(RoutingTable.SERIAL_PORT, ((0, 1),)),
            Ack(), PortValues(ValueTable.SERIAL_PORT_DIRECTIONS, ((0, "control"),)),
            Nak(), Ack(), KeyValues("CONFIGURATION", (("Take Mode", "true"),)),
            Ack(),  # hardware status from a client: ignored
            Ack(), Locks(LockTable.SERIAL_PORT, ((1, O),))]
        assert device.source(0, "serial") == 1 and device.source(1, "monitoring") == 0


async def test_requests_are_answered_in_order_after_the_response_delay():
    async with VideohubEmulator(3, 4, response_delay_s=0.02) as device:
        c = await client(device)
        c.send(Ping(), Routes(VIDEO, ((3, 2),)), StatusRequest("NOPE"), Ping())
        assert await c.read(5) == [Ack(), Ack(), Routes(VIDEO, ((3, 2),)), Nak(), Ack()]


async def test_device_not_present_sends_its_device_block_and_refuses_everything():
    async with VideohubEmulator(3, 4, present="false", version="2.3") as device:
        c = Client(await device.connect())
        assert await c.read(2) == [Preamble("2.3"), DeviceInfo("false", "Blackmagic Smart "
                                   "Videohub 3 x 4", None, None, 3, 0, 4, 0, 0)]
        c.send(Ping())
        assert await c.read() == [Nak()]


async def test_injected_block_reaches_every_client(device):
    a = await client(device)
    device.inject_block("SOMETHING NEW", ["1 x"])
    device.panel_route(3, 1)
    assert await a.read(2) == [UnknownBlock("SOMETHING NEW", ("1 x",)), Routes(VIDEO, ((3, 1),))]


def test_from_cli_has_one_level_only():
    device = VideohubEmulator.from_cli(inputs=4, outputs=6, levels=1)
    assert device.inputs == 4 and device.tables["video"].size == 6
    with pytest.raises(click.UsageError, match="one video level; --levels must be 1, not 2"):
        VideohubEmulator.from_cli(inputs=4, outputs=6, levels=2)


@pytest.mark.parametrize("kwargs", [
    {"inputs": 0}, {"outputs": 0}, {"serial_ports": -1}, {"version": "two"},
    {"locked_route": "maybe"}, {"lock_owner": "port"}, {"response_delay_s": -1},
    {"labels": {LabelTable.SERIAL_PORT: {0: "x"}}},
])
def test_bad_construction_is_a_value_error(kwargs):
    with pytest.raises(ValueError):
        VideohubEmulator(**kwargs)
