"""Run ``tieline`` with its event loop's lateness recorded: ``python tests/chaos/lagged.py
LAGFILE emulate videohub --listen ...``.

The chaos checker reads a router's command log for the time a command arrived; an
emulator process that runs late (the machine overloaded) logs it late, and the command
seems to have been written after its node stood down. This wrapper starts a sampler in
the process's event loop, as the harness samples its own (``History.lag``): each wake-up
more than :data:`~tests.chaos.history.LAG_RECORDED_S` late is one line ``TIME LATE`` in
LAGFILE, written at once (an emulator is killed, not stopped, when its router restarts).
The program itself is ``tieline``'s own command line, unchanged.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.chaos.history import LAG_RECORDED_S  # noqa: E402


async def sample(record: Callable[[float, float], object], every_s: float = 0.01) -> None:
    """Record ``(time, seconds late)`` of each wake-up of this event loop more than
    :data:`~tests.chaos.history.LAG_RECORDED_S` late (the harness samples its own loop with
    it too: ``History.lag``)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + every_s
        await asyncio.sleep(every_s)
        late = loop.time() - due
        if late > LAG_RECORDED_S:
            record(time.time(), round(late, 4))


def main() -> None:
    lagfile, args = sys.argv[1], sys.argv[2:]
    out = open(lagfile, "a", buffering=1)  # noqa: SIM115 - line-buffered for the process's life
    real_run = asyncio.run

    def run(main: Coroutine[Any, Any, Any], **kwargs: Any) -> Any:
        async def with_sampler() -> Any:
            sampler = asyncio.create_task(sample(
                lambda t, late: out.write(f"{t:.4f} {late:.4f}\n")))
            try:
                return await main
            finally:
                sampler.cancel()

        return real_run(with_sampler(), **kwargs)

    asyncio.run = run  # type: ignore[assignment]
    from tieline.cli import main as tieline

    sys.argv = ["tieline", *args]
    tieline()


if __name__ == "__main__":
    main()
