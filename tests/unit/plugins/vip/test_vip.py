"""The vip failover action: ARP frames, settings checks, the start-up refusal without
privilege, and the address added and removed on a real interface in a namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tieline.errors import TielineError
from tieline.plugin_manager import Plugins
from tieline.plugins.vip.action import VirtualIp, effective_capabilities
from tieline.plugins.vip.arp import announcement, parse, parse_mac
from tieline.settings.loader import load_settings

TIELINE = str(Path(sys.executable).with_name("tieline"))


def test_announcement_is_a_broadcast_arp_request_for_the_address_itself():
    mac = parse_mac("8e:d3:01:02:03:04")
    frame = announcement(mac, "10.0.0.100")
    assert len(frame) == 60  # padded to the Ethernet minimum
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
    assert parse(frame) == (1, mac, "10.0.0.100", "10.0.0.100")
    assert parse(frame[:30]) is None and parse(b"\0" * 60) is None
    with pytest.raises(ValueError):
        parse_mac("8e:d3:01")
    with pytest.raises(ValueError):
        announcement(b"\1\2", "10.0.0.100")


@pytest.mark.parametrize(("address", "words"), [
    ("10.0.0.100", "give the prefix length"),
    ("fd00::100/64", "only IPv4"),
    ("10.0.0.300/24", "expected an IPv4 address with its prefix length"),
])
def test_check_names_what_is_wrong(address, words):
    problems = VirtualIp.check({"address": address, "interface": "eth0"})
    assert len(problems) == 1 and problems[0][0] == "address" and words in problems[0][1]
    assert VirtualIp.check({"address": "10.0.0.100/24", "interface": "eth0"}) == []


def _settings(vip: dict) -> dict:
    return {
        "node": {"name": "a", "role": "main"},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"],
                     "sources": 4, "destinations": 4}],
        "apis": [{"type": "websocket", "listen": "127.0.0.1:0"}],
        "failover": {"strategy": "etcd", "endpoints": ["http://127.0.0.1:2379"],
                     "vip": vip},
    }


def test_vip_block_is_validated_beside_any_strategy(settings_dir):
    good = settings_dir({"tieline.json": _settings({"address": "10.0.0.100/24",
                                                    "interface": "lo"})}, "good")
    assert load_settings(good, Plugins()).failover["vip"]["interface"] == "lo"
    bad = settings_dir({"tieline.json": _settings({"address": "10.0.0.100",
                                                   "interface": "lo", "colour": 1})}, "bad")
    result = subprocess.run([TIELINE, "validate", "--settings", str(bad)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "$.failover.vip.colour" in result.stdout + result.stderr


def test_effective_capabilities_reads_capeff(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nCapEff:\t0000000000003000\n")
    assert effective_capabilities(str(status)) == 0x3000


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop a capability")
def test_node_without_cap_net_admin_refuses_to_start(settings_dir):
    folder = settings_dir({"tieline.json": _settings({"address": "10.0.0.100/24",
                                                      "interface": "lo"})})
    result = subprocess.run(
        ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
         TIELINE, "run", "--settings", str(folder)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "vip: this node could not claim 10.0.0.100/24 on lo when it becomes active: it " \
           "lacks CAP_NET_ADMIN" in result.stderr
    assert "Traceback" not in result.stderr


def test_preflight_names_a_missing_interface():
    if not effective_capabilities() >> 12 & 1:
        pytest.skip("needs CAP_NET_ADMIN")
    action = VirtualIp(None, {"address": "10.0.0.100/24", "interface": "nosuch0"})
    with pytest.raises(TielineError, match="interface 'nosuch0' not found"):
        action.preflight()


@pytest.fixture
def namespace():
    """A network namespace with a veth pair (vipa <-> vipb), deleted afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    name = f"tlvip-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for args in (["link", "add", "vipa", "type", "veth", "peer", "name", "vipb"],
                     ["link", "set", "vipa", "up"], ["link", "set", "vipb", "up"]):
            subprocess.run(["ip", "-n", name, *args], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_activate_adds_and_announces_deactivate_removes(namespace):
    """Run inside the namespace (a child process), so nothing touches the host."""
    script = """
import asyncio, json, socket, subprocess
from tieline.plugins.vip.action import VirtualIp
from tieline.plugins.vip.arp import parse

async def main():
    vip = VirtualIp(None, {"address": "10.250.0.100/24", "interface": "vipa",
                           "garp_repeat": 2, "garp_interval_ms": 20})
    vip.preflight()
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sniff.bind(("vipb", 0))
    sniff.setblocking(False)
    loop = asyncio.get_running_loop()
    await vip.deactivate()  # nothing to remove: no error
    await vip.activate()
    await vip.activate()  # already there: no error
    shown = subprocess.run(["ip", "-o", "addr", "show", "vipa"], capture_output=True,
                           text=True).stdout
    frames = []
    while len(frames) < 3:
        frame = await asyncio.wait_for(loop.sock_recv(sniff, 2048), 5)
        if parse(frame):
            frames.append(parse(frame))
    await vip.deactivate()
    after = subprocess.run(["ip", "-o", "addr", "show", "vipa"], capture_output=True,
                           text=True).stdout
    print(json.dumps({"shown": shown, "after": after,
                      "frames": [[f[0], f[2], f[3]] for f in frames]}))

asyncio.run(main())
"""
    result = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert "10.250.0.100/24" in out["shown"]
    assert "valid_lft 3sec" in out["shown"]  # the kernel drops it unless refreshed
    assert "10.250.0.100" not in out["after"]
    assert out["frames"][:3] == [[1, "10.250.0.100", "10.250.0.100"]] * 3
