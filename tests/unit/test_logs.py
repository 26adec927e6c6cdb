"""RateLimitedLog: each kind of event at most once per interval at its level, bounded."""

from __future__ import annotations

import logging

from tieline import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _levels(caplog) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def test_each_kind_once_per_interval_and_the_held_back_counted(caplog):
    caplog.set_level(logging.DEBUG, logger="tieline.test")
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("tieline.test"), 10.0, clock=clock)
    assert limited.log("key", logging.WARNING, "refused %s", "a")
    assert not limited.log("key", logging.WARNING, "refused %s", "b")
    assert limited.log("garbage", logging.WARNING, "garbage from %s", "a")  # another kind
    clock.now = 5.0
    assert not limited.log("key", logging.WARNING, "refused %s", "c")
    clock.now = 10.0
    assert limited.log("key", logging.WARNING, "refused %s", "d")
    assert _levels(caplog) == [
        (logging.WARNING, "refused a"), (logging.DEBUG, "refused b"),
        (logging.WARNING, "garbage from a"), (logging.DEBUG, "refused c"),
        (logging.WARNING, "refused d (2 more like it in the last 10 s)"),
    ]


def test_it_remembers_at_most_max_keys():
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("tieline.test"), 60.0, max_keys=3, clock=clock)
    for n in range(1000):
        limited.log(f"origin {n}", logging.WARNING, "refused")
    assert len(limited._last) == 3
    assert limited.log("origin 0", logging.WARNING, "refused")  # forgotten: said again
