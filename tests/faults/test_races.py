"""Races between a reader that copies a value up into L1 and a writer of the same key.

The probe: a reader (``get``, which promotes what it finds in L2) and a writer (``set`` or
``delete``) started together on a fresh key held only by L2, thousands of times, on real
threads (or asyncio tasks) over a real Redis L2; afterwards L1 must never hold a value
that L2 does not (an older one, or one L2 no longer has)."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
)

TRIALS = 2_000
OLD, NEW = "old", "new"
ABSENT = object()
ALWAYS = [LayerPolicy(promote="always"), None]  # every read below L1 copies up


def stale_in_l1(l1: Any, l2_value: Any, key: str) -> bool:
    """Whether L1 answers for ``key`` with something L2 does not hold."""
    held = l1.get(key, ABSENT)
    return held is not ABSENT and held != l2_value


# ---------------------------------------------------------------------------- the probe
def probe_threads(cache: Any, l1: Any, l2: Any, write: str, trials: int, prefix: str) -> int:
    """Stale L1 entries left by ``trials`` races of a reader thread against a writer
    thread (``write``: ``"set"`` or ``"delete"``), each on a fresh key L2 alone holds."""
    start, done = threading.Barrier(3), threading.Barrier(3)
    keys = [f"{prefix}race:{n}" for n in range(trials)]
    rng = random.Random(7)
    delays = [(rng.random() * 2e-4, rng.random() * 2e-4) for _ in range(trials)]
    failures: list[BaseException] = []

    def spin(seconds: float) -> None:  # a sleep this short would take far longer
        end = _now() + seconds
        while _now() < end:
            pass

    def reader() -> None:
        for key, (delay, _) in zip(keys, delays, strict=True):
            start.wait()
            try:
                spin(delay)
                cache.get(key)
            except BaseException as error:
                failures.append(error)
            done.wait()

    def writer() -> None:
        for key, (_, delay) in zip(keys, delays, strict=True):
            start.wait()
            try:
                spin(delay)
                cache.set(key, NEW) if write == "set" else cache.delete(key)
            except BaseException as error:
                failures.append(error)
            done.wait()

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    stale = 0
    for key in keys:
        l2.set(key, OLD)  # L2 alone holds it: a read promotes it
        start.wait()
        done.wait()
        stale += stale_in_l1(l1, l2.get(key, ABSENT), key)
    for thread in threads:
        thread.join()
    assert failures == []
    return stale


async def probe_tasks(cache: Any, l1: Any, l2: Any, write: str, trials: int, prefix: str) -> int:
    """``probe_threads`` with a reader task and a writer task on one event loop."""
    rng = random.Random(7)
    stale = 0
    for n in range(trials):
        key = f"{prefix}race:{n}"
        await l2.set(key, OLD)

        async def read(key: str = key) -> None:
            await cache.get(key)

        async def change(key: str = key) -> None:
            await (cache.set(key, NEW) if write == "set" else cache.delete(key))

        pair = [read(), change()]
        if rng.random() < 0.5:  # which one the loop starts first
            pair.reverse()
        await asyncio.gather(*pair)
        stale += stale_in_l1(l1, await l2.get(key, ABSENT), key)
    return stale


def _now() -> float:
    import time

    return time.perf_counter()


@pytest.mark.parametrize("write", ["set", "delete"])
def test_the_promotion_race_probe_leaves_no_stale_l1_entry_threads(
    write: str, redis_url: str, prefix: str
) -> None:
    l1 = InMemoryLayer(max_size=3 * TRIALS)
    l2 = RedisLayer(redis_url, prefix=prefix)
    cache = MultilayerCache([l1, l2], ALWAYS)
    stale = probe_threads(cache, l1, l2, write, TRIALS, "")
    cache.close()
    assert stale == 0, f"reader vs {write}, threads: {stale} of {TRIALS} trials left L1 stale"


@pytest.mark.parametrize("write", ["set", "delete"])
async def test_the_promotion_race_probe_leaves_no_stale_l1_entry_tasks(
    write: str, redis_url: str, prefix: str
) -> None:
    l1 = InMemoryLayer(max_size=3 * TRIALS)
    l2 = AsyncRedisLayer(redis_url, prefix=prefix)
    cache = AsyncMultilayerCache([l1, l2], ALWAYS)
    stale = await probe_tasks(cache, l1, l2, write, TRIALS, "")
    await cache.close()
    assert stale == 0, f"reader vs {write}, tasks: {stale} of {TRIALS} trials left L1 stale"
