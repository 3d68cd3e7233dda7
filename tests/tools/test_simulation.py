"""The trace simulator: LRU and OPT against brute force, and the numbers of the shared
trace README (which were computed by other tools)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache.tools.simulation import belady_hits, load_trace, lru_hits, next_uses, replay

from support import trace_path

small_traces = st.lists(st.integers(0, 7), min_size=0, max_size=14)


def brute_force_optimum(trace: list[int], size: int) -> int:
    """Best hits over every admit/evict choice (exponential; tiny traces only)."""
    best = 0

    def search(i: int, cache: frozenset, hits: int) -> None:
        nonlocal best
        if hits + (len(trace) - i) <= best:
            return
        if i == len(trace):
            best = max(best, hits)
            return
        key = trace[i]
        if key in cache:
            search(i + 1, cache, hits + 1)
            return
        search(i + 1, cache, hits)  # bypass
        if len(cache) < size:
            search(i + 1, cache | {key}, hits)
        else:
            for victim in cache:
                search(i + 1, (cache - {victim}) | {key}, hits)

    search(0, frozenset(), 0)
    return best


@settings(max_examples=200, deadline=None)
@given(trace=small_traces, size=st.integers(1, 4))
def test_belady_is_optimal(trace, size) -> None:
    assert belady_hits(trace, size) == brute_force_optimum(trace, size)


@settings(max_examples=200, deadline=None)
@given(trace=small_traces, size=st.integers(1, 4))
def test_lru_matches_a_list_model(trace, size) -> None:
    recency: list[int] = []
    hits = 0
    for key in trace:
        if key in recency:
            hits += 1
            recency.remove(key)
        recency.append(key)
        del recency[:-size]
    assert lru_hits(trace, size) == hits


@settings(max_examples=100, deadline=None)
@given(trace=small_traces)
def test_next_uses(trace) -> None:
    expected = [
        next((j for j in range(i + 1, len(trace)) if trace[j] == trace[i]), len(trace))
        for i in range(len(trace))
    ]
    assert next_uses(np.array(trace, dtype=np.uint64)).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(trace=small_traces, size=st.integers(1, 4))
def test_policy_hits_lie_between_nothing_and_optimum(trace, size) -> None:
    # The layer holds at most ``size`` entries, and the newest key while admission has
    # turned it away (readable until the next insert): ``size + 1`` values at most.
    assert 0 <= replay(trace, size) <= belady_hits(trace, size + 1)


def test_keys_above_two_to_the_63_stay_distinct(tmp_path) -> None:
    keys = np.array([2**64 - 1, 2**63, 2**64 - 1, 2**63 + 1], dtype=np.uint64)
    path = tmp_path / "t.npy"
    np.save(path, keys)
    trace = load_trace(path)
    assert trace.tolist() == [2**64 - 1, 2**63, 2**64 - 1, 2**63 + 1]
    assert lru_hits(trace, 10) == 1 and replay(trace, 10) == 1


def test_load_trace_rejects_bad_arrays(tmp_path) -> None:
    np.save(tmp_path / "2d.npy", np.zeros((2, 2), dtype=np.uint64))
    np.save(tmp_path / "neg.npy", np.array([1, -1], dtype=np.int64))
    np.save(tmp_path / "float.npy", np.array([1.5]))
    for name in ("2d", "neg", "float"):
        with pytest.raises(ValueError):
            load_trace(tmp_path / f"{name}.npy")


# Published values in ../shared/traces/README.md (LRU reproduces the ARC paper's Table IV;
# OPT is the exact Belady MIN with bypass).
REFERENCE = {
    ("gli", 500): (0.95, 34.33),
    ("gli", 1000): (11.21, 53.15),
    ("gli", 1500): (36.56, 57.96),
    ("corda-vault", 10): (0.23, 24.48),
    ("corda-vault", 25): (7.49, 33.33),
    ("corda-vault", 50): (33.27, 33.33),
    ("oltp", 1000): (32.83, 53.62),
}


@pytest.mark.parametrize(("name", "size"), list(REFERENCE))
def test_lru_and_opt_reproduce_the_published_numbers(name, size) -> None:
    trace = load_trace(trace_path(name))
    lru, opt = REFERENCE[(name, size)]
    assert round(100 * lru_hits(trace, size) / len(trace), 2) == lru
    assert round(100 * belady_hits(trace, size) / len(trace), 2) == opt
