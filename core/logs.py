"""Logging what repeats: each kind of event at most once per interval, bounded.

A refused connection, a misbehaving peer or a browser page knocking at an API can repeat
thousands of times a minute. Logging each one floods the log; logging only the first per
source address (the easy way) hides a second, different intruder from the same address.
:class:`RateLimitedLog` logs each *kind* of event (a key the caller chooses: the reason,
the origin) at its level at most once per ``interval_s``, sends the others to DEBUG, and
says in the next line it logs how many it held back. It keeps at most ``max_keys`` keys,
forgetting the oldest, so that an endless stream of new keys cannot grow memory.

A problem that lasts (a server unreachable, a device that answers in a dialect tieline only
half knows, settings that do not match the device) is another case: it should be logged
once when it starts and once when it ends, not every time it is seen again (STYLE.md
point 17). :class:`LogOnce` logs each problem (a key) once until it is cleared, sends its
repeats to DEBUG, and can log the recovery; it is bounded in the same way.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["LogOnce", "RateLimitedLog"]


class RateLimitedLog:
    """Log each kind of event at most once per ``interval_s`` at its level.

    :param logger: where the lines go.
    :param interval_s: the least time between two lines of one kind at their level.
    :param max_keys: kinds remembered at most (the oldest are forgotten first).
    :param clock: monotonic clock (seconds).

    >>> limited = RateLimitedLog(logging.getLogger("tieline.example"), interval_s=10)
    >>> limited.log("wrong key", logging.WARNING, "refused %s: %s", "10.0.0.7", "wrong key")
    True
    >>> limited.log("wrong key", logging.WARNING, "refused %s: %s", "10.0.0.8", "wrong key")
    False
    """

    def __init__(self, logger: logging.Logger, interval_s: float, *, max_keys: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.clock = clock
        self._last: OrderedDict[object, tuple[float, int]] = OrderedDict()

    def log(self, key: object, level: int, message: str, *args: object,
            exc_info: BaseException | None = None) -> bool:
        """Log ``message % args`` at ``level``, or at DEBUG when a line of kind ``key``
        went out at its level less than ``interval_s`` ago.

        :returns: whether it was logged at ``level``.
        """
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            self.logger.debug(message, *args, exc_info=exc_info)
            return False
        if last is not None and last[1]:
            message += " (%d more like it in the last %.0f s)"
            args = (*args, last[1], now - last[0])
        self._last[key] = (now, 0)
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True


class LogOnce:
    """Log each problem once while it lasts, and again only after it was cleared.

    A problem is a key the caller chooses (``"etcd"``, ``f"version {version}"``). The first
    :meth:`log` of a key logs at its level; while the key is held, the next ones go to
    DEBUG. :meth:`clear` ends the problem, and may log that it did (once, however often it
    is called); the next :meth:`log` of the key is logged at its level again.

    :param logger: where the lines go.
    :param max_keys: problems held at most. When one more comes, the one seen longest ago
        is forgotten (logged at its level again if it comes back): keys that a peer or a
        device chooses cannot grow memory.

    >>> problems = LogOnce(logging.getLogger("tieline.example"), max_keys=64)
    >>> problems.log("etcd", logging.WARNING, "etcd unreachable (%s)", "connection refused")
    True
    >>> problems.log("etcd", logging.WARNING, "etcd unreachable (%s)", "timed out")
    False
    >>> problems.clear("etcd", logging.INFO, "etcd reachable again")
    True
    >>> problems.clear("etcd", logging.INFO, "etcd reachable again")
    False
    >>> problems.log("etcd", logging.WARNING, "etcd unreachable (%s)", "timed out")
    True
    """

    def __init__(self, logger: logging.Logger, *, max_keys: int = 256) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.logger = logger
        self.max_keys = max_keys
        self._held: OrderedDict[object, None] = OrderedDict()

    def log(self, key: object, level: int, message: str, *args: object,
            exc_info: BaseException | None = None) -> bool:
        """Log ``message % args`` at ``level`` if the problem ``key`` is not held yet (and
        hold it), at DEBUG if it is.

        :returns: whether it was logged at ``level``.
        """
        if key in self._held:
            self._held.move_to_end(key)
            self.logger.debug(message, *args, exc_info=exc_info)
            return False
        self._held[key] = None
        while len(self._held) > self.max_keys:
            self._held.popitem(last=False)
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def clear(self, key: object = None, level: int = logging.INFO,
              message: str | None = None, *args: object) -> bool:
        """End the problem ``key`` (every problem if ``key`` is None), and log ``message %
        args`` at ``level`` if one was held.

        :returns: whether a problem was held (and so the message logged).
        """
        if key is None:
            held = bool(self._held)
            self._held.clear()
        else:
            held = key in self._held
            self._held.pop(key, None)
        if held and message is not None:
            self.logger.log(level, message, *args)
        return held

    def __contains__(self, key: object) -> bool:
        """Whether the problem ``key`` is held (logged, not cleared since)."""
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)
