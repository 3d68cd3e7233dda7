"""fork() while a thread of the parent replays sampled accesses into a layer's size-estimate
shadows (``analytics/mrc.py``): the child's layer still answers, samples and estimates.

The replay holds the estimator's lock; in the child that thread is gone, and a lock it held
would stay held forever. The parent's thread holds it deterministically here (``holding``).
"""

from __future__ import annotations

import math

import pytest

from multilayercache.layers.memory.estimates import SAMPLE_BATCH

from faults.forking import holding, in_child, timed

pytestmark = pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")

ANSWER_SECONDS = 1.0


def test_child_estimates_while_the_parent_was_replaying(Layer) -> None:
    layer = Layer(max_size=1000, estimate_sizes=(0.5, 2), estimate_sample_rate=1)
    for key in range(2000):
        layer.get(key)
        layer.set(key, key)
    thread, release = holding(layer.size_estimator._lock)  # a replay in progress
    try:

        def child() -> tuple[dict[float, float], float]:
            def work() -> dict[float, float]:
                for key in range(2 * SAMPLE_BATCH):  # fills the buffer: replays
                    layer.get(key)
                return layer.size_estimates()

            return timed(work)

        estimates, seconds = in_child(child)
    finally:
        release.set()
        thread.join(5)
    assert seconds < ANSWER_SECONDS
    assert all(0 <= ratio <= 1 and not math.isnan(ratio) for ratio in estimates.values())
    assert not math.isnan(layer.size_estimates()[2])  # and the parent goes on
