"""What the user plugs in misbehaving: loaders, bulk loaders, ``promote`` / ``condition`` /
key functions and persistence writers that raise (``Exception`` or ``BaseException``),
hang, return the wrong type or a value a layer cannot encode, or call back into the cache.

For each: the caller gets the user's own error (or a clear ``TypeError`` /
``LoadTimeoutError`` / ``LoadGateTimeout``), within a bound when a timeout is set; nothing
is left in flight, no load slot is lost, and the next call works. (Loaders that raise for
every waiter, and loaded values a layer cannot encode, are covered in tests/managers.)"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    InMemoryLayer,
    LayerPolicy,
    LoadOptions,
    LoadTimeoutError,
    MultilayerCache,
    RedisLayer,
    WriterLayer,
)
from multilayercache.core.ratelimit import LoadGateTimeout

from faults.forking import in_child

pytestmark = pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")


class Boom(Exception):
    """The user's own failure."""


def two_layers(url: str, prefix: str, **options: Any) -> MultilayerCache:
    return MultilayerCache(
        [InMemoryLayer(max_size=100, name="l1"), RedisLayer(url, prefix=prefix, name="l2")],
        **options,
    )


def test_a_loader_raising_a_base_exception_leaves_nothing_behind(redis_url, prefix) -> None:
    """Ctrl-C (or ``SystemExit``) inside a loader reaches the caller as it is; the key is
    not held off as a failing one (the loader did not fail: the process is stopping)."""
    cache = two_layers(redis_url, prefix)

    def interrupted(key: str) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_load("k", interrupted)
    assert cache.in_flight == 0
    assert cache.get_or_load("k", lambda key: "loaded") == "loaded"
    assert cache.stats().throttled_loads == 0
    cache.close()


def test_a_hung_loader_is_given_up_on_and_keeps_only_its_own_load_slot() -> None:
    """One load slot (``max_concurrent_loads=1``), a loader that hangs. The caller running
    it waits for it (a thread cannot be stopped: the loader's own IO needs a timeout); the
    other callers of the key get ``LoadTimeoutError`` at the hard timeout; the slot stays
    taken while the loader runs (its backend is busy with it), so another key's caller gets
    ``LoadGateTimeout`` after ``load_wait``; once the loader returns, its value is cached
    and the slot free."""
    options = LoadOptions(max_concurrent_loads=1, load_wait=0.2)
    cache = MultilayerCache([InMemoryLayer(max_size=100)], load_options=options)
    release = threading.Event()

    def hangs(key: str) -> str:
        release.wait(10)
        return "late"

    leader: list[str] = []
    running = threading.Thread(target=lambda: leader.append(cache.get_or_load("hung", hangs)))
    running.start()
    while cache.in_flight == 0:
        time.sleep(0.01)
    start = time.monotonic()
    with pytest.raises(LoadTimeoutError, match="hard timeout"):
        cache.get_or_load("hung", hangs, hard_timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 1.0
    start = time.monotonic()
    with pytest.raises(LoadGateTimeout, match="1 of 1 loads in flight"):
        cache.get_or_load("other", lambda key: "other")
    assert 0.2 <= time.monotonic() - start < 1.0
    release.set()
    running.join(5)
    assert leader == ["late"]
    assert cache.wait_idle(5)
    assert cache.get("hung") == "late"  # the late value was cached
    assert cache.get_or_load("other", lambda key: "other") == "other"  # the slot is free
    assert cache.in_flight == 0 and cache.stats().hard_timeouts == 1


async def test_a_hung_asyncio_loader_is_given_up_on_and_cached_when_it_returns() -> None:
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=100)], load_options=LoadOptions(hard_timeout=0.2)
    )
    release = asyncio.Event()

    async def hangs(key: str) -> str:
        await release.wait()
        return "late"

    waiters = [cache.get_or_load("hung", hangs) for _ in range(20)]
    start = time.monotonic()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert time.monotonic() - start < 1.0
    assert all(isinstance(outcome, LoadTimeoutError) for outcome in outcomes)
    assert cache.stats().loader_calls == 0  # one call, still running
    release.set()
    assert await cache.wait_idle(5)
    assert await cache.get("hung") == "late" and cache.stats().loader_calls == 1
    assert cache.in_flight == 0


def test_a_bulk_loader_answering_keys_it_was_not_asked_for_caches_only_those_asked(
    redis_url, prefix
) -> None:
    cache = two_layers(redis_url, prefix)
    found = cache.get_or_load_many(["a"], lambda keys: {"a": 1, "intruder": 2})
    assert found == {"a": 1}
    assert cache.get("intruder") is None and cache.layers[1].get("intruder") is None
    cache.close()


def test_a_coroutine_loader_given_to_the_sync_manager_is_refused_clearly() -> None:
    cache = MultilayerCache([InMemoryLayer(max_size=100)])

    async def load(key: str) -> str:
        return "value"

    try:
        with pytest.raises(TypeError, match="AsyncMultilayerCache"):
            cache.get_or_load("k", load)
        assert cache.get("k") is None
    finally:
        leftover = cache.get("k")
        if asyncio.iscoroutine(leftover):
            leftover.close()  # no "never awaited" warning from the object it cached


def test_a_bulk_load_with_one_unencodable_value_caches_the_others_in_l2(redis_url, prefix) -> None:
    cache = two_layers(redis_url, prefix)
    odd = object()
    found = cache.get_or_load_many(["a", "odd", "c"], lambda keys: {"a": 1, "odd": odd, "c": 3})
    assert found == {"a": 1, "odd": odd, "c": 3}  # every value is returned (this holds)
    try:
        assert cache.layers[1].get_many(["a", "odd", "c"]) == {"a": 1, "c": 3}
        assert cache.stats().encode_errors["l2"] == 1
    finally:
        cache.close()


