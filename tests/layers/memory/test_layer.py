"""InMemoryLayer behaviour a user relies on (both twins)."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from invariants import check_invariants


def test_set_get_delete_len_contains(Layer) -> None:
    cache = Layer(max_size=100)
    assert cache.get("a") is None
    assert cache.get("a", "dflt") == "dflt"
    cache.set("a", 1)
    cache.set("b", None)  # None is a value like any other
    assert cache.get("a") == 1
    assert cache.get("b", "dflt") is None
    assert "a" in cache and "b" in cache and "c" not in cache
    assert len(cache) == 2
    cache.set("a", 2)  # overwrite in place
    assert cache.get("a") == 2 and len(cache) == 2
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert "a" not in cache and cache.get("a") is None
    check_invariants(cache)


def test_none_and_equal_but_distinct_keys(Layer) -> None:
    cache = Layer(max_size=10)
    cache.set(None, "none")
    cache.set((1, "x"), "tuple")
    cache.set(10**30, "big")
    assert cache.get(None) == "none"
    assert cache.get((1, "x")) == "tuple"  # a new but equal tuple
    assert cache.get(int("1" + "0" * 30)) == "big"
    assert cache.get(1.0) is None and cache.get(True) is None
    cache.set(1, "one")
    assert cache.get(1.0) == "one" and cache.get(True) == "one"  # Python equality: 1 == 1.0 == True
    check_invariants(cache)


def test_size_bound_holds_and_evictions_are_counted(Layer) -> None:
    cache = Layer(max_size=50)
    for i in range(1_000):
        cache.get(i)
        cache.set(i, i)
        assert len(cache) <= 50
        assert cache.get(i) == i  # read your own writes, even when admission declined it
    stats = cache.stats()
    assert stats.size == len(cache) == 50
    assert stats.evictions == 1_000 - 50
    # The last key was turned away: counted as evicted, and readable until the next write.
    assert sum(cache.get(i) is not None for i in range(1_000)) == 51
    cache.set("next", 1)
    assert cache.get(999) is None and len(cache) == 50
    check_invariants(cache)


def test_frequent_keys_survive_a_scan(Layer) -> None:
    # The reason for W-TinyLFU: a one-pass scan must not flush the hot set.
    cache = Layer(max_size=100)
    hot = list(range(50))
    for _ in range(20):
        for key in hot:
            if cache.get(key) is None:
                cache.set(key, key)
    for key in range(10_000, 20_000):  # scan of keys seen once
        if cache.get(key) is None:
            cache.set(key, key)
    assert sum(cache.get(key) is not None for key in hot) >= 45
    assert cache.stats().rejections > 0


def test_ttl_expiry_with_injected_clock(Layer, clock) -> None:
    cache = Layer(max_size=10, ttl=10, clock=clock)
    cache.set("default", 1)
    cache.set("short", 2, ttl=1.5)
    cache.set("delta", 3, ttl=timedelta(seconds=5))
    cache.set("forever", 4, ttl=math.inf)
    clock.advance(1.49)
    assert cache.get("short") == 2
    clock.advance(0.01)  # exactly at the deadline: expired
    assert cache.get("short") is None and "short" not in cache
    clock.advance(3.5)
    assert "delta" not in cache and cache.get("default") == 1
    clock.advance(5.0)
    assert cache.get("default") is None
    clock.advance(10_000)
    assert cache.get("forever") == 4
    assert len(cache) == 1
    assert cache.stats().expirations == 3
    check_invariants(cache)


def test_expired_entries_are_reclaimed_without_reads(Layer, clock) -> None:
    cache = Layer(max_size=10_000, clock=clock)
    for i in range(5_000):
        cache.set(i, i, ttl=60 + i % 7200)  # deadlines spread over two hours
    clock.advance(3 * 3600)
    cache.set("trigger", 1)  # any write reclaims what expired
    inside = cache._internals()
    assert inside["policy"].entries == 1
    assert inside["slot_count"] == 5_000 and len(inside["free"]) == 4_999  # "trigger" reused one
    assert cache.stats().expirations == 5_000
    check_invariants(cache)


def test_zero_ttl_removes_the_old_value(Layer, clock) -> None:
    cache = Layer(max_size=10, clock=clock)
    cache.set("k", "old")
    cache.set("k", "new", ttl=0)
    assert cache.get("k") is None and len(cache) == 0


def test_adjust_ttl(Layer, clock) -> None:
    cache = Layer(max_size=10, clock=clock)
    cache.set("k", 1, ttl=5)
    clock.advance(4)
    assert cache.adjust_ttl("k", 10) is True
    clock.advance(9)
    assert cache.get("k") == 1
    assert cache.adjust_ttl("k", math.inf) is True
    clock.advance(1e6)
    assert cache.get("k") == 1
    assert cache.adjust_ttl("missing", 5) is False
    assert cache.adjust_ttl("k", 0) is True and "k" not in cache
    check_invariants(cache)


@pytest.mark.parametrize("ttl", [-1, -0.5, math.nan, float("-inf")])
def test_bad_ttl_values_are_refused_and_nothing_changes(Layer, ttl) -> None:
    cache = Layer(max_size=10)
    cache.set("k", "old")
    with pytest.raises(ValueError, match="ttl"):
        cache.set("k", "new", ttl=ttl)
    assert cache.get("k") == "old"
    with pytest.raises(ValueError, match="ttl"):
        Layer(max_size=10, ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        cache.adjust_ttl("k", ttl)
    check_invariants(cache)


@pytest.mark.parametrize("ttl", ["10", True, [1], 1j])
def test_ttl_of_wrong_type_is_refused(Layer, ttl) -> None:
    cache = Layer(max_size=10)
    with pytest.raises(TypeError, match="ttl must be seconds"):
        cache.set("k", 1, ttl=ttl)
    assert "k" not in cache


@pytest.mark.parametrize("key", [[1, 2], {"a": 1}, {1}, bytearray(b"x")])
def test_unhashable_keys_get_a_clear_error(Layer, key) -> None:
    cache = Layer(max_size=10)
    for call in (
        lambda: cache.get(key),
        lambda: cache.set(key, 1),
        lambda: cache.delete(key),
        lambda: key in cache,
        lambda: cache.get_frequency_estimate(key),
    ):
        with pytest.raises(TypeError, match="cache keys must be hashable, got unhashable"):
            call()
    assert len(cache) == 0


def test_hash_errors_other_than_type_errors_propagate(Layer) -> None:
    class Broken:
        def __hash__(self) -> int:
            raise RuntimeError("boom")

    cache = Layer(max_size=10)
    with pytest.raises(RuntimeError, match="boom"):
        cache.get(Broken())


def test_eq_errors_propagate_and_leave_the_cache_consistent(Layer) -> None:
    class Key:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def __hash__(self) -> int:
            return 42

        def __eq__(self, other: object) -> bool:
            if self.fail or getattr(other, "fail", False):
                raise RuntimeError("eq failed")
            return self is other

    cache = Layer(max_size=10)
    stored = Key(False)
    cache.set(stored, 1)
    with pytest.raises(RuntimeError, match="eq failed"):
        cache.get(Key(True))
    assert cache.get(stored) == 1
    check_invariants(cache)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_size": 0}, ValueError, "max_size must be > 0"),
        ({"max_size": -5}, ValueError, "max_size must be > 0"),
        ({"max_size": 2.5}, TypeError, "max_size must be an int"),
        ({"max_size": True}, TypeError, "max_size must be an int"),
        ({"max_weight": 10}, ValueError, "needs a weigher"),
        ({"weigher": len}, ValueError, "needs max_weight"),
        ({"max_size": 10, "max_weight": 10, "weigher": len}, ValueError, "not both"),
        ({"max_weight": 0, "weigher": len}, ValueError, "max_weight must be > 0"),
        ({"max_weight": 10, "weigher": 5}, TypeError, "weigher must be callable"),
        ({"max_size": 10, "clock": 3}, TypeError, "clock must be a callable"),
    ],
)
def test_bad_construction_arguments(Layer, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        Layer(**kwargs)


def test_default_bound(Layer) -> None:
    assert Layer().max_size == 10_000


def test_weight_bound(Layer) -> None:
    cache = Layer(max_weight=100, weigher=lambda key, value: len(value))
    for i in range(200):
        cache.get(i)
        cache.set(i, "x" * (1 + i % 20))
        assert cache.stats().weight <= 100
    cache.set("huge", "x" * 101)  # can never fit: dropped, counted as a rejection
    assert "huge" not in cache
    assert cache.stats().max_weight == 100 and cache.stats().max_size is None
    check_invariants(cache)


def test_growing_an_entry_evicts_others(Layer) -> None:
    cache = Layer(max_weight=10, weigher=lambda key, value: len(value))
    for key in "abcde":
        cache.set(key, "xx")
    assert cache.stats().weight == 10
    cache.set("a", "x" * 8)
    assert cache.stats().weight <= 10
    check_invariants(cache)


def test_a_value_that_grows_too_large_replaces_nothing(Layer) -> None:
    cache = Layer(max_weight=10, weigher=lambda key, value: len(value))
    cache.set("a", "xx")
    cache.set("a", "x" * 11)
    assert "a" not in cache  # the old value must not survive a write that cannot be kept


@pytest.mark.parametrize(
    ("weight", "error", "message"),
    [
        (-1, ValueError, "weight >= 0"),
        (1.5, TypeError, "must return an int"),
        (None, TypeError, "must return an int"),
        (True, TypeError, "must return an int"),
    ],
)
def test_bad_weigher_results_are_refused_and_nothing_changes(Layer, weight, error, message) -> None:
    cache = Layer(max_weight=10, weigher=lambda key, value: weight if key == "bad" else 1)
    cache.set("good", 1)
    with pytest.raises(error, match=message):
        cache.set("bad", 1)
    assert "bad" not in cache and cache.get("good") == 1
    check_invariants(cache)


def test_weigher_exception_leaves_the_cache_unchanged(Layer) -> None:
    def weigher(key, value):
        raise KeyError("weigher failed")

    cache = Layer(max_weight=10, weigher=weigher)
    with pytest.raises(KeyError):
        cache.set("k", 1)
    assert len(cache) == 0
    check_invariants(cache)


def test_stats_count_hits_and_misses(Layer) -> None:
    cache = Layer(max_size=10, name="l1")
    cache.set("a", 1)
    cache.get("a"), cache.get("a"), cache.get("b")
    stats = cache.stats()
    assert (stats.name, stats.hits, stats.misses, stats.size) == ("l1", 2, 1, 1)
    assert stats.hit_ratio == pytest.approx(2 / 3)
    assert stats.as_dict()["hit_ratio"] == pytest.approx(2 / 3)


def test_frequency_estimate_and_top_keys(Layer) -> None:
    cache = Layer(max_size=100)
    for key, reads in (("hot", 9), ("warm", 4), ("cold", 1)):
        cache.set(key, key)
        for _ in range(reads):
            cache.get(key)
    assert (
        cache.get_frequency_estimate("hot")
        > cache.get_frequency_estimate("warm")
        > cache.get_frequency_estimate("cold")
    )
    assert cache.get_frequency_estimate("never seen") == 0
    top = cache.get_top_keys(2)
    assert [key for key, _ in top] == ["hot", "warm"]
    assert top[0][1] == cache.get_frequency_estimate("hot")
    with pytest.raises(ValueError):
        cache.get_top_keys(-1)


def test_snapshot(Layer) -> None:
    cache = Layer(max_size=1_000)
    for key in range(100):
        cache.set(key, key)
    for _ in range(5):
        for key in range(10):
            cache.get(key)
    for _ in range(8):
        cache.get("missing hot key")
    snap = cache.snapshot(hot_keys=5)
    assert isinstance(snap.sketch, np.ndarray) and snap.sketch.dtype == np.uint64
    snap.sketch[:] = 0  # a copy: changing it does not touch the cache
    assert cache.get_frequency_estimate(0) > 0
    assert len(snap.hot_keys) == 5
    by_key = {hot.key: hot for hot in snap.hot_keys}
    assert by_key["missing hot key"].misses == 8 and by_key["missing hot key"].hits == 0
    cached_hot = [hot for hot in snap.hot_keys if hot.key != "missing hot key"]
    assert all(hot.key in range(10) and hot.hits == 5 for hot in cached_hot)
    assert snap.stats.hits == 50 and snap.stats.misses == 8
    assert sum(snap.region_weights) == 100


def test_clear_keeps_frequencies(Layer) -> None:
    cache = Layer(max_size=10)
    for key in range(5):
        cache.set(key, key)
        cache.get(key)
    cache.clear()
    assert len(cache) == 0 and cache.get(1) is None
    assert cache.get_frequency_estimate(1) >= 1
    cache.set(1, "again")
    assert cache.get(1) == "again"
    check_invariants(cache)


def test_values_are_released_when_evicted(Layer) -> None:
    import gc
    import weakref

    class Value:
        pass

    cache = Layer(max_size=10)
    refs = []
    for i in range(100):
        value = Value()
        refs.append(weakref.ref(value))
        cache.get(i)
        cache.set(i, value)
    del value
    gc.collect()
    # Alive: the values of the keys it holds (10), and of the last one, turned away by
    # admission but readable until the next write.
    assert sum(ref() is not None for ref in refs) == sum(i in cache for i in range(100)) == 11
    cache.set("next", None)
    gc.collect()
    assert sum(ref() is not None for ref in refs) == sum(i in cache for i in range(100)) <= 10


def test_reentrant_del_during_eviction_is_safe(Layer) -> None:
    # A value's __del__ may call back into the cache while the cache is evicting it.
    cache = Layer(max_size=5)

    class Reentrant:
        def __init__(self, key: int) -> None:
            self.key = key

        def __del__(self) -> None:
            cache.set(("reborn", self.key), self.key)
            cache.get(("reborn", self.key))

    for i in range(50):
        cache.get(i)
        cache.set(i, Reentrant(i))
        check_invariants(cache)
    assert len(cache) <= 5


def test_read_your_own_writes_on_a_full_cache_of_frequent_keys(Layer) -> None:
    # Admission turns new keys away here (every resident is far more frequent), but a key
    # just set is readable until the next new key is written.
    cache = Layer(max_size=1_000)
    for _ in range(20):
        for key in range(1_000):
            if cache.get(key) is None:
                cache.set(key, key)
    rejections = cache.stats().rejections
    found = 0
    for n in range(50):
        cache.set(f"new:{n}", n)
        found += cache.get(f"new:{n}") == n
        assert f"new:{n}" in cache and len(cache) == 1_000
    assert found == 50
    assert cache.stats().rejections == rejections + 50  # each was still turned away ...
    assert cache.get("new:48") is None  # ... and made way for the next
    assert sum(cache.get(key) is not None for key in range(1_000)) == 1_000
    check_invariants(cache)


def test_a_held_key_can_be_overwritten_deleted_and_expire(Layer, clock) -> None:
    cache = Layer(max_size=10, clock=clock)
    for _ in range(5):
        for key in range(10):
            if cache.get(key) is None:
                cache.set(key, key)
    cache.set("new", 1, ttl=5)
    assert cache._internals()["policy"].held >= 0
    cache.set("new", 2)  # a value of a held key replaced: still held, readable
    assert cache.get("new") == 2
    assert cache.delete("new") is True and cache.get("new") is None
    check_invariants(cache)
    cache.set("short", 3, ttl=1)
    clock.advance(2)
    assert cache.get("short") is None and "short" not in cache
    check_invariants(cache)
    cache.set("gone", 4)
    cache.clear()
    assert cache.get("gone") is None and len(cache) == 0
    check_invariants(cache)


def test_a_weighted_write_is_readable_at_once(Layer) -> None:
    cache = Layer(max_weight=100, weigher=lambda key, value: len(value))
    for _ in range(10):
        for key in range(10):
            if cache.get(key) is None:
                cache.set(key, "x" * 10)
    for n in range(20):
        cache.set(f"new:{n}", "y" * (1 + n % 30))
        assert cache.get(f"new:{n}") == "y" * (1 + n % 30)
        check_invariants(cache)
    cache.set(3, "z" * 40)  # an entry that grows keeps its new value
    assert cache.get(3) == "z" * 40
    check_invariants(cache)
