"""The checker: what tieline promises, held against a whole recorded history.

Five properties (issue 14) and a sixth; each check returns the *first* counter-example it finds (a
:class:`Violation` naming the times, nodes, epochs and operations involved) or None:

1. **Acknowledged routes last** (:func:`check_routes_durable`). Every crosspoint a node
   acknowledged (a ``route``'s or a ``salvo``'s confirmed crosspoints) reached the router:
   the router received that crosspoint from that node while the request was in flight.
   And it is on the router at the end, unless a later change of that destination was
   observed: any command the router received for it afterwards (from any node, or from
   the harness's panel connection), or a restart of the router.
2. **No command nobody asked for** (:func:`check_no_unasked_commands`). Every change a
   node sent a router (a crosspoint, a lock, a label) was asked for by a client *of that
   node* whose request was in flight then: sent before the command reached the router,
   and answered no earlier than ``slack_s`` before it (a request that got no answer counts
   as in flight for ``unknown_window_s``). A route a node remembered and pushed later, or
   one it took from another node's client, has no such request.
3. **No write at a superseded epoch** (:func:`check_epochs`). With ``lease`` and
   ``etcd``: a node sent a router a change only while it held the active role by its own
   log (granted an epoch, not since fenced or demoted, not restarted), and only while its
   epoch was the highest any node had been granted (the grants in the node logs, against
   the emulators' command times, ``resolution_s`` apart at least: log lines have
   millisecond times).

   **The lease exception** (docs/failover.md, "the peer link is cut while both nodes
   reach the router"): the active node that cannot hear the node granted a higher epoch
   goes on at its own until it hears it. The documented case is the main staying active
   while the backup takes over; the rule is the same for an active backup while the main
   takes over (it too cannot tell a cut link from a dead peer, and stands down when it
   hears the higher epoch). The checker excuses exactly this: a change sent by node N at
   epoch E after node M was granted E' > E, when a fault on the peer link between them
   (a partition, a one-way cut either way, a blackhole, delay or loss) was in place when
   M was granted E' or during the lease before (M's evidence of N lost to it stays
   lost: a heartbeat it delayed is stale when it comes), or began within
   ``3 x heartbeat`` of the grant, and either the change
   reached the router within ``3 x heartbeat`` of the grant (M's first heartbeat, and
   N's tick that acts on it), or N has not been able to hear M ever since: a fault on the
   direction M -> N, M stopped (SIGSTOP) or M dead, with no gap longer than
   ``heal_grace_s`` between them (after each, the link reconnects, then a heartbeat tells
   N). Without such a peer-link fault nothing is excused: a pause, CPU starvation or a
   kill of N never is, and with ``etcd`` nothing is.

   **A write across a stall.** A node checks its fence, then writes; stopped between
   the two (SIGSTOP, a scheduler that does not run it), it writes when it runs again,
   whatever happened meanwhile. No check in a program closes that window (only a device
   checking a fencing token could, and no router protocol has one); the device link
   keeps it one write wide, checks again after each write and logs "lost the right to
   act while it was writing" when the fence shut meanwhile. The checker excuses exactly
   the commands that reach the router within ``transit_s`` (and the lateness around) of
   such a report by that node for that router, and counts them
   (``summary()["writes_across_a_stall"]``); an unreported stale write still fails.

   With every strategy, settings have one writer: a ``label`` or ``settings`` write
   acknowledged by any node but the main is a violation (with ``peer_sync``, where every
   node is active by design, this is all property 3 checks).
4. **Settings never diverge** (:func:`check_settings`). After the heal, every node's
   shared settings files are identical (strategies that replicate: ``lease``,
   ``peer_sync``; ``etcd`` replicates nothing, so only the writer's files are checked),
   and every acknowledged settings write is in the writer's files, unless a later
   acknowledged write of the same item superseded it or a write of it whose outcome is
   unknown may have.
5. **Liveness** (:func:`check_liveness`). After the last fault healed, some route was
   acknowledged within ``2 x lease``.
6. **No fault is answered as a bug** (:func:`check_no_internal_errors`). No request was
   answered with the code ``error``: docs/api.md keeps it for bugs in tieline, and every
   fault the nemesis makes (a full disk, a dead router, a lost lease) is a state of the
   machine that has its own code and a message saying what to do. Added after chaos
   defect 2 (a label write on a full disk answered ``error``: "internal error: OSError"),
   which the first five properties cannot see: nothing was lost or damaged, only the
   answer was wrong.

Each property is a generator of counter-examples (``iter_*``); ``check_*`` gives the
first, :func:`check` the first of each, :func:`every_violation` all of them (to count).
Run ``python tests/chaos/checker.py HISTORY.json`` to check a saved history again.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.chaos.history import (OK, UNKNOWN, Crosspoint, DeviceCommand, History,
                                     NodeEvent, Op)
else:
    from .history import OK, UNKNOWN, Crosspoint, DeviceCommand, History, NodeEvent, Op

ROUTING_KINDS = ("route", "salvo")
SETTINGS_KINDS = ("label", "settings")
#: error codes that say a request was not carried out (docs/api.md, "Errors"); any other
#: error (timeout, offline, error) may have been
DEFINITE_FAILURES = frozenset({"standby", "read_only", "forbidden", "invalid", "not_found",
                               "out_of_range", "protected", "refused", "unauthenticated"})
#: which kind of client request may ask a router change of each kind
ASKED_BY = {"route": ("route", "salvo"), "protect": ("protect",), "release": ("release",)}


@dataclass(frozen=True)
class Limits:
    """The checker's tolerances (seconds).

    :param slack_s: how long after a request's answer a command it asked for may still
        reach the router (the answer can overtake the command on another path; a few
        milliseconds in practice).
    :param unknown_window_s: how long a request that got no answer counts as in flight.
    :param heal_grace_s: the lease exception: how long after the peer-link fault is undone
        the main may still act at its lower epoch. Default (None): the lease plus 3.5 s,
        the peer link's reconnect backoff at its cap (2 s, +30 % jitter) and an SSH
        handshake.
    :param resolution_s: how far apart a node's transition and a router command must be
        for their order to be certain: a log line's time is truncated to the millisecond
        (a transition logged at .850 happened in [.850, .851)), and the harness notes a
        kill just after it sent it.
    :param transit_s: how long a command may take from the node's write to the emulator's
        log (the harness's router proxy and the emulator's own loop, both busy under the
        nemesis: tens of milliseconds). A change the router logged within it after the node
        stood down (demoted or fenced) without being superseded is taken as written before:
        the node's write time is not recorded. Found by the short etcd run: a CONNECT logged
        20 ms after a voluntary demotion, the node's next frame withdrawn when its ACK came.
        A command at an epoch another node had been granted is never excused by it. A
        kill is a stand-down too (the process is gone; what the router logs after it was
        written before). Both this and ``slack_s`` grow by the harness's own lateness
        around the command, and by that of the router's emulator (``History.lag``,
        ``History.device_lag``): the harness's proxies carry the commands and the emulator
        logs them when it gets to them, and an overloaded machine delivers them late (seen
        at 80 ms with four chaos runs and a browser test suite on two cores).
    """

    slack_s: float = 0.05
    unknown_window_s: float = 15.0
    heal_grace_s: float | None = None
    resolution_s: float = 0.002
    transit_s: float = 0.05


@dataclass(frozen=True)
class Violation:
    """A counter-example: which property, a one-line summary, and the evidence."""

    prop: int
    summary: str
    detail: str

    def __str__(self) -> str:
        return f"property {self.prop} violated: {self.summary}\n{self.detail}"


# -- helpers -----------------------------------------------------------------------------

def describe_op(h: History, op: Op) -> str:
    answered = (f"answered {h.rel(op.complete)}" if op.complete is not None
                else "no answer")
    outcome = op.outcome if op.error is None else f"{op.outcome} ({op.error})"
    if op.message:
        outcome += f": {op.message}"
    what = op.args or {"kind": op.kind}
    return (f"{op.name} {op.kind} to node {op.node} (epoch seen {op.epoch}) sent "
            f"{h.rel(op.invoke)}, {answered}: {outcome}; {what}")


def describe_command(h: History, c: DeviceCommand) -> str:
    who = f"node {c.node}" if c.node else f"a non-node connection ({c.peer})"
    return f"{h.rel(c.t)} router {c.router} received from {who}: {c.raw}"


def _near(h: History, items: Iterable[Any], t: float, key: Callable[[Any], float],
          show: Callable[[Any], str], within: float = 3.0, most: int = 8) -> str:
    """Up to ``most`` items within ``within`` s of ``t``, as indented lines."""
    near = [x for x in items if abs(key(x) - t) <= within]
    near.sort(key=key)
    lines = [f"    {show(x)}" for x in near[:most]]
    if len(near) > most:
        lines.append(f"    … {len(near) - most} more")
    return "\n".join(lines) if lines else "    (none)"


def _events_around(h: History, t: float, within: float = 3.0) -> str:
    return _near(h, h.events, t, lambda e: e.t,
                 lambda e: f"{h.rel(e.t)} node {e.node}: {e.kind}"
                           f"{'' if e.epoch is None else f' epoch {e.epoch}'}"
                           f"{f' ({e.text})' if e.text else ''}",
                 within)


def _faults_around(h: History, t: float, since: float | None = None) -> str:
    """The faults in place within 3 s of ``t`` (or of the span ``since`` .. ``t``)."""
    since = t if since is None else since
    near = [f for f in h.faults if f.start <= t + 3 and (f.end is None or f.end >= since - 3)]
    if not near:
        return "    (none)"
    return "\n".join(f"    {f.kind} {f.target} {h.rel(f.start)} .. {h.rel(f.end)}"
                     f"{f' {f.params}' if f.params else ''}" for f in near)


def crosspoints_of(op: Op) -> tuple[Crosspoint, ...]:
    """What an acknowledged route or salvo says the router confirmed."""
    return op.confirmed


# -- property 1 --------------------------------------------------------------------------

def iter_routes_durable(h: History, limits: Limits = Limits()) -> Iterator[Violation]:
    changes: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    sets: dict[Crosspoint, list[DeviceCommand]] = defaultdict(list)
    for c in h.commands:
        for xp in c.crosspoints:
            changes[xp[:3]].append(c.t)
            sets[xp].append(c)
    resets: dict[str, list[float]] = defaultdict(list)
    for r in h.resets:
        resets[r.router].append(r.t)
    acked = sorted((op for op in h.ops if op.kind in ROUTING_KINDS and op.outcome == OK),
                   key=lambda o: o.invoke)
    for op in acked:
        assert op.complete is not None
        for xp in crosspoints_of(op):
            router, level, dest, source = xp
            own = [c for c in sets[xp] if c.node == op.node
                   and op.invoke <= c.t
                   and (c.t <= op.complete + limits.slack_s
                        or c.t <= op.complete + limits.slack_s
                        + h.lag_between(op.complete, c.t, c.router))]
            if not own:
                yield Violation(1, (
                    f"{op.name}: node {op.node} acknowledged {level} destination {dest} <- "
                    f"source {source} on router {router}, but the router never received "
                    "that crosspoint from it while the request was in flight"), (
                    f"  the request: {describe_op(h, op)}\n"
                    f"  commands for that destination around it:\n"
                    + _near(h, (c for c in h.commands if any(x[:3] == xp[:3]
                                                             for x in c.crosspoints)),
                            op.invoke, lambda c: c.t, lambda c: describe_command(h, c))
                    + "\n  node transitions around it:\n" + _events_around(h, op.invoke)))
                continue
            effect = max(c.t for c in own)
            later = [t for t in changes[xp[:3]] if t > effect]
            later += [t for t in resets[router] if t > effect]
            if later:
                continue
            final = h.final_source(router, level, dest)
            if final != source:
                yield Violation(1, (
                    f"{op.name}: {level} destination {dest} <- source {source} on router "
                    f"{router} was acknowledged, and nothing changed that destination "
                    f"afterwards, but the router ends with source {final}"), (
                    f"  the request: {describe_op(h, op)}\n"
                    f"  the command that made it reached the router {h.rel(effect)}\n"
                    "  faults around it:\n" + _faults_around(h, effect)))


# -- property 2 --------------------------------------------------------------------------

def _asks(op: Op, kind: str, item: Any) -> bool:
    if kind == "route":
        return item in op.asked
    return item in op.ports


def iter_no_unasked_commands(h: History, limits: Limits = Limits()) -> Iterator[Violation]:
    by_node: dict[str | None, list[Op]] = defaultdict(list)
    for op in h.ops:
        by_node[op.node].append(op)
    for c in sorted(h.commands, key=lambda c: c.t):
        if c.node is None or not c.writes:
            continue
        items: list[Any] = list(c.crosspoints) if c.kind == "route" else list(c.ports)
        kinds = ASKED_BY.get(c.kind, ())
        if not items or not kinds:
            yield Violation(2, (
                f"node {c.node} sent router {c.router} a change no client request asks "
                f"for ({c.kind})"), f"  {describe_command(h, c)}\n"
                "  node transitions around it:\n" + _events_around(h, c.t))
            continue
        for item in items:
            asking = [op for op in by_node[c.node] if op.kind in kinds and _asks(op, c.kind, item)]
            if any(op.invoke <= c.t and (
                    c.t <= op.end(limits.unknown_window_s) + limits.slack_s
                    or c.t <= op.end(limits.unknown_window_s) + limits.slack_s
                    + h.lag_between(op.end(limits.unknown_window_s), c.t, c.router))
                   for op in asking):
                continue
            last = max((op for op in asking if op.invoke <= c.t), key=lambda o: o.invoke,
                       default=None)
            yield Violation(2, (
                f"node {c.node} sent router {c.router} {c.kind} {item[1:]} that no client "
                "request to it was asking for at that moment"), (
                f"  {describe_command(h, c)}\n"
                f"  the last request to node {c.node} asking for it: "
                f"{describe_op(h, last) if last else 'none, ever'}\n"
                "  node transitions around it:\n" + _events_around(h, c.t)
                + "\n  faults around it:\n" + _faults_around(h, c.t)))
            break  # one counter-example per command


# -- property 3 --------------------------------------------------------------------------

@dataclass
class _Life:
    """A node's state by its log and the harness's record, at one instant."""

    running: bool = False
    acting: bool = False
    epoch: int | None = None
    last: NodeEvent | None = None


#: transitions that let a node act (the others stand it down)
GAINS = frozenset({"start", "grant", "revalidated"})


def _life_at(events: list[NodeEvent], t: float, resolution: float = 0.0) -> _Life:
    """Replay one node's events (sorted) up to ``t``. Within ``resolution`` of ``t`` their
    order against ``t`` is uncertain and the doubt goes to the node: a gain logged up to
    ``resolution`` after ``t`` counts as before it (a log line is written after the
    transition it reports, and its time is truncated), a stand-down logged less than
    ``resolution`` before ``t`` does not."""
    life = _Life()
    for e in events:
        if e.t > t + resolution:
            break
        if e.kind == "crossed" or (e.t > t - resolution and e.kind not in GAINS):
            continue
        life.last = e
        if e.kind == "start":
            life = _Life(running=True, last=e)
        elif e.kind in ("kill", "stop"):
            life = _Life(running=False, last=e)
        elif e.kind == "grant":
            life.acting, life.epoch = True, e.epoch
        elif e.kind == "fenced":
            life.acting = False
        elif e.kind == "revalidated":
            life.acting = life.epoch is not None
        elif e.kind == "demote":
            life.acting, life.epoch = False, None
    return life


def heal_grace(h: History, limits: Limits) -> float:
    return limits.heal_grace_s if limits.heal_grace_s is not None else h.lease_s + 3.5


def _deaf(h: History, node: str, other: str, grace: float) -> list[tuple[float, float]]:
    """When ``node`` could not hear ``other``: faults impairing the peer link
    ``other`` -> ``node``, and ``other`` stopped (SIGSTOP) or dead, each lasting until
    ``grace`` after it ended (the link reconnects; then a heartbeat comes). Merged."""
    spans = [(f.start, (f.end if f.end is not None else float("inf")) + grace)
             for f in h.faults if (other, node) in f.impairs]
    down: float | None = None
    for e in sorted((e for e in h.events if e.node == other), key=lambda e: e.t):
        if e.kind in ("pause", "kill") and down is None:
            down = e.t
        elif e.kind in ("resume", "start") and down is not None:
            spans.append((down, e.t + grace))
            down = None
    if down is not None:
        spans.append((down, float("inf")))
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _excused(h: History, node: str, t: float, grant: NodeEvent, limits: Limits) -> Any:
    """The fault that excuses ``node`` acting below ``grant`` at ``t``, or None (see the
    module docstring: the lease exception)."""
    if h.strategy != "lease":
        return None
    other = grant.node
    heard_by = grant.t + 3 * h.heartbeat_s  # a heartbeat, and the tick that acts on it
    # the split: a peer-link fault between them in place when the other took over, or
    # within the lease before it: a standby takes over when it has had no fresh evidence
    # of the active node for a lease, and evidence lost to a fault stays lost after it
    # ends (the heartbeats it delayed are stale when they arrive)
    split = [f for f in h.faults if ({(node, other), (other, node)} & set(f.impairs))
             and f.start <= heard_by and (f.end is None or f.end + h.lease_s >= grant.t)]
    if not split:
        return None
    if t <= heard_by:
        return split[0]  # the node cannot know before the other's first heartbeat
    for start, end in _deaf(h, node, other, heal_grace(h, limits)):
        if start <= heard_by and t <= end:  # it has not been able to hear it since
            return split[0]
    return None


def crossed_fence(h: History, c: DeviceCommand, limits: Limits) -> NodeEvent | None:
    """The node's own report that its fence shut around a write to ``c``'s router, close
    enough to ``c`` to be the write that carried it (see :func:`iter_epochs`)."""
    allowance = limits.transit_s + h.lag_between(c.t - limits.transit_s, c.t, c.router)
    return next((e for e in h.events if e.kind == "crossed" and e.node == c.node
                 and e.text == c.router and abs(c.t - e.t) <= allowance + limits.resolution_s),
                None)


def iter_epochs(h: History, limits: Limits = Limits()) -> Iterator[Violation]:
    # settings: one writer, whatever the strategy
    for op in sorted(h.ops, key=lambda o: o.invoke):
        if op.kind in SETTINGS_KINDS and op.outcome == OK and op.node != h.writer:
            yield Violation(3, (
                f"{op.name}: node {op.node} ({h.roles.get(op.node)}) accepted a settings "
                f"write; only the main ({h.writer}) writes settings"),
                f"  the request: {describe_op(h, op)}\n  node transitions around it:\n"
                + _events_around(h, op.invoke))
    if h.strategy == "peer_sync":
        return  # every node is active by design: routes are the router's to arbitrate
    events: dict[str, list[NodeEvent]] = defaultdict(list)
    for e in sorted(h.events, key=lambda e: e.t):
        events[e.node].append(e)
    grants = [e for e in sorted(h.events, key=lambda e: e.t) if e.kind == "grant"]
    for c in sorted(h.commands, key=lambda c: c.t):
        if c.node is None or not c.writes:
            continue
        life = _life_at(events[c.node], c.t, limits.resolution_s)
        last = life.last
        if (not life.acting or life.epoch is None) and last is not None \
                and last.kind in ("demote", "fenced", "kill") \
                and c.t - last.t <= limits.transit_s + h.lag_between(last.t, c.t, c.router):
            before = _life_at(events[c.node], last.t, limits.resolution_s)
            if before.acting and before.epoch is not None:
                life = before  # written before it stood down: the superseded rule below
        if (not life.acting or life.epoch is None) and crossed_fence(h, c, limits):
            continue  # the write across a stall, reported by the node itself (counted)
        if not life.acting or life.epoch is None:
            last = life.last
            why = ("it was not running" if not life.running else
                   f"its last transition was {last.kind}"
                   f"{'' if last.epoch is None else f' (epoch {last.epoch})'} at {h.rel(last.t)}"
                   if last else "it had logged no transition")
            yield Violation(3, (
                f"node {c.node} sent router {c.router} a change while it did not hold the "
                f"active role: {why}"),
                f"  {describe_command(h, c)}\n  node transitions around it:\n"
                + _events_around(h, c.t) + "\n  faults around it:\n" + _faults_around(h, c.t))
            continue
        above = [g for g in grants if g.t < c.t - limits.resolution_s and g.epoch is not None
                 and g.epoch > life.epoch and g.node != c.node]
        unexcused = [g for g in above if not _excused(h, c.node, c.t, g, limits)]
        if unexcused and crossed_fence(h, c, limits):
            continue  # the write across a stall, reported by the node itself (counted)
        if unexcused:
            g = unexcused[0]
            yield Violation(3, (
                f"node {c.node} sent router {c.router} a change at epoch {life.epoch} after "
                f"node {g.node} had been granted epoch {g.epoch} ({h.rel(g.t)})"),
                f"  {describe_command(h, c)}\n  node transitions around it:\n"
                + _events_around(h, c.t, within=max(3.0, c.t - g.t + 0.5))
                + "\n  faults since that grant:\n" + _faults_around(h, c.t, since=g.t))


# -- property 4 --------------------------------------------------------------------------

def settings_item(files: dict[str, str | None], item: str) -> Any:
    """The value of one settings item in a node's files (None: absent).

    ``labels/ROUTER/sources/N``, ``salvos/NAME`` (the salvo object), ``users/NAME`` (the
    user object)."""
    import json

    kind, _, rest = item.partition("/")
    if kind == "labels":
        router, table, index = rest.split("/")
        text = files.get("labels.json")
        data = json.loads(text) if text else {}
        return (data.get("routers", {}).get(router, {}).get(table, {}).get(index)) or None
    name = rest
    file = "salvos.json" if kind == "salvos" else "users.json"
    text = files.get(file)
    data = json.loads(text) if text else {}
    return next((x for x in data.get(kind, []) if x.get("name") == name), None)


def parsed_settings(text: str | None) -> Any:
    """A settings file's content (replication rewrites files: compare values, not bytes)."""
    import json

    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def iter_settings(h: History, limits: Limits = Limits()) -> Iterator[Violation]:
    writer = h.writer
    if writer is None or writer not in h.final_settings:
        yield Violation(4, "the writer's final settings were not collected",
                        f"  writer {writer}; collected: {sorted(h.final_settings)}")
        return
    if h.replicated:
        reference = h.final_settings[writer]
        for node, files in sorted(h.final_settings.items()):
            for name in sorted(set(reference) | set(files)):
                if parsed_settings(files.get(name)) != parsed_settings(reference.get(name)):
                    yield Violation(4, (
                        f"after the heal node {node}'s {name} differs from the main's "
                        f"({writer})"),
                        f"  {writer}: {reference.get(name)!r}\n  {node}: {files.get(name)!r}")
    writes: dict[str, list[Op]] = defaultdict(list)
    for op in h.ops:
        if op.kind in SETTINGS_KINDS and op.item is not None:
            writes[op.item].append(op)
    for item, ops in sorted(writes.items()):
        acked = [o for o in ops if o.outcome == OK]
        if not acked:
            continue
        # an acknowledged write stands unless another acknowledged one began after it ended
        standing = [o for o in acked
                    if not any(p.invoke > o.complete for p in acked if p is not o)]
        maybe = [o for o in ops if o.outcome == UNKNOWN
                 or (o.outcome != OK and o.error not in DEFINITE_FAILURES)]
        candidates = [o.value for o in standing + maybe]
        final = settings_item(h.final_settings[writer], item)
        if final not in candidates:
            yield Violation(4, (
                f"the acknowledged settings write of {item} is lost: the writer ({writer}) "
                f"ends with {final!r}"),
                "  acknowledged writes that no later one superseded:\n"
                + "\n".join(f"    {describe_op(h, o)}" for o in standing)
                + ("\n  writes whose outcome is unknown:\n"
                   + "\n".join(f"    {describe_op(h, o)}" for o in maybe) if maybe else ""))


