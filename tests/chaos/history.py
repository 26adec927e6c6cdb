"""What a chaos run records, and how the records are read back.

A run produces one :class:`History`: every client operation (:class:`Op`), every command
the router emulators received (:class:`DeviceCommand`, from ``tieline emulate
--command-log``), the nodes' state transitions with their epochs (:class:`NodeEvent`, from
the node logs and from the harness's own record of the processes it started, killed and
paused), the faults the nemesis injected (:class:`Fault`), and, after the last fault
healed, the routers' crosspoints and every node's shared settings files. The checker
(``checker.py``) reads nothing else: a history saved with :meth:`History.save` can be
checked again, and a synthetic one written by hand is a unit test.

Times are Unix times (``time.time()``) everywhere: the emulators, the nodes' log lines and
the harness run on one machine, so their clocks are one clock. A node's log line carries
its time to the millisecond (``%(asctime)s``, local time); it is read back as a Unix time.

Numbers are the API's: destinations and sources are **1-based**, levels are named. The
emulators' command logs are 0-based and are converted when read (:func:`parse_command`).
"""

from __future__ import annotations

import bisect
import datetime
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: (router, level, destination, source), 1-based
Crosspoint = tuple[str, str, int, int]
#: (router, level, destination), 1-based
Port = tuple[str, str, int]

#: the outcomes of a client operation
OK, ERROR, UNKNOWN = "ok", "error", "unknown"


@dataclass(frozen=True)
class Op:
    """One client operation, as the client that made it saw it.

    :param client: the client's name.
    :param seq: the operation's number in that client's sequence.
    :param kind: ``route``, ``salvo``, ``protect``, ``lock``, ``release`` (routing), or
        ``label`` and ``settings`` (settings writes).
    :param node: the node it was sent to (None: none was reachable, it was not sent).
    :param invoke: when it was sent.
    :param complete: when its answer came (None: no answer, the outcome is unknown).
    :param outcome: ``ok``, ``error`` or ``unknown`` (the connection died, or no answer
        came in time: it may or may not have been carried out).
    :param error: the error code of an ``error`` outcome (``standby``, ``timeout`` …).
    :param epoch: the epoch the node announced on that connection when the operation was
        sent (its hello, or its latest status event).
    :param asked: the crosspoints a ``route`` or ``salvo`` asked for.
    :param confirmed: the crosspoints the node said the router confirmed (``ok`` only).
    :param ports: the destinations a ``protect``, ``lock`` or ``release`` named.
    :param item: a settings write: the item written (``labels/ROUTER/sources/3``,
        ``salvos/NAME``, ``users/NAME``).
    :param value: a settings write: the value written (JSON; None removes the item).
    :param args: the request as sent, for people reading a counter-example.
    :param message: an error's message, as the node gave it.
    """

    client: str
    seq: int
    kind: str
    node: str | None
    invoke: float
    complete: float | None
    outcome: str
    error: str | None = None
    epoch: int | None = None
    asked: tuple[Crosspoint, ...] = ()
    confirmed: tuple[Crosspoint, ...] = ()
    ports: tuple[Port, ...] = ()
    item: str | None = None
    value: Any = None
    args: dict[str, Any] = field(default_factory=dict)
    message: str | None = None

    @property
    def name(self) -> str:
        return f"{self.client}#{self.seq}"

    def end(self, unknown_window_s: float) -> float:
        """The latest instant the operation may take effect: its answer, or for one that
        got none, ``unknown_window_s`` after it was sent."""
        return self.complete if self.complete is not None else self.invoke + unknown_window_s


@dataclass(frozen=True)
class DeviceCommand:
    """One command a router emulator received.

    :param router: the router's id (one emulator per router).
    :param t: when the emulator parsed it.
    :param peer: the connection it came on (``HOST:PORT``, the emulator's name for it).
    :param node: the node that connection belongs to; None for anything else (the
        harness's own panel connection).
    :param kind: ``route``, ``protect``, ``release``, ``label`` (changes) or ``read``
        (queries, pings: change nothing), or ``other`` (a change the checker does not
        know; it is never asked for by a client).
    :param crosspoints: what a ``route`` sets.
    :param ports: what a ``protect`` or ``release`` names.
    :param raw: the command as the emulator logged it.
    """

    router: str
    t: float
    peer: str
    node: str | None
    kind: str
    crosspoints: tuple[Crosspoint, ...] = ()
    ports: tuple[Port, ...] = ()
    raw: str = ""

    @property
    def writes(self) -> bool:
        return self.kind != "read"


