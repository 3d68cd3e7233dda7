"""Forks at random moments while threads use every operation of a cache, and checks that
each child has a working cache (issue 18's acceptance figure).

Eight threads call ``get``, ``set``, ``get_or_load`` (a slow loader, under a hard timeout and
a load limit), ``get_many`` and ``delete`` without pause on an L1 + Redis L2
``MultilayerCache``, with keys among them whose ``__eq__`` and ``__hash__`` are Python code
(a thread switch inside the L1), and short TTLs so that background refreshes run too; an
event loop in a ninth thread does the same with eight tasks on an ``AsyncMultilayerCache``.
The main thread forks at random moments. Each child, within a bounded wait (else it counts
as hung and is killed): loads a new key and keys the parent may be loading (each answer
must come within 1 s), writes, reads and deletes through both managers, reads Redis on
connections of its own, and checks the L1's structural invariants.

    PYTHONPATH=src:tests python tests/faults/forkstorm.py --forks 200
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    LayerPolicy,
    LoadOptions,
    LoadTimeoutError,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.core.ratelimit import LoadGateTimeout

from faults.forking import CHILD_WAIT_SECONDS, ChildHung, in_child, timed
from invariants import check_invariants

THREADS = 8
TASKS = 8
KEYS = 48
LOAD_SECONDS = 0.03
"""The slow loader's longest sleep; the hard timeout is half of it."""
EXPECTED_ERRORS = (LoadTimeoutError, LoadGateTimeout)
"""What a parent's caller may get: a load past its hard timeout, or no load slot in time."""


class EqKey(str):
    """A ``str`` key whose ``__eq__`` and ``__hash__`` are Python code, and collide often:
    the L1 calls them mid-lookup, where another thread may run (and fork)."""

    __slots__ = ()

    def __hash__(self) -> int:
        return str.__hash__(self) % 8

    def __eq__(self, other: object) -> bool:
        time.sleep(0)  # let another thread run here, inside the L1
        return str.__eq__(self, other)


def key(rng: random.Random) -> str:
    n = rng.randrange(KEYS)
    return EqKey(f"eq:{n}") if n % 3 == 0 else f"key:{n}"


def slow_load(key: str) -> str:
    time.sleep(random.uniform(0, LOAD_SECONDS))
    return f"loaded {key}"


async def slow_load_async(key: str) -> str:
    await asyncio.sleep(random.uniform(0, LOAD_SECONDS))
    return f"loaded {key}"


@dataclass
class StormReport:
    twin: str
    forks: int = 0
    hangs: int = 0
    failures: list[str] = field(default_factory=list)
    child_loads: list[float] = field(default_factory=list)
    """Each child's slowest ``get_or_load``, in seconds."""
    child_seconds: list[float] = field(default_factory=list)
    """How long each child took in all (fork to answer)."""
    emptied: int = 0
    """Children whose pure L1 started empty (a parent thread did not let go in time)."""
    parent_operations: int = 0
    parent_failures: list[str] = field(default_factory=list)

    @property
    def slowest_child_load(self) -> float:
        return max(self.child_loads, default=0.0)

    def summary(self) -> str:
        loads = sorted(self.child_loads) or [0.0]
        total = sorted(self.child_seconds) or [0.0]
        return (
            f"{self.twin}: {self.forks} forks, {self.hangs} hangs, "
            f"{len(self.failures)} failed children, {self.emptied} children with the L1 "
            f"emptied; child get_or_load max {max(loads) * 1000:.1f} ms, median "
            f"{statistics.median(loads) * 1000:.1f} ms; child total max "
            f"{max(total) * 1000:.0f} ms; parent: {self.parent_operations} operations, "
            f"{len(self.parent_failures)} unexpected errors"
        )