# -- property 5 --------------------------------------------------------------------------

def iter_liveness(h: History, limits: Limits = Limits()) -> Iterator[Violation]:
    if h.healed_at is None:
        yield Violation(5, "the run never healed its faults", "")
        return
    deadline = h.healed_at + 2 * h.lease_s
    routes = sorted((op for op in h.ops if op.kind in ROUTING_KINDS
                     and op.invoke >= h.healed_at), key=lambda o: o.invoke)
    if any(op.outcome == OK and op.complete is not None and op.complete <= deadline
           for op in routes):
        return
    first_ok = next((op for op in routes if op.outcome == OK), None)
    tried = [op for op in routes if op.invoke <= deadline]
    yield Violation(5, (
        f"no route was acknowledged within 2 x lease ({2 * h.lease_s:.2f} s) after the last "
        f"fault healed ({h.rel(h.healed_at)})"),
        f"  first acknowledged route after the heal: "
        f"{describe_op(h, first_ok) if first_ok else 'none'}\n"
        "  routes tried before the deadline:\n"
        + ("\n".join(f"    {describe_op(h, o)}" for o in tried[:10]) or "    (none)")
        + "\n  node transitions around the heal:\n" + _events_around(h, h.healed_at))


# -- property 6 --------------------------------------------------------------------------

