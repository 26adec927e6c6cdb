"""Finding nodes over mDNS, for real, without a packet leaving this machine.

mDNS is multicast (224.0.0.251:5353). These tests keep it off every real network:

- on the loopback interface only: the advertiser and the browser are bound to 127.0.0.1
  (zeroconf ``interfaces=["127.0.0.1"]``; ``"discovery": {"interfaces": [...]}`` in the
  settings and ``tieline discover --interface``), so their multicast goes out on ``lo`` and nowhere else. Linux loops
  multicast back on ``lo`` even though ``lo`` lacks the MULTICAST flag; the fixture
  checks that it does here and skips (pointing to the namespace test) when it does not;
- between two network namespaces this test creates, joined by a veth pair (root and
  ``ip`` needed, else skipped): a node advertising on *every* interface, as in production,
  and ``tieline discover`` on every interface of the other namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tieline.ops.discovery import Advertiser, NodeAdvert, advertising, browse

from .helpers import running_node
from .test_cli import TIELINE, start, stop

LOOPBACK = ["127.0.0.1"]


def _main(name: str, listen: str, **discovery: Any) -> dict[str, Any]:
    return {
        "node": {"name": name},
        "routers": [{"id": "studio", "driver": "simulator", "levels": ["video"], "sources": 4,
                     "destinations": 4}],
        "apis": [{"type": "websocket", "listen": listen}],
        "discovery": discovery,
    }


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def loopback_multicast() -> None:
    """Skip unless a multicast datagram sent on lo (IP_MULTICAST_IF 127.0.0.1) comes back."""
    group = "239.255.84.76"  # administratively scoped; never leaves lo here anyway
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("0.0.0.0", 0))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
        rx.settimeout(2)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        tx.sendto(b"tieline probe", (group, rx.getsockname()[1]))
        try:
            assert rx.recv(64) == b"tieline probe"
        except (TimeoutError, OSError):
            pytest.skip("multicast is not looped back on lo in this sandbox; "
                        "test_discovery_between_network_namespaces covers discovery")


async def browse_until(predicate: Callable[[list[dict[str, Any]]], bool],
                       interfaces: list[str] | None = LOOPBACK) -> list[dict[str, Any]]:
    """Browse again and again until ``predicate(nodes)`` (a responder multicasts a record at
    most once a second, so a browse right after another may hear nothing)."""
    async with asyncio.timeout(30):
        while True:
            nodes = await browse(2.0, interfaces)
            if predicate(nodes):
                return nodes


def named(nodes: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((n for n in nodes if n["node"] == name), None)


async def test_advertise_update_browse_and_goodbye(loopback_multicast):
    name = _unique("disc")
    advert = NodeAdvert(node=name, role="main", state="active", epoch=3,
                        apis=("ws://0.0.0.0:8181", "videohub://127.0.0.1:9990"),
                        failover="127.0.0.1:7100")
    advertiser = Advertiser(LOOPBACK)
    await advertiser.start(advert)
    try:
        assert advertiser.name == f"{name}._tieline._tcp.local."
        nodes = await browse_until(lambda ns: named(ns, name) is not None)
        entry = named(nodes, name)
        assert entry == {
            "name": name, "node": name, "role": "main", "state": "active", "epoch": 3,
            # the wildcard listen address becomes the address the node answered from
            "apis": ["ws://127.0.0.1:8181", "videohub://127.0.0.1:9990"],
            "failover": "127.0.0.1:7100", "host": entry["host"], "addresses": ["127.0.0.1"],
            "port": 8181,
        }
        assert entry["host"].endswith(".local.")

        await advertiser.update(NodeAdvert(node=name, role="main", state="standby", epoch=4,
                                           apis=advert.apis))
        nodes = await browse_until(lambda ns: (named(ns, name) or {}).get("epoch") == 4)
        entry = named(nodes, name)
        assert (entry["state"], entry["failover"]) == ("standby", None)
    finally:
        await advertiser.close()
    assert named(await browse(2.0, LOOPBACK), name) is None  # gone: nobody answers for it


async def test_a_node_advertises_its_status_changes(loopback_multicast, settings_dir):
    name = _unique("status")
    async with running_node(settings_dir({"tieline.json": _main(name, "127.0.0.1:0")})) as node:
        async with advertising(node, LOOPBACK):
            entry = named(await browse_until(lambda ns: named(ns, name) is not None), name)
            assert entry["apis"] == [node.apis[0].describe()]
            assert entry["epoch"] == 0
            node.failover.update(epoch=9)  # what a failover strategy does
            await browse_until(lambda ns: (named(ns, name) or {}).get("epoch") == 9)


async def test_a_node_built_in_python_advertises_itself(loopback_multicast, settings_dir):
    """The node follows its own ``discovery`` settings, whoever starts it: no ``tieline
    run`` here; it says goodbye when it stops."""
    name = _unique("python")
    folder = settings_dir({"tieline.json": _main(name, "127.0.0.1:0", mdns=True,
                                                  interfaces=LOOPBACK)})
    async with running_node(folder) as node:
        entry = named(await browse_until(lambda ns: named(ns, name) is not None), name)
        assert entry["apis"] == [node.apis[0].describe()]
        assert (entry["role"], entry["state"]) == ("standalone", "active")
    assert named(await browse(2.0, LOOPBACK), name) is None


def discover(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    result = subprocess.run([*prefix, TIELINE, "discover", "--json", "--timeout", "2", *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["nodes"]


def discover_until(name: str, *args: str, netns: str | None = None) -> dict[str, Any]:
    for _ in range(15):
        entry = named(discover(*args, netns=netns), name)
        if entry is not None:
            return entry
    raise AssertionError(f"tieline discover never listed node '{name}'")


def test_run_advertises_and_discover_lists_it(loopback_multicast, settings_dir):
    name = _unique("run")
    folder = settings_dir({"tieline.json": _main(name, "127.0.0.1:0", mdns=True,
                                                  interfaces=["127.0.0.1"])})
    proc, banner = start(["--settings", str(folder)], dict(os.environ))
    try:
        url = banner.split(" serving ")[1].split()[0]
        entry = discover_until(name, "--interface", "127.0.0.1")
        assert entry["apis"] == [url]
        assert (entry["role"], entry["state"], entry["epoch"]) == ("standalone", "active", 0)
        assert entry["port"] == int(url.rsplit(":", 1)[1])

        for _ in range(15):  # the same, for people
            text = subprocess.run([TIELINE, "discover", "--interface", "127.0.0.1"],
                                  capture_output=True, text=True, timeout=30).stdout
            if f"{name}: " in text:
                break
        assert (f"{name}: Standalone is active (role standalone, state active, epoch 0)\n"
                f"  host ") in text
        assert f"  api {url}\n" in text
    finally:
        code, output = stop(proc)
    assert code == 0, output
    assert f"advertising node '{name}' over mDNS" in output
    assert named(discover("--interface", "127.0.0.1"), name) is None  # said goodbye


def test_bad_interfaces_are_refused(settings_dir):
    result = subprocess.run([TIELINE, "discover", "--interface", "eth0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "mDNS interface 'eth0' is not an IPv4 address" in result.stderr
    folder = settings_dir({"tieline.json": _main(_unique("bad"), "127.0.0.1:0", mdns=True,
                                                  interfaces=["127.0.0.1", "::1"])})
    result = subprocess.run([TIELINE, "run", "--settings", str(folder)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    assert "tieline.json:" in result.stderr
    assert "$.discovery.interfaces[1]: mDNS interface '::1' is not an IPv4 address" in (
        result.stderr), result.stderr


# -------------------------------------------------------------------------------------------
# Two hosts: network namespaces joined by a veth pair
# -------------------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str, str]]:
    """Namespaces (a, b) joined by a veth pair, 198.51.100.1 in a and .2 in b (TEST-NET-2,
    reachable from nowhere else); yields (a, b, a's address)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    tag = uuid.uuid4().hex[:6]
    a, b = f"tl-{tag}-a", f"tl-{tag}-b"
    created = []
    try:
        for ns in (a, b):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip("link", "add", f"tlv{tag}a", "type", "veth", "peer", "name", f"tlv{tag}b")
        _ip("link", "set", f"tlv{tag}a", "netns", a)
        _ip("link", "set", f"tlv{tag}b", "netns", b)
        for ns, end, address in ((a, "a", "198.51.100.1/24"), (b, "b", "198.51.100.2/24")):
            _ip("-n", ns, "addr", "add", address, "dev", f"tlv{tag}{end}")
            _ip("-n", ns, "link", "set", f"tlv{tag}{end}", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.strip()}")
    try:
        yield a, b, "198.51.100.1"
    finally:
        for ns in created:  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_discovery_between_network_namespaces(two_hosts, settings_dir):
    a, b, address = two_hosts
    name = _unique("ns")
    # every interface of namespace a
    folder = settings_dir({"tieline.json": _main(name, "0.0.0.0:0", mdns=True)})
    proc = subprocess.Popen(["ip", "netns", "exec", a, TIELINE, "run", "--settings",
                             str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        banner = proc.stdout.readline()
        assert " serving ws://0.0.0.0:" in banner, banner + proc.stderr.read()
        port = int(banner.split(" serving ")[1].split()[0].rsplit(":", 1)[1])
        entry = discover_until(name, netns=b)  # every interface of namespace b
        assert entry["apis"] == [f"ws://{address}:{port}"]
        assert entry["addresses"] == [address]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, out + err
