"""Races between a reader that copies a value up into L1 and a writer of the same key.

The probe: a reader (``get``, which promotes what it finds in L2) and a writer (``set`` or
``delete``) started together on a fresh key held only by L2, thousands of times, on real
threads (or asyncio tasks) over a real Redis L2; afterwards L1 must never hold a value
that L2 does not (an older one, or one L2 no longer has)."""

from __future__ import annotations

import asyncio
import inspect
import random
import threading
import time
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
)
from multilayercache.core import plans

TRIALS = 2_000
OLD, NEW = "old", "new"
ABSENT = object()
ALWAYS = [LayerPolicy(promote="always"), None]  # every read below L1 copies up


def stale_in_l1(l1: Any, l2_value: Any, key: str) -> bool:
    """Whether L1 answers for ``key`` with something L2 does not hold."""
    held = l1.get(key, ABSENT)
    return held is not ABSENT and held != l2_value


# ---------------------------------------------------------------------------- the probe
def probe_threads(cache: Any, l1: Any, l2: Any, write: str, trials: int, prefix: str) -> int:
    """Stale L1 entries left by ``trials`` races of a reader thread against a writer
    thread (``write``: ``"set"`` or ``"delete"``), each on a fresh key L2 alone holds."""
    start, done = threading.Barrier(3), threading.Barrier(3)
    keys = [f"{prefix}race:{n}" for n in range(trials)]
    rng = random.Random(7)
    delays = [(rng.random() * 2e-4, rng.random() * 2e-4) for _ in range(trials)]
    failures: list[BaseException] = []

    def spin(seconds: float) -> None:  # a sleep this short would take far longer
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    def reader() -> None:
        for key, (delay, _) in zip(keys, delays, strict=True):
            start.wait()
            try:
                spin(delay)
                cache.get(key)
            except BaseException as error:
                failures.append(error)
            done.wait()

    def writer() -> None:
        for key, (_, delay) in zip(keys, delays, strict=True):
            start.wait()
            try:
                spin(delay)
                cache.set(key, NEW) if write == "set" else cache.delete(key)
            except BaseException as error:
                failures.append(error)
            done.wait()

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    stale = 0
    for key in keys:
        l2.set(key, OLD)  # L2 alone holds it: a read promotes it
        start.wait()
        done.wait()
        stale += stale_in_l1(l1, l2.get(key, ABSENT), key)
    for thread in threads:
        thread.join()
    assert failures == []
    return stale


async def probe_tasks(cache: Any, l1: Any, l2: Any, write: str, trials: int, prefix: str) -> int:
    """``probe_threads`` with a reader task and a writer task on one event loop."""
    rng = random.Random(7)
    stale = 0
    for n in range(trials):
        key = f"{prefix}race:{n}"
        await l2.set(key, OLD)

        async def read(key: str = key) -> None:
            await cache.get(key)

        async def change(key: str = key) -> None:
            await (cache.set(key, NEW) if write == "set" else cache.delete(key))

        pair = [read(), change()]
        if rng.random() < 0.5:  # which one the loop starts first
            pair.reverse()
        await asyncio.gather(*pair)
        stale += stale_in_l1(l1, await l2.get(key, ABSENT), key)
    return stale


@pytest.mark.parametrize("write", ["set", "delete"])
def test_the_promotion_race_probe_leaves_no_stale_l1_entry_threads(
    write: str, redis_url: str, prefix: str
) -> None:
    l1 = InMemoryLayer(max_size=3 * TRIALS)
    l2 = RedisLayer(redis_url, prefix=prefix)
    with MultilayerCache([l1, l2], ALWAYS) as cache:
        stale = probe_threads(cache, l1, l2, write, TRIALS, "")
    print(f"reader vs {write}, threads: {stale} of {TRIALS} trials left L1 stale")  # with -s
    assert stale == 0, f"reader vs {write}, threads: {stale} of {TRIALS} trials left L1 stale"


@pytest.mark.parametrize("write", ["set", "delete"])
async def test_the_promotion_race_probe_leaves_no_stale_l1_entry_tasks(
    write: str, redis_url: str, prefix: str
) -> None:
    l1 = InMemoryLayer(max_size=3 * TRIALS)
    l2 = AsyncRedisLayer(redis_url, prefix=prefix)
    async with AsyncMultilayerCache([l1, l2], ALWAYS) as cache:
        stale = await probe_tasks(cache, l1, l2, write, TRIALS, "")
    print(f"reader vs {write}, tasks: {stale} of {TRIALS} trials left L1 stale")  # with -s
    assert stale == 0, f"reader vs {write}, tasks: {stale} of {TRIALS} trials left L1 stale"


# ---------------------------------------------------------------------------- each interleaving
class Gate:
    """One pause: the first call that meets it (from ``thread`` only, if given) stops after
    the real call ran, until ``release``."""

    def __init__(self, thread: int | None = None) -> None:
        self.thread = thread
        self.reached = threading.Event()
        self.go = threading.Event()
        self.armed = True

    def meets(self) -> bool:
        if not self.armed or (self.thread is not None and threading.get_ident() != self.thread):
            return False
        self.armed = False
        self.reached.set()
        return True

    def release(self) -> None:
        self.go.set()


