"""The reference hit ratios of the development traces (``../shared/traces/README.md``) and
the bounds the policy is held to: read by ``hit_ratios.py``, ``compare_peers.py`` and the
slow hit-ratio tests (``tests/tools/test_hit_ratio.py``). Benchmark data, not the library's:
it lives here rather than in the package.
"""

from __future__ import annotations

# Hit ratios (%) from ../shared/traces/README.md: (theine 2.0.0, moka-py 0.5.0, the best of
# every policy on that page), per (trace, size). The first 15 rows are its first table, the
# other 30 its second ("Reference hit ratios (%) on the second part"). "Best of every policy"
# is the best of LRU, ARC, LIRS, S3-FIFO, SIEVE (libCacheSim 0.3.5), theine and moka-py (and
# cachebox LRU / LFU on the first part); libCacheSim's WTinyLFU-1% is not in it.
REFERENCE_HIT_RATIOS: dict[tuple[str, int], tuple[float, float, float]] = {
    ("oltp", 1000): (39.71, 32.64, 40.86),
    ("oltp", 2000): (46.34, 39.57, 47.03),
    ("oltp", 5000): (53.34, 48.85, 55.75),
    ("oltp", 10000): (56.77, 55.77, 62.69),
    ("gli", 500): (33.00, 20.81, 33.22),
    ("gli", 1000): (50.79, 48.89, 50.79),
    ("gli", 1500): (53.57, 53.37, 53.57),
    ("scarab-recs", 25000): (59.08, 57.26, 62.50),
    ("scarab-recs", 50000): (63.59, 65.24, 69.75),
    ("scarab-recs", 100000): (72.24, 72.21, 76.08),
    ("p3", 32768): (18.15, 14.58, 18.15),
    ("p3", 131072): (43.59, 46.24, 50.63),
    ("corda-vault", 10): (0.15, 0.21, 0.30),
    ("corda-vault", 25): (0.39, 0.49, 19.85),
    ("corda-vault", 50): (2.53, 1.08, 33.31),
    ("p2", 32768): (30.92, 23.16, 30.92),
    ("p2", 131072): (62.39, 59.21, 62.39),
    ("p2", 524288): (88.34, 87.91, 89.21),
    ("p6", 32768): (25.80, 24.70, 27.29),
    ("p6", 131072): (77.52, 78.30, 80.57),
    ("p6", 524288): (91.65, 91.63, 93.54),
    ("orm-night", 1000): (66.96, 53.09, 67.67),
    ("orm-night", 3000): (78.88, 73.77, 80.82),
    ("orm-night", 10000): (93.98, 93.36, 94.58),
    ("web07", 300): (45.94, 36.42, 46.64),
    ("web07", 1500): (52.38, 49.79, 56.41),
    ("web07", 5000): (63.03, 60.07, 64.31),
    ("multi2", 600): (51.88, 45.39, 52.46),
    ("multi2", 1200): (60.56, 58.46, 60.56),
    ("multi2", 1800): (68.10, 65.92, 69.34),
    ("2_pools", 100): (47.27, 48.66, 48.66),
    ("2_pools", 200): (50.38, 50.34, 50.38),
    ("2_pools", 500): (51.92, 51.95, 51.95),
    ("cs", 300): (16.22, 12.28, 16.87),
    ("cs", 600): (35.91, 28.79, 35.91),
    ("cs", 1000): (58.31, 56.16, 58.72),
    ("cpp", 50): (55.22, 57.34, 57.34),
    ("cpp", 100): (72.44, 77.26, 77.68),
    ("cpp", 200): (83.14, 82.38, 84.97),
    ("ps", 200): (46.26, 48.69, 48.69),
    ("ps", 500): (56.56, 54.09, 56.77),
    ("ps", 1000): (66.33, 62.83, 66.33),
    ("loop", 250): (22.50, 24.65, 24.65),
    ("loop", 500): (45.23, 49.31, 49.31),
    ("loop", 900): (80.12, 88.83, 88.83),
}

FIRST_PART = list(REFERENCE_HIT_RATIOS)[:15]
"""The rows of the first table of ../shared/traces/README.md (the five original traces)."""

SECOND_PART = list(REFERENCE_HIT_RATIOS)[15:]
"""The rows of its second table (the ten traces added for issue 11)."""

# Which policy is the "best of every policy" on each row (the README names it).
BEST_POLICY_NAMES: dict[tuple[str, int], str] = dict(
    zip(
        REFERENCE_HIT_RATIOS,
        "S3-FIFO S3-FIFO S3-FIFO S3-FIFO LIRS theine theine S3-FIFO ARC ARC theine ARC ARC ARC "
        "ARC theine theine LIRS LIRS S3-FIFO LRU ARC S3-FIFO S3-FIFO S3-FIFO S3-FIFO ARC LIRS "
        "theine LIRS moka-py theine moka-py LIRS theine LIRS moka-py LIRS ARC moka-py LIRS "
        "theine moka-py moka-py moka-py".split(),
        strict=True,
    )
)

# multilayercache 0.1.0 (commit 0a6f3ae) on the same rows: the first part from README.md
# ("How good is it"), the second from ../shared/traces/README.md. Issue 11 requires that no
# first-part row falls more than 0.5 points below these.
BASELINE_HIT_RATIOS: dict[tuple[str, int], float] = dict(
    zip(
        REFERENCE_HIT_RATIOS,
        [
            *(40.36, 46.48, 55.65, 63.17, 33.58, 50.89, 53.60, 62.14, 69.85, 75.30, 18.89),
            *(48.33, 0.34, 19.74, 33.29, 25.90, 62.21, 88.87, 28.08, 80.33, 93.13, 67.18),
            *(79.80, 93.98, 46.06, 56.53, 64.04, 51.05, 58.75, 67.68, 46.75, 49.98, 51.51),
            *(12.45, 22.84, 25.32, 53.01, 75.21, 84.01, 45.03, 54.29, 63.52, 17.25, 42.61),
            63.30,
        ],
        strict=True,
    )
)

# Issue 11's acceptance bounds, in points of hit ratio.
PEER_SLACK = 0.5  # every row >= the better of theine and moka-py, minus this
MEAN_SLACK = 0.5  # mean over the rows >= the mean of "best of every policy", minus this
BASELINE_SLACK = 0.5  # no first-part row below BASELINE_HIT_RATIOS by more than this


def row_bound(row: tuple[str, int]) -> float:
    """The lowest hit ratio (%) issue 11 accepts on one row."""
    theine, moka, _ = REFERENCE_HIT_RATIOS[row]
    bound = max(theine, moka) - PEER_SLACK
    if row in FIRST_PART:
        bound = max(bound, BASELINE_HIT_RATIOS[row] - BASELINE_SLACK)
    return bound
