"""A persistence writer that hangs (a database stuck in a lock wait, a dead NFS mount): every
acknowledged write is still delivered or dead-lettered, ``close(timeout)`` returns on time,
a batch past ``batch_timeout`` is counted and logged, and the other keys keep flowing. Sync
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
    AsyncWriterLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    WriteBehind,
    WriterLayer,
    read_dead_letters,
)

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

    def hang(items: dict[Any, Any]) -> bool:  # the first batch only
        # Under a lock: the two senders may ask at once, and both hung would leave no
        # sender awake to notice the timeout (nor any to send the other keys).
        with deciding:
            first, stuck["first"] = stuck["first"], False
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
