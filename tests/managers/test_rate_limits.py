"""Rate limits, on {sync, asyncio} (x {compiled, pure} for the behaviour specs), over a real
Redis server: ``LayerPolicy(rate_limit=...)`` on a shared layer and
``LoadOptions(max_loads_per_second=...)`` on the loader.

Over a layer's limit a read skips the layer (a miss there, counted, not an error), a cache
fill is not written, and a write waits for a token up to ``rate_limit_wait``, then raises
``LayerRateLimited``; a write-behind layer's worker waits for tokens instead. Over the
loader's limit a caller waits up to ``load_wait``, then gets its stale value or
``LoadRateLimited``. The storms measure the rate that reaches Redis (its own command
counts) or the loader, against the limit."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from typing import Any

import pytest
import redis

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    CacheError,
    InMemoryLayer,
    LayerError,
    LayerPolicy,
    LayerRateLimited,
    LoadGateTimeout,
    LoadOptions,
    LoadRateLimited,
    MultilayerCache,
    RateLimit,
    RedisLayer,
    WriteBehind,
)

NOT_COUNTED = {"cmdstat_info", "cmdstat_hello", "cmdstat_client|setinfo"}
"""Commands that are not the cache's calls: this test's INFO, and a new connection's
handshake (redis-py's, below any rate limit, as a TCP connect is)."""


def redis_calls(client: redis.Redis) -> int:
    """Every command the server ran for the cache so far (INFO commandstats)."""
    stats = client.info("commandstats")
    return sum(int(entry["calls"]) for name, entry in stats.items() if name not in NOT_COUNTED)


def within_limit(count: int, seconds: float, limit: RateLimit) -> bool:
    """What a token bucket may let through in ``seconds``, with 10% for timing noise."""
    return count <= limit.rate * seconds * 1.1 + (limit.burst or 1)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("rate", [0, -1, -0.5, math.nan, math.inf])
def test_a_rate_limit_that_is_not_a_positive_rate_is_refused_naming_the_argument(rate) -> None:
    with pytest.raises(ValueError, match="rate_limit must be a positive finite number"):
        LayerPolicy(rate_limit=rate)
    with pytest.raises(ValueError, match="max_loads_per_second must be a positive finite"):
        LoadOptions(max_loads_per_second=rate)
    with pytest.raises(ValueError, match="RateLimit rate must be a positive finite"):
        RateLimit(rate)


@pytest.mark.parametrize("burst", [0, -3, 0.5, math.nan, math.inf])
def test_a_burst_below_one_token_is_refused(burst) -> None:
    with pytest.raises(ValueError, match="RateLimit burst must be"):
        RateLimit(100, burst=burst)


@pytest.mark.parametrize("rate", ["100", True, [100]])
def test_a_rate_limit_that_is_not_a_number_is_a_type_error(rate) -> None:
    with pytest.raises(TypeError, match="rate_limit must be a number of calls per second"):
        LayerPolicy(rate_limit=rate)
    with pytest.raises(TypeError, match="max_loads_per_second must be a number"):
        LoadOptions(max_loads_per_second=rate)


@pytest.mark.parametrize("wait", [-1, math.inf, math.nan])
def test_a_bad_rate_limit_wait_is_refused(wait) -> None:
    with pytest.raises(ValueError, match="rate_limit_wait"):
        LayerPolicy(rate_limit=10, rate_limit_wait=wait)


def test_a_number_is_a_rate_with_a_tenth_of_a_second_of_burst() -> None:
    assert LayerPolicy(rate_limit=1000).rate_limit == RateLimit(1000, burst=100)
    assert LoadOptions(max_loads_per_second=2).max_loads_per_second == RateLimit(2, burst=1)
    assert LayerPolicy().rate_limit is None and LoadOptions().max_loads_per_second is None


def test_an_in_process_layer_cannot_be_rate_limited(harness) -> None:
    with pytest.raises(ValueError, match="layer 0 \\(l1\\) is in-process"):
        harness.cache([harness.l1(), harness.l2()], [LayerPolicy(rate_limit=10), None])


def test_the_errors_are_cache_errors_of_the_expected_kinds() -> None:
    assert issubclass(LayerRateLimited, LayerError) and issubclass(LayerRateLimited, CacheError)
    assert issubclass(LoadRateLimited, LoadGateTimeout)
    assert issubclass(LoadRateLimited, TimeoutError)


# ---------------------------------------------------------------------------- reads
def limited(harness, rate: RateLimit | float, **policy: Any):
    """L1 (which never takes copies: every read reaches L2) over a rate-limited L2."""
    policies = [LayerPolicy(promote="never"), LayerPolicy(rate_limit=rate, **policy)]
    return harness.cache([harness.l1(), harness.l2()], policies)


def test_a_read_over_the_limit_skips_the_layer_as_a_miss_not_an_error(harness) -> None:
    writer = harness.cache([harness.l2()])
    writer.set("k", "in redis")
    cache = limited(harness, RateLimit(0.5, burst=1))
    assert cache.get("k") == "in redis"  # the one token
    assert cache.get("k", "default") == "default"  # none left: L2 skipped
    assert cache.get_many(["k"]) == {}
    stats = cache.stats()
    assert stats.rate_limits["l2"].reads_skipped == 2
    assert stats.rate_limits["l2"].calls == 1
    assert stats.read_errors["l2"] == 0 and stats.layer("l2").errors == 0


def test_get_or_load_over_the_limit_loads_and_does_not_write_back(harness, raw_redis) -> None:
    cache = limited(harness, RateLimit(0.5, burst=1))
    loads = []
    loader = harness.loader(lambda key: loads.append(key) or f"loaded {key}")
    assert cache.get("warm-up") is None  # takes the only token
    assert cache.get_or_load("a", loader) == "loaded a"
    assert loads == ["a"]
    assert raw_redis.exists(f"{harness.prefix}a") == 0  # the skipped layer was left alone
    assert cache.stats().rate_limits["l2"].reads_skipped == 1


def test_a_batch_costs_one_token(harness) -> None:
    writer = harness.cache([harness.l2()])
    writer.set_many({f"k{n}": n for n in range(50)})
    cache = limited(harness, RateLimit(0.5, burst=1))
    assert cache.get_many([f"k{n}" for n in range(50)]) == {f"k{n}": n for n in range(50)}
    assert cache.stats().rate_limits["l2"].calls == 1


def test_without_a_rate_limit_nothing_is_counted(harness) -> None:
    cache = harness.cache([harness.l1(), harness.l2()])
    cache.set("k", 1)
    assert cache.get("k") == 1
    stats = cache.stats()
    assert stats.rate_limits == {} and stats.loads_delayed == stats.loads_rate_limited == 0
    assert all(tier.limiter is None for tier in cache._target._state.tiers)


# ---------------------------------------------------------------------------- writes
def test_a_write_waits_for_a_token(harness, raw_redis) -> None:
    cache = limited(harness, RateLimit(5, burst=1), rate_limit_wait=2)
    # Twice: a first call may be slow (a cluster client loads its slot map), and the
    # bucket refills meanwhile; the second leaves it empty, whatever the first took.
    cache.set("a", 1)
    cache.set("a", 1)
    delayed = cache.stats().rate_limits["l2"].writes_delayed
    start = time.monotonic()
    cache.set("b", 2)  # the next token comes 0.2 s after the last
    assert time.monotonic() - start >= 0.1
    assert raw_redis.exists(f"{harness.prefix}b") == 1
    assert cache.stats().rate_limits["l2"].writes_delayed == delayed + 1


def test_a_write_that_gets_no_token_in_time_raises_and_leaves_no_newer_copy_above(
    harness, raw_redis
) -> None:
    cache = limited(harness, RateLimit(0.5, burst=1), rate_limit_wait=0.05)
    cache.set("k", "old")
    start = time.monotonic()
    with pytest.raises(LayerRateLimited, match="no token came within 0.05 s"):
        cache.set("k", "new")
    assert time.monotonic() - start < 0.5  # refused as soon as none could come in time
    assert cache.layers[0].get("k") is None  # L1 dropped it, as after any failed write
    stats = cache.stats()
    assert stats.rate_limits["l2"].writes_refused == 1
    assert stats.write_errors["l2"] == 0  # not the server's failure
    with pytest.raises(LayerRateLimited):
        cache.delete("k")
    assert cache.get("k", "gone") == "gone"  # a delete not confirmed: not read from L2
    assert raw_redis.exists(f"{harness.prefix}k") == 1
    limit = cache.stats().rate_limits["l2"]
    assert limit.writes_refused == 2  # the set and the delete
    assert limit.writes_skipped == 1  # the read sends the delete again, but never waits
    with pytest.raises(LayerRateLimited):
        cache.incr("counter")  # an atomic step in Redis is a write like any other


def test_a_write_behind_layer_queues_writes_and_its_worker_waits_for_tokens(
    harness, raw_redis
) -> None:
    behind = WriteBehind(batch_size=1)  # a batch (one token) per write
    policies = [None, LayerPolicy(rate_limit=RateLimit(20, burst=1), write=behind)]
    cache = harness.cache([harness.l1(), harness.l2()], policies)
    start = time.monotonic()
    for n in range(10):
        cache.set(f"k{n}", n)  # none of them waits for the limit
    assert time.monotonic() - start < 0.3
    cache.flush(timeout=5)
    assert time.monotonic() - start >= 0.3  # 9 batches after the first, 20 a second
    assert raw_redis.exists(*[f"{harness.prefix}k{n}" for n in range(10)]) == 10
    stats = cache.stats()
    assert stats.rate_limits["l2"].writes_delayed >= 5
    assert stats.rate_limits["l2"].writes_refused == 0
    assert stats.write_queues["l2"].dead_lettered == 0


# ---------------------------------------------------------------------------- the loader
def test_a_load_over_the_limit_waits_for_its_turn(harness) -> None:
    options = LoadOptions(max_loads_per_second=RateLimit(5, burst=1))
    cache = harness.cache([harness.l1()], load_options=options)
    loader = harness.loader(lambda key: f"v{key}")
    assert cache.get_or_load("a", loader) == "va"
    start = time.monotonic()
    assert cache.get_or_load("b", loader) == "vb"
    assert time.monotonic() - start >= 0.1
    assert cache.stats().loads_delayed == 1


def test_a_load_without_a_turn_in_time_raises_or_serves_stale(harness, clock) -> None:
    options = LoadOptions(
        max_loads_per_second=RateLimit(0.5, burst=1),
        load_wait=0.05,
        stale_while_revalidate=False,  # a stale value is served only if the load fails
    )
    l1 = harness.l1(clock=clock)
    cache = harness.cache([l1], [LayerPolicy(ttl=10, stale_ttl=100)], load_options=options)
    loader = harness.loader(lambda key: f"v{key}")
    cache.set("stale", "old")
    clock.advance(20)
    assert cache.get_or_load("a", loader) == "va"  # the one token
    start = time.monotonic()
    with pytest.raises(LoadRateLimited, match="at most 0.5 loads per second"):
        cache.get_or_load("b", loader)
    assert time.monotonic() - start < 0.5
    assert cache.get_or_load("stale", loader) == "old"  # fail-safe: the stale value
    stats = cache.stats()
    assert stats.loads_rate_limited == 2 and stats.loader_calls == 1
    assert stats.fail_safe == 1


# ---------------------------------------------------------------------------- storms
LAYER_LIMIT = RateLimit(1000)
STORM_SECONDS = 2.0
WARM_UP = 0.5
KEYS = 5_000


def value_of(key: str) -> str:
    return f"value of {key}"


def sync_layer_storm(url: str, prefix: str, workers: int) -> tuple[int, float, list, Any]:
    """``workers`` threads calling ``get_or_load`` on random keys (most of them in Redis,
    L1 too small to hold them) through a rate-limited L2: the commands Redis ran in
    ``STORM_SECONDS`` after a warm-up, that time, the callers' errors, the cache's stats."""
    client = redis.Redis.from_url(url)
    writer = MultilayerCache([RedisLayer(url, prefix=prefix)])
    writer.set_many({str(n): value_of(str(n)) for n in range(0, KEYS, 2)})
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100), RedisLayer(url, prefix=prefix)],
        [None, LayerPolicy(rate_limit=LAYER_LIMIT)],
    )
    errors: list[BaseException] = []
    stop = threading.Event()

    def call() -> None:
        rng = random.Random()
        while not stop.is_set():
            key = str(rng.randrange(KEYS))
            try:
                if cache.get_or_load(key, value_of) != value_of(key):
                    errors.append(AssertionError(key))
            except Exception as error:  # what the test checks: none
                errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(WARM_UP)  # the bucket's burst is spent, the connections are made
        before, start = redis_calls(client), time.monotonic()
        time.sleep(STORM_SECONDS)
        after, seconds = redis_calls(client), time.monotonic() - start
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    stats = cache.stats()
    for closing in (cache, writer, client):
        closing.close()
    return after - before, seconds, errors, stats


