"""The emulated Extron switcher as a device: what controllers typing SIS by hand see.

The controllers here write raw bytes and read raw bytes (no codec), over in-process pipes
(named like TCP connections) or streams served as a serial line.
"""

from __future__ import annotations

import asyncio

import click
import pytest

from tieline.model import PortKind
from tieline.plugins.extron_sis.codec import (
    ClearAllTies,
    Password,
    Plane,
    QuickTie,
    SetVerbose,
    Tie,
)
from tieline.plugins.extron_sis.emulator import ExtronEmulator
from tieline.transports import ByteStream, memory_pipe

BANNER = b"(c) Copyright 2024, Extron Electronics, Matrix 8x8 AV, V1.23, 60-1234-01\r\n" \
         b"Tue, 05 Mar 2024 10:11:12\r\n"


class Raw:
    """A controller typing SIS by hand."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.stream.write(data)

    async def expect(self, data: bytes) -> None:
        """The next bytes are exactly ``data``."""
        async with asyncio.timeout(2):
            while len(self.buffer) < len(data):
                chunk = await self.stream.read(65536)
                assert chunk, f"closed; got {self.buffer!r}, expected {data!r}"
                self.buffer += chunk
        got, self.buffer = self.buffer[:len(data)], self.buffer[len(data):]
        assert got == data

    async def ask(self, command: bytes, answer: bytes) -> None:
        self.send(command)
        await self.expect(answer)

    async def quiet(self) -> None:
        """Nothing more arrives for a moment."""
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                self.buffer += await self.stream.read(65536)
        assert self.buffer == b""

    async def closed(self) -> None:
        async with asyncio.timeout(2):
            while await self.stream.read(65536):
                pass


@pytest.fixture
async def device():
    async with ExtronEmulator(8, 8, 2) as device:
        yield device


async def connect(device: ExtronEmulator, *, banner: bytes = BANNER) -> Raw:
    raw = Raw(await device.connect())
    await raw.expect(banner)
    return raw


async def serial(device: ExtronEmulator) -> Raw:
    ours, theirs = memory_pipe()
    device.serve_stream(ours, "/dev/ttyUSB0")
    return Raw(theirs)


async def test_ties_reads_and_verbose_modes(device):
    c = await connect(device)
    await c.ask(b"3%", b"03\r\n")  # verbose 0 on IP: untagged
    await c.ask(b"5*3!", b"Out03 In05 All\r\n")
    await c.ask(b"6*3$3$3%", b"Out03 In06 Aud\r\n06\r\n05\r\n")
    await c.ask(b"3!", b"E14\r\n")  # broken away
    await c.ask(b"\x1b3CV\r", b"Vrb3\r\n")
    await c.ask(b"3%3$3&\x1bCV\r", b"Out03 In05 Vid\r\nOut03 In06 Aud\r\nOut03 In05 RGB\r\n3\r\n")
    await c.ask(b"0*3%3%", b"Out03 In00 Vid\r\nOut03 In00 Vid\r\n")  # input 0 unties
    await c.ask(b"Q", b"1.23\r\n")
    await c.ask(b"i", b"V8X8 A8X8\r\n")
    await c.ask(b"N", b"60-1234-01\r\n")
    assert (device.tie(3, Plane.VIDEO), device.tie(3, Plane.AUDIO)) == (0, 6)
    await c.quiet()


async def test_errors(device):
    c = await connect(device)
    await c.ask(b"9*1!", b"E01\r\n")
    await c.ask(b"1*9!", b"E12\r\n")
    await c.ask(b"0%", b"E12\r\n")
    await c.ask(b"5@", b"E10\r\n")
    await c.ask(b"\x1bZZ\r", b"E10\r\n")
    await c.ask(b"\x1b9CV\r", b"E13\r\n")
    await c.ask(b"3.", b"E11\r\n")  # empty preset
    await c.ask(b"33,", b"E11\r\n")
    await c.ask(b"\x1b0*99999TC\r", b"E13\r\n")
    await c.ask(b"1*1!", b"Out01 In01 All\r\n")  # still serving


#: bytes that never make a command: no digits, ``*``, ``Q``/``I``/``N``, Esc, line ends,
#: blanks or Telnet's IAC (issue 12: garbage must not be answered byte by byte).
GARBAGE = bytes(b for b in range(256) if b not in b"0123456789*QqIiNn\x1b\r\n \t\xff")


async def test_a_run_of_garbage_gets_one_error(device):
    c = await connect(device)
    c.send(bytes(GARBAGE[i * 7919 % len(GARBAGE)] for i in range(10_000)))
    await c.ask(b"1*1!", b"E10\r\nOut01 In01 All\r\n")
    c.send(b"xyz" * 100)  # a new run after a command
    await c.ask(b"Q", b"E10\r\n1.23\r\n")
    await c.quiet()


async def test_a_line_end_or_an_esc_command_ends_a_run_of_garbage(device):
    c = await connect(device)
    await c.ask(b"hello\r\n", b"E10\r\n")  # as a person typing at a prompt sees it
    await c.ask(b"hello\r", b"E10\r\n")
    await c.ask(b"xx\x1bZZ\r\x1bYY\r", b"E10\r\nE10\r\nE10\r\n")  # every Esc-command answered
    await c.quiet()


async def test_garbage_before_login_gets_one_prompt():
    async with ExtronEmulator(8, 8, 2, password="pw") as device:
        c = await connect(device, banner=BANNER + b"\r\nPassword:")
        c.send(GARBAGE * 40)  # an over-long password, skipped to its line end
        await c.ask(b"\rpw\r", b"\r\nPassword:\r\nLogin Administrator\r\n")
        await c.quiet()


async def test_changes_are_reported_to_other_connections_in_verbose_1_and_3(device):
    a, b, c, d = [await connect(device) for _ in range(4)]
    await a.ask(b"\x1b3CV\r", b"Vrb3\r\n")
    await b.ask(b"\x1b1CV\r", b"Vrb1\r\n")
    await d.ask(b"\x1b2CV\r", b"Vrb2\r\n")  # tagged answers only: no reports
    await c.ask(b"5*3!", b"Out03 In05 All\r\n")
    await a.expect(b"Out03 In05 All\r\n")
    await b.expect(b"Out03 In05 All\r\n")
    await a.ask(b"2*4%", b"Out04 In02 Vid\r\n")  # not echoed twice to the one who asked
    await b.expect(b"Out04 In02 Vid\r\n")
    device.panel_tie(7, 1, Plane.AUDIO)
    await a.expect(b"Out01 In07 Aud\r\n")
    device.panel_tie(7, 2, report="qik")
    await b.expect(b"Out01 In07 Aud\r\nQik\r\n")
    device.panel_tie(7, 3, report="none")
    device.send_line("Reconfig")
    await a.expect(b"Qik\r\nReconfig\r\n")
    await b.expect(b"Reconfig\r\n")
    await b.quiet()
    await c.quiet()
    await d.quiet()
    await a.quiet()


async def test_clear_all_and_tie_to_all_work_as_on_the_device(device):
    a, b = await connect(device), await connect(device)
    await a.ask(b"\x1b3CV\r", b"Vrb3\r\n")
    await b.ask(b"4*$", b"In04 Aud\r\n")
    await a.expect(b"In04 Aud\r\n")
    assert device.audio[1:] == [4] * 8
    await b.ask(b"0*!", b"In00 All\r\n")
    await a.expect(b"In00 All\r\n")
    assert device.video[1:] == device.audio[1:] == [0] * 8
    assert [m for _, m in device.command_log if isinstance(m, ClearAllTies)] == [ClearAllTies()]


async def test_quick_tie_is_all_or_nothing(device):
    a, b = await connect(device), await connect(device)
    await a.ask(b"\x1b3CV\r", b"Vrb3\r\n")
    await b.ask(b"\x1b+Q3*4!3*5%9*6$\r", b"E01\r\n")
    assert (device.tie(4), device.tie(5)) == (4, 5)
    await b.ask(b"\x1b+Q3*4!3*5%3*6$\r", b"Qik\r\n")
    await a.expect(b"Qik\r\n")
    assert (device.tie(4), device.tie(5, Plane.AUDIO), device.tie(6, Plane.AUDIO)) == (3, 5, 3)


async def test_presets(device):
    a, b = await connect(device), await connect(device)
    await a.ask(b"\x1b3CV\r", b"Vrb3\r\n")
    await b.ask(b"1*1!1,", b"Out01 In01 All\r\nSpr01\r\n")
    await a.expect(b"Out01 In01 All\r\nSpr01\r\n")
    await b.ask(b"2*1!1.", b"Out01 In02 All\r\nRpr01\r\n")
    await a.expect(b"Out01 In02 All\r\nRpr01\r\n")
    assert device.tie(1) == 1
    await b.ask(b"\x1b1*1*1VC\r\x1b0*5*2VC\r",
                b"01 02 03 04 05 06 07 08 -- -- -- -- -- -- -- -- Vid\r\n"
                b"05 06 07 08 -- -- -- -- -- -- -- -- -- -- -- -- Aud\r\n")
    device.panel_tie(8, 1)
    device.panel_recall(1)
    await a.expect(b"Out01 In08 All\r\nRpr01\r\n")
    assert device.tie(1) == 1


async def test_names(device):
    a, b = await connect(device), await connect(device)
    await a.ask(b"\x1b3CV\r\x1b2NI\r\x1b8NO\r", b"Vrb3\r\nNmi02,Input 2\r\nNmo08,Output 8\r\n")
    await b.ask(b"\x1b2NI\r", b"Input 2\r\n")  # untagged in verbose 0
    await b.ask(b"\x1b2,Cam 2NI\r", b"Nmi02,Cam 2\r\n")
    await a.expect(b"Nmi02,Cam 2\r\n")
    await b.ask(b"\x1b2,Cam;2NI\r\x1b2,Thirteen charsNI\r\x1b9,XNI\r\x1b9,XNO\r",
                b"E13\r\nE13\r\nE01\r\nE12\r\n")
    device.panel_name(PortKind.DESTINATION, 1, "PGM")
    await a.expect(b"Nmo01,PGM\r\n")
    assert device.names[PortKind.SOURCE][2] == "Cam 2"


async def test_password_login_and_user_rights():
    async with ExtronEmulator(8, 8, password="admin pw", user_password="user") as device:
        c = Raw(await device.connect())
        await c.expect(BANNER + b"\r\nPassword:")
        await c.ask(b"1*1!\r", b"\r\nPassword:")  # a command before the login is a try
        assert device.tie(1) == 1
        await c.ask(b"admin pw\r\n", b"\r\nLogin Administrator\r\n")
        await c.ask(b"2*1!", b"Out01 In02 All\r\n")
        u = Raw(await device.connect())
        await u.expect(BANNER + b"\r\nPassword:")
        await u.ask(b"user\r", b"\r\nLogin User\r\n")
        await u.ask(b"3*1%1,\x1b1,XNI\r\x1b1*60TC\r1.",  # save, name, global timeout: admin
                    b"Out01 In03 Vid\r\nE24\r\nE24\r\nE24\r\nE11\r\n")
        p = Raw(await device.connect())  # not logged in: told nothing
        await p.expect(BANNER + b"\r\nPassword:")
        await c.ask(b"\x1b3CV\r", b"Vrb3\r\n")
        await u.ask(b"4*2!", b"Out02 In04 All\r\n")
        await c.expect(b"Out02 In04 All\r\n")
        await p.quiet()
        assert Password("admin pw") in [m for _, m in device.command_log]


async def test_serial_line_has_no_banner_no_login_and_reports_changes():
    async with ExtronEmulator(8, 8, password="pw") as device:
        line = await serial(device)
        await line.ask(b"1%", b"01\r\n")  # no login on serial (§1.1)
        other = await connect(device, banner=BANNER + b"\r\nPassword:")
        await other.ask(b"pw\r", b"\r\nLogin Administrator\r\n")
        await other.ask(b"6*1!", b"Out01 In06 All\r\n")
        await line.expect(b"Out01 In06 All\r\n")  # verbose 1 by default on serial (§4)
        with pytest.raises(ValueError, match="link must be one of"):
            device.serve_stream(memory_pipe()[0], "x", link="usb")


async def test_telnet_offers_and_their_refusal():
    async with ExtronEmulator(8, 8, telnet_negotiation=True) as device:
        c = Raw(await device.connect())
        await c.expect(b"\xff\xfb\x01\xff\xfb\x03\xff\xfd\x18" + BANNER)
        await c.ask(b"\xff\xfe\x01\xff\xfe\x03\xff\xfc\x181%", b"01\r\n")


async def test_silent_ip_connection_is_dropped_and_the_timeout_can_be_changed():
    async with ExtronEmulator(8, 8, idle_timeout_s=0.05) as device:
        c = await connect(device)
        await c.closed()
        d = await connect(device)
        await d.ask(b"\x1b0*30TC\r\x1b0TC\r", b"Pti0*30\r\nPti0*30\r\n")
        await d.quiet()
        assert device.controllers  # still connected: now 300 s


async def test_large_frames_pad_to_three_digits_and_a_video_only_frame():
    async with ExtronEmulator(120, 200, 1) as device:
        c = await connect(device, banner=BANNER.replace(b"8x8 AV", b"120x200 V"))
        await c.ask(b"12*150!", b"Out150 In012 All\r\n")
        await c.ask(b"150%I", b"012\r\nV120X200\r\n")
        await c.ask(b"1*1$1$", b"E10\r\nE10\r\n")  # no audio plane
        with pytest.raises(ValueError, match="no audio plane"):
            device.panel_tie(1, 1, Plane.AUDIO)


async def test_slow_device_answers_in_order():
    async with ExtronEmulator(8, 8, response_delay_s=0.01) as device:
        c = await connect(device)
        await c.ask(b"1*1!2*2!Q", b"Out01 In01 All\r\nOut02 In02 All\r\n1.23\r\n")


async def test_command_log_and_set_ties(device):
    c = await connect(device)
    await c.ask(b"\x1b3CV\r5*3!\x1b+Q1*1!\r", b"Vrb3\r\nOut03 In05 All\r\nQik\r\n")
    assert [m for _, m in device.command_log] == [
        SetVerbose(3), Tie(5, 3, Plane.ALL), QuickTie((Tie(1, 1, Plane.ALL),))]
    assert all(name.startswith("local-") for name, _ in device.command_log)
    device.set_ties(video={1: 8}, audio={2: 7})
    await c.quiet()
    assert (device.tie(1), device.tie(2, Plane.AUDIO)) == (8, 7)


def test_constructor_and_cli_check_their_arguments():
    with pytest.raises(ValueError, match="1 \\(video\\) or 2"):
        ExtronEmulator(8, 8, 3)
    with pytest.raises(ValueError, match="1–9999 inputs"):
        ExtronEmulator(0, 8)
    with pytest.raises(click.UsageError, match="--levels 1"):
        ExtronEmulator.from_cli(inputs=8, outputs=8, levels=4)
    device = ExtronEmulator.from_cli(inputs=4, outputs=6, levels=1)
    assert (device.inputs, device.outputs, device.levels, device.pad) == (4, 6, 1, 2)