class _Emptied(logging.Handler):
    """Counts the pure L1's "starts the layer empty" warnings (in the child)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "starts the layer empty" in record.getMessage():
            self.count += 1


def storm(Layer: type, redis_url: str, prefix: str, forks: int, seed: int = 0) -> StormReport:
    """Fork ``forks`` times at random moments while threads and tasks use the caches."""
    rng = random.Random(seed)
    twin = "pure" if Layer.__module__.endswith("_py") else "compiled"
    report = StormReport(twin)
    policies = [LayerPolicy(ttl=0.2, refresh_ahead=0.5), LayerPolicy(ttl=2, stale_ttl=30)]
    options = LoadOptions(hard_timeout=LOAD_SECONDS / 2, max_concurrent_loads=4, load_wait=1)
    l1 = Layer(max_size=KEYS // 2, name="l1")  # smaller than the keys: evictions too
    cache = MultilayerCache(
        [l1, RedisLayer(redis_url, prefix=prefix, name="l2")], policies, load_options=options
    )
    async_l1 = Layer(max_size=KEYS // 2, name="l1")
    async_l2 = AsyncRedisLayer(redis_url, prefix=prefix + "aio:", name="l2")
    acache = AsyncMultilayerCache([async_l1, async_l2], policies, load_options=options)
    emptied = _Emptied()
    logging.getLogger("multilayercache").addHandler(emptied)
    stop = threading.Event()
    operations = [0] * (THREADS + 1)
    lock = threading.Lock()

    def failed(error: BaseException) -> None:
        with lock:
            report.parent_failures.append(repr(error))

    def work(n: int) -> None:
        local = random.Random(seed * 1000 + n)
        while not stop.is_set():
            k = key(local)
            action = local.randrange(5)
            try:
                if action == 0:
                    cache.get(k)
                elif action == 1:
                    cache.set(k, f"set {k}")
                elif action == 2:
                    cache.get_or_load(k, slow_load)
                elif action == 3:
                    cache.get_many([key(local) for _ in range(4)])
                else:
                    cache.delete(k)
            except EXPECTED_ERRORS:
                pass
            except Exception as error:
                failed(error)
            operations[n] += 1

    async def task(n: int) -> None:
        local = random.Random(seed * 1000 + THREADS + n)
        while not stop.is_set():
            k = key(local)
            action = local.randrange(5)
            try:
                if action == 0:
                    await acache.get(k)
                elif action == 1:
                    await acache.set(k, f"set {k}")
                elif action == 2:
                    await acache.get_or_load(k, slow_load_async)
                elif action == 3:
                    await acache.get_many([key(local) for _ in range(4)])
                else:
                    await acache.delete(k)
            except EXPECTED_ERRORS:
                pass
            except Exception as error:
                failed(error)
            operations[THREADS] += 1
            await asyncio.sleep(0)

    async def tasks() -> None:
        await asyncio.gather(*(task(n) for n in range(TASKS)))
        await acache.wait_idle(2)  # then close in this loop, which owns the connections
        await acache.close()

    def child() -> dict[str, Any]:
        check_invariants(l1)  # the copies as inherited, before the child starts any thread
        check_invariants(async_l1)
        slowest = 0.0
        # A new key, and keys the parent may have been loading or refreshing.
        for k in [f"child:{os.getpid()}", *(key(rng) for _ in range(4))]:
            _, seconds = timed(lambda k=k: cache.get_or_load(k, slow_load, hard_timeout=0.5))
            slowest = max(slowest, seconds)
        mine = f"child-write:{os.getpid()}"
        cache.set(mine, "mine")
        assert cache.get(mine) == "mine"
        assert cache.get_many([mine]) == {mine: "mine"}
        l1.delete(mine)
        assert cache.get(mine) == "mine", "the child's Redis read failed"
        pool = cache.layers[1].client.connection_pool
        assert all(c.pid == os.getpid() for c in pool._available_connections)
        assert cache.delete(mine)
        assert cache.wait_idle(2)  # the child's own refreshes write to the L1 meanwhile
        check_invariants(l1)

        async def asynchronous() -> float:
            start = time.perf_counter()
            await acache.get_or_load(f"child:{os.getpid()}", slow_load_async, hard_timeout=0.5)
            seconds = time.perf_counter() - start
            await acache.set(mine, "mine")
            async_l1.delete(mine)
            assert await acache.get(mine) == "mine", "the child's asyncio Redis read failed"
            await acache.delete(mine)
            return seconds

        slowest = max(slowest, asyncio.run(asynchronous()))
        check_invariants(async_l1)
        return {"slowest": slowest, "emptied": emptied.count}

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(THREADS)]
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_until_complete, args=(tasks(),), daemon=True)
    for thread in [*threads, loop_thread]:
        thread.start()
    try:
        time.sleep(0.2)  # warm-up: keys cached, loads and refreshes running
        for _ in range(forks):
            time.sleep(rng.uniform(0, 0.02))
            report.forks += 1
            start = time.perf_counter()
            try:
                answer = in_child(child, CHILD_WAIT_SECONDS)
            except ChildHung:
                report.hangs += 1
                continue
            except pytest.fail.Exception as error:  # the child failed: its traceback
                report.failures.append(str(error))
                continue
            report.child_seconds.append(time.perf_counter() - start)
            report.child_loads.append(answer["slowest"])
            report.emptied += bool(answer["emptied"])
        # Every parent thread still makes progress (one may wait up to ``load_wait`` for a
        # load slot, more on a loaded machine: a stalled one never moves again).
        before = list(operations)
        deadline = time.monotonic() + 5
        stalled = list(range(len(operations)))
        while stalled and time.monotonic() < deadline:
            time.sleep(0.05)
            stalled = [n for n in stalled if operations[n] == before[n]]
        if stalled:
            report.parent_failures.append(f"parent threads stalled after the forks: {stalled}")
    finally:
        stop.set()
        for thread in [*threads, loop_thread]:
            thread.join(5)
        loop.close()
        logging.getLogger("multilayercache").removeHandler(emptied)
    cache.wait_idle(2)  # (refreshes write to the L1 while the check reads it)
    check_invariants(l1)
    check_invariants(async_l1)
    report.parent_operations = sum(operations)
    for name, stats in (("sync", cache.stats()), ("asyncio", acache.stats())):
        if stats.read_errors["l2"]:  # e.g. a child that took a socket from the parent
            report.parent_failures.append(f"{name}: {stats.read_errors['l2']} L2 read errors")
    cache.close()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forks", type=int, default=200)
    parser.add_argument("--twin", choices=["pure", "compiled", "both"], default="both")
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    from multilayercache.tools.servers import RedisServer

    from support import IMPLEMENTATIONS

    twins = [impl for impl in IMPLEMENTATIONS if arguments.twin in ("both", impl.name)]
    failed = False
    with RedisServer.start() as server:
        for impl in twins:
            report = storm(
                impl.InMemoryLayer,
                server.url,
                f"storm{os.getpid()}-{impl.name}:",
                arguments.forks,
                arguments.seed,
            )
            print(report.summary())
            for failure in [*report.failures, *report.parent_failures][:5]:
                print("  ", failure.strip().splitlines()[-1])
            failed |= bool(report.hangs or report.failures or report.parent_failures)
            failed |= report.slowest_child_load >= 1.0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
