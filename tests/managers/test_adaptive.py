"""TTLs that depend on the value, through the managers, on {sync, asyncio} x {compiled, pure}
L1 over a real Redis: ``ttl=`` a function of the value, loaders that set the TTL or answer
"unchanged" (conditional refresh: the entry is extended, not rewritten), and adaptive TTLs
that grow while reloads find a key unchanged and fall back when it changes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from multilayercache import (
    AdaptiveTTL,
    LayerPolicy,
    LoadContext,
    LoadOptions,
    with_context,
)
from multilayercache.core.entry import unwrap

from support import command_calls

WAIT_FOR_LOADS = LoadOptions(stale_while_revalidate=False)  # a stale key is reloaded at once


class Source:
    """A source of truth: a value per key, changed by the test, and the loads it served."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)
        self.loads: list[Any] = []
        self.contexts: list[tuple[Any, bool]] = []

    def load(self, key: str) -> Any:
        self.loads.append(key)
        return self.values[key]

    def load_many(self, keys: list[str]) -> dict[str, Any]:
        self.loads.extend(keys)
        return {key: self.values[key] for key in keys}

    def revalidate(self, key: str, context: LoadContext[Any]) -> Any:
        """A conditional load: asks whether the cached version is current first."""
        self.loads.append(key)
        self.contexts.append((context.current, context.has_current))
        if context.has_current and context.current == self.values[key]:
            return context.unchanged()
        return self.values[key]


def loader(harness, function):
    """``function`` as this kind of manager takes it (one or two arguments)."""
    if not harness.is_async:
        return function

    async def load(*args: Any) -> Any:
        return function(*args)

    return load


def envelope(raw_redis, prefix: str, key: str):
    data = raw_redis.get(prefix + key)
    return None if data is None else unwrap(data)[0]


def wait_until_stale(raw_redis, prefix: str, key: str) -> None:
    """Sleep until the shared layer's entry of ``key`` is past its TTL."""
    stale_ms = envelope(raw_redis, prefix, key).stale_ms
    time.sleep(max(0.0, stale_ms / 1000 - time.time()) + 0.01)


# ----------------------------------------------------------------------------- ttl=function
def test_a_ttl_computed_from_each_loaded_value(harness, raw_redis, prefix) -> None:
    cache = harness.cache([harness.l1(), harness.l2()])
    source = Source(active={"active": True}, idle={"active": False}, a=1, b=2)

    def ttl(value: Any) -> float:
        return 30 if value["active"] else 300

    cache.get_or_load("active", loader(harness, source.load), ttl=ttl)
    cache.get_or_load("idle", loader(harness, source.load), ttl=ttl)
    assert 29_000 < raw_redis.pttl(prefix + "active") <= 30_000
    assert 299_000 < raw_redis.pttl(prefix + "idle") <= 300_000
    cache.get_or_load_many(["a", "b"], loader(harness, source.load_many), ttl=lambda n: 10 * n)
    assert 9_000 < raw_redis.pttl(prefix + "a") <= 10_000
    assert 19_000 < raw_redis.pttl(prefix + "b") <= 20_000
    assert cache.get_or_load("active", loader(harness, source.load), ttl=ttl) == {"active": True}


def test_a_cached_function_s_ttl_may_depend_on_its_result(harness, raw_redis, prefix) -> None:
    cache = harness.cache([harness.l1(), harness.l2()])

    @cache.cached(ttl=lambda price: 5 if price < 10 else 500, key="price:{item}")
    @harness.define
    def price(item: int) -> int:
        return item

    assert harness.call(price, 3) == 3 and harness.call(price, 30) == 30
    assert 4_000 < raw_redis.pttl(prefix + "price:3") <= 5_000
    assert 499_000 < raw_redis.pttl(prefix + "price:30") <= 500_000


