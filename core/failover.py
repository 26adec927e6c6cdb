"""Roles, the active/standby state, the epoch, fencing, and the failover strategy interface.

A node's **role** comes from settings (``standalone``, ``main``, ``backup``); its **state**
(``active`` or ``standby``) comes from the failover strategy. A standalone node is always
active.

The **epoch** is a fencing number that only goes up across a cluster: a node that becomes
active takes a new epoch (one above every epoch it has seen) and persists it *before* it
acts (:class:`EpochStore`); it is carried in every peer message, client hello and status,
and a receiver refuses anything from a lower epoch than it has seen.

**Fencing by time.** An active node may act (send commands to routers) only until its
*fence* (``Failover.fence_until``, monotonic clock). The strategy moves the fence forward
on every heartbeat tick while it is sure it still holds the active role; a node whose tick
did not run in time (it was paused: SIGSTOP, a hung host, a VM migration) finds its fence in
the past and refuses every request until its strategy has revalidated. A holder stops
acting at its renew deadline.

**Status never claims more than the node would do.** :attr:`Failover.status` is what the
elector decided (the lease it holds); :attr:`Failover.effective` is what the node says of
itself to people and clients (``tieline status``, the API hello, status events): an active
node whose fence is in the past says ``standby`` there, from the very first instant after a
pause, even before its strategy has run again. :meth:`Failover.refresh` announces a change
of the effective status (strategies call it on every tick).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .node import Node

from .errors import NodeStandby, ReadOnly, Refused, TielineError
from .events import NodeStatusChanged
from .settings.jsonfile import JsonFileError, load_json, write_json_atomic

_log = logging.getLogger(__name__)


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
        return status_text(self.role, self.state)

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "role": str(self.role),
            "state": str(self.state),
            "status": self.text,
            "epoch": self.epoch,
            "active": self.active,
        }


def status_text(role: str, state: str) -> str:
    """The status line of a node with ``role`` in ``state``: "Main is active", "Main is
    standby", "Backup is active", "Backup is idle", "Standalone is active"."""
    if role == Role.BACKUP:
        return "Backup is active" if state == State.ACTIVE else "Backup is idle"
    if role == Role.MAIN:
        return "Main is active" if state == State.ACTIVE else "Main is standby"
    return "Standalone is active"


def peer_status_text(role: object, state: object) -> str | None:
    """:func:`status_text` of a peer as last heard; None when its role or state is not a
    known one (never heard, or a newer tieline's)."""
    if role not in tuple(Role) or state not in tuple(State):
        return None
    return status_text(str(role), str(state))


