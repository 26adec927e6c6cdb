"""The Extron SIS driver session: bytes -> reports, commands -> bytes (pure, no I/O)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import jsonschema
import pytest

from tieline.devices import LabelRefused, LabelReport, RequestRefused, SyncDone, TallyReport
from tieline.errors import InvalidRequest, LinkError, RemoteProtocolError
from tieline.model import UNKNOWN, Crosspoint, PortKind, RouterSpec
from tieline.plugins import extron_sis
from tieline.plugins.extron_sis.codec import (
    ClearAllTies,
    Codec,
    Firmware,
    Information,
    Message,
    NameReport,
    PasswordPrompt,
    QueryFirmware,
    QueryInformation,
    QuickTie,
    QuickTieDone,
    ReadName,
    ReadTie,
    Role,
    SetName,
    SetVerbose,
    Tie,
    TieReport,
    TieToAll,
    VerboseReport,
)
from tieline.plugins.extron_sis.driver import ExtronDriver, ExtronSession
from tieline.plugins.extron_sis.emulator import ExtronEmulator
from tieline.transports import SerialTransport, SshTransport, TcpTransport

TRACES = Path(__file__).parents[3] / "fixtures" / "extron_sis"
SPEC = RouterSpec("ex", "extron_sis", ("video", "audio"), 2, 2)
SOURCE, DEST = PortKind.SOURCE, PortKind.DESTINATION
SYNC_BYTES = b"\x1b3CV\rI1%1$2%2$\x1b1NI\r\x1b2NI\r\x1b1NO\r\x1b2NO\r"
SYNC_ANSWERS = (b"Vrb3\r\nV2X2 A2X2\r\nOut01 In01 Vid\r\nOut01 In01 Aud\r\nOut02 In02 Vid\r\n"
                b"Out02 In00 Aud\r\nNmi01,Cam 1\r\nNmi02,Cam 2\r\nNmo01,PGM\r\nNmo02,PVW\r\n")
#: "tie to every output" (``X*!``; ``0*!`` clears every tie): the driver never sends it.
TIE_TO_ALL = re.compile(rb"\*[!%$&]")


def drain(session: ExtronSession) -> bytes:
    """What the session queued, checked: never a tie to every output, never clear-all."""
    data = session.data_to_send()
    assert not TIE_TO_ALL.search(data), data
    return data


class Responder:
    """A bare device: answers each command it parses as a switcher in verbose mode 3 would
    (every tie read as input 1), with no state. Pure, so the session stays pure too."""

    def __init__(self) -> None:
        self.codec = Codec(Role.DEVICE, telnet=True)
        self.commands: list[Message] = []

    def answer(self, data: bytes) -> bytes:
        self.codec.receive_data(data)
        out = []
        for command in self.codec.events():
            self.commands.append(command)
            match command:
                case SetVerbose(mode):
                    out.append(VerboseReport(mode))
                case QueryInformation():
                    out.append(Information("V99X99 A99X99"))
                case ReadTie(output, plane):
                    out.append(TieReport(output, 1, plane))
                case ReadName(kind, number) | SetName(kind, number):
                    out.append(NameReport(kind, number, getattr(command, "text", "n")))
                case Tie(source, output, plane):
                    out.append(TieReport(output, source, plane))
                case QuickTie():
                    out.append(QuickTieDone())
                case QueryFirmware():
                    out.append(Firmware("1.23"))
        return b"".join(self.codec.send(m) for m in out)


def session(spec: RouterSpec = SPEC, **options) -> ExtronSession:
    s = ExtronSession(spec, **options)
    s.connection_made(0.0)
    return s


def exchange(s: ExtronSession, device: Responder, now: float = 1.0) -> list:
    """Let the session and the device talk until neither has more to say."""
    reports = []
    while data := drain(s):
        reports += s.receive_data(device.answer(data), now)
    return reports


def synced(spec: RouterSpec = SPEC, **options) -> ExtronSession:
    s = session(spec, **options)
    reports = exchange(s, Responder())
    assert reports[-1] == SyncDone()
    return s


def tallies(reports) -> list[Crosspoint]:
    return [xp for r in reports if isinstance(r, TallyReport) for xp in r.crosspoints]


# -- connecting and the first read ----------------------------------------------------------


def test_without_a_password_the_sync_is_sent_at_once_and_only_reads():
    s = session()
    assert drain(s) == SYNC_BYTES
    reports = s.receive_data(b"(c) Copyright 2024, Extron Electronics, X, V1.0, 60-1-1\r\n"
                             b"Tue, 05 Mar 2024 10:11:12\r\n" + SYNC_ANSWERS, 1.0)
    assert reports == [
        TallyReport((Crosspoint(0, 0, 0), Crosspoint(1, 0, 0), Crosspoint(0, 1, 1),
                     Crosspoint(1, 1, UNKNOWN))),
        LabelReport(SOURCE, ((0, "Cam 1"), (1, "Cam 2"))),
        LabelReport(DEST, ((0, "PGM"), (1, "PVW"))),
        SyncDone(),
    ]
    assert s.size == (2, 2)
    assert drain(s) == b""


def test_sync_byte_by_byte_gives_the_same_reports():
    s = session()
    drain(s)
    reports = [r for i in range(len(SYNC_ANSWERS))
               for r in s.receive_data(SYNC_ANSWERS[i:i + 1], 1.0)]
    assert sum(isinstance(r, SyncDone) for r in reports) == 1
    assert tallies(reports)[-1] == Crosspoint(1, 1, UNKNOWN)


def test_untagged_answers_are_understood_in_order():
    s = session()
    drain(s)
    reports = s.receive_data(b"E10\r\n16\r\n01\r\n02\r\n02\r\n00\r\nCam 1\r\n\r\n12\r\nPVW\r\n",
                             1.0)
    assert tallies(reports) == [Crosspoint(0, 0, 0), Crosspoint(1, 0, 1), Crosspoint(0, 1, 1),
                                Crosspoint(1, 1, UNKNOWN)]
    assert LabelReport(SOURCE, ((0, "Cam 1"), (1, ""))) in reports
    assert LabelReport(DEST, ((0, "12"), (1, "PVW"))) in reports
    assert reports[-1] == SyncDone()


def test_one_level_router_reads_one_plane_and_inputs_beyond_settings_are_unknown():
    spec = RouterSpec("ex", "extron_sis", ("video",), 2, 1)
    s = session(spec)
    assert drain(s) == b"\x1b3CV\rI1%\x1b1NI\r\x1b2NI\r\x1b1NO\r"
    reports = s.receive_data(b"Vrb3\r\nV4X4\r\nOut01 In04 Vid\r\nE01\r\nE01\r\nE10\r\n", 1.0)
    assert reports == [TallyReport((Crosspoint(0, 0, UNKNOWN),)), SyncDone()]


def test_errors_while_reading_are_logged_once_and_the_sync_completes(caplog):
    spec = RouterSpec("ex", "extron_sis", ("video",), 1, 3)
    s = session(spec)
    drain(s)
    with caplog.at_level(logging.INFO):
        reports = s.receive_data(b"Vrb3\r\nV1X1\r\nOut01 In01 Vid\r\nE12\r\nE12\r\n"
                                 b"Nmi01,A\r\nNmo01,B\r\nE12\r\nE12\r\n", 1.0)
    assert reports[-1] == SyncDone()
    assert caplog.text.count("the device cannot read output") == 1
    assert "E12 invalid output number (the device has fewer outputs)" in caplog.text
    assert "the device says it has 1 inputs and 1 outputs (V1X1)" in caplog.text


def test_password_prompt_is_answered_then_the_sync_starts():
    s = session(password="extron")
    assert drain(s) == b""  # nothing before the prompt: it would be taken for the password
    s.keepalive(1.0)
    assert drain(s) == b""
    assert s.next_deadline() == 3.0
    reports = s.receive_data((TRACES / "good" / "device-telnet-login.trace").read_bytes()
                             .split(b"\r\nPassword:")[0] + b"\r\nPassword:", 1.0)
    assert reports == []
    assert drain(s) == b"\xff\xfe\x01\xff\xfe\x03\xff\xfc\x18extron\r"
    s.receive_data(b"\r\nLogin Administrator\r\n", 1.1)
    assert drain(s) == SYNC_BYTES
    assert s.receive_data(SYNC_ANSWERS, 1.2)[-1] == SyncDone()


def test_wrong_password_and_missing_password_are_clear_link_errors():
    s = session(password="nope")
    s.receive_data(b"Password:", 1.0)
    assert drain(s) == b"nope\r"
    with pytest.raises(LinkError, match="the device refused the password; check the router's"):
        s.receive_data(b"\r\nPassword:", 1.1)
    with pytest.raises(LinkError, match='asks for a password; give it as "password"'):
        session().receive_data(b"(c) Copyright\r\nPassword:", 1.0)
    with pytest.raises(LinkError, match='the "password" setting cannot be sent'):
        session(password="two\nlines").receive_data(b"Password:", 1.0)


def test_no_prompt_within_the_wait_means_no_login(caplog):
    s = session(password="extron", login_wait_s=2.0)
    assert s.tick(1.0) == [] and drain(s) == b""
    with caplog.at_level(logging.INFO):
        s.tick(2.0)
    assert drain(s) == SYNC_BYTES
    assert "did not ask for a password within 2 s" in caplog.text


def test_a_late_prompt_is_answered_and_the_sync_sent_again():
    s = session(password="extron")
    s.tick(5.0)
    assert drain(s) == SYNC_BYTES  # ... went into the password field:
    s.receive_data(b"\r\nPassword:", 5.5)
    assert drain(s) == b"extron\r"
    s.receive_data(b"\r\nLogin User\r\n", 5.6)
    assert drain(s) == SYNC_BYTES
    assert s.receive_data(SYNC_ANSWERS, 6.0)[-1] == SyncDone()


def test_over_ssh_the_router_password_is_not_waited_for():
    s = session(password="extron", link="ssh")
    assert drain(s) == SYNC_BYTES
    ssh = (TRACES / "good" / "device-ssh-banner.trace").read_bytes().replace(b"Vrb3\r\n", b"")
    assert s.receive_data(ssh + SYNC_ANSWERS, 1.0)[-1] == SyncDone()


def test_telnet_options_are_refused_once_each_and_only_on_tcp():
    s = session()
    drain(s)
    s.receive_data(b"\xff\xfd\x18\xff\xfb\x01\xff\xfd\x18\xff\xfe\x01\xff\xf1", 1.0)
    assert drain(s) == b"\xff\xfc\x18\xff\xfe\x01"
    serial = session(link="serial")
    drain(serial)
    serial.receive_data(b"Caf\xe9 \xff\xfd\r\n", 1.0)  # Latin-1 text on a serial line
    assert drain(serial) == b""


def test_garbage_is_a_protocol_error():
    s = synced()
    with pytest.raises(RemoteProtocolError):
        s.receive_data(b"\x00\x01garbage\x07\r\n", 2.0)


# -- routes -------------------------------------------------------------------------------


@pytest.mark.parametrize("planes, crosspoints, sent", [
    (("video", "audio"), [Crosspoint(0, 1, 4), Crosspoint(1, 1, 4)], b"5*2!"),
    (("video", "audio"), [Crosspoint(0, 1, 4), Crosspoint(1, 1, 5)], b"5*2%6*2$"),
    (("video", "audio"), [Crosspoint(0, 0, 0)], b"1*1%"),
    (("video", "audio"), [Crosspoint(1, 0, 0)], b"1*1$"),
    (("audio", "video"), [Crosspoint(0, 0, 2), Crosspoint(1, 0, 3)], b"3*1$4*1%"),
    (("all",), [Crosspoint(0, 0, 2)], b"3*1!"),
    (("video",), [Crosspoint(0, 0, 2)], b"3*1%"),
    (("all", "audio"), [Crosspoint(0, 1, 2), Crosspoint(1, 1, 3)], b"3*2!4*2$"),
    (("all", "audio"), [Crosspoint(0, 1, 2), Crosspoint(1, 1, 2)], b"3*2!"),
])
def test_levels_map_onto_planes(planes, crosspoints, sent):
    spec = RouterSpec("ex", "extron_sis", ("a", "b")[:len(planes)], 8, 8)
    s = synced(spec, planes=planes)
    s.route(crosspoints, "op")
    assert drain(s) == sent


def test_a_level_without_a_plane_cannot_be_routed():
    spec = RouterSpec("ex", "extron_sis", ("video", "audio", "data"), 4, 4)
    with pytest.raises(InvalidRequest, match="level 3 has no Extron plane"):
        synced(spec).route([Crosspoint(2, 0, 1)], "op")


def test_tie_answers_are_the_tally_and_errors_refuse_in_words():
    s = synced()
    s.route([Crosspoint(0, 1, 0), Crosspoint(1, 1, 0)], "op")
    s.route([Crosspoint(0, 0, 1)], "op")
    assert drain(s) == b"1*2!2*1%"
    reports = s.receive_data(b"Out02 In01 All\r\nE01\r\n", 2.0)
    assert reports == [
        TallyReport((Crosspoint(0, 1, 0), Crosspoint(1, 1, 0))),
        RequestRefused(0, 0, "the Extron refused the tie of input 2 to output 1 (video): "
                             "E01 invalid input number (the device has fewer inputs)"),
    ]


def test_a_change_made_elsewhere_during_a_tie_is_a_tally_too():
    s = synced()
    s.route([Crosspoint(0, 0, 1), Crosspoint(1, 0, 1)], "op")
    drain(s)
    reports = s.receive_data(b"Out02 In01 Aud\r\nOut01 In02 All\r\n", 2.0)
    assert tallies(reports) == [Crosspoint(1, 1, 0), Crosspoint(0, 0, 1), Crosspoint(1, 0, 1)]


def test_quick_tie_sends_one_command_and_reads_the_ties_back():
    spec = RouterSpec("ex", "extron_sis", ("video", "audio"), 8, 8)
    s = synced(spec, quick_tie=True)
    s.route([Crosspoint(0, 3, 2), Crosspoint(1, 3, 2), Crosspoint(0, 4, 2),
             Crosspoint(1, 5, 3)], "op")
    assert drain(s) == b"\x1b+Q3*4!3*5%4*6$\r"
    assert s.receive_data(b"Qik\r\n", 2.0) == []
    assert drain(s) == b"4%4$5%6$"
    reports = s.receive_data(b"Out04 In03 Vid\r\nOut04 In03 Aud\r\nOut05 In03 Vid\r\n"
                             b"Out06 In04 Aud\r\n", 2.1)
    assert tallies(reports) == [Crosspoint(0, 3, 2), Crosspoint(1, 3, 2), Crosspoint(0, 4, 2),
                                Crosspoint(1, 5, 3)]
    s.route([Crosspoint(0, 0, 9), Crosspoint(0, 1, 1)], "op")
    drain(s)
    refused = s.receive_data(b"E01\r\n", 3.0)
    assert [(r.level, r.destination) for r in refused] == [(0, 0), (0, 1)]
    assert "the quick multiple tie (nothing in it was switched)" in refused[0].reason
    s.route([Crosspoint(0, 0, 1)], "op")  # one tie: no quick tie needed
    assert drain(s) == b"2*1%"


def test_commands_in_flight_are_bounded():
    spec = RouterSpec("ex", "extron_sis", ("video",), 100, 100)
    s = session(spec, max_in_flight=4)
    assert drain(s) == b"\x1b3CV\rI1%2%"
    s.receive_data(b"Vrb3\r\n", 1.0)
    assert drain(s) == b"3%"
    s.receive_data(b"V100X100\r\nOut01 In01 Vid\r\n", 1.1)
    assert drain(s) == b"4%5%"


def test_withdraw_drops_ties_and_names_not_yet_sent_and_reads_go_on(caplog):
    """The fence (docs/plugins.md): once the node may not act, the ties and names still
    waiting for a place in the window never go out; the one sent stays sent (SIS re-sends
    nothing) and keepalives and reads go on."""
    s = synced(max_in_flight=1)
    s.route([Crosspoint(0, 0, 1)], "op")
    s.route([Crosspoint(0, 1, 0)], "op")
    s.set_label(SOURCE, 0, "CAM A")
    assert drain(s) == b"2*1%"
    with caplog.at_level(logging.INFO):
        # the items of what was dropped unsent (the link fails them: not sent)
        assert s.withdraw() == [("dst", 0, 1), ("label", SOURCE, 0)]
    assert "2 command(s) not sent: this node may not act now" in caplog.text
    assert tallies(s.receive_data(b"Out01 In02 Vid\r\n", 2.0)) == [Crosspoint(0, 0, 1)]
    assert drain(s) == b""
    s.keepalive(30.0)
    assert drain(s) == b"Q"
    s.route([Crosspoint(0, 1, 1)], "op")  # the node may act again: commands flow
    assert drain(s) == b""  # the keepalive holds the window
    s.receive_data(b"1.23\r\n", 30.5)
    assert drain(s) == b"2*2%"


# -- changes made elsewhere ---------------------------------------------------------------


def test_unsolicited_reports_become_tallies_and_labels():
    s = synced()
    reports = s.receive_data(b"Out02 In01 All\r\nIn02 Vid\r\nIn00 Aud\r\nNmo02,Studio\r\n"
                             b"Out09 In01 All\r\nVmt01*1\r\nExe1\r\nSpr09\r\n", 2.0)
    assert reports == [
        TallyReport((Crosspoint(0, 1, 0), Crosspoint(1, 1, 0), Crosspoint(0, 0, 1),
                     Crosspoint(0, 1, 1), Crosspoint(1, 0, UNKNOWN), Crosspoint(1, 1, UNKNOWN))),
        LabelReport(DEST, ((1, "Studio"),)),
    ]
    assert drain(s) == b""  # mutes, the panel lock and a saved preset change no tie


@pytest.mark.parametrize("line", [b"Qik", b"Rpr05", b"Reconfig", b"Frz 1"])
def test_anything_else_unsolicited_means_read_every_tie_again_once(line):
    s = synced()
    s.receive_data(line + b"\r\n" + line + b"\r\n", 2.0)
    assert drain(s) == b"1%1$2%2$"  # once, though asked twice ...
    s.receive_data(b"Out01 In02 Vid\r\n", 2.1)
    s.receive_data(line + b"\r\n", 2.2)  # ... and once more after it if asked meanwhile
    assert drain(s) == b""
    reports = s.receive_data(b"Out01 In01 Aud\r\nOut02 In02 Vid\r\nOut02 In01 Aud\r\n", 2.3)
    assert tallies(reports)[-1] == Crosspoint(1, 1, 0)
    assert drain(s) == b"1%1$2%2$"


def test_periodic_reread_is_the_safety_net():
    s = synced(reread_interval_s=60)
    assert s.next_deadline() == 61.0
    s.tick(61.0)
    assert drain(s) == b"1%1$2%2$"
    assert s.next_deadline() == 121.0
    assert synced(reread_interval_s=0).next_deadline() is None


def test_keepalive_is_q_and_never_piles_up():
    s = synced()
    s.keepalive(30.0)
    s.keepalive(31.0)
    assert drain(s) == b"Q"
    assert s.receive_data(b"1.23\r\n", 31.5) == []
    s.keepalive(60.0)
    assert drain(s) == b"Q"


# -- labels -------------------------------------------------------------------------------


def test_labels_are_set_as_names_and_confirmed_by_the_echo(caplog):
    s = synced()
    s.set_label(SOURCE, 1, "Cam 2 wide")
    assert drain(s) == b"\x1b2,Cam 2 wideNI\r"
    assert s.receive_data(b"Nmi02,Cam 2 wide\r\n", 2.0) == [
        LabelReport(SOURCE, ((1, "Cam 2 wide"),))]
    with pytest.raises(InvalidRequest, match="at most 12 characters"):
        s.set_label(DEST, 0, "A very long name")
    with pytest.raises(InvalidRequest, match="may not have: ;"):
        s.set_label(DEST, 0, "PGM;1")
    s.set_label(DEST, 0, "PGM")
    drain(s)
    with caplog.at_level(logging.WARNING):
        (refused,) = s.receive_data(b"E24\r\n", 2.1)
    assert isinstance(refused, LabelRefused)
    assert (refused.kind, refused.index) == (DEST, 0)
    assert refused.reason.startswith("the device refused the name 'PGM' (E24 privilege violation")
    assert "the device refused the name 'PGM' (E24 privilege violation" in caplog.text


# -- never clear every tie ----------------------------------------------------------------


def test_no_session_method_ever_sends_clear_all_or_a_tie_to_every_output():
    """Every method of the session, with every kind of input, for every planes setting:
    what it sends never holds ``X*!`` / ``0*!`` (§2), byte-wise and as parsed."""
    spec = RouterSpec("ex", "extron_sis", ("a", "b"), 12, 12)
    traces = [t.read_bytes() for t in sorted((TRACES / "good").glob("device-*.trace"))]
    everything: list[Message] = []
    for planes in (("video", "audio"), ("audio", "video"), ("all", "audio"), ("all",),
                   ("video",)):
        for quick in (False, True):
            for password, link in ((None, "tcp"), ("pw", "tcp"), ("pw", "ssh"), (None, "serial")):
                s = ExtronSession(spec, planes=planes, quick_tie=quick, password=password,
                                  link=link, max_in_flight=5)
                device = Responder()
                s.connection_made(0.0)
                if password is not None and link == "tcp":
                    s.receive_data(device.codec.send(PasswordPrompt()), 0.1)
                    drain(s)  # the password: the responder's codec takes it as one
                    device.codec.awaiting_password = False
                    s.receive_data(b"\r\nLogin Administrator\r\n", 0.2)
                exchange(s, device)
                s.tick(10.0)
                for source in (0, 11):
                    xps = [Crosspoint(level, dest, source) for level in range(len(planes))
                           for dest in range(12)]
                    s.route(xps, "op")
                    s.route(xps[:1], "op")
                    s.route(xps[::-1], "op")
                    exchange(s, device)
                s.keepalive(20.0)
                s.set_label(SOURCE, 0, "")
                s.set_label(DEST, 11, "PGM")
                s.tick(1000.0)
                exchange(s, device)
                s.receive_data(b"Out01 In00 All\r\nIn00 All\r\nQik\r\nE01\r\nRpr01\r\n" * 9, 40.)
                exchange(s, device)
                try:  # last: a trace may end the session (a password prompt, garbage)
                    for trace in traces:
                        s.receive_data(trace, 50.0)
                        exchange(s, device)
                except (LinkError, RemoteProtocolError):
                    device.answer(drain(s))
                everything += device.commands
    assert not [m for m in everything if isinstance(m, (ClearAllTies, TieToAll))]
    kinds = {type(m).__name__ for m in everything}
    assert {"Tie", "QuickTie", "ReadTie", "ReadName", "SetName", "SetVerbose",
            "QueryFirmware", "QueryInformation", "Telnet"} <= kinds
    assert sum(isinstance(m, Tie) for m in everything) > 1000


# -- the driver ---------------------------------------------------------------------------


def test_plugin_registers_the_driver_and_the_emulator_with_their_capabilities():
    assert extron_sis.tieline_router_drivers() == [ExtronDriver]
    assert extron_sis.tieline_emulators() == [ExtronEmulator]
    assert ExtronDriver.name == "extron_sis" and ExtronEmulator.name == "extron_sis"
    assert ExtronDriver.transports == ("tcp", "ssh", "serial")
    assert ExtronDriver.transport_defaults["tcp"] == {"port": 23}
    assert ExtronDriver.transport_defaults["ssh"] == {"port": 22023}
    assert ExtronDriver.transport_defaults["serial"] == ExtronEmulator.serial_defaults == {
        "baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1}
    assert ExtronDriver.device_protects == frozenset()
    assert ExtronDriver.device_labels and ExtronDriver.allows_second_controller
    assert ExtronEmulator.serial
    # the keepalive stays well inside the device's 5-minute idle timeout (§1.2)
    assert ExtronDriver.keepalive_interval_s < ExtronDriver.keepalive_timeout_s < 300


def test_settings_schema():
    schema = ExtronDriver.settings_schema
    jsonschema.validate({"password": "extron", "planes": ["all"], "quick_tie": True,
                         "reread_interval_s": 0, "name_max_length": 16}, schema)
    for bad in ({"planes": ["video", "video"]}, {"planes": ["data"]}, {"planes": []},
                {"password": "two\nlines"}, {"reread_interval_s": -1},
                {"name_max_length": 0}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_driver_builds_sessions_from_settings(caplog):
    spec = RouterSpec("ex", "extron_sis", ("video", "audio", "data"), 16, 16)
    options = {"planes": ["all", "audio"], "password": "pw", "quick_tie": True}
    assert ExtronDriver.check(spec, options) == [("planes", (
        '3 level(s) but "planes" names 2 (all, audio); give one plane per level '
        "(missing for: data)"))]
    driver = ExtronDriver(spec, options,
                          SshTransport({"type": "ssh", "host": "h", "username": "admin"}))
    s = driver.new_session()
    assert (s.link, s.password, s.quick_tie) == ("ssh", "pw", True)
    assert driver.sync_timeout_s == ExtronDriver.sync_timeout_s
    tcp = ExtronDriver(SPEC, {}, TcpTransport({"type": "tcp", "host": "h"},
                                              defaults=ExtronDriver.transport_defaults["tcp"]))
    assert tcp.describe() == "tcp://h:23" and tcp.new_session().link == "tcp"
    big = RouterSpec("ex", "extron_sis", ("video", "audio"), 512, 512)
    serial = ExtronDriver(big, {}, SerialTransport(
        {"type": "serial", "device": "/dev/ttyS0"},
        defaults=ExtronDriver.transport_defaults["serial"]))
    assert serial.sync_timeout_s > 100  # ~50 kB of reads at 9600 baud


def test_requests_overtake_the_reads_of_a_reread():
    spec = RouterSpec("ex", "extron_sis", ("video",), 100, 100)
    s = synced(spec, max_in_flight=2)
    s.receive_data(b"Qik\r\n", 2.0)  # a re-read of 100 outputs starts ...
    assert drain(s) == b"1%2%"
    s.route([Crosspoint(0, 50, 3)], "op")  # ... and a route goes before the other 98
    s.keepalive(3.0)
    s.receive_data(b"Out01 In01 Vid\r\n", 2.1)
    assert drain(s) == b"4*51%"
    s.receive_data(b"Out02 In01 Vid\r\n", 2.2)
    assert drain(s) == b"Q"
    assert tallies(s.receive_data(b"Out51 In04 Vid\r\n1.23\r\n", 2.3)) == [Crosspoint(0, 50, 3)]
    assert drain(s) == b"3%4%"