def test_a_bad_ttl_function_raises_and_caches_nothing(harness) -> None:
    cache = harness.cache([harness.l1(), harness.l2()])
    with pytest.raises(ValueError, match="TTL that .*soon.* >= 0"):

        def soon(value: Any) -> float:
            return -1

        cache.get_or_load("k", loader(harness, lambda key: "v"), ttl=soon)
    assert cache.get("k") is None
    with pytest.raises(TypeError):
        cache.get_or_load("k", loader(harness, lambda key: "v"), ttl="60")
    with pytest.raises(TypeError, match="single-key"):
        cache.get_or_load_many(["k"], with_context(lambda keys, context: {}))


# ----------------------------------------------------------------------------- with_context
def test_a_loader_with_context_sets_the_ttl_and_sees_the_cached_value(
    harness, raw_redis, prefix
) -> None:
    cache = harness.cache(
        [harness.l1(), harness.l2()],
        [LayerPolicy(ttl=0.05), LayerPolicy(stale_ttl=30)],
        load_options=WAIT_FOR_LOADS,
    )
    seen: list[tuple[Any, bool]] = []

    def load(key: str, context: LoadContext[str]) -> str:
        seen.append((context.current, context.has_current))
        context.ttl = 0.2 if key == "short" else 60
        return f"{key} #{len(seen)}"

    contextual = with_context(loader(harness, load))
    assert cache.get_or_load("short", contextual) == "short #1"
    assert cache.get_or_load("long", contextual) == "long #2"
    assert 0 < raw_redis.pttl(prefix + "short") <= 30_200  # 0.2 s fresh, then 30 s stale
    assert 89_000 < raw_redis.pttl(prefix + "long") <= 90_000
    wait_until_stale(raw_redis, prefix, "short")
    assert cache.get_or_load("short", contextual) == "short #3"
    assert seen == [(None, False), (None, False), ("short #1", True)]
    assert cache.stats().refreshes_unchanged == 0


def test_unchanged_extends_the_entry_without_rewriting_it(harness, raw_redis, prefix) -> None:
    cache = harness.cache(
        [harness.l1(), harness.l2()],
        [LayerPolicy(ttl=0.05), LayerPolicy(ttl=0.2, stale_ttl=30)],
        load_options=WAIT_FOR_LOADS,
    )
    source = Source(k={"big": "x" * 10_000})
    contextual = with_context(loader(harness, source.revalidate))
    sets = command_calls(raw_redis, "set")
    cache.get_or_load("k", contextual)
    first = raw_redis.get(prefix + "k")
    assert command_calls(raw_redis, "set") == sets + 1
    for _ in range(2):
        wait_until_stale(raw_redis, prefix, "k")
        assert cache.get_or_load("k", contextual) == source.values["k"]
        after = raw_redis.get(prefix + "k")
        assert after[43:] == first[43:] and after[2:11] == first[2:11]  # value, written
        assert after[11:38] != first[11:38]  # new deadlines
        assert 30_000 < raw_redis.pttl(prefix + "k") <= 30_200
    assert command_calls(raw_redis, "set") == sets + 1  # never rewritten
    assert source.contexts[1:] == [(source.values["k"], True)] * 2
    stats = cache.stats()
    assert (stats.refreshes_unchanged, stats.ttl_extended, stats.loader_calls) == (2, 2, 3)
    source.values["k"] = {"big": "y"}  # changed at the source: written again
    wait_until_stale(raw_redis, prefix, "k")
    assert cache.get_or_load("k", contextual) == {"big": "y"}
    assert command_calls(raw_redis, "set") == sets + 2 and cache.stats().ttl_extended == 2


