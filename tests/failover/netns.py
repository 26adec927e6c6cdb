"""Two hosts in network namespaces, for failover tests that cut the network between nodes.

Topology (``X`` is a random free octet, ``<tag>`` a random suffix, so parallel runs do not
clash)::

        namespace tl-a-<tag>                          namespace tl-b-<tag>
     node a                                                     node b
       tlp<tag>a 10.231.X.1/30  ===== peer link =====  10.231.X.2/30 tlp<tag>b
       tlr<tag>a 10.231.X.6/30                         10.231.X.10/30 tlr<tag>b
              |                                                |
       tlh<tag>a 10.231.X.5/30   root namespace (the test)  10.231.X.9/30 tlh<tag>b
                 emulator listens on 10.231.X.5

* The direct veth pair a <-> b carries the peer link and nothing else: cutting it is the
  partition.
* Each namespace has its own veth pair to the root namespace, on its own /30: the router
  connection and the WebSocket API traffic the test sends. Namespace b reaches the
  emulator's address (10.231.X.5, on the root end of a's pair) through its own pair (a
  host route via 10.231.X.9): the root namespace delivers it locally, nothing is forwarded.
* Every address is made here and disappears with the namespaces: nothing listens on, or
  talks to, any address outside this topology.

Two ways to cut the peer link:

* ``"down"``: both ends of the pair are set down. Senders get an error at once (no route);
  open connections break.
* ``"loss"``: both ends keep their link up but drop every packet they send (a ``netem loss
  100%`` qdisc, or where sch_netem is missing a ``tbf`` whose bucket is smaller than any
  packet, which drops them all). Nothing tells a sender: connections are half-open until
  keepalives give up, and connects hang until their timeout.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

NODES = ("a", "b")
SUBNET = "10.231"


class NetnsUnavailable(Exception):
    """Network namespaces cannot be made here (the reason is the message)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True,
                          timeout=30)


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)


def why_unavailable() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


def _free_octet() -> int:
    """An X such that no address of the root namespace is in 10.231.X.0/24."""
    used = ip("-4", "-o", "addr", "show").stdout
    octets = list(range(256))
    random.shuffle(octets)
    for x in octets:
        if f" {SUBNET}.{x}." not in used:
            return x
    raise NetnsUnavailable(f"no free {SUBNET}.X.0/24 in the root namespace")


