"""Load: 8 threads and 200 asyncio tasks mixing every operation of the cache for a bounded
time (short TTLs, stale-while-revalidate, refresh-ahead, write-behind, the decorator,
``clear`` now and then), and a long soak whose memory must stay flat.

What is checked: no caller sees an exception or another key's value; at the end, nothing
is in flight, no refresh queued or running, no write queued; no L1 holds a loaded value
its L2 no longer holds; the L1's structure is intact. The soak:
100,000 operations here (``-m slow``: 1,000,000), Python objects and RSS flat between the
first fifth and the end, the manager's tables empty or within their bounds."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
from collections.abc import Callable
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
    WriteBehind,
)

from invariants import check_invariants

KEYS = [f"k{n}" for n in range(400)]
SOAK_SECONDS = 2.0
L1_POLICY = LayerPolicy(ttl=0.3, stale_ttl=1.0, refresh_ahead=0.5)
L2_TTL = 30.0  # longer than the test: L1 can never outlive what L2 holds


def value_for(key: str, rng: random.Random) -> str:
    """Every value names its key: a reader can tell another key's value."""
    return f"{key}:{rng.random()}"


def belongs(key: Any, value: Any) -> bool:
    return isinstance(value, str) and value.startswith(f"{key}:")


class Report:
    """What the workers saw: exceptions, values of the wrong key, operations done."""

    def __init__(self) -> None:
        self.failures: list[BaseException] = []
        self.wrong: list[tuple[Any, Any]] = []
        self.operations = 0

    def check(self, found: dict[Any, Any]) -> None:
        for key, value in found.items():
            if not belongs(key, value):
                self.wrong.append((key, value))


def load(key: str) -> str:
    return f"{key}:loaded"


def load_many(keys: list[str]) -> dict[str, str]:
    return {key: f"{key}:loaded" for key in keys}


def sync_operation(cache: MultilayerCache, cached: Callable[[str], str], rng: random.Random):
    """One random operation of every kind ``MultilayerCache`` has; what it read."""
    key, some = rng.choice(KEYS), rng.sample(KEYS, 5)
    dice = rng.random()
    if dice < 0.25:
        return {key: cache.get_or_load(key, load)}
    if dice < 0.40:
        value = cache.get(key)
        return {} if value is None else {key: value}
    if dice < 0.50:
        return cache.get_many(some)
    if dice < 0.58:
        return cache.get_or_load_many(some, load_many)
    if dice < 0.70:
        cache.set(key, value_for(key, rng), ttl=rng.choice([None, 0.2, 5]))
    elif dice < 0.74:
        cache.set_many({k: value_for(k, rng) for k in some})
    elif dice < 0.82:
        cache.delete(key)
    elif dice < 0.85:
        cache.delete_many(some)
    elif dice < 0.89:
        cache.contains(key)
        cache.remaining_ttl(key)
    elif dice < 0.97:
        return {key: cached(key)}
    elif dice < 0.9995:
        cached.invalidate(key)  # type: ignore[attr-defined]
    else:
        cache.clear()
    return {}


async def async_operation(cache: AsyncMultilayerCache, rng: random.Random) -> dict[Any, Any]:
    key, some = rng.choice(KEYS), rng.sample(KEYS, 5)
    dice = rng.random()

    async def aload(key: str) -> str:
        await asyncio.sleep(0)
        return f"{key}:loaded"

    async def aload_many(keys: list[str]) -> dict[str, str]:
        return load_many(keys)

    if dice < 0.30:
        return {key: await cache.get_or_load(key, aload)}
    if dice < 0.45:
        value = await cache.get(key)
        return {} if value is None else {key: value}
    if dice < 0.55:
        return await cache.get_many(some)
    if dice < 0.62:
        return await cache.get_or_load_many(some, aload_many)
    if dice < 0.77:
        await cache.set(key, value_for(key, rng))
    elif dice < 0.80:
        await cache.set_many({k: value_for(k, rng) for k in some})
    elif dice < 0.90:
        await cache.delete(key)
    elif dice < 0.93:
        await cache.delete_many(some)
    elif dice < 0.9995:
        await cache.contains(key)
        await cache.remaining_ttl(key)
    else:
        await cache.clear()
    return {}


