"""Redis SIGKILLed while threads (or asyncio tasks) read and load through the cache, then
restarted on the same port: no caller sees an exception while its value can be loaded or
served stale, and L2 hits resume within 2 s of the restart."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.core.freshness import Freshness
from multilayercache.core.options import LoadOptions
from multilayercache.tools.servers import RedisServer

from support import RESUME_SECONDS, FakeClock, eventually, expected, l2_breaker, wait_until

KEYS = [f"k{n}" for n in range(300)]
L1_ENTRIES = 50  # a sixth of the keys: most reads go below L1, to L2 or the loader


def test_threads_ride_out_a_kill_and_l2_hits_resume(doomed_server: RedisServer, prefix: str):
    l2 = RedisLayer(doomed_server.url, prefix=prefix, name="l2")
    cache = MultilayerCache([InMemoryLayer(max_size=L1_ENTRIES, name="l1"), l2])
    failures: list[BaseException] = []
    wrong: list[tuple[str, Any]] = []
    stop = threading.Event()

    def load(key: str) -> str:
        time.sleep(0.001)  # a quick database query
        return expected(key)

    def read(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(KEYS)
            try:
                value = cache.get_or_load(key, load)
            except Exception as error:
                failures.append(error)
            else:
                if value != expected(key):
                    wrong.append((key, value))

    threads = [threading.Thread(target=read, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: l2.stats().hits > 100, 10) is not None  # L2 serves
        doomed_server.kill()
        # Down long enough for a probe to fail: the breaker has opened twice.
        assert wait_until(lambda: l2_breaker(cache).opened >= 2, 5) is not None
        hits_while_down = l2.stats().hits
        doomed_server.restart()  # empty: the killed server persisted nothing
        resumed = wait_until(lambda: l2.stats().hits > hits_while_down, RESUME_SECONDS)
        assert resumed is not None, f"no L2 hit within {RESUME_SECONDS} s of the restart"
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        cache.close()
    assert failures == [] and wrong == []
    assert cache.stats().read_errors["l2"] > 0  # the readers did meet the dead server


async def test_tasks_ride_out_a_kill_and_l2_hits_resume(doomed_server: RedisServer, prefix: str):
    l2 = AsyncRedisLayer(doomed_server.url, prefix=prefix, name="l2")
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=L1_ENTRIES, name="l1"), l2])
    failures: list[BaseException] = []
    wrong: list[tuple[str, Any]] = []
    stop = asyncio.Event()

    async def load(key: str) -> str:
        await asyncio.sleep(0.001)
        return expected(key)

    async def read(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(KEYS)
            try:
                value = await cache.get_or_load(key, load)
            except Exception as error:
                failures.append(error)
            else:
                if value != expected(key):
                    wrong.append((key, value))
            # Between two calls each task awaits something else for 10 ms, as a service's
            # request handlers do (200 tasks: up to 20,000 calls a second). Not a bare
            # sleep(0): 200 tasks that never wait keep the loop saturated, and on a busy
            # machine its own lag (up to 0.9 s measured) counted against the 2 s below.
            await asyncio.sleep(0.01)

    readers = [asyncio.create_task(read(seed)) for seed in range(200)]
    try:
        assert await eventually(lambda: l2.stats().hits > 100, 10) is not None
        await asyncio.to_thread(doomed_server.kill)
        assert await eventually(lambda: l2_breaker(cache).opened >= 2, 5) is not None
        hits_while_down = l2.stats().hits
        await asyncio.to_thread(doomed_server.restart)
        opened = l2_breaker(cache).opened
        resumed = await eventually(lambda: l2.stats().hits > hits_while_down, RESUME_SECONDS)
        assert resumed is not None, f"no L2 hit within {RESUME_SECONDS} s of the restart"
        assert l2_breaker(cache).opened == opened  # the first probe of the back server closed it
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await cache.close()
    assert failures == [] and wrong == []
    assert cache.stats().read_errors["l2"] > 0


# Fail-safe: the server dies while loads run, and the loader fails too (the database is down
# as well). Callers holding a stale value get it, not the error.
STALE_KEYS = [f"stale{n}" for n in range(8)]
FAIL_SAFE = LoadOptions(stale_while_revalidate=False)  # callers wait for the load
POLICIES = [LayerPolicy(ttl=10, stale_ttl=600), LayerPolicy(ttl=0.05, stale_ttl=600)]


def stale_in(l2: RedisLayer) -> bool:
    """Whether L2 (by wall clock: 50 ms after the writes) holds every key stale."""
    return all(l2.get_entry(key).freshness is Freshness.STALE for key in STALE_KEYS)


def test_threads_get_stale_values_when_the_server_and_the_loader_fail(
    doomed_server: RedisServer, prefix: str
) -> None:
    clock = FakeClock()
    l2 = RedisLayer(doomed_server.url, prefix=prefix, name="l2")
    l1 = InMemoryLayer(max_size=100, name="l1", clock=clock)
    cache = MultilayerCache([l1, l2], POLICIES, load_options=FAIL_SAFE)
    for key in STALE_KEYS:
        cache.set(key, expected(key))
    clock.advance(20)  # stale in L1
    assert wait_until(lambda: stale_in(l2), 5) is not None
    loading, killed = threading.Event(), threading.Event()

    def load(key: str) -> str:
        loading.set()
        killed.wait(5)
        raise ConnectionError("the database is down too")

    answers: list[tuple[str, Any]] = []

    def read(key: str) -> None:
        try:
            answers.append((key, cache.get_or_load(key, load)))
        except Exception as error:
            answers.append((key, error))

    threads = [threading.Thread(target=read, args=(key,)) for key in STALE_KEYS * 4]
    for thread in threads:
        thread.start()
    assert loading.wait(5)
    doomed_server.kill()  # mid-load
    killed.set()
    for thread in threads:
        thread.join()
    assert len(answers) == len(threads)
    assert [(key, value) for key, value in answers if value != expected(key)] == []
    assert cache.stats().fail_safe >= 1
    cache.close()


async def test_tasks_get_stale_values_when_the_server_and_the_loader_fail(
    doomed_server: RedisServer, prefix: str
) -> None:
    clock = FakeClock()
    l2 = AsyncRedisLayer(doomed_server.url, prefix=prefix, name="l2")
    l1 = InMemoryLayer(max_size=100, name="l1", clock=clock)
    cache = AsyncMultilayerCache([l1, l2], POLICIES, load_options=FAIL_SAFE)
    for key in STALE_KEYS:
        await cache.set(key, expected(key))
    clock.advance(20)
    probe = RedisLayer(doomed_server.url, prefix=prefix)  # to read L2's freshness in sync
    assert await eventually(lambda: stale_in(probe), 5) is not None
    probe.close()
    loading, killed = asyncio.Event(), asyncio.Event()

    async def load(key: str) -> str:
        loading.set()
        await killed.wait()
        raise ConnectionError("the database is down too")

    readers = [asyncio.create_task(cache.get_or_load(key, load)) for key in STALE_KEYS * 25]
    await asyncio.wait_for(loading.wait(), 5)
    await asyncio.to_thread(doomed_server.kill)  # mid-load
    killed.set()
    answers = await asyncio.gather(*readers, return_exceptions=True)
    assert answers == [expected(key) for key in STALE_KEYS * 25]
    assert cache.stats().fail_safe >= 1
    await cache.close()
