"""A server that stops answering for a while and then goes on (SIGSTOP / SIGCONT: a long
command, a fork for a snapshot, a swap storm, a paused VM), and a slow one (a link with
latency, through ``network_faults.Proxy``).

What the caller sees: no exception from a read while the loader can answer; every read
returns within a bound (one read timeout, 0.5 s, before the breaker opens; at once after);
a write-through write raises the layer's ``LayerError`` within that bound. What is counted:
``read_errors``, the breaker opening. What happens after SIGCONT: L2 hits resume within
2 s, the writes that timed out may land after all (and no reader is told otherwise by
L1), and write-behind delivers every acknowledged write, none dead-lettered. A slow server
within the timeout costs time, not correctness: no reply goes to the wrong caller."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerError,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
)
from multilayercache.core.breaker import BreakerState
from multilayercache.tools.servers import RedisServer

from network_faults import Proxy
from support import RESUME_SECONDS, eventually, expected, l2_breaker, wait_until

KEYS = [f"k{n}" for n in range(200)]
PAUSE_SECONDS = 1.0
CALL_BOUND_SECONDS = 1.5
"""The longest any call may take while the server is stopped: one read timeout (0.5 s)
and a retry within its 0.25 s budget, with room for a loaded machine."""


def load(key: str) -> str:
    return expected(key)


async def load_async(key: str) -> str:
    return expected(key)


class Readers:
    """Threads that ``get_or_load`` random keys without pause, recording what is wrong:
    an exception, a wrong value, or a call slower than ``CALL_BOUND_SECONDS``."""

    def __init__(self, cache: MultilayerCache, threads: int = 6) -> None:
        self.cache = cache
        self.stop = threading.Event()
        self.failures: list[BaseException] = []
        self.wrong: list[tuple[str, Any]] = []
        self.slowest = 0.0
        self.threads = [threading.Thread(target=self._read, args=(n,)) for n in range(threads)]
        for thread in self.threads:
            thread.start()

    def _read(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            key = rng.choice(KEYS)
            start = time.monotonic()
            try:
                value = self.cache.get_or_load(key, load)
            except Exception as error:
                self.failures.append(error)
            else:
                if value != expected(key):
                    self.wrong.append((key, value))
            self.slowest = max(self.slowest, time.monotonic() - start)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_threads_ride_out_a_stopped_server_and_l2_hits_resume(
    doomed_server: RedisServer, prefix: str
) -> None:
    l2 = RedisLayer(doomed_server.url, prefix=prefix, name="l2")
    cache = MultilayerCache([InMemoryLayer(max_size=20, name="l1"), l2])
    readers = Readers(cache)
    try:
        assert wait_until(lambda: l2.stats().hits > 100, 10) is not None
        doomed_server.pause()
        assert wait_until(lambda: l2_breaker(cache).opened >= 1, 5) is not None
        time.sleep(PAUSE_SECONDS)  # the readers live on L1 and the loader meanwhile
        hits_while_stopped = l2.stats().hits
        doomed_server.resume()
        resumed = wait_until(lambda: l2.stats().hits > hits_while_stopped, RESUME_SECONDS)
        assert resumed is not None, f"no L2 hit within {RESUME_SECONDS} s of SIGCONT"
    finally:
        readers.join()
        cache.close()
    assert readers.failures == [] and readers.wrong == []
    assert readers.slowest < CALL_BOUND_SECONDS, readers.slowest
    assert cache.stats().read_errors["l2"] > 0


async def test_tasks_ride_out_a_stopped_server_and_l2_hits_resume(
    doomed_server: RedisServer, prefix: str
) -> None:
    l2 = AsyncRedisLayer(doomed_server.url, prefix=prefix, name="l2")
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=20, name="l1"), l2])
    failures: list[BaseException] = []
    wrong: list[tuple[str, Any]] = []
    slowest = [0.0]
    stop = asyncio.Event()

    async def read(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(KEYS)
            start = time.monotonic()
            try:
                value = await cache.get_or_load(key, load_async)
            except Exception as error:
                failures.append(error)
            else:
                if value != expected(key):
                    wrong.append((key, value))
            slowest[0] = max(slowest[0], time.monotonic() - start)
            await asyncio.sleep(0)  # an L1 hit never yields: let the other tasks in

    readers = [asyncio.create_task(read(seed)) for seed in range(100)]
    try:
        assert await eventually(lambda: l2.stats().hits > 100, 10) is not None
        doomed_server.pause()
        assert await eventually(lambda: l2_breaker(cache).opened >= 1, 5) is not None
        await asyncio.sleep(PAUSE_SECONDS)
        hits_while_stopped = l2.stats().hits
        doomed_server.resume()
        resumed = await eventually(lambda: l2.stats().hits > hits_while_stopped, RESUME_SECONDS)
        assert resumed is not None, f"no L2 hit within {RESUME_SECONDS} s of SIGCONT"
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await cache.close()
    assert failures == [] and wrong == []
    assert slowest[0] < CALL_BOUND_SECONDS, slowest[0]
    assert cache.stats().read_errors["l2"] > 0


def test_writes_to_a_stopped_server_raise_in_time_and_may_land_after_sigcont(
    doomed_server: RedisServer, prefix: str
) -> None:
    """A write that timed out was sent: the server runs it when it goes on. The caller was
    told it failed (``LayerError``), L1 dropped the key, and afterwards this cache reads
    what Redis holds, whichever way it went."""
    l1 = InMemoryLayer(max_size=100, name="l1")
    cache = MultilayerCache([l1, RedisLayer(doomed_server.url, prefix=prefix, name="l2")])
    cache.set("set", "old")
    cache.set("deleted", "old")
    doomed_server.pause()
    for write in (lambda: cache.set("set", "new"), lambda: cache.delete("deleted")):
        start = time.monotonic()
        with pytest.raises(LayerError, match=r"^l2: "):
            write()
        assert time.monotonic() - start < CALL_BOUND_SECONDS
    assert l1.get("set") is None and l1.get("deleted") is None
    doomed_server.resume()
    other = RedisLayer(doomed_server.url, prefix=prefix)  # another instance's view
    # The SET went out on a pooled connection before the timeout: the server runs it when
    # it goes on. The DEL needed a new connection, whose handshake timed out: never sent.
    assert wait_until(lambda: other.get("set") == "new", 2) is not None
    assert other.get("deleted") == "old"
    # Whichever way each went, this cache agrees with Redis once its breaker lets it read
    # again: the new value, and the key deleted (a read sends the delete again first).
    assert wait_until(lambda: cache.get("set") == "new", RESUME_SECONDS) is not None
    assert wait_until(lambda: cache.get("deleted") is None, RESUME_SECONDS) is not None
    assert other.get("deleted") is None and l1.get("deleted") is None
    other.close()
    cache.close()


def test_write_behind_delivers_every_write_acknowledged_while_the_server_was_stopped(
    doomed_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.jsonl"
    policy = LayerPolicy(write=WriteBehind(dead_letter=dead, max_delay=0.05))
    cache = MultilayerCache(
        [InMemoryLayer(max_size=10_000), RedisLayer(doomed_server.url, prefix=prefix)],
        [None, policy],
    )
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    slowest = [0.0]

    def write(writer: int) -> None:
        n = 0
        while not stop.is_set():
            key = f"w{writer}:{n % 50}"
            start = time.monotonic()
            cache.set(key, n)
            slowest[0] = max(slowest[0], time.monotonic() - start)
            with lock:
                acknowledged[key] = n
            n += 1
            time.sleep(0.001)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    try:
        time.sleep(0.2)
        doomed_server.pause()
        time.sleep(PAUSE_SECONDS)
        lag_while_stopped = cache.stats().write_queues["redis"].lag
        doomed_server.resume()
        time.sleep(0.2)
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    assert cache.flush(timeout=15)
    stats = cache.stats().write_queues["redis"]
    cache.close()
    assert not dead.exists() and stats.dead_lettered == 0
    assert lag_while_stopped > PAUSE_SECONDS / 2  # it did meet the stopped server
    reader = RedisLayer(doomed_server.url, prefix=prefix)
    found = reader.get_many(list(acknowledged))
    reader.close()
    assert {key: found.get(key) for key in acknowledged} == acknowledged
    # set() waits only when the queue is full or lags by max_lag (2 s): never longer than
    # its block_timeout (5 s) plus the pause.
    assert slowest[0] < 5.0, slowest[0]


@pytest.mark.parametrize("latency", [0.05, 0.4], ids=["within-timeout", "past-timeout"])
def test_a_slow_link_costs_time_never_a_wrong_answer(
    redis_server: RedisServer, prefix: str, latency: float
) -> None:
    """Every chunk of bytes between the cache and Redis waits ``latency`` each way. Within
    the read timeout (0.5 s) L2 answers, slowly; past it, each read times out, counts as a
    miss, and the breaker opens. Either way no caller gets another key's value: a reply
    that arrives after its caller gave up is never read by the next caller on that
    connection."""
    with Proxy(redis_server.port) as proxy:
        l2 = RedisLayer(proxy.url, prefix=prefix, name="l2")
        writer = RedisLayer(redis_server.url, prefix=prefix)  # fills L2 directly
        writer.set_many({key: expected(key) for key in KEYS})
        cache = MultilayerCache([InMemoryLayer(max_size=10, name="l1"), l2])
        proxy.latency = latency
        readers = Readers(cache, threads=8)
        time.sleep(1.2)
        readers.join()
        stats = cache.stats()
        cache.close()
        writer.close()
    assert readers.failures == [] and readers.wrong == []
    assert readers.slowest < CALL_BOUND_SECONDS + 2 * latency, readers.slowest
    if latency < 0.25:
        assert stats.read_errors["l2"] == 0 and l2.stats().hits > 0
        assert stats.breakers["l2"].state is BreakerState.CLOSED
    else:
        assert stats.read_errors["l2"] > 0 and stats.breakers["l2"].opened >= 1