def asyncio_layer_storm(url: str, prefix: str, workers: int) -> tuple[int, float, list, Any]:
    """``sync_layer_storm`` with ``workers`` asyncio tasks over ``AsyncRedisLayer``."""
    client = redis.Redis.from_url(url)

    async def main() -> tuple[int, float, list, Any]:
        writer = AsyncMultilayerCache([AsyncRedisLayer(url, prefix=prefix)])
        await writer.set_many({str(n): value_of(str(n)) for n in range(0, KEYS, 2)})
        cache = AsyncMultilayerCache(
            [InMemoryLayer(max_size=100), AsyncRedisLayer(url, prefix=prefix)],
            [None, LayerPolicy(rate_limit=LAYER_LIMIT)],
        )
        errors: list[BaseException] = []
        stop = False

        async def load(key: str) -> str:
            return value_of(key)

        async def call() -> None:
            rng = random.Random()
            while not stop:
                key = str(rng.randrange(KEYS))
                try:
                    if await cache.get_or_load(key, load) != value_of(key):
                        errors.append(AssertionError(key))
                except Exception as error:
                    errors.append(error)

        tasks = [asyncio.create_task(call()) for _ in range(workers)]
        try:
            await asyncio.sleep(WARM_UP)
            before, start = redis_calls(client), time.monotonic()
            await asyncio.sleep(STORM_SECONDS)
            after, seconds = redis_calls(client), time.monotonic() - start
        finally:
            stop = True
            await asyncio.gather(*tasks)
        stats = cache.stats()
        await cache.close()
        await writer.close()
        return after - before, seconds, errors, stats

    try:
        return asyncio.run(main())
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_storm_reaches_redis_at_the_limit_and_no_caller_sees_an_error(
    kind, doomed_server, prefix
) -> None:
    storm = sync_layer_storm if kind == "sync" else asyncio_layer_storm
    calls, seconds, errors, stats = storm(doomed_server.url, prefix, workers=8)
    assert errors == []
    assert within_limit(calls, seconds, LAYER_LIMIT), f"{calls / seconds:.0f} calls/s"
    assert calls >= 0.7 * LAYER_LIMIT.rate * seconds, f"{calls / seconds:.0f} calls/s"
    limit = stats.rate_limits["redis"]
    assert limit.reads_skipped > 0  # demand far beyond the limit
    assert stats.read_errors["redis"] == 0


