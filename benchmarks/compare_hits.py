"""What an L1 hit costs through each front door of the managers, against the standard tools,
measured side by side in one run.

    python benchmarks/compare_hits.py [--repeat 15]

Rows (median ns per call over ``--repeat`` runs, interleaved so that machine noise hits
every row alike; 1,000 cached keys, called in a Zipf-distributed order):

* ``@cache.cached`` (sync) against ``functools.lru_cache`` and ``cachetools.cached``, and a
  cached method (``obj.method(n)``, the instance in the key) against the cached function;
* ``get_or_load`` against ``get`` on the sync manager;
* ``await acache.get`` and an ``@acache.cached`` coroutine against a trivial coroutine that
  returns ``dict.get(key)`` (all awaited in one task, as a handler awaits them), and a
  cached coroutine method against the cached coroutine function.

The bounds the project holds itself to are printed with each ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

from multilayercache import AsyncMultilayerCache, InMemoryLayer, MultilayerCache
from multilayercache.tools.benchmarking import zipf_indices

KEYS = 1_000


def per_call_ns(function: Callable[[Any], Any], arguments: list[Any]) -> float:
    start = time.perf_counter()
    for argument in arguments:
        function(argument)
    return (time.perf_counter() - start) / len(arguments) * 1e9


async def awaited_ns(function: Callable[[Any], Any], arguments: list[Any]) -> float:
    """ns per ``await function(argument)``, awaited one after the other in one task."""
    start = time.perf_counter()
    for argument in arguments:
        await function(argument)
    return (time.perf_counter() - start) / len(arguments) * 1e9


def per_await_ns(function: Callable[[Any], Any], arguments: list[Any]) -> float:
    return asyncio.run(awaited_ns(function, arguments))


def medians(rows: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeat):
        for name, measure in rows.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per row (median)")
    args = parser.parse_args()

    order = [int(i) for i in zipf_indices(100_000, KEYS)]
    cache = MultilayerCache([InMemoryLayer(max_size=10 * KEYS)])
    acache = AsyncMultilayerCache([InMemoryLayer(max_size=10 * KEYS)])

    @cache.cached()
    def ours(n: int) -> int:
        return n

    @functools.lru_cache(maxsize=10 * KEYS)
    def standard(n: int) -> int:
        return n

    @acache.cached()
    async def ours_async(n: int) -> int:
        return n

    class Service:
        @cache.cached()
        def method(self, n: int) -> int:
            return n

        @acache.cached()
        async def async_method(self, n: int) -> int:
            return n

    service = Service()

    plain = {n: n for n in range(KEYS)}

    async def trivial(n: int) -> int | None:
        return plain.get(n)

    rows: dict[str, Callable[[], float]] = {}
    for n in range(KEYS):  # warm every cache: every call below is a hit
        ours(n), standard(n), service.method(n), cache.set(n, n)
        asyncio.run(ours_async(n)), asyncio.run(service.async_method(n))
        asyncio.run(acache.set(n, n))
    rows["functools.lru_cache hit"] = lambda: per_call_ns(standard, order)
    rows["@cache.cached hit"] = lambda: per_call_ns(ours, order)
    # obj.method(n) as a caller writes it: the attribute looked up at each call
    rows["@cache.cached obj.method hit"] = lambda: per_call_ns(lambda n: service.method(n), order)
    rows["lambda n: ours(n)"] = lambda: per_call_ns(lambda n: ours(n), order)
    try:
        import cachetools

        @cachetools.cached(cachetools.LRUCache(maxsize=10 * KEYS))
        def theirs(n: int) -> int:
            return n

        for n in range(KEYS):
            theirs(n)
        rows["cachetools.cached hit"] = lambda: per_call_ns(theirs, order)
    except ImportError:
        print("cachetools not installed: pip install -e '.[bench]' (row skipped)")
    # Both called from a lambda: get_or_load takes a loader, so neither row is a bare call.
    rows["cache.get hit"] = lambda: per_call_ns(lambda n: cache.get(n), order)
    rows["cache.get_or_load hit"] = lambda: per_call_ns(
        lambda n: cache.get_or_load(n, _never), order
    )
    rows["async def returning dict.get"] = lambda: per_await_ns(trivial, order)
    rows["await acache.get hit"] = lambda: per_await_ns(acache.get, order)
    rows["await @acache.cached hit"] = lambda: per_await_ns(ours_async, order)
    rows["await lambda n: ours_async(n)"] = lambda: per_await_ns(lambda n: ours_async(n), order)
    rows["await obj.async_method hit"] = lambda: per_await_ns(
        lambda n: service.async_method(n), order
    )

    result = medians(rows, args.repeat)
    width = max(len(name) for name in result)
    print(f"L1 hits, {KEYS:,} keys in Zipf order; median ns per call of {args.repeat} runs")
    for name, ns in result.items():
        print(f"  {name:<{width}} {ns:8.1f} ns")
    print()
    checks = [
        ("@cache.cached", "functools.lru_cache hit", "@cache.cached hit", 3.0),
        ("cached method", "lambda n: ours(n)", "@cache.cached obj.method hit", 1.3),
        ("get_or_load", "cache.get hit", "cache.get_or_load hit", 1.5),
        ("asyncio get", "async def returning dict.get", "await acache.get hit", 1.5),
        ("asyncio @cached", "async def returning dict.get", "await @acache.cached hit", None),
        ("asyncio method", "await lambda n: ours_async(n)", "await obj.async_method hit", None),
    ]
    if "cachetools.cached hit" in result:
        checks.insert(1, ("@cache.cached", "cachetools.cached hit", "@cache.cached hit", None))
    for label, base, row, bound in checks:
        ratio = result[row] / result[base]
        verdict = (
            ""
            if bound is None
            else f"  (bound <= {bound}x: {'met' if ratio <= bound else 'NOT met'})"
        )
        print(f"  {label:<16} {ratio:5.2f}x {base}{verdict}")
    return 0


def _never(key: Any) -> Any:
    raise AssertionError("every call here is a hit")


if __name__ == "__main__":
    raise SystemExit(main())
