"""The figures of issue 19's read-your-writes and cache primitives, measured on real threads
over a real Redis (an embedded server unless ``REDIS_URL`` is set).

    python benchmarks/primitives.py

1. ``set(k, v)`` then ``get(k)`` of 50 new keys on a full L1 of frequent keys.
2. ``add`` of one key by 8 threads, 30 trials: trials with exactly one winner (two cache
   instances sharing Redis, as two processes; and L1 alone).
3. 1,600 ``incr`` from 8 threads: the final count.
4. 2,000 ``set`` of keys raced by a ``touch`` of each: sets undone, with ``touch`` and with
   the get-then-set a caller had to write without it.
5. The cost of ``InMemoryLayer(copy=...)``: ns per ``get`` hit and per ``set`` of a small
   dict, without copies, with ``copy=True`` (deepcopy) and ``copy="pickle"``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer
from multilayercache.layers.memory._layer_py import InMemoryLayer as PureLayer
from multilayercache.tools.servers import RedisServer

THREADS = 8


def on_threads(work: Callable[[int], None]) -> None:
    start = threading.Barrier(THREADS)

    def run(me: int) -> None:
        start.wait()
        work(me)

    threads = [threading.Thread(target=run, args=(me,)) for me in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def read_your_writes(layer_class: type) -> int:
    l1 = layer_class(max_size=1_000)
    cache = MultilayerCache([l1])
    for _ in range(20):
        for key in range(1_000):
            if l1.get(key) is None:
                l1.set(key, key)
    found = 0
    for n in range(50):
        cache.set(f"new:{n}", n)
        found += cache.get(f"new:{n}") == n
    return found


def single_winners(caches: list[Any]) -> int:
    exact = 0
    for trial in range(30):
        wins: list[int] = []

        def contend(me: int, key: str = f"lock:{trial}", wins: list[int] = wins) -> None:
            if caches[me % 2].add(key, me, ttl=60):
                wins.append(me)

        on_threads(contend)
        exact += len(wins) == 1
    return exact


def final_count(caches: list[Any]) -> int:
    def count(me: int) -> None:
        for _ in range(1_600 // THREADS):
            caches[me % 2].incr("hits", ttl=60)

    on_threads(count)
    return int(caches[0].layers[-1].get("hits"))


def undone_sets(cache: Any, touch: Callable[[Any, str], None], run: int) -> int:
    keys = [f"touched:{run}:{n}" for n in range(2_000)]
    cache.set_many({key: "old" for key in keys}, ttl=60)

    def work(me: int) -> None:
        for key in keys[me // 2 :: THREADS // 2]:
            if me % 2:
                touch(cache, key)
            else:
                cache.set(key, "new", ttl=60)

    on_threads(work)
    return sum(cache.layers[-1].get(key) != "new" for key in keys)


def get_then_set(cache: Any, key: str) -> None:
    value = cache.get(key)  # what callers wrote before touch existed
    if value is not None:
        cache.set(key, value, ttl=120)


def nanoseconds(operation: Callable[[], Any], count: int = 20_000) -> float:
    rounds = []
    for _ in range(7):
        start = time.perf_counter_ns()
        for _ in range(count):
            operation()
        rounds.append((time.perf_counter_ns() - start) / count)
    return statistics.median(rounds)


def copy_costs() -> list[tuple[str, float, float]]:
    value = {"id": 7, "name": "Ada", "tags": ["a", "b"], "scores": [1.5, 2.5]}
    rows = []
    for label, copy in (
        ("no copy", False),
        ("copy=True (deepcopy)", True),
        ('copy="pickle"', "pickle"),
    ):
        l1 = InMemoryLayer(max_size=1_000, copy=copy)
        l1.set("k", value)
        rows.append(
            (
                label,
                nanoseconds(lambda l1=l1: l1.get("k")),
                nanoseconds(lambda l1=l1: l1.set("k", value)),
            )
        )
    return rows


def main() -> None:
    print(
        "1. set then get, 50 new keys on a full L1 of frequent keys: "
        f"compiled {read_your_writes(InMemoryLayer)}/50, pure {read_your_writes(PureLayer)}/50"
    )
    with RedisServer.start() as server:
        shared = [
            MultilayerCache([InMemoryLayer(max_size=10_000), RedisLayer(server.url, prefix=p)])
            for p in ("bench:", "bench:")
        ]
        alone = MultilayerCache([InMemoryLayer(max_size=10_000)])
        print(
            "2. add, 8 threads x 30 trials, trials with exactly one winner: "
            f"L1+Redis (2 instances) {single_winners(shared)}/30, "
            f"L1 only {single_winners([alone, alone])}/30"
        )
        print(f"3. 1,600 concurrent incr: {final_count(shared)} (L1+Redis, 2 instances)")
        touched = undone_sets(shared[0], lambda cache, key: cache.touch(key, 120), 0)
        naive = undone_sets(shared[0], get_then_set, 1)
        print(
            f"4. 2,000 sets raced by a touch of each key: {touched} undone by touch, "
            f"{naive} by get-then-set"
        )
        for cache in shared:
            cache.close()
    print("5. InMemoryLayer(copy=...), a 4-field dict: ns per get hit / per set (median of 7)")
    for label, get_ns, set_ns in copy_costs():
        print(f"   {label:<22} {get_ns:8.0f} {set_ns:8.0f}")


if __name__ == "__main__":
    main()