@dataclass(frozen=True)
class NodeEvent:
    """A change in a node's life.

    Kinds, from the harness: ``start`` (the process was started), ``kill`` (SIGKILL),
    ``stop`` (stopped on purpose at the end), ``pause``/``resume`` (SIGSTOP/SIGCONT).
    From the node's log: ``grant`` (it became active with a new ``epoch``), ``fenced``
    (it found itself paused and stopped acting until it revalidates), ``revalidated`` (it
    acts again at the same epoch), ``demote`` (it became standby).
    """

    node: str
    t: float
    kind: str
    epoch: int | None = None
    text: str = ""


@dataclass(frozen=True)
class Fault:
    """One fault the nemesis injected.

    :param kind: ``kill``, ``pause``, ``partition``, ``oneway``, ``delay``, ``blackhole``,
        ``router_drop``, ``router_restart``, ``etcd_kill``, ``etcd_quorum``, ``disk_full``,
        ``cpu_starve`` …
    :param target: what it hit (a node, a router, an etcd member, a link ``a>b``).
    :param start: when it began.
    :param end: when it was undone (None: never; the run's heal undoes everything).
    :param impairs: the directed peer-link pairs ``(sender, receiver)`` whose messages it
        may keep from arriving (partitions, one-way cuts, blackholes, delays).
    :param params: anything else (durations, delays).
    """

    kind: str
    target: str
    start: float
    end: float | None
    impairs: tuple[tuple[str, str], ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RouterReset:
    """A router emulator (re)started at ``t``: every crosspoint may have changed."""

    router: str
    t: float


@dataclass
class RouterInfo:
    """What the checker needs of a router: its driver, levels and size."""

    driver: str
    levels: list[str]
    sources: int
    destinations: int


#: harness lateness below this is not recorded (seconds)
LAG_RECORDED_S = 0.005


def _worst(lag: list[tuple[float, float]], start: float, end: float) -> float:
    """The worst lateness of the sorted samples ``lag`` from ``start`` to a little after
    ``end`` (see :meth:`History.lag_between`)."""
    i = bisect.bisect_left(lag, (start, -1.0))
    worst = 0.0
    while i < len(lag) and lag[i][0] <= end + 0.05 + lag[i][1]:
        worst = max(worst, lag[i][1])
        i += 1
        if lag[i - 1][0] > end + 1.0:  # no wake-up is a second late here
            break
    return worst


@dataclass
class History:
    """Everything a run recorded (see the module docstring).

    :param strategy: ``lease``, ``peer_sync`` or ``etcd``.
    :param roles: node name -> role (``main`` / ``backup``).
    :param lease_s: the failover lease (the liveness bound is twice it).
    :param heartbeat_s: the failover heartbeat.
    :param healed_at: when the last fault was undone (None: the run never healed).
    :param final_routes: router -> ``"level/destination"`` -> source, read from the
        emulators after the heal (1-based).
    :param final_settings: node -> shared file name -> text (None: absent).
    :param writer: the node that writes the shared settings (the main).
    :param replicated: whether the strategy replicates settings (lease, peer_sync).
    :param seed: the run's seed; ``schedule`` the faults it planned, for people.
    :param lag: ``[time, seconds]`` samples of the harness's own event loop running late
        (only those later than :data:`LAG_RECORDED_S`): its proxies carry every command to
        the routers, so a command reaches an emulator's log that much later than the node
        wrote it. ``device_lag``: the same of each router's emulator processes (see
        lagged.py), which log a command when they get to it. The checker widens its
        transit and slack allowances by the lateness of both around a command (an
        overloaded machine is the harness's fault, not the node's).
    """

    strategy: str
    roles: dict[str, str]
    routers: dict[str, RouterInfo]
    lease_s: float
    heartbeat_s: float
    t0: float = 0.0
    ops: list[Op] = field(default_factory=list)
    commands: list[DeviceCommand] = field(default_factory=list)
    events: list[NodeEvent] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    resets: list[RouterReset] = field(default_factory=list)
    healed_at: float | None = None
    final_routes: dict[str, dict[str, int]] = field(default_factory=dict)
    final_settings: dict[str, dict[str, str | None]] = field(default_factory=dict)
    writer: str | None = None
    replicated: bool = True
    seed: int | None = None
    schedule: list[str] = field(default_factory=list)
    lag: list[tuple[float, float]] = field(default_factory=list)
    device_lag: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def lag_between(self, start: float, end: float, router: str | None = None) -> float:
        """How late a command may have reached ``router``'s log, from ``start`` to
        ``end``: the harness's worst lateness sampled then, plus that of the router's
        emulators (both are on its way). A sample is taken when a late wake-up ends, so
        one that covers ``end`` comes after it."""
        total = _worst(self.lag, start, end)
        if router is not None:
            total += _worst(self.device_lag.get(router, []), start, end)
        return total

    def rel(self, t: float | None) -> str:
        """``t`` as people read it in a report: seconds since the run began."""
        return "never" if t is None else f"+{t - self.t0:.3f}s"

    def final_source(self, router: str, level: str, destination: int) -> int | None:
        return self.final_routes.get(router, {}).get(f"{level}/{destination}")

    # -- saving and loading ------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["routers"] = {k: asdict(v) for k, v in self.routers.items()}
        return data

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1, default=str))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> History:
        def tuples(values: Iterable[Any]) -> tuple[Any, ...]:
            return tuple(tuple(v) for v in values)

        data = dict(data)
        data["routers"] = {k: RouterInfo(**v) for k, v in data["routers"].items()}
        data["ops"] = [Op(**{**o, "asked": tuples(o["asked"]),
                             "confirmed": tuples(o["confirmed"]), "ports": tuples(o["ports"])})
                       for o in data["ops"]]
        data["commands"] = [DeviceCommand(**{**c, "crosspoints": tuples(c["crosspoints"]),
                                             "ports": tuples(c["ports"])})
                            for c in data["commands"]]
        data["events"] = [NodeEvent(**e) for e in data["events"]]
        data["faults"] = [Fault(**{**f, "impairs": tuples(f["impairs"])})
                          for f in data["faults"]]
        data["resets"] = [RouterReset(**r) for r in data["resets"]]
        data["lag"] = [tuple(x) for x in data.get("lag", ())]
        data["device_lag"] = {k: [tuple(x) for x in v]
                              for k, v in data.get("device_lag", {}).items()}
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> History:
        return cls.from_json(json.loads(path.read_text()))


