"""Write-behind through the managers, one spec for sync and asyncio (x compiled and pure L1),
over a real Redis: acknowledged after L1, queued for L2 (and for a persistence writer),
read back while queued, flushed, closed, dead-lettered, never lost."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from multilayercache import (
    AsyncWriterLayer,
    LayerPolicy,
    QueueFull,
    RetryPolicy,
    SerializationError,
    WriteBehind,
    WriterLayer,
    read_dead_letters,
    replay_into_redis,
)
from multilayercache.tools.servers import free_port

from support import wait_until

# Never due by age in a test: a write stays queued until a flush (or a full batch).
HELD = {"max_delay": 60.0}


def behind(tmp_path: Path, **options: Any) -> LayerPolicy:
    options = {**HELD, "dead_letter": tmp_path / "dead.jsonl", **options}
    return LayerPolicy(write=WriteBehind(**options))


class Store:
    """A persistence writer for the tests: a dict, and every batch it was handed."""

    def __init__(
        self, fail_with: BaseException | None = None, gate: threading.Event | None = None
    ) -> None:
        self.gate = gate or threading.Event()
        if gate is None:
            self.gate.set()
        self.rows: dict[Any, Any] = {}
        self.batches: list[dict[Any, Any]] = []
        self.deleted: list[list[Any]] = []
        self.fail_with = fail_with
        self.lock = threading.Lock()

    def write(self, items: dict[Any, Any]) -> None:
        assert self.gate.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        with self.lock:
            self.batches.append(dict(items))
            self.rows.update(items)

    def delete(self, keys: list[Any]) -> None:
        with self.lock:
            self.deleted.append(list(keys))
            for key in keys:
                self.rows.pop(key, None)

    def layer(self, harness: Any) -> Any:
        if not harness.is_async:
            return WriterLayer(self.write, self.delete, name="db")

        async def write(items: dict[Any, Any]) -> None:
            await asyncio.to_thread(self.write, items)

        async def delete(keys: list[Any]) -> None:
            self.delete(keys)

        return AsyncWriterLayer(write, delete, name="db")


def test_set_is_acknowledged_before_redis_and_flush_delivers(
    harness, raw_redis, prefix, tmp_path
) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [None, behind(tmp_path)])
    cache.set("k", {"v": 1})
    assert l1.get("k") == {"v": 1}  # the faster layer holds it at once
    assert raw_redis.get(prefix + "k") is None  # Redis not yet: queued
    assert cache.stats().write_queues["l2"].depth == 1
    assert cache.flush(timeout=5) is True
    assert l2.get("k") == {"v": 1}
    stats = cache.stats().write_queues["l2"]
    assert (stats.depth, stats.delivered, stats.batches, stats.dead_lettered) == (0, 1, 1, 0)


def test_reads_see_the_queued_value_not_the_older_one_in_redis(harness, tmp_path) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [None, behind(tmp_path)])
    cache.set("k", "old")
    assert cache.flush(timeout=5)
    cache.set("k", "new")  # queued; Redis still says "old"
    l1.delete("k")  # as if L1 had evicted it
    assert l2.get("k") == "old"
    assert cache.get("k") == "new"
    assert cache.get_many(["k"]) == {"k": "new"}
    assert cache.contains("k") and 0 < cache.remaining_ttl("k") <= 3600
    assert cache.get_or_load("k", harness.loader(lambda key: "loaded")) == "new"
    cache.delete("k")  # a queued delete: a miss, though Redis still has the value
    l1.delete("k")
    assert l2.get("k") == "old"
    assert cache.get("k", "gone") == "gone" and cache.get_many(["k"]) == {}
    assert not cache.contains("k") and cache.remaining_ttl("k") is None
    assert cache.get_or_load("k", harness.loader(lambda key: "loaded")) == "loaded"
    assert cache.flush(timeout=5)
    assert l2.get("k") == "loaded"  # order per key kept: delete, then the loaded value


def test_queued_values_keep_their_declared_type(harness, tmp_path) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [None, behind(tmp_path)], value_type=tuple[int, str])
    cache.set("k", (1, "a"))
    l1.delete("k")
    queued = cache.get("k")
    assert queued == (1, "a") and type(queued) is tuple
    assert cache.flush(timeout=5)
    l1.delete("k")
    assert cache.get("k") == (1, "a") and type(cache.get("k")) is tuple


def test_a_value_redis_cannot_encode_raises_and_is_written_nowhere(harness, tmp_path) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [None, behind(tmp_path)])
    with pytest.raises(SerializationError):
        cache.set("k", object())
    assert "k" not in l1 and cache.stats().write_queues["l2"].depth == 0


def test_a_full_queue_refuses_the_write_and_l1_stays_consistent(harness, tmp_path) -> None:
    store = Store(gate=threading.Event())  # the writer hangs until the gate opens
    l1 = harness.l1()
    # One batch at a time: "a" hangs in flight while "b" waits in the queue.
    policy = behind(tmp_path, max_items=2, batch_size=1, when_full="raise", concurrency=1)
    cache = harness.cache([l1, store.layer(harness)], [None, policy])
    cache.set("a", 1)
    cache.set("b", 1)
    with pytest.raises(QueueFull, match="full"):
        cache.set("c", 1)
    assert "c" not in l1  # not acknowledged: in no layer
    cache.set("b", 2)  # replaces its queued write: no new slot needed
    assert cache.stats().write_queues["db"].rejected == 1
    store.gate.set()
    assert cache.flush(timeout=5)
    assert store.rows == {"a": 1, "b": 2}


def test_block_waits_for_room_then_succeeds(harness, tmp_path) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache(
        [l1, l2], [None, behind(tmp_path, max_items=10, batch_size=5, block_timeout=5.0)]
    )
    for index in range(200):
        cache.set(f"k{index}", index)  # the queue is full many times over: set() waits
    assert cache.flush(timeout=10)
    assert l2.get_many([f"k{index}" for index in range(200)]) == {
        f"k{index}": index for index in range(200)
    }
    assert cache.stats().write_queues["l2"].rejected == 0


def test_a_persistence_writer_gets_batches_latest_value_per_key(harness, tmp_path) -> None:
    store = Store()
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache(
        [l1, l2, store.layer(harness)],
        [None, behind(tmp_path), behind(tmp_path, batch_size=100)],
    )
    for index in range(1000):
        cache.set(f"row{index % 250}", index)  # each row written 4 times
    cache.delete("row0")
    assert cache.flush(timeout=10)
    expected = {f"row{index}": 750 + index for index in range(1, 250)}
    assert store.rows == expected  # latest wins; row0 deleted after its writes
    assert all(len(batch) <= 100 for batch in store.batches)
    assert store.deleted and "row0" in store.deleted[-1]
    assert l2.get("row7") == 757 and l2.get("row0") is None
    queue = cache.stats().write_queues["db"]
    assert queue.puts == 1001 and queue.delivered + queue.coalesced == queue.puts


def test_a_writer_that_fails_for_good_dead_letters_the_writes(harness, tmp_path) -> None:
    store = Store(fail_with=ValueError("constraint violated"))
    l1 = harness.l1()
    dead_path = tmp_path / "db-dead.jsonl"
    cache = harness.cache(
        [l1, store.layer(harness)], [None, behind(tmp_path, dead_letter=dead_path)]
    )
    cache.set_many({"a": {"n": 1}, "b": [1, 2]})
    assert cache.flush(timeout=5)
    records = {record.key: record for record in read_dead_letters(dead_path)}
    assert records["a"].value == {"n": 1} and records["a"].encoding == "json"
    assert records["b"].error_type == "ValueError" and records["b"].attempts == 1
    assert cache.stats().write_queues["db"].dead_lettered == 2
    assert l1.get("a") == {"n": 1}  # the cache itself still serves it


def test_redis_down_for_good_dead_letters_bytes_that_replay(
    harness, raw_redis, redis_url, prefix, tmp_path
) -> None:
    dead_path = tmp_path / "dead.jsonl"
    l1 = harness.l1()
    unreachable = harness.l2(url=f"redis://127.0.0.1:{free_port()}/0")
    retry = RetryPolicy(attempts=3, base=0.01, cap=0.02, budget=2.0)
    cache = harness.cache(
        [l1, unreachable], [None, behind(tmp_path, dead_letter=dead_path, retry=retry)]
    )
    cache.set("k", (1, 2))
    cache.set("gone", 1)
    cache.delete("gone")
    assert cache.flush(timeout=10)
    records = list(read_dead_letters(dead_path))
    assert sorted((record.key, record.op) for record in records) == [
        ("gone", "delete"),
        ("k", "set"),
    ]
    assert all(record.attempts == 3 for record in records)
    report = replay_into_redis(dead_path, raw_redis, layer="l2")
    assert report.replayed == 2 and report.failed == 0
    assert harness.l2().get("k") == [1, 2]  # the encoded envelope, byte for byte


def test_close_delivers_what_is_queued(harness, raw_redis, prefix, tmp_path) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [None, behind(tmp_path)])
    cache.set_many({f"k{index}": index for index in range(50)})
    cache.close()
    assert raw_redis.exists(*[prefix + f"k{index}" for index in range(50)]) == 50
    with pytest.raises(RuntimeError, match="closed"):
        cache.set("late", 1)


def test_close_gives_what_it_cannot_deliver_to_the_dead_letter(harness, tmp_path) -> None:
    dead_path = tmp_path / "dead.jsonl"
    l1 = harness.l1()
    unreachable = harness.l2(url=f"redis://127.0.0.1:{free_port()}/0")
    cache = harness.cache(
        [l1, unreachable], [None, behind(tmp_path, dead_letter=dead_path, close_timeout=0.5)]
    )
    cache.set_many({"a": 1, "b": 2})
    cache.close()  # retried for 0.5 s, then given up: kept, not dropped
    assert sorted(record.key for record in read_dead_letters(dead_path)) == ["a", "b"]
    assert "closed before" in next(read_dead_letters(dead_path)).error_message


def test_write_behind_needs_a_faster_layer_and_a_capable_layer(harness) -> None:
    class Plain:
        name = "plain"

        def get(self, key: Any, default: Any = None) -> Any: ...
        def set(self, key: Any, value: Any, ttl: Any = None) -> None: ...
        def delete(self, key: Any) -> bool: ...
        def get_many(self, keys: Any) -> dict: ...
        def set_many(self, mapping: Any, ttl: Any = None) -> None: ...
        def stats(self) -> Any: ...

    if harness.is_async:
        pytest.skip("the checks are made at construction, alike for both kinds")
    with pytest.raises(ValueError, match="layer 0"):
        harness.cache([harness.l1()], [LayerPolicy(write=WriteBehind())])
    with pytest.raises(TypeError, match="lacks encode_write"):
        harness.cache([harness.l1(), Plain()], [None, LayerPolicy(write=WriteBehind())])
    with pytest.raises(TypeError, match="WriteBehind"):
        LayerPolicy(write="behind")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="close_timeout"):
        WriteBehind(close_timeout=-1)


def test_the_fast_set_and_the_planned_set_store_the_same(harness, tmp_path) -> None:
    # set() of one key skips the plan when no layer must be waited for; set_many() runs
    # the plan: both must leave the same entries (lifetimes, stale windows) in each layer.
    l1, l2 = harness.l1(), harness.l2()
    write = behind(tmp_path).write
    policies = [LayerPolicy(ttl=30, stale_ttl=5), LayerPolicy(ttl=300, stale_ttl=60, write=write)]
    cache = harness.cache([l1, l2], policies)
    apart = {}  # seconds between the two writes of a pair, at most: their lifetimes' offset
    for fast, planned, ttl in (("fast", "planned", None), ("fast-ttl", "planned-ttl", 10)):
        start = time.monotonic()
        cache.set(fast, [1, 2], ttl=ttl)
        cache.set_many({planned: [1, 2]}, ttl=ttl)
        apart[fast, planned] = time.monotonic() - start
    assert cache.flush(timeout=5)
    for (fast, planned), seconds in apart.items():
        for layer in (l1, l2):
            start = time.monotonic()
            one, other = layer.get_entry(fast), layer.get_entry(planned)
            read_apart = time.monotonic() - start
            assert one.value == other.value == [1, 2]
            # The planned write came later, by no more than ``seconds`` (a loaded machine
            # can stretch that past any fixed bound); Redis keeps milliseconds. What is
            # left of each lifetime is told when it is read, and ``other`` is read up to
            # ``read_apart`` later (0.11 s seen at load 6): that much less may be left.
            slack = seconds + 0.02
            assert -0.02 - read_apart <= other.fresh_for - one.fresh_for <= slack
            assert -0.02 - read_apart <= other.gone_in - one.gone_in <= slack


def test_a_full_batch_is_sent_without_waiting_for_max_delay(
    harness, raw_redis, prefix, tmp_path
) -> None:
    # The senders sleep until the oldest write is max_delay old (60 s here); a set() that
    # completes a batch wakes them (``WriteQueue.offer``: WAKE), so it is sent at once.
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [None, behind(tmp_path, batch_size=5)])
    for index in range(4):
        cache.set(f"k{index}", index)

    def delivered() -> int:
        if harness.loop is not None:  # the asyncio senders run while the loop does
            harness.loop.run_until_complete(asyncio.sleep(0.01))
        return sum(raw_redis.exists(f"{prefix}k{index}") for index in range(5))

    assert wait_until(lambda: delivered() > 0, 0.3) is None  # four: not a batch yet
    cache.set("k4", 4)
    assert wait_until(lambda: delivered() == 5, 5.0) is not None
    assert cache.stats().write_queues["l2"].batches == 1


def test_close_ends_the_senders_even_when_nothing_is_queued(redis_url, prefix, tmp_path) -> None:
    # A closed cache must not leave its sender threads waiting forever on an idle queue.

    from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer

    layer = RedisLayer(redis_url, prefix=prefix)
    cache = MultilayerCache([InMemoryLayer(max_size=10), layer], [None, behind(tmp_path)])
    cache.set("k", 1)
    assert cache.flush(timeout=5)  # delivered: the worker now sleeps on an idle queue
    threads = list(cache._driver.writers[1]._senders)
    assert len(threads) == 2 and all(thread.is_alive() for thread in threads)  # concurrency=2
    cache.close()
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
