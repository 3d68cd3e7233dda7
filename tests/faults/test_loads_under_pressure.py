"""Loaders that call back into the cache or hang, against a real server (issue 19).

* Cached functions 3 deep under ``max_concurrent_loads=2``, from 8 threads and 100 tasks at
  once, over L1 + Redis: every call is answered, well under ``load_wait``, and the gate
  still lets at most 2 independent loads run.
* A loader that hangs: every caller waiting for it stops at its hard timeout
  (``LoadTimeoutError``), other keys go on loading meanwhile, no thread is started per
  load, and the value is cached once the loader ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    LoadOptions,
    LoadTimeoutError,
    MultilayerCache,
    RedisLayer,
)

from faults.forking import LoopThread

BODY_SECONDS = 0.002
LIMITED = LoadOptions(max_concurrent_loads=2)  # load_wait: the default 10 s


def test_nested_cached_calls_from_8_threads_and_100_tasks_are_all_answered(
    Layer, redis_url, prefix
) -> None:
    cache = MultilayerCache(
        [Layer(max_size=10_000), RedisLayer(redis_url, prefix=prefix + "sync:")],
        load_options=LIMITED,
    )
    acache = AsyncMultilayerCache(
        [Layer(max_size=10_000), AsyncRedisLayer(redis_url, prefix=prefix + "aio:")],
        load_options=LIMITED,
    )

    @cache.cached(ttl=60)
    def bottom(n: int) -> int:
        time.sleep(BODY_SECONDS)
        return n

    @cache.cached(ttl=60)
    def middle(n: int) -> int:
        time.sleep(BODY_SECONDS)
        return bottom(n) + bottom(n + 1)

    @cache.cached(ttl=60)
    def top(n: int) -> int:
        time.sleep(BODY_SECONDS)
        return middle(n) + middle(n + 1)

    @acache.cached(ttl=60)
    async def abottom(n: int) -> int:
        await asyncio.sleep(BODY_SECONDS)
        return n

    @acache.cached(ttl=60)
    async def amiddle(n: int) -> int:
        await asyncio.sleep(BODY_SECONDS)
        return await abottom(n) + await abottom(n + 1)

    @acache.cached(ttl=60)
    async def atop(n: int) -> int:
        await asyncio.sleep(BODY_SECONDS)
        first, second = await asyncio.gather(amiddle(n), amiddle(n + 1))
        return first + second

    outcomes: Counter = Counter()
    slowest = [0.0]
    lock = threading.Lock()

    def note(outcome: str, seconds: float) -> None:
        with lock:
            outcomes[outcome] += 1
            slowest[0] = max(slowest[0], seconds)

    def work(thread: int) -> None:
        for round_ in range(5):
            n = thread * 100 + round_ * 3
            start = time.perf_counter()
            try:
                assert top(n) == 4 * n + 4
                note("answered", time.perf_counter() - start)
            except Exception as error:
                note(type(error).__name__, time.perf_counter() - start)

    async def task(n: int) -> None:
        start = time.perf_counter()
        try:
            assert await atop(n * 3) == 12 * n + 4
            note("answered", time.perf_counter() - start)
        except Exception as error:
            note(type(error).__name__, time.perf_counter() - start)

    async def tasks() -> None:
        await asyncio.gather(*(task(n) for n in range(100)))

    loop = LoopThread()
    try:
        running = loop.start(tasks())
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        running.result(30)
        assert outcomes == Counter(answered=140)
        assert slowest[0] < LIMITED.load_wait / 3, f"a call took {slowest[0]:.2f} s"
        assert cache._driver.gate.limit.peak <= 2 and acache._driver.gate.limit.peak <= 2
        assert cache.in_flight == 0 and acache.in_flight == 0
        loop.run(acache.close())
    finally:
        loop.close()
        cache.close()


def test_callers_of_a_hung_load_stop_at_their_hard_timeout(Layer, redis_url, prefix) -> None:
    cache = MultilayerCache(
        [Layer(max_size=1_000), RedisLayer(redis_url, prefix=prefix)],
        load_options=LoadOptions(hard_timeout=0.2),
    )
    release, started = threading.Event(), threading.Event()

    def hung(key):
        started.set()
        release.wait(10)
        return "finally"

    leader = threading.Thread(target=cache.get_or_load, args=("hung", hung))
    leader.start()
    assert started.wait(5)
    threads_before = threading.active_count()
    outcomes: list = []
    other_keys: list = []

    def waiter() -> None:
        start = time.perf_counter()
        try:
            outcomes.append(cache.get_or_load("hung", hung))
        except LoadTimeoutError:
            outcomes.append(time.perf_counter() - start)

    def other() -> None:  # unrelated keys keep loading meanwhile
        for n in range(20):
            other_keys.append(cache.get_or_load(f"other:{n}", lambda key: key.upper()))

    workers = [threading.Thread(target=waiter) for _ in range(8)]
    workers.append(threading.Thread(target=other))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    assert len(outcomes) == 8
    assert all(isinstance(seconds, float) and 0.15 < seconds < 1.0 for seconds in outcomes)
    assert other_keys == [f"OTHER:{n}" for n in range(20)]
    assert threading.active_count() == threads_before  # no thread started for any load
    assert cache.stats().hard_timeouts == 8
    release.set()
    leader.join(5)
    assert cache.get("hung") == "finally" and cache.in_flight == 0
    cache.close()


async def test_tasks_waiting_for_a_hung_load_stop_at_their_hard_timeout(
    Layer, redis_url, prefix
) -> None:
    layer = AsyncRedisLayer(redis_url, prefix=prefix)
    cache = AsyncMultilayerCache(
        [Layer(max_size=1_000), layer], load_options=LoadOptions(hard_timeout=0.2)
    )
    release = asyncio.Event()

    async def hung(key):
        await release.wait()
        return "finally"

    async def waiter() -> float:
        start = time.perf_counter()
        try:
            await cache.get_or_load("hung", hung)
        except LoadTimeoutError:
            return time.perf_counter() - start
        return -1.0

    async def other() -> list:
        return [await cache.get_or_load(f"other:{n}", _upper) for n in range(20)]

    *waited, others = await asyncio.gather(*(waiter() for _ in range(100)), other())
    assert all(0.15 < seconds < 1.0 for seconds in waited)  # the first caller too
    assert others == [f"OTHER:{n}" for n in range(20)]
    assert cache.stats().hard_timeouts == 100 and cache.stats().loader_calls == 20  # (+ hung)
    release.set()
    assert await cache.wait_idle(5)  # the flight's task went on
    assert await cache.get("hung") == "finally" and cache.in_flight == 0
    assert cache.stats().loader_calls == 21
    await cache.close()


async def _upper(key: str) -> str:
    return key.upper()
