"""RouterState: compact crosspoints, reverse tally, labels, protects."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tieline.errors import NotFound, OutOfRange
from tieline.model import (
    UNKNOWN,
    Crosspoint,
    Permission,
    PortKind,
    Principal,
    Protect,
    ProtectKind,
    RouterSpec,
    RouterState,
)

SPEC = RouterSpec("studio", "simulator", ("video", "audio"), 8, 6)


def test_crosspoints_and_reverse_tally():
    state = RouterState(SPEC)
    assert state.source(0, 0) == UNKNOWN
    assert state.apply(Crosspoint(0, 0, 3))
    assert not state.apply(Crosspoint(0, 0, 3))  # unchanged
    assert state.apply(Crosspoint(0, 1, 3))
    assert state.destinations_of(0, 3) == {0, 1}
    assert state.apply(Crosspoint(0, 0, 5))
    assert state.destinations_of(0, 3) == {1}
    assert state.destinations_of(0, 5) == {0}
    assert state.destinations_of(1, 3) == frozenset()
    assert list(state.crosspoints()) == [Crosspoint(0, 0, 5), Crosspoint(0, 1, 3)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5),
                          st.sampled_from([UNKNOWN, *range(8)])), max_size=60))
def test_the_reverse_tally_is_always_the_forward_table_reversed(tallies):
    """Whatever tallies come in, in any order, each source's destinations are exactly the
    destinations whose source it is (the linked lists in arrays never lose or keep one)."""
    state = RouterState(SPEC)
    for level, dest, source in tallies:
        state.apply(Crosspoint(level, dest, source))
    for level in range(2):
        for source in range(8):
            expected = {d for d in range(6) if state.source(level, d) == source}
            assert state.destinations_of(level, source) == expected


def test_tallies_outside_the_configured_size_are_ignored():
    state = RouterState(SPEC)
    assert not state.apply(Crosspoint(0, 6, 1))  # destination 7 of 6
    assert not state.apply(Crosspoint(0, 0, 8))  # source 9 of 8
    assert not state.apply(Crosspoint(2, 0, 1))  # level 3 of 2


def test_labels_and_lookup():
    state = RouterState(SPEC)
    assert state.label(PortKind.SOURCE, 2) == "3"
    state.set_label(PortKind.SOURCE, 2, "CAM 3")
    assert state.find_port(PortKind.SOURCE, "cam 3") == 2
    assert state.find_port(PortKind.SOURCE, "4") == 3
    with pytest.raises(OutOfRange, match=r"source 9 out of range \(1–8\)"):
        state.find_port(PortKind.SOURCE, "9")
    with pytest.raises(NotFound, match="no source labelled 'VT 1'"):
        state.find_port(PortKind.SOURCE, "VT 1")


def test_protect_and_lock_semantics():
    alice = Principal("alice", Permission.ROUTE)
    bob = Principal("bob", Permission.ADMIN)
    protect = Protect(ProtectKind.PROTECT, "alice")
    lock = Protect(ProtectKind.LOCK, "alice")
    assert not protect.blocks(alice) and protect.blocks(bob)
    assert lock.blocks(alice) and lock.blocks(bob)


def test_range_messages_are_one_based():
    with pytest.raises(OutOfRange, match=r"router 'studio': destination 7 out of range \(1–6\)"):
        SPEC.check_destination(6)
    with pytest.raises(NotFound, match="has no level 'aux'; its levels are video, audio"):
        SPEC.level_index("aux")


def test_large_router():
    """4096x4096 with 16 levels, every crosspoint set (its memory is in tests/benchmarks)."""
    state = RouterState(RouterSpec("big", "simulator", tuple(f"l{i}" for i in range(16)),
                                   4096, 4096))
    for level in range(16):
        for dest in range(4096):
            state.apply(Crosspoint(level, dest, (dest * 7 + level) % 4096))
    assert state.source(15, 4095) == (4095 * 7 + 15) % 4096
    assert len(state.destinations_of(3, (5 * 7 + 3) % 4096)) == 1