class Pausing:
    """A real layer whose chosen methods stop at a ``Gate`` after they ran (sync methods
    block their thread; coroutine methods wait without blocking the loop). Everything
    else is the layer's own."""

    def __init__(self, layer: Any) -> None:
        self._layer = layer
        self._gates: dict[str, Gate] = {}

    def pause(self, method: str, thread: int | None = None) -> Gate:
        gate = self._gates[method] = Gate(thread)
        return gate

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._layer, name)
        gate = self._gates.get(name)
        if gate is None:
            return attribute
        if inspect.iscoroutinefunction(attribute):

            async def paused_call(*args: Any, **kwargs: Any) -> Any:
                result = await attribute(*args, **kwargs)
                if gate.meets():
                    while not gate.go.is_set():
                        await asyncio.sleep(0.001)
                return result

            return paused_call

        def paused(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if gate.meets():
                assert gate.go.wait(5), "the test never released the gate"
            return result

        return paused


WRITE_POLICIES = {
    "write-through": [LayerPolicy(promote="always"), None],
    "write-behind": [LayerPolicy(promote="always"), LayerPolicy(write=WriteBehind())],
}


class Threads:
    """L1 + L2 (real layers, pausable) under a sync manager, and a thread to run a call."""

    def __init__(self, redis_url: str, prefix: str, write: str) -> None:
        self.l1 = Pausing(InMemoryLayer(max_size=100, name="l1"))
        self.l2 = Pausing(RedisLayer(redis_url, prefix=prefix, name="l2"))
        self.cache = MultilayerCache([self.l1, self.l2], WRITE_POLICIES[write])

    def start(self, call: Any) -> tuple[threading.Thread, list[Any]]:
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(call()))
        thread.start()
        return thread, result

    def l2_value(self, key: str) -> Any:
        self.cache.flush(5)  # what a write-behind L2 will hold
        return self.l2._layer.get(key, ABSENT)

    def warm(self, write: str) -> None:
        """A first read of another key: its tag marks are loaded, and a write-through
        cache's reads below L1 take the path without a plan from then on."""
        self.l2._layer.set("warm", OLD)
        assert self.cache.get("warm") == OLD
        direct = plans.direct_tier(self.cache._state, 1)
        assert (direct is not None) == (write == "write-through")


@pytest.fixture(params=[(policy, warm) for policy in WRITE_POLICIES for warm in (False, True)])
def threads(request: pytest.FixtureRequest, redis_url: str, prefix: str) -> Any:
    # (a test may ask for one policy: ``indirect=True`` with its name)
    policy, warm = request.param if isinstance(request.param, tuple) else (request.param, False)
    setup = Threads(redis_url, prefix, policy)
    if warm:
        setup.warm(policy)
    yield setup
    setup.cache.close()


def change(cache: Any, write: str, key: str) -> Any:
    return cache.set(key, NEW) if write == "set" else cache.delete(key)


def settled(l1: Any, l2_value: Any, write: str, key: str) -> None:
    """L1 holds nothing, or what L2 holds; after a set, L2 holds NEW."""
    if write == "set":
        assert l2_value == NEW
    assert not stale_in_l1(l1, l2_value, key), (l1.get(key, ABSENT), l2_value)


@pytest.mark.parametrize("write", ["set", "delete"])
def test_a_read_below_l1_that_a_write_overtook_copies_nothing_up(threads: Threads, write: str):
    """Interleaving 2: the reader read OLD in L2; the whole write ran before it went on."""
    threads.l2._layer.set("k", OLD)
    gate = threads.l2.pause("get_entry")
    reader, got = threads.start(lambda: threads.cache.get("k"))
    assert gate.reached.wait(5)
    change(threads.cache, write, "k")
    gate.release()
    reader.join()
    assert got == [OLD]  # it read before the write: it may answer with OLD, not keep it
    settled(threads.l1, threads.l2_value("k"), write, "k")
    assert threads.l1.get("k", ABSENT) == (NEW if write == "set" else ABSENT)


@pytest.mark.parametrize("write", ["set", "delete"])
def test_a_copy_that_a_write_overtook_is_deleted_again(threads: Threads, write: str):
    """Interleaving 3: the reader's copy of OLD is in L1 and the write ran entirely before
    the reader checked again: the reader deletes its copy (and L1 loses NEW with it: a
    miss, which L2 answers)."""
    threads.l2._layer.set("k", OLD)
    reader_thread: list[int] = []
    started = threading.Event()

    def read() -> Any:
        reader_thread.append(threading.get_ident())
        started.wait(5)
        return threads.cache.get("k")

    reader, got = threads.start(read)
    while not reader_thread:
        pass
    gate = threads.l1.pause("set_entry", thread=reader_thread[0])  # its copy, not the write
    started.set()
    assert gate.reached.wait(5)
    assert threads.l1._layer.get("k", ABSENT) == OLD  # the copy landed
    change(threads.cache, write, "k")
    gate.release()
    reader.join()
    assert got == [OLD]
    assert threads.l1.get("k", ABSENT) is ABSENT
    settled(threads.l1, threads.l2_value("k"), write, "k")
    expected = NEW if write == "set" else None
    assert threads.cache.get("k") == expected


