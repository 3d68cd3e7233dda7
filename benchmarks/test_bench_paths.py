"""pytest-benchmark guards for the lean paths of issue 24, each beside the reference it is a
ratio of (``benchmarks/lean_paths.py`` prints the same paths beside the peers).

    pytest benchmarks --benchmark-enable --benchmark-columns=median,ops --benchmark-sort=name

Each guard is parametrized ``[manager]`` (ours) against its reference in the same file (the
layer underneath, a raw redis-py call, a plain coroutine); ``.ci/compare_benchmarks.py``
judges ``[manager]`` / reference, so a slower runner changes nothing. A throwaway Redis
server is started for the module (or ``REDIS_URL`` used).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from lean_paths import get_then_set, load
from set_cost import VALUE

from multilayercache import (
    AsyncMultilayerCache,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
)
from multilayercache.tools.benchmarking import zipf_indices
from multilayercache.tools.servers import RedisServer

from compare_peers import bytes_per_entry

BATCH = 1_000  # operations per benchmark call on the in-process paths
ROUNDS = 30  # rounds of the guards that need a fresh cache each round
KEYS = [f"key:{i}" for i in range(BATCH)]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer.start() as server:
        yield server.url


def each_round(benchmark: Any, fresh: Callable[[], Any], run: Callable[[Any], Any]) -> None:
    """``run(fresh())`` timed over ``ROUNDS`` rounds, ``fresh()`` (a new cache) untimed."""

    def setup() -> tuple[tuple[Any], dict[str, Any]]:
        gc.collect()  # the last round's cache (a manager is freed by the collector), untimed
        return (fresh(),), {}

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)


def sets(store: Callable[[Any, Any], Any]) -> None:
    for key in KEYS:
        store(key, VALUE)


# ----------------------------------------------------------------------------- row 0 (control)
@pytest.mark.parametrize("owner", ["manager", "layer"])
def test_l1_hit(benchmark: Any, owner: str) -> None:
    layer = InMemoryLayer(max_size=2 * BATCH)
    get = MultilayerCache([layer]).get if owner == "manager" else layer.get
    for key in KEYS:
        layer.set(key, key)
    probes = [KEYS[i] for i in zipf_indices(BATCH, BATCH)]
    assert all(get(key) == key for key in probes)

    def run() -> None:
        for key in probes:
            get(key)

    benchmark(run)


# ----------------------------------------------------------------------------- row 1
def l1_store(owner: str) -> Callable[[Any, Any], Any]:
    layer = InMemoryLayer(max_size=BATCH)
    return MultilayerCache([layer]).set if owner == "manager" else layer.set


@pytest.mark.parametrize("owner", ["manager", "layer"])
def test_set_new(benchmark: Any, owner: str) -> None:
    each_round(benchmark, lambda: l1_store(owner), sets)


@pytest.mark.parametrize("owner", ["manager", "layer"])
def test_set_overwrite(benchmark: Any, owner: str) -> None:
    store = l1_store(owner)
    sets(store)
    benchmark(sets, store)


# ----------------------------------------------------------------------------- row 2
def test_set_write_behind(benchmark: Any, redis_url: str) -> None:
    """Judged against ``test_set_new[layer]``: what a set costs beyond the L1's own."""
    caches: list[MultilayerCache] = []

    def fresh() -> Callable[[Any, Any], Any]:
        if caches:
            caches[-1].close()  # delivers the last round's queue, untimed
        caches.append(
            MultilayerCache(
                [InMemoryLayer(max_size=BATCH), RedisLayer(redis_url, prefix="bench-wb:")],
                [None, LayerPolicy(write=WriteBehind())],
            )
        )
        return caches[-1].set

    each_round(benchmark, fresh, sets)
    caches[-1].close()
    with redis.Redis.from_url(redis_url) as raw:  # close() delivered the queue
        assert raw.exists(caches[-1].layers[1].redis_key(KEYS[-1]))


# ----------------------------------------------------------------------------- row 3
def l1_fetch(owner: str) -> Callable[[Any, Callable[[Any], Any]], Any]:
    layer = InMemoryLayer(max_size=BATCH)
    if owner == "manager":
        return MultilayerCache([layer]).get_or_load
    return get_then_set(layer.get, layer.set)


def misses(fetch: Callable[[Any, Callable[[Any], Any]], Any]) -> None:
    for key in KEYS:
        fetch(key, load)


@pytest.mark.parametrize("owner", ["manager", "layer"])
def test_get_or_load_miss(benchmark: Any, owner: str) -> None:
    each_round(benchmark, lambda: l1_fetch(owner), misses)


# ----------------------------------------------------------------------------- rows 4 and 5
@pytest.fixture(scope="module")
def l2_reads(redis_url: str) -> Iterator[tuple[MultilayerCache, redis.Redis, list[str]]]:
    """A manager whose L1 misses (promotion off) over 100 keys in Redis, a raw client of
    the same server, and the keys."""
    l2 = RedisLayer(redis_url, prefix="bench-l2:")
    cache = MultilayerCache(
        [InMemoryLayer(max_size=BATCH), l2], [LayerPolicy(promote="never"), None]
    )
    keys = KEYS[:100]
    l2.set_many({key: VALUE for key in keys})
    with redis.Redis.from_url(redis_url) as raw:
        yield cache, raw, keys
    cache.close()


@pytest.mark.parametrize("owner", ["manager", "raw"])
def test_l2_get(benchmark: Any, l2_reads: Any, owner: str) -> None:
    cache, raw, keys = l2_reads
    key, name = keys[0], cache.layers[1].redis_key(keys[0])
    get = (lambda: cache.get(key)) if owner == "manager" else (lambda: raw.get(name))
    assert get() is not None

    def run() -> None:
        for _ in range(100):
            get()

    benchmark(run)


@pytest.mark.parametrize("owner", ["manager", "raw"])
def test_l2_get_many(benchmark: Any, l2_reads: Any, owner: str) -> None:
    cache, raw, keys = l2_reads
    names = [cache.layers[1].redis_key(key) for key in keys]
    get_many = (lambda: cache.get_many(keys)) if owner == "manager" else (lambda: raw.mget(names))
    assert len(get_many()) == 100

    def run() -> None:
        for _ in range(10):
            get_many()

    benchmark(run)


# ----------------------------------------------------------------------------- row 6
@pytest.mark.parametrize("owner", ["manager", "reference"])
def test_async_cached_hit(benchmark: Any, owner: str) -> None:
    plain = {n: n for n in range(BATCH)}

    async def reference(n: int) -> int | None:
        return plain.get(n)

    async def body(n: int) -> int:
        return n

    function = AsyncMultilayerCache([InMemoryLayer(max_size=2 * BATCH)]).cached()(body)
    if owner == "reference":
        function = reference
    order = [int(i) for i in zipf_indices(BATCH, BATCH)]

    async def awaits() -> None:
        for n in order:
            await function(n)

    with asyncio.Runner() as runner:
        runner.run(awaits())  # every later call is a hit
        benchmark(lambda: runner.run(awaits()))


# ----------------------------------------------------------------------------- row 7
def test_memory_per_entry(benchmark: Any) -> None:
    """Recorded, not timed: bytes per entry at 500,000 int keys (a fresh process), in
    ``extra_info``, which ``.ci/compare_benchmarks.py`` compares between main and a PR."""
    size = benchmark.pedantic(bytes_per_entry, ("multilayercache", "int"), rounds=1, iterations=1)
    assert size is not None and size > 0
    benchmark.extra_info["bytes_per_entry"] = size
