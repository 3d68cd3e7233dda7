"""What one ``cache.set`` costs on L1 + L2 (write-through and write-behind), against the same
``set`` on a cache of the L1 alone, which nothing in this comparison changes.

    python benchmarks/set_cost.py [--sets 20000] [--repeat 7]

Each round times ``--sets`` sets of distinct keys on each cache (interleaved, so that the
machine's noise hits all rows alike), ``flush()`` after the write-behind ones; the medians
over ``--repeat`` rounds are printed in ns per set, with each row's ratio to the L1-only
set measured in the same run. Compare ratios between runs, not nanoseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from multilayercache import InMemoryLayer, LayerPolicy, MultilayerCache, RedisLayer, WriteBehind
from multilayercache.tools.servers import RedisServer

VALUE = {"id": 1, "name": "product", "price": 9.99, "tags": ["a", "b"]}


def timed_sets(
    store: Callable[[Any, Any], Any],
    keys: list[Any],
    after: Callable[[], Any] | None = None,
    value: Any = VALUE,
) -> float:
    """ns per ``store(key, value)`` (a cache's ``set``, or a peer's) of every key (``after``
    runs untimed)."""
    start = time.perf_counter_ns()
    for key in keys:
        store(key, value)
    elapsed = time.perf_counter_ns() - start
    if after is not None:
        after()
    return elapsed / len(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    keys = [f"k{n}" for n in range(options.sets)]
    with RedisServer.start() as server:
        caches = {
            "L1 alone": MultilayerCache([InMemoryLayer(max_size=options.sets)]),
            "L1 + L2 write-through": MultilayerCache(
                [InMemoryLayer(max_size=options.sets), RedisLayer(server.url, prefix="wt:")]
            ),
            "L1 + L2 write-behind": MultilayerCache(
                [InMemoryLayer(max_size=options.sets), RedisLayer(server.url, prefix="wb:")],
                [None, LayerPolicy(write=WriteBehind())],
            ),
        }
        rounds: dict[str, list[float]] = {name: [] for name in caches}
        for _ in range(options.repeat):
            for name, cache in caches.items():
                rounds[name].append(timed_sets(cache.set, keys, cache.flush))
        for cache in caches.values():
            cache.close()
    base = statistics.median(rounds["L1 alone"])
    print(f"set() of {options.sets} keys, median of {options.repeat} rounds")
    for name, times in rounds.items():
        ratios = [time_ / alone for time_, alone in zip(times, rounds["L1 alone"], strict=True)]
        print(
            f"  {name:24s} {statistics.median(times):9.0f} ns   "
            f"{statistics.median(times) / base:6.2f}x L1 alone "
            f"(per round {min(ratios):.2f}-{max(ratios):.2f}x)"
        )


if __name__ == "__main__":
    main()
