"""Chaos runs on demand: ``python tests/chaos/run.py --strategy lease --minutes 30 [--seed N]``.

Without ``--seed`` each run draws a random seed and prints it first. A long run is a
series of rounds (``--round-s`` of faults each, then heal, settle and check, on a fresh
cluster), so that a failure points at a few minutes of history, not thirty; every round
prints its seed and verdict, and a failing one its counter-example and fault schedule.
Everything a round made stays under ``--out`` (default: a new temporary folder).
Exit status: 0 when every round passed, 1 otherwise.

``python tests/chaos/run.py --report FOLDER`` reads back every round under FOLDER and
counts *every* counter-example of each property (a round's report shows only the first),
sorted by what they say; ``--markdown FOLDER...`` prints several runs' counts side by side
as the tables of docs/reliability.md.
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

from tests.chaos.checker import every_violation, summary  # noqa: E402
from tests.chaos.history import History  # noqa: E402


def kind_of(summary_line: str) -> str:
    """A violation's summary without its times, numbers and names: what kind it is."""
    import re

    text = re.sub(r"\+\d+\.\d+s|\bc\d+#\d+|\b\d+\b", "N", summary_line)
    return re.sub(r"node [a-z]\b", "node X", text)


def report(folder: Path) -> dict:
    """Every counter-example of every round under ``folder``, counted by kind."""
    rounds = sorted(folder.glob("round-*/history.json"))
    kinds: Counter = Counter()
    failed_rounds = 0
    totals: dict[str, Counter] = {"faults": Counter(), "operations": Counter(),
                                  "commands": Counter()}
    grants = 0
    for path in rounds:
        history = History.load(path)
        found = every_violation(history)
        failed_rounds += bool(found)
        kinds.update(f"property {v.prop}: {kind_of(v.summary)}" for v in found)
        counts = summary(history)
        for key in totals:
            totals[key].update(counts[key])
        grants += counts["grants"]
    return {"rounds": len(rounds), "failed_rounds": failed_rounds,
            "violations": dict(kinds.most_common()), "grants": grants,
            **{k: dict(v.most_common()) for k, v in totals.items()}}


def markdown(folders: list[Path]) -> str:
    """The reports of several runs (one folder each, e.g. one per strategy) as the tables
    of docs/reliability.md: faults by kind, operations by outcome, verdicts."""
    reports = {f.name: report(f) for f in folders}
    names = list(reports)
    out = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label in (("rounds", "rounds"), ("failed_rounds", "rounds failed"),
                       ("grants", "epochs granted")):
        out.append(f"| {label} | " + " | ".join(str(reports[n][key]) for n in names) + " |")
    for section, title in (("faults", "faults injected"), ("operations", "client operations"),
                           ("commands", "commands the routers received from nodes")):
        keys = sorted({k for n in names for k in reports[n][section]},
                      key=lambda k: -sum(reports[n][section].get(k, 0) for n in names))
        out.append(f"| **{title}** | " + " | ".join(
            str(sum(reports[n][section].values())) for n in names) + " |")
        out += [f"| {k} | " + " | ".join(str(reports[n][section].get(k, 0)) for n in names)
                + " |" for k in keys]
    verdicts = ["", "Counter-examples (every one, by kind):", ""]
    for n in names:
        found = reports[n]["violations"]
        verdicts.append(f"- {n}: " + ("none" if not found else "; ".join(
            f"{count} x {kind}" for kind, count in found.items())))
    return "\n".join(out + verdicts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", choices=["lease", "peer_sync", "etcd"], default="lease")
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, help="the first round's seed (then seed+1 …)")
    parser.add_argument("--round-s", type=float, default=120.0,
                        help="seconds of faults per round (default 120)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stop-on-failure", action="store_true")
    parser.add_argument("--report", type=Path, metavar="FOLDER",
                        help="count every counter-example of the rounds under FOLDER")
    parser.add_argument("--markdown", type=Path, nargs="+", metavar="FOLDER",
                        help="the reports of several FOLDERs as docs/reliability.md's tables")
    args = parser.parse_args(argv)
    if args.report:
        print(json.dumps(report(args.report), indent=1))
        return 0
    if args.markdown:
        print(markdown(args.markdown))
        return 0
    from tests.chaos.harness import run_sync
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
