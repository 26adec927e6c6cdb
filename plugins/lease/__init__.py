"""The lease failover strategy: main and backups over the authenticated peer link."""

from tieline import hookimpl

from .strategy import LeaseStrategy


@hookimpl
def tieline_failover_strategies() -> list[type]:
    return [LeaseStrategy]