LOAD_LIMIT = RateLimit(50)


def loader_storm(kind: str, workers: int) -> tuple[list[float], float, float, list]:
    """``workers`` threads (or tasks) loading distinct keys as fast as they can through a
    cache whose loader is limited: the times of the loader's calls, when the measured
    window starts and ends, the callers' errors."""
    options = LoadOptions(max_loads_per_second=LOAD_LIMIT)
    calls: list[float] = []
    errors: list[BaseException] = []
    counter = iter(range(10**9))

    def load(key: str) -> str:
        calls.append(time.monotonic())
        return value_of(key)

    if kind == "sync":
        cache = MultilayerCache([InMemoryLayer(max_size=1000)], load_options=options)
        stop = threading.Event()

        def call() -> None:
            while not stop.is_set():
                key = f"k{next(counter)}"
                try:
                    assert cache.get_or_load(key, load) == value_of(key)
                except Exception as error:
                    errors.append(error)

        threads = [threading.Thread(target=call) for _ in range(workers)]
        for thread in threads:
            thread.start()
        start = time.monotonic() + WARM_UP
        time.sleep(WARM_UP + STORM_SECONDS)
        end = time.monotonic()
        stop.set()
        for thread in threads:
            thread.join(10)
        return calls, start, end, errors

    async def main() -> tuple[float, float]:
        cache = AsyncMultilayerCache([InMemoryLayer(max_size=1000)], load_options=options)
        done = False

        async def aload(key: str) -> str:
            return load(key)

        async def call() -> None:
            while not done:
                key = f"k{next(counter)}"
                try:
                    assert await cache.get_or_load(key, aload) == value_of(key)
                except Exception as error:
                    errors.append(error)

        tasks = [asyncio.create_task(call()) for _ in range(workers)]
        start = time.monotonic() + WARM_UP
        await asyncio.sleep(WARM_UP + STORM_SECONDS)
        end = time.monotonic()
        done = True
        await asyncio.gather(*tasks)
        return start, end

    start, end = asyncio.run(main())
    return calls, start, end, errors


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_the_loader_sees_at_most_its_limit_under_contention(kind) -> None:
    calls, start, end, errors = loader_storm(kind, workers=8)
    assert errors == []
    seconds = end - start
    in_window = sum(start <= at < end for at in calls)
    assert within_limit(in_window, seconds, LOAD_LIMIT), f"{in_window / seconds:.1f} loads/s"
    assert in_window >= 0.7 * LOAD_LIMIT.rate * seconds, f"{in_window / seconds:.1f} loads/s"
