"""The SW-P-08 emulator as a router: what controllers speaking the protocol see."""

from __future__ import annotations

import asyncio

import pytest

from tieline.plugins.swp08.codec import (
    ACK_BYTES,
    NAK_BYTES,
    Codec,
    Connect,
    Connected,
    Delivered,
    DestinationNames,
    DestinationNamesRequest,
    DualStatus,
    DualStatusRequest,
    ImplementationRequest,
    ImplementationStatus,
    Interrogate,
    InvalidMessage,
    Maintenance,
    Message,
    NamesUpdated,
    ProtectConnect,
    ProtectConnected,
    ProtectDeviceName,
    ProtectDeviceNameRequest,
    ProtectDisconnect,
    ProtectDisconnected,
    ProtectInterrogate,
    ProtectTally,
    Role,
    SourceNames,
    SourceNamesRequest,
    Tally,
    TallyDumpByte,
    TallyDumpRequest,
    TallyDumpWord,
    UnknownMessage,
    UpdateName,
    encode_frame,
    encode_message,
)
from tieline.plugins.swp08.emulator import SWP08Emulator
from tieline.transports import ByteStream


class Controller:
    """A bare controller: the codec over a stream, acknowledging what it reads."""

    def __init__(self, stream: ByteStream, *, ack: bool = True) -> None:
        self.stream = stream
        self.codec = Codec(Role.CONTROLLER, auto_ack=ack)
        self.received: list[Message] = []
        self.raw = bytearray()

    def send(self, *messages: Message) -> None:
        for message in messages:
            self.codec.send(message, 0.0)
        self.flush()

    def flush(self) -> None:
        data = self.codec.data_to_send()
        if data:
            self.stream.write(data)

    async def read(self, count: int = 1, timeout: float = 2.0) -> list[Message]:
        """The next ``count`` messages (each acknowledged; our next frame then goes out)."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                data = await self.stream.read(65536)
                assert data, "the device closed the connection"
                self.raw += data
                self.codec.receive_data(data, 0.0)
                self.received += [e for e in self.codec.events() if isinstance(e, Message)]
                self.flush()
        out, self.received = self.received[:count], self.received[count:]
        return out

    async def ask(self, message: Message, count: int = 1) -> list[Message]:
        self.send(message)
        return await self.read(count)

    async def quiet(self, seconds: float = 0.05) -> None:
        with pytest.raises(TimeoutError):
            await self.read(1, seconds)


@pytest.fixture
async def router():
    async with SWP08Emulator(20, 200, 2, names_updated_delay_s=0.05) as device:
        yield device


async def controller(device: SWP08Emulator, **kwargs) -> Controller:
    return Controller(await device.connect(), **kwargs)


async def test_interrogate_and_connect(router):
    a, b = await controller(router), await controller(router)
    assert await a.ask(Interrogate(0, 1, 150)) == [Tally(0, 1, 150, 150 % 20)]
    a.send(Connect(0, 1, 150, 3))
    assert await a.read() == [Connected(0, 1, 150, 3)]
    assert await b.read() == [Connected(0, 1, 150, 3)]  # every controller is told
    assert router.source(1, 150) == 3
    a.send(Connect(0, 1, 150, 3))  # already set: confirmed all the same
    assert await a.read() == [Connected(0, 1, 150, 3)]
    assert [type(m).__name__ for _, m in router.command_log] == ["Interrogate", "Connect",
                                                                   "Connect"]


async def test_routes_already_set_can_go_unconfirmed():
    async with SWP08Emulator(4, 4, echo_unchanged=False) as device:
        a = await controller(device)
        a.send(Connect(0, 0, 1, 1))
        await a.quiet()
        a.send(Connect(0, 0, 1, 2))
        assert await a.read() == [Connected(0, 0, 1, 2)]


async def test_tally_dumps_in_word_byte_and_extended_form(router):
    a = await controller(router)
    dump = await a.ask(TallyDumpRequest(0, 0), 4)
    assert [(m.first, len(m.sources)) for m in dump] == [(0, 64), (64, 64), (128, 64), (192, 8)]
    assert all(isinstance(m, TallyDumpWord) and not m.extended for m in dump)
    assert dump[3].sources == tuple(d % 20 for d in range(192, 200))
    ext = await a.ask(TallyDumpRequest(0, 1, True), 4)  # asked extended: answered extended
    assert all(m.extended for m in ext)
    async with SWP08Emulator(10, 70, dump_format="byte") as small:
        b = await controller(small)
        assert await b.ask(TallyDumpRequest(0, 0), 2) == [
            TallyDumpByte(0, 0, 0, tuple(d % 10 for d in range(64))),
            TallyDumpByte(0, 0, 64, tuple(d % 10 for d in range(64, 70)))]


async def test_numbers_beyond_the_normal_range_are_answered_extended():
    async with SWP08Emulator(2000, 1100) as big:
        a = await controller(big)
        assert await a.ask(Interrogate(0, 0, 1050, True)) == [
            Tally(0, 0, 1050, 1050, True, status=0)]
        a.send(Connect(0, 0, 5, 1500, True))
        assert await a.read() == [Connected(0, 0, 5, 1500, True, status=0)]
        a.send(Connect(0, 0, 6, 7))
        assert await a.read() == [Connected(0, 0, 6, 7)]
        dump = await a.ask(TallyDumpRequest(0, 0), 18)  # normal request, 1100 destinations
        assert all(m.extended for m in dump) and dump[-1].first == 1088


async def test_names_all_single_and_updated(router):
    a = await controller(router)
    names = await a.ask(SourceNamesRequest(0, 1, 8), 2)
    assert names[0] == SourceNames(0, 1, 8, 0, tuple(f"SRC {i}" for i in range(1, 17)))
    assert names[1].first == 16 and len(names[1].names) == 4
    four = await a.ask(DestinationNamesRequest(0, 4), 7)  # 32 four-character names a message
    assert four[0].names[:2] == ("DST", "DST") and four[-1].first == 192
    a.send(UpdateName(0, 8, 0, 1, 2, ("CAM 3",)), UpdateName(2, 8, 0, 0, 7, ("PGM",)))
    await a.quiet(0.02)  # no answer to 117 ...
    assert await a.read() == [NamesUpdated(1, 3)]  # ... but NAMES UPDATED, once, a bit later
    assert await a.ask(SourceNamesRequest(0, 1, 12, 2)) == [SourceNames(0, 1, 12, 2, ("CAM 3",))]
    assert await a.ask(DestinationNamesRequest(0, 8, 7, True)) == [
        DestinationNames(0, 8, 7, ("PGM",), True)]
    assert router.source_name(2, level=1) == "CAM 3" and router.destination_name(7) == "PGM"


async def test_protects_by_device_number(router):
    a, b = await controller(router), await controller(router)
    a.send(ProtectConnect(0, 0, 9, 7))
    assert await a.read() == [ProtectConnected(0, 0, 9, 1, 7)]
    assert await b.read() == [ProtectConnected(0, 0, 9, 1, 7)]
    # another device cannot protect or release it; the answer shows who holds it
    b.send(ProtectConnect(0, 0, 9, 8))
    assert await b.read() == [ProtectConnected(0, 0, 9, 1, 7)]
    await a.read()
    b.send(ProtectDisconnect(0, 0, 9, 8))
    assert await b.read() == [ProtectDisconnected(0, 0, 9, 1, 7)]
    await a.read()
    # a route from someone else leaves the source and answers with it
    b.send(Connect(0, 0, 9, 4))
    assert await b.read() == [Connected(0, 0, 9, 9)]
    await a.quiet()
    a.send(Connect(0, 0, 9, 4))  # the owner may route
    assert await a.read() == [Connected(0, 0, 9, 4)]
    await b.read()
    assert await b.ask(ProtectInterrogate(0, 0, 9)) == [ProtectTally(0, 0, 9, 1, 7)]
    assert await b.ask(ProtectDeviceNameRequest(7)) == [ProtectDeviceName(7, "DEV 7")]
    a.send(ProtectDisconnect(0, 0, 9, 7))
    assert await a.read() == [ProtectDisconnected(0, 0, 9, 0, 7)]
    router.panel_protect(1, 3, 300, state=2)
    assert await a.read() == [ProtectConnected(0, 1, 3, 2, 300)]


async def test_status_implementation_maintenance_and_invalid_messages(router):
    a = await controller(router)
    assert await a.ask(DualStatusRequest()) == [DualStatus(False, True, 0)]
    (status,) = await a.ask(ImplementationRequest())
    assert isinstance(status, ImplementationStatus)
    assert {1, 2, 21, 100, 117, 129, 130} <= set(status.input_commands)
    assert {3, 4, 22, 23, 106, 107, 131, 132} <= set(status.output_commands)
    a.send(Maintenance(1))
    await a.quiet()
    assert await a.ask(UnknownMessage(120, b"\x00")) == [InvalidMessage(120)]
    assert await a.ask(Interrogate(0, 5, 0)) == [InvalidMessage(1)]  # no level 5
    assert await a.ask(Connect(0, 0, 0, 25)) == [InvalidMessage(2)]  # no source 26
    a.stream.write(encode_frame(bytes([2, 0, 0, 5])))  # malformed, but well framed
    assert await a.read() == [InvalidMessage(2)]
    a.send(InvalidMessage(3))  # never answered with a 99
    await a.quiet()


async def test_unsupported_commands():
    async with SWP08Emulator(4, 4, unsupported={21, 97}, answer_invalid=False) as device:
        a = await controller(device)
        a.send(TallyDumpRequest(0, 0), ImplementationRequest())
        await a.quiet()
    async with SWP08Emulator(4, 4, unsupported={21}) as device:
        a = await controller(device)
        assert await a.ask(TallyDumpRequest(0, 0)) == [InvalidMessage(21)]


async def test_frames_left_without_ack_are_sent_again_then_given_up():
    async with SWP08Emulator(4, 4, ack_timeout_s=0.02, retries=2) as device:
        a = await controller(device, ack=False)
        a.send(Interrogate(0, 0, 1))
        await asyncio.sleep(0.2)
        a.codec.receive_data(await a.stream.read(65536), 0.0)
        events = list(a.codec.events())
        assert [e for e in events if isinstance(e, Message)] == [Tally(0, 0, 1, 1)] * 3
        assert isinstance(events[0], Delivered)  # the device acknowledged our request
        device.panel_route(0, 2, 3)  # the queue moved on after giving up
        assert await a.read() == [Connected(0, 0, 2, 3)]


async def test_a_nak_makes_the_device_send_again(router):
    a = await controller(router, ack=False)
    a.send(Interrogate(0, 0, 4))
    reply = encode_frame(encode_message(Tally(0, 0, 4, 4)))
    async with asyncio.timeout(2):
        data = b""
        while reply not in data:
            data += await a.stream.read(65536)
    a.stream.write(NAK_BYTES)
    async with asyncio.timeout(2):
        data = b""
        while reply not in data:
            data += await a.stream.read(65536)
    a.stream.write(ACK_BYTES)


async def test_deviations_on_request():
    async with SWP08Emulator(4, 4, reply_before_ack=True, byte_count_skew=1) as device:
        a = await controller(device)
        assert await a.ask(Interrogate(0, 0, 2)) == [Tally(0, 0, 2, 2)]
        reply = bytes(a.raw)
        assert reply.index(b"\x10\x02") < reply.index(ACK_BYTES)
        assert a.codec.stats.skewed_byte_counts == 1


async def test_response_and_switch_delays_keep_order():
    async with SWP08Emulator(8, 8, switch_delay_s=0.05, response_delay_s=0.01) as device:
        a = await controller(device)
        a.send(Connect(0, 0, 1, 5), Connect(0, 0, 1, 6))
        assert await a.read(2) == [Connected(0, 0, 1, 5), Connected(0, 0, 1, 6)]
        assert device.source(0, 1) == 6


async def test_panel_helpers_and_cli_construction(router):
    a = await controller(router)
    router.panel_route(1, 7, 2)
    assert await a.read() == [Connected(0, 1, 7, 2)]
    router.panel_name("destination", 0, "MON")
    assert await a.read() == [NamesUpdated(1, 3)]
    with pytest.raises(ValueError, match="no matrix 0 level 9"):
        router.panel_route(9, 0, 0)
    with pytest.raises(ValueError, match="out of range"):
        router.panel_route(0, 500, 0)
    cli = SWP08Emulator.from_cli(inputs=12, outputs=34, levels=3)
    assert (cli.sources, cli.destinations, cli.levels) == (12, 34, 3)
    with pytest.raises(ValueError, match="1–65536 sources"):
        SWP08Emulator(0, 4)
