"""Logging what repeats: each kind of event at most once per interval, bounded.

A refused connection, a misbehaving peer or a browser page knocking at an API can repeat
thousands of times a minute. Logging each one floods the log; logging only the first per
source address (the easy way) hides a second, different intruder from the same address.
:class:`RateLimitedLog` logs each *kind* of event (a key the caller chooses: the reason,
the origin) at its level at most once per ``interval_s``, sends the others to DEBUG, and
says in the next line it logs how many it held back. It keeps at most ``max_keys`` keys,
forgetting the oldest, so that an endless stream of new keys cannot grow memory.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimitedLog"]


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
