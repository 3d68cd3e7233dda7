"""Loads inside loads under ``max_concurrent_loads`` (issue 19), for threads and tasks, on
the compiled and pure L1: a cached function whose loader calls other cached functions runs
them on its own load slot, a caller holding a slot lends it to the flight it waits for, a
loader's threads run on its slot when they run in a copy of its context, and a load that
asks for its own key fails at once instead of waiting for itself."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    LoadGateTimeout,
    LoadOptions,
    MultilayerCache,
    RecursiveLoadError,
)

BODY_SECONDS = 0.002
LIMITED = LoadOptions(max_concurrent_loads=2, load_wait=10)


def three_deep(cache: MultilayerCache, calls: Counter):
    @cache.cached(ttl=60)
    def bottom(n: int) -> int:
        calls["bottom"] += 1
        time.sleep(BODY_SECONDS)
        return n

    @cache.cached(ttl=60)
    def middle(n: int) -> int:
        calls["middle"] += 1
        time.sleep(BODY_SECONDS)
        return bottom(n) + bottom(n + 1)

    @cache.cached(ttl=60)
    def top(n: int) -> int:
        calls["top"] += 1
        time.sleep(BODY_SECONDS)
        return middle(n) + middle(n + 1)

    return top


def three_deep_async(cache: AsyncMultilayerCache, calls: Counter):
    @cache.cached(ttl=60)
    async def bottom(n: int) -> int:
        calls["bottom"] += 1
        await asyncio.sleep(BODY_SECONDS)
        return n

    @cache.cached(ttl=60)
    async def middle(n: int) -> int:
        calls["middle"] += 1
        await asyncio.sleep(BODY_SECONDS)
        return await bottom(n) + await bottom(n + 1)

    @cache.cached(ttl=60)
    async def top(n: int) -> int:
        calls["top"] += 1
        await asyncio.sleep(BODY_SECONDS)
        first, second = await asyncio.gather(middle(n), middle(n + 1))  # tasks of its own
        return first + second

    return top


def test_3_deep_cached_calls_from_8_threads_never_wait_for_their_own_slot(Layer) -> None:
    cache = MultilayerCache([Layer(max_size=10_000)], load_options=LIMITED)
    calls: Counter = Counter()
    top = three_deep(cache, calls)
    results: dict[int, int] = {}
    slowest = [0.0]
    barrier = threading.Barrier(8)

    def work(thread: int) -> None:
        barrier.wait()
        for round_ in range(5):
            n = thread * 100 + round_ * 3
            start = time.perf_counter()
            results[n] = top(n)
            slowest[0] = max(slowest[0], time.perf_counter() - start)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 40 and all(value == 4 * n + 4 for n, value in results.items())
    assert slowest[0] < LIMITED.load_wait / 4
    assert cache._driver.gate.limit.peak <= 2  # still at most 2 independent loads
    assert cache.in_flight == 0 and cache._driver.gate.in_flight == 0


async def test_3_deep_cached_calls_from_100_tasks_never_wait_for_their_own_slot(Layer) -> None:
    cache = AsyncMultilayerCache([Layer(max_size=10_000)], load_options=LIMITED)
    calls: Counter = Counter()
    top = three_deep_async(cache, calls)
    slowest = 0.0

    async def call(n: int) -> int:
        nonlocal slowest
        start = time.perf_counter()
        value = await top(n)
        slowest = max(slowest, time.perf_counter() - start)
        return value

    results = await asyncio.gather(*(call(n * 3) for n in range(100)))
    assert results == [4 * n * 3 + 4 for n in range(100)]
    assert slowest < LIMITED.load_wait / 2
    assert calls["top"] == 100  # each loaded once, nothing failed and was retried
    assert cache._driver.gate.limit.peak <= 2
    assert cache.in_flight == 0 and cache._driver.gate.in_flight == 0


def test_a_caller_holding_a_slot_lends_it_to_the_flight_it_waits_for(Layer) -> None:
    # Both slots are held by loads that will wait for "shared", whose leader (a caller of
    # its own) waits for a slot: without the lend, all three wait until load_wait.
    cache = MultilayerCache([Layer(max_size=100)], load_options=LIMITED)
    gate = cache._driver.gate
    holding, go = threading.Barrier(3), threading.Event()

    def shared(key):
        time.sleep(0.05)
        return "shared value"

    def outer(key):
        holding.wait(5)  # both slots taken
        go.wait(5)
        return f"{key} with " + cache.get_or_load("shared", shared)

    results: dict[str, object] = {}

    def call(key, loader) -> None:
        start = time.perf_counter()
        try:
            results[key] = (cache.get_or_load(key, loader), time.perf_counter() - start)
        except Exception as error:
            results[key] = (error, time.perf_counter() - start)

    holders = [threading.Thread(target=call, args=(f"outer{n}", outer)) for n in range(2)]
    for thread in holders:
        thread.start()
    holding.wait(5)
    leader = threading.Thread(target=call, args=("shared", shared))
    leader.start()
    deadline = time.monotonic() + 5
    while gate.waiting == 0 and time.monotonic() < deadline:  # the leader waits for a slot
        time.sleep(0.001)
    assert gate.waiting == 1
    go.set()
    for thread in [*holders, leader]:
        thread.join(15)
    assert results["shared"][0] == "shared value"
    assert results["outer0"][0] == "outer0 with shared value"
    assert results["outer1"][0] == "outer1 with shared value"
    assert max(seconds for _, seconds in results.values()) < 2  # not load_wait (10 s)
    assert gate.lent == 1 and gate.in_flight == 0 and cache.stats().loader_calls == 3


async def test_a_task_holding_a_slot_lends_it_to_the_flight_it_waits_for(Layer) -> None:
    cache = AsyncMultilayerCache([Layer(max_size=100)], load_options=LIMITED)
    gate = cache._driver.gate
    go = asyncio.Event()
    started = 0

    async def shared(key):
        await asyncio.sleep(0.05)
        return "shared value"

    async def outer(key):
        nonlocal started
        started += 1
        await go.wait()
        return f"{key} with " + await cache.get_or_load("shared", shared)

    holders = [asyncio.ensure_future(cache.get_or_load(f"outer{n}", outer)) for n in range(2)]
    while started < 2:
        await asyncio.sleep(0.001)
    leader = asyncio.ensure_future(cache.get_or_load("shared", shared))
    while gate.waiting == 0:
        await asyncio.sleep(0.001)
    go.set()
    start = time.perf_counter()
    results = await asyncio.wait_for(asyncio.gather(*holders, leader), 15)
    assert results == ["outer0 with shared value", "outer1 with shared value", "shared value"]
    assert time.perf_counter() - start < 2
    assert gate.lent == 1 and gate.in_flight == 0


def test_threads_a_loader_starts_in_a_copy_of_its_context_run_on_its_slot(Layer) -> None:
    options = LoadOptions(max_concurrent_loads=1, load_wait=0.3)
    cache = MultilayerCache([Layer(max_size=100)], load_options=options)

    def inner(key):
        time.sleep(BODY_SECONDS)
        return f"{key} loaded"

    def fan_out(key):
        with ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, cache.get_or_load, f"part{n}", inner)
                for n in range(4)
            ]
            return [future.result() for future in futures]

    start = time.perf_counter()
    assert cache.get_or_load("whole", fan_out) == [f"part{n} loaded" for n in range(4)]
    assert time.perf_counter() - start < options.load_wait
    assert cache._driver.gate.in_flight == 0

    def plain_thread(key):  # no copy of the context: an independent load, as documented
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(cache.get_or_load, "elsewhere", inner).result()

    with pytest.raises(LoadGateTimeout):
        cache.get_or_load("other whole", plain_thread)


def test_a_thread_that_outlives_its_load_takes_slots_of_its_own(Layer) -> None:
    options = LoadOptions(max_concurrent_loads=1, load_wait=0.2)
    cache = MultilayerCache([Layer(max_size=100)], load_options=options)
    parent_done, other_holds_the_slot, release = (threading.Event() for _ in range(3))
    later: list[object] = []

    def late_load() -> None:  # its context names the parent's slot, given back by now
        parent_done.wait(5)
        other_holds_the_slot.wait(5)
        try:
            later.append(cache.get_or_load("late", lambda key: "value"))
        except Exception as error:
            later.append(error)

    def starts_a_thread(key):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(late_load,))
        thread.start()
        return thread

    thread = cache.get_or_load("parent", starts_a_thread)
    parent_done.set()

    def blocking(key):
        other_holds_the_slot.set()
        release.wait(5)
        return "other"

    other = threading.Thread(target=cache.get_or_load, args=("other", blocking))
    other.start()
    thread.join(5)
    release.set()
    other.join(5)
    assert len(later) == 1 and isinstance(later[0], LoadGateTimeout)  # it waited its turn
    assert cache._driver.gate.in_flight == 0


def test_a_load_that_asks_for_its_own_key_fails_at_once(harness) -> None:
    cache = harness.cache([harness.l1()])
    raw = cache._target

    if harness.is_async:

        async def selfish(key):
            return await raw.get_or_load(key, selfish)

        async def first(key):
            return await raw.get_or_load("b", second)

        async def second(key):
            return await raw.get_or_load("a", first)

    else:

        def selfish(key):
            return raw.get_or_load(key, selfish)

        def first(key):
            return raw.get_or_load("b", second)

        def second(key):
            return raw.get_or_load("a", first)

    start = time.perf_counter()
    with pytest.raises(RecursiveLoadError, match="'k'"):
        cache.get_or_load("k", selfish)
    with pytest.raises(RecursiveLoadError, match="'a'"):  # a -> b -> a
        cache.get_or_load("a", first)
    assert time.perf_counter() - start < 1
    assert cache.in_flight == 0
    assert isinstance(RecursiveLoadError("x"), RuntimeError)
