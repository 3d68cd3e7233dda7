"""Rate limits measured against a real server (issue 20):

    python benchmarks/rate_limits.py [--limit 1000] [--loads 50] [--workers 8] [--seconds 3]
                                     [--rounds 3]

* **layer**: ``--workers`` threads (then as many asyncio tasks) call ``get_or_load`` on
  random keys through a 100-entry L1 and a Redis L2 with ``LayerPolicy(rate_limit=--limit)``
  (half of the 5,000 keys are in Redis, the loader answers the rest at once). The rate of
  commands Redis ran (its INFO commandstats, connection handshakes left out) over
  ``--seconds`` after a half-second warm-up, against the limit; the callers' errors; what
  ``stats().rate_limits`` counted. The same without a limit shows the demand.
* **loader**: ``--workers`` threads (tasks) call ``get_or_load`` on keys never seen before,
  with ``LoadOptions(max_loads_per_second=--loads)``: loader calls per second over the
  same window, and the callers' errors.

Each round is printed, then the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import threading
import time
from typing import Any

import redis

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    LoadOptions,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.tools.servers import RedisServer

KEYS = 5_000
WARM_UP = 0.5
HANDSHAKES = {"cmdstat_info", "cmdstat_hello", "cmdstat_client|setinfo"}


def value_of(key: str) -> str:
    return f"value of {key}"


def redis_calls(client: redis.Redis) -> int:
    """Commands the server ran, this script's INFO and connection handshakes left out."""
    stats = client.info("commandstats")
    return sum(int(entry["calls"]) for name, entry in stats.items() if name not in HANDSHAKES)


# ----------------------------------------------------------------------------- layer
def layer_round(url: str, prefix: str, limit: float | None, workers: int, seconds: float,
                use_asyncio: bool) -> tuple[float, int, Any]:  # fmt: skip
    """Commands per second that reached Redis, callers' errors, the cache's stats."""
    client = redis.Redis.from_url(url)
    policy = LayerPolicy(rate_limit=limit)
    MultilayerCache([RedisLayer(url, prefix=prefix)]).set_many(
        {str(n): value_of(str(n)) for n in range(0, KEYS, 2)}
    )
    errors: list[BaseException] = []

    if not use_asyncio:
        cache = MultilayerCache(
            [InMemoryLayer(max_size=100), RedisLayer(url, prefix=prefix)], [None, policy]
        )
        stop = threading.Event()

        def call() -> None:
            rng = random.Random()
            while not stop.is_set():
                key = str(rng.randrange(KEYS))
                try:
                    if cache.get_or_load(key, value_of) != value_of(key):
                        errors.append(AssertionError(f"wrong value for {key}"))
                except Exception as error:
                    errors.append(error)

        threads = [threading.Thread(target=call) for _ in range(workers)]
        for thread in threads:
            thread.start()
        time.sleep(WARM_UP)
        before, start = redis_calls(client), time.monotonic()
        time.sleep(seconds)
        after, elapsed = redis_calls(client), time.monotonic() - start
        stop.set()
        for thread in threads:
            thread.join()
        stats = cache.stats()
        cache.close()
        return (after - before) / elapsed, len(errors), stats

    async def main() -> tuple[float, int, Any]:
        cache = AsyncMultilayerCache(
            [InMemoryLayer(max_size=100), AsyncRedisLayer(url, prefix=prefix)], [None, policy]
        )
        done = False

        async def load(key: str) -> str:
            return value_of(key)

        async def call() -> None:
            rng = random.Random()
            while not done:
                key = str(rng.randrange(KEYS))
                try:
                    if await cache.get_or_load(key, load) != value_of(key):
                        errors.append(AssertionError(f"wrong value for {key}"))
                except Exception as error:
                    errors.append(error)

        tasks = [asyncio.create_task(call()) for _ in range(workers)]
        await asyncio.sleep(WARM_UP)
        before, start = redis_calls(client), time.monotonic()
        await asyncio.sleep(seconds)
        after, elapsed = redis_calls(client), time.monotonic() - start
        done = True
        await asyncio.gather(*tasks)
        stats = cache.stats()
        await cache.close()
        return (after - before) / elapsed, len(errors), stats

    return asyncio.run(main())


