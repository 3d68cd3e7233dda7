"""A fleet on one machine, for tests and benchmarks: reader processes that hold keys in L1
while this process updates them through the backplane, timing how soon each update
reaches each of them (``run_readers``)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    MultilayerCache,
    RedisLayer,
)

POLL_SECONDS = 0.0002


OPERATIONS = ("set", "delete", "invalidate_tags")


def run_readers(
    url: str, prefix: str, kind: str, readers: int = 2, updates: int = 1_000
) -> list[float]:
    """Change ``updates`` keys one at a time from this process while ``readers`` processes
    (``kind``: their manager, "sync" or "asyncio") hold them in L1, in turn by ``set``,
    ``delete`` and ``invalidate_tags`` (each key has a tag of its own); the seconds from
    the return of each call until each reader stopped reading the old value."""
    keys = [f"fleet:{i}" for i in range(updates)]
    writer = MultilayerCache(
        [InMemoryLayer(max_size=updates * 2), RedisLayer(url, prefix=prefix)], backplane=True
    )
    for key in keys:
        writer.set(key, "old", tags=f"tag-of-{key}")
    context = multiprocessing.get_context("spawn")
    done_at = context.Array("d", updates, lock=False)
    published = context.Value("i", 0)
    seen = context.Array("i", readers)
    ready = context.Barrier(readers + 1)
    results: Any = context.Queue()
    processes = [
        context.Process(
            target=_reader,
            args=(url, prefix, kind, keys, index, done_at, published, seen, ready, results),
        )
        for index in range(readers)
    ]
    for process in processes:
        process.start()
    try:
        ready.wait(timeout=60)
        for index, key in enumerate(keys):
            operation = OPERATIONS[index % len(OPERATIONS)]
            if operation == "set":
                writer.set(key, "new")
            elif operation == "delete":
                writer.delete(key)
            else:
                writer.invalidate_tags(f"tag-of-{key}")
            done_at[index] = time.time()
            published.value = index + 1
            deadline = time.monotonic() + 5
            while min(seen[:]) <= index and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        latencies: list[float] = []
        for _ in processes:
            latencies.extend(results.get(timeout=30))
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        writer.close()
    return latencies


def _reader(
    url: str,
    prefix: str,
    kind: str,
    keys: list[str],
    me: int,
    done_at: Any,
    published: Any,
    seen: Any,
    ready: Any,
    results: Any,
) -> None:
    if kind == "asyncio":
        results.put(
            asyncio.run(_read_async(url, prefix, keys, me, done_at, published, seen, ready))
        )
        return
    cache = MultilayerCache(
        [InMemoryLayer(max_size=len(keys) * 2), RedisLayer(url, prefix=prefix)], backplane=True
    )
    for _ in range(2):  # copied into L1 from the second read on
        assert [cache.get(key) for key in keys] == ["old"] * len(keys)
    ready.wait(timeout=60)
    latencies = []
    for index, key in enumerate(keys):
        while published.value <= index:
            time.sleep(POLL_SECONDS)
        while cache.get(key) == "old":
            time.sleep(POLL_SECONDS)
        latencies.append(time.time() - done_at[index])
        seen[me] = index + 1
    cache.close()
    results.put(latencies)


async def _read_async(
    url: str,
    prefix: str,
    keys: list[str],
    me: int,
    done_at: Any,
    published: Any,
    seen: Any,
    ready: Any,
) -> list[float]:
    async with AsyncMultilayerCache(
        [InMemoryLayer(max_size=len(keys) * 2), AsyncRedisLayer(url, prefix=prefix)],
        backplane=True,
    ) as cache:
        for _ in range(2):
            assert [await cache.get(key) for key in keys] == ["old"] * len(keys)
        await asyncio.to_thread(ready.wait, 60)
        latencies = []
        for index, key in enumerate(keys):
            while published.value <= index:
                await asyncio.sleep(POLL_SECONDS)
            while await cache.get(key) == "old":
                await asyncio.sleep(POLL_SECONDS)
            latencies.append(time.time() - done_at[index])
            seen[me] = index + 1
        return latencies