def test_a_refresh_ahead_asks_with_the_value_it_refreshes(harness, raw_redis, prefix) -> None:
    cache = harness.cache(
        [harness.l1(), harness.l2()],
        [LayerPolicy(ttl=0.05), LayerPolicy(ttl=2, refresh_ahead=0.1, refresh_jitter=0)],
    )
    source = Source(k="v")
    contextual = with_context(loader(harness, source.revalidate))
    cache.get_or_load("k", contextual)
    sets = command_calls(raw_redis, "set")
    time.sleep(0.3)  # past the refresh point, still fresh: served, refreshed behind
    assert cache.get_or_load("k", contextual) == "v"
    assert cache.wait_idle(5)
    assert source.contexts == [(None, False), ("v", True)]
    assert command_calls(raw_redis, "set") == sets and cache.stats().ttl_extended == 1
    extended = envelope(raw_redis, prefix, "k")  # fresh for 2 s from the refresh, not the load
    assert extended.stale_ms - extended.written_ms >= 2_250


def test_unchanged_with_nothing_cached_is_the_loader_s_error(harness) -> None:
    cache = harness.cache([harness.l1(), harness.l2()])

    def load(key: str, context: LoadContext[str]) -> str:
        return context.unchanged()

    with pytest.raises(LookupError, match="nothing is cached for 'k'"):
        cache.get_or_load("k", with_context(loader(harness, load)))
    assert cache.get("k") is None


def test_an_entry_rewritten_meanwhile_is_left_to_the_newer_write(
    harness, raw_redis, prefix
) -> None:
    cache = harness.cache(
        [harness.l1(), harness.l2()],
        [LayerPolicy(ttl=0.05), LayerPolicy(ttl=0.2, stale_ttl=30)],
        load_options=WAIT_FOR_LOADS,
    )
    other = harness.cache([harness.l2()])  # another instance, sharing the layer
    cache.get_or_load("k", loader(harness, lambda key: "old"))
    wait_until_stale(raw_redis, prefix, "k")

    def load(key: str, context: LoadContext[str]) -> str:
        time.sleep(0.002)  # (writes are told apart by their millisecond)
        other.set("k", "newer")  # lands while this load runs
        return context.unchanged()

    async def load_async(key: str, context: LoadContext[str]) -> str:
        await asyncio.sleep(0.002)
        await other._target.set("k", "newer")
        return context.unchanged()

    assert cache.get_or_load("k", with_context(load_async if harness.is_async else load)) == "old"
    assert other.get("k") == "newer" and cache.stats().ttl_extended == 0


# ----------------------------------------------------------------------------- adaptive
ADAPTIVE_L2 = LayerPolicy(ttl=0.1, stale_ttl=30, adaptive=AdaptiveTTL(min=0.025, max=0.4))


def test_an_unchanged_key_lives_longer_and_a_changed_one_falls_back(
    harness, raw_redis, prefix
) -> None:
    cache = harness.cache([harness.l2()], [ADAPTIVE_L2], load_options=WAIT_FOR_LOADS)
    source = Source(k={"n": 1})
    load = loader(harness, source.load)
    sets = command_calls(raw_redis, "set")
    cache.get_or_load("k", load)
    steps = []
    for round_ in range(6):
        if round_ == 3:
            source.values["k"] = {"n": 2}
        if round_ == 4:
            source.values["k"] = {"n": 3}
        wait_until_stale(raw_redis, prefix, "k")
        assert cache.get_or_load("k", load) == source.values["k"]
        entry = envelope(raw_redis, prefix, "k")
        steps.append(entry.step)
    assert steps == [1, 2, 2, 0, -1, 0]  # up to max (0.4 s = step 2), back, one lower
    assert command_calls(raw_redis, "set") == sets + 3  # the first load and two changes
    stats = cache.stats()
    assert (stats.refreshes_unchanged, stats.ttl_extended) == (4, 4)


