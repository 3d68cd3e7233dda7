"""Coalescing covers the whole miss, counted on a real server: concurrent callers of one key
that only L2 holds make one GET; concurrent batches share their lookups and loads per key.
Real threads for the sync manager, real tasks for the asyncio one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
)

from support import command_calls

# Values found below are copied into L1 at once, so that callers arriving after a load
# finished hit L1: every remaining GET is one a flight should have saved.
POLICIES = [LayerPolicy(promote="always"), None]


def run_threads(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = []
    errors: list = []

    def start() -> None:
        barrier.wait()
        try:
            results.append(work())
        except BaseException as error:  # reported below, not lost in a thread
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


@pytest.fixture
def sync_cache(redis_url, prefix):
    l2 = RedisLayer(redis_url, prefix=prefix)
    yield MultilayerCache([InMemoryLayer(max_size=1_000), l2], POLICIES)
    l2.close()


@pytest.fixture
async def async_cache(redis_url, prefix):
    l2 = AsyncRedisLayer(redis_url, prefix=prefix)
    yield AsyncMultilayerCache([InMemoryLayer(max_size=1_000), l2], POLICIES)
    await l2.close()


def never_called(key):
    raise AssertionError(f"the loader ran for {key!r}: the value was in L2")


def test_100_threads_on_a_key_only_in_l2_make_one_get(sync_cache, raw_redis, prefix) -> None:
    sync_cache.layers[1].set("k", "from l2")  # in L2 only
    before = command_calls(raw_redis, "get")
    results = run_threads(100, lambda: sync_cache.get_or_load("k", never_called))
    assert results == ["from l2"] * 100
    assert command_calls(raw_redis, "get") - before == 1


async def test_100_tasks_on_a_key_only_in_l2_make_one_get(async_cache, raw_redis, prefix) -> None:
    await async_cache.layers[1].set("k", "from l2")  # in L2 only
    before = command_calls(raw_redis, "get")

    async def never(key):
        never_called(key)

    results = await asyncio.gather(*[async_cache.get_or_load("k", never) for _ in range(100)])
    assert results == ["from l2"] * 100
    assert command_calls(raw_redis, "get") - before == 1


KEYS = [f"cold-{i}" for i in range(5)]


def test_32_threads_on_the_same_cold_keys_load_each_once(sync_cache) -> None:
    seen: Counter = Counter()
    lock = threading.Lock()

    def bulk(keys):
        with lock:
            seen.update(keys)
        time.sleep(0.1)  # a slow database: everybody else arrives meanwhile
        return {key: key.upper() for key in keys}

    results = run_threads(32, lambda: sync_cache.get_or_load_many(KEYS, bulk))
    assert all(result == {key: key.upper() for key in KEYS} for result in results)
    assert seen == Counter(KEYS)  # each key loaded once, whatever thread led it
    assert sync_cache.in_flight == 0


def test_overlapping_batches_share_the_keys_they_have_in_common(sync_cache) -> None:
    seen: Counter = Counter()
    lock = threading.Lock()

    def bulk(keys):
        with lock:
            seen.update(keys)
        time.sleep(0.1)
        return {key: key.upper() for key in keys if key != "cold-4"}  # one is unknown

    batches = [KEYS[:3], KEYS[1:], KEYS[::2], KEYS] * 4
    index = iter(range(len(batches)))
    lock_index = threading.Lock()

    def work():
        with lock_index:
            batch = batches[next(index)]
        return batch, sync_cache.get_or_load_many(batch, bulk)

    for batch, result in run_threads(len(batches), work):
        assert result == {key: key.upper() for key in batch if key != "cold-4"}
    assert seen["cold-0"] == seen["cold-1"] == seen["cold-2"] == seen["cold-3"] == 1
    assert sync_cache.in_flight == 0


async def test_32_tasks_on_the_same_cold_keys_load_each_once(async_cache) -> None:
    seen: Counter = Counter()

    async def bulk(keys):
        seen.update(keys)
        await asyncio.sleep(0.1)
        return {key: key.upper() for key in keys}

    results = await asyncio.gather(*[async_cache.get_or_load_many(KEYS, bulk) for _ in range(32)])
    assert all(result == {key: key.upper() for key in KEYS} for result in results)
    assert seen == Counter(KEYS)
    assert async_cache.in_flight == 0


async def test_a_failed_bulk_load_reaches_every_task_that_waited_for_it(async_cache) -> None:
    async def bulk(keys):
        await asyncio.sleep(0.05)
        raise ConnectionError("database down")

    results = await asyncio.gather(
        *[async_cache.get_or_load_many(KEYS, bulk) for _ in range(8)], return_exceptions=True
    )
    assert all(isinstance(result, ConnectionError) for result in results)
    assert async_cache.in_flight == 0


def test_a_cache_made_at_import_time_serves_successive_event_loops(redis_url, prefix) -> None:
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=100), AsyncRedisLayer(redis_url, prefix=prefix)]
    )

    async def load(key):
        return f"loaded {key}"

    async def use(key):
        value = await cache.get_or_load(key, load)
        await cache.layers[1].get(key)  # the L2 itself, in this loop
        return value

    assert asyncio.run(use("a")) == "loaded a"
    assert asyncio.run(use("b")) == "loaded b"  # a new loop: fresh connections
    assert asyncio.run(use("a")) == "loaded a"
    asyncio.run(cache.close())
