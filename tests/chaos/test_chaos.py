"""The short chaos runs of the test suite: fixed seeds, so a failure reproduces.

Each run is a real cluster (``tieline run`` processes in network namespaces, a Videohub and
an SW-P-08 emulator behind proxies, and for ``etcd`` a real three-member etcd cluster),
three clients and a front panel at work, and the seeded nemesis for ``SHORT_S`` seconds;
then heal, liveness, settle, and the checker (tests/chaos/checker.py). A failure prints
the seed, the first counter-example of each property broken and the fault schedule;
replay it with ``python tests/chaos/run.py --strategy STRATEGY --seed SEED --minutes 1
--round-s 25``. Longer runs: tests/chaos/run.py; results in docs/reliability.md.

**Known defect 1** (tests/chaos/test_defects.py): an SW-P-08 frame is written after the
node's fence expired (after a pause, or under CPU starvation), which property 3 reports as
a change sent to router ``sw`` by a node that no longer held the role. Until it is fixed,
a run whose *only* violations are exactly that is reported as an expected failure
(``xfail``, with the counter-example); any other violation fails the test. Remove
:func:`only_known_defects` with the fix.
"""

from __future__ import annotations

import pytest

from .checker import Violation
from .etcd import etcd_binary
from .harness import chaos_run
from .net import why_unavailable

#: seconds of faults per short run
SHORT_S = 25.0


def only_known_defects(violations: list[Violation]) -> bool:
    """Whether every violation is defect 1: property 3, a change to the SW-P-08 router."""
    return bool(violations) and all(
        v.prop == 3 and " sent router sw a change " in v.summary for v in violations)


@pytest.mark.parametrize(("strategy", "seed"), [("lease", 1), ("peer_sync", 1), ("etcd", 1)])
async def test_short_chaos_run(strategy, seed, tmp_path):
    if reason := why_unavailable():
        pytest.skip(reason)
    if strategy == "etcd" and etcd_binary() is None:
        pytest.skip("the etcd binary is not installed (Debian package etcd-server)")
    result = await chaos_run(strategy, tmp_path / "run", seed, SHORT_S)
    if only_known_defects(result.violations):
        pytest.xfail(f"known defect 1 (test_defects.py):\n{result.report()}")
    assert result.passed, result.report()
