"""Chaos runs on demand: ``python tests/chaos/run.py --strategy lease --minutes 30 [--seed N]``.

Without ``--seed`` each run draws a random seed and prints it first. A long run is a
series of rounds (``--round-s`` of faults each, then heal, settle and check, on a fresh
cluster), so that a failure points at a few minutes of history, not thirty; every round
prints its seed and verdict, and a failing one its counter-example and fault schedule.
Everything a round made stays under ``--out`` (default: a new temporary folder).
Exit status: 0 when every round passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.chaos.checker import summary  # noqa: E402
from tests.chaos.harness import run_sync  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", choices=["lease", "peer_sync", "etcd"], default="lease")
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, help="the first round's seed (then seed+1 …)")
    parser.add_argument("--round-s", type=float, default=120.0,
                        help="seconds of faults per round (default 120)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stop-on-failure", action="store_true")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"tieline-chaos-{args.strategy}-"))
    print(f"chaos: strategy {args.strategy}, {args.minutes} min, first seed {seed}, "
          f"files in {out}", flush=True)
    deadline = time.time() + args.minutes * 60
    totals: dict[str, Counter] = {"faults": Counter(), "operations": Counter(),
                                  "commands": Counter(), "grants": Counter()}
    rounds = failed = 0
    verdicts: list[dict] = []
    while time.time() < deadline:
        left = deadline - time.time()
        duration = min(args.round_s, max(10.0, left - 20))
        result = run_sync(args.strategy, out / f"round-{rounds:03d}-seed-{seed}", seed,
                          duration)
        rounds += 1
        counts = summary(result.history)
        for key in ("faults", "operations", "commands"):
            totals[key].update(counts[key])
        totals["grants"]["grants"] += counts["grants"]
        print(result.report() if not result.passed else
              f"round {rounds}: seed {seed}: PASS {json.dumps(counts)}", flush=True)
        verdicts.append({"seed": seed, "passed": result.passed,
                         "violations": [{"property": v.prop, "summary": v.summary}
                                        for v in result.violations]})
        if not result.passed:
            failed += 1
            if args.stop_on_failure:
                break
        seed += 1
    print(f"chaos: {rounds} rounds, {failed} failed; totals "
          f"{json.dumps({k: dict(v) for k, v in totals.items()})}", flush=True)
    (out / "summary.json").write_text(json.dumps({
        "strategy": args.strategy, "minutes": args.minutes, "rounds": rounds,
        "failed": failed, "totals": {k: dict(v) for k, v in totals.items()},
        "verdicts": verdicts}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
