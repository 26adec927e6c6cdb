"""The emulator base class (tieline.kit.emulation): what every protocol's emulator shares."""

from __future__ import annotations

import asyncio

from tieline.kit.emulation import DeviceEmulator, EmulatorPeer


class LineEcho(DeviceEmulator):
    """The smallest emulator: each line is a command, answered with itself."""

    name = "line-echo"

    def controller_connected(self, peer: EmulatorPeer) -> None:
        peer.state = bytearray()

    async def data_received(self, peer: EmulatorPeer, data: bytes) -> None:
        buffer: bytearray = peer.state
        buffer += data
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[:end + 1]
            self.log_command(peer, line)
            peer.send(line + b"\n")


async def exchange(device: DeviceEmulator, count: int) -> None:
    """Send ``count`` commands on one connection and read every answer."""
    stream = await device.connect()
    stream.write(b"".join(b"%d\n" % i for i in range(count)))
    expected = sum(len(b"%d\n" % i) for i in range(count))
    received = 0
    async with asyncio.timeout(5):
        while received < expected:
            received += len(await stream.read(65536))
    stream.close()


async def test_the_command_log_keeps_the_latest_commands_only():
    async with LineEcho() as device:
        size = device.command_log_size
        assert size is not None and size >= 100
        await exchange(device, 3 * size)
    assert len(device.command_log) == size
    assert [command for _, command in device.command_log] == [
        b"%d" % i for i in range(2 * size, 3 * size)]


async def test_a_test_may_raise_the_command_log_size(monkeypatch):
    monkeypatch.setattr(LineEcho, "command_log_size", None)
    async with LineEcho() as device:
        await exchange(device, 5000)
    assert len(device.command_log) == 5000
