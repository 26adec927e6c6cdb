"""The lease strategy: one main, one or more backups, exactly one active in normal times.

Timing (settings, defaults in brackets): every node sends a heartbeat over the peer link
every ``heartbeat_ms`` [200]. The active node holds the lease:

* **The holder stops acting at its renew deadline.** Each heartbeat tick moves the node's
  fence ``renew_deadline_ms`` [1000] ahead. A tick that runs late by more than that (the
  process was paused: SIGSTOP, a hung host, a VM freeze) does not move it: the node refuses
  every request, shows itself standby, and revalidates on **fresh evidence only**: its
  heartbeats carry a new probe, and it acts again at its epoch only once *every* peer has
  answered with a heartbeat that echoes the probe (so written after the pause) and none of
  them holds a higher epoch. Heartbeats that waited in its sockets during the pause prove
  nothing and count for nothing. A peer that does not answer within a lease: the node
  gives its epoch up and becomes standby; it may take over again only as a new candidate,
  with a new epoch, like any other.
* **A stalled standby starts watching again.** A standby whose tick ran late does not count
  the pause as silence of the active node: it waits a whole lease from the end of the pause.
  A candidacy during which the process stalled is abandoned, and so is a switch back.
* **The candidate waits a full lease.** A standby takes over when it has heard no active
  node for ``lease_ms`` [1500] *and* it reaches every router itself (it connects the links
  a standby keeps closed, and waits for their state). It takes a new epoch, persisted
  first, and accepts routes at once.
* **Key disputes** (a peer refuses this node's cluster key, or this node its): the main
  wins. A main is never held back by a peer it cannot authenticate. A backup is
  *confirmed* once it has exchanged heartbeats with the main (it holds the main's key); it
  remembers that in its state folder, with the main's address, for as long as its key does
  not change. A confirmed backup ignores key disputes, except with the main. An
  unconfirmed backup that has been in a key dispute since it started never takes over, and
  a backup in a key dispute with a reachable peer (the main, for a confirmed one) never
  stays active beside it. Every refused attempt is logged by the peer link, and ``tieline
  status`` lists the peers in dispute.
* **Ties**: a main takes over after one lease; at a cold start (no active node heard since
  it started) a backup waits one lease plus two heartbeats, so that the main wins. A backup
  that had followed an active node waits exactly one lease after its last heartbeat. Two actives with the same epoch: the main
  (then the lower node name) keeps the role. Two actives with different epochs (after a
  partition healed): the lower epoch gives the role up.

**Peer link cut while both nodes reach the router** (the rule, documented in
docs/failover.md): the backup takes over after one lease, and the main, which cannot tell a
cut link from a dead backup, stays active: both accept routes, which is harmless for routing
(the router arbitrates; both follow its tally) and impossible for settings (only the main
writes them; an active backup refuses settings writes). Clients that saw the backup's higher
epoch refuse the main. When the link heals, the main (lower epoch) becomes standby and the
switch back follows.

**Switch back.** A main that finds a backup active joins as standby, receives the settings,
and after ``hold_down_s`` [60] (``"switch_back": "auto"``) or on ``tieline failover
switch-back`` (``"manual"``) asks the backup to hand over: the backup refuses new writes,
waits for those in flight, becomes standby and answers with its epoch; the main takes the
next epoch and is active. Clients of the backup are told the main's address.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from tieline import (
    JsonFileError,
    PeerLinkStrategy,
    PeerView,
    Refused,
    Role,
    State,
    TielineError,
    load_json,
    peer_link_schema,
    write_json_atomic,
)

log = logging.getLogger(__name__)

#: The default profile (docs/failover.md, "Timing profiles", for how they were chosen): a
#: takeover within 2 s at p99 of the active node's death, and no needless one while it
#: lives, with its CPU held to 20 % of a core, full collections of a large router and 10 %
#: packet loss on the peer link.
DEFAULT_HEARTBEAT_MS = 200
DEFAULT_RENEW_MS = 1000
DEFAULT_LEASE_MS = 1500


class LeaseStrategy(PeerLinkStrategy):
    """``"failover": {"strategy": "lease", …}``."""

    name = "lease"
    settings_schema: ClassVar[dict[str, Any]] = peer_link_schema({
        "switch_back": {"enum": ["auto", "manual"], "default": "auto",
                        "description": "When the main returns: take over again after "
                                       "hold_down_s (auto), or wait for `tieline failover "
                                       "switch-back` (manual)."},
        "hold_down_s": {"type": "number", "minimum": 0, "maximum": 86400, "default": 60,
                        "description": "How long a returned main stays standby before it "
                                       "takes over again (auto switch back)."},
        "renew_deadline_ms": {"type": "integer", "minimum": 50, "maximum": 60000,
                              "default": DEFAULT_RENEW_MS,
                              "description": "The active node stops acting when its "
                                             "heartbeat tick is this late."},
        "lease_ms": {"type": "integer", "minimum": 100, "maximum": 120000,
                     "default": DEFAULT_LEASE_MS,
                     "description": "A standby takes over after hearing no active node "
                                    "for this long."},
        "connect_timeout_ms": {"type": "integer", "minimum": 100, "maximum": 60000,
                               "default": 2000,
                               "description": "How long a candidate waits for its routers "
                                              "to come online before it gives up taking "
                                              "over (and tries again)."},
    })

    @classmethod
    def check(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        heartbeat = options.get("heartbeat_ms", DEFAULT_HEARTBEAT_MS)
        renew = options.get("renew_deadline_ms", DEFAULT_RENEW_MS)
        lease = options.get("lease_ms", DEFAULT_LEASE_MS)
        if not heartbeat * 2 <= renew < lease:
            return [("renew_deadline_ms", (
                f"expected heartbeat_ms × 2 ≤ renew_deadline_ms < lease_ms; got "
                f"{heartbeat} / {renew} / {lease}"))]
        return []

    def __init__(self, node: Any, options: dict[str, Any]) -> None:
        super().__init__(node, options)
        self.renew_s = options.get("renew_deadline_ms", DEFAULT_RENEW_MS) / 1000
        self.lease_s = options.get("lease_ms", DEFAULT_LEASE_MS) / 1000
        self.connect_timeout_s = options.get("connect_timeout_ms", 2000) / 1000
        self.hold_down_s = float(options.get("hold_down_s", 60))
        self.auto_switch_back = options.get("switch_back", "auto") == "auto"
        self.started_at = self.clock()
        self.last_tick = self.clock()
        #: since when silence of the active node counts (the start, or the end of a stall)
        self.watching_since = self.started_at
        #: how many stalls (late ticks) this node has seen: a candidacy or a switch back
        #: during which it changed is abandoned
        self.stalls = 0
        self.revalidating_since: float | None = None
        self.main_standby_since: float | None = None
        self._handover: asyncio.Task[None] | None = None
        #: the epoch under which this node holds the active role (None when standby). The
        #: epoch store holds the highest epoch seen, which may be higher (a peer's).
        self.my_epoch: int | None = None
        #: peers that have been in a key dispute with this node since it started
        self.key_refused: set[str] = set()
        #: the main's address, once this backup is confirmed (it holds the main's key)
        self.confirmed_main: str | None = None
        self._membership_file = node.state_folder / "membership.json"
        #: the candidacy in progress (connecting the routers), run beside the heartbeats
        self._candidacy: asyncio.Task[None] | None = None
        #: why the last candidacy failed, logged once per reason
        self._candidacy_problem: str | None = None
        #: an active peer was heard since this node started (no cold-start tie to break)
        self.seen_active = False

    # -- the peer link (PeerLinkStrategy does the rest) ------------------------------------
    def heartbeat_epoch(self) -> int:
        """The epoch under which this node is active, else the highest seen."""
        return self.my_epoch if self.my_epoch is not None else self.node.epochs.epoch

    def link_timeout_s(self) -> float:
        """Two leases: a peer-link connection on which nothing arrives for that long is
        dropped and dialled again. Not one lease: on a node's own outgoing connection
        only SSH keepalive answers arrive, and a lossy stretch (re-sends of the keepalive
        and of its answer) can delay them past a lease while the link still carries
        heartbeats; a connection dropped then must be dialled again through the same loss
        (an SSH handshake: several round trips), and meanwhile no heartbeat goes out on
        it: with one lease, that cost a needless takeover in the 10 % loss soak
        (docs/failover.md, "How the default was chosen"). A connection that is really dead
        costs nothing in safety: the lease, not the connection, decides a takeover."""
        return 2 * self.lease_s

    async def handle(self, view: PeerView, message: dict[str, Any]) -> dict[str, Any] | None:
        if message.get("type") == "handover":
            return await self._release_for_handover(view)
        if message.get("type") == "switch_back":
            return await self._switch_back_here()
        return None

    async def started(self) -> None:
        self.started_at = self.last_tick = self.watching_since = self.clock()
        self.confirmed_main = self._read_membership()

    # -- key disputes ----------------------------------------------------------------------
    def _read_membership(self) -> str | None:
        """The main's address if this backup was confirmed with its current key."""
        if self.role is Role.MAIN:
            return None
        try:
            data = load_json(self._membership_file).data
        except JsonFileError:
            return None
        if isinstance(data, dict) and data.get("key") == self.key_fingerprint \
                and isinstance(data.get("main"), str):
            return data["main"]
        return None

    def _confirm(self, main: PeerView) -> None:
        """A heartbeat from the main came over the authenticated link: our key is the
        cluster's. Remembered, with the main's address, across restarts."""
        if self.confirmed_main == main.address:
            return
        self.confirmed_main = main.address
        try:
            self._membership_file.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self._membership_file,
                              {"key": self.key_fingerprint, "main": main.address},
                              keep_previous=False)
        except (OSError, TielineError) as exc:
            log.warning("could not record this node's membership in %s: %s",
                        self._membership_file, exc)
        log.info("confirmed: this node holds the cluster key of the main (%s)", main.address)

    def key_disputes(self) -> set[str]:
        """The peers in a key dispute with this node now (reachable, refusing)."""
        return {address for address, peer in (self.link.peers.items() if self.link else ())
                if peer.problem == "key"}

    def key_blockers(self, *, candidacy: bool) -> list[str]:
        """The peers whose key dispute keeps this node from being active: none for the
        main (it wins); for a confirmed backup, the main if in dispute now; for another
        backup, every peer in dispute now, and for a candidacy every one since it
        started."""
        if self.role is Role.MAIN:
            return []
        now = self.key_disputes()
        if self.confirmed_main is not None:
            return sorted(now & {self.confirmed_main})
        return sorted((now | self.key_refused) if candidacy else now)

    async def close(self) -> None:
        for task in (self._handover, self._candidacy):
            if task is not None:
                task.cancel()
        await super().close()

    # -- the loop: one tick per heartbeat, before the heartbeat goes out -------------------
    async def tick(self) -> None:
        self.key_refused |= self.key_disputes()
        for peer in self.peers.values():
            if peer.role == "main" and self.role is not Role.MAIN and self.heard(
                    peer, self.lease_s):
                self._confirm(peer)
        now = self.clock()
        gap = now - self.last_tick
        self.last_tick = now
        if gap > self.renew_s:
            self.stalls += 1
            self.watching_since = now  # the pause was no silence of the others
        if self.active:
            await self._tick_active(now, gap)
        else:
            await self._tick_standby(now)
        self.failover.refresh()  # a fence that expired or moved shows in the status

    def stalled_since(self, stalls: int) -> bool:
        """Whether this process stalled since ``self.stalls`` was ``stalls`` (or is stalled
        now: its tick is overdue, it has just resumed and the tick has not run yet)."""
        return self.stalls != stalls or self.clock() - self.last_tick > self.renew_s

    async def _tick_active(self, now: float, gap: float) -> None:
        mine = self.my_epoch if self.my_epoch is not None else self.node.epochs.epoch
        for peer in self.peers.values():
            if peer.state != "active" or not self.heard(peer, self.lease_s):
                continue
            if peer.epoch > mine or (peer.epoch == mine and self._yields_to(peer)):
                log.warning("node '%s' (epoch %d) is active with a %s epoch than ours (%d): "
                            "this node becomes standby", peer.name, peer.epoch,
                            "higher" if peer.epoch > mine else "the same", mine)
                await self._demote(peer)
                return
        blockers = self.key_blockers(candidacy=False)
        if blockers:
            log.error("this node becomes standby: the peer link to %s refuses its cluster "
                      "key (or it theirs), and the main wins a key dispute. Copy the "
                      "cluster's key file here", ", ".join(blockers))
            await self._demote(None)
            return
        if gap > self.renew_s:
            log.warning("the failover tick ran %.1f s late (was this process paused?): not "
                        "acting until every peer has answered a probe (epoch %d)", gap, mine)
            self.revalidating_since = now
            self.start_probe()
            return
        if self.revalidating_since is not None:
            silent = [p for p in self.peers.values() if not self.answered(p)]
            if silent and now - self.revalidating_since < self.lease_s:
                return  # still waiting for fresh evidence from every peer
            self.revalidating_since = None
            self.end_probe()
            if silent:
                log.warning("after the pause, %s did not answer within a lease: giving "
                            "epoch %d up (a peer may have taken over); this node becomes "
                            "standby", ", ".join(p.name or p.address for p in silent), mine)
                await self._demote(None)
                return
            log.info("revalidated: every peer answered after the pause and none is active "
                     "above epoch %d: still the active node", mine)
        self.failover.fence_until = now + self.renew_s

    def _yields_to(self, peer: PeerView) -> bool:
        """Between two actives with the same epoch: the main keeps it, then the lower name."""
        if self.role is Role.MAIN and peer.role != "main":
            return False
        if peer.role == "main" and self.role is not Role.MAIN:
            return True
        return peer.name < self.node.settings.node_name

    async def _tick_standby(self, now: float) -> None:
        active = [p for p in self.peers.values()
                  if p.state == "active" and self.heard(p, self.lease_s)]
        if active:
            self.seen_active = True
            self._candidacy_problem = None
            leader = max(active, key=lambda p: p.epoch)
            url = leader.api[0] if leader.api else leader.address
            if self.failover.status.active != url or self.failover.status.epoch != self.max_epoch():
                self.failover.update(active=url, epoch=self.max_epoch())
            if self.role is Role.MAIN:
                self.main_standby_since = self.main_standby_since or now
                if (self.auto_switch_back and now - self.main_standby_since >= self.hold_down_s
                        and self._handover is None):
                    self._handover = asyncio.create_task(self._take_back(leader))
            return
        self.main_standby_since = None
        if self.failover.status.active is not None:
            self.failover.update(active=None)  # never send clients to a node gone silent
        wait = self._standby_wait()
        silent = all(not self.heard(p, wait) for p in self.peers.values()
                     if p.state == "active")
        if now - self.watching_since < wait or not silent:
            return
        if self.role is not Role.MAIN and self._other_candidate_first():
            return
        if self._candidacy is None or self._candidacy.done():
            # a task: connecting the routers may take connect_timeout_ms, and the
            # heartbeats must go on meanwhile
            self._candidacy = asyncio.create_task(
                self._take_over(f"no active node heard for {wait * 1000:.0f} ms"),
                name="failover candidacy")

    def _standby_wait(self) -> float:
        """How long a standby hears no active node before it stands: one lease, and two
        heartbeats more for a backup at a cold start (the main wins the tie)."""
        return self.lease_s if self.role is Role.MAIN or self.seen_active \
            else self.lease_s + 2 * self.heartbeat_s

    def next_tick_s(self) -> float:
        """A standby ticks again at the instant its wait for the active node ends, when
        that comes before the next heartbeat: the takeover is not a heartbeat late."""
        delay = self.heartbeat_s
        if self.active:
            return delay
        wait = self._standby_wait()
        expiry = max([self.watching_since + wait,
                      *(p.heard + wait for p in self.peers.values() if p.state == "active")])
        left = expiry - self.clock()
        if left < delay and self.last_tick <= expiry:
            # due before the next heartbeat, or already past while the last tick ran just
            # before it (a tick that found the node not yet silent): tick at the expiry
            return max(left, 0.0) + 0.001
        return delay

    def _other_candidate_first(self) -> bool:
        """Among standby backups that reach their routers, the lowest name goes first."""
        me = self.node.settings.node_name
        return any(p.state == "standby" and p.role == "backup" and p.routers_online
                   and p.name and p.name < me and self.heard(p, self.lease_s)
                   for p in self.peers.values())

    def _candidacy_failed(self, problem: str, level: int, text: str) -> None:
        if self._candidacy_problem != problem:
            log.log(level, "%s", text)
            self._candidacy_problem = problem

    async def _take_over(self, why: str) -> None:
        refused = self.key_blockers(candidacy=True)
        if refused:
            self._candidacy_failed(
                "key", logging.ERROR,
                f"not taking over: the peer link to {', '.join(refused)} refuses our key "
                "(or we its), and this backup has never been confirmed by the main: its "
                "cluster key may not be the cluster's. Copy the main's key file here"
                if self.confirmed_main is None else
                f"not taking over: the main ({', '.join(refused)}) refuses our key (or we "
                "its); the main wins a key dispute. Copy the main's key file here")
            return
        stalls = self.stalls
        if not await self.node.connect_all_links(self.connect_timeout_s):
            offline = self.node.offline_routers()
            self._candidacy_failed(
                "routers", logging.WARNING,
                f"not taking over ({why}): this node does not reach every router (offline: "
                f"{', '.join(offline)}); trying again at every heartbeat")
            return
        # the cluster may have moved while the routers were connecting
        if self.active or any(p.state == "active" and self.heard(p, self.lease_s)
                              for p in self.peers.values()):
            return
        if self.stalled_since(stalls):
            log.info("candidacy abandoned: this process stalled while it connected its "
                     "routers; watching the other nodes for a whole lease again")
            return
        self._candidacy_problem = None
        epoch = self.node.epochs.next(self.max_epoch())  # persisted before use
        self.my_epoch = epoch
        self.failover.fence_until = self.clock() + self.renew_s
        self.failover.update(state=State.ACTIVE, epoch=epoch, active=None)
        log.warning("this node is now active (epoch %d): %s", epoch, why)
        self.send_heartbeats()

    async def _demote(self, leader: PeerView | None) -> None:
        url = (leader.api[0] if leader and leader.api else leader.address if leader else None)
        self.my_epoch = None
        self.revalidating_since = None
        self.end_probe()
        self.failover.fence_until = None
        self.failover.update(state=State.STANDBY, active=url, epoch=self.max_epoch())
        self.send_heartbeats()
        await self.node.close_cold_links()

    # -- switch back ---------------------------------------------------------------------
    async def _take_back(self, leader: PeerView) -> None:
        """The main asks the active backup to hand over (a planned switch back)."""
        try:
            assert self.link is not None
            # links the backup holds alone (standby_link cold) can only open once it let go
            if not await self.node.connect_all_links(self.connect_timeout_s, cold=False):
                log.warning("switch back postponed: this node does not reach every router")
                return
            stalls = self.stalls
            sent = self.clock()
            reply = await self.link.request(
                leader.address, {"type": "handover", "epoch": self.max_epoch()},
                timeout=self.renew_s + self.lease_s)
            released = reply.get("released")
            if not isinstance(released, int):
                log.warning("switch back refused by %s: %s", leader.name, reply.get("error"))
                return
            leader.state = "standby"
            leader.epoch = max(leader.epoch, released)
            # The backup let go no earlier than this request was sent plus the time it
            # spent draining, and stands again after a lease without an active node: this
            # node takes the role only while that is a margin (lease - renew deadline, as
            # between an active node's fence and a standby's takeover) away, so that its
            # first heartbeat reaches the backup first; and only if no node has taken it
            # meanwhile. A main slowed down here (a starved CPU) leaves the role to the
            # next election instead of taking it beside a backup that stood again.
            drained = reply.get("drained_s")
            deadline = sent + (drained if isinstance(drained, (int, float)) else 0.0) \
                + self.renew_s
            if not await self.node.connect_all_links(self.connect_timeout_s):
                log.error("switch back: the backup handed over but this node could not "
                          "connect every router (standby_link cold) within %.1f s; no node "
                          "is active until one takes over after a lease",
                          self.connect_timeout_s)
                return
            if self.stalled_since(stalls):
                log.warning("switch back abandoned: this process stalled meanwhile; the "
                            "backup handed over, so a node takes over after a lease")
                return
            if self.clock() > deadline:
                log.warning("switch back abandoned: this node took %.2f s to take the role "
                            "the backup let go (at most %.2f s: the backup may stand again "
                            "after a lease); a node takes over after a lease",
                            self.clock() - sent, deadline - sent)
                return
            taken = [p for p in self.peers.values()
                     if p.state == "active" and self.heard(p, self.lease_s)]
            if taken:
                log.warning("switch back abandoned: %s took the active role meanwhile "
                            "(epoch %d)", taken[0].name or taken[0].address, taken[0].epoch)
                return
            epoch = self.node.epochs.next(max(released, self.max_epoch()))
            self.my_epoch = epoch
            self.failover.fence_until = self.clock() + self.renew_s
            self.failover.update(state=State.ACTIVE, epoch=epoch, active=None)
            log.warning("switched back: the main is active again (epoch %d)", epoch)
            self.send_heartbeats()
        except (TimeoutError, TielineError, OSError) as exc:
            log.warning("switch back failed (%s); will try again", exc)
        finally:
            self._handover = None
            self.main_standby_since = self.clock()

    async def _release_for_handover(self, requester: PeerView) -> dict[str, Any]:
        """On the active backup: drain, become standby, give the epoch up."""
        if not self.active:
            return {"released": self.node.epochs.epoch}
        released = self.my_epoch
        if requester.role != "main":
            return {"error": "only the main may ask for the active role"}
        self.failover.update(active=requester.api[0] if requester.api else requester.address)
        self.failover.draining = True
        began = self.clock()
        try:
            drained = await self.node.routing.drain(self.renew_s)
            if not drained:
                log.warning("handover: requests still in flight after %.1f s", self.renew_s)
            await self._demote(requester)
            # the main takes the role now: it is no silence of an active node. Stand again
            # only after a whole lease without one (the main gives up the switch back if
            # it cannot take the role well inside that)
            self.watching_since = self.clock()
        finally:
            self.failover.draining = False
        log.warning("this node is now standby: handed over to %r (epoch %s released)",
                    requester.name or requester.address, released)
        return {"released": max(released or 0, self.node.epochs.epoch),
                "drained_s": round(self.clock() - began, 4)}

    async def switch_back(self) -> dict[str, Any]:
        if self.role is Role.MAIN:
            return await self._switch_back_here()
        main = next((p for p in self.peers.values() if p.role == "main"), None)
        if main is None or self.link is None:
            raise Refused("the main is not connected; it cannot take the active role back")
        return await self.link.request(main.address, {"type": "switch_back"},
                                       timeout=self.renew_s + 2 * self.lease_s)

    async def _switch_back_here(self) -> dict[str, Any]:
        if self.role is not Role.MAIN:
            return {"error": "only the main switches back"}
        if self.active:
            return {"switched": False, "reason": "the main is already active"}
        active = [p for p in self.peers.values()
                  if p.state == "active" and self.heard(p, self.lease_s)]
        if not active:
            return {"switched": False, "reason": "no active backup; the main takes over by "
                                                 "itself after one lease"}
        await self._take_back(max(active, key=lambda p: p.epoch))
        return {"switched": self.active, "epoch": self.my_epoch}
