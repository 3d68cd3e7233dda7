"""Compares two pytest-benchmark runs of ``benchmarks/test_bench_memory.py`` (main's and a pull
request's, made in one CI job on one machine) and fails when a guarded ratio regresses.

    python .ci/compare_benchmarks.py --base MAIN.json... --head PR.json... [--tolerance T]

A runner's speed varies between jobs and within one, so raw times are not compared: each
guarded benchmark is read as a ratio to the ``dict`` baseline over the same keys in the same
runs (``test_get_hit[int]`` / ``test_dict_get_baseline[int]``), each benchmark's time taken
as its lowest median over a side's rounds (a slow round is noise: nothing makes code run faster
than it can), and the pull request fails when one of its ratios exceeds main's by more than
``--tolerance``. The default, 10%, is above the noise measured on one machine
(docs/building.md): a hit or miss ratio varied by up to 6% between single runs of unchanged
code, and by under 2% between two best-of-three sides.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# guarded benchmark: the baseline it is divided by
GUARDED = {
    "test_get_hit[int]": "test_dict_get_baseline[int]",
    "test_get_hit[str]": "test_dict_get_baseline[str]",
    "test_get_miss[int]": "test_dict_get_baseline[int]",
    "test_get_miss[str]": "test_dict_get_baseline[str]",
    "test_set_with_eviction": "test_dict_get_baseline[int]",
    # not test_mixed_zipf_replay: five rounds of one long replay, its ratio varied by 118%
    # over three runs of unchanged code (docs/building.md)
}
TOLERANCE = 0.10


def medians(path: Path) -> dict[str, float]:
    """Each benchmark's median time, by name."""
    runs = json.loads(path.read_text())["benchmarks"]
    return {run["name"]: run["stats"]["median"] for run in runs}


def best_ratios(paths: list[Path]) -> dict[str, float]:
    """Each guarded benchmark's best median over its baseline's, over the rounds ``paths``."""
    rounds = []
    for path in paths:
        times = medians(path)
        missing = sorted({*GUARDED, *GUARDED.values()} - times.keys())
        if missing:
            raise SystemExit(f"{path}: no result for {', '.join(missing)}")
        rounds.append(times)
    best = {name: min(times[name] for times in rounds) for name in rounds[0]}
    return {name: best[name] / best[baseline] for name, baseline in GUARDED.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, nargs="+", required=True, help="main's rounds")
    parser.add_argument("--head", type=Path, nargs="+", required=True, help="the PR's rounds")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help=f"largest allowed rise of a ratio, as a fraction (default {TOLERANCE})",
    )
    args = parser.parse_args(argv)
    base, head = best_ratios(args.base), best_ratios(args.head)
    print(f"{'benchmark':<26}{'baseline':<30}{'main':>7}{'head':>7}{'change':>9}")
    failed = []
    for name, baseline in GUARDED.items():
        change = head[name] / base[name] - 1
        verdict = "REGRESSED" if change > args.tolerance else ""
        print(
            f"{name:<26}{baseline:<30}{base[name]:>7.2f}{head[name]:>7.2f}{change:>+9.1%} {verdict}"
        )
        if verdict:
            failed.append(name)
    if failed:
        print(f"{len(failed)} ratio(s) rose by more than {args.tolerance:.0%}: {', '.join(failed)}")
        return 1
    print(f"no ratio rose by more than {args.tolerance:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
