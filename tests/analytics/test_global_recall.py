"""``global_top_keys`` across three real processes with different zipf traffic: its top 10
is the top 10 of the exact counts of the union of their traffic (recall >= 0.9)."""

from __future__ import annotations

from globaltop_support import run_fleet  # noqa: I001


def test_three_instances_recall_of_the_global_top_10(redis_url, prefix) -> None:
    outcome = run_fleet(redis_url, prefix, seed=1, n=10, seconds=3.0, period=0.5)
    assert all(reads >= 10_000 for reads in outcome.reads), outcome.reads
    assert len(outcome.estimated) == 10
    assert outcome.recall(10) >= 0.9, (
        outcome.estimated,
        sorted(outcome.exact.items(), key=lambda item: -item[1])[:12],
    )
    # The instances' contributions are added up: the fleet's hottest key is read more
    # than any one instance alone reads its own hottest.
    assert outcome.estimated[0][1] > 0
