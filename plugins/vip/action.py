"""The virtual IP: the active node holds one address that clients use, whichever node it is.

On becoming active the node adds the address to the interface (netlink, through pyroute2)
and announces it with gratuitous ARP (one at once, then ``garp_repeat`` more,
``garp_interval_ms`` apart, as keepalived does); on demotion, at stop, and at start it
removes it. The address carries a kernel lifetime (``lifetime_s``) that the node refreshes
while it may act: a node killed with SIGKILL, frozen, or fenced loses it by itself, so its
kernel stops answering ARP for it. It combines with any elector:
``"failover": {"strategy": "etcd", …, "vip": {"address": "10.0.0.100/24",
"interface": "eth0"}}``.

It needs CAP_NET_ADMIN (addresses) and CAP_NET_RAW (ARP frames): a node without them
refuses to start, saying so, instead of failing when it should take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
from typing import Any, ClassVar

from tieline import FailoverAction, TielineError

from .arp import announcement

log = logging.getLogger(__name__)

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13


def effective_capabilities(status_file: str = "/proc/self/status") -> int:
    """This process's effective capability bits (CapEff)."""
    with open(status_file, encoding="ascii") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


class VirtualIp(FailoverAction):
    """See the module docstring."""

    name: ClassVar[str] = "vip"
    capabilities: ClassVar[dict[str, str]] = {
        "CAP_NET_ADMIN": "adding and removing the virtual IP",
        "CAP_NET_RAW": "sending gratuitous ARP frames",
    }
    settings_schema: ClassVar[dict[str, Any]] = {
        "properties": {
            "address": {"type": "string", "minLength": 1,
                        "description": "The virtual IPv4 address with its prefix length, "
                                       "e.g. 10.0.0.100/24."},
            "interface": {"type": "string", "minLength": 1, "maxLength": 15,
                          "description": "The network interface that carries it (eth0)."},
            "garp_repeat": {"type": "integer", "minimum": 0, "maximum": 20, "default": 2,
                            "description": "Gratuitous ARPs sent after the first one."},
            "garp_interval_ms": {"type": "integer", "minimum": 10, "maximum": 60000,
                                 "default": 200,
                                 "description": "Pause between gratuitous ARPs."},
            "lifetime_s": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 3,
                           "description": "The kernel removes the address this long after "
                                          "the node last refreshed it, so that a node that "
                                          "died or froze does not keep it."},
        },
        "required": ["address", "interface"],
    }

    @classmethod
    def check(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        try:
            interface = ipaddress.ip_interface(options["address"])
        except ValueError:
            return [("address", f"expected an IPv4 address with its prefix length, e.g. "
                                f"10.0.0.100/24; got {options['address']!r}")]
        if interface.version != 4:
            return [("address", "only IPv4 virtual addresses are supported for now")]
        if "/" not in options["address"]:
            return [("address", "give the prefix length of the interface's network, e.g. "
                                f"{options['address']}/24")]
        return []

    def __init__(self, node: Any, options: dict[str, Any]) -> None:
        super().__init__(node, options)
        network = ipaddress.ip_interface(options["address"])
        self.address = str(network.ip)
        self.prefixlen = network.network.prefixlen
        self.interface = options["interface"]
        self.garp_repeat = int(options.get("garp_repeat", 2))
        self.garp_interval_s = options.get("garp_interval_ms", 200) / 1000
        self.lifetime_s = int(options.get("lifetime_s", 3))
        self._announcer: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return f"{self.address}/{self.prefixlen} on {self.interface}"

    # -- checks at start ---------------------------------------------------------------
    def preflight(self) -> None:
        caps = effective_capabilities()
        missing = [name for bit, name in ((CAP_NET_ADMIN, "CAP_NET_ADMIN"),
                                          (CAP_NET_RAW, "CAP_NET_RAW"))
                   if not caps >> bit & 1]
        if missing:
            raise TielineError(
                f"vip: this node could not claim {self.describe()} when it becomes active: "
                f"it lacks {' and '.join(missing)}. Run tieline as root, or give it the "
                "capabilities (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW; "
                "otherwise setcap cap_net_admin,cap_net_raw+ep on the Python binary)")
        try:
            socket.if_nametoindex(self.interface)
        except OSError:
            raise TielineError(
                f"vip: interface '{self.interface}' not found on this machine; "
                "check failover.vip.interface (`ip link` lists them)") from None

    # -- transitions -----------------------------------------------------------------------
    async def activate(self) -> None:
        await self._netlink("replace", lifetime=self.lifetime_s)
        log.warning("virtual IP %s claimed", self.describe())
        self._stop_tasks()
        self._announcer = asyncio.create_task(self._announce(), name="vip announce")
        self._refresher = asyncio.create_task(self._refresh(), name="vip refresh")

    async def deactivate(self) -> None:
        self._stop_tasks()
        if await self._netlink("del"):
            log.warning("virtual IP %s released", self.describe())

    def _stop_tasks(self) -> None:
        for task in (self._announcer, self._refresher):
            if task is not None:
                task.cancel()
        self._announcer = self._refresher = None

    def _fenced(self) -> bool:
        """Whether the node may not act now (its lease was not renewed in time)."""
        failover = getattr(self.node, "failover", None)
        fence = getattr(failover, "fence_until", None)
        return fence is not None and failover.clock() > fence

    async def _refresh(self) -> None:
        """Renew the address's lifetime while the node may act; a node that stops acting
        (fenced, frozen, killed) loses the address within ``lifetime_s``."""
        while True:
            await asyncio.sleep(self.lifetime_s / 3)
            if self._fenced():
                continue
            try:
                await self._netlink("replace", lifetime=self.lifetime_s)
            except TielineError as exc:
                log.error("%s", exc)

    async def _netlink(self, command: str, *, lifetime: int | None = None) -> bool:
        """Add (``replace``) or delete the address; whether it changed anything."""
        from pyroute2 import AsyncIPRoute, NetlinkError

        async with AsyncIPRoute() as ipr:
            links = await ipr.link_lookup(ifname=self.interface)
            if not links:
                raise TielineError(f"vip: interface '{self.interface}' is gone")
            extra = {} if lifetime is None else {"valid_lft": lifetime,
                                                 "preferred_lft": lifetime}
            try:
                await ipr.addr(command, index=links[0], address=self.address,
                               prefixlen=self.prefixlen, **extra)
            except NetlinkError as exc:
                if (command, exc.code) in (("add", errno.EEXIST),
                                           ("del", errno.EADDRNOTAVAIL)):
                    return False  # already as wanted
                raise TielineError(f"vip: cannot {command} {self.describe()}: {exc}") from exc
        return True

    async def _announce(self) -> None:
        """Gratuitous ARP now, then ``garp_repeat`` more times."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sock.bind((self.interface, 0))  # send only: protocol 0 binds at once
            mac = sock.getsockname()[4][:6]
            frame = announcement(mac, self.address)
            for n in range(self.garp_repeat + 1):
                if n:
                    await asyncio.sleep(self.garp_interval_s)
                try:
                    sock.send(frame)
                except OSError as exc:
                    log.warning("vip: gratuitous ARP on %s failed: %s", self.interface, exc)
        finally:
            # closing a packet socket waits for the kernel (about 10 ms): not on the way in
            with contextlib.suppress(OSError):
                await asyncio.to_thread(sock.close)
