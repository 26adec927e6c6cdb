"""The chaos network: one network namespace per node, made and removed by the harness.

Topology (``<tag>`` random; ``H`` and ``P`` two random 10.x.y.0/24 networks that nothing of
the root namespace overlaps)::

      root namespace: the harness (clients, proxies), the router emulators, etcd
        tch<tag><i>  H.(4i+1)/30  ----  H.(4i+2)/30  tcn<tag><i>   namespace tlc<n>-<tag>
                                                                     node n (the i-th)
      node n's peer link listens on P.(i+1), an address on the loopback of its namespace;
      in every other node's namespace P.(i+1) is a loopback address too, where the harness's
      proxy toward node n listens

* Each node has one veth pair to the root namespace: its WebSocket API (``H.(4i+2)``), its
  router connections (to a proxy of the harness on ``H.(4i+1)``) and etcd.
* **The peer link crosses the harness.** Node m dials node n at P.(n), the address node n
  listens on and advertises (so each end recognises the other as it would on a real LAN,
  and a reconnect is cut short when the other end connects first); in m's namespace that
  address belongs to a :class:`~tests.chaos.proxy.FaultProxy`, whose outgoing connection
  is made from a socket of n's namespace (a socket made by a thread that entered a
  namespace stays there). So every peer-link byte passes a proxy, where the nemesis cuts
  it loudly (a link down: connections reset, new ones refused), silently (one way or
  both), delays it, or loses it. There is no direct link between the namespaces.
* Every address is made here and disappears with the namespaces.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations

from tests.netspace import enter_netns, free_networks, run

class NetUnavailable(Exception):
    """The network cannot be made here (the reason is the message)."""


def why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


async def arun(*args: str, check: bool = True) -> str:
    """Run a command without blocking the event loop (the harness's proxies run on it)."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    if check and process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, list(args), out, err)
    return out.decode()


@dataclass
class ChaosNet:
    """The topology above for ``nodes``; :meth:`create` it, always :meth:`destroy` it."""

    nodes: tuple[str, ...]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    host_net: ipaddress.IPv4Network | None = None
    peer_net: ipaddress.IPv4Network | None = None
    _threads: dict[str, ThreadPoolExecutor] = field(default_factory=dict)
    _made: list[str] = field(default_factory=list)

    # -- names and addresses -------------------------------------------------------------
    def ns(self, node: str) -> str:
        return f"tlc{node}-{self.tag}"

    def _index(self, node: str) -> int:
        return self.nodes.index(node)

    def _host(self, last: int) -> str:
        assert self.host_net is not None
        return str(self.host_net.network_address + last)

    def host_end(self, node: str) -> str:
        """The root namespace's end of the node's link (the harness's proxies listen here)."""
        return self._host(4 * self._index(node) + 1)

    def node_address(self, node: str) -> str:
        """The node's address on its link to the root namespace (its WebSocket API)."""
        return self._host(4 * self._index(node) + 2)

    def pairs(self) -> list[tuple[str, str]]:
        return list(combinations(self.nodes, 2))

    def peer_address(self, node: str) -> str:
        """Where ``node``'s peer link listens (its loopback; in the other namespaces, the
        proxy toward it)."""
        assert self.peer_net is not None
        return str(self.peer_net.network_address + self._index(node) + 1)

    # -- building ------------------------------------------------------------------------
    def create(self) -> None:
        reason = why_unavailable()
        if reason:
            raise NetUnavailable(reason)
        networks = free_networks(2)
        if networks is None:
            raise NetUnavailable("no free 10.x.y.0/24 network left for the chaos network")
        self.host_net, self.peer_net = networks
        try:
            for node in self.nodes:
                ns = self.ns(node)
                run(["ip", "netns", "add", ns])
                self._made.append(ns)
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
                outside, inside = f"tch{self.tag}{self._index(node)}", \
                    f"tcn{self.tag}{self._index(node)}"
                run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside,
                      "netns", ns])
                run(["ip", "addr", "add", f"{self.host_end(node)}/30", "dev", outside])
                run(["ip", "link", "set", outside, "up"])
                run(["ip", "-n", ns, "addr", "add", f"{self.node_address(node)}/30", "dev",
                      inside])
                run(["ip", "-n", ns, "link", "set", inside, "up"])
            for node in self.nodes:  # every peer address, local in every namespace
                for other in self.nodes:
                    run(["ip", "-n", self.ns(node), "addr", "add",
                          f"{self.peer_address(other)}/32", "dev", "lo"])
        except subprocess.CalledProcessError as exc:
            self.destroy()
            raise NetUnavailable(f"cannot make the chaos network: {' '.join(exc.cmd)}: "
                                 f"{(exc.stderr or '').strip()}") from exc

    def destroy(self) -> None:
        """Delete everything (idempotent, never raises); any process left in one of our
        namespaces can only be one we started: it is killed."""
        for pool in self._threads.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self._threads.clear()
        for ns in self._made:
            for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for i, _ in enumerate(self.nodes):
            run(["ip", "link", "del", f"tch{self.tag}{i}"], check=False)
        while self._made:
            run(["ip", "netns", "del", self._made.pop()], check=False)

    # -- sockets inside a namespace ------------------------------------------------------
    def thread(self, node: str) -> ThreadPoolExecutor:
        if node not in self._threads:
            self._threads[node] = ThreadPoolExecutor(
                1, thread_name_prefix=f"netns-{node}", initializer=enter_netns,
                initargs=(self.ns(node),))
        return self._threads[node]

    def socket_factory(self, node: str):
        """An async callable making an (unconnected) TCP socket in ``node``'s namespace."""

        async def make() -> socket.socket:
            return await asyncio.get_running_loop().run_in_executor(self.thread(node),
                                                                    socket.socket)

        return make

    def prefix(self, node: str) -> list[str]:
        """The command prefix that runs a program in ``node``'s namespace (exec: signals
        reach the program itself)."""
        return ["ip", "netns", "exec", self.ns(node)]
