"""The peer sync failover strategy: every node active on the same routers."""

from tieline import hookimpl

from .strategy import PeerSyncStrategy


@hookimpl
def tieline_failover_strategies() -> list[type]:
    return [PeerSyncStrategy]
