"""A small LAN of network namespaces: three node machines, a client, and a switch that also
hosts the router emulator and etcd. For the etcd + virtual IP failover tests (issue 6).

Topology (``<tag>`` is random, so parallel runs do not clash; ``L`` and ``E`` are two random
10.x.y.0/24 networks that no address or route of the root namespace overlaps)::

                       namespace tl6sw-<tag>  ("sw", the switch)
        br0  L.254  the LAN: router emulator, clients, the nodes' API and the VIP
        br1  E.254  a separate network that carries etcd only (etcd listens here)
          |  ports a0 b0 c0 cl0 on br0, a1 b1 c1 on br1
          |
   tl6a-<tag>  eth0 L.1  eth1 E.1      node a
   tl6b-<tag>  eth0 L.2  eth1 E.2      node b
   tl6c-<tag>  eth0 L.3  eth1 E.3      node c
   tl6cl-<tag> eth0 L.50               a client (control panel)
   the virtual IP: L.100 (claimed by the active node on its eth0)

* Every interface is made inside the namespaces (``ip -n``): no name or address ever
  appears in the root namespace, which has no link to any of them. Nothing here can listen
  on, or send to, an address outside these namespaces: no namespace has a default route,
  the client has no route to the etcd network, and the switch does not forward.
* The test process itself reaches into the LAN through :meth:`Lan.open_connection`: a socket
  made by a thread that entered the namespace (a socket stays in the namespace it was made
  in), so status polls and emulator reads come from inside, e.g. from the client machine.
* Faults on a node's etcd link (``eth1``): ``"down"`` (the link set down: senders get
  errors at once) or ``"loss"`` (both ends keep their link but drop every packet they send:
  a silent, half-open cut; ``netem loss 100%``, or where sch_netem is missing a ``tbf``
  whose bucket is smaller than any packet).

:func:`lan` makes it and always deletes it (namespaces, interfaces, threads, and as a last
resort any process still running inside one of its namespaces: they can only be ours).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.netspace import enter_netns, free_networks, run

from .cluster import wait_port
from .netns import why_unavailable

SWITCH = "sw"
CLIENT = "cl"
NODES = ("a", "b", "c")

#: the last octet of each machine's address on the LAN (and on the etcd network)
HOSTS = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, CLIENT: 50, SWITCH: 254}
VIP_HOST = 100


class LanUnavailable(Exception):
    """The LAN cannot be made here (the reason is the message)."""


@dataclass
class Lan:
    """The topology above; make it with :func:`lan`."""

    tag: str
    lan_net: ipaddress.IPv4Network
    etcd_net: ipaddress.IPv4Network
    nodes: tuple[str, ...] = NODES
    namespaces: dict[str, str] = field(default_factory=dict)
    #: qdisc kind used for "loss" cuts once known ("netem" or "tbf")
    loss_qdisc: str | None = None
    _threads: dict[str, ThreadPoolExecutor] = field(default_factory=dict)

    # -- names and addresses -----------------------------------------------------------
    def ns(self, machine: str) -> str:
        """The namespace of ``machine`` ("sw", "cl", or a node name)."""
        return self.namespaces[machine]

    def lan_address(self, machine: str) -> str:
        """``machine``'s address on the LAN (br0): the switch's is the router's."""
        return str(self.lan_net.network_address + HOSTS[machine])

    def etcd_address(self, machine: str) -> str:
        """``machine``'s address on the etcd network (br1): the switch's is etcd's."""
        return str(self.etcd_net.network_address + HOSTS[machine])

    @property
    def vip(self) -> str:
        return str(self.lan_net.network_address + VIP_HOST)

    @property
    def vip_cidr(self) -> str:
        return f"{self.vip}/{self.lan_net.prefixlen}"

    @property
    def router_address(self) -> str:
        return self.lan_address(SWITCH)

    @property
    def etcd_host(self) -> str:
        return self.etcd_address(SWITCH)

    def prefix(self, machine: str) -> list[str]:
        """The command prefix that runs a program on ``machine``."""
        return ["ip", "netns", "exec", self.ns(machine)]

    # -- building ----------------------------------------------------------------------
    def create(self) -> None:
        machines = [SWITCH, *self.nodes, CLIENT]
        for machine in machines:
            name = f"tl6{machine}-{self.tag}"
            run(["ip", "netns", "add", name])
            self.namespaces[machine] = name
            self.ip(machine, "link", "set", "lo", "up")
        plen = self.lan_net.prefixlen
        for bridge, address in (("br0", self.lan_address(SWITCH)),
                                ("br1", self.etcd_address(SWITCH))):
            self.ip(SWITCH, "link", "add", bridge, "type", "bridge")
            self.ip(SWITCH, "addr", "add", f"{address}/{plen}", "dev", bridge)
            self.ip(SWITCH, "link", "set", bridge, "up")
        for machine in [*self.nodes, CLIENT]:
            self._port(machine, "eth0", f"{machine}0", "br0", self.lan_address(machine))
            if machine != CLIENT:
                self._port(machine, "eth1", f"{machine}1", "br1", self.etcd_address(machine))

    def _port(self, machine: str, inside: str, outside: str, bridge: str,
              address: str) -> None:
        """A veth pair: ``inside`` in the machine's namespace, ``outside`` on the bridge."""
        self.ip(SWITCH, "link", "add", outside, "type", "veth", "peer", "name", inside,
                "netns", self.ns(machine))
        self.ip(SWITCH, "link", "set", outside, "master", bridge)
        self.ip(SWITCH, "link", "set", outside, "up")
        self.ip(machine, "addr", "add", f"{address}/{self.lan_net.prefixlen}", "dev", inside)
        self.ip(machine, "link", "set", inside, "up")

    def destroy(self) -> None:
        """Delete everything made (idempotent, never raises)."""
        for pool in self._threads.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._threads.clear()
        for machine, name in self.namespaces.items():
            # a process still in one of our namespaces can only be one we started
            pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for machine in list(self.namespaces):
            # the namespace's interfaces (and the other ends of its pairs) go with it
            run(["ip", "netns", "del", self.namespaces.pop(machine)], check=False)

    # -- commands ----------------------------------------------------------------------
    def ip(self, machine: str, *args: str, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
        """``ip -n <machine's namespace> ARGS``."""
        return run(["ip", "-n", self.ns(machine), *args], check=check)

    def run(self, machine: str, *args: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        """Run a command on ``machine`` and wait for it."""
        return run([*self.prefix(machine), *args], check=check)

    def addresses(self, machine: str, dev: str = "eth0") -> list[str]:
        """The IPv4 addresses (without prefix length) on ``machine``'s ``dev``."""
        out = self.ip(machine, "-4", "-o", "addr", "show", "dev", dev).stdout
        return [line.split()[3].split("/")[0] for line in out.splitlines()
                if len(line.split()) > 3]

    def holds_vip(self, machine: str) -> bool:
        return self.vip in self.addresses(machine)

    def set_link(self, machine: str, dev: str, up: bool) -> None:
        self.ip(machine, "link", "set", dev, "up" if up else "down")

    # -- faults on a node's etcd link --------------------------------------------------
    def cut_etcd(self, node: str, mode: str = "down") -> None:
        """Cut ``node`` from etcd: its ``eth1`` set down, or silent 100% loss both ways."""
        if mode == "down":
            self.set_link(node, "eth1", False)
        elif mode == "loss":
            self._drop_all(node, "eth1")
            self._drop_all(SWITCH, f"{node}1")
        else:
            raise ValueError(mode)

    def heal_etcd(self, node: str, mode: str = "down") -> None:
        if mode == "down":
            self.set_link(node, "eth1", True)
        else:
            self.run(node, "tc", "qdisc", "del", "dev", "eth1", "root")
            self.run(SWITCH, "tc", "qdisc", "del", "dev", f"{node}1", "root")

    def _drop_all(self, machine: str, dev: str) -> None:
        tc = ["tc", "qdisc", "add", "dev", dev, "root"]
        if self.loss_qdisc in (None, "netem"):
            try:
                self.run(machine, *tc, "netem", "loss", "100%")
                self.loss_qdisc = "netem"
                return
            except subprocess.CalledProcessError:
                if self.loss_qdisc == "netem":
                    raise
        # no sch_netem: a token bucket smaller than any packet drops every packet
        self.run(machine, *tc, "tbf", "rate", "1kbit", "burst", "1", "latency", "1ms")
        self.loss_qdisc = "tbf"

    def loss_unsupported(self) -> str | None:
        """Why "loss" cuts cannot be made here, or None."""
        if shutil.which("tc") is None:
            return "the tc command (iproute2) is not installed"
        try:
            self.ip(CLIENT, "link", "add", "lx0", "type", "veth", "peer", "name", "lx1")
            self._drop_all(CLIENT, "lx0")
        except subprocess.CalledProcessError as exc:
            return f"cannot drop packets with tc (netem or tbf): {exc.stderr.strip()}"
        finally:
            self.ip(CLIENT, "link", "del", "lx0", check=False)
        return None

    # -- reaching into the LAN from the test process -----------------------------------
    def thread(self, machine: str) -> ThreadPoolExecutor:
        """A worker thread living in ``machine``'s namespace (sockets it makes stay there;
        processes it starts are born there)."""
        if machine not in self._threads:
            self._threads[machine] = ThreadPoolExecutor(
                1, thread_name_prefix=f"netns-{machine}", initializer=enter_netns,
                initargs=(self.ns(machine),))
        return self._threads[machine]

    def wait_port(self, machine: str, host: str, port: int, timeout: float = 20.0) -> None:
        """Wait until ``host:port`` accepts connections, as seen from ``machine``."""
        self.thread(machine).submit(wait_port, port, timeout, host).result()

    async def socket(self, machine: str, host: str, port: int,
                     timeout: float = 2.0) -> socket.socket:
        """A non-blocking TCP socket, made in ``machine``'s namespace and connected."""
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(self.thread(machine), socket.socket)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def open_connection(self, machine: str, host: str, port: int, timeout: float = 2.0
                              ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """``asyncio.open_connection`` from ``machine``."""
        return await asyncio.open_connection(sock=await self.socket(machine, host, port,
                                                                    timeout))


@contextmanager
def lan(nodes: Sequence[str] = NODES) -> Iterator[Lan]:
    """Make the LAN; always delete it afterwards.

    :raises LanUnavailable: when it cannot be made here (the caller skips).
    """
    reason = why_unavailable()
    if reason:
        raise LanUnavailable(reason)
    networks = free_networks(2)
    if networks is None:
        raise LanUnavailable("no free 10.x.y.0/24 network left for the test LAN")
    lan_net, etcd_net = networks
    made = Lan(tag=uuid.uuid4().hex[:6], lan_net=lan_net, etcd_net=etcd_net,
               nodes=tuple(nodes))
    try:
        try:
            made.create()
        except subprocess.CalledProcessError as exc:
            raise LanUnavailable(
                f"cannot create network namespaces here: {' '.join(exc.cmd)}: "
                f"{(exc.stderr or '').strip()}") from exc
        yield made
    finally:
        made.destroy()
