"""The public API contract of ../shared/ARCHITECTURE.md, and the promise that the sync and
asyncio classes are twins: the same public methods with the same parameters."""

from __future__ import annotations

import inspect

import pytest

import multilayercache
from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    AsyncWriterLayer,
    InMemoryLayer,
    MultilayerCache,
    RedisLayer,
    WriterLayer,
)

CONTRACT = {
    InMemoryLayer: [
        "set", "get", "delete", "__len__", "__contains__", "get_top_keys",
        "get_frequency_estimate", "adjust_ttl", "stats", "snapshot", "get_many", "set_many",
    ],
    RedisLayer: ["get", "set", "delete", "get_many", "set_many", "stats", "close"],
    MultilayerCache: [
        "get", "set", "get_or_load", "get_many", "set_many", "delete", "cached",
        "get_or_load_many", "stats", "close",
    ],
}  # fmt: skip


def test_the_contract_names_import_from_the_package() -> None:
    for name in ("InMemoryLayer", "RedisLayer", "AsyncRedisLayer", "MultilayerCache",
                 "AsyncMultilayerCache"):  # fmt: skip
        assert name in multilayercache.__all__ and hasattr(multilayercache, name)
    for cls, methods in CONTRACT.items():
        missing = [method for method in methods if not callable(getattr(cls, method, None))]
        assert not missing, f"{cls.__name__} lacks {missing}"


def public_signatures(cls: type) -> dict[str, list[tuple[str, str]]]:
    """Each public method (and ``__init__``) with its parameters' names and kinds."""
    methods = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name != "__init__":
            continue
        if not callable(member) or isinstance(member, type):
            continue
        parameters = inspect.signature(member).parameters.values()
        methods[name] = [(p.name, p.kind.name) for p in parameters]
    return methods


@pytest.mark.parametrize(
    ("sync_class", "async_class"),
    [
        (MultilayerCache, AsyncMultilayerCache),
        (RedisLayer, AsyncRedisLayer),
        (WriterLayer, AsyncWriterLayer),
    ],
    ids=["managers", "redis layers", "writer layers"],
)
def test_sync_and_asyncio_twins_have_the_same_methods_and_parameters(
    sync_class, async_class
) -> None:
    sync_methods = public_signatures(sync_class)
    async_methods = public_signatures(async_class)
    assert sorted(sync_methods) == sorted(async_methods)
    for name, parameters in sync_methods.items():
        assert async_methods[name] == parameters, name


@pytest.mark.parametrize(
    ("sync_class", "async_class"),
    [
        (MultilayerCache, AsyncMultilayerCache),
        (RedisLayer, AsyncRedisLayer),
        (WriterLayer, AsyncWriterLayer),
    ],
    ids=["managers", "redis layers", "writer layers"],
)
def test_asyncio_twins_await_what_does_io(sync_class, async_class) -> None:
    # No "maybe awaitable" results: a method is a coroutine on the asyncio twin and plain on
    # the sync one, except what does no IO (stats, the decorator factory, and what both
    # inherit from shared IO-free code), which is plain on both.
    shared = set(dir(sync_class)) & set(dir(async_class))
    for name in public_signatures(sync_class):
        sync_member, async_member = getattr(sync_class, name), getattr(async_class, name)
        assert not inspect.iscoroutinefunction(sync_member), name
        inherited = name in shared and getattr(sync_class, name) is getattr(async_class, name)
        plain = name in ("stats", "cached", "__init__") or inherited
        assert inspect.iscoroutinefunction(async_member) is not plain, name


def test_the_documented_get_and_get_or_load_answer_as_the_front_door_does() -> None:
    # An instance's get / get_or_load are its compiled front door's; the class's methods
    # carry the signature and docs, and must answer an unbound call the same way, with
    # every parameter passed by the name the docs give it.
    with MultilayerCache([InMemoryLayer(max_size=100)]) as cache:
        loads = []

        def load(key: str) -> str:
            loads.append(key)
            return key.upper()

        assert MultilayerCache.get_or_load(cache, "a", loader=load, ttl=60, tags=()) == "A"
        assert cache.get_or_load("a", loader=load, ttl=60, hard_timeout=1.0) == "A"
        assert loads == ["a"]
        assert MultilayerCache.get(cache, "a") == cache.get("a") == "A"
        assert MultilayerCache.get(cache, "b", default=0) == cache.get("b", default=0) == 0
        with pytest.raises(ValueError):
            MultilayerCache.get_or_load(cache, "a", load, ttl=-1)
