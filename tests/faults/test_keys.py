"""Hostile keys: ``__hash__`` / ``__eq__`` that raise or call back into the cache, NaN,
``1`` / ``1.0`` / ``True``, many keys sharing one hash, very long keys, keys a layer cannot
store, glob characters in keys and prefixes, one prefix inside another.

What the caller sees: the key's own error (or a ``TypeError`` naming the key's type), with
nothing changed and nothing left in flight; no deadlock; answers that agree with a
``dict`` for what the L1 holds. Unhashable keys, and ``__eq__`` raising inside the L1, are
covered in tests/layers/memory/test_layer.py."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
import redis

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer

from invariants import check_invariants


class Colliding:
    """Keys that all share one hash; equal when their numbers are."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 42

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Colliding) and other.n == self.n

    def __repr__(self) -> str:
        return f"Colliding({self.n})"


class Faulty(Colliding):
    """A key whose ``__hash__`` or ``__eq__`` raises (``fails``: "hash" or "eq")."""

    __slots__ = ("fails",)

    def __init__(self, n: int, fails: str) -> None:
        super().__init__(n)
        self.fails = fails

    def __hash__(self) -> int:
        if self.fails == "hash":
            raise ValueError("hash failed")
        return 42

    def __eq__(self, other: object) -> bool:
        if self.fails == "eq":
            raise ValueError("eq failed")
        return super().__eq__(other)


@pytest.mark.parametrize("fails", ["hash", "eq"])
def test_a_key_whose_hash_or_eq_raises_gets_its_error_and_changes_nothing(
    Layer: type, fails: str
) -> None:
    l1 = Layer(max_size=100)
    cache = MultilayerCache([l1])
    cache.set(Colliding(0), "zero")  # the faulty key's __eq__ meets it: same hash
    bad = Faulty(1, fails)
    for call in (
        lambda: cache.get(bad),
        lambda: cache.set(bad, "one"),
        lambda: cache.get_or_load(bad, lambda key: "one"),
        lambda: cache.delete(bad),
        lambda: cache.get_many([Colliding(0), bad]),
    ):
        with pytest.raises(ValueError, match=f"{fails} failed"):
            call()
    assert cache.in_flight == 0 and len(l1) == 1 and cache.get(Colliding(0)) == "zero"
    check_invariants(l1)


class Reentrant(Colliding):
    """A key whose ``__hash__`` or ``__eq__`` reads and writes the cache it is a key of."""

    __slots__ = ("cache", "when")

    def __init__(self, n: int, cache: Any, when: str) -> None:
        super().__init__(n)
        self.cache, self.when = cache, when

    def __hash__(self) -> int:
        if self.when == "hash":
            self.cache.get("elsewhere")
            self.cache.set("written from __hash__", 1)
        return 42

    def __eq__(self, other: object) -> bool:
        if self.when == "eq":
            self.cache.get("elsewhere")
            self.cache.set("written from __eq__", 1)
        return super().__eq__(other)