# -- the emulators' command logs ---------------------------------------------------------

_VH_ROUTES = re.compile(r"^Routes\(table=<RoutingTable\.(\w+)[^>]*>, routes=\((.*)\), unparsed")
_VH_LOCKS = re.compile(r"^Locks\(table=<LockTable\.(\w+)[^>]*>, locks=\((.*)\), unparsed")
_PAIR = re.compile(r"\((\d+), (-?\d+)\)")
_LOCK = re.compile(r"\((\d+), <LockState\.\w+: '(\w)'>\)")
_SW_CONNECT = re.compile(r"^Connect\(matrix=(\d+), level=(\d+), destination=(\d+), "
                         r"source=(\d+)")
_SW_PROTECT = re.compile(r"^Protect(Connect|Disconnect)\(matrix=(\d+), level=(\d+), "
                         r"destination=(\d+)")
_SIM_ROUTE = re.compile(r"Crosspoint\(level=(\d+), destination=(\d+), source=(\d+)\)")

#: commands that change nothing on the device, by driver (the class name the repr starts
#: with); anything else a controller sends is a change
READS = {
    "videohub": {"StatusRequest", "Ping"},
    "swp08": {"Interrogate", "TallyDumpRequest", "DualStatusRequest", "ProtectInterrogate",
              "ProtectDeviceNameRequest", "SourceNamesRequest", "DestinationNamesRequest",
              "ImplementationRequest", "InvalidMessage"},
    "simulator": {"Hello", "Dump", "Ping"},
}


