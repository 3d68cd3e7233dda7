"""``InMemoryLayer.hot_key_counts``: the hottest keys with counts that keep growing with
their traffic (what ``global_top_keys`` turns into rates), for both twins."""

from __future__ import annotations

import pytest


def test_counts_are_the_hits_and_misses_of_each_key(Layer) -> None:
    l1 = Layer(max_size=100)
    for key, reads in (("hot", 40), ("warm", 12), ("cool", 3)):
        l1.set(key, key)
        for _ in range(reads):
            assert l1.get(key) == key
    for _ in range(5):  # a key that keeps missing is hot too
        assert l1.get("missing") is None
    counts = dict(l1.hot_key_counts(10))
    assert counts["hot"] == 40
    assert counts["warm"] == 12
    assert counts["cool"] == 3
    assert counts["missing"] == 5
    assert [key for key, _ in l1.hot_key_counts(2)] == ["hot", "warm"]


def test_counts_grow_past_where_the_frequency_estimate_saturates(Layer) -> None:
    l1 = Layer(max_size=100)
    l1.set("a", 1)
    l1.set("b", 2)
    for _ in range(500):
        l1.get("a")
    for _ in range(100):
        l1.get("b")
    assert l1.get_frequency_estimate("a") == l1.get_frequency_estimate("b")  # both saturated
    assert l1.hot_key_counts(2) == [("a", 500), ("b", 100)]


def test_it_is_bounded_by_n_and_checks_it(Layer) -> None:
    l1 = Layer(max_size=1_000)
    for i in range(300):
        l1.set(i, i)
        l1.get(i)
    assert len(l1.hot_key_counts(7)) == 7
    assert l1.hot_key_counts(0) == []
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="n"):
            l1.hot_key_counts(bad)