@pytest.mark.parametrize("write", ["set", "delete"])
def test_a_load_that_a_write_overtook_is_not_cached(threads: Threads, write: str):
    """A load began (the database still had OLD), then a write of the key ran: the loaded
    value is returned to its caller but written nowhere."""
    loading, finish = threading.Event(), threading.Event()

    def load(key: str) -> str:
        loading.set()
        assert finish.wait(5)
        return OLD

    reader, got = threads.start(lambda: threads.cache.get_or_load("k", load))
    assert loading.wait(5)
    change(threads.cache, write, "k")
    finish.set()
    reader.join()
    assert got == [OLD]
    l2_value = threads.l2_value("k")
    assert l2_value == (NEW if write == "set" else ABSENT)
    settled(threads.l1, l2_value, write, "k")


@pytest.mark.parametrize("threads", ["write-through"], indirect=True)
def test_a_load_landing_in_l2_just_after_a_set_leaves_l1_with_the_set(threads: Threads):
    """The window no generation closes: the set wrote L2 and has not bumped yet when the
    load (begun before the set) writes L2 over it. L2 then holds the loaded value (the
    look-aside cache's stale set, documented), but L1 holds the set's, never older."""
    loading, finish = threading.Event(), threading.Event()

    def load(key: str) -> str:
        loading.set()
        assert finish.wait(5)
        return OLD

    reader, got = threads.start(lambda: threads.cache.get_or_load("k", load))
    assert loading.wait(5)
    writer_ids: list[int] = []
    go = threading.Event()

    def write() -> None:
        writer_ids.append(threading.get_ident())
        go.wait(5)
        threads.cache.set("k", NEW)

    writer, _ = threads.start(write)
    while not writer_ids:
        pass
    gate = threads.l2.pause("set_entry", thread=writer_ids[0])
    go.set()
    assert gate.reached.wait(5)  # the set is in L2, not bumped yet
    finish.set()
    reader.join()
    gate.release()
    writer.join()
    assert got == [OLD]
    assert threads.l1.get("k", ABSENT) == NEW
    assert threads.l2_value("k") == OLD  # the stale set: see plans.write_loaded


class Tasks:
    """The asyncio twin of ``Threads``."""

    def __init__(self, redis_url: str, prefix: str, write: str) -> None:
        self.l1 = Pausing(InMemoryLayer(max_size=100, name="l1"))
        self.l2 = Pausing(AsyncRedisLayer(redis_url, prefix=prefix, name="l2"))
        self.cache = AsyncMultilayerCache([self.l1, self.l2], WRITE_POLICIES[write])

    async def l2_value(self, key: str) -> Any:
        await self.cache.flush(5)
        return await self.l2._layer.get(key, ABSENT)

    async def __aenter__(self) -> Tasks:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.cache.close()


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("policy", list(WRITE_POLICIES))
@pytest.mark.parametrize("write", ["set", "delete"])
async def test_a_task_whose_read_a_write_overtook_copies_nothing_up(
    write: str, policy: str, warm: bool, redis_url: str, prefix: str
):
    async with Tasks(redis_url, prefix, policy) as tasks:
        if warm:  # marks loaded: a write-through cache reads below L1 without a plan
            await tasks.l2._layer.set("warm", OLD)
            assert await tasks.cache.get("warm") == OLD
            direct = plans.direct_tier(tasks.cache._state, 1)
            assert (direct is not None) == (policy == "write-through")
        await tasks.l2._layer.set("k", OLD)
        gate = tasks.l2.pause("get_entry")
        reader = asyncio.create_task(tasks.cache.get("k"))
        while not gate.reached.is_set():
            await asyncio.sleep(0.001)
        await (tasks.cache.set("k", NEW) if write == "set" else tasks.cache.delete("k"))
        gate.release()
        assert await reader == OLD
        settled(tasks.l1, await tasks.l2_value("k"), write, "k")
        assert tasks.l1.get("k", ABSENT) == (NEW if write == "set" else ABSENT)


@pytest.mark.parametrize("policy", list(WRITE_POLICIES))
@pytest.mark.parametrize("write", ["set", "delete"])
async def test_a_task_whose_load_a_write_overtook_caches_nothing(
    write: str, policy: str, redis_url: str, prefix: str
):
    loading, finish = asyncio.Event(), asyncio.Event()

    async def load(key: str) -> str:
        loading.set()
        await finish.wait()
        return OLD

    async with Tasks(redis_url, prefix, policy) as tasks:
        reader = asyncio.create_task(tasks.cache.get_or_load("k", load))
        await asyncio.wait_for(loading.wait(), 5)
        await (tasks.cache.set("k", NEW) if write == "set" else tasks.cache.delete("k"))
        finish.set()
        assert await reader == OLD
        l2_value = await tasks.l2_value("k")
        assert l2_value == (NEW if write == "set" else ABSENT)
        settled(tasks.l1, l2_value, write, "k")
