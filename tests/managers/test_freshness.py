"""Freshness and fail-safe through the managers, on {sync, asyncio} x {compiled, pure} L1:
stale-while-revalidate, refresh-ahead, fail-safe with its throttle, batches, and stale values
kept in the shared layer (timeouts: test_timeouts.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from multilayercache import AsyncMultilayerCache, LayerPolicy, MultilayerCache
from multilayercache.core.options import LoadOptions

STALE = [LayerPolicy(ttl=10, stale_ttl=100)]


HELD_FOR = 5.0
"""The longest a held load waits for its release (then it ends anyway)."""


class Source:
    """A loader that counts its calls and hands out new versions. After ``hold()``, a load
    waits until ``release()``: one that a caller waits for keeps that caller waiting."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail, self.calls = delay, fail, 0
        self.lock = threading.Lock()
        self.released: threading.Event | None = None
        """Set when held loads may end (``None``: loads are not held)."""

    def hold(self) -> None:
        self.released = threading.Event()

    def release(self) -> None:
        assert self.released is not None
        self.released.set()

    def __call__(self, key):
        version = self._begin()
        time.sleep(self.delay)
        if self.released is not None:
            self.released.wait(HELD_FOR)
        return self._end(key, version)

    async def awaited(self, key):
        version = self._begin()
        await asyncio.sleep(self.delay)  # a slow database must not block the event loop
        deadline = time.monotonic() + HELD_FOR
        while self.released is not None and not self.released.is_set():
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.005)
        return self._end(key, version)

    def _begin(self) -> int:
        with self.lock:
            self.calls += 1
            return self.calls

    def _end(self, key, version):
        if self.fail:
            raise ConnectionError("database down")
        return f"{key} v{version}"

    def for_(self, harness):
        return self.awaited if harness.is_async else self


