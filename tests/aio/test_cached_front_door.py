"""What users of ``AsyncMultilayerCache.cached`` rely on now that a call is a compiled
``AsyncCachedCall`` (``aio/_frontdoor_py.py``) and not an ``async def`` wrapper: frameworks
still see a coroutine function, a call still returns a coroutine that asyncio schedules and
that runs nothing until awaited, keys are the sync decorator's, and stale values and bad
arguments behave as before. On the compiled and the pure twins."""

from __future__ import annotations

import asyncio
import functools
import inspect

import pytest

import multilayercache.aio.cache
import multilayercache.core.decorate
from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
)

from support import IMPLEMENTATIONS


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda impl: impl.name)
def impl(request, monkeypatch):
    # The manager picks its twins at import; these tests run on both.
    twin = request.param
    monkeypatch.setattr(multilayercache.aio.cache, "AsyncCachedCall", twin.AsyncCachedCall)
    monkeypatch.setattr(multilayercache.core.decorate, "CachedMethod", twin.CachedMethod)
    monkeypatch.setattr(multilayercache.core.decorate, "CachedClassMethod", twin.CachedClassMethod)
    return twin


def a_cache(impl, *policies: LayerPolicy, clock=None) -> AsyncMultilayerCache:
    options = {} if clock is None else {"clock": clock}
    return AsyncMultilayerCache(
        [impl.InMemoryLayer(max_size=100, **options)], list(policies) or None
    )


def test_frameworks_see_coroutine_functions(impl) -> None:
    # FastAPI and Starlette ask inspect / asyncio whether to await what they are given.
    cache = a_cache(impl)

    @cache.cached()
    async def price(item: int) -> int:
        return item

    class Shop:
        @cache.cached()
        async def price(self, item: int) -> int:
            return item

        @cache.cached()
        @classmethod
        async def tax(cls, item: int) -> int:
            return item

        @cache.cached()
        @staticmethod
        async def shipping(item: int) -> int:
            return item

    shop = Shop()
    for name, callable_ in [
        ("function", price),
        ("method on an instance", shop.price),
        ("method on the class", Shop.price),
        ("class method on the class", Shop.tax),
        ("class method on an instance", shop.tax),
        ("static method", Shop.shipping),
        ("static method on an instance", shop.shipping),
    ]:
        assert inspect.iscoroutinefunction(callable_), name
        assert asyncio.iscoroutinefunction(callable_), name
        assert not inspect.isclass(callable_)
    # and they keep the function's own signature and wrapper attributes
    assert str(inspect.signature(price)) == "(item: 'int') -> 'int'"
    assert str(inspect.signature(shop.price)) == "(item: 'int') -> 'int'"
    assert price.__name__ == "price" and price.__qualname__.endswith("<locals>.price")
    assert price.__wrapped__.__name__ == "price" and Shop.price.__name__ == "price"


def test_a_call_is_a_coroutine_that_asyncio_schedules(impl) -> None:
    cache = a_cache(impl)
    runs = []

    @cache.cached()
    async def square(x: int) -> int:
        """Squares."""
        runs.append(x)
        await asyncio.sleep(0)
        return x * x

    async def scenario() -> None:
        assert await asyncio.create_task(square(2)) == 4  # a miss, in a task
        assert await asyncio.create_task(square(2)) == 4  # a hit, in a task
        assert await asyncio.gather(square(2), square(3), square(3)) == [4, 9, 9]
        assert await asyncio.wait_for(square(2), timeout=1) == 4
        assert await asyncio.wait_for(square(4), timeout=1) == 16
        assert runs == [2, 3, 4]  # gather's two misses of 3 shared one load
        hit, miss = square(2), square(5)
        assert asyncio.iscoroutine(hit) and asyncio.iscoroutine(miss)
        hit.close(), miss.close()  # never awaited: the body never ran
        await asyncio.sleep(0.01)
        assert runs == [2, 3, 4] and not await cache.contains(square.cache_key(5))

    asyncio.run(scenario())
    assert square.__doc__ == "Squares."


def test_keys_are_the_sync_decorators(impl, redis_url, prefix) -> None:
    # A value the sync decorator wrote in the shared layer is the asyncio one's hit.
    sync_cache = MultilayerCache([InMemoryLayer(max_size=10), RedisLayer(redis_url, prefix=prefix)])
    calls = []

    def rate(currency: str, day: int = 1) -> float:
        calls.append(currency)
        return 1.5

    sync_rate = sync_cache.cached()(rate)
    assert sync_rate("EUR", day=2) == 1.5

    async def scenario() -> None:
        async_cache = AsyncMultilayerCache(
            [impl.InMemoryLayer(max_size=10), AsyncRedisLayer(redis_url, prefix=prefix)]
        )

        @functools.wraps(rate)
        async def async_rate(currency: str, day: int = 1) -> float:
            calls.append(("async", currency))
            return 0.0

        cached = async_cache.cached()(async_rate)
        assert cached.cache_key("EUR", 2).text == sync_rate.cache_key("EUR", day=2).text
        assert await cached("EUR", day=2) == 1.5  # from L2, written by the sync decorator
        assert await cached(currency="EUR", day=2) == 1.5  # now from L1
        await async_cache.close()

    asyncio.run(scenario())
    sync_cache.close()
    assert calls == ["EUR"]


def test_bad_arguments_raise_the_signatures_type_error(impl) -> None:
    cache = a_cache(impl)

    @cache.cached()
    async def area(width: int, height: int = 2) -> int:
        return width * height

    signature = inspect.signature(area)
    for args, kwargs in [((), {}), ((1, 2, 3), {}), ((1,), {"width": 1}), ((1,), {"depth": 3})]:
        with pytest.raises(TypeError) as expected:
            signature.bind(*args, **kwargs)
        with pytest.raises(TypeError) as raised:  # at the call, as a coroutine function's
            area(*args, **kwargs)
        assert str(raised.value) == str(expected.value)

    @cache.cached()
    async def total(items: list) -> int:
        return sum(items)

    with pytest.raises(TypeError, match="must be hashable.*pass key="):
        total([1, 2])


def test_a_stale_value_is_served_and_refreshed_once(impl, clock) -> None:
    # A value past its TTL but within stale_ttl: the L1 steps aside, the load plan serves it
    # at once and reloads it in the background.
    cache = a_cache(impl, LayerPolicy(ttl=10, stale_ttl=100), clock=clock)
    versions = iter(range(1, 100))

    @cache.cached()
    async def version(key: str) -> str:
        return f"{key} v{next(versions)}"

    async def scenario() -> None:
        assert await version("k") == "k v1"
        clock.advance(20)
        assert [await version("k") for _ in range(5)] == ["k v1"] * 5
        assert await cache.wait_idle(5)
        assert await version("k") == "k v2"
        assert await version.invalidate("k") is True
        assert await version("k") == "k v3"

    asyncio.run(scenario())
    stats = cache.stats()
    assert stats.stale_served == 5 and stats.refreshes == 1
