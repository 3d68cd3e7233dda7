"""One load across the fleet (``LoadOptions(fleet_single_flight=True)``): of many instances
asking for one cold key at once, one loads it (the first to take its lease in Redis) and the
others are woken by its backplane message; an instance killed mid-load holds the key for at
most its lease; a loader that fails lets a waiter try at once; Redis unreachable for the
lease means a local load. Real processes (spawned), threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    LoadOptions,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
)
from multilayercache.core.errors import LoadTimeoutError
from multilayercache.layers.redis.backplane import Backplane

from fleetflight_support import stampede  # noqa: I001

FLEET = LoadOptions(fleet_single_flight=True, fleet_lease=5.0)
NOT_POLLING = ("xread", "info", "config|resetstat", "hello", "client|setinfo")


# ---------------------------------------------------------------------------- processes
@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_three_processes_of_fifty_callers_make_one_load(kind, doomed_server, prefix) -> None:
    run = stampede(doomed_server.url, prefix, kind, processes=3, callers=50, load_seconds=0.3)
    assert run.errors == []
    assert run.loads == 1
    assert len(run.values) == 1 and sum(run.values.values()) == 150  # every caller, one value
    assert sum(fleet["leases"] for fleet in run.fleet) >= 1
    # Notified, not polling: a handful of commands per process, whoever waited how long.
    scripts = run.commands.get("evalsha", 0) + run.commands.get("eval", 0)
    assert scripts <= 3 * 3, run.commands
    sent = sum(calls for name, calls in run.commands.items() if name not in NOT_POLLING)
    assert sent <= 15 * 3, run.commands
    assert max(run.waits) < 0.3 + 1.5, max(run.waits)  # the load, and a message's hop


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_loader_killed_mid_load_is_taken_over_within_its_lease(
    kind, doomed_server, prefix
) -> None:
    lease, load_seconds = 2.0, 0.2
    run = stampede(
        doomed_server.url, prefix, kind, lease=lease, load_seconds=load_seconds,
        kill_first_loader=True,
    )  # fmt: skip
    assert run.errors == []
    assert run.loads == 2  # the killed one, and one takeover
    assert sum(run.values.values()) == 100 and len(run.values) == 1
    assert sum(fleet["taken_over"] for fleet in run.fleet) == 1
    assert sum(fleet["expired"] for fleet in run.fleet) >= 1
    # Nobody waits past the lease (from its start, before the kill), the takeover's load,
    # and a small bound.
    assert max(run.waits) <= lease + load_seconds + 0.5, max(run.waits)


# ---------------------------------------------------------------------------- instances
def sync_instance(url: str, prefix: str, **options: Any) -> MultilayerCache:
    options.setdefault("load_options", FLEET)
    options.setdefault("backplane", True)
    return MultilayerCache([InMemoryLayer(max_size=100), RedisLayer(url, prefix=prefix)], **options)


def async_instance(url: str, prefix: str, **options: Any) -> AsyncMultilayerCache:
    options.setdefault("load_options", FLEET)
    options.setdefault("backplane", True)
    return AsyncMultilayerCache(
        [InMemoryLayer(max_size=100), AsyncRedisLayer(url, prefix=prefix)], **options
    )


def in_threads(*calls: Callable[[], Any], stagger: float = 0.05) -> list[Any]:
    """Run each call in a thread of its own, started ``stagger`` apart; their results (or
    exceptions)."""
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
        time.sleep(stagger)
    for thread in threads:
        thread.join(timeout=20)
    return results


async def in_tasks(*calls: Callable[[], Any], stagger: float = 0.05) -> list[Any]:
    async def run(index: int) -> Any:
        await asyncio.sleep(index * stagger)
        return await calls[index]()

    return await asyncio.gather(
        *(run(index) for index in range(len(calls))), return_exceptions=True
    )


def test_a_loader_that_raises_lets_a_waiter_load_at_once(redis_url, prefix) -> None:
    a, b = sync_instance(redis_url, prefix), sync_instance(redis_url, prefix)
    loads: list[str] = []

    def failing(key: str) -> str:
        loads.append("a")
        time.sleep(0.3)
        raise ConnectionError("a's backend is unreachable from a's host")

    def working(key: str) -> str:
        loads.append("b")
        return "b's value"

    start = time.monotonic()
    got_a, got_b = in_threads(
        lambda: a.get_or_load("k", failing), lambda: b.get_or_load("k", working)
    )
    took = time.monotonic() - start
    assert isinstance(got_a, ConnectionError)  # the callers of the instance that failed
    assert got_b == "b's value" and loads == ["a", "b"]
    assert took < 2.0  # released at once, not after its lease of 5 s
    assert b.stats().fleet_flight["taken_over"] == 1
    a.close()
    b.close()


def test_a_lease_held_by_a_dead_instance_is_taken_over_at_its_end(
    redis_url, prefix, raw_redis, kind
) -> None:
    """An instance that died while loading leaves its lease: the others wait until it
    ends (not a lease more), then one of them loads."""
    raw_redis.set(f"{prefix}__mlc:lease:k", "the dead instance", px=600)

    async def load_async(key: str) -> str:
        return "loaded"

    if kind == "sync":
        cache = sync_instance(redis_url, prefix)
        start = time.monotonic()
        assert cache.get_or_load("k", lambda key: "loaded") == "loaded"
        took = time.monotonic() - start
        stats = cache.stats()
        cache.close()
    else:

        async def main() -> Any:
            async with async_instance(redis_url, prefix) as cache:
                start = time.monotonic()
                assert await cache.get_or_load("k", load_async) == "loaded"
                return time.monotonic() - start, cache.stats()

        took, stats = asyncio.run(main())
    assert 0.5 <= took < 1.5
    assert stats.fleet_flight["expired"] == 1 and stats.fleet_flight["taken_over"] == 1
    assert stats.loader_calls == 1


@pytest.mark.parametrize("planted", ["a string", "a hash"])
def test_a_lease_without_expiry_is_taken_over_after_a_lease(
    redis_url, prefix, raw_redis, kind, planted
) -> None:
    """A lease key no instance wrote (no expiry, any type) counts as a new lease: it ends
    one lease later and a waiter loads. It never ended: every call of the key waited its
    hard timeout and failed with LoadTimeoutError, for as long as the key stayed."""
    lease_key = f"{prefix}__mlc:lease:k"
    if planted == "a string":
        raw_redis.set(lease_key, "written by someone else")
    else:
        raw_redis.hset(lease_key, "field", "value")
    options = LoadOptions(fleet_single_flight=True, fleet_lease=0.5, hard_timeout=5)

    async def load_async(key: str) -> str:
        return "loaded"

    start = time.monotonic()
    if kind == "sync":
        cache = sync_instance(redis_url, prefix, load_options=options)
        assert cache.get_or_load("k", lambda key: "loaded") == "loaded"
        cache.close()
    else:

        async def main() -> None:
            async with async_instance(redis_url, prefix, load_options=options) as cache:
                assert await cache.get_or_load("k", load_async) == "loaded"

        asyncio.run(main())
    assert time.monotonic() - start < 2.5


def test_async_instances_share_one_load(redis_url, prefix) -> None:
    loads: list[str] = []

    async def main() -> list[Any]:
        a, b = async_instance(redis_url, prefix), async_instance(redis_url, prefix)

        def loader(who: str) -> Callable[[str], Any]:
            async def load(key: str) -> str:
                loads.append(who)
                await asyncio.sleep(0.3)
                return f"{who}'s value"

            return load

        calls = [lambda who=who: (a if who == "a" else b).get_or_load("k", loader(who))
                 for who in ("a", "b") * 5]  # fmt: skip
        got = await in_tasks(*calls, stagger=0.01)
        fleet = (a.stats().fleet_flight, b.stats().fleet_flight)
        await a.close()
        await b.close()
        return [got, fleet]

    got, (fleet_a, fleet_b) = asyncio.run(main())
    assert loads == ["a"] and got == ["a's value"] * 10
    assert fleet_b["notified"] == 1 and fleet_b["expired"] == 0


def test_a_hard_timeout_bounds_the_wait_for_another_instance(redis_url, prefix) -> None:
    a, b = sync_instance(redis_url, prefix), sync_instance(redis_url, prefix)

    def slow(key: str) -> str:
        time.sleep(1.0)
        return "slow"

    def impatient() -> Any:
        start = time.monotonic()
        try:
            return b.get_or_load("k", lambda key: "never", hard_timeout=0.2)
        finally:
            assert time.monotonic() - start < 0.6

    got_a, got_b = in_threads(lambda: a.get_or_load("k", slow), impatient)
    assert got_a == "slow"
    assert isinstance(got_b, LoadTimeoutError)
    assert b.stats().loader_calls == 0
    a.close()
    b.close()


def test_batches_load_each_key_once_across_instances(redis_url, prefix) -> None:
    a, b = sync_instance(redis_url, prefix), sync_instance(redis_url, prefix)
    loaded: list[tuple[str, tuple[str, ...]]] = []

    def bulk(who: str) -> Callable[[list[str]], dict[str, str]]:
        def load(keys: list[str]) -> dict[str, str]:
            loaded.append((who, tuple(keys)))
            time.sleep(0.2)
            return {key: key.upper() for key in keys}

        return load

    got_a, got_b = in_threads(
        lambda: a.get_or_load_many(["x", "y", "z"], bulk("a")),
        lambda: b.get_or_load_many(["z", "w", "x"], bulk("b")),
    )
    assert got_a == {"x": "X", "y": "Y", "z": "Z"}
    assert got_b == {"z": "Z", "w": "W", "x": "X"}
    every = [key for _, keys in loaded for key in keys]
    assert sorted(every) == ["w", "x", "y", "z"]  # each key loaded once, fleet-wide
    a.close()
    b.close()


def test_cached_functions_and_per_call_overrides(redis_url, prefix) -> None:
    """``@cached(fleet_single_flight=True)`` and ``get_or_load(..., fleet_single_flight=
    True)`` on caches whose options leave it off; ``False`` turns it off for a call."""
    off = LoadOptions()
    a = sync_instance(redis_url, prefix, load_options=off)
    b = sync_instance(redis_url, prefix, load_options=off)
    calls: list[int] = []

    def price(item: int) -> int:
        calls.append(item)
        time.sleep(0.3)
        return item * 10

    on_a = a.cached(fleet_single_flight=True)(price)
    on_b = b.cached(fleet_single_flight=True)(price)
    assert in_threads(lambda: on_a(7), lambda: on_b(7)) == [70, 70]
    assert calls == [7]

    def slow(key: str) -> str:
        calls.append(0)
        time.sleep(0.3)
        return "v"

    in_threads(
        lambda: a.get_or_load("k", slow, fleet_single_flight=True),
        lambda: b.get_or_load("k", slow, fleet_single_flight=True),
    )
    assert calls == [7, 0]
    fleet_on = sync_instance(redis_url, prefix + "other:")
    fleet_also = sync_instance(redis_url, prefix + "other:")
    in_threads(
        lambda: fleet_on.get_or_load("k", slow, fleet_single_flight=False),
        lambda: fleet_also.get_or_load("k", slow, fleet_single_flight=False),
    )
    assert calls == [7, 0, 0, 0]  # each instance loaded
    for cache in (a, b, fleet_on, fleet_also):
        cache.close()


def test_redis_unreachable_for_the_lease_loads_locally(doomed_server, prefix) -> None:
    cache = sync_instance(doomed_server.url, prefix)
    doomed_server.kill()
    assert cache.get_or_load("k", lambda key: "loaded here") == "loaded here"
    assert cache.stats().fleet_flight["lease_errors"] == 1
    assert cache.stats().loader_calls == 1
    cache.backplane.close(timeout=0.1)


def test_fleet_single_flight_is_refused_without_what_it_needs(redis_url, prefix) -> None:
    with pytest.raises(ValueError, match="fleet_single_flight needs the cache's backplane"):
        sync_instance(redis_url, prefix, backplane=None)
    plain = sync_instance(redis_url, prefix, backplane=None, load_options=LoadOptions())
    with pytest.raises(ValueError, match="fleet_single_flight needs the cache's backplane"):
        plain.get_or_load("k", lambda key: 1, fleet_single_flight=True)
    with pytest.raises(ValueError, match="fleet_single_flight needs the cache's backplane"):
        plain.cached(fleet_single_flight=True)
    assert plain.get("k") is None  # nothing was loaded
    with pytest.raises(ValueError, match="fleet_single_flight needs the cache.s backplane"):
        MultilayerCache([InMemoryLayer(max_size=10)], load_options=FLEET)
    with pytest.raises(ValueError, match="not write-behind"):
        sync_instance(redis_url, prefix, policies=[None, LayerPolicy(write=WriteBehind())])
    with pytest.raises(TypeError, match="fleet_single_flight must be True or False"):
        LoadOptions(fleet_single_flight=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fleet_lease"):
        LoadOptions(fleet_lease=0)
    plain.close()


def test_the_backplane_tells_its_listeners_what_other_instances_changed(redis_url, prefix) -> None:
    heard: list[tuple[str, ...] | None] = []
    mine = sync_instance(redis_url, prefix, load_options=LoadOptions(), backplane=Backplane())
    mine.backplane.listen(heard.append)
    other = sync_instance(redis_url, prefix, load_options=LoadOptions())
    mine.set("own", 1)  # its own messages are not heard
    other.set("k", 1)
    other.clear()
    deadline = time.monotonic() + 3
    while len(heard) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert heard == [("k",), None]
    mine.close()
    other.close()
