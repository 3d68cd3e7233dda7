"""``AsyncMultilayerCache`` under real asyncio tasks: coalescing and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from multilayercache import AsyncMultilayerCache, AsyncRedisLayer, InMemoryLayer


@pytest.fixture
async def async_cache(redis_url, prefix):
    l2 = AsyncRedisLayer(redis_url, prefix=prefix, name="l2")
    yield AsyncMultilayerCache([InMemoryLayer(max_size=1_000, name="l1"), l2])
    await l2.close()


async def test_1000_tasks_on_one_missing_key_call_the_loader_once(async_cache) -> None:
    calls = []

    async def loader(key):
        calls.append(key)
        await asyncio.sleep(0.1)
        return {"key": key}

    results = await asyncio.gather(*[async_cache.get_or_load("hot", loader) for _ in range(1000)])
    assert calls == ["hot"]
    assert all(result == {"key": "hot"} for result in results)
    assert async_cache.in_flight == 0
    stats = async_cache.stats()
    assert stats.loader_calls == 1 and stats.coalesced_waits == 999
    assert sum(stats.read_errors.values()) == 0


async def test_loader_exception_reaches_every_task(async_cache) -> None:
    calls = []

    async def loader(key):
        calls.append(key)
        await asyncio.sleep(0.05)
        raise KeyError("no such user")

    results = await asyncio.gather(
        *[async_cache.get_or_load("k", loader) for _ in range(100)], return_exceptions=True
    )
    assert len(calls) == 1 and all(isinstance(result, KeyError) for result in results)
    assert async_cache.in_flight == 0 and await async_cache.get("k") is None


async def test_a_cancelled_waiter_does_not_cancel_the_load(async_cache) -> None:
    started = asyncio.Event()

    async def loader(key):
        started.set()
        await asyncio.sleep(0.1)
        return "done"

    first = asyncio.create_task(async_cache.get_or_load("k", loader))
    await started.wait()
    second = asyncio.create_task(async_cache.get_or_load("k", loader))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "done"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert async_cache.in_flight == 0 and await async_cache.get("k") == "done"


async def test_sync_loader_is_refused(async_cache) -> None:
    with pytest.raises(TypeError, match="not an awaitable"):
        await async_cache.get_or_load("k", lambda key: "sync value")
    assert async_cache.in_flight == 0