# ----------------------------------------------------------------------------- loader
def loader_round(limit: float, workers: int, seconds: float, use_asyncio: bool
                 ) -> tuple[float, int, Any]:  # fmt: skip
    """Loader calls per second in the window, callers' errors, the cache's stats."""
    options = LoadOptions(max_loads_per_second=limit)
    calls: list[float] = []
    errors: list[BaseException] = []
    counter = itertools.count()

    def load(key: str) -> str:
        calls.append(time.monotonic())
        return value_of(key)

    if not use_asyncio:
        cache = MultilayerCache([InMemoryLayer(max_size=1_000)], load_options=options)
        stop = threading.Event()

        def call() -> None:
            while not stop.is_set():
                key = f"k{next(counter)}"
                try:
                    cache.get_or_load(key, load)
                except Exception as error:
                    errors.append(error)

        threads = [threading.Thread(target=call) for _ in range(workers)]
        for thread in threads:
            thread.start()
        start = time.monotonic() + WARM_UP
        time.sleep(WARM_UP + seconds)
        end = time.monotonic()
        stop.set()
        for thread in threads:
            thread.join()
        stats = cache.stats()
    else:

        async def main() -> tuple[float, float, Any]:
            cache = AsyncMultilayerCache([InMemoryLayer(max_size=1_000)], load_options=options)
            done = False

            async def aload(key: str) -> str:
                return load(key)

            async def call() -> None:
                while not done:
                    try:
                        await cache.get_or_load(f"k{next(counter)}", aload)
                    except Exception as error:
                        errors.append(error)

            tasks = [asyncio.create_task(call()) for _ in range(workers)]
            start = time.monotonic() + WARM_UP
            await asyncio.sleep(WARM_UP + seconds)
            end = time.monotonic()
            done = True
            await asyncio.gather(*tasks)
            return start, end, cache.stats()

        start, end, stats = asyncio.run(main())
    in_window = sum(start <= at < end for at in calls)
    return in_window / (end - start), len(errors), stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=1000, help="L2 calls/s (default 1000)")
    parser.add_argument("--loads", type=float, default=50, help="loads/s (default 50)")
    parser.add_argument("--workers", type=int, default=8, help="threads or tasks (default 8)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window (3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (3)")
    arguments = parser.parse_args()
    workers, seconds = arguments.workers, arguments.seconds
    with RedisServer.start(use_env=False) as server:  # its own: no other client's commands
        prefixes = (f"bench{n}:" for n in itertools.count())
        for label, limit, use_asyncio in (
            (f"L2 rate_limit={arguments.limit:g}, {workers} threads", arguments.limit, False),
            (f"L2 rate_limit={arguments.limit:g}, {workers} tasks", arguments.limit, True),
            (f"L2 without a limit (the demand), {workers} threads", None, False),
        ):
            rates = []
            for _ in range(arguments.rounds):
                rate, errors, stats = layer_round(
                    server.url, next(prefixes), limit, workers, seconds, use_asyncio
                )
                rates.append(rate)
                limits = stats.rate_limits.get("redis")
                skipped = "" if limits is None else f", reads skipped {limits.reads_skipped}"
                ratio = "" if limit is None else f" ({rate / limit:.3f}x the limit)"
                print(f"  {label}: {rate:,.0f} calls/s reached Redis{ratio}, "
                      f"caller errors {errors}{skipped}")  # fmt: skip
            median = statistics.median(rates)
            ratio = "" if limit is None else f" = {median / limit:.3f}x the limit"
            print(f"{label}: median {median:,.0f} calls/s{ratio}")
    for use_asyncio in (False, True):
        label = f"loader max_loads_per_second={arguments.loads:g}, {workers} " + (
            "tasks" if use_asyncio else "threads"
        )
        rates = []
        for _ in range(arguments.rounds):
            rate, errors, stats = loader_round(arguments.loads, workers, seconds, use_asyncio)
            rates.append(rate)
            print(f"  {label}: {rate:.1f} loads/s ({rate / arguments.loads:.3f}x), caller "
                  f"errors {errors}, loads delayed {stats.loads_delayed}")  # fmt: skip
        median = statistics.median(rates)
        print(f"{label}: median {median:.1f} loads/s = {median / arguments.loads:.3f}x the limit")


if __name__ == "__main__":
    main()
