"""Reconnect and retry delays: :func:`backoff`, jittered and capped.

Pure (no clock, no I/O), and a module of its own so that what only waits between attempts
(the Python client, the peer link) does not load the device machinery of
:mod:`tieline.devices`, which uses it too and re-exports it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff(
    initial: float = 0.2, factor: float = 1.8, cap: float = 10.0, jitter: float = 0.3,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Reconnect delays: grow by ``factor`` up to ``cap``, each spread by ±``jitter``.

    Pure: pass ``rng`` to make it repeatable.
    """
    rng = rng or random.Random()
    delay = initial
    while True:
        yield delay * (1 + rng.uniform(-jitter, jitter))
        delay = min(cap, delay * factor)
