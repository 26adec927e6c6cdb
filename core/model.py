"""The routing model: routers, levels, ports, crosspoints, protects, salvos, and RouterState.

Numbers are 0-based everywhere in the code; people see them 1-based (the API, the CLI and the
settings files convert at the boundary).

Words (see ARCHITECTURE.md):

* **protect**: only its owner may re-route the destination (a Videohub "lock" is a protect);
* **lock**: nobody may re-route the destination, the owner included, until the owner or an
  administrator releases it.

RouterState keeps the crosspoints of each level in one ``array('i')`` indexed by destination
(``-1`` = not known yet), so a 4096x4096 router with 16 levels costs 256 KiB of crosspoints;
the reverse tally (source -> destinations) is kept beside it and updated with every change.
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .errors import NotFound, OutOfRange

#: Crosspoint value meaning "the device has not told us yet".
UNKNOWN = -1


class Permission(enum.IntEnum):
    """Permission levels of users: each level includes the ones below."""

    NONE = 0
    WATCH = 1  #: see state and events
    ROUTE = 2  #: route, take salvos, protect/lock and release one's own
    ADMIN = 3  #: settings, labels, overriding others' protects, failover operations


class ProtectKind(enum.StrEnum):
    PROTECT = "protect"  #: only the owner may re-route
    LOCK = "lock"  #: nobody may re-route until released


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request.

    :param name: user name, or a client identity such as ``videohub 192.0.2.7``.
    :param level: the user's permission level.
    :param address: the client's network address, when known.
    """

    name: str
    level: Permission
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Crosspoint:
    """(level, destination) -> source, all 0-based."""

    level: int
    destination: int
    source: int


@dataclass(frozen=True, slots=True)
class Protect:
    """A protect or lock on one destination of one level.

    :param kind: ``protect`` or ``lock``.
    :param owner: the owner's identity (a user name, a client address, ``device``).
    """

    kind: ProtectKind
    owner: str

    def blocks(self, principal: Principal) -> bool:
        """Whether this protect stops ``principal`` from re-routing the destination."""
        if self.kind is ProtectKind.LOCK:
            return True
        return self.owner != principal.name


@dataclass(frozen=True, slots=True)
class RouterSpec:
    """A router's shape as settings give it."""

    id: str
    driver: str
    levels: tuple[str, ...]
    sources: int
    destinations: int

    def level_index(self, name: str, field: str = "level") -> int:
        try:
            return self.levels.index(name)
        except ValueError:
            raise NotFound(
                f"router '{self.id}' has no level '{name}'; its levels are "
                + ", ".join(self.levels),
                field=field,
            ) from None

    def level_indexes(self, names: Sequence[str] | None, field: str = "levels") -> tuple[int, ...]:
        """Indexes of the named levels; every level when ``names`` is None or empty.

        An unknown name is a NotFound naming its place in the list (``levels.1``).
        """
        if not names:
            return tuple(range(len(self.levels)))
        return tuple(self.level_index(n, f"{field}.{i}") for i, n in enumerate(names))

    def check_destination(self, destination: int, field: str = "destination") -> None:
        if not 0 <= destination < self.destinations:
            raise OutOfRange(
                f"router '{self.id}': destination {destination + 1} out of range "
                f"(1–{self.destinations})",
                field=field,
            )

    def check_source(self, source: int, field: str = "source") -> None:
        if not 0 <= source < self.sources:
            raise OutOfRange(
                f"router '{self.id}': source {source + 1} out of range (1–{self.sources})",
                field=field,
            )


@dataclass(frozen=True, slots=True)
class Salvo:
    """A named set of crosspoints on one router, taken together."""

    name: str
    router: str
    crosspoints: tuple[Crosspoint, ...]


class PortKind(enum.StrEnum):
    SOURCE = "source"
    DESTINATION = "destination"