def test_l1_takes_the_key_s_step_from_l2(harness, raw_redis, prefix) -> None:
    adaptive_l1 = LayerPolicy(ttl=0.05, adaptive=AdaptiveTTL(min=0.05, max=0.2))
    cache = harness.cache(
        [harness.l1(), harness.l2()], [adaptive_l1, ADAPTIVE_L2], load_options=WAIT_FOR_LOADS
    )
    load = loader(harness, Source(k="same").load)
    cache.get_or_load("k", load)
    for _ in range(2):  # two unchanged reloads: step 2
        wait_until_stale(raw_redis, prefix, "k")
        cache.get_or_load("k", load)
    assert envelope(raw_redis, prefix, "k").step == 2
    assert 0.15 < cache.layers[0].remaining_ttl("k") <= 0.2  # 0.05 s x 4, capped at 0.2


def test_get_or_load_many_adapts_each_key(harness, raw_redis, prefix) -> None:
    cache = harness.cache([harness.l2()], [ADAPTIVE_L2], load_options=WAIT_FOR_LOADS)
    source = Source(same=1, changes=1)
    load_many = loader(harness, source.load_many)
    cache.get_or_load_many(["same", "changes"], load_many)
    source.values["changes"] = 2
    wait_until_stale(raw_redis, prefix, "same")
    assert cache.get_or_load_many(["same", "changes"], load_many) == {"same": 1, "changes": 2}
    assert envelope(raw_redis, prefix, "same").step == 1
    assert envelope(raw_redis, prefix, "changes").step == -1
    assert cache.stats().ttl_extended == 1


def test_an_l1_only_cache_keeps_steps_in_memory(harness, clock) -> None:
    policy = LayerPolicy(ttl=10, stale_ttl=100, adaptive=AdaptiveTTL(min=5, max=80))
    cache = harness.cache([harness.l1(clock=clock)], [policy], load_options=WAIT_FOR_LOADS)
    source = Source(k=["same"])
    load = loader(harness, source.load)
    lives = []
    for round_ in range(6):
        if round_ == 4:
            source.values["k"] = ["changed"]
        cache.get_or_load("k", load)
        lives.append(cache.remaining_ttl("k"))  # fresh for (then 100 s stale)
        clock.advance(lives[-1] + 0.5)
    assert lives == [10, 20, 40, 80, 10, 20]
    assert cache.stats().refreshes_unchanged == 4 and cache.stats().ttl_extended == 0


def test_a_bulk_refresh_ahead_extends_unchanged_keys(harness, raw_redis, prefix) -> None:
    policy = LayerPolicy(
        ttl=1,
        stale_ttl=30,
        refresh_ahead=0.2,
        refresh_jitter=0,
        adaptive=AdaptiveTTL(min=0.5, max=4),
    )
    cache = harness.cache([harness.l2()], [policy])
    source = Source(a=1, b=2)
    load_many = loader(harness, source.load_many)
    cache.get_or_load_many(["a", "b"], load_many)
    time.sleep(0.3)  # due: served, refreshed behind with one bulk call
    assert cache.get_or_load_many(["a", "b"], load_many) == {"a": 1, "b": 2}
    assert cache.wait_idle(5)
    assert source.loads == ["a", "b", "a", "b"]
    assert [envelope(raw_redis, prefix, key).step for key in "ab"] == [1, 1]
    assert cache.stats().ttl_extended == 2


def test_a_copy_into_l1_lives_as_long_as_the_key_s_step_says(harness, raw_redis, prefix) -> None:
    adaptive_l1 = LayerPolicy(ttl=0.05, adaptive=AdaptiveTTL(min=0.05, max=0.2))
    cache = harness.cache(
        [harness.l1(), harness.l2()], [adaptive_l1, ADAPTIVE_L2], load_options=WAIT_FOR_LOADS
    )
    load = loader(harness, Source(k="same").load)
    cache.get_or_load("k", load)
    wait_until_stale(raw_redis, prefix, "k")
    cache.get_or_load("k", load)  # unchanged: step 1 in Redis (0.2 s there)
    cache.layers[0].delete("k")
    assert cache.get("k") == "same" and cache.get("k") == "same"  # copied up on the second
    assert 0.08 < cache.layers[0].remaining_ttl("k") <= 0.1  # 0.05 s x 2, not 0.05 s
