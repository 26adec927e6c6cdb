"""The short chaos runs of the test suite: fixed seeds, so a failure reproduces.

Each run is a real cluster (``tieline run`` processes in network namespaces, a Videohub and
an SW-P-08 emulator behind proxies), three clients and a panel at work, and the seeded
nemesis for ``SHORT_S`` seconds; then heal, liveness, settle, and the checker
(tests/chaos/checker.py). A failure prints the seed, the first counter-example of each
property broken and the fault schedule; replay it with
``python tests/chaos/run.py --strategy STRATEGY --seed SEED --minutes 1 --round-s SHORT_S``.
Longer runs: tests/chaos/run.py (docs/reliability.md).
"""

from __future__ import annotations

import pytest

from .harness import chaos_run
from .net import why_unavailable

#: seconds of faults per short run
SHORT_S = 25.0


@pytest.mark.parametrize(("strategy", "seed"), [("lease", 1)])
async def test_short_chaos_run(strategy, seed, tmp_path):
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    result = await chaos_run(strategy, tmp_path / "run", seed, SHORT_S)
    assert result.passed, result.report()
