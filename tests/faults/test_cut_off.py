"""One application instance cut off from Redis while the others are not (a network
partition, a dead sidecar, a firewall rule): instance A reaches Redis through a
``network_faults.Proxy`` that the test cuts, instance B connects directly.

What A's callers see: no exception from a read while the loader can answer, each read
bounded by one timeout ("hang") or failing at once ("reset"); A's breaker opens, A's L1 and
loader serve. B sees nothing at all: no read error, its breaker closed, its L2 hits go on.
A's write-through writes raise ``LayerError``; a delete that missed Redis is not undone
when the link is back. After ``restore`` A's L2 hits resume within 2 s, and what B wrote
meanwhile reaches A's callers once A's L1 copy expires (B cannot tell A without a
backplane: A's L1 TTL bounds it). A's write-behind queue delivers every write it
acknowledged during the cut."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
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
CUT_SECONDS = 0.5
CALL_BOUND_SECONDS = 1.5  # one read timeout (0.5 s), room for a loaded machine


def load(key: str) -> str:
    return expected(key)


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[Proxy]:
    with Proxy(redis_server.port) as built:
        yield built


def instance(url: str, prefix: str, l1_ttl: float | None = None) -> MultilayerCache:
    return MultilayerCache(
        [InMemoryLayer(max_size=20, name="l1"), RedisLayer(url, prefix=prefix, name="l2")],
        [LayerPolicy(ttl=l1_ttl), None],
    )


class Readers:
    """Threads reading random keys through ``cache`` until ``join``; what went wrong."""

    def __init__(self, cache: MultilayerCache, threads: int = 3) -> None:
        self.cache, self.stop = cache, threading.Event()
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


@pytest.mark.parametrize("mode", ["hang", "reset"])
def test_one_instance_cut_off_rides_it_out_and_the_other_sees_nothing(
    redis_server: RedisServer, proxy: Proxy, prefix: str, mode: str
) -> None:
    a = instance(proxy.url, prefix)
    b = instance(redis_server.url, prefix)
    a_l2, b_l2 = a.layers[1], b.layers[1]
    readers_a, readers_b = Readers(a), Readers(b)
    try:
        assert wait_until(lambda: a_l2.stats().hits > 100 and b_l2.stats().hits > 100, 10)
        proxy.cut(mode)
        assert wait_until(lambda: l2_breaker(a).opened >= 1, 5) is not None
        b_hits = b_l2.stats().hits
        time.sleep(CUT_SECONDS)
        assert b_l2.stats().hits > b_hits  # B goes on reading Redis
        a_hits = a_l2.stats().hits
        proxy.restore()
        resumed = wait_until(lambda: a_l2.stats().hits > a_hits, RESUME_SECONDS)
        assert resumed is not None, f"A: no L2 hit within {RESUME_SECONDS} s of the restore"
    finally:
        readers_a.join()
        readers_b.join()
    for readers in (readers_a, readers_b):
        assert readers.failures == [] and readers.wrong == []
        assert readers.slowest < CALL_BOUND_SECONDS, readers.slowest
    assert a.stats().read_errors["l2"] > 0
    # B is not cut off: its breaker never opened. (A read of B's may still time out when
    # the machine is overloaded: a couple at most, against A's hundreds.)
    assert b.stats().read_errors["l2"] <= 2 and l2_breaker(b).opened == 0
    assert l2_breaker(b).state is BreakerState.CLOSED
    a.close()
    b.close()


async def test_one_asyncio_instance_cut_off_rides_it_out_and_the_other_sees_nothing(
    redis_server: RedisServer, proxy: Proxy, prefix: str
) -> None:
    async def load_async(key: str) -> str:
        return expected(key)

    a_l2 = AsyncRedisLayer(proxy.url, prefix=prefix, name="l2")
    b_l2 = AsyncRedisLayer(redis_server.url, prefix=prefix, name="l2")
    a = AsyncMultilayerCache([InMemoryLayer(max_size=20, name="l1"), a_l2])
    b = AsyncMultilayerCache([InMemoryLayer(max_size=20, name="l1"), b_l2])
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def read(cache: AsyncMultilayerCache, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(KEYS)
            try:
                if await cache.get_or_load(key, load_async) != expected(key):
                    failures.append(AssertionError(key))
            except Exception as error:
                failures.append(error)
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(read(cache, n)) for n in range(50) for cache in (a, b)]
    try:
        assert await eventually(lambda: a_l2.stats().hits > 100, 10) is not None
        proxy.cut()
        assert await eventually(lambda: l2_breaker(a).opened >= 1, 5) is not None
        b_hits = b_l2.stats().hits
        await asyncio.sleep(CUT_SECONDS)
        assert b_l2.stats().hits > b_hits
        a_hits = a_l2.stats().hits
        proxy.restore()
        assert await eventually(lambda: a_l2.stats().hits > a_hits, RESUME_SECONDS) is not None
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert failures == []
    assert a.stats().read_errors["l2"] > 0 and b.stats().read_errors["l2"] <= 2
    assert l2_breaker(b).opened == 0
    await a.close()
    await b.close()


def test_writes_of_the_cut_off_instance_fail_and_the_other_s_reach_it_after_its_l1_ttl(
    redis_server: RedisServer, proxy: Proxy, prefix: str
) -> None:
    l1_ttl = 0.5
    a = instance(proxy.url, prefix, l1_ttl=l1_ttl)
    b = instance(redis_server.url, prefix)
    for key in ("held", "set", "deleted"):
        b.set(key, "old")
        assert a.get(key) == "old"
        assert a.get(key) == "old"  # seen twice: copied into A's L1
    assert a.layers[0].get("held") == "old"
    proxy.cut("reset")
    with pytest.raises(LayerError, match=r"^l2: "):
        a.set("set", "from A")
    with pytest.raises(LayerError, match=r"^l2: .*will not read it from l2"):
        a.delete("deleted")
    b.set("held", "from B")  # A's L1 still holds "old": nobody can tell A
    assert a.get("held") == "old"
    assert a.get("set") is None and a.get("deleted") is None  # L1 dropped them; L2 cut off
    proxy.restore()
    assert wait_until(lambda: a.get("set") == "old", RESUME_SECONDS) is not None
    # The delete that missed Redis is not undone: the next read sends it again.
    assert a.get("deleted") is None
    reader = RedisLayer(redis_server.url, prefix=prefix)
    assert reader.get("deleted") is None
    reader.close()
    # B's write reaches A's callers once A's L1 copy expires, within its TTL.
    assert wait_until(lambda: a.get("held") == "from B", l1_ttl + RESUME_SECONDS) is not None
    a.close()
    b.close()


def test_write_behind_of_the_cut_off_instance_delivers_what_it_acknowledged(
    redis_server: RedisServer, proxy: Proxy, prefix: str, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.jsonl"
    policy = LayerPolicy(write=WriteBehind(dead_letter=dead, max_delay=0.02))
    a = MultilayerCache(
        [InMemoryLayer(max_size=1000), RedisLayer(proxy.url, prefix=prefix)], [None, policy]
    )
    a.set("before", 0)
    assert a.flush(5)
    proxy.cut()
    acknowledged = {f"k{n}": n for n in range(300)}
    for key, value in acknowledged.items():
        a.set(key, value)
    a.delete("before")
    time.sleep(CUT_SECONDS)
    assert a.stats().write_queues["redis"].depth + a.stats().write_queues["redis"].in_flight > 0
    proxy.restore()
    assert a.flush(timeout=10)
    stats = a.stats().write_queues["redis"]
    a.close()
    assert stats.dead_lettered == 0 and not dead.exists()
    reader = RedisLayer(redis_server.url, prefix=prefix)
    assert reader.get_many([*acknowledged, "before"]) == acknowledged
    reader.close()


def test_a_late_write_behind_delivery_does_not_overwrite_a_newer_value(
    redis_server: RedisServer, proxy: Proxy, prefix: str
) -> None:
    policy = LayerPolicy(write=WriteBehind(max_delay=0.02))
    a = MultilayerCache(
        [InMemoryLayer(max_size=1000), RedisLayer(proxy.url, prefix=prefix)], [None, policy]
    )
    b = instance(redis_server.url, prefix)
    proxy.cut()
    a.set("k", "older, from A")  # acknowledged first
    time.sleep(0.05)
    b.set("k", "newer, from B")  # written to Redis later
    proxy.restore()
    assert a.flush(timeout=10)
    reader = RedisLayer(redis_server.url, prefix=prefix)
    try:
        assert reader.get("k") == "newer, from B"
    finally:
        reader.close()
        a.close()
        b.close()


def test_contains_and_remaining_ttl_answer_from_what_is_reachable(
    redis_server: RedisServer, proxy: Proxy, prefix: str
) -> None:
    """Cut off, ``contains`` and ``remaining_ttl`` answer from L1 (a key only in Redis is
    not found there: a counted read error, not an exception)."""
    a = instance(proxy.url, prefix)
    a.set("in both", "v", ttl=60)
    a.layers[1].set("only in redis", "v", ttl=60)
    proxy.cut("reset")
    assert a.contains("in both") is True and a.contains("only in redis") is False
    assert 0 < a.remaining_ttl("in both") <= 60
    assert a.remaining_ttl("only in redis") is None
    assert a.stats().read_errors["l2"] >= 2
    proxy.restore()
    assert wait_until(lambda: a.contains("only in redis"), RESUME_SECONDS) is not None
    assert 0 < a.remaining_ttl("only in redis") <= 60
    a.close()


def test_a_clear_that_missed_redis_is_not_undone_when_the_link_is_back(
    redis_server: RedisServer, proxy: Proxy, prefix: str
) -> None:
    a = instance(proxy.url, prefix)
    a.set_many({"k1": "old", "k2": "old"})
    proxy.cut("reset")
    with pytest.raises(LayerError, match=r"^l2: "):
        a.clear()
    proxy.restore()
    time.sleep(1.2)  # the breaker's longest cool-down: reads reach Redis again
    try:
        assert a.get("k1") is None and a.get_many(["k1", "k2"]) == {}
    finally:
        a.close()
