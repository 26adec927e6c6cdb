"""The short chaos runs of the test suite: fixed seeds, so a failure reproduces.

Each run is a real cluster (``tieline run`` processes in network namespaces, a Videohub and
an SW-P-08 emulator behind proxies, and for ``etcd`` a real three-member etcd cluster),
three clients and a front panel at work, and the seeded nemesis for ``SHORT_S`` seconds;
then heal, liveness, settle, and the checker (tests/chaos/checker.py). A failure prints
the seed, the first counter-example of each property broken and the fault schedule;
replay it with ``python tests/chaos/run.py --strategy STRATEGY --seed SEED --minutes 1
--round-s 25``. Longer runs: tests/chaos/run.py; results in docs/reliability.md.

Defect 1 (an SW-P-08 frame written after the fence, tests/chaos/test_defects.py) showed
here as a property-3 violation on router ``sw``; it is fixed, and any violation fails.
"""

from __future__ import annotations

import pytest

from .etcd import etcd_binary
from .harness import chaos_run
from .net import why_unavailable

#: seconds of faults per short run
SHORT_S = 25.0


@pytest.mark.parametrize(("strategy", "seed"), [("lease", 1), ("peer_sync", 1), ("etcd", 1)])
async def test_short_chaos_run(strategy, seed, tmp_path):
    if reason := why_unavailable():
        pytest.skip(reason)
    if strategy == "etcd" and etcd_binary() is None:
        pytest.skip("the etcd binary is not installed (Debian package etcd-server)")
    result = await chaos_run(strategy, tmp_path / "run", seed, SHORT_S)
    assert result.passed, result.report()
