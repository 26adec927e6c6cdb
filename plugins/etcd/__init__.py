"""The etcd failover strategy: a leader lease in etcd elects one active node among any
number (see :mod:`.strategy`)."""

from tieline import hookimpl

from .strategy import EtcdStrategy


@hookimpl
def tieline_failover_strategies() -> list[type]:
    return [EtcdStrategy]
