"""What the tests that build networks in namespaces share (tests/failover/lan.py, the chaos
harness's tests/chaos/net.py): free address space that overlaps nothing of the host, and a
thread moved into a namespace.

Every network is a random ``10.x.y.0/24`` that overlaps no address and no route of the root
namespace, so the tests never shadow, or send to, anything of the machine's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import random
import subprocess
from collections.abc import Sequence

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

#: route types ``ip route show table all`` may print before the destination
_ROUTE_TYPES = ("local", "broadcast", "unicast", "multicast", "anycast", "unreachable",
                "blackhole", "prohibit", "throw", "nat")


def run(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (``ip`` mostly), its output as text, bounded to 30 s."""
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30)


def host_networks() -> list[ipaddress.IPv4Network]:
    """Networks the root namespace has addresses in or routes to (the default excepted)."""
    found = []
    for line in run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        words = line.split()
        if "inet" in words:
            found.append(ipaddress.ip_interface(words[words.index("inet") + 1]).network)
    for line in run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
        words = line.split()
        if words and words[0] in _ROUTE_TYPES:
            words = words[1:]
        if words and words[0] != "default":
            with contextlib.suppress(ValueError):
                found.append(ipaddress.ip_network(words[0], strict=False))
    return found


def free_networks(count: int) -> list[ipaddress.IPv4Network] | None:
    """``count`` distinct random 10.x.y.0/24 networks that overlap nothing of the host, or
    None when 1,000 draws found too few."""
    used = host_networks()
    chosen: list[ipaddress.IPv4Network] = []
    for _ in range(1000):
        net = ipaddress.ip_network(f"10.{random.randint(16, 254)}.{random.randint(0, 255)}.0/24")
        if net not in chosen and not any(net.overlaps(u) for u in used):
            chosen.append(net)
            if len(chosen) == count:
                return chosen
    return None


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (setns(2)): a thread pool's
    initializer, so that sockets made in that thread belong to the namespace."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)
