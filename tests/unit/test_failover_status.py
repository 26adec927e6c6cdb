"""What a node says of itself never claims more than it would do: ``Failover.effective``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tieline.errors import NodeStandby
from tieline.events import NodeStatusChanged
from tieline.failover import Failover, NodeStatus, Role, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _failover(role: Role = Role.MAIN) -> tuple[Failover, Clock, list[NodeStatus]]:
    clock = Clock()
    published: list[NodeStatus] = []
    failover = Failover(NodeStatus("a", role, State.STANDBY), lambda e: published.append(
        e.status if isinstance(e, NodeStatusChanged) else e), clock=clock)
    return failover, clock, published


def test_an_active_node_past_its_fence_shows_standby_from_the_first_instant():
    failover, clock, published = _failover()
    failover.fence_until = clock.now + 1.5
    failover.update(state=State.ACTIVE, epoch=1)
    assert failover.effective.text == "Main is active"
    assert [s.state for s in published] == [State.ACTIVE]

    clock.now += 5.0  # a pause: nothing ran, yet whoever asks is told the truth
    assert failover.effective.state is State.STANDBY
    assert failover.effective.text == "Main is standby"
    assert failover.effective.active is None
    assert failover.status.state is State.ACTIVE  # the elector's view: it holds the lease
    with pytest.raises(NodeStandby):
        failover.require_active()

    failover.refresh()  # the strategy's tick announces it, once
    failover.refresh()
    assert [s.state for s in published] == [State.ACTIVE, State.STANDBY]

    failover.fence_until = clock.now + 1.5  # revalidated
    failover.refresh()
    assert [s.state for s in published] == [State.ACTIVE, State.STANDBY, State.ACTIVE]
    failover.require_active()


@given(st.lists(st.tuples(
    st.sampled_from(["tick", "fence", "unfence", "active", "standby", "drain", "undrain"]),
    st.floats(min_value=0, max_value=3)), max_size=30))
def test_the_status_says_active_only_when_a_write_would_be_taken(steps):
    """Whatever happens, in any order: the status says active exactly when a write would
    be taken (while draining, a handover in progress, new writes are refused)."""
    failover, clock, _ = _failover(Role.BACKUP)
    for step, value in steps:
        if step == "tick":
            clock.now += value
        elif step == "fence":
            failover.fence_until = clock.now + value
        elif step == "unfence":
            failover.fence_until = None
        elif step in ("active", "standby"):
            failover.update(state=State(step))
        else:
            failover.draining = step == "drain"
        failover.refresh()
        try:
            failover.require_active()
            takes_writes = True
        except NodeStandby:
            takes_writes = False
        says_active = failover.effective.state is State.ACTIVE
        if failover.draining:  # handing over: in-flight writes finish, new ones refused
            assert not takes_writes
        else:
            assert says_active == takes_writes
