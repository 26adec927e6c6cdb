"""The vip failover action: the active node holds a virtual IP (see :mod:`.action`)."""

from tieline import hookimpl

from .action import VirtualIp


@hookimpl
def tieline_failover_strategies() -> list[type]:
    return [VirtualIp]
