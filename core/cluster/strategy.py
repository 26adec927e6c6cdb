"""What every failover strategy over the peer link shares: heartbeats, the view of each
peer, epochs seen, and settings replication from the main.

A strategy subclasses :class:`PeerLinkStrategy` and implements :meth:`tick` (called every
``heartbeat_ms``, before this node's heartbeat goes out) and, for its own messages,
:meth:`handle`.

**Fresh evidence: probes and echoes.** A message read now may have been written long ago:
after a pause (SIGSTOP, a hung host) a node first reads what waited in its sockets, and
the time it *reads* a heartbeat says nothing of when its sender *wrote* it. So a node that
needs evidence produced after some instant (after its own stall) calls
:meth:`PeerLinkStrategy.start_probe`: its heartbeats then carry a fresh random ``"probe"``,
and every node echoes, in each heartbeat it sends to a peer, the last probe it received
from that peer (``"echo"``). A heartbeat that echoes the current probe was written after
the probe was sent: :meth:`PeerLinkStrategy.answered` tells whether a peer gave one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from ..errors import ReadOnly
from ..events import SettingsChanged
from ..failover import PEER_HEARTBEAT_MS, Role, Strategy
from .peerlink import PeerLink, load_cluster_key
from .replication import SettingsReplicator
from ..settings.loader import change_failover_peers
from ..transports import parse_hostport

log = logging.getLogger(__name__)


#: what ``Peer.problem`` means, as ``tieline status`` shows it
PEER_PROBLEMS = {
    "network": "cannot connect",
    "key": "key dispute: it refuses this node's cluster key, or this node its",
    "protocol": "does not speak the peer link protocol",
    "config": "misconfigured (see the log)",
}


@dataclass
class PeerView:
    """What a node knows of one peer from its last heartbeat."""

    address: str
    name: str = ""
    role: str = ""
    state: str = ""
    epoch: int = 0
    api: tuple[str, ...] = ()
    routers_online: bool = False
    settings_version: int = 0
    heard: float = float("-inf")  #: monotonic time of the last heartbeat
    #: the last probe this peer sent us (echoed in our heartbeats to it)
    probe: str | None = None
    #: the last probe of ours this peer echoed
    echo: str | None = None

    @property
    def url(self) -> str:
        """How clients reach it (its first advertised API URL, else its peer address)."""
        return self.api[0] if self.api else self.address


class PeerLinkStrategy(Strategy):
    """Base of strategies over the peer link (see the module docstring)."""

    def __init__(self, node: Any, options: dict[str, Any]) -> None:
        super().__init__(node, options)
        self.heartbeat_s = options.get("heartbeat_ms", PEER_HEARTBEAT_MS) / 1000
        self.role = node.settings.role
        self.clock = node.failover.clock
        self.peers: dict[str, PeerView] = {a: PeerView(a) for a in options["peers"]}
        self.link: PeerLink | None = None
        self.replicator = SettingsReplicator(node)
        #: the probe our heartbeats carry while we need fresh evidence (see the module)
        self.probe: str | None = None
        #: SHA-256 fingerprint of the cluster key, once loaded
        self.key_fingerprint: str | None = None

    # -- for subclasses ------------------------------------------------------------------
    async def tick(self) -> None:
        """Decide the node's state; called every heartbeat, before the heartbeat is sent."""

    async def handle(self, view: PeerView, message: dict[str, Any]) -> dict[str, Any] | None:
        """A message of the strategy's own from a configured peer; a dict is the reply."""
        return None

    def heartbeat_epoch(self) -> int:
        """The epoch this node announces."""
        return self.node.epochs.epoch

    def is_writer(self) -> bool:
        """Whether this node writes the shared settings (the main)."""
        return self.role is Role.MAIN

    def max_epoch(self) -> int:
        return max([self.node.epochs.epoch, *(p.epoch for p in self.peers.values())])

    def heard(self, peer: PeerView, within: float) -> bool:
        return self.clock() - peer.heard <= within

    def main_url(self) -> str | None:
        return next((p.url for p in self.peers.values() if p.role == "main"), None)

    def heartbeat(self) -> dict[str, Any]:
        """This node's heartbeat. Its ``state`` is the elector's (an active node whose fence
        has expired still holds its lease, and says so to its peers)."""
        status = self.failover.status
        message = {
            "type": "heartbeat", "role": str(status.role), "state": str(status.state),
            "epoch": self.heartbeat_epoch(), "api": self.node.api_urls(),
            "routers_online": self.node.routers_online(),
            "settings_version": self.replicator.version,
        }
        if self.probe is not None:
            message["probe"] = self.probe
        return message

    def send_heartbeats(self) -> None:
        """Send the heartbeat to every peer, each with the echo of that peer's last probe."""
        if self.link is None:
            return
        message = self.heartbeat()
        message.setdefault("epoch", self.node.epochs.epoch)
        for view in self.peers.values():
            self.link.send(view.address, {**message, "echo": view.probe}
                           if view.probe is not None else message)

    def start_probe(self) -> None:
        """Ask for fresh evidence: from now on our heartbeats carry a new probe, and only a
        heartbeat that echoes it counts as :meth:`answered`."""
        self.probe = secrets.token_hex(8)

    def end_probe(self) -> None:
        self.probe = None

    def answered(self, peer: PeerView) -> bool:
        """Whether ``peer`` sent a heartbeat written after it received the current probe."""
        return self.probe is not None and peer.echo == self.probe

    def peers_status(self) -> list[dict[str, Any]]:
        link_peers = self.link.peers if self.link is not None else {}
        out = []
        for view in self.peers.values():
            link_peer = link_peers.get(view.address)
            problem = link_peer.problem if link_peer is not None else None
            out.append({
                "address": view.address, "url": view.api[0] if view.api else None,
                "node": view.name or None,
                "role": view.role or None, "state": view.state or None,
                "epoch": view.epoch,
                "connected": bool(link_peer is not None and link_peer.connected),
                "heard_ms_ago": (None if view.heard == float("-inf")
                                 else round((self.clock() - view.heard) * 1000)),
                "problem": PEER_PROBLEMS.get(problem, problem) if problem else None,
            })
        return out

    def send(self, address: str, message: dict[str, Any]) -> None:
        if self.link is not None:
            message.setdefault("epoch", self.node.epochs.epoch)
            self.link.send(address, message)

    def broadcast(self, message: dict[str, Any]) -> None:
        if self.link is not None:
            message.setdefault("epoch", self.node.epochs.epoch)
            self.link.broadcast(message)

    # -- the peer link -------------------------------------------------------------------
    async def _on_message(self, peer: Any, message: dict[str, Any]) -> dict[str, Any] | None:
        view = self.peers.get(peer.address)
        if view is None:  # a node we do not list: nothing it says counts
            return None
        mtype = message.get("type")
        epoch = message.get("epoch")
        if mtype == "heartbeat":
            view.name = str(message.get("node", view.name))
            view.role = str(message.get("role", ""))
            view.state = str(message.get("state", ""))
            view.epoch = epoch if isinstance(epoch, int) else view.epoch
            view.api = tuple(message.get("api") or ())
            view.routers_online = bool(message.get("routers_online"))
            view.settings_version = int(message.get("settings_version") or 0)
            view.heard = self.clock()
            probe, echo = message.get("probe"), message.get("echo")
            view.probe = probe if isinstance(probe, str) else None
            view.echo = echo if isinstance(echo, str) else None
            self.node.epochs.raise_to(view.epoch)  # never go back below an epoch seen
            if view.role == "main" and self.role is not Role.MAIN \
                    and self.failover.status.main != view.url:
                self.failover.update(main=view.url)
            if self.is_writer() and view.settings_version < self.replicator.version:
                self.send(view.address, self.replicator.snapshot())  # it catches up
            return None
        if mtype == "settings":
            if isinstance(epoch, int) and epoch < self.max_epoch():
                log.warning("refusing settings from %s: epoch %d is lower than %d",
                            view.address, epoch, self.max_epoch())
            elif not self.is_writer() and view.role == "main":
                self.replicator.apply(message)
            return None
        return await self.handle(view, message)

    async def run(self) -> None:
        folder = self.node.settings.folder
        key = load_cluster_key(folder / self.options.get("key", "cluster.key"))
        self.key_fingerprint = key.get_fingerprint("sha256")
        self.link = PeerLink(
            node=self.node.settings.node_name, listen=parse_hostport(self.options["listen"]),
            peers=[parse_hostport(a) for a in self.options["peers"]], key=key,
            on_message=self._on_message, heartbeat_timeout_s=self.link_timeout_s(),
            advertise=self.options["listen"],
        )
        await self.link.start()
        self.failover.update(epoch=self.node.epochs.epoch)
        changes = self.node.bus.subscribe(f"{self.name} strategy settings", maxsize=1000)
        watcher = asyncio.create_task(self._watch_settings(changes))
        try:
            await self.started()
            while True:
                await self.tick()
                self.send_heartbeats()
                await asyncio.sleep(self.next_tick_s())
        finally:
            watcher.cancel()
            changes.close()
            await asyncio.gather(watcher, return_exceptions=True)

    async def started(self) -> None:
        """Called once the peer link listens, before the first tick."""

    def next_tick_s(self) -> float:
        """Seconds until the next tick: a heartbeat, or sooner when a decision falls due
        before it (a standby's lease expiring), so that it is taken on time, not up to a
        heartbeat late."""
        return self.heartbeat_s

    def link_timeout_s(self) -> float:
        """How long a silent peer link connection lives (SSH keepalives)."""
        return max(1.0, 10 * self.heartbeat_s)

    async def close(self) -> None:
        if self.link is not None:
            await self.link.close()

    async def change_member(self, action: str, address: str) -> dict[str, Any]:
        """Add or remove a peer (``tieline backup add/remove``): the main's own peer list
        changes, written to its tieline.json and applied to the peer link at once. A new
        node lists the main in its own ``peers``; it receives the shared settings as soon
        as it connects."""
        if self.role is not Role.MAIN:
            raise ReadOnly("only the main changes the cluster's members; the main is "
                           f"{self.main_url() or 'unknown'}")
        self.failover.require_settings_writable()
        peers = list(self.peers)
        if action == "add" and address not in peers:
            peers.append(address)
        elif action == "remove" and address in peers:
            peers.remove(address)
        change_failover_peers(self.node.settings.folder, peers)
        self.peers = {a: self.peers.get(a) or PeerView(a) for a in peers}
        if self.link is not None:
            self.link.set_peers([parse_hostport(a) for a in peers])
        return {"peers": peers}

    async def _watch_settings(self, changes: Any) -> None:
        async for event in changes:
            if isinstance(event, SettingsChanged) and self.is_writer():
                self.broadcast(self.replicator.bump())
