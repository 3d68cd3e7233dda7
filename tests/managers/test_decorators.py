"""``@cache.cached`` on the sync manager (plain functions) and the asyncio one (coroutine
functions)."""

from __future__ import annotations

import pytest

from multilayercache import AsyncMultilayerCache, InMemoryLayer, MultilayerCache


def test_cached_sync_function() -> None:
    cache = MultilayerCache([InMemoryLayer(max_size=100)])
    calls = []

    @cache.cached(ttl=60)
    def user(user_id, *, detail=False):
        calls.append((user_id, detail))
        return {"id": user_id, "detail": detail}

    assert user(1) == user(1) == {"id": 1, "detail": False}
    assert user(1, detail=True)["detail"] is True
    assert calls == [(1, False), (1, True)]
    assert user.cache_key(1) == f"{__name__}.test_cached_sync_function.<locals>.user:[[1],[]]"
    assert user.invalidate(1) is True
    user(1)
    assert len(calls) == 3
    assert user.__name__ == "user"

    @cache.cached(key=lambda item: f"item:{item.id}")
    def describe(item):
        return f"item {item.id}"

    class Item:
        id = 5

    assert describe(Item()) == "item 5" and cache.get("item:5") == "item 5"

    @cache.cached()
    def takes_objects(item):
        return 1

    with pytest.raises(TypeError, match="pass key="):
        takes_objects(Item())

    with pytest.raises(TypeError, match="coroutine function"):

        @cache.cached()
        async def not_here():
            return 1


async def test_cached_coroutine_function() -> None:
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=100)])
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