class Failover:
    """Holds the node's status and enforces what it implies for writes.

    :param status: the initial status.
    :param publish: publishes events (the event bus's ``publish``).
    """

    def __init__(self, status: NodeStatus, publish: Callable[[object], None], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.status = status
        self._publish = publish
        self.clock = clock
        #: monotonic time until which an active node may act; None: no fencing (standalone).
        self.fence_until: float | None = None
        #: set while a planned handover drains: new writes are refused, in-flight ones finish.
        self.draining = False
        #: called with the elector's new status on every change (failover actions follow
        #: it), before the event is published
        self.listeners: list[Callable[[NodeStatus], None]] = []
        #: the effective status last announced (NodeStatusChanged)
        self._announced = status

    @property
    def fenced(self) -> bool:
        """Whether the fence is in the past: the node may not act now, whatever the elector
        decided last."""
        return self.fence_until is not None and self.clock() > self.fence_until

    @property
    def effective(self) -> NodeStatus:
        """The status people and clients are shown: :attr:`status`, except that an active
        node that may not act now (its fence is in the past) is shown standby."""
        status = self.status
        if status.state is State.ACTIVE and self.fenced:
            return replace(status, state=State.STANDBY, active=None)
        return status

    def update(self, **changes: object) -> None:
        """Change the status (state, epoch, active …) and announce it."""
        new = replace(self.status, **changes)
        if new != self.status:
            self.status = new
            for listener in self.listeners:
                listener(new)
        self.refresh()

    def refresh(self) -> None:
        """Announce the effective status (a ``NodeStatusChanged`` event) if it changed
        since it was last announced: after an update, or when the fence moved or expired."""
        effective = self.effective
        if effective != self._announced:
            self._announced = effective
            self._publish(NodeStatusChanged(effective))

    def require_active(self) -> None:
        """Raise :class:`NodeStandby` unless this node takes writes now."""
        status = self.status
        if status.state is not State.ACTIVE:
            where = (f"send requests to the active node ({status.active})" if status.active
                     else "no active node is heard at the moment (a failover may be under "
                          "way); retry in a moment")
            raise NodeStandby(f"node '{status.node}' is standby; {where}",
                              active=status.active)
        if self.draining:
            raise NodeStandby(
                f"node '{status.node}' is handing over to another node; retry on it",
                active=status.active,
            )
        if self.fenced:
            raise NodeStandby(
                f"node '{status.node}' cannot confirm that it is still the active node (its "
                "lease was not renewed in time); the request was not sent — retry",
                active=status.active,
            )

    def require_settings_writable(self) -> None:
        """Raise :class:`ReadOnly` when settings may not be written here now."""
        self.require_active()
        if self.status.role is Role.BACKUP:
            raise ReadOnly(
                "settings are read-only while the backup is active; the main is "
                f"{self.status.main or 'unknown'}"
            )


class EpochStore:
    """The node's epoch, persisted before use (``epoch.json`` in the node's state folder).

    :param path: the file; its folder is created if needed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.epoch = 0
        try:
            data = load_json(path).data
        except JsonFileError as exc:
            if exc.problem.line != 0:  # present but damaged: never guess an epoch
                raise TielineError(
                    f"{path}: {exc.problem.message}; the epoch must be known. Remove the file "
                    "only if every node of the cluster is stopped") from exc
        else:
            value = data.get("epoch") if isinstance(data, dict) else None
            if not isinstance(value, int) or value < 0:
                raise TielineError(f"{path}: expected {{\"epoch\": <integer ≥ 0>}}")
            self.epoch = value

    def raise_to(self, value: int) -> int:
        """Persist ``value`` if it is higher than the current epoch (fsynced before return).

        :returns: the epoch now (never lower than before).
        """
        if value > self.epoch:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, {"epoch": value}, keep_previous=False)
            self.epoch = value
        return self.epoch

    def next(self, seen: int = 0) -> int:
        """Take a new epoch above every epoch known (our own and ``seen``); persisted."""
        return self.raise_to(max(self.epoch, seen) + 1)


#: how often nodes on the peer link send their heartbeats, unless settings say otherwise
PEER_HEARTBEAT_MS = 200


def peer_link_schema(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``failover`` keys every strategy over the peer link shares, plus ``extra``."""
    properties: dict[str, Any] = {
        "listen": {"type": "string", "format": "listen-address",
                   "description": "HOST:PORT of this node's peer link."},
        "peers": {"type": "array", "uniqueItems": True,
                  "items": {"type": "string", "format": "host-port"},
                  "description": "HOST:PORT of the other nodes' peer links."},
        "key": {"type": "string", "minLength": 1, "default": "cluster.key",
                "x-settings-file": True,
                "description": "The cluster key file in the settings folder "
                               "(tieline keys generate)."},
        "advertise": {"type": "string", "format": "ws-url",
                      "description": "The WebSocket URL clients use to reach this node "
                                     "(default: the URLs its client APIs give)."},
        "heartbeat_ms": {"type": "integer", "minimum": 20, "maximum": 10000,
                         "default": PEER_HEARTBEAT_MS,
                         "description": "How often nodes tell each other they are alive."},
    }
    properties.update(extra or {})
    return {"properties": properties, "required": ["listen", "peers"]}


class Strategy(abc.ABC):
    """A failover strategy: what a plugin returns from ``tieline_failover_strategies``.

    The node builds one from its ``failover`` block, runs :meth:`run` in its task group once
    its device links run and before its APIs listen, and calls :meth:`close` when it stops.
    The strategy drives ``node.failover`` (state, epoch, fence, active address).

    :param node: the node.
    :param options: the ``failover`` block (validated against ``settings_schema``).
    """

    name: ClassVar[str]
    settings_schema: ClassVar[dict[str, Any]] = {}

    def __init__(self, node: Node, options: dict[str, Any]) -> None:
        self.node = node
        self.options = options

    @property
    def failover(self) -> Failover:
        """The node's :class:`Failover`: the status, fence and guards the strategy drives."""
        return self.node.failover

    @property
    def active(self) -> bool:
        """Whether this node is active now."""
        return self.failover.status.state is State.ACTIVE

    @classmethod
    def check(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems of the ``failover`` block that its schema cannot state, as
        ``(key, message)`` pairs (reported by validate with file, line and path)."""
        return []

    @abc.abstractmethod
    async def run(self) -> None:
        """Run until cancelled."""

    async def close(self) -> None:
        """Release what the strategy holds (called once, after run was cancelled)."""

    def peers_status(self) -> list[dict[str, Any]]:
        """The other nodes as this strategy knows them, for ``tieline status`` (the
        ``peers`` of the API's status result): one dict per node with ``address`` (where
        the strategy knows it from), ``url`` (its advertised WebSocket URL, None when not
        known), ``node``, ``role``, ``state``, ``epoch`` (as last heard), ``connected``
        (whether it is reachable for this strategy now), ``heard_ms_ago`` (age of its last
        sign of life as this node saw it; None: never) and ``problem`` (None, or what is
        wrong: a key dispute, say). Called often and synchronously: return what the
        strategy already holds, never wait. The API adds each peer's ``status`` line
        (:func:`peer_status_text`)."""
        return []

    async def switch_back(self) -> dict[str, Any]:
        """A planned handover back to the main (``tieline failover switch-back``)."""
        raise Refused(f"the {self.name} strategy has no switch-back")

    async def change_member(self, action: str, address: str) -> dict[str, Any]:
        """Add or remove a peer (``tieline backup add/remove``); the main writes the
        settings and replicates them."""
        raise Refused(f"the {self.name} strategy has no membership changes")


class FailoverAction(abc.ABC):
    """Something a node does when it becomes active and undoes when it stops being active:
    claim a virtual IP, say. What a plugin may return from ``tieline_failover_strategies``
    beside electors; it combines with any elector.

    Its settings are the key :attr:`name` of the ``failover`` block, beside ``"strategy"``
    (``"failover": {"strategy": "etcd", …, "vip": {…}}``), validated against
    ``settings_schema``. The node checks :meth:`preflight` before it starts anything, then
    calls :meth:`deactivate` once (to clear what a crashed run may have left) and
    :meth:`activate` / :meth:`deactivate` on every transition, one at a time, in order;
    a failed call is logged and retried.

    :param node: the node.
    :param options: the block (``failover[name]``).
    """

    name: ClassVar[str]
    settings_schema: ClassVar[dict[str, Any]] = {}
    #: Linux capabilities the action needs, each with what for (``{"CAP_NET_RAW": "sending
    #: gratuitous ARP frames"}``): ``tieline service install`` grants them to the unit.
    capabilities: ClassVar[dict[str, str]] = {}

    def __init__(self, node: Node, options: dict[str, Any]) -> None:
        self.node = node
        self.options = options

    @classmethod
    def check(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems of the block that its schema cannot state, as ``(key, message)``."""
        return []

    def preflight(self) -> None:
        """Raise :class:`~tieline.errors.TielineError`, saying what to do, when this node
        could not carry the action out (a missing privilege): it then refuses to start,
        instead of failing at failover time."""

    @abc.abstractmethod
    async def activate(self) -> None:
        """The node is active (it already accepts requests)."""

    @abc.abstractmethod
    async def deactivate(self) -> None:
        """The node is no longer active, or is starting, or stopping."""


class ActionRunner:
    """Runs a node's failover actions after its state: one task, transitions in order, the
    latest state wins when several changes come while an action runs.

    :param actions: the actions.
    :param retry_s: pause before a failed call is tried again.
    """

    def __init__(self, actions: list[FailoverAction], *, retry_s: float = 1.0) -> None:
        self.actions = actions
        self.retry_s = retry_s
        self.wanted: State | None = None
        self.done: State | None = None
        self._changed = asyncio.Event()

    def want(self, state: State) -> None:
        self.wanted = state
        self._changed.set()

    async def run(self) -> None:
        """Apply the wanted state until cancelled (then deactivate)."""
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                wanted = self.wanted
                if wanted is None or wanted == self.done:
                    continue
                if await self._apply(wanted):
                    self.done = wanted
                else:
                    await asyncio.sleep(self.retry_s)
                    self._changed.set()
        finally:
            if self.done is not State.STANDBY:
                await asyncio.shield(self._apply(State.STANDBY))

    async def _apply(self, state: State) -> bool:
        ok = True
        for action in self.actions:
            try:
                if state is State.ACTIVE:
                    await action.activate()
                else:
                    await action.deactivate()
            except (TielineError, OSError) as exc:
                _log.error("failover action %s could not %s: %s; retrying", action.name,
                           "activate" if state is State.ACTIVE else "deactivate", exc)
                ok = False
        return ok
