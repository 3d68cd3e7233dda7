"""A Redis that accepts connections and never answers (hung, or its replies dropped): the
first read returns within the layer's timeout (0.5 s by default; issue 9 asks for 1 s),
and once the breaker is open, reads skip L2 (each well under 10 ms)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.core.breaker import BreakerState

from network_faults import Blackhole
from support import expected, l2_breaker

FIRST_READ_SECONDS = 1.0
SKIPPING_READ_SECONDS = 0.010
OPENING_CALLERS = 5  # the default breaker opens on 5 failures: 5 callers at once, one timeout


def load(key: str) -> str:
    return expected(key)


async def load_async(key: str) -> str:
    return expected(key)


def open_breaker_reads(cache: Any) -> bool:
    """Whether a read now finds the breaker open, with time to spare before its probe."""
    breaker = l2_breaker(cache)
    return breaker.state is BreakerState.OPEN and breaker.probe_in > 0.1


def test_a_blackhole_costs_one_timeout_then_reads_skip_it() -> None:
    with Blackhole() as hole:
        cache = MultilayerCache(
            [InMemoryLayer(max_size=1000, name="l1"), RedisLayer(hole.url, name="l2")]
        )
        start = time.perf_counter()
        assert cache.get_or_load("first", load) == expected("first")
        assert time.perf_counter() - start < FIRST_READ_SECONDS
        keys = [f"opening{n}" for n in range(OPENING_CALLERS)]
        with ThreadPoolExecutor(OPENING_CALLERS) as pool:
            assert list(pool.map(lambda key: cache.get_or_load(key, load), keys)) == [
                expected(key) for key in keys
            ]
        assert l2_breaker(cache).state is BreakerState.OPEN
        durations = []
        while len(durations) < 20 and open_breaker_reads(cache):
            key = f"later{len(durations)}"
            start = time.perf_counter()
            assert cache.get_or_load(key, load) == expected(key)
            durations.append(time.perf_counter() - start)
        assert len(durations) >= 5 and max(durations) < SKIPPING_READ_SECONDS, durations
        cache.close()


async def test_a_blackhole_costs_asyncio_tasks_one_timeout_then_they_skip_it() -> None:
    with Blackhole() as hole:
        l2 = AsyncRedisLayer(hole.url, name="l2")
        cache = AsyncMultilayerCache([InMemoryLayer(max_size=1000, name="l1"), l2])
        start = time.perf_counter()
        assert await cache.get_or_load("first", load_async) == expected("first")
        assert time.perf_counter() - start < FIRST_READ_SECONDS
        keys = [f"opening{n}" for n in range(OPENING_CALLERS)]
        opening = [cache.get_or_load(key, load_async) for key in keys]
        assert await asyncio.gather(*opening) == [expected(key) for key in keys]
        assert l2_breaker(cache).state is BreakerState.OPEN
        durations = []
        while len(durations) < 20 and open_breaker_reads(cache):
            key = f"later{len(durations)}"
            start = time.perf_counter()
            assert await cache.get_or_load(key, load_async) == expected(key)
            durations.append(time.perf_counter() - start)
        assert len(durations) >= 5 and max(durations) < SKIPPING_READ_SECONDS, durations
        await cache.close()
