"""InMemoryLayer's primitives (both twins): add, touch, incr / decr, and copies of values;
atomic between real threads."""

from __future__ import annotations

import math
import pickle
import threading
from typing import Any

import pytest

from multilayercache.core.freshness import Lifetime

from invariants import check_invariants

THREADS = 8


def test_add_stores_only_what_get_would_miss(Layer, clock) -> None:
    cache = Layer(max_size=100, clock=clock)
    assert cache.add("k", 1) is True
    assert cache.add("k", 2) is False and cache.get("k") == 1
    cache.set("short", 1, ttl=1)
    clock.advance(1)
    assert cache.add("short", 2) is True and cache.get("short") == 2  # expired: absent
    cache.set_entry("stale", "old", Lifetime(1, 60))  # fresh 1 s, then stale 60 s
    clock.advance(2)
    assert cache.get("stale") is None
    assert cache.add("stale", "new") is True and cache.get("stale") == "new"
    assert cache.add("gone-at-once", 1, ttl=0) is True and "gone-at-once" not in cache
    assert cache.add_entry("e", "v", Lifetime(10, 5)) is True
    assert cache.get_entry("e").gone_in == pytest.approx(15)
    check_invariants(cache)


def test_add_refuses_bad_input_and_changes_nothing(Layer) -> None:
    cache = Layer(max_size=10)
    with pytest.raises(TypeError, match="hashable"):
        cache.add([1], 1)
    with pytest.raises(ValueError):
        cache.add("k", 1, ttl=-1)
    assert len(cache) == 0


def test_touch_gives_a_new_ttl_and_keeps_the_value(Layer, clock) -> None:
    cache = Layer(max_size=100, clock=clock)
    value = {"v": 1}
    cache.set("k", value, ttl=10)
    clock.advance(9)
    assert cache.touch("k", 100) is True
    assert cache.get("k") is value and cache.remaining_ttl("k") == pytest.approx(100)
    clock.advance(50)
    assert cache.get("k") is value
    assert cache.touch("k", math.inf) is True and cache.remaining_ttl("k") == math.inf
    assert cache.touch("absent", 5) is False and "absent" not in cache
    assert cache.touch("k", 0) is True and "k" not in cache  # 0: over at once
    cache.set_entry("stale", 1, Lifetime(1, 60))
    clock.advance(2)
    assert cache.touch("stale", 10) is False and cache.get("stale") is None
    cache.set("e", 1)
    assert cache.touch_entry("e", Lifetime(10, 20, 5)) is True
    entry = cache.get_entry("e")
    assert (entry.fresh_for, entry.gone_in, entry.refresh_in) == pytest.approx((10, 30, 5))
    with pytest.raises(ValueError):
        cache.touch("e", -1)
    check_invariants(cache)


def test_incr_counts_keeps_the_ttl_and_starts_at_zero(Layer, clock) -> None:
    cache = Layer(max_size=100, clock=clock)
    assert cache.incr("n") == 1 and cache.incr("n", 5) == 6 and cache.decr("n", 2) == 4
    assert cache.get("n") == 4 and cache.remaining_ttl("n") == math.inf
    assert cache.incr("t", ttl=10) == 1
    clock.advance(6)
    assert cache.incr("t", ttl=1_000) == 2  # an existing counter keeps its TTL
    assert cache.remaining_ttl("t") == pytest.approx(4)
    clock.advance(5)
    assert cache.get("t") is None and cache.incr("t", 3, ttl=10) == 3  # expired: restarts
    assert cache.decr("negative", 7) == -7
    check_invariants(cache)


@pytest.mark.parametrize(
    ("stored", "delta", "error"),
    [
        ("text", 1, TypeError),
        (1.5, 1, TypeError),
        (True, 1, TypeError),
        (1, 1.0, TypeError),
        (1, True, TypeError),
        (2**63 - 1, 1, OverflowError),
        (-(2**63), -1, OverflowError),
    ],
)
def test_incr_refuses_what_is_not_a_64_bit_count(Layer, stored, delta, error) -> None:
    cache = Layer(max_size=10)
    cache.set("k", stored)
    with pytest.raises(error):
        cache.incr("k", delta)
    assert cache.get("k") == stored and type(cache.get("k")) is type(stored)
    check_invariants(cache)


def test_weighted_counters(Layer) -> None:
    cache = Layer(max_weight=100, weigher=lambda key, value: 10)
    assert [cache.incr("n") for _ in range(3)] == [1, 2, 3]
    assert cache.stats().weight == 10
    check_invariants(cache)


def test_copies_protect_what_is_cached(Layer) -> None:
    shared, copied = Layer(max_size=10), Layer(max_size=10, copy=True)
    for cache in (shared, copied):
        value = [1]
        cache.set("k", value)
        value.append("changed after set")
        cache.get("k").append("changed after get")
        cache.get_entry("k").value.append("changed after get_entry")
        cache.add("a", value)
        value.clear()
    assert shared.get("k") == []  # the caller's list itself: every change reached the cache
    assert copied.get("k") == [1] and copied.get("a") == [1, "changed after set"]
    assert copied.get("k") is not copied.get("k")
    for copy in ("pickle", "deepcopy", lambda value: pickle.loads(pickle.dumps(value))):
        round_trip = Layer(max_size=10, copy=copy)
        value = {"a": [1]}
        round_trip.set_entry("k", value, Lifetime(10))
        value["a"].append(2)
        found = round_trip.lookup("k", None, None)
        assert found == {"a": [1]} and found is not round_trip.lookup("k", None, None)
    with pytest.raises(TypeError, match="copy"):
        Layer(max_size=10, copy="deep")


def test_add_under_threads_has_exactly_one_winner(Layer) -> None:
    cache = Layer(max_size=1_000)
    for trial in range(30):
        start, wins = threading.Barrier(THREADS), []

        def contend(
            me: int, key: str = f"key:{trial}", start: Any = start, wins: list = wins
        ) -> None:
            start.wait()
            if cache.add(key, me):
                wins.append(me)

        threads = [threading.Thread(target=contend, args=(me,)) for me in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1 and cache.get(f"key:{trial}") == wins[0]
    check_invariants(cache)


def test_incr_under_threads_loses_no_count(Layer) -> None:
    cache = Layer(max_size=1_000)
    start = threading.Barrier(THREADS)

    def count() -> None:
        start.wait()
        for _ in range(200):
            cache.incr("hits")
            cache.set(f"other:{threading.get_ident()}:{_}", _)  # inserts and evictions too

    threads = [threading.Thread(target=count) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("hits") == THREADS * 200
    check_invariants(cache)
