"""Roles, the active/standby state, status text and the write guards that follow from them.

A node's **role** comes from settings (``standalone``, ``main``, ``backup``); its **state**
(``active`` or ``standby``) comes from the failover strategy's elector. A standalone node is
always active. The **epoch** only goes up; the failover strategies (their own issue) persist
and check it, and carry it in every peer message, client hello and status.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

from .errors import NodeStandby, ReadOnly
from .events import NodeStatusChanged


class Role(enum.StrEnum):
    STANDALONE = "standalone"
    MAIN = "main"
    BACKUP = "backup"


class State(enum.StrEnum):
    ACTIVE = "active"  #: takes writes
    STANDBY = "standby"  #: warm and read-only


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What a node says of itself in ``tieline status``, the API hello and status events.

    :param node: the node's name.
    :param role: from settings.
    :param state: from the elector.
    :param epoch: fencing number; only goes up.
    :param active: address of the active node, when this one is standby and knows it.
    :param main: address of the main, as a backup knows it.
    """

    node: str
    role: Role
    state: State
    epoch: int = 0
    active: str | None = None
    main: str | None = None

    @property
    def text(self) -> str:
        """The status line people see. A backup's reads exactly "Backup is active" or "Backup is idle"."""
        if self.role is Role.BACKUP:
            return "Backup is active" if self.state is State.ACTIVE else "Backup is idle"
        if self.role is Role.MAIN:
            return "Main is active" if self.state is State.ACTIVE else "Main is standby"
        return "Standalone is active"

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "role": str(self.role),
            "state": str(self.state),
            "status": self.text,
            "epoch": self.epoch,
            "active": self.active,
        }


class Failover:
    """Holds the node's status and enforces what it implies for writes.

    :param status: the initial status.
    :param publish: publishes events (the event bus's ``publish``).
    """

    def __init__(self, status: NodeStatus, publish: Callable[[object], None]) -> None:
        self.status = status
        self._publish = publish

    def update(self, **changes: object) -> None:
        """Change the status (state, epoch, active …) and announce it."""
        new = replace(self.status, **changes)
        if new != self.status:
            self.status = new
            self._publish(NodeStatusChanged(new))

    def require_active(self) -> None:
        """Raise :class:`NodeStandby` unless this node takes writes now."""
        if self.status.state is not State.ACTIVE:
            where = self.status.active or "unknown"
            raise NodeStandby(
                f"node '{self.status.node}' is standby; send requests to the active node "
                f"({where})",
                active=self.status.active,
            )

    def require_settings_writable(self) -> None:
        """Raise :class:`ReadOnly` when settings may not be written here now."""
        self.require_active()
        if self.status.role is Role.BACKUP:
            raise ReadOnly(
                "settings are read-only while the backup is active; the main is "
                f"{self.status.main or 'unknown'}"
            )
