"""Event loops that end under the cache: ``asyncio.run()`` called again and again, a loop
closed while operations, refreshes and writes are pending, and a task cancelled at every
point where an operation awaits (Redis behind a ``Proxy`` with latency, so that each
operation spans many event-loop turns; cancelled every 4 ms through it).

What the caller sees: the next loop works, the same keys included; a cancelled caller's
load still finishes for the others and is cached; nothing stays in flight; every write
acknowledged before a loop ended is delivered by the next one."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    RedisLayer,
    WriteBehind,
)
from multilayercache.tools.servers import RedisServer

from network_faults import Proxy

STALE_L1 = LayerPolicy(ttl=0.1, stale_ttl=60)  # stale 0.1 s after a write, served 60 s


@pytest.fixture
def slow_link(redis_server: RedisServer) -> Iterator[Proxy]:
    """Redis 40 ms away (20 ms each way): a command spans many event-loop turns."""
    with Proxy(redis_server.port) as proxy:
        proxy.latency = 0.02
        yield proxy


class Loader:
    """An async loader that takes ``seconds`` and counts its calls per key."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: dict[str, int] = {}

    async def __call__(self, key: str) -> str:
        self.calls[key] = self.calls.get(key, 0) + 1
        await asyncio.sleep(self.seconds)
        return f"{key}#{self.calls[key]}"