@dataclass
class PartitionNet:
    """The topology above; make it with :func:`partition_net`."""

    tag: str
    octet: int
    namespaces: dict[str, str] = field(default_factory=dict)
    #: qdisc kind used for "loss" cuts once known ("netem" or "tbf")
    loss_qdisc: str | None = None

    def _addr(self, last: int) -> str:
        return f"{SUBNET}.{self.octet}.{last}"

    # -- addresses -----------------------------------------------------------------------
    def peer_address(self, node: str) -> str:
        """The node's end of the a <-> b pair (the peer link)."""
        return self._addr({"a": 1, "b": 2}[node])

    def api_address(self, node: str) -> str:
        """The node's end of its pair to the root namespace (API and router traffic)."""
        return self._addr({"a": 6, "b": 10}[node])

    def host_address(self, node: str) -> str:
        """The root namespace's end of the node's pair."""
        return self._addr({"a": 5, "b": 9}[node])

    @property
    def router_address(self) -> str:
        """Where the emulator listens (root namespace), reachable from both namespaces."""
        return self.host_address("a")

    def peer_dev(self, node: str) -> str:
        return f"tlp{self.tag}{node}"

    def netns_prefix(self, node: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[node]]

    # -- building ------------------------------------------------------------------------
    def create(self) -> None:
        for node in NODES:
            name = f"tl-{node}-{self.tag}"
            ip("netns", "add", name)
            self.namespaces[node] = name
            ip("-n", name, "link", "set", "lo", "up")
        a, b = self.namespaces["a"], self.namespaces["b"]
        # the peer link: a direct pair a <-> b
        ip("link", "add", self.peer_dev("a"), "netns", a, "type", "veth",
           "peer", "name", self.peer_dev("b"), "netns", b)
        for node in NODES:
            ns = self.namespaces[node]
            ip("-n", ns, "addr", "add", f"{self.peer_address(node)}/30", "dev",
               self.peer_dev(node))
            ip("-n", ns, "link", "set", self.peer_dev(node), "up")
            # the node's own pair to the root namespace
            inside, outside = f"tlr{self.tag}{node}", f"tlh{self.tag}{node}"
            ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
            ip("addr", "add", f"{self.host_address(node)}/30", "dev", outside)
            ip("link", "set", outside, "up")
            ip("-n", ns, "addr", "add", f"{self.api_address(node)}/30", "dev", inside)
            ip("-n", ns, "link", "set", inside, "up")
        # b reaches the emulator (on the root end of a's pair) through its own pair
        ip("-n", b, "route", "add", f"{self.router_address}/32", "via",
           self.host_address("b"), "dev", f"tlr{self.tag}b")

    def destroy(self) -> None:
        """Delete everything made (idempotent, never raises)."""
        for node in NODES:
            # deleting one end of a veth pair deletes both; the namespace's ends go with it
            ip("link", "del", f"tlh{self.tag}{node}", check=False)
        for node in list(self.namespaces):
            ip("netns", "del", self.namespaces.pop(node), check=False)

    # -- faults --------------------------------------------------------------------------
    def cut(self, mode: str) -> None:
        """Cut the peer link: ``"down"`` (links down) or ``"loss"`` (silent 100% loss)."""
        for node in NODES:
            ns, dev = self.namespaces[node], self.peer_dev(node)
            if mode == "down":
                ip("-n", ns, "link", "set", dev, "down")
            elif mode == "loss":
                self._drop_all(ns, dev)
            else:
                raise ValueError(mode)

    def heal(self, mode: str) -> None:
        for node in NODES:
            ns, dev = self.namespaces[node], self.peer_dev(node)
            if mode == "down":
                ip("-n", ns, "link", "set", dev, "up")
            else:
                _run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"])

    def _drop_all(self, ns: str, dev: str) -> None:
        tc = ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root"]
        if self.loss_qdisc in (None, "netem"):
            try:
                _run([*tc, "netem", "loss", "100%"])
                self.loss_qdisc = "netem"
                return
            except subprocess.CalledProcessError:
                if self.loss_qdisc == "netem":
                    raise
        # no sch_netem: a token bucket smaller than any packet drops every packet
        _run([*tc, "tbf", "rate", "1kbit", "burst", "1", "latency", "1ms"])
        self.loss_qdisc = "tbf"

    def loss_supported(self) -> str | None:
        """Why "loss" cuts cannot be made here, or None (tries a qdisc on a scratch pair)."""
        if shutil.which("tc") is None:
            return "the tc command (iproute2) is not installed"
        ns = self.namespaces["a"]
        dev = f"tlx{self.tag}"
        try:
            ip("-n", ns, "link", "add", dev, "type", "veth", "peer", "name", dev + "y")
            self._drop_all(ns, dev)
        except subprocess.CalledProcessError as exc:
            return f"cannot drop packets with tc (netem or tbf): {exc.stderr.strip()}"
        finally:
            ip("-n", ns, "link", "del", dev, check=False)
        return None


@contextmanager
def partition_net() -> Iterator[PartitionNet]:
    """Make the topology; always delete it afterwards.

    :raises NetnsUnavailable: when it cannot be made here (the caller skips).
    """
    reason = why_unavailable()
    if reason:
        raise NetnsUnavailable(reason)
    net = PartitionNet(tag=uuid.uuid4().hex[:6], octet=_free_octet())
    try:
        try:
            net.create()
        except subprocess.CalledProcessError as exc:
            raise NetnsUnavailable(
                f"cannot create network namespaces here: {' '.join(exc.cmd)}: "
                f"{(exc.stderr or '').strip()}") from exc
        yield net
    finally:
        net.destroy()