@pytest.mark.parametrize("when", ["hash", "eq"])
def test_a_key_that_calls_back_into_the_cache_does_not_deadlock(Layer: type, when: str) -> None:
    l1 = Layer(max_size=100)
    cache = MultilayerCache([l1])
    cache.set(Colliding(0), "zero")
    outcome: list[Any] = []

    def use() -> None:
        key = Reentrant(1, cache, when)
        try:
            outcome.append(cache.get_or_load(key, lambda key: "one"))
            outcome.append(cache.get(Reentrant(1, cache, when)))
        except RuntimeError as refused:  # the pure twin refuses re-entry: also fine
            outcome.append(refused)

    thread = threading.Thread(target=use, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "a key calling back into the cache deadlocked it"
    assert outcome in (["one", "one"],) or isinstance(outcome[-1], RuntimeError), outcome
    assert cache.get(Colliding(0)) == "zero" and cache.in_flight == 0
    check_invariants(l1)


def test_many_keys_sharing_one_hash_stay_distinct_in_bounded_time(Layer: type) -> None:
    """1,000 keys with one hash: the L1 holds a few of them (a guard against hash flooding,
    tests/layers/memory/test_hash_flood.py) and answers every one right, in bounded time;
    a place freed by a delete is taken by the next new key."""
    l1 = Layer(max_size=5_000)
    cache = MultilayerCache([l1])
    start = time.monotonic()
    for n in range(1_000):
        cache.set(Colliding(n), n)
    for n in range(0, 1_000, 3):
        cache.delete(Colliding(n))
    found = {n: cache.get(Colliding(n)) for n in range(1_000)}
    held = {n: value for n, value in found.items() if value is not None}
    assert held == {1: 1, 2: 2}  # the first four got in; 0 and 3 were deleted
    assert l1.stats().rejections == 996
    cache.set(Colliding(999), "back in")
    assert cache.get(Colliding(999)) == "back in"
    assert cache.get_or_load(Colliding(0), lambda key: "loaded") == "loaded"
    assert time.monotonic() - start < 10
    check_invariants(l1)


def test_nan_and_equal_numbers_follow_dict_semantics_in_l1(Layer: type) -> None:
    """L1 keys are Python keys: ``1``, ``1.0`` and ``True`` are one key (they are equal
    and hash alike), a NaN is found only as the very object stored (it equals nothing,
    itself included, and containers check identity first)."""
    cache = MultilayerCache([Layer(max_size=100)])
    model: dict[Any, Any] = {}
    nan = float("nan")
    for key, value in [(1, "int"), (1.0, "float"), (True, "bool"), (nan, "nan"), (0.0, "zero")]:
        cache.set(key, value)
        model[key] = value
    for key in [1, 1.0, True, nan, float("nan"), 0, -0.0, False]:
        assert cache.get(key) == model.get(key), key
    assert cache.get_or_load(float("nan"), lambda key: "loaded again") == "loaded again"
    assert cache.get(nan) == "nan"


def test_a_cached_function_answers_equal_numbers_alike_in_every_layer(
    redis_url: str, prefix: str
) -> None:
    def instance() -> MultilayerCache:
        return MultilayerCache([InMemoryLayer(max_size=100), RedisLayer(redis_url, prefix=prefix)])

    first, second = instance(), instance()

    def describe(x: object) -> str:
        return repr(x)

    on_first = first.cached()(describe)
    on_second = second.cached()(describe)
    try:
        assert on_first(1) == "1"
        assert on_first(True) == on_second(True)  # the same call, the same answer
        assert on_first(1.0) == on_second(1.0)
    finally:
        first.close()
        second.close()


def test_a_cached_function_called_with_nan_answers(redis_url: str, prefix: str) -> None:
    cache = MultilayerCache([InMemoryLayer(max_size=100), RedisLayer(redis_url, prefix=prefix)])
    calls: list[float] = []

    @cache.cached()
    def half(x: float) -> float:
        calls.append(x)
        return x / 2

    assert math.isnan(half(float("nan"))) and math.isnan(half(float("nan")))
    assert 1 <= len(calls) <= 2  # another NaN misses L1 (it is not equal) but not L2
    cache.close()


def test_keys_a_shared_layer_cannot_store_are_refused_clearly(redis_url: str, prefix: str) -> None:
    """Redis keys are ``str``: any other key is refused with a ``TypeError`` naming its
    type, a ``str`` that is not valid Unicode (a lone surrogate) with the codec's
    ``UnicodeEncodeError``; nothing is written, L1 included, and the breaker does not count
    it against the server."""
    l1 = InMemoryLayer(max_size=100, name="l1")
    cache = MultilayerCache([l1, RedisLayer(redis_url, prefix=prefix, name="l2")])
    for key, error in [
        (1, TypeError),
        (b"k", TypeError),
        (("a",), TypeError),
        ("\ud800", ValueError),
    ]:
        for call in (
            lambda key=key: cache.set(key, "v"),
            lambda key=key: cache.get(key),
            lambda key=key: cache.get_or_load(key, lambda key: "v"),
            lambda key=key: cache.delete(key),
            lambda key=key: cache.get_many(["fine", key]),
        ):
            with pytest.raises(error):
                call()
    assert len(l1) == 0 and cache.in_flight == 0
    assert cache.stats().breakers["l2"].failures_in_window == 0
    cache.set("fine", "v")
    assert cache.get("fine") == "v"
    cache.close()


def test_very_long_keys_work_in_every_layer(redis_url: str, prefix: str) -> None:
    key = "k" * 1_000_000 + "\N{SNOWMAN}"
    cache = MultilayerCache([InMemoryLayer(max_size=100), RedisLayer(redis_url, prefix=prefix)])
    cache.set(key, "long")
    other = RedisLayer(redis_url, prefix=prefix)  # another instance: from Redis
    assert cache.get(key) == "long" and other.get(key) == "long"
    assert cache.get_many([key, "short"]) == {key: "long"}
    assert cache.delete(key) and other.get(key) is None
    other.close()
    cache.close()


GLOBBY = "*?[]\\^-!{}"


def test_glob_characters_in_keys_and_prefixes_match_only_themselves(
    redis_url: str, prefix: str, raw_redis: redis.Redis
) -> None:
    """``clear`` scans with the prefix as a pattern: its glob characters are escaped, so a
    prefix like ``a*`` clears its own keys, not ``ab``'s; keys with glob characters are
    plain keys."""
    globbed = MultilayerCache(
        [InMemoryLayer(max_size=100), RedisLayer(redis_url, prefix=f"{prefix}{GLOBBY}:")]
    )
    lookalikes = [f"{prefix}{variant}:" for variant in ("x", "*", "a]", "\\", "ab")]
    for lookalike in lookalikes:
        raw_redis.set(f"{lookalike}k", b"theirs")
    keys = {f"k{GLOBBY}{n}": n for n in range(5)}
    globbed.set_many(keys)
    assert globbed.get_many(list(keys)) == keys
    globbed.clear()
    assert globbed.get_many(list(keys)) == {}
    assert [raw_redis.get(f"{lookalike}k") for lookalike in lookalikes] == [b"theirs"] * 5
    raw_redis.delete(*(f"{lookalike}k" for lookalike in lookalikes))
    globbed.close()


def test_a_prefix_inside_another_clears_only_under_itself(redis_url: str, prefix: str) -> None:
    """A cache with prefix ``app:x:`` inside another's ``app:``: clearing the inner one
    leaves the outer one's keys; clearing the outer one clears everything under ``app:``,
    the inner cache's keys included (they are under its prefix: choose prefixes where
    none starts another to keep caches apart)."""
    outer_l2 = RedisLayer(redis_url, prefix=f"{prefix}app:")
    inner_l2 = RedisLayer(redis_url, prefix=f"{prefix}app:x:")
    outer = MultilayerCache([InMemoryLayer(max_size=10), outer_l2])
    inner = MultilayerCache([InMemoryLayer(max_size=10), inner_l2])
    outer.set("k", "outer")
    inner.set("k", "inner")
    inner.clear()
    assert outer_l2.get("k") == "outer" and inner_l2.get("k") is None
    inner.set("k", "inner")
    outer.clear()
    assert outer_l2.get("k") is None and inner_l2.get("k") is None
    outer.close()
    inner.close()
