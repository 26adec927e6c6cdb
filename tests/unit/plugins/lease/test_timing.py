"""The lease strategy's timing: the default profile and when a standby decides.

A standby ticks again at the instant its wait for the active node ends, when that comes
before its next heartbeat, so a takeover is not up to a heartbeat late (docs/failover.md,
"Timing profiles"). The strategy is built from real settings by a real node; only its
clock is the test's.
"""

from __future__ import annotations

import pytest

from tieline.cluster.peerlink import generate_cluster_key
from tieline.failover import State
from tieline.node import build_node
from tieline.plugins.lease.strategy import (
    DEFAULT_HEARTBEAT_MS,
    DEFAULT_LEASE_MS,
    DEFAULT_RENEW_MS,
    LeaseStrategy,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _backup(settings_dir, **timing) -> tuple[LeaseStrategy, Clock]:
    folder = settings_dir({"tieline.json": {
        "node": {"name": "b", "role": "backup"},
        "routers": [{"id": "r", "driver": "simulator", "levels": ["video"],
                     "sources": 4, "destinations": 4}],
        "failover": {"strategy": "lease", "listen": "127.0.0.1:7451",
                     "peers": ["127.0.0.1:7450"], **timing},
    }})
    generate_cluster_key(folder)
    node = build_node(folder)
    strategy = node.strategy
    assert isinstance(strategy, LeaseStrategy)
    clock = Clock()
    strategy.clock = clock
    strategy.started_at = strategy.last_tick = strategy.watching_since = clock.now
    return strategy, clock


def test_the_default_profile_is_the_documented_one(settings_dir):
    strategy, _ = _backup(settings_dir)
    assert (DEFAULT_HEARTBEAT_MS, DEFAULT_RENEW_MS, DEFAULT_LEASE_MS) == (200, 1000, 1500)
    assert (strategy.heartbeat_s, strategy.renew_s, strategy.lease_s) == (0.2, 1.0, 1.5)
    assert LeaseStrategy.check({}) == []  # heartbeat × 2 ≤ renew < lease holds


def test_a_standby_wakes_when_the_lease_ends_not_a_heartbeat_later(settings_dir):
    strategy, clock = _backup(settings_dir)
    view = next(iter(strategy.peers.values()))
    strategy.seen_active = True
    view.state, view.heard = "active", clock.now
    assert strategy.next_tick_s() == pytest.approx(0.2)  # the lease ends in 1.5 s
    clock.now += 1.4  # the lease ends in 0.1 s, before the next heartbeat
    assert strategy.next_tick_s() == pytest.approx(0.101)
    clock.now += 0.101
    assert not strategy.heard(view, strategy.lease_s)  # the tick then finds it silent
    strategy.last_tick = clock.now
    assert strategy.next_tick_s() == pytest.approx(0.2)


def test_a_lease_that_ended_just_after_the_last_tick_is_not_a_heartbeat_late(settings_dir):
    """The tick ran a hair before the lease ended (not yet silent) and the lease ended
    while the heartbeat went out: the next tick comes at once, not a heartbeat later (the
    failover benchmark saw one such takeover 100 ms late at the fast profile). Once a tick
    has run after the expiry, the cadence is the heartbeat's again: a standby that cannot
    take over (its routers offline) does not spin."""
    strategy, clock = _backup(settings_dir)
    view = next(iter(strategy.peers.values()))
    strategy.seen_active = True
    view.state, view.heard = "active", clock.now
    clock.now += 1.4995
    strategy.last_tick = clock.now  # a tick: the active node was heard 1.4995 s ago
    clock.now += 0.001  # the heartbeat went out; the lease ended meanwhile
    assert strategy.next_tick_s() == pytest.approx(0.001)
    clock.now += 0.001
    strategy.last_tick = clock.now  # the tick after the expiry (a candidacy, say)
    assert strategy.next_tick_s() == pytest.approx(0.2)


def test_a_backup_at_a_cold_start_waits_two_heartbeats_more(settings_dir):
    strategy, clock = _backup(settings_dir)
    clock.now += 1.5 + 0.4 - 0.05  # no active node ever heard: the main wins the tie
    assert strategy.next_tick_s() == pytest.approx(0.051)


def test_an_active_node_ticks_at_its_heartbeat(settings_dir):
    strategy, clock = _backup(settings_dir, heartbeat_ms=100, renew_deadline_ms=300,
                              lease_ms=500)
    strategy.my_epoch = 3
    strategy.failover.fence_until = clock.now + 0.3
    strategy.failover.update(state=State.ACTIVE, epoch=3)
    assert strategy.active
    assert strategy.next_tick_s() == pytest.approx(0.1)


def test_a_silent_peer_link_connection_lives_two_leases(settings_dir):
    """Its keepalive answers may come late through a lossy stretch; dropping it costs a
    reconnect through the same loss, during which no heartbeat goes out on it."""
    strategy, _ = _backup(settings_dir)
    assert strategy.link_timeout_s() == pytest.approx(2 * strategy.lease_s)