def iter_no_internal_errors(h: History, limits: Limits = Limits()) -> Iterator[Violation]:
    for op in sorted(h.ops, key=lambda o: o.invoke):
        if op.outcome == "error" and op.error == "error":
            yield Violation(6, (
                f"{op.name} was answered as a bug in tieline (code 'error') by node {op.node} "
                f"{h.rel(op.complete or op.invoke)}"),
                f"  {describe_op(h, op)}\n"
                "  faults around it:\n" + _faults_around(h, op.invoke)
                + "\n  node transitions around it:\n" + _events_around(h, op.invoke))


# -- all of them -------------------------------------------------------------------------

#: each property's counter-examples, in the order found
CHECKS: list[tuple[int, Callable[[History, Limits], Iterator[Violation]]]] = [
    (1, iter_routes_durable),
    (2, iter_no_unasked_commands),
    (3, iter_epochs),
    (4, iter_settings),
    (5, iter_liveness),
    (6, iter_no_internal_errors),
]


def _first(fn: Callable[[History, Limits], Iterator[Violation]]
           ) -> Callable[[History, Limits], Violation | None]:
    def first(h: History, limits: Limits = Limits()) -> Violation | None:
        return next(fn(h, limits), None)

    first.__name__ = fn.__name__.replace("iter_", "check_")
    first.__doc__ = f"The first counter-example of :func:`{fn.__name__}`, or None."
    return first


