"""``AsyncMultilayerCache`` under real asyncio tasks: coalescing and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    RecursiveLoadError,
)


@pytest.fixture(params=["l1 + l2", "l1 alone"])
async def async_cache(request, redis_url, prefix):
    # L1 alone: a miss skips the plans (``_load_alone``), in the flight the plans use
    l1 = InMemoryLayer(max_size=1_000, name="l1")
    l2 = AsyncRedisLayer(redis_url, prefix=prefix, name="l2")
    yield AsyncMultilayerCache([l1, l2] if request.param == "l1 + l2" else [l1])
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


async def test_a_lone_layer_load_that_asks_for_its_own_key_fails_at_once() -> None:
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=100)])

    async def loader(key):
        return await cache.get_or_load(key, loader)  # waits for itself: refused

    with pytest.raises(RecursiveLoadError):
        await asyncio.wait_for(cache.get_or_load("k", loader), 5)
    assert cache.in_flight == 0
    assert await cache.get_or_load("k", lambda key: asyncio.sleep(0, "v")) == "v"


async def test_plain_and_timed_tasks_on_a_lone_layer_share_one_load() -> None:
    # The plan-free load (plain callers) and the plan's (a caller with a timeout) of one
    # key are one flight, whichever starts it.
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=100)])
    calls = []

    async def loader(key):
        calls.append(key)
        await asyncio.sleep(0.05)
        return f"v {key}"

    for first in ("plain", "timed"):
        key = f"started by {first}"
        plain = lambda key=key: cache.get_or_load(key, loader)  # noqa: E731
        timed = lambda key=key: cache.get_or_load(key, loader, hard_timeout=5)  # noqa: E731
        order = [plain, timed] * 5 if first == "plain" else [timed, plain] * 5
        assert await asyncio.gather(*(call() for call in order)) == [f"v {key}"] * 10
    assert calls == ["started by plain", "started by timed"]
    assert cache.stats().loader_calls == 2 and cache.in_flight == 0