@dataclass(slots=True)
class RouterState:
    """What tieline knows of one router, as its device last told it.

    Only the device link (through the RoutingService) writes here; everything else reads.

    Crosspoints are one ``array`` of sources per level, indexed by destination. The reverse
    tally (the destinations a source feeds) is kept in arrays too, as one doubly linked
    list per source and level threaded through the destinations: ``_head[level][source]``
    is its first destination, ``_next``/``_prev[level][destination]`` the others, -1 the
    end. An update is O(1) and the whole structure costs 12 bytes per destination and 4
    per source and level (about 0.8 MB for 4096x4096 on 16 levels, where sets of
    destinations in dicts took 20 MB).
    """

    spec: RouterSpec
    online: bool = False
    _xp: list[array] = field(init=False, repr=False)
    _head: list[array] = field(init=False, repr=False)
    _next: list[array] = field(init=False, repr=False)
    _prev: list[array] = field(init=False, repr=False)
    labels: dict[PortKind, list[str]] = field(init=False, repr=False)
    protects: dict[tuple[int, int], Protect] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        blank = array("i", [UNKNOWN]) * self.spec.destinations
        self._xp = [array("i", blank) for _ in self.spec.levels]
        ends = array("i", [-1]) * self.spec.destinations
        self._head = [array("i", [-1]) * self.spec.sources for _ in self.spec.levels]
        self._next = [array("i", ends) for _ in self.spec.levels]
        self._prev = [array("i", ends) for _ in self.spec.levels]
        self.labels = {
            PortKind.SOURCE: [""] * self.spec.sources,
            PortKind.DESTINATION: [""] * self.spec.destinations,
        }
        self.protects = {}

    # -- crosspoints -------------------------------------------------------------------
    def source(self, level: int, destination: int) -> int:
        """The source feeding ``destination`` on ``level``, or UNKNOWN."""
        return self._xp[level][destination]

    def level_sources(self, level: int) -> array:
        """The whole level as an array indexed by destination (read-only by convention)."""
        return self._xp[level]

    def destinations_of(self, level: int, source: int) -> frozenset[int]:
        """Reverse tally: the destinations fed by ``source`` on ``level``."""
        if not 0 <= source < self.spec.sources:
            return frozenset()
        found = []
        nxt = self._next[level]
        dest = self._head[level][source]
        while dest != -1:
            found.append(dest)
            dest = nxt[dest]
        return frozenset(found)

    def apply(self, xp: Crosspoint) -> bool:
        """Record a tally; return whether it changed anything.

        A tally naming a port outside the router's size is ignored (returns False): the
        device may be larger than settings say, and only the configured part is controlled.
        """
        if not (0 <= xp.destination < self.spec.destinations and 0 <= xp.level < len(self._xp)):
            return False
        if not (0 <= xp.source < self.spec.sources or xp.source == UNKNOWN):
            return False
        row = self._xp[xp.level]
        old = row[xp.destination]
        if old == xp.source:
            return False
        dest = xp.destination
        head, nxt, prev = self._head[xp.level], self._next[xp.level], self._prev[xp.level]
        if old != UNKNOWN:  # unlink dest from old's list
            before, after = prev[dest], nxt[dest]
            if before == -1:
                head[old] = after
            else:
                nxt[before] = after
            if after != -1:
                prev[after] = before
        row[dest] = xp.source
        if xp.source != UNKNOWN:  # link it first in the new source's list
            first = head[xp.source]
            nxt[dest], prev[dest] = first, -1
            if first != -1:
                prev[first] = dest
            head[xp.source] = dest
        else:
            nxt[dest] = prev[dest] = -1
        return True

    def crosspoints(self, levels: Iterable[int] | None = None) -> Iterator[Crosspoint]:
        """Every known crosspoint, level by level."""
        for level in range(len(self._xp)) if levels is None else levels:
            row = self._xp[level]
            for dest, src in enumerate(row):
                if src != UNKNOWN:
                    yield Crosspoint(level, dest, src)

    # -- labels ------------------------------------------------------------------------
    def label(self, kind: PortKind, index: int) -> str:
        """The port's label, or its 1-based number when it has none."""
        return self.labels[kind][index] or str(index + 1)

    def set_label(self, kind: PortKind, index: int, text: str) -> bool:
        ports = self.labels[kind]
        if not 0 <= index < len(ports) or ports[index] == text:
            return False
        ports[index] = text
        return True

    def find_port(self, kind: PortKind, text: str) -> int:
        """A port by 1-based number or by exact label (case-insensitive); 0-based result."""
        count = len(self.labels[kind])
        if text.isdigit():
            number = int(text)
            if 1 <= number <= count:
                return number - 1
            raise OutOfRange(
                f"router '{self.spec.id}': {kind} {number} out of range (1–{count})", field=kind
            )
        folded = text.casefold()
        for index, label in enumerate(self.labels[kind]):
            if label.casefold() == folded:
                return index
        raise NotFound(
            f"router '{self.spec.id}' has no {kind} labelled '{text}'; give a number "
            f"(1–{count}) or an exact label",
            field=kind,
        )

    # -- protects ----------------------------------------------------------------------
    def protect(self, level: int, destination: int) -> Protect | None:
        return self.protects.get((level, destination))

    def set_protect(self, level: int, destination: int, protect: Protect | None) -> bool:
        key = (level, destination)
        if self.protects.get(key) == protect:
            return False
        if protect is None:
            del self.protects[key]
        else:
            self.protects[key] = protect
        return True
