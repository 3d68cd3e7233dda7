"""Loads under pressure: what issue 19's users hit, measured against a real server.

    python benchmarks/loading.py timeouts [--threads 32] [--seconds 3] [--rounds 5] [--asyncio]
    python benchmarks/loading.py nested [--threads 8] [--tasks 100]
    python benchmarks/loading.py split [--callers 20] [--runs 20]

* ``timeouts``: a service of ``--threads`` threads calling ``get_or_load`` on random keys
  through L1 + Redis, with a loader that takes 2 ms (``time.sleep(0.002)``), once with
  ``LoadOptions(soft_timeout=0.1, hard_timeout=2)`` and once without, in alternating rounds:
  operations per second and p99 latency, the median of the rounds and their ratio.
  ``--asyncio``: ``--threads`` tasks on one event loop, ``AsyncMultilayerCache``.
* ``nested``: cached functions 3 deep (``top`` calls ``middle`` calls ``bottom``, each a
  ``@cached`` function with a 2 ms body) under ``max_concurrent_loads=2`` and
  ``load_wait=5``, from ``--threads`` threads and from ``--tasks`` asyncio tasks: how many
  calls were answered, failed, and the slowest.
* ``split``: ``--callers`` threads released at once, half calling ``get_or_load(key)`` and
  half ``get_or_load_many([key])`` for one missing key, ``--runs`` times: loader calls per
  run (1 is one flight per key).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

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

LOADER_SECONDS = 0.002


# ----------------------------------------------------------------------------- timeouts
def service_round(
    url: str, prefix: str, options: LoadOptions, threads: int, seconds: float, keys: int
) -> tuple[float, float, int]:
    """Operations per second, p99 latency (ms) and the loads of one round of the service."""
    cache = MultilayerCache(
        [InMemoryLayer(max_size=keys // 4), RedisLayer(url, prefix=prefix)],
        [LayerPolicy(ttl=1), LayerPolicy(ttl=2)],
        load_options=options,
    )

    def load(key: str) -> str:
        time.sleep(LOADER_SECONDS)  # a query
        return f"row {key}"

    start = threading.Barrier(threads + 1)
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def work(n: int) -> None:
        rng = random.Random(n)
        mine = latencies[n]
        clock = time.perf_counter
        start.wait()
        while not stop.is_set():
            # 90% of reads go to 2% of the keys: mostly hits, a steady stream of loads
            key = f"k{rng.randrange(keys // 50 if rng.random() < 0.9 else keys)}"
            began = clock()
            cache.get_or_load(key, load)
            mine.append(clock() - began)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    stats = cache.stats()
    assert stats.soft_timeouts == stats.hard_timeouts == 0  # 2 ms loads: none passed
    cache.close()
    every = sorted(seconds for mine in latencies for seconds in mine)
    p99 = every[int(len(every) * 0.99)] * 1000
    return len(every) / elapsed, p99, stats.loader_calls


def tasks_round(
    url: str, prefix: str, options: LoadOptions, tasks: int, seconds: float, keys: int
) -> tuple[float, float, int]:
    """``service_round`` for asyncio: ``tasks`` tasks on one event loop."""

    async def run() -> tuple[float, float, int]:
        cache = AsyncMultilayerCache(
            [InMemoryLayer(max_size=keys // 4), AsyncRedisLayer(url, prefix=prefix)],
            [LayerPolicy(ttl=1), LayerPolicy(ttl=2)],
            load_options=options,
        )

        async def load(key: str) -> str:
            await asyncio.sleep(LOADER_SECONDS)
            return f"row {key}"

        latencies: list[float] = []
        stop = time.perf_counter() + seconds

        async def work(n: int) -> None:
            rng = random.Random(n)
            clock = time.perf_counter
            while clock() < stop:
                key = f"k{rng.randrange(keys // 50 if rng.random() < 0.9 else keys)}"
                began = clock()
                await cache.get_or_load(key, load)
                latencies.append(clock() - began)
                await asyncio.sleep(0)  # an L1 hit never yields: let the others run

        began = time.perf_counter()
        await asyncio.gather(*(work(n) for n in range(tasks)))
        elapsed = time.perf_counter() - began
        stats = cache.stats()
        assert stats.soft_timeouts == stats.hard_timeouts == 0
        await cache.close()
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        return len(latencies) / elapsed, p99, stats.loader_calls

    return asyncio.run(run())


def timeouts(arguments: argparse.Namespace) -> None:
    configurations = {
        "without timeouts": LoadOptions(),
        "soft+hard timeouts": LoadOptions(soft_timeout=0.1, hard_timeout=2),
    }
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in configurations}
    ratios = []
    with RedisServer.start() as server:
        for round_ in range(arguments.rounds):
            measured = {}
            order = list(configurations) if round_ % 2 == 0 else list(configurations)[::-1]
            for name in order:  # alternating which goes first: the machine's load drifts
                prefix = f"bench:{round_}:{name[:4]}:"
                measure = tasks_round if arguments.asyncio else service_round
                measured[name] = measure(
                    server.url,
                    prefix,
                    configurations[name],
                    arguments.threads,
                    arguments.seconds,
                    20_000,
                )
                results[name].append(measured[name])
            ratio = measured["soft+hard timeouts"][0] / measured["without timeouts"][0]
            ratios.append(ratio)
            print(
                f"round {round_ + 1}: "
                + ", ".join(
                    f"{name} {ops:,.0f} ops/s p99 {p99:.1f} ms ({loads / arguments.seconds:,.0f}"
                    " loads/s)"
                    for name, (ops, p99, loads) in measured.items()
                )
                + f"; ratio {ratio:.2f}"
            )
    callers = f"{arguments.threads} {'tasks' if arguments.asyncio else 'threads'}"
    print(f"{callers}, 2 ms loader, L1 + Redis, median of {arguments.rounds}:")
    for name, rounds in results.items():
        ops = statistics.median(ops for ops, _, _ in rounds)
        p99 = statistics.median(p99 for _, p99, _ in rounds)
        print(f"  {name:20s} {ops:10,.0f} ops/s   p99 {p99:6.1f} ms")
    print(
        f"  ratio with/without: median {statistics.median(ratios):.2f} "
        f"(rounds {min(ratios):.2f}-{max(ratios):.2f})"
    )


# ----------------------------------------------------------------------------- nested
def nested(arguments: argparse.Namespace) -> None:
    options = LoadOptions(max_concurrent_loads=2, load_wait=5)
    with RedisServer.start() as server:
        print(f"3-deep cached calls, max_concurrent_loads=2, load_wait={options.load_wait} s")
        nested_threads(server.url, options, arguments.threads)
        asyncio.run(nested_tasks(server.url, options, arguments.tasks))


def _report(what: str, outcomes: Counter[str], slowest: float, peak: int) -> None:
    print(
        f"  {what}: {dict(outcomes)}, slowest call {slowest * 1000:.0f} ms, "
        f"at most {peak} independent loads at once"
    )


def nested_threads(url: str, options: LoadOptions, threads: int) -> None:
    cache = MultilayerCache(
        [InMemoryLayer(max_size=10_000), RedisLayer(url, prefix="nested:sync:")],
        load_options=options,
    )

    @cache.cached(ttl=60)
    def bottom(n: int) -> int:
        time.sleep(LOADER_SECONDS)
        return n

    @cache.cached(ttl=60)
    def middle(n: int) -> int:
        time.sleep(LOADER_SECONDS)
        return bottom(n) + bottom(n + 1)

    @cache.cached(ttl=60)
    def top(n: int) -> int:
        time.sleep(LOADER_SECONDS)
        return middle(n) + middle(n + 1)

    outcomes: Counter[str] = Counter()
    slowest = [0.0]
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work(n: int) -> None:
        barrier.wait()
        for round_ in range(5):
            began = time.perf_counter()
            try:
                top(n * 100 + round_ * 3)
                outcome = "answered"
            except Exception as error:
                outcome = type(error).__name__
            with lock:
                outcomes[outcome] += 1
                slowest[0] = max(slowest[0], time.perf_counter() - began)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cache.close()
    peak = cache._driver.gate.limit.peak
    _report(f"{threads} threads x 5 calls", outcomes, slowest[0], peak)


async def nested_tasks(url: str, options: LoadOptions, tasks: int) -> None:
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=10_000), AsyncRedisLayer(url, prefix="nested:aio:")],
        load_options=options,
    )

    @cache.cached(ttl=60)
    async def bottom(n: int) -> int:
        await asyncio.sleep(LOADER_SECONDS)
        return n

    @cache.cached(ttl=60)
    async def middle(n: int) -> int:
        await asyncio.sleep(LOADER_SECONDS)
        return await bottom(n) + await bottom(n + 1)

    @cache.cached(ttl=60)
    async def top(n: int) -> int:
        await asyncio.sleep(LOADER_SECONDS)
        first, second = await asyncio.gather(middle(n), middle(n + 1))
        return first + second

    outcomes: Counter[str] = Counter()
    slowest = 0.0

    async def call(n: int) -> None:
        nonlocal slowest
        began = time.perf_counter()
        try:
            await top(n * 3)
            outcome = "answered"
        except Exception as error:
            outcome = type(error).__name__
        outcomes[outcome] += 1
        slowest = max(slowest, time.perf_counter() - began)

    await asyncio.gather(*(call(n) for n in range(tasks)))
    await cache.close()
    _report(f"{tasks} tasks", outcomes, slowest, cache._driver.gate.limit.peak)


# ----------------------------------------------------------------------------- split
def split(arguments: argparse.Namespace) -> None:
    with RedisServer.start() as server:
        threads = [
            split_threads(server.url, run, arguments.callers) for run in range(arguments.runs)
        ]
        tasks = [
            asyncio.run(split_tasks(server.url, run, arguments.callers))
            for run in range(arguments.runs)
        ]
    print(
        f"{arguments.callers} callers split between get_or_load and get_or_load_many, "
        f"{arguments.runs} runs: loads per run {dict(Counter(threads))} (threads), "
        f"{dict(Counter(tasks))} (tasks)"
    )


def split_threads(url: str, run: int, callers: int) -> int:
    """Loads of one key by ``callers`` threads, half of them asking for it in a batch."""
    cache = MultilayerCache(
        [InMemoryLayer(max_size=1_000), RedisLayer(url, prefix=f"split:sync:{run}:")]
    )
    calls = Counter[str]()
    lock = threading.Lock()

    def load(key: str) -> str:
        with lock:
            calls["single"] += 1
        time.sleep(0.05)
        return "value"

    def bulk(keys: list[str]) -> dict[str, str]:
        with lock:
            calls["bulk"] += 1
        time.sleep(0.05)
        return {key: "value" for key in keys}

    barrier = threading.Barrier(callers)
    calls_of: list[Callable[[], Any]] = [
        lambda: cache.get_or_load("key", load),
        lambda: cache.get_or_load_many(["key"], bulk)["key"],
    ]

    def work(n: int) -> None:
        barrier.wait()
        assert calls_of[n % 2]() == "value"

    workers = [threading.Thread(target=work, args=(n,)) for n in range(callers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cache.close()
    return calls["single"] + calls["bulk"]


async def split_tasks(url: str, run: int, callers: int) -> int:
    """``split_threads`` for asyncio tasks."""
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=1_000), AsyncRedisLayer(url, prefix=f"split:aio:{run}:")]
    )
    calls = Counter[str]()

    async def load(key: str) -> str:
        calls["single"] += 1
        await asyncio.sleep(0.05)
        return "value"

    async def bulk(keys: list[str]) -> dict[str, str]:
        calls["bulk"] += 1
        await asyncio.sleep(0.05)
        return {key: "value" for key in keys}

    async def call(n: int) -> str:
        if n % 2:
            return (await cache.get_or_load_many(["key"], bulk))["key"]
        return await cache.get_or_load("key", load)

    assert await asyncio.gather(*(call(n) for n in range(callers))) == ["value"] * callers
    await cache.close()
    return calls["single"] + calls["bulk"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timed = commands.add_parser("timeouts")
    timed.add_argument("--threads", type=int, default=32)
    timed.add_argument("--seconds", type=float, default=3.0)
    timed.add_argument("--rounds", type=int, default=5)
    timed.add_argument("--asyncio", action="store_true", help="tasks instead of threads")
    deep = commands.add_parser("nested")
    deep.add_argument("--threads", type=int, default=8)
    deep.add_argument("--tasks", type=int, default=100)
    shared = commands.add_parser("split")
    shared.add_argument("--callers", type=int, default=20)
    shared.add_argument("--runs", type=int, default=20)
    arguments = parser.parse_args()
    {"timeouts": timeouts, "nested": nested, "split": split}[arguments.command](arguments)


if __name__ == "__main__":
    main()
