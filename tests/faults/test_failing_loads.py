"""A failing loader while Redis is dead, for keys whose stale copies were in Redis only: no
caller has a stale value, and still the loader is called about once per key per
``fail_safe_throttle``, not as often as callers ask (hundreds of times a second). The
callers in between get the loader's failure again (its own exception type), counted in
``stats().throttled_loads``; once the throttle has passed, a working loader is called."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    LoadOptions,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.tools.servers import RedisServer

from support import expected

THROTTLE = 0.5
SECONDS = 1.6
KEYS = [f"k{n}" for n in range(5)]
POLICIES = [LayerPolicy(ttl=0.05), LayerPolicy(ttl=0.05, stale_ttl=3600)]
OPTIONS = LoadOptions(fail_safe_throttle=THROTTLE)
MOST_CALLS = SECONDS / THROTTLE + 2  # one per throttle window, and the first


class DatabaseDown(ConnectionError):
    pass


def test_threads_call_a_failing_loader_once_per_throttle_with_redis_dead(
    doomed_server: RedisServer, prefix: str
) -> None:
    l2 = RedisLayer(doomed_server.url, prefix=prefix, name="l2")
    calls: Counter[str] = Counter()
    got: Counter[str] = Counter()
    lock = threading.Lock()
    working = threading.Event()

    def load(key: str) -> str:
        with lock:
            calls[key] += 1
        if working.is_set():
            return expected(key)
        raise DatabaseDown("the database is down")

    with MultilayerCache(
        [InMemoryLayer(max_size=100), l2], POLICIES, load_options=OPTIONS
    ) as cache:
        for key in KEYS:
            cache.set(key, expected(key))
        time.sleep(0.1)  # stale in L2, gone from L1
        doomed_server.kill()
        stop = time.monotonic() + SECONDS

        def ask(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                try:
                    cache.get_or_load(rng.choice(KEYS), load)
                    outcome = "value"
                except DatabaseDown:
                    outcome = "DatabaseDown"
                with lock:
                    got[outcome] += 1

        threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(got) == {"DatabaseDown"} and got["DatabaseDown"] > 100
        assert all(2 <= calls[key] <= MOST_CALLS for key in KEYS), calls
        stats = cache.stats()
        assert (
            stats.throttled_loads
            >= got["DatabaseDown"] - sum(calls.values()) - stats.coalesced_waits
        )
        assert stats.throttled_loads > 0 and stats.loader_calls == sum(calls.values())
        working.set()
        time.sleep(THROTTLE)
        assert cache.get_or_load("k0", load) == expected("k0")  # tried again, and cached


async def test_tasks_call_a_failing_loader_once_per_throttle_with_redis_dead(
    doomed_server: RedisServer, prefix: str
) -> None:
    l2 = AsyncRedisLayer(doomed_server.url, prefix=prefix, name="l2")
    calls: Counter[str] = Counter()
    got: Counter[str] = Counter()

    async def load(key: str) -> str:
        calls[key] += 1
        await asyncio.sleep(0)
        raise DatabaseDown("the database is down")

    async with AsyncMultilayerCache(
        [InMemoryLayer(max_size=100), l2], POLICIES, load_options=OPTIONS
    ) as cache:
        for key in KEYS:
            await cache.set(key, expected(key))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(doomed_server.kill)
        stop = time.monotonic() + SECONDS

        async def ask(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                with pytest.raises(DatabaseDown):
                    await cache.get_or_load(rng.choice(KEYS), load)
                got["DatabaseDown"] += 1
                await asyncio.sleep(0.001)

        await asyncio.gather(*[ask(seed) for seed in range(50)])
        assert got["DatabaseDown"] > 100
        assert all(2 <= calls[key] <= MOST_CALLS for key in KEYS), calls
        assert cache.stats().throttled_loads > 0


def test_a_failing_bulk_loader_is_throttled_per_key_too(
    doomed_server: RedisServer, prefix: str
) -> None:
    l2 = RedisLayer(doomed_server.url, prefix=prefix, name="l2")
    batches: list[list[str]] = []
    failing = {"k0", "k1"}

    def bulk(keys: list[str]) -> dict[str, Any]:
        batches.append(sorted(keys))
        if failing & set(keys):
            raise DatabaseDown("the database is down")
        return {key: expected(key) for key in keys}

    with MultilayerCache(
        [InMemoryLayer(max_size=100), l2], POLICIES, load_options=OPTIONS
    ) as cache:
        doomed_server.kill()
        with pytest.raises(DatabaseDown):
            cache.get_or_load_many(["k0", "k1"], bulk)
        for _ in range(100):
            with pytest.raises(DatabaseDown):
                cache.get_or_load_many(["k0", "k1"], bulk)
        assert batches == [["k0", "k1"]]  # held off: one call, not 101
        # A batch with one held-off key: the others are loaded and cached, then the
        # held-off key's failure is raised again.
        with pytest.raises(DatabaseDown):
            cache.get_or_load_many(["k1", "k2"], bulk)
        assert batches[-1] == ["k2"] and cache.get("k2") == expected("k2")
        assert cache.stats().throttled_loads == 100 * 2 + 1
        failing.clear()
        time.sleep(THROTTLE)
        assert cache.get_or_load_many(["k0", "k1"], bulk) == {
            "k0": expected("k0"),
            "k1": expected("k1"),
        }
