"""A persistence writer that hangs (a database stuck in a lock wait, a dead NFS mount), or a
Redis connection that never answers: every acknowledged write is still delivered or
dead-lettered, ``close(timeout)`` returns on time, a batch past ``batch_timeout`` is counted
and logged, and the other keys keep flowing, even when every sender is the hung one. Sync
(threads) and asyncio (tasks), through real managers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    AsyncWriterLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
    WriterLayer,
    read_dead_letters,
)
from multilayercache.tools.servers import RedisServer

from network_faults import Proxy
from support import Blocking, wait_until


class Database:
    """A persistence writer whose ``write`` hangs while ``hang(keys)`` says so, until
    ``release``; it records what it stored."""

    def __init__(self, hang: Any) -> None:
        self.hang = hang
        self.released = threading.Event()
        self.rows: dict[Any, Any] = {}
        self.lock = threading.Lock()

    def write(self, items: dict[Any, Any]) -> None:
        if self.hang(items):
            self.released.wait()
        with self.lock:
            self.rows.update(items)

    async def write_async(self, items: dict[Any, Any]) -> None:
        if self.hang(items):
            while not self.released.is_set():  # cancellable: asyncio stops waiting for it
                await asyncio.sleep(0.01)
        with self.lock:
            self.rows.update(items)


@pytest.fixture(params=["sync", "asyncio"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def loop(kind: str) -> Iterator[asyncio.AbstractEventLoop | None]:
    loop = asyncio.new_event_loop() if kind == "asyncio" else None
    yield loop
    if loop is not None:
        # As asyncio.run ends: what a closed cache abandoned (a sender hung for good) is
        # cancelled here, not destroyed pending in whichever later test collects it.
        async def cancel_what_is_left() -> None:
            left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

        loop.run_until_complete(cancel_what_is_left())
        loop.close()


def build(database: Database, loop: Any, folder: Path, **options: Any) -> Any:
    policy = LayerPolicy(
        # No lag bound: a hung writer makes the queue lag, and the tests want the writes
        # queued, not pushed back (which a busy machine would reach within the test).
        write=WriteBehind(
            dead_letter=folder / "dead.jsonl", max_delay=0.01, max_lag=None, **options
        )
    )
    if loop is None:
        writer: Any = WriterLayer(database.write, name="db")
        return MultilayerCache([InMemoryLayer(max_size=10_000), writer], [None, policy])
    writer = AsyncWriterLayer(database.write_async, name="db")
    return Blocking(
        AsyncMultilayerCache([InMemoryLayer(max_size=10_000), writer], [None, policy]), loop
    )


def test_a_writer_that_hangs_for_good_loses_nothing_and_close_returns_on_time(
    loop: Any, tmp_path: Path
) -> None:
    database = Database(hang=lambda items: True)
    cache = build(database, loop, tmp_path, batch_size=100)
    try:
        for index in range(1000):
            cache.set(f"k{index % 600}", index)  # 600 keys, some rewritten
        start = time.monotonic()
        cache.close(timeout=1)
        took = time.monotonic() - start
    finally:
        database.released.set()  # let the hung threads go
    assert took < 2.0
    dead = {record.key: record for record in read_dead_letters(tmp_path / "dead.jsonl")}
    assert set(dead) == {f"k{index}" for index in range(600)}
    for key, record in dead.items():  # each key's latest acknowledged value, none older
        index = int(key[1:])
        assert record.value == (index + 600 if index + 600 < 1000 else index)
    stats = cache.stats().write_queues["db"]
    assert stats.depth == 0 and stats.dead_lettered == 600 and stats.delivered == 0


def test_a_batch_past_its_timeout_is_counted_logged_and_the_rest_flows(
    loop: Any, kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = {"first": True}
    deciding = threading.Lock()

    def hang(items: dict[Any, Any]) -> bool:  # the batch of the first slow writes only
        # Under a lock: the two senders may ask at once, and only one batch hangs here
        # (every sender hung: see test_a_sender_hung_with_no_other_is_reported...). The
        # one holding slow0's first write, not the first to get here: the other sender
        # may take the next batch (other0..9) and call write first.
        with deciding:
            first = stuck["first"] and "slow0" in items
            if first:
                stuck["first"] = False
        return first

    database = Database(hang)
    cache = build(database, loop, tmp_path, batch_size=10, batch_timeout=0.2)
    try:
        with caplog.at_level(logging.ERROR, logger="multilayercache.writeback"):
            for index in range(10):
                cache.set(f"slow{index}", index)  # the first batch: it hangs
            for index in range(200):
                cache.set(f"other{index}", index)
            cache.set("slow0", "newer")  # must not overtake the hung write of slow0
            others = {f"other{index}": index for index in range(200)}

            def delivered() -> bool:
                if loop is not None:  # the senders are tasks: give them the loop
                    loop.run_until_complete(asyncio.sleep(0.05))
                return all(database.rows.get(key) == value for key, value in others.items())

            def noticed() -> bool:
                # counted, then logged by the worker: the log line may trail the counter
                counted = cache.stats().write_queues["db"].timeouts == 1
                return counted and "more than 0.2 s" in caplog.text

            assert wait_until(delivered, 5) is not None  # the other keys went on
            assert wait_until(lambda: delivered() and noticed(), 5) is not None
        database.released.set()
        assert cache.flush(timeout=5)
        assert database.rows["slow0"] == "newer"  # per-key order held
        assert all(database.rows[f"slow{index}"] == index for index in range(1, 10))
    finally:
        database.released.set()
        cache.close(timeout=1)


# ----------------------------------------------------------------------------- every sender hung
# One sender (concurrency=1) stuck in a Redis call that never returns: its connection hangs
# (a firewall dropped its state) and the client has no socket timeout. No sender is left to
# notice its timeout, so a writer must: a later write, a flush, or a writer waiting for room.
# The asyncio worker cancels the attempt itself; the same scenario runs on it.
HUNG_BATCH_TIMEOUT = 0.3
SLOW = [f"slow{index}" for index in range(5)]
OTHERS = [f"other{index}" for index in range(5)]


def hung_redis_cache(url: str, prefix: str, loop: Any, folder: Path, **options: Any) -> Any:
    policy = LayerPolicy(
        write=WriteBehind(
            concurrency=1,
            batch_timeout=HUNG_BATCH_TIMEOUT,
            max_delay=0.01,
            max_lag=None,
            dead_letter=folder / "dead.jsonl",
            **options,
        )
    )
    layer_options = {"prefix": prefix, "name": "redis", "socket_timeout": None}
    if loop is None:
        l2: Any = RedisLayer(url, **layer_options)
        return MultilayerCache([InMemoryLayer(max_size=1000), l2], [None, policy])
    l2 = AsyncRedisLayer(url, **layer_options)
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=1000), l2], [None, policy])
    return Blocking(cache, loop)


def settle(loop: Any, seconds: float) -> None:
    """Let ``seconds`` pass, with the event loop running (the asyncio senders are tasks)."""
    if loop is None:
        time.sleep(seconds)
    else:
        loop.run_until_complete(asyncio.sleep(seconds))


@pytest.mark.parametrize("noticed_by", ["a later write", "a flush", "a writer waiting for room"])
def test_a_sender_hung_with_no_other_is_reported_and_replaced_by_a_writer(
    noticed_by: str,
    loop: Any,
    redis_server: RedisServer,
    prefix: str,
    raw_redis: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    room = noticed_by == "a writer waiting for room"
    # max_items: the hung batch and OTHERS fill the queue; one more write must wait for room.
    full = len(SLOW) + len(OTHERS)
    bounds = {"max_items": full, "batch_size": full, "block_timeout": 10} if room else {}
    with Proxy(redis_server.port) as proxy:
        cache = hung_redis_cache(proxy.url, prefix, loop, tmp_path, **bounds)
        try:
            cache.set("warm", 0)
            assert cache.flush(timeout=5)
            assert proxy.connections == 1  # the sender's: the one about to hang
            proxy.cut_open()
            with caplog.at_level(logging.ERROR, logger="multilayercache.writeback"):
                for index, key in enumerate(SLOW):
                    cache.set(key, index)

                def sending() -> bool:
                    settle(loop, 0.01)
                    return cache.stats().write_queues["redis"].in_flight > 0

                assert wait_until(sending, 5) is not None
                if noticed_by == "a later write":
                    settle(loop, HUNG_BATCH_TIMEOUT + 0.2)  # past it: the next write looks
                for index, key in enumerate(OTHERS):
                    cache.set(key, index)
                start = time.monotonic()
                if noticed_by == "a flush":
                    # Sync: the hung thread holds its batch, so the flush times out. Asyncio:
                    # the attempt is cancelled and retried on a new connection: all lands.
                    flushed = cache.flush(timeout=HUNG_BATCH_TIMEOUT + 1.0)
                    assert flushed is (loop is not None)
                elif room:
                    cache.set("one more", "waited")  # returns once the replacement made room
                    assert time.monotonic() - start < HUNG_BATCH_TIMEOUT + 3.0

                def others_delivered() -> bool:
                    settle(loop, 0.01)
                    return raw_redis.exists(*[prefix + key for key in OTHERS]) == len(OTHERS)

                assert wait_until(others_delivered, 5) is not None
                assert cache.stats().write_queues["redis"].timeouts >= 1
                # counted, then logged by the worker: the log line may trail the counter
                assert wait_until(lambda: "more than 0.3 s" in caplog.text, 2) is not None
            if loop is None:  # the hang is real: the thread still waits on its connection
                assert raw_redis.exists(*[prefix + key for key in SLOW]) == 0
            proxy.restore()  # the stuck connection is reset: its batch fails and is retried
            assert cache.flush(timeout=5)
            start = time.monotonic()
            cache.close(timeout=2)
            assert time.monotonic() - start < 2.5
            stats = cache.stats().write_queues["redis"]
            assert stats.depth == 0 and stats.dead_lettered == 0
        finally:
            proxy.restore()
            cache.close(timeout=1)
    direct = RedisLayer(redis_server.url, prefix=prefix)
    try:
        for index, key in enumerate(SLOW):  # the hung batch's keys, delivered after all
            assert direct.get(key) == index
        for index, key in enumerate(OTHERS):
            assert direct.get(key) == index
        if room:
            assert direct.get("one more") == "waited"
    finally:
        direct.close()
    dead = tmp_path / "dead.jsonl"
    assert not dead.exists() or list(read_dead_letters(dead)) == []  # none given up on


def test_a_layer_that_hangs_every_call_costs_at_most_twice_concurrency_threads(
    redis_server: RedisServer,
    prefix: str,
    raw_redis: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every connection hangs, new ones too (the server's link is down; no socket timeout):
    a sender started in place of a hung one hangs as well, so they stop at one in place of
    each (sync: threads cannot be stopped; asyncio cancels its attempts instead)."""

    def senders() -> int:
        return sum(t.name == "multilayercache-writeback-redis" for t in threading.enumerate())

    with Proxy(redis_server.port) as proxy:
        cache = hung_redis_cache(proxy.url, prefix, None, tmp_path)
        try:
            cache.set("warm", -1)
            assert cache.flush(timeout=5)
            running = senders()
            proxy.cut()
            written = 0
            with caplog.at_level(logging.ERROR, logger="multilayercache.writeback"):
                until = time.monotonic() + 8 * HUNG_BATCH_TIMEOUT
                while time.monotonic() < until:  # a write every 50 ms: each one looks
                    cache.set(f"k{written}", written)
                    written += 1
                    time.sleep(0.05)
                assert senders() - running <= 1  # concurrency=1: one in place of the hung one
                assert cache.stats().write_queues["redis"].timeouts == 2
                assert "every write-behind sender hangs" in caplog.text
            proxy.restore()  # the hung connections are reset: their batches are retried
            assert cache.flush(timeout=10)
            assert raw_redis.exists(*[f"{prefix}k{index}" for index in range(written)]) == written
            start = time.monotonic()
            cache.close(timeout=2)
            assert time.monotonic() - start < 2.5
            assert cache.stats().write_queues["redis"].dead_lettered == 0
        finally:
            proxy.restore()
            cache.close(timeout=1)
