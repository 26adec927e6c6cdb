"""Peer sync: two or more nodes, all active, like two controllers on one router.

Every node is connected to the routers and accepts routes; a route made through one node
appears on the others through the router's tally (the router is the truth; the nodes never
tell each other about routes). Settings have one writer, the main: it replicates the shared
settings files (users, salvos, labels) to the others, versioned, and a node that was away
catches up when it returns. On every other node settings are read-only ("settings are
read-only while the backup is active; the main is …").

There is no lease: a node that cannot reach its peers keeps working (nothing it does can
conflict with another node's, as the router arbitrates routes and settings have one
writer). A client may use any node; its endpoint list gives it another when one dies.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tieline import PeerLinkStrategy, State, peer_link_schema


class PeerSyncStrategy(PeerLinkStrategy):
    """``"failover": {"strategy": "peer_sync", …}``."""

    name = "peer_sync"
    settings_schema: ClassVar[dict[str, Any]] = peer_link_schema()

    async def started(self) -> None:
        if self.node.epochs.epoch == 0:
            self.node.epochs.raise_to(1)  # every peer active from the start: one epoch
        self.failover.update(state=State.ACTIVE, epoch=self.node.epochs.epoch)

    async def tick(self) -> None:
        if self.failover.status.epoch != self.node.epochs.epoch:
            self.failover.update(epoch=self.node.epochs.epoch)
