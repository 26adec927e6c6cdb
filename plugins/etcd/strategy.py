"""The etcd strategy: a leader lease in etcd elects exactly one active node among any number.

etcd (a Raft cluster, three or five members in production) is the judge; tieline does not
run a consensus of its own. Keys, under ``/tieline/<cluster>/``:

* ``members/<node>``: each node's presence, ``{"node", "role", "api"}``, bound to the
  node's **session lease** (``ttl_s``), renewed every third of it;
* ``leader``: the active node, the same document, bound to the leader's session lease and
  written with a transaction that succeeds only if the key does not exist. Its **create
  revision is the epoch**: the fencing number every node and client checks (a client that
  saw epoch N refuses a node announcing less);
* ``handover``: a planned switch back in progress, naming the main, on the main's lease.

The other members, for ``tieline status --cluster`` (:meth:`EtcdStrategy.peers_status`), are
what this node read under ``members/`` the last time it looked at the keys (on every
change, and at least every third of ``ttl_s``): a member is ``connected`` while its key is
there (its session lease is alive), ``heard_ms_ago`` is the time since this node last saw
its key, and a member whose key went (stopped, or its lease expired) stays listed as not
connected until this node stops.

Timing, all on the monotonic clock:

* **The holder proves it holds the role** every ``heartbeat_ms``: a transaction puts the
  ``beat`` key only while the leader key is still the one it created (refused: it demotes).
* **The holder stops acting at its renew deadline**: ``renew_deadline_ms`` after it *sent*
  its last accepted proof, and two thirds of ``ttl_s`` after it sent its last answered
  keepalive (etcd renews on receipt, after the send, so the key cannot expire before
  ``send + ttl_s``), whichever comes first. A node partitioned from etcd, or frozen,
  therefore stops, and demotes itself, before another can be promoted.
* **The candidate waits a full lease**: a standby that has not seen the proof change for
  ``lease_ms`` (> renew deadline) on its own clock deletes the leader key, with a
  transaction that fails if the key or the proof changed meanwhile (Kubernetes' leader
  election, with etcd's transaction as the judge), and campaigns, only once it reaches
  every router itself. Otherwise it campaigns as soon as the key goes (expired: at most
  ``ttl_s`` plus etcd's expiry sweep, about 0.5 s; revoked at once when the holder stops
  cleanly).
* At a cold start a backup waits one TTL before its first campaign so that a main started at
  the same time wins.

Switch back: a main that finds a backup active waits ``hold_down_s`` (``"switch_back":
"auto"``) or for ``tieline failover switch-back`` (``"manual"``), then writes the handover
key; the active backup drains its requests, demotes itself and deletes the leader key; the
main, which other candidates let go first while the handover key lives, takes it.

When etcd cannot be reached by anyone, no node is active: that is the price of "exactly
one". Run etcd on three or five machines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any, ClassVar

from tieline import LogOnce, Refused, Role, State, Strategy

from .client import EtcdClient, EtcdError, EtcdUnavailable, KeyValue, parse_endpoint

log = logging.getLogger(__name__)

ETCD_FAILURES = (EtcdError, EtcdUnavailable, TimeoutError, OSError)


def _describe(exc: BaseException) -> str:
    return str(exc) or ("no answer in time" if isinstance(exc, TimeoutError)
                        else type(exc).__name__)


class EtcdStrategy(Strategy):
    """Leader election in etcd (see the module docstring)."""

    name: ClassVar[str] = "etcd"
    settings_schema: ClassVar[dict[str, Any]] = {
        "properties": {
            "endpoints": {
                "type": "array", "minItems": 1, "uniqueItems": True,
                "items": {"type": "string", "pattern": "^http://[^/\\s]+(:[0-9]{1,5})?/?$"},
                "description": "The etcd cluster's client URLs (http://HOST:PORT).",
            },
            "cluster": {
                "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
                "default": "tieline",
                "description": "Name of this tieline cluster: its keys are under "
                               "/tieline/<cluster>/ (several clusters may share one etcd).",
            },
            "ttl_s": {
                "type": "integer", "minimum": 1, "maximum": 60, "default": 2,
                "description": "The session and leader lease, in seconds (etcd grants at "
                               "least 1.5 × its election timeout: 2 s with its defaults).",
            },
            "renew_deadline_ms": {
                "type": "integer", "minimum": 50, "maximum": 60000,
                "description": "The active node stops acting this long after its last "
                               "accepted proof (default: two heartbeats).",
            },
            "heartbeat_ms": {
                "type": "integer", "minimum": 20, "maximum": 10000,
                "description": "How often the active node proves in etcd that it still holds "
                               "the role (a transaction on the leader key; default: a sixth "
                               "of ttl_s).",
            },
            "lease_ms": {
                "type": "integer", "minimum": 100, "maximum": 120000,
                "description": "A standby deposes an active node whose proof it has not seen "
                               "change for this long (default: three heartbeats, as VRRP); "
                               "the key's expiry (ttl_s plus etcd's sweep) is the other way "
                               "out.",
            },
            "request_timeout_ms": {
                "type": "integer", "minimum": 50, "maximum": 10000, "default": 500,
                "description": "How long one call to etcd may take.",
            },
            "connect_timeout_ms": {
                "type": "integer", "minimum": 100, "maximum": 60000, "default": 2000,
                "description": "How long a candidate waits for its routers to come online.",
            },
            "advertise": {
                "type": "string", "format": "ws-url",
                "description": "The WebSocket URL clients use to reach this node "
                               "(default: from the first websocket API).",
            },
            "switch_back": {"enum": ["auto", "manual"], "default": "auto",
                            "description": "When the main returns: take over again after "
                                           "hold_down_s, or on tieline failover switch-back."},
            "hold_down_s": {"type": "number", "minimum": 0, "maximum": 86400, "default": 60,
                            "description": "How long a returning main waits before it "
                                           "takes over again (switch_back auto)."},
        },
        "required": ["endpoints"],
    }

    @classmethod
    def check(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        problems = []
        for url in options.get("endpoints", []):
            try:
                parse_endpoint(url)
            except ValueError as exc:
                problems.append(("endpoints", str(exc)))
        ttl_ms = options.get("ttl_s", 2) * 1000
        heartbeat = options.get("heartbeat_ms", ttl_ms // 6)
        renew = options.get("renew_deadline_ms", 2 * heartbeat)
        lease = options.get("lease_ms", 3 * heartbeat)
        if renew >= ttl_ms:
            problems.append(("renew_deadline_ms", f"expected renew_deadline_ms < ttl_s × 1000 "
                                                  f"(the holder must stop before its lease "
                                                  f"can expire); got {renew} and {ttl_ms}"))
        if not heartbeat * 2 <= renew < lease:
            problems.append(("lease_ms", f"expected heartbeat_ms × 2 ≤ renew_deadline_ms < "
                                         f"lease_ms (the holder must stop before a standby "
                                         f"may depose it); got {heartbeat} / {renew} / {lease}"))
        return problems

    def __init__(self, node: Any, options: dict[str, Any]) -> None:
        super().__init__(node, options)
        self.ttl_s = int(options.get("ttl_s", 2))
        heartbeat_ms = options.get("heartbeat_ms", self.ttl_s * 1000 // 6)
        self.heartbeat_s = heartbeat_ms / 1000
        self.renew_s = options.get("renew_deadline_ms", 2 * heartbeat_ms) / 1000
        self.lease_s = options.get("lease_ms", 3 * heartbeat_ms) / 1000
        self.request_s = options.get("request_timeout_ms", 500) / 1000
        self.connect_timeout_s = options.get("connect_timeout_ms", 2000) / 1000
        self.auto_switch_back = options.get("switch_back", "auto") == "auto"
        self.hold_down_s = float(options.get("hold_down_s", 60))
        self.prefix = f"/tieline/{options.get('cluster', 'tieline')}/"
        self.leader_key = self.prefix + "leader"
        self.handover_key = self.prefix + "handover"
        self.beat_key = self.prefix + "beat"
        self.me = node.settings.node_name
        self.member_key = f"{self.prefix}members/{self.me}"
        self.role = node.settings.role
        self.clock = node.failover.clock
        self.client = EtcdClient(options["endpoints"],
                                 connect_timeout_s=min(1.0, self.request_s * 2))
        self.session: int | None = None  #: this node's session lease
        self.renewed_at = -float("inf")  #: send time of the last keepalive etcd answered
        self.beat_at = -float("inf")  #: send time of the last proof etcd accepted (active)
        #: standby: the (leader, proof) revisions last seen, and when they were first seen
        self.beat_seen: tuple[int, int] | None = None
        self.beat_seen_at = -float("inf")
        self.my_epoch: int | None = None  #: the leader key's create revision while active
        self.started_at = self.clock()
        self.seen_leader = False
        self.standby_since: float | None = None  #: a main following a backup, since
        self.switch_back_asked = False  #: a manual switch back was asked for
        self._wake = asyncio.Event()
        self._problems = LogOnce(log, max_keys=16)
        #: every other member seen under members/: name -> (its document, when last seen)
        self.members: dict[str, tuple[dict[str, Any], float]] = {}
        self.registered: set[str] = set()  #: members whose key was there at the last look
        self.leader_seen: tuple[str | None, int] = (None, 0)  #: (node, epoch) at that look

    # -- helpers ---------------------------------------------------------------------------
    def _document(self) -> bytes:
        return json.dumps({"node": self.me, "role": str(self.role),
                           "api": self.node.api_urls()}).encode()

    @staticmethod
    def _read(kv: KeyValue) -> dict[str, Any]:
        try:
            data = json.loads(kv.value)
        except (ValueError, RecursionError):  # not JSON, or absurdly deep nesting
            return {}
        return data if isinstance(data, dict) else {}

    def _problem(self, key: str, level: int, text: str) -> None:
        """Log a problem once until it clears (:meth:`_cleared`); its repeats at DEBUG."""
        self._problems.log(key, level, "%s", text)

    def _unreachable(self, exc: BaseException) -> None:
        self._problem("etcd", logging.WARNING,
                      f"etcd unreachable ({_describe(exc)}); "
                      + (f"this node stops acting {self.renew_s * 1000:.0f} ms after its "
                         "last renewal" if self.active else "retrying"))

    def _cleared(self, key: str, text: str | None = None) -> None:
        """End a problem; ``text``, if given, is logged (WARNING) when it had been logged."""
        if text:
            self._problems.clear(key, logging.WARNING, "%s", text)
        else:
            self._problems.clear(key)

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        self.failover.update(epoch=0)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._keepalive_loop(), name="etcd keepalive")
                tg.create_task(self._deadline_loop(), name="etcd renew deadline")
                tg.create_task(self._beat_loop(), name="etcd leader proof")
                tg.create_task(self._control_loop(), name="etcd election")
        finally:
            if self.active:
                await self._demote("tieline is stopping")

    async def close(self) -> None:
        """Give the role and the session up at once, so that another node need not wait for
        the lease to expire."""
        if self.session is not None:
            try:
                await self.client.revoke(self.session, timeout=self.request_s)
                log.info("left the etcd election (session lease revoked)")
            except ETCD_FAILURES as exc:
                log.warning("could not revoke the etcd session lease (%s); it expires in "
                            "%d s", _describe(exc), self.ttl_s)
            self.session = None
        await self.client.close()

    # -- the session ------------------------------------------------------------------------
    async def _open_session(self) -> None:
        sent = self.clock()
        lease, granted = await self.client.grant(self.ttl_s, timeout=self.request_s)
        if granted < self.renew_s:
            log.warning("etcd granted a %d s lease, shorter than renew_deadline_ms", granted)
        await self.client.put(self.member_key, self._document(), lease=lease,
                              timeout=self.request_s)
        self.session, self.renewed_at = lease, sent
        self._cleared("etcd", f"etcd reachable again ({self.client.endpoints[0]} …)")

    async def _keepalive_loop(self) -> None:
        """Renew the session every third of the TTL (faster while a renewal is overdue);
        the deadline loop demotes when renewals stop."""
        interval = self.ttl_s / 3
        while True:
            if self.session is not None:
                sent = self.clock()
                try:
                    ttl = await self.client.keepalive(
                        self.session, timeout=min(self.request_s, interval))
                except ETCD_FAILURES as exc:
                    self._unreachable(exc)
                else:
                    if ttl > 0:
                        self.renewed_at = sent
                        self._move_fence()
                        self._cleared("etcd", "etcd reachable again")
                    else:
                        log.warning("the etcd session lease is gone (it expired): "
                                    "this node is not a candidate until it has a new one")
                        self.session = None
                        self._wake.set()
            delay = interval if self.session is not None and self._renewed_recently() \
                else min(interval, 0.1)
            await asyncio.sleep(delay)

    def _deadline(self) -> float:
        """When the active node must have stopped acting: ``renew_deadline_ms`` after its
        last accepted proof (a standby may depose it ``lease_ms`` after it), and two thirds
        of ``ttl_s`` after its last answered keepalive (its key may expire ``ttl_s`` after
        it), whichever comes first."""
        return min(self.beat_at + self.renew_s, self.renewed_at + self.ttl_s * 2 / 3)

    def _move_fence(self) -> None:
        if self.active:
            self.failover.fence_until = self._deadline()

    async def _beat_loop(self) -> None:
        """While active: every heartbeat, put the proof key, only while the leader key is
        still ours. A refusal means it is gone: demote at once."""
        while True:
            epoch, session = self.my_epoch, self.session
            if self.active and epoch is not None and session is not None:
                sent = self.clock()
                try:
                    ours = await self.client.put_if_created(
                        self.leader_key, epoch, self.beat_key, str(epoch).encode(), session,
                        timeout=min(self.request_s, self.renew_s))
                except ETCD_FAILURES:
                    pass  # the deadline loop demotes when it is due; logged by keepalive
                else:
                    if not ours and self.my_epoch == epoch:
                        await self._demote("the leader key is no longer ours")
                    elif ours and self.my_epoch == epoch:
                        self.beat_at = max(self.beat_at, sent)
                        self._move_fence()
            await asyncio.sleep(self.heartbeat_s)

    async def _deadline_loop(self) -> None:
        """Demote at the renew deadline itself, whatever etcd call is still pending (under
        silent packet loss a keepalive waits its whole timeout)."""
        while True:
            left = self._deadline() - self.clock()
            if self.active and left <= 0:
                await self._demote("the leader lease could not be renewed before its "
                                   f"deadline ({self.renew_s * 1000:.0f} ms)")
            await asyncio.sleep(left if self.active and left > 0 else 0.05)

    def _renewed_recently(self) -> bool:
        return self.clock() - self.renewed_at < self.ttl_s / 3 * 1.5

    # -- the election ------------------------------------------------------------------------
    async def _control_loop(self) -> None:
        while True:
            try:
                if self.session is None:
                    await self._open_session()
                revision = await self._evaluate()
            except ETCD_FAILURES as exc:
                self._unreachable(exc)
                await asyncio.sleep(min(self.ttl_s / 3, 0.5))
                continue
            await self._wait_for_change(revision)

    async def _wait_for_change(self, revision: int) -> None:
        """Until a key under the prefix changes after ``revision``, a third of the TTL
        passes (timers), or something here asks (:attr:`_wake`)."""
        self._wake.clear()

        async def watch() -> None:
            async for _event in self.client.watch(self.prefix, revision + 1, prefix=True):
                return

        watcher = asyncio.create_task(watch())
        waker = asyncio.create_task(self._wake.wait())
        try:
            timeout = self.ttl_s / 3
            if not self.active and self.beat_seen is not None:
                timeout = max(0.005, min(timeout, self.beat_seen_at + self.lease_s
                                         - self.clock()))
            await asyncio.wait({watcher, waker}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, waker):
                task.cancel()
            await asyncio.gather(watcher, waker, return_exceptions=True)

    async def _evaluate(self) -> int:
        """Look at the keys and act once; returns the revision seen."""
        kvs, revision = await self.client.get_prefix(self.prefix, timeout=self.request_s)
        keys = {kv.key: kv for kv in kvs}
        self._see_members(keys)
        main = next((self._read(kv) for kv in kvs if kv.key.startswith(self.prefix + "members/")
                     and self._read(kv).get("role") == "main"), None)
        main_url = (main.get("api") or [None])[0] if main else None
        if self.role is Role.BACKUP and main_url and self.failover.status.main != main_url:
            self.failover.update(main=main_url)
        leader = keys.get(self.leader_key)
        handover = keys.get(self.handover_key)
        handover_to = self._read(handover).get("node") if handover else None

        if self.active:
            if leader is None or leader.create_revision != self.my_epoch:
                await self._demote("the leader key is no longer ours")
            elif handover_to and handover_to != self.me:
                await self._release(leader, handover_to)
                return revision
            else:
                return revision
        if leader is not None:
            self._follow(leader)
            beat = keys.get(self.beat_key)
            seen = (leader.create_revision, beat.mod_revision if beat else 0)
            if seen != self.beat_seen:
                self.beat_seen, self.beat_seen_at = seen, self.clock()
            elif (self.clock() - self.beat_seen_at >= self.lease_s
                  and not (handover_to and handover_to != self.me)):
                if await self._depose(leader, seen[1]):
                    await self._campaign()
                return revision
            if self.role is Role.MAIN and self._read(leader).get("role") != "main":
                await self._maybe_switch_back(handover_to)
            return revision
        self.beat_seen = None
        # no leader: campaign, unless a handover reserves the role for another node, or a
        # backup at a cold start gives a main started with it the first chance
        self.standby_since = None
        if self.failover.status.active is not None:
            self.failover.update(active=None)
        if handover_to and handover_to != self.me:
            return revision
        if (self.role is Role.BACKUP and not self.seen_leader
                and self.clock() - self.started_at < self.ttl_s):
            return revision
        await self._campaign()
        return revision

    def _see_members(self, keys: dict[str, KeyValue]) -> None:
        """Remember the members and the leader found in one listing of the keys."""
        now, members = self.clock(), self.prefix + "members/"
        self.registered = set()
        for key, kv in keys.items():
            name = key.removeprefix(members)
            if key.startswith(members) and name and name != self.me:
                self.members[name] = (self._read(kv), now)
                self.registered.add(name)
        leader = keys.get(self.leader_key)
        self.leader_seen = (self._read(leader).get("node"), leader.create_revision) \
            if leader is not None else (None, 0)

    def peers_status(self) -> list[dict[str, Any]]:
        """The other members as this node last read them in etcd (see the module)."""
        leader, epoch = self.leader_seen
        out = []
        for name, (document, seen) in sorted(self.members.items()):
            api = document.get("api")
            url = api[0] if isinstance(api, list) and api and isinstance(api[0], str) \
                else None
            role = document.get("role")
            out.append({
                "address": f"{self.prefix}members/{name}", "url": url, "node": name,
                "role": role if isinstance(role, str) else None,
                "state": ("active" if name == leader else "standby")
                if name in self.registered else None,
                "epoch": epoch, "connected": name in self.registered,
                "heard_ms_ago": round((self.clock() - seen) * 1000), "problem": None,
            })
        return out

    async def _depose(self, leader: KeyValue, beat_revision: int) -> bool:
        """The active node's proof has not changed for ``lease_ms`` on this node's clock:
        it stopped acting at its renew deadline (shorter). Delete its leader key, only if
        neither the key nor the proof changed meanwhile, and only if this node could take
        over (it reaches every router)."""
        if not await self._reach_routers():
            return False
        deposed = await self.client.delete_if_stale(
            self.leader_key, leader.create_revision, self.beat_key, beat_revision,
            timeout=self.request_s)
        if deposed:
            log.warning("the active node '%s' gave no proof for %.0f ms: its leader key is "
                        "deleted", self._read(leader).get("node"), self.lease_s * 1000)
        self.beat_seen = None
        return deposed

    def _follow(self, leader: KeyValue) -> None:
        self.seen_leader = True
        data = self._read(leader)
        url = (data.get("api") or [None])[0] or data.get("node")
        if (self.failover.status.active, self.failover.status.epoch) != (url, leader.create_revision):
            self.failover.update(active=url, epoch=leader.create_revision)
        self._cleared("candidacy")

    async def _reach_routers(self) -> bool:
        """Connect every router (cold links too) and wait for their state: a node takes the
        role only with the routers' state loaded. Says why not, once."""
        if await self.node.connect_all_links(self.connect_timeout_s):
            return True
        self._problem("candidacy", logging.WARNING,
                      "not taking over: this node does not reach every router (offline: "
                      f"{', '.join(self.node.offline_routers())}); trying again")
        return False

    async def _campaign(self) -> None:
        if not await self._reach_routers():
            return
        session = self.session
        if session is None or self.clock() >= self.renewed_at + self.ttl_s * 2 / 3:
            return  # no fresh session: it could expire before we would stop acting
        sent = self.clock()
        created, holder, revision = await self.client.create(
            self.leader_key, self._document(), session, timeout=self.request_s)
        if not created:
            if holder is not None:
                self._follow(holder)
            return
        self._cleared("candidacy")
        self.my_epoch = revision
        self.beat_at = sent  # creating the key proves holding it, as a proof would
        self.failover.fence_until = self._deadline()
        self.failover.update(state=State.ACTIVE, epoch=revision, active=None)
        log.warning("this node is now active (epoch %d, the etcd leader key's revision)",
                    revision)
        try:  # a handover that named this node is complete
            kv, _ = await self.client.get(self.handover_key, timeout=self.request_s)
            if kv is not None and self._read(kv).get("node") == self.me:
                await self.client.delete_if(self.handover_key, kv.create_revision,
                                            timeout=self.request_s)
        except ETCD_FAILURES as exc:
            log.warning("could not clear the handover key (%s); it expires with its lease",
                        exc)

    async def _demote(self, why: str) -> None:
        if not self.active:
            return
        self.failover.fence_until = None
        self.my_epoch = None
        self.failover.update(state=State.STANDBY, active=None)
        log.warning("this node is now standby: %s", why)
        await self.node.close_cold_links()
        self._wake.set()

    # -- switch back ---------------------------------------------------------------------
    async def _maybe_switch_back(self, handover_to: str | None) -> None:
        now = self.clock()
        self.standby_since = self.standby_since or now
        due = self.switch_back_asked or (self.auto_switch_back
                                         and now - self.standby_since >= self.hold_down_s)
        if not due or handover_to == self.me or self.session is None:
            return
        if not await self.node.connect_all_links(self.connect_timeout_s, cold=False):
            self._problem("switch back", logging.WARNING,
                          "switch back postponed: this node does not reach every router")
            return
        self._cleared("switch back")
        await self._ask_handover(self.me)
        self.switch_back_asked = False
        log.warning("switch back: asked the active backup to hand over")

    async def _ask_handover(self, to: str) -> None:
        """Write the handover key naming ``to``, on a lease of its own that is never renewed:
        should ``to`` not take the role, the reservation lapses and any node may."""
        lapse = math.ceil(self.connect_timeout_s + 2 * self.ttl_s)
        lease, _ = await self.client.grant(lapse, timeout=self.request_s)
        await self.client.put(self.handover_key, json.dumps({"node": to}).encode(),
                              lease=lease, timeout=self.request_s)

    async def _release(self, leader: KeyValue, to: str) -> None:
        """On the active node: drain, demote, delete the leader key (a planned handover)."""
        log.warning("handing over to '%s' (switch back)", to)
        self.failover.draining = True
        try:
            if not await self.node.routing.drain(self.renew_s):
                log.warning("handover: requests still in flight after %.1f s", self.renew_s)
            await self._demote(f"handed over to '{to}'")
        finally:
            self.failover.draining = False
        await self.client.delete_if(self.leader_key, leader.create_revision,
                                    timeout=self.request_s)

    async def switch_back(self) -> dict[str, Any]:
        """``tieline failover switch-back``, on any node: the main takes the role back."""
        kvs, _ = await self.client.get_prefix(self.prefix + "members/", timeout=self.request_s)
        main = next((self._read(kv) for kv in kvs if self._read(kv).get("role") == "main"),
                    None)
        if main is None:
            raise Refused("no main is registered in etcd: start the main first; it takes "
                          "the role back from there")
        url = (main.get("api") or [None])[0]
        if self.role is Role.MAIN:
            if self.active:
                return {"switched": False, "reason": "the main is already active"}
            self.switch_back_asked = True
            self._wake.set()
        else:
            await self._ask_handover(str(main.get("node")))
            self._wake.set()
        deadline = self.clock() + self.connect_timeout_s + 3 * self.ttl_s
        while self.clock() < deadline:
            status = self.failover.status
            if (self.role is Role.MAIN and self.active) or (
                    self.role is not Role.MAIN and status.active == url):
                return {"switched": True, "epoch": status.epoch}
            await asyncio.sleep(0.05)
        return {"switched": False, "reason": "the main did not take the role in time"}