def eventually(harness, condition, within: float = 5.0) -> bool:
    """Whether ``condition`` holds within ``within`` seconds; the harness's event loop
    runs meanwhile (an asyncio cache's background work runs on it)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        if harness.is_async:
            harness.loop.run_until_complete(asyncio.sleep(0.005))
        else:
            time.sleep(0.005)
    return True


def test_a_stale_value_is_served_at_once_and_reloaded_once(harness, clock) -> None:
    cache = harness.cache([harness.l1(clock=clock)], STALE)
    source = Source()
    assert cache.get_or_load("k", source.for_(harness)) == "k v1"
    clock.advance(20)  # past the TTL, within the stale window
    source.hold()  # the reload does not end until released
    assert cache.get_or_load("k", source.for_(harness)) == "k v1"
    assert eventually(harness, lambda: source.calls == 2)  # the reload has begun
    for _ in range(49):  # none waits for the reload: each would wait HELD_FOR, then get v2
        assert cache.get_or_load("k", source.for_(harness)) == "k v1"
    assert cache.get("k", "no fresh value") == "no fresh value"
    source.release()
    assert cache.wait_idle(5)
    assert source.calls == 2 and cache.get_or_load("k", source.for_(harness)) == "k v2"
    stats = cache.stats()
    assert stats.stale_served == 50 and stats.refreshes == 1


def test_refresh_ahead_keeps_a_hot_key_from_ever_missing(harness, clock) -> None:
    policy = LayerPolicy(ttl=10, refresh_ahead=0.5, refresh_jitter=0)
    cache = harness.cache([harness.l1(clock=clock)], [policy])
    source = Source()
    versions = []
    for _ in range(100):  # ten TTL periods, a read every second
        versions.append(cache.get_or_load("hot", source.for_(harness)))
        clock.advance(1)
        assert cache.wait_idle(5)
    assert cache.layers[0].stats().misses == 1  # only the very first read
    assert source.calls >= 10  # refreshed in the background, every half TTL
    assert versions[-1] == f"hot v{source.calls}"


def test_fail_safe_serves_stale_and_throttles_the_failing_key(harness, clock) -> None:
    options = LoadOptions(stale_while_revalidate=False, fail_safe_throttle=0.3)
    cache = harness.cache([harness.l1(clock=clock)], STALE, load_options=options)
    assert cache.get_or_load("k", Source().for_(harness)) == "k v1"
    clock.advance(20)
    failing = Source(fail=True)
    for _ in range(5):
        assert cache.get_or_load("k", failing.for_(harness)) == "k v1"
    assert failing.calls == 1  # throttled after the first failure
    time.sleep(0.35)
    assert cache.get_or_load("k", failing.for_(harness)) == "k v1" and failing.calls == 2
    stats = cache.stats()
    assert stats.fail_safe == 2 and stats.stale_served == 6
    with pytest.raises(ConnectionError):  # nothing stale to fall back on: the error shows
        cache.get_or_load("never-loaded", failing.for_(harness))


def test_a_failed_background_refresh_keeps_the_stale_value(harness, clock) -> None:
    cache = harness.cache([harness.l1(clock=clock)], STALE)
    assert cache.get_or_load("k", Source().for_(harness)) == "k v1"
    clock.advance(20)
    failing = Source(fail=True)
    assert cache.get_or_load("k", failing.for_(harness)) == "k v1"
    assert cache.wait_idle(5)
    assert cache.get_or_load("k", failing.for_(harness)) == "k v1"
    assert cache.stats().refresh_failures == 1 and failing.calls == 1  # then throttled


def test_stale_batches_are_refreshed_with_one_bulk_call(harness, clock) -> None:
    cache = harness.cache([harness.l1(clock=clock)], STALE)
    calls = []

    def bulk(keys):
        calls.append(sorted(keys))
        return {key: f"{key} v{len(calls)}" for key in keys}

    keys = [f"k{i}" for i in range(5)]
    assert cache.get_or_load_many(keys, harness.loader(bulk)) == {k: f"{k} v1" for k in keys}
    clock.advance(20)
    assert cache.get_or_load_many(keys, harness.loader(bulk)) == {k: f"{k} v1" for k in keys}
    assert cache.wait_idle(5)
    assert calls == [keys, keys]  # one bulk refresh for the five stale keys
    assert cache.get_or_load_many(keys, harness.loader(bulk)) == {k: f"{k} v2" for k in keys}


def test_the_shared_layer_keeps_stale_values_for_other_instances(harness, layers) -> None:
    l1, l2 = layers
    policies = [LayerPolicy(ttl=0.1), LayerPolicy(ttl=0.2, stale_ttl=30)]
    writer = harness.cache([l1, l2], policies)
    assert writer.get_or_load("k", Source().for_(harness)) == "k v1"
    time.sleep(0.3)  # stale in L2, gone from L1
    other = harness.cache([harness.l1(), l2], policies)
    source = Source()
    assert other.get_or_load("k", source.for_(harness)) == "k v1"  # stale, at once
    assert other.wait_idle(5)
    assert source.calls == 1 and l2.get("k") == "k v1"  # refreshed below, fresh again


def test_xfetch_refreshes_a_slow_to_load_value_early(harness, layers) -> None:
    l1, l2 = layers
    policies = [None, LayerPolicy(ttl=60, xfetch_beta=1e9)]
    cache = harness.cache([l1, l2], policies)
    assert cache.get_or_load("k", Source(delay=0.01).for_(harness)) == "k v1"
    other = harness.cache([harness.l1(), l2], policies)
    source = Source()
    assert other.get_or_load("k", source.for_(harness)) == "k v1"
    assert other.wait_idle(5)
    assert source.calls == 1 and other.stats().refreshes == 1


def test_1000_threads_on_a_stale_key_make_one_reload(Layer, clock) -> None:
    cache = MultilayerCache([Layer(max_size=10, clock=clock)], STALE)
    source = Source()
    cache.get_or_load("k", source)
    clock.advance(20)
    source.hold()  # the reload does not end while the threads read
    barrier = threading.Barrier(50)
    got: list[str] = []

    def read() -> None:
        barrier.wait()
        got.extend(cache.get_or_load("k", source) for _ in range(20))

    threads = [threading.Thread(target=read) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    source.release()
    # None waited for the reload: one that had would have waited HELD_FOR, then got v2.
    assert got == ["k v1"] * 1000
    assert cache.wait_idle(5) and source.calls == 2


async def test_1000_tasks_on_a_stale_key_make_one_reload(Layer, clock) -> None:
    cache = AsyncMultilayerCache([Layer(max_size=10, clock=clock)], STALE)
    calls = []
    released = asyncio.Event()

    async def load(key):
        calls.append(key)
        if len(calls) > 1:  # the reload: held until the reads are done
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), HELD_FOR)
        return f"{key} v{len(calls)}"

    await cache.get_or_load("k", load)
    clock.advance(20)
    results = await asyncio.gather(*[cache.get_or_load("k", load) for _ in range(1000)])
    released.set()
    # None waited for the reload: one that had would have waited HELD_FOR, then got v2.
    assert results == ["k v1"] * 1000
    assert await cache.wait_idle(5) and len(calls) == 2
    assert await cache.get_or_load("k", load) == "k v2"


def test_a_miss_storm_runs_at_most_max_concurrent_loads(Layer) -> None:
    options = LoadOptions(max_concurrent_loads=3)
    cache = MultilayerCache([Layer(max_size=1_000)], load_options=options)
    running, peak, lock = [0], [0], threading.Lock()

    def load(key):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return key

    threads = [threading.Thread(target=cache.get_or_load, args=(f"k{i}", load)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 3 and cache.stats().loader_calls == 24


async def test_a_task_storm_runs_at_most_max_concurrent_loads(Layer) -> None:
    options = LoadOptions(max_concurrent_loads=3)
    cache = AsyncMultilayerCache([Layer(max_size=1_000)], load_options=options)
    running, peak = [0], [0]

    async def load(key):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.02)
        running[0] -= 1
        return key

    await asyncio.gather(*[cache.get_or_load(f"k{i}", load) for i in range(24)])
    assert peak[0] == 3 and cache.stats().loader_calls == 24