def parse_command(router: str, info: RouterInfo, t: float, peer: str, node: str | None,
                  raw: str) -> DeviceCommand:
    """One line of an emulator's command log, in the API's numbers."""
    head = raw.split("(", 1)[0]

    def made(kind: str, crosspoints: Iterable[Crosspoint] = (),
             ports: Iterable[Port] = ()) -> DeviceCommand:
        return DeviceCommand(router, t, peer, node, kind, tuple(crosspoints), tuple(ports),
                             raw)

    if head in READS.get(info.driver, set()):
        return made("read")
    if info.driver == "videohub":
        if m := _VH_ROUTES.match(raw):
            if m.group(1) != "VIDEO_OUTPUT":
                return made("other")
            return made("route", ((router, info.levels[0], int(d) + 1, int(s) + 1)
                                  for d, s in _PAIR.findall(m.group(2))))
        if m := _VH_LOCKS.match(raw):
            locks = _LOCK.findall(m.group(2))
            if m.group(1) != "VIDEO_OUTPUT" or not locks:
                return made("other")
            letters = {letter for _, letter in locks}
            kind = "protect" if letters == {"O"} else "release" if letters <= {"U", "F"} \
                else "other"
            return made(kind, ports=((router, info.levels[0], int(d) + 1) for d, _ in locks))
        if head == "Labels":
            return made("label")
        return made("other")
    if info.driver == "swp08":
        if m := _SW_CONNECT.match(raw):
            _matrix, level, d, s = (int(x) for x in m.groups())
            if level >= len(info.levels):
                return made("other")
            return made("route", [(router, info.levels[level], d + 1, s + 1)])
        if m := _SW_PROTECT.match(raw):
            level, d = int(m.group(3)), int(m.group(4))
            if level >= len(info.levels):
                return made("other")
            return made("protect" if m.group(1) == "Connect" else "release",
                        ports=[(router, info.levels[level], d + 1)])
        if head == "UpdateName":
            return made("label")
        return made("other")
    if info.driver == "simulator":
        if head == "Route":
            return made("route", ((router, info.levels[int(lv)], int(d) + 1, int(s) + 1)
                                  for lv, d, s in _SIM_ROUTE.findall(raw)))
        if head == "Label":
            return made("label")
        if head in ("SetProtect", "Release"):
            return made("protect" if head == "SetProtect" else "release")
        return made("other")
    return made("other")


def read_command_log(path: Path, router: str, info: RouterInfo,
                     node_of_peer: Any) -> list[DeviceCommand]:
    """Every command in an emulator's ``--command-log`` file.

    :param node_of_peer: ``peer -> node name or None`` (which node a connection is).
    """
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by a kill: not a command
            continue
        out.append(parse_command(router, info, float(entry["t"]), entry["peer"],
                                 node_of_peer(entry["peer"]), entry["command"]))
    return out


# -- the nodes' logs ---------------------------------------------------------------------

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+)\s+([\w.]+): (.*)$")

#: (kind, pattern) for the lines that mark a state transition, in the words of
#: plugins/lease/strategy.py and plugins/etcd/strategy.py (peer_sync logs none: every node
#: is active from its start, at the epoch it read back or 1)
TRANSITIONS: list[tuple[str, re.Pattern[str]]] = [
    ("grant", re.compile(r"this node is now active \(epoch (\d+)")),
    ("grant", re.compile(r"switched back: the main is active again \(epoch (\d+)\)")),
    ("fenced", re.compile(r"not acting until every peer has answered a probe \(epoch (\d+)\)")),
    ("revalidated", re.compile(r"^revalidated: .* above epoch (\d+)")),
    ("demote", re.compile(r"giving epoch (\d+) up")),
    ("demote", re.compile(r"this node becomes standby")),
    ("demote", re.compile(r"this node is now standby")),
    # not a transition: the device link saw its fence shut around a write (the node was
    # stalled between its check and the write); the event's text is the router
    ("crossed", re.compile(r"router '([^']+)': this node lost the right to act while it was "
                           r"writing")),
    # the structured line proposed for core/failover.py (not logged yet): on every change
    # of the effective status, TRANSITION {"t": unix time, "node", "state", "epoch",
    # "acting": may it write now, "why"}
    ("structured", re.compile(r"^TRANSITION (\{.*\})$")),
]


def log_time(stamp: str) -> float:
    """``2024-05-01 12:00:00,123`` (local time, as logging writes it) as a Unix time."""
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def parse_node_log(node: str, lines: Iterable[str]) -> Iterator[NodeEvent]:
    """The state transitions a node logged, in order."""
    for line in lines:
        m = _STAMP.match(line)
        if not m:
            continue
        t, message = log_time(m.group(1)), m.group(4)
        for kind, pattern in TRANSITIONS:
            found = pattern.search(message)
            if not found:
                continue
            if kind == "structured":
                data = json.loads(found.group(1))
                kind = ("demote" if data.get("state") != "active"
                        else "grant" if data.get("acting", True) else "fenced")
                yield NodeEvent(node, float(data.get("t", t)), kind, data.get("epoch"),
                                str(data.get("why", message)))
            elif kind == "crossed":
                yield NodeEvent(node, t, kind, None, found.group(1))
            else:
                epoch = int(found.group(1)) if found.groups() else None
                yield NodeEvent(node, t, kind, epoch, message)
            break
