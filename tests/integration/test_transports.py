"""Serial (a real pseudo-terminal pair), SSH (a real asyncssh server) and the emulate command,
each carrying the simulator protocol through the real DeviceLink."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from tieline.devices import DeviceLink
from tieline.errors import LinkError
from tieline.events import DeviceOnline, EventBus
from tieline.failover import Failover, NodeStatus, Role, State
from tieline.model import Crosspoint, Permission, Principal, RouterSpec, RouterState
from tieline.plugins.simulator.driver import SimulatorDriver
from tieline.plugins.simulator.emulator import SimulatorEmulator
from tieline.routing import RouterRuntime, RoutingService
from tieline.transports import SerialTransport, SshTransport, TcpTransport, open_fd_stream

SPEC = RouterSpec("r", "simulator", ("video",), 8, 8)
OPERATOR = Principal("op", Permission.ROUTE)


class AnyLineSimulator(SimulatorDriver):
    """The simulator driver allowed over every transport (the protocol does not care)."""

    transports: ClassVar[tuple[str, ...]] = ("tcp", "serial", "ssh")


async def follow(transport) -> tuple[RoutingService, asyncio.Task]:
    bus = EventBus()
    routing = RoutingService(bus, Failover(NodeStatus("n", Role.STANDALONE, State.ACTIVE),
                                           bus.publish))
    driver = AnyLineSimulator(SPEC, {}, transport)
    runtime = RouterRuntime(RouterState(SPEC), driver)
    runtime.link = DeviceLink(driver, routing)
    routing.add_router(runtime)
    online = bus.subscribe("test")
    task = asyncio.create_task(runtime.link.run())
    async with asyncio.timeout(10):
        async for event in online:
            if isinstance(event, DeviceOnline):
                break
    return routing, task


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_serial_over_a_pseudo_terminal_pair():
    master, slave = os.openpty()
    device = SimulatorEmulator(1, 8, 8)
    await device.start()
    try:
        device.serve_stream(await open_fd_stream(master), "pty")
        transport = SerialTransport({"type": "serial", "device": os.ttyname(slave)},
                                    defaults={"baudrate": 38400})
        assert transport.describe() == f"serial://{os.ttyname(slave)} 38400 8N1"
        routing, task = await follow(transport)
        await routing.route(OPERATOR, "r", 2, 5)
        assert device.source(0, 2) == 5
        device.panel_route(0, 3, 1)  # a change at the frame reaches tieline over the line
        async with asyncio.timeout(5):
            while routing.routers["r"].state.source(0, 3) != 1:
                await asyncio.sleep(0.01)
        await stop(task)
    finally:
        await device.close()
        os.close(master)
        os.close(slave)


async def test_serial_device_missing_is_a_link_error():
    with pytest.raises(LinkError, match="cannot open serial:///dev/nonexistent-tty"):
        await SerialTransport({"type": "serial", "device": "/dev/nonexistent-tty"}).open()


async def test_ssh_with_known_hosts(tmp_path):
    async with SimulatorEmulator(1, 8, 8) as device:
        server = await device.serve_ssh(username="admin", password="extron")
        port = server.sockets[0].getsockname()[1]
        options = {"type": "ssh", "host": "127.0.0.1", "port": port, "username": "admin",
                   "password": "extron", "known_hosts": "known_hosts",
                   "host_key_policy": "accept-new"}
        # first connection learns the key, the second checks it strictly
        routing, task = await follow(SshTransport(options, folder=tmp_path))
        await routing.route(OPERATOR, "r", 1, 6)
        assert device.source(0, 1) == 6
        await stop(task)
        assert f"[127.0.0.1]:{port} ssh-ed25519 " in (tmp_path / "known_hosts").read_text()
        strict = dict(options, host_key_policy="strict")
        routing, task = await follow(SshTransport(strict, folder=tmp_path))
        await stop(task)
        # a device whose key changed is refused
        (tmp_path / "other").write_text(f"[127.0.0.1]:{port} ssh-ed25519 "
                                        "AAAAC3NzaC1lZDI1NTE5AAAAIC7k4B8xq2s3u0U1s6o6bOC5cQ7mG1d"
                                        "hHq2gG1U6CkYb\n")
        with pytest.raises(LinkError, match="cannot connect to ssh://admin@127.0.0.1"):
            await SshTransport(dict(strict, known_hosts="other"), folder=tmp_path).open()
        # a wrong password is refused
        with pytest.raises(LinkError, match="cannot connect"):
            await SshTransport(dict(options, password="nope"), folder=tmp_path).open()
    assert any(name.startswith("ssh ") for name, _ in device.command_log)


async def test_emulate_command_serves_the_simulator():
    tieline = str(Path(sys.executable).with_name("tieline"))
    proc = await asyncio.create_subprocess_exec(
        tieline, "emulate", "simulator", "--listen", "127.0.0.1:0", "--inputs", "4",
        "--outputs", "6", "--levels", "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("tieline: emulating simulator (4x6, 2 level(s)) on tcp://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        transport = TcpTransport({"type": "tcp", "host": "127.0.0.1", "port": port})
        routing, task = await follow(transport)
        state = routing.routers["r"].state
        assert state.source(0, 5) == 5 % 4  # the emulator's own size and initial routing
        await routing.route(OPERATOR, "r", 0, 3)
        await stop(task)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert b"tieline: stopped" in out


def test_emulate_refuses_serial_for_tcp_only_protocols_and_unknown_names():
    from click.testing import CliRunner

    from tieline.cli import main

    result = CliRunner().invoke(main, ["emulate", "nope", "--listen", "127.0.0.1:0"])
    assert result.exit_code == 2 and "no emulator 'nope'; installed: " in result.output
    assert "simulator" in result.output.split("installed: ")[1]
    result = CliRunner().invoke(main, ["emulate", "simulator", "--serial", "/dev/null"])
    assert result.exit_code == 2 and "the simulator protocol has no serial line" in result.output


async def test_ssh_reads_what_the_device_writes_on_stderr(tmp_path):
    """Some devices (Extron SMP) answer on the session's stderr: it must not be lost."""
    import asyncssh

    class Server(asyncssh.SSHServer):
        def begin_auth(self, user: str) -> bool:
            return False  # no authentication

    async def session(process) -> None:
        process.stderr.write(b"E10\r\n")
        process.stdout.write(b"Out1 In2 All\r\n")
        await process.stdin.read(1)
        process.exit(0)

    server = await asyncssh.create_server(
        Server, "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        process_factory=session, encoding=None)
    try:
        port = server.sockets[0].getsockname()[1]
        stream = await SshTransport({"type": "ssh", "host": "127.0.0.1", "port": port,
                                     "username": "x", "host_key_policy": "ignore"},
                                    folder=tmp_path).open()
        received = b""
        async with asyncio.timeout(5):
            while b"E10" not in received or b"Out1" not in received:
                received += await stream.read(100)
        stream.close()
    finally:
        server.close()
        await server.wait_closed()
