"""AsyncMultilayerCache over a real InMemoryLayer and a real Redis server, with real tasks."""

from __future__ import annotations

import asyncio

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerError,
    LayerPolicy,
    SerializationError,
)

from conftest import command_calls


@pytest.fixture
async def layers(redis_url, prefix):
    l1 = InMemoryLayer(max_size=1_000, name="l1")
    l2 = AsyncRedisLayer(redis_url, prefix=prefix, name="l2")
    yield l1, l2
    await l2.close()


@pytest.fixture
def cache(layers):
    return AsyncMultilayerCache(list(layers))


async def test_write_through_promotion_delete(cache, layers) -> None:
    l1, l2 = layers
    await cache.set("k", [1, 2])
    assert l1.get("k") == [1, 2] and await l2.get("k") == [1, 2]
    await l2.set("below", "v")
    assert await cache.get("below") == "v" and "below" not in l1
    assert await cache.get("below") == "v" and l1.get("below") == "v"
    assert await cache.delete("k") and await cache.get("k", "dflt") == "dflt"
    with pytest.raises(SerializationError):
        await cache.set("k", object())
    assert "k" not in l1


async def test_1000_tasks_on_one_missing_key_call_the_loader_once(cache) -> None:
    calls = []

    async def loader(key):
        calls.append(key)
        await asyncio.sleep(0.1)
        return {"key": key}

    results = await asyncio.gather(*[cache.get_or_load("hot", loader) for _ in range(1000)])
    assert calls == ["hot"]
    assert all(result == {"key": "hot"} for result in results)
    assert cache.in_flight == 0
    stats = cache.stats()
    assert stats.loader_calls == 1 and stats.coalesced_waits == 999
    assert sum(stats.read_errors.values()) == 0


async def test_loader_exception_reaches_every_task(cache) -> None:
    calls = []

    async def loader(key):
        calls.append(key)
        await asyncio.sleep(0.05)
        raise KeyError("no such user")

    results = await asyncio.gather(
        *[cache.get_or_load("k", loader) for _ in range(100)], return_exceptions=True
    )
    assert len(calls) == 1 and all(isinstance(result, KeyError) for result in results)
    assert cache.in_flight == 0 and await cache.get("k") is None


async def test_a_cancelled_waiter_does_not_cancel_the_load(cache) -> None:
    started = asyncio.Event()

    async def loader(key):
        started.set()
        await asyncio.sleep(0.1)
        return "done"

    first = asyncio.create_task(cache.get_or_load("k", loader))
    await started.wait()
    second = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "done"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert cache.in_flight == 0 and await cache.get("k") == "done"


async def test_get_many_and_bulk_loading(cache, layers, raw_redis) -> None:
    l1, l2 = layers
    l1.set("one", 1)
    await l2.set("two", 2)
    before = command_calls(raw_redis, "mget")
    assert await cache.get_many(["one", "two", "three"]) == {"one": 1, "two": 2}
    assert command_calls(raw_redis, "mget") == before + 1
    calls = []

    async def bulk(keys):
        calls.append(keys)
        return {key: key * 2 for key in keys}

    assert await cache.get_or_load_many(["one", "three", "four"], bulk) == {
        "one": 1,
        "three": "threethree",
        "four": "fourfour",
    }
    assert calls == [["three", "four"]]
    assert await l2.get("four") == "fourfour"


async def test_cached_decorator(cache) -> None:
    calls = []

    @cache.cached(ttl=30)
    async def square(x):
        calls.append(x)
        return x * x

    assert [await square(3), await square(3), await square(4)] == [9, 9, 16]
    assert calls == [3, 4]
    assert await square.invalidate(3)
    await square(3)
    assert calls == [3, 4, 3]
    with pytest.raises(TypeError, match="not a coroutine function"):

        @cache.cached()
        def sync_function():
            return 1


async def test_sync_loader_is_refused(cache) -> None:
    with pytest.raises(TypeError, match="not an awaitable"):
        await cache.get_or_load("k", lambda key: "sync value")
    assert cache.in_flight == 0


async def test_layered_ttls_and_a_dead_l2(doomed_server, prefix) -> None:
    l1 = InMemoryLayer(max_size=100)
    l2 = AsyncRedisLayer(
        doomed_server.url, prefix=prefix, socket_timeout=1, socket_connect_timeout=1
    )
    cache = AsyncMultilayerCache([l1, l2], [LayerPolicy(ttl=0.2), LayerPolicy(ttl=60)])
    await cache.set("k", "v")
    await asyncio.sleep(0.3)
    assert "k" not in l1 and await cache.get("k") == "v"
    doomed_server.kill()

    async def load(key):
        return "loaded"

    assert await cache.get_or_load("other", load) == "loaded"
    with pytest.raises(LayerError):
        await cache.set("x", 1)
    assert cache.stats().read_errors["redis"] >= 1
    await cache.close()