def test_callbacks_that_raise_reach_the_caller_and_leave_nothing_behind(redis_url, prefix):
    """A ``promote`` rule, a ``condition`` and a ``key`` function that raise: the caller
    gets the user's error (it is their bug, not a miss to hide), nothing stays in flight,
    and the cache works for the next call."""
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100, name="l1"), RedisLayer(redis_url, prefix=prefix)],
        [LayerPolicy(promote=lambda key, layer: key != "bad" or 1 / 0), None],
    )
    cache.layers[1].set("bad", "in l2")
    with pytest.raises(ZeroDivisionError):
        cache.get("bad")
    with pytest.raises(ZeroDivisionError):
        cache.get_or_load("bad", lambda key: "loaded")

    @cache.cached(condition=lambda value: 1 / 0)
    def conditioned(n: int) -> int:
        return n

    @cache.cached(key=lambda n: str(1 / n))
    def keyed(n: int) -> int:
        return n

    with pytest.raises(ZeroDivisionError):
        conditioned(1)
    with pytest.raises(ZeroDivisionError):
        keyed(0)
    assert keyed(2) == 2 and keyed(2) == 2
    assert cache.in_flight == 0
    assert cache.get_or_load("fine", lambda key: "loaded") == "loaded"
    cache.close()


def test_a_write_through_writer_that_raises_fails_the_set_and_nothing_claims_it(
    redis_url, prefix
) -> None:
    """A persistence writer (write-through) raising: ``set`` raises the writer's error,
    before any faster layer holds the value (writes go slowest first)."""
    rows: dict[str, Any] = {}

    def upsert(items: dict[str, Any]) -> None:
        if "bad" in items:
            raise Boom("constraint violated")
        rows.update(items)

    l1 = InMemoryLayer(max_size=100, name="l1")
    l2 = RedisLayer(redis_url, prefix=prefix, name="l2")
    cache = MultilayerCache([l1, l2, WriterLayer(upsert, rows.pop)])
    cache.set("good", 1)
    with pytest.raises(Boom, match="constraint violated"):
        cache.set("bad", 2)
    assert l1.get("bad") is None and l2.get("bad") is None and "bad" not in rows
    assert rows == {"good": 1} and cache.get("good") == 1
    cache.close()


def test_loaders_that_write_their_own_key_lose_to_that_write(redis_url, prefix) -> None:
    """A loader that sets or deletes the key it loads (a write-through it does itself):
    the caller gets the loaded value, and the cache keeps the write, newer than the load."""
    cache = two_layers(redis_url, prefix)

    def sets_it(key: str) -> str:
        cache.set(key, "written by the loader")
        return "loaded"

    def deletes_it(key: str) -> str:
        cache.delete(key)
        return "loaded"

    assert cache.get_or_load("set", sets_it) == "loaded"
    assert cache.get("set") == "written by the loader"
    assert cache.layers[1].get("set") == "written by the loader"
    assert cache.get_or_load("deleted", deletes_it) == "loaded"
    assert cache.get("deleted") is None and cache.layers[1].get("deleted") is None
    cache.close()


def test_nested_loads_of_other_keys_work_threads_and_tasks(redis_url, prefix) -> None:
    cache = two_layers(redis_url, prefix)

    def page(key: str) -> str:
        return "+".join(cache.get_or_load(f"part{n}", str.upper) for n in range(3))

    assert cache.get_or_load("page", page) == "PART0+PART1+PART2"
    assert cache.get("part1") == "PART1" and cache.in_flight == 0
    cache.close()

    async def nested() -> str:
        acache = AsyncMultilayerCache([InMemoryLayer(max_size=100)])

        async def upper(key: str) -> str:
            return key.upper()

        async def page(key: str) -> str:
            parts = [await acache.get_or_load(f"part{n}", upper) for n in range(3)]
            return "+".join(parts)

        return await acache.get_or_load("page", page)

    assert asyncio.run(nested()) == "PART0+PART1+PART2"


def recursive_outcome(hard_timeout: float | None = None) -> str:
    """In a forked child: a loader that asks the cache for the very key it loads."""
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100)], load_options=LoadOptions(hard_timeout=hard_timeout)
    )

    def recursive(key: str) -> str:
        return cache.get_or_load(key, recursive)

    try:
        cache.get_or_load("k", recursive)
    except Exception as error:
        return type(error).__name__
    return "no error"


def test_a_recursive_load_fails_at_once_even_with_a_hard_timeout() -> None:
    assert in_child(lambda: recursive_outcome(hard_timeout=0.2), wait=5) == "RecursiveLoadError"


def test_a_recursive_load_fails_clearly_instead_of_deadlocking() -> None:
    assert in_child(recursive_outcome, wait=1) == "RecursiveLoadError"


def test_a_recursive_asyncio_load_fails_clearly_instead_of_deadlocking() -> None:
    async def outcome() -> str:
        cache = AsyncMultilayerCache([InMemoryLayer(max_size=100)])

        async def recursive(key: str) -> str:
            return await cache.get_or_load(key, recursive)

        try:
            await cache.get_or_load("k", recursive)
        except Exception as error:
            return type(error).__name__
        return "no error"

    assert in_child(lambda: asyncio.run(outcome()), wait=1) == "RecursiveLoadError"
