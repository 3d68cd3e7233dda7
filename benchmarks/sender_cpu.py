"""CPU the write-behind senders spend per delivered write, sync and asyncio (issue 24, row 2).

    python benchmarks/sender_cpu.py [--writes 20000] [--repeat 5]

The senders run while callers write and share the GIL with them, so every microsecond of
Python a sender spends per write is added to the callers' wall time. Measured inside the
senders themselves: ``time.thread_time()`` around each sync sender thread's whole life, and
around every step of each asyncio sender task (between its awaits) and of the task
that runs the layer's write. ``--writes`` distinct
keys are set (default ``WriteBehind()``), then flushed and closed; per write, median of
``--repeat`` rounds, for plain sets with a TTL and without, and for a batch of deletes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import types
from collections.abc import Callable, Generator
from typing import Any

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
)
from multilayercache.aio.writeback import AsyncWriteBehindWorker
from multilayercache.sync.writeback import WriteBehindWorker
from multilayercache.tools.servers import RedisServer

VALUE = {"id": 1, "name": "product", "price": 9.99, "tags": ["a", "b"]}
BEHIND = [None, LayerPolicy(write=WriteBehind())]
SPENT: list[float] = []  # CPU seconds of every sender, this round


def timed_thread(work: Callable[[Any], None]) -> Callable[[Any], None]:
    def timed(self: Any) -> None:
        started = time.thread_time()
        try:
            work(self)
        finally:
            SPENT.append(time.thread_time() - started)

    return timed


def timed_task(work: Callable[..., Any]) -> Callable[..., Any]:
    """The coroutine, driven step by step: CPU counted only while it runs."""

    @types.coroutine
    def timed(*args: Any) -> Generator[Any, Any, Any]:
        steps = work(*args).__await__()
        spent = 0.0
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                started = time.thread_time()
                try:
                    yielded = steps.throw(thrown) if thrown is not None else steps.send(sent)
                except StopIteration as finished:
                    return finished.value
                finally:
                    spent += time.thread_time() - started
                try:
                    sent, thrown = (yield yielded), None
                except BaseException as error:  # noqa: BLE001 - handed on to the coroutine
                    sent, thrown = None, error
        finally:
            SPENT.append(spent)

    return timed


WriteBehindWorker._work = timed_thread(WriteBehindWorker._work)  # type: ignore[method-assign]
AsyncWriteBehindWorker._work = timed_task(AsyncWriteBehindWorker._work)  # type: ignore[method-assign]
# The sender runs the layer's write in a task of its own (asyncio.wait_for, batch_timeout).
AsyncRedisLayer.write_packed = timed_task(AsyncRedisLayer.write_packed)  # type: ignore[method-assign]


def sync_round(url: str, keys: list[str], ttl: float | None, deletes: bool) -> float:
    cache = MultilayerCache([InMemoryLayer(max_size=len(keys)), RedisLayer(url, ttl=ttl)], BEHIND)
    SPENT.clear()
    for key in keys:
        if deletes:
            cache.delete(key)
        else:
            cache.set(key, VALUE)
    cache.flush()
    cache.close()
    for thread in threading.enumerate():  # the senders end once the queue is closed and idle
        if thread.name.startswith("multilayercache-writeback"):
            thread.join()
    return sum(SPENT) / len(keys)


async def async_round(url: str, keys: list[str], ttl: float | None, deletes: bool) -> float:
    layer = AsyncRedisLayer(url, ttl=ttl)
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=len(keys)), layer], BEHIND)
    SPENT.clear()
    for key in keys:
        if deletes:
            await cache.delete(key)
        else:
            await cache.set(key, VALUE)
    await cache.flush()
    await cache.close()
    return sum(SPENT) / len(keys)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cases = {
        "sync, set with ttl": ("sync", 60.0, False),
        "sync, set without ttl": ("sync", None, False),
        "sync, delete": ("sync", None, True),
        "asyncio, set with ttl": ("asyncio", 60.0, False),
        "asyncio, set without ttl": ("asyncio", None, False),
        "asyncio, delete": ("asyncio", None, True),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    with RedisServer.start() as server, asyncio.Runner() as runner:
        for round_ in range(args.repeat):
            for name, (kind, ttl, deletes) in cases.items():
                keys = [f"sender:{round_}:{name}:{index}" for index in range(args.writes)]
                if kind == "sync":
                    samples[name].append(sync_round(server.url, keys, ttl, deletes))
                else:
                    samples[name].append(runner.run(async_round(server.url, keys, ttl, deletes)))
    print(f"sender CPU per delivered write, {args.writes} distinct keys, median of {args.repeat}")
    for name, figures in samples.items():
        low, high = min(figures) * 1e6, max(figures) * 1e6
        print(f"  {name:28} {statistics.median(figures) * 1e6:6.2f} us ({low:.2f}-{high:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
