"""Typed events and the event bus.

Every change tieline learns of becomes one of the frozen event classes below and is
published on the node's :class:`EventBus`. Subscribers (API connections, observer plugins)
each get a bounded queue: a subscriber that stops reading is dropped when its queue is
full and never slows the publisher or the other subscribers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .model import Crosspoint, PortKind, Protect

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class CrosspointsChanged(Event):
    """The device reported new sources for some crosspoints (only real changes).

    :param router: the router's id.
    :param crosspoints: the changed crosspoints, 0-based, in the order the device reported them.
    """

    router: str
    crosspoints: tuple[Crosspoint, ...]


@dataclass(frozen=True, slots=True)
class LabelsChanged(Event):
    """Port labels changed.

    :param router: the router's id.
    :param kind: ``source`` or ``destination``.
    :param labels: ``(index, text)`` pairs, 0-based.
    """

    router: str
    kind: PortKind
    labels: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class ProtectChanged(Event):
    """A protect or lock was set or released on one destination of one level.

    :param router: the router's id.
    :param level: 0-based level.
    :param destination: 0-based destination.
    :param protect: the new protect, or None when released.
    """

    router: str
    level: int
    destination: int
    protect: Protect | None


@dataclass(frozen=True, slots=True)
class DeviceOnline(Event):
    """The router's link is up and its state has been read in full."""

    router: str


@dataclass(frozen=True, slots=True)
class DeviceOffline(Event):
    """The router's link was lost; requests fail at once until it is back.

    :param reason: why, in words.
    """

    router: str
    reason: str


@dataclass(frozen=True, slots=True)
class SalvosChanged(Event):
    """The set of salvos changed (settings were written or reloaded)."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SettingsChanged(Event):
    """Settings files were written by this node or reloaded (failover replicates them).

    :param files: the names of the files that changed, relative to the settings folder.
    """

    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeStatusChanged(Event):
    """The node's role, state, epoch or status text changed.

    :param status: a :class:`tieline.failover.NodeStatus`.
    """

    status: Any


class Subscription:
    """One subscriber's bounded queue of events. Iterate it with ``async for``.

    Iteration ends when the subscription is closed: by :meth:`close`, or by the bus when the
    queue overflowed (``dropped`` is then True and ``reason`` says why).
    """

    __slots__ = ("name", "maxsize", "_queue", "_waiter", "_bus", "closed", "dropped", "reason",
                 "on_drop")

    def __init__(
        self, bus: EventBus, name: str, maxsize: int, on_drop: Callable[[], None] | None = None
    ) -> None:
        self._bus = bus
        self.on_drop = on_drop
        self.name = name
        self.maxsize = maxsize
        self._queue: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.dropped = False
        self.reason = ""

    def _put(self, event: Event) -> bool:
        if len(self._queue) >= self.maxsize:
            return False
        self._queue.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Event | None:
        return self._queue.popleft() if self._queue else None

    def pending(self) -> int:
        return len(self._queue)

    def close(self, reason: str = "closed") -> None:
        if not self.closed:
            self.closed = True
            self.reason = reason
            self._bus._remove(self)
            self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()


class EventBus:
    """Fans events out to subscribers without ever blocking the publisher."""

    def __init__(self) -> None:
        self._subscribers: dict[int, Subscription] = {}

    def subscribe(
        self, name: str, maxsize: int = 4096, on_drop: Callable[[], None] | None = None
    ) -> Subscription:
        """A new subscription; events published from now on are queued for it.

        :param name: who subscribes, for the log line if it is dropped.
        :param maxsize: queue bound; when exceeded the subscriber is dropped.
        :param on_drop: called (synchronously, from publish) when it is dropped, e.g. to
            close the client's connection at once.
        """
        sub = Subscription(self, name, maxsize, on_drop)
        self._subscribers[id(sub)] = sub
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._subscribers.pop(id(sub), None)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every subscriber; drop those whose queue is full."""
        overflow = [sub for sub in self._subscribers.values() if not sub._put(event)]
        for sub in overflow:
            log.warning(
                "dropping event subscriber %s: %d events queued and not read", sub.name,
                sub.maxsize,
            )
            sub.dropped = True
            sub.close(f"too slow: {sub.maxsize} events queued and not read")
            if sub.on_drop is not None:
                sub.on_drop()