# A loop closed with tasks pending leaves their connections open (the loop that could
# close them is gone): Python reports each as a ResourceWarning when it is collected.
closes_a_loop = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture(autouse=True)
def destroy_what_the_closed_loops_left() -> Iterator[None]:
    """What a test leaves on a closed loop (tasks, connections) is destroyed, with
    warnings, when it is collected: here, where it is expected, not in a later test."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()


def run_in_a_loop_closed_without_cancelling(work: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``work()`` on a new loop, then close the loop with whatever it left pending
    (as code that drives its own loop does: ``run_until_complete``, then ``close``)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(work())
    finally:
        loop.close()


def test_successive_asyncio_runs_pick_up_what_the_last_one_left(redis_url, prefix) -> None:
    """Each ``asyncio.run`` cancels what is left when its main returns: a load a caller
    did not wait for, a refresh running, write-behind writes still queued. The next run
    loads the key anew, refreshes the stale one, and delivers the writes."""
    l2 = AsyncRedisLayer(redis_url, prefix=prefix)
    behind = LayerPolicy(write=WriteBehind(max_delay=60, batch_size=100_000))  # held back
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=100), l2], [STALE_L1, behind])
    stale_only = AsyncMultilayerCache([InMemoryLayer(max_size=100)], [STALE_L1])
    load = Loader(0.3)

    async def first() -> None:
        for n in range(100):
            await cache.set(f"w{n}", n)
        await stale_only.set("stale", "old")
        await asyncio.sleep(0.15)
        assert await stale_only.get_or_load("stale", load) == "old"  # refresh running
        asyncio.ensure_future(cache.get_or_load("abandoned", load))
        for _ in range(500):  # until its loader runs (a busy machine takes a while to start it)
            if load.calls.get("abandoned"):
                break
            await asyncio.sleep(0.01)
        assert load.calls.get("abandoned") == 1  # left running: asyncio.run cancels it

    async def second() -> None:
        assert await cache.get_or_load("abandoned", load) == "abandoned#2"
        assert await stale_only.get_or_load("stale", load) == "old"  # a new refresh
        assert await stale_only.wait_idle(5)
        assert await stale_only.get("stale") == "stale#2"
        assert await cache.flush(5)
        reader = AsyncRedisLayer(redis_url, prefix=prefix)
        assert await reader.get_many([f"w{n}" for n in range(100)]) == {
            f"w{n}": n for n in range(100)
        }
        await reader.close()
        assert cache.in_flight == 0 and stale_only.in_flight == 0

    async def third() -> None:  # nothing left over by the second
        assert await cache.get_or_load("fresh", load) == "fresh#1"
        assert cache.in_flight == 0 and await stale_only.wait_idle(1)
        await cache.close()

    for work in (first, second, third):
        asyncio.run(work())


@closes_a_loop
def test_writes_queued_in_a_loop_closed_without_cancelling_are_delivered_by_the_next(
    redis_url, prefix
) -> None:
    l2 = AsyncRedisLayer(redis_url, prefix=prefix)
    behind = LayerPolicy(write=WriteBehind(max_delay=60, batch_size=100_000))
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=100), l2], [None, behind])

    async def write() -> None:
        await cache.set_many({f"w{n}": n for n in range(50)})

    async def deliver() -> dict[str, Any]:
        assert await cache.flush(5)
        reader = AsyncRedisLayer(redis_url, prefix=prefix)
        found = await reader.get_many([f"w{n}" for n in range(50)])
        await reader.close()
        await cache.close()
        return found

    run_in_a_loop_closed_without_cancelling(write)  # its senders never ran to the end
    assert asyncio.run(deliver()) == {f"w{n}": n for n in range(50)}


@closes_a_loop
def test_a_close_after_a_loop_closed_with_a_sender_asleep_delivers_the_writes(
    redis_url, prefix
) -> None:
    """The senders sleep until the batch is due; the loop is closed under them. A close on
    another loop (the exit's, or the program's) delivers: it woke the old loop's senders
    first, which raised "Event loop is closed", and the writes were lost."""
    l2 = AsyncRedisLayer(redis_url, prefix=prefix)
    behind = LayerPolicy(write=WriteBehind(max_delay=60, batch_size=100_000))
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=100), l2], [None, behind])

    async def write() -> None:
        for n in range(10):
            await cache.set(f"w{n}", n)
            await asyncio.sleep(0.01)  # the senders wake, find nothing due, sleep again

    run_in_a_loop_closed_without_cancelling(write)
    asyncio.run(cache.close(timeout=5))
    reader = RedisLayer(redis_url, prefix=prefix)
    assert reader.get_many([f"w{n}" for n in range(10)]) == {f"w{n}": n for n in range(10)}
    reader.close()


@closes_a_loop
def test_a_key_loading_when_its_loop_was_closed_loads_in_the_next_loop() -> None:
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=100)])
    load = Loader(0.5)

    async def abandon() -> None:
        asyncio.ensure_future(cache.get_or_load("k", load))
        await asyncio.sleep(0.01)

    run_in_a_loop_closed_without_cancelling(abandon)

    async def again() -> str:
        return await asyncio.wait_for(cache.get_or_load("k", load), 3)

    assert asyncio.run(again()) == "k#2"


@closes_a_loop
def test_a_key_refreshing_when_its_loop_was_closed_refreshes_in_the_next_loop() -> None:
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=100)], [STALE_L1])
    load = Loader(0.5)

    async def start_refresh() -> None:
        await cache.set("k", "old")
        await asyncio.sleep(0.15)
        assert await cache.get_or_load("k", load) == "old"  # stale: a refresh starts
        await asyncio.sleep(0.01)

    run_in_a_loop_closed_without_cancelling(start_refresh)

    async def refreshed() -> Any:
        assert await cache.get_or_load("k", load) == "old"
        assert await cache.wait_idle(1.5)
        return await cache.get("k")

    assert asyncio.run(refreshed()) == "k#2"


async def cancelled_at(delay: float, operation: Awaitable[Any]) -> str:
    """Run ``operation`` as a task and cancel it after ``delay`` seconds: "cancelled", or
    "completed" if it finished first."""
    task = asyncio.ensure_future(operation)
    await asyncio.sleep(delay)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    return "completed"


CANCEL_STEP = 0.004  # cancelled every 4 ms, from at once to past the end of the operation


async def test_a_caller_cancelled_anywhere_in_get_or_load_leaves_the_load_to_finish(
    slow_link: Proxy, prefix: str
) -> None:
    """The load belongs to every caller of the key, not to the one that started it: it
    runs to the end and is cached in both layers, once; nothing stays in flight."""
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=1000), AsyncRedisLayer(slow_link.url, prefix=prefix)]
    )
    load = Loader(0.01)
    outcomes = []
    n = 0
    while "completed" not in outcomes[-3:]:
        key = f"k{n}"
        outcomes.append(await cancelled_at(n * CANCEL_STEP, cache.get_or_load(key, load)))
        assert await cache.get_or_load(key, load) == f"{key}#1", outcomes
        n += 1
        assert n < 200, "get_or_load never completed"
    assert "cancelled" in outcomes and cache.in_flight == 0
    assert set(load.calls.values()) == {1}
    reader = AsyncRedisLayer(slow_link.url, prefix=prefix)
    found = await reader.get_many([f"k{m}" for m in range(n)])
    assert found == {f"k{m}": f"k{m}#1" for m in range(n)}
    await reader.close()
    await cache.close()


async def test_a_read_cancelled_anywhere_changes_nothing(
    slow_link: Proxy, redis_url: str, prefix: str
) -> None:
    """``get``, ``get_many`` and ``get_or_load_many`` cancelled at any point (a copy into
    L1 may be under way): L1 never ends up holding what Redis does not, nothing stays in
    flight."""
    l1 = InMemoryLayer(max_size=1000)
    cache = AsyncMultilayerCache(
        [l1, AsyncRedisLayer(slow_link.url, prefix=prefix)], [LayerPolicy(promote="always"), None]
    )
    direct = AsyncRedisLayer(redis_url, prefix=prefix)
    keys = [f"k{n}" for n in range(16)]
    await direct.set_many({key: f"{key}:value" for key in keys})

    async def never_called(keys: list[str]) -> dict[str, str]:
        raise AssertionError(f"{keys} are all in Redis")

    for n, key in enumerate(keys):
        reads = (
            lambda key=key: cache.get(key),
            lambda key=key: cache.get_many([key, "absent"]),
            lambda key=key: cache.get_or_load_many([key], never_called),
        )
        read = reads[n % 3]()
        await cancelled_at(n * CANCEL_STEP, read)
    await asyncio.sleep(0.06)
    # A load whose callers were all cancelled goes on in its task: each ends (within
    # 0.3 s on a machine at load 12; one round trip through the proxy when idle).
    assert await cache.wait_idle(5) and cache.in_flight == 0
    assert all(l1.get(key) in (None, f"{key}:value") for key in keys)
    assert await cache.get_many(keys) == {key: f"{key}:value" for key in keys}
    assert cache.in_flight == 0
    await direct.close()
    await cache.close()


@pytest.mark.parametrize("write", ["set", "delete"])
async def test_a_write_cancelled_anywhere_leaves_l1_agreeing_with_redis(
    slow_link: Proxy, redis_url: str, prefix: str, write: str
) -> None:
    l1 = InMemoryLayer(max_size=1000)
    cache = AsyncMultilayerCache([l1, AsyncRedisLayer(slow_link.url, prefix=prefix)])
    direct = AsyncRedisLayer(redis_url, prefix=prefix)
    disagreements = []
    for n in range(12):  # past the 40 ms a write takes
        key = f"k{n}"
        await cache.set(key, "old")
        operation = cache.set(key, "new") if write == "set" else cache.delete(key)
        outcome = await cancelled_at(n * CANCEL_STEP, operation)
        # A write that was sent lands in its own time (40 ms away, later on a busy machine):
        # the two must agree once it has, and a wrong L1 entry would stay wrong.
        deadline = time.monotonic() + 1.0
        while (in_redis := await direct.get(key)) != await cache.get(key):
            if time.monotonic() > deadline:
                disagreements.append((n, outcome, l1.get(key), in_redis))
                break
            await asyncio.sleep(0.02)
        if disagreements:
            break  # one is enough to show it
    await direct.close()
    await cache.close()
    assert disagreements == []


async def test_a_flush_cancelled_anywhere_loses_no_write(slow_link: Proxy, prefix: str) -> None:
    policy = LayerPolicy(write=WriteBehind(max_delay=60, batch_size=100_000))
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=1000), AsyncRedisLayer(slow_link.url, prefix=prefix)],
        [None, policy],
    )
    acknowledged: dict[str, int] = {}
    for n in range(15):
        batch = {f"k{n}:{m}": m for m in range(20)}
        await cache.set_many(batch)
        acknowledged.update(batch)
        await cancelled_at(n * CANCEL_STEP, cache.flush(5))
    start = time.monotonic()
    assert await cache.flush(5)
    assert time.monotonic() - start < 5
    reader = AsyncRedisLayer(slow_link.url, prefix=prefix)
    assert await reader.get_many(list(acknowledged)) == acknowledged
    await reader.close()
    await cache.close()
