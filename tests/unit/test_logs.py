"""RateLimitedLog: each kind of event at most once per interval at its level, bounded.
LogOnce: each problem once while it lasts, again after it cleared, bounded."""

from __future__ import annotations

import doctest
import logging

import pytest

from tieline import LogOnce, RateLimitedLog


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


# -- LogOnce -----------------------------------------------------------------------------


def test_a_problem_is_logged_once_while_it_lasts_and_again_after_it_cleared(caplog):
    caplog.set_level(logging.DEBUG, logger="tieline.test")
    problems = LogOnce(logging.getLogger("tieline.test"))
    assert problems.log("etcd", logging.WARNING, "etcd unreachable (%s)", "refused")
    assert not problems.log("etcd", logging.WARNING, "etcd unreachable (%s)", "timed out")
    assert problems.log("size", logging.INFO, "size differs")  # another problem
    assert "etcd" in problems and len(problems) == 2
    assert problems.clear("etcd", logging.INFO, "etcd reachable again (%s)", "10.0.0.1")
    assert not problems.clear("etcd", logging.INFO, "etcd reachable again (%s)", "10.0.0.1")
    assert "etcd" not in problems
    assert problems.log("etcd", logging.WARNING, "etcd unreachable (%s)", "refused")
    assert _levels(caplog) == [
        (logging.WARNING, "etcd unreachable (refused)"),
        (logging.DEBUG, "etcd unreachable (timed out)"),
        (logging.INFO, "size differs"),
        (logging.INFO, "etcd reachable again (10.0.0.1)"),
        (logging.WARNING, "etcd unreachable (refused)"),
    ]


def test_clearing_without_a_message_logs_nothing_and_none_clears_all(caplog):
    caplog.set_level(logging.DEBUG, logger="tieline.test")
    problems = LogOnce(logging.getLogger("tieline.test"))
    problems.log("a", logging.WARNING, "a")
    problems.log(("b", 2), logging.WARNING, "b")
    assert problems.clear("a")
    assert problems.clear(None, logging.INFO, "all clear")  # "b" was held
    assert len(problems) == 0
    assert not problems.clear(None, logging.INFO, "all clear")
    assert _levels(caplog) == [(logging.WARNING, "a"), (logging.WARNING, "b"),
                               (logging.INFO, "all clear")]


def test_exc_info_goes_with_the_line(caplog):
    problems = LogOnce(logging.getLogger("tieline.test"))
    error = OSError("no route to host")
    problems.log("link", logging.ERROR, "link down", exc_info=error)
    assert caplog.records[-1].exc_info[1] is error


def test_it_holds_at_most_max_keys_forgetting_the_one_seen_longest_ago():
    problems = LogOnce(logging.getLogger("tieline.test"), max_keys=3)
    for n in range(1000):  # a device inventing a new key each time
        problems.log(f"header {n}", logging.WARNING, "unknown block")
    assert len(problems) == 3
    assert problems.log("header 0", logging.WARNING, "unknown block")  # forgotten: said again
    problems.log("header 998", logging.WARNING, "unknown block")  # seen again: kept longer
    problems.log("new", logging.WARNING, "unknown block")
    assert "header 998" in problems and "header 999" not in problems


def test_max_keys_must_be_positive():
    with pytest.raises(ValueError, match="max_keys must be at least 1, not 0"):
        LogOnce(logging.getLogger("tieline.test"), max_keys=0)


def test_the_examples_in_the_docstrings_hold():
    import tieline.logs

    assert doctest.testmod(tieline.logs).failed == 0