def l1_older_than_l2(l1: Any, l2: RedisLayer) -> list[tuple[str, Any, Any]]:
    """The keys whose L1 holds a loaded value that L2 no longer holds: a load that a set
    or delete overtook, copied into L1 anyway (what the generations prevent).

    L1 holding a *set* value that L2 does not is left out: two known races end so, the
    documented stale set (a load lands in L2 just after a set there:
    test_races.test_a_load_landing_in_l2_just_after_a_set_leaves_l1_with_the_set) and two
    concurrent writes of one key (test_concurrent_writes.py, xfail)."""
    older = []
    for key in KEYS:
        mine = l1.get(key)
        if mine is None or not mine.endswith((":loaded", ":computed")):
            continue
        entry = l2.get_entry(key)
        if entry is None or entry.value != mine:
            older.append((key, mine, None if entry is None else entry.value))
    return older


def test_8_threads_and_200_tasks_mixing_every_operation(
    redis_url: str, prefix: str, impl: Any
) -> None:
    policies = [L1_POLICY, LayerPolicy(ttl=L2_TTL, stale_ttl=L2_TTL)]
    # A hard timeout well above a load's time even on a busy machine: a caller that waits
    # this long is a stall this soak must report, not a slow moment of the machine.
    options = LoadOptions(soft_timeout=0.05, hard_timeout=5.0, max_concurrent_loads=16)
    sync_l1 = impl.InMemoryLayer(max_size=150, name="l1")
    sync_l2 = RedisLayer(redis_url, prefix=f"{prefix}sync:", name="l2")
    cache = MultilayerCache([sync_l1, sync_l2], policies, load_options=options)

    @cache.cached(ttl=1)
    def cached(key: str) -> str:
        return f"{key}:computed"

    async_l1 = impl.InMemoryLayer(max_size=150, name="l1")
    behind = LayerPolicy(ttl=L2_TTL, stale_ttl=L2_TTL, write=WriteBehind(max_delay=0.01))
    acache = AsyncMultilayerCache(
        [async_l1, AsyncRedisLayer(redis_url, prefix=f"{prefix}async:", name="l2")],
        [L1_POLICY, behind],
        load_options=options,
    )
    report = Report()
    stop = threading.Event()

    def thread(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                report.check(sync_operation(cache, cached, rng))
            except Exception as error:
                report.failures.append(error)
            report.operations += 1

    async def tasks() -> None:
        async def task(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                try:
                    report.check(await async_operation(acache, rng))
                except Exception as error:
                    report.failures.append(error)
                report.operations += 1
                await asyncio.sleep(0)

        await asyncio.gather(*(task(seed) for seed in range(1000, 1200)))
        assert await acache.wait_idle(10)
        assert await acache.flush(10)
        assert acache.in_flight == 0

    threads = [threading.Thread(target=thread, args=(seed,)) for seed in range(8)]
    loop_thread = threading.Thread(target=asyncio.run, args=(tasks(),))
    for started in (*threads, loop_thread):
        started.start()
    time.sleep(SOAK_SECONDS)
    stop.set()
    for started in (*threads, loop_thread):
        started.join(30)
        assert not started.is_alive(), "a worker did not stop"
    assert report.failures == [] and report.wrong == []
    assert report.operations > 2_000
    assert cache.wait_idle(10) and cache.in_flight == 0
    state = cache._state
    assert len(state.refreshes) == 0 and state.refreshes.running == 0
    assert acache._state.refreshes.running == 0 and len(acache._state.refreshes) == 0
    assert acache.stats().write_queues["l2"].depth == 0
    assert l1_older_than_l2(sync_l1, sync_l2) == []
    async_l2 = RedisLayer(redis_url, prefix=f"{prefix}async:")
    assert l1_older_than_l2(async_l1, async_l2) == []
    async_l2.close()
    check_invariants(sync_l1)
    check_invariants(async_l1)
    cache.close()
    asyncio.run(acache.close())


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def soak(operations: int, redis_url: str, prefix: str) -> None:
    """``operations`` mixed operations from 4 threads, most of them L1 hits over a key
    space larger than L1, about a tenth below it (misses, writes, deletes, batches: what
    keeps Redis, the flights and the refreshes busy); memory measured after the first
    fifth (the caches warm) and at the end."""
    policies = [LayerPolicy(ttl=3, stale_ttl=1, refresh_ahead=0.8), None]
    cache = MultilayerCache(
        [InMemoryLayer(max_size=2_000), RedisLayer(redis_url, prefix=prefix)],
        policies,
        load_options=LoadOptions(hard_timeout=1.0),
    )
    keys = [f"k{n}" for n in range(3_000)]
    hot = keys[:1_500]
    report = Report()
    done = [0]
    lock = threading.Lock()
    measured: dict[str, tuple[int, int]] = {}
    warm = operations // 5

    def measure(name: str) -> None:
        gc.collect()
        measured[name] = (len(gc.get_objects()), rss_bytes())

    def work(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            with lock:
                if done[0] >= operations:
                    return
                done[0] += 1
                if done[0] == warm:
                    measure("warm")
            key = rng.choice(hot) if rng.random() < 0.9 else rng.choice(keys)
            dice = rng.random()
            try:
                if dice < 0.93:
                    report.check({key: cache.get_or_load(key, load)})
                elif dice < 0.97:
                    cache.set(key, value_for(key, rng), ttl=rng.choice([0.05, 1.0, None]))
                elif dice < 0.99:
                    cache.delete(key)
                else:
                    report.check(cache.get_many(rng.sample(keys, 10)))
            except Exception as error:
                report.failures.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.wait_idle(10)
    measure("end")
    assert report.failures == [] and report.wrong == []
    assert cache.in_flight == 0 and len(cache._driver.flight) == 0
    state = cache._state
    assert len(state.refreshes) == 0 and state.refreshes.running == 0
    assert len(state.unconfirmed) == 0 and len(state.throttle) == 0
    (objects_warm, rss_warm), (objects_end, rss_end) = measured["warm"], measured["end"]
    assert objects_end - objects_warm < 5_000, (objects_warm, objects_end)
    assert rss_end - rss_warm < 16 * 2**20, (rss_warm, rss_end)
    cache.close()


def test_a_100k_operation_soak_keeps_memory_flat_and_tables_empty(redis_url, prefix) -> None:
    soak(100_000, redis_url, prefix)


@pytest.mark.slow
def test_a_1m_operation_soak_keeps_memory_flat_and_tables_empty(redis_url, prefix) -> None:
    soak(1_000_000, redis_url, prefix)


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_caller_joining_a_running_refresh_gets_a_value(kind: str) -> None:
    l1 = InMemoryLayer(max_size=100)
    policy = LayerPolicy(ttl=0.2, refresh_ahead=0.5)
    if kind == "sync":
        cache = MultilayerCache([l1], [policy])

        def slow(key: str) -> str:
            time.sleep(0.3)
            return f"{key}:loaded"

        cache.set("k", "k:old")
        time.sleep(0.15)  # past the refresh point
        assert cache.get_or_load("k", slow) == "k:old"  # a refresh starts (0.3 s)
        time.sleep(0.05)
        l1.delete("k")  # evicted meanwhile (or expired, or deleted)
        assert cache.get_or_load("k", slow) == "k:loaded"
        return

    async def scenario() -> None:
        acache = AsyncMultilayerCache([l1], [policy])

        async def slow(key: str) -> str:
            await asyncio.sleep(0.3)
            return f"{key}:loaded"

        await acache.set("k", "k:old")
        await asyncio.sleep(0.15)
        assert await acache.get_or_load("k", slow) == "k:old"
        await asyncio.sleep(0.01)
        l1.delete("k")
        assert await acache.get_or_load("k", slow) == "k:loaded"

    asyncio.run(scenario())
