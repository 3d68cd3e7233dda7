"""Write-behind measured: throughput against a raw redis-py pipeline, ``set()`` latency
against an L1 set, and a Redis outage under writers (none lost), in one run.

    python benchmarks/write_behind.py [--writes 200000] [--repeat 5] [--outage 5]

1. **Throughput**: ``--writes`` distinct keys written with ``cache.set`` (L1 + write-behind
   L2), then ``flush()``: writes per second from the first set to the end of the flush;
   against the same writes (the same encoded bytes) sent by raw redis-py pipelines of 500.
2. **set() latency**: median ns per ``cache.set`` with write-behind, against the same set
   on a cache of the L1 alone, and against ``InMemoryLayer.set`` itself.
3. **Outage**: Redis (append-only, fsync always) SIGKILLed for ``--outage`` seconds under 8
   writer threads, then under 200 asyncio tasks, restarted on the same port; then
   ``flush()``. Acknowledged writes = found in Redis + dead-lettered, and lost = 0; set()
   latency p50 / p99 / max before, during and after.

Rows are interleaved and repeated (medians): the machine's 2 cores are noisy, so compare
the ratios, which are measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    QueueFull,
    RedisLayer,
    RetryPolicy,
    WriteBehind,
    read_dead_letters,
)
from multilayercache.core.freshness import Lifetime
from multilayercache.tools.servers import RedisServer

VALUE = {"id": 1, "name": "product", "price": 9.99, "tags": ["a", "b"]}
BEHIND = [None, LayerPolicy(write=WriteBehind())]


# ----------------------------------------------------------------------------- 1. throughput
def throughput(url: str, writes: int, run: int) -> tuple[float, float]:
    """(write-behind writes/s, raw pipeline writes/s) for ``writes`` distinct keys."""
    prefix = f"wb{run}:"
    l2 = RedisLayer(url, prefix=prefix)
    cache = MultilayerCache([InMemoryLayer(max_size=writes), l2], BEHIND)
    keys = [f"k{index}" for index in range(writes)]
    start = time.perf_counter()
    for key in keys:
        cache.set(key, VALUE)
    assert cache.flush(timeout=120)
    behind = writes / (time.perf_counter() - start)
    assert cache.stats().write_queues["redis"].delivered == writes
    cache.close()

    # The same bytes, SET with the same expiry, 500 per pipeline, by hand.
    packed = [l2.encode_write(key, VALUE, Lifetime(3600.0)) for key in keys]
    client = redis.Redis.from_url(url)
    start = time.perf_counter()
    for first in range(0, writes, 500):
        pipeline = client.pipeline(transaction=False)
        for write in packed[first : first + 500]:
            pipeline.set(prefix + "raw" + write.redis_key, write.data, px=write.milliseconds)
        pipeline.execute()
    raw = writes / (time.perf_counter() - start)
    client.close()
    return behind, raw


# ----------------------------------------------------------------------------- 2. latency
def set_latency(url: str, calls: int, repeat: int) -> dict[str, float]:
    """Median ns per set: write-behind cache, L1-only cache, the layer itself."""
    layer = InMemoryLayer(max_size=calls)
    alone = MultilayerCache([InMemoryLayer(max_size=calls)])
    behind = MultilayerCache(
        [InMemoryLayer(max_size=calls), RedisLayer(url, prefix="lat:")],
        [None, LayerPolicy(write=WriteBehind(max_items=10 * calls))],
    )
    keys = [f"k{index % 1000}" for index in range(calls)]  # updates of 1,000 keys
    rows = {"InMemoryLayer.set": layer.set, "L1-only cache.set": alone.set}
    rows["write-behind cache.set"] = behind.set
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeat):
        for name, set_ in rows.items():
            start = time.perf_counter()
            for key in keys:
                set_(key, VALUE)
            samples[name].append((time.perf_counter() - start) / calls * 1e9)
            if name.startswith("write-behind"):
                behind.flush(timeout=60)  # the worker's sends do not overlap the next row
    behind.close()
    return {name: statistics.median(values) for name, values in samples.items()}


# ----------------------------------------------------------------------------- 3. outage
PERSIST = ("--appendonly", "yes", "--appendfsync", "always")


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "(none)"
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50 * 1e6:7.1f} us  p99 {p99 * 1e6:8.1f} us  max {ordered[-1] * 1e3:7.1f} ms"


class Phases:
    """set() latencies by phase: before the kill, during the outage, after the restart."""

    def __init__(self) -> None:
        self.phase = "before"
        self.samples: dict[str, list[float]] = {"before": [], "during": [], "after": []}

    def record(self, seconds: float) -> None:
        self.samples[self.phase].append(seconds)


def outage_policy(dead: Path) -> list[LayerPolicy | None]:
    retry = RetryPolicy(attempts=None, base=0.05, cap=0.5, budget=60.0)
    return [None, LayerPolicy(write=WriteBehind(retry=retry, dead_letter=dead))]


def tally(url: str, acknowledged: dict[str, int], dead: Path) -> tuple[int, int, int]:
    """(found in Redis with the latest value, dead-lettered, lost)."""
    reader = RedisLayer(url, prefix="outage:")
    found = reader.get_many(list(acknowledged))
    reader.close()
    buried = {record.key for record in read_dead_letters(dead)} if dead.exists() else set()
    in_redis = {key for key, value in acknowledged.items() if found.get(key) == value}
    lost = [key for key in acknowledged if key not in in_redis and key not in buried]
    return len(in_redis), len(buried - in_redis), len(lost)


def outage_threads(seconds: float, folder: Path) -> list[str]:
    server = RedisServer.start(*PERSIST, use_env=False)
    dead = folder / "threads-dead.jsonl"
    cache = MultilayerCache(
        [InMemoryLayer(max_size=200_000), RedisLayer(server.url, prefix="outage:")],
        outage_policy(dead),
    )
    phases, acknowledged, refused = Phases(), {}, [0]
    stop = threading.Event()

    def write(thread: int) -> None:
        index = 0
        while not stop.is_set():
            key = f"t{thread}:{index % 5000}"
            start = time.perf_counter()
            try:
                cache.set(key, index)
            except QueueFull:
                refused[0] += 1
                time.sleep(0.01)
            else:
                acknowledged[key] = index
                phases.record(time.perf_counter() - start)
            index += 1
            if index % 50 == 0:
                time.sleep(0.001)  # a service also does other work

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    server.kill()
    phases.phase = "during"
    time.sleep(seconds)
    server.restart()  # same port, same append-only file
    phases.phase = "after"
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    flushed = cache.flush(timeout=120)
    queue = cache.stats().write_queues["redis"]
    cache.close()
    found, buried, lost = tally(server.url, acknowledged, dead)
    server.stop()
    return report(
        "8 threads", phases, acknowledged, refused[0], found, buried, lost, flushed, queue
    )


def outage_tasks(seconds: float, folder: Path) -> list[str]:
    server = RedisServer.start(*PERSIST, use_env=False)
    dead = folder / "tasks-dead.jsonl"
    phases, acknowledged, refused = Phases(), {}, [0]
    result: dict[str, Any] = {}

    async def main() -> None:
        cache = AsyncMultilayerCache(
            [InMemoryLayer(max_size=200_000), AsyncRedisLayer(server.url, prefix="outage:")],
            outage_policy(dead),
        )
        stop = asyncio.Event()

        async def write(task: int) -> None:
            index = 0
            while not stop.is_set():
                key = f"a{task}:{index % 200}"
                start = time.perf_counter()
                try:
                    await cache.set(key, index)
                except QueueFull:
                    refused[0] += 1
                    await asyncio.sleep(0.01)
                else:
                    acknowledged[key] = index
                    phases.record(time.perf_counter() - start)
                index += 1
                await asyncio.sleep(0.001)

        tasks = [asyncio.create_task(write(task)) for task in range(200)]
        await asyncio.sleep(1.0)
        server.kill()
        phases.phase = "during"
        await asyncio.sleep(seconds)
        await asyncio.to_thread(server.restart)
        phases.phase = "after"
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
        result["flushed"] = await cache.flush(timeout=120)
        result["queue"] = cache.stats().write_queues["redis"]
        await cache.close()

    asyncio.run(main())
    found, buried, lost = tally(server.url, acknowledged, dead)
    server.stop()
    return report(
        "200 tasks", phases, acknowledged, refused[0], found, buried, lost,
        result["flushed"], result["queue"],
    )  # fmt: skip


def report(
    who: str,
    phases: Phases,
    acknowledged: dict[str, int],
    refused: int,
    found: int,
    buried: int,
    lost: int,
    flushed: bool,
    queue: Any,
) -> list[str]:
    outcome = "ok" if flushed else "TIMED OUT"
    lines = [
        f"{who}: keys acknowledged {len(acknowledged):,} = found {found:,} + "
        f"dead-lettered {buried:,}; lost {lost}; flush {outcome}"
    ]
    lines.append(
        f"  queue: puts {queue.puts:,}, delivered {queue.delivered:,}, coalesced "
        f"{queue.coalesced:,}, batches {queue.batches:,}, retries {queue.retries:,}, "
        f"dead-lettered {queue.dead_lettered:,}, refused (QueueFull, not acknowledged) {refused:,}"
    )
    for phase, samples in phases.samples.items():
        lines.append(f"  set() {phase:<7}{len(samples):>9,} sets  {percentiles(samples)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=200_000, help="throughput writes (200000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (5)")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds Redis is down (5)")
    parser.add_argument("--skip-outage", action="store_true", help="only sections 1 and 2")
    options = parser.parse_args(argv)

    with RedisServer.start() as server:
        print(f"1. throughput: {options.writes:,} distinct keys, median of {options.repeat}")
        pairs = [throughput(server.url, options.writes, run) for run in range(options.repeat)]
        behind = statistics.median(pair[0] for pair in pairs)
        raw = statistics.median(pair[1] for pair in pairs)
        ratios = statistics.median(pair[0] / pair[1] for pair in pairs)
        print(f"   write-behind (set + flush)   {behind:10,.0f} writes/s")
        print(f"   raw redis-py pipelines (500) {raw:10,.0f} writes/s")
        print(f"   ratio (median of per-run)    {ratios:10.2f}x")
        print(f"2. set() latency: 100,000 sets of 1,000 keys, median of {options.repeat}")
        latency = set_latency(server.url, 100_000, options.repeat)
        base = latency["L1-only cache.set"]
        for name, ns in latency.items():
            print(f"   {name:<24}{ns:8.0f} ns   {ns / base:5.2f}x the L1-only cache")
    if options.skip_outage:
        return 0
    print(f"3. outage: Redis SIGKILLed for {options.outage:g} s, restarted on the same port")
    with tempfile.TemporaryDirectory() as folder:
        for line in outage_threads(options.outage, Path(folder)):
            print(line)
        for line in outage_tasks(options.outage, Path(folder)):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