check_routes_durable = _first(iter_routes_durable)
check_no_unasked_commands = _first(iter_no_unasked_commands)
check_epochs = _first(iter_epochs)
check_settings = _first(iter_settings)
check_liveness = _first(iter_liveness)
check_no_internal_errors = _first(iter_no_internal_errors)


def check(h: History, limits: Limits = Limits()) -> list[Violation]:
    """Every property's first counter-example (an empty list: the history passes)."""
    return [v for _, fn in CHECKS if (v := next(fn(h, limits), None)) is not None]


def every_violation(h: History, limits: Limits = Limits()) -> list[Violation]:
    """Every counter-example of every property (for counting, not for reading)."""
    return [v for _, fn in CHECKS for v in fn(h, limits)]


def summary(h: History) -> dict[str, Any]:
    """Counts for people and docs/reliability.md: faults by kind, operations by kind and
    outcome, device commands by kind, epochs granted."""
    return {
        "faults": dict(Counter(f.kind for f in h.faults)),
        "operations": {f"{k} {o}": n for (k, o), n in sorted(Counter(
            (op.kind, op.outcome if op.error is None else f"{op.outcome}:{op.error}")
            for op in h.ops).items())},
        "commands": dict(Counter(c.kind for c in h.commands if c.node is not None)),
        "grants": sum(1 for e in h.events if e.kind == "grant"),
        "writes_across_a_stall": sum(1 for e in h.events if e.kind == "crossed"),
    }


def report(h: History, violations: list[Violation]) -> str:
    lines = [f"strategy {h.strategy}, seed {h.seed}: "
             + ("PASS" if not violations else f"FAIL ({len(violations)} properties)")]
    for v in violations:
        lines.append(str(v))
    if violations and h.schedule:
        lines.append("fault schedule:")
        lines += [f"  {s}" for s in h.schedule]
    return "\n".join(lines)


def main(argv: list[str]) -> int:  # noqa: D103
    h = History.load(Path(argv[1]))
    violations = check(h)
    print(report(h, violations))
    print(summary(h))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
