"""The one per-key count reader (``analytics/accesses.py``) on real layers, each twin: the
accesses of each key since the previous reading, exactly, hottest first; what came before
the baseline counts for nothing; a key that left and came back counts from its return."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache.analytics.accesses import RecentAccesses

from support import IMPLEMENTATIONS


def test_accesses_since_the_previous_reading_hottest_first(Layer: type) -> None:
    layer = Layer(max_size=1_000)
    for key in ("old", "new", "cold"):
        layer.set(key, key)
    for _ in range(1_000):  # before the baseline: not recent
        layer.get("old")
    reader = RecentAccesses(layer)
    assert reader.read(10) == []  # the baseline
    for key, times in (("old", 5), ("new", 50), ("cold", 1)):
        for _ in range(times):
            layer.get(key)
    assert reader.read(10) == [("new", 50), ("old", 5), ("cold", 1)]
    assert reader.read(2) == []  # nothing since
    for _ in range(7):
        layer.get("old")
    assert reader.read(2) == [("old", 7)]


def test_keys_that_keep_missing_are_counted_by_their_misses(Layer: type) -> None:
    layer = Layer(max_size=1_000)
    reader = RecentAccesses(layer)
    reader.read(10)
    for _ in range(30):
        layer.get("never-there")
    found = dict(reader.read(10))
    assert 25 <= found["never-there"] <= 30  # the missed-keys table may drop its first miss


def test_a_key_that_left_and_came_back_counts_from_its_return(Layer: type) -> None:
    layer = Layer(max_size=1_000)
    layer.set("k", 1)
    reader = RecentAccesses(layer)
    reader.read(10)
    for _ in range(100):
        layer.get("k")
    layer.delete("k")
    layer.set("k", 2)
    for _ in range(3):
        layer.get("k")
    assert reader.read(10) == [("k", 3)]  # its new stay; the 100 before it left are lost


def test_a_layer_without_per_key_counts_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="access_counts"):
        RecentAccesses(object())


@settings(max_examples=40, deadline=None)
@given(
    reads=st.lists(st.integers(0, 60), max_size=400),
    n=st.integers(1, 70),
    twin=st.sampled_from(IMPLEMENTATIONS),
)
def test_the_top_n_are_the_exact_counts_of_the_span(reads, n, twin) -> None:
    # Every key held (room for all): the reader's top n are the exact top n of the reads
    # since the baseline, with their exact counts (ties in any order).
    layer = twin.InMemoryLayer(max_size=1_000)
    for key in range(61):
        layer.set(key, key)
        layer.get(key)  # before the baseline
    reader = RecentAccesses(layer)
    reader.read(n)
    for key in reads:
        layer.get(key)
    exact = Counter(reads)
    found = reader.read(n)
    assert len(found) == min(n, len(exact))
    assert all(count == exact[key] for key, count in found)
    counts = [count for _, count in found]
    assert counts == sorted(counts, reverse=True)
    left_out = [count for key, count in exact.items() if key not in dict(found)]
    assert not left_out or not found or max(left_out) <= min(counts)
