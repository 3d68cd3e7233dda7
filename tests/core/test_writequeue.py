"""The write-behind queue: latest write per key wins, per-key order holds across in-flight
and retried batches, batches go out on size, age, flush or close, the bounds hold and
nothing is dropped, transient failures are retried and the rest dead-lettered (never a
superseded write), flush marks end under constant writing. A Hypothesis state machine
checks every put against a model: delivered or dead-lettered, never both, never lost."""

from __future__ import annotations

import doctest
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from multilayercache.core import writequeue as writequeue_module
from multilayercache.core.backoff import RetryPolicy
from multilayercache.core.errors import LayerError, LayerUnavailableError, SerializationError
from multilayercache.core.writepolicy import (
    DEFAULT_WRITE_RETRY,
    QueueFull,
    WriteBehind,
    WriteQueueClosed,
    WriteThrough,
)
from multilayercache.core.writequeue import QUEUED, REFUSED, WAKE, Batch, DeadWrite, WriteQueue

DOWN = LayerError("redis: connection refused")  # transient
BAD = SerializationError("cannot encode")  # permanent


def queue(rng_seed: int = 0, **options: Any) -> WriteQueue:
    return WriteQueue(WriteBehind(**options), rng=random.Random(rng_seed))


def keys(batch: Batch | None) -> list[Any]:
    assert batch is not None
    return [write.key for write in batch.writes]


def test_the_docstring_examples_run() -> None:
    assert doctest.testmod(writequeue_module).failed == 0


# ----------------------------------------------------------------------------- options
def test_the_defaults() -> None:
    options = WriteBehind()
    assert (options.max_items, options.max_bytes, options.batch_size) == (100_000, 2**26, 500)
    assert (options.max_delay, options.when_full, options.block_timeout) == (0.05, "block", 1.0)
    assert options.retry is DEFAULT_WRITE_RETRY
    assert options.dead_letter == "multilayercache-dead-letters.jsonl"
    assert WriteThrough() == WriteThrough()


def test_the_default_retry_rides_out_a_five_second_outage() -> None:
    # An open breaker fails each attempt at once: the batch keeps being retried, about
    # every half second once the delays reach their 1 s cap, and is sent again within a
    # second of the server's return.
    wq = queue(rng_seed=3, batch_size=1)
    wq.put("k", "set", b"v", 1, now=0.0)
    batch = wq.take(0.0)
    assert batch is not None
    now, delays = 0.0, []
    while now < 5.0:
        delay = wq.failed(batch, LayerUnavailableError("breaker open"), now)
        assert delay is not None and 0 <= delay <= 1.0
        delays.append(delay)
        now += delay
    assert 8 <= len(delays) <= 60
    assert max(delays[-5:]) <= 1.0
    wq.done(batch)
    assert wq.idle and wq.delivered == 1 and wq.dead_lettered == 0


def test_the_default_retry_gives_up_after_its_budget() -> None:
    wq = queue(batch_size=1)
    wq.put("k", "set", b"v", 1, now=0.0)
    batch = wq.take(0.0)
    assert batch is not None
    now = 0.0
    while (delay := wq.failed(batch, DOWN, now)) is not None:
        now += max(delay, 0.001)
    assert 59.0 <= now <= 61.0
    assert [(dead.key, dead.error) for dead in batch.dead] == [("k", DOWN)]
    assert batch.dead[0].attempts == batch.attempts > 60


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_items": 0}, "max_items"),
        ({"max_bytes": -1}, "max_bytes"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"max_items": 10, "batch_size": 11}, "never fill"),
        ({"max_delay": -0.1}, "max_delay"),
        ({"max_delay": float("nan")}, "max_delay"),
        ({"when_full": "drop"}, "when_full"),
        ({"block_timeout": float("inf")}, "block_timeout"),
    ],
)
def test_bad_options_are_refused_clearly(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WriteBehind(**options)


def test_bad_retry_and_dead_letter_are_refused() -> None:
    with pytest.raises(TypeError, match="retry"):
        WriteBehind(retry=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dead_letter"):
        WriteBehind(dead_letter=42)  # type: ignore[arg-type]

    class Sink:
        def append(self, records: Any) -> None: ...

    assert WriteBehind(dead_letter=None).dead_letter is None
    WriteBehind(dead_letter=Sink())  # anything with append(records)
    WriteBehind(block_timeout=None, when_full="raise")


def test_a_bad_op_is_refused() -> None:
    with pytest.raises(ValueError, match="op"):
        queue().put("k", "upsert", b"v", 1, now=0.0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- dedup, order
def test_the_latest_write_of_a_key_wins_and_keeps_its_place() -> None:
    wq = queue(batch_size=10)
    wq.put("a", "set", b"a1", 2, now=0.0)
    wq.put("b", "set", b"b1", 2, now=0.01)
    wq.put("a", "set", b"a2", 3, now=0.02)
    wq.put("b", "delete", None, 0, now=0.03)  # a delete replaces a set too
    assert (wq.depth, wq.bytes, wq.coalesced, wq.puts) == (2, 3, 2, 4)
    assert wq.pending("a") == ("set", b"a2") and wq.pending("b") == ("delete", None)
    assert wq.pending("c") is None
    # "a" was first: it is still the oldest, and its age counts from its first write.
    assert wq.due(0.049) is False and wq.due(0.05) is True
    batch = wq.take(0.05)
    assert [(w.key, w.op, w.payload) for w in batch] == [("a", "set", b"a2"), ("b", "delete", None)]


def test_a_write_of_an_in_flight_key_waits_behind_it() -> None:
    wq = queue(batch_size=10)
    wq.put("k", "set", b"1", 1, now=0.0)
    wq.put("other", "set", b"x", 1, now=0.0)
    first = wq.take(0.1)
    assert keys(first) == ["k", "other"]
    assert wq.pending("k") == ("set", b"1")  # in flight: reads still see it
    wq.put("k", "set", b"2", 1, now=0.2)
    wq.put("k", "set", b"3", 1, now=0.3)  # coalesces with the waiting one
    wq.put("new", "set", b"n", 1, now=0.3)
    assert wq.pending("k") == ("set", b"3")
    assert keys(wq.take(1.0)) == ["new"]  # "k" is not taken while its write is in flight
    assert wq.take(1.0) is None
    assert wq.depth == 4 and wq.in_flight == 3
    wq.done(first)
    assert wq.pending("k") == ("set", b"3") and wq.pending("other") is None
    second = wq.take(1.0)
    assert [(w.key, w.payload) for w in second] == [("k", b"3")]
    wq.done(second)
    assert wq.pending("k") is None


def test_a_released_write_goes_to_the_front() -> None:
    wq = queue(batch_size=1)
    wq.put("hot", "set", b"1", 1, now=0.0)
    batch = wq.take(0.0)
    wq.put("hot", "set", b"2", 1, now=0.01)
    wq.put("cold", "set", b"c", 1, now=0.02)
    wq.done(batch)
    assert keys(wq.take(0.1)) == ["hot"]


def test_take_is_oldest_first_up_to_the_batch_size() -> None:
    wq = queue(batch_size=3)
    for index in range(7):
        wq.put(index, "set", b"v", 1, now=index * 0.001)
    assert [keys(wq.take(1.0)) for _ in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert wq.take(1.0) is None and wq.batches == 3 and wq.batches_in_flight == 3


# ----------------------------------------------------------------------------- when
def test_due_on_size_or_age() -> None:
    wq = queue(batch_size=3, max_delay=0.05)
    assert not wq.due(100.0) and wq.next_due_in(100.0) is None
    wq.put("a", "set", b"", 0, now=1.0)
    wq.put("b", "set", b"", 0, now=1.01)
    assert not wq.due(1.02)
    assert wq.next_due_in(1.02) == pytest.approx(0.03)
    assert wq.due(1.05) and wq.next_due_in(1.05) == 0.0
    wq.put("c", "set", b"", 0, now=1.02)
    assert wq.due(1.02)  # a full batch goes at once


def test_a_zero_delay_sends_every_write_at_once() -> None:
    wq = queue(max_delay=0)
    wq.put("a", "set", b"", 0, now=5.0)
    assert wq.due(5.0)


def test_a_flush_mark_sends_at_once_and_is_reached_when_its_writes_finish() -> None:
    wq = queue(batch_size=100, max_delay=10.0)
    wq.put("a", "set", b"1", 1, now=0.0)
    assert not wq.due(0.0)
    mark = wq.mark()
    assert wq.due(0.0) and not wq.reached(mark)
    batch = wq.take(0.0)
    wq.put("b", "set", b"2", 1, now=0.0)  # after the mark: not waited for
    assert not wq.reached(mark)
    wq.done(batch)
    assert wq.reached(mark) and not wq.idle
    assert not wq.due(0.0)  # the mark is reached: back to batching
    assert wq.reached(wq.mark() - 1)


def test_a_flush_mark_ends_while_a_hot_key_is_rewritten_without_pause() -> None:
    wq = queue(batch_size=10)
    wq.put("hot", "set", b"0", 1, now=0.0)
    wq.put("cold", "set", b"c", 1, now=0.0)
    mark = wq.mark()
    for round_ in range(1, 5):
        batch = wq.take(0.0)
        wq.put("hot", "set", str(round_).encode(), 1, now=0.0)  # waits behind the batch
        wq.done(batch)
        assert wq.reached(mark)  # the writes before the mark are out; newer ones are not
    assert not wq.idle


def test_a_flush_mark_waits_for_the_write_that_supersedes_one_of_its_writes() -> None:
    wq = queue(batch_size=10)
    wq.put("k", "set", b"old", 1, now=0.0)
    mark = wq.mark()
    batch = wq.take(0.0)
    wq.put("k", "set", b"new", 1, now=0.0)
    assert wq.failed(batch, BAD, 0.0) is None and batch.dead == []
    assert not wq.reached(mark)  # "old" is gone, but "new" (its replacement) is not out
    assert wq.due(0.0)
    wq.done(wq.take(0.0))
    assert wq.reached(mark) and wq.idle


def test_close_refuses_writes_and_sends_the_rest_at_once() -> None:
    wq = queue(batch_size=100, max_delay=10.0)
    wq.put("a", "set", b"1", 1, now=0.0)
    wq.close()
    wq.close()
    assert wq.closed and wq.due(0.0)
    with pytest.raises(WriteQueueClosed):
        wq.put("b", "set", b"2", 1, now=0.0)
    batch = wq.take(0.0)
    assert wq.empty and not wq.idle
    wq.done(batch)
    assert wq.idle


# ----------------------------------------------------------------------------- bounds
def test_the_item_bound_counts_every_write_held_and_raises_queue_full() -> None:
    wq = queue(max_items=3, batch_size=1)
    wq.put("a", "set", b"", 0, now=0.0)
    in_flight = wq.take(0.0)
    wq.put("a", "set", b"", 0, now=0.0)  # waits behind "a": a second slot
    wq.put("b", "set", b"", 0, now=0.0)
    assert wq.depth == 3 and wq.full(0) and wq.full(0, "c")
    with pytest.raises(QueueFull) as raised:
        wq.put("c", "set", b"", 0, now=0.0)
    assert raised.value.depth == 3 and wq.rejected == 1 and wq.pending("c") is None
    # A write that replaces a pending one needs no slot: hot keys are still accepted.
    assert not wq.full(0, "a") and not wq.full(0, "b")
    wq.put("a", "delete", None, 0, now=0.0)
    wq.put("b", "set", b"b2", 0, now=0.0)
    wq.done(in_flight)  # frees a slot
    assert not wq.full(0, "c")
    wq.put("c", "set", b"", 0, now=0.0)
    assert wq.stats().dropped == 0


def test_the_byte_bound() -> None:
    wq = queue(max_bytes=10, batch_size=1)
    wq.put("a", "set", b"", 6, now=0.0)
    assert wq.full(5) and not wq.full(4)
    with pytest.raises(QueueFull, match="bytes"):
        wq.put("b", "set", b"", 5, now=0.0)
    wq.put("b", "set", b"", 4, now=0.0)
    wq.put("a", "set", b"a2", 6, now=0.0)  # replaces "a": its old 6 bytes do not count
    assert wq.bytes == 10
    with pytest.raises(QueueFull):
        wq.put("a", "set", b"a3", 7, now=0.0)
    assert wq.bytes == 10 and wq.pending("a") == ("set", b"a2")  # nothing changed


def test_a_write_bigger_than_the_bound_is_taken_only_alone() -> None:
    wq = queue(max_bytes=10)
    wq.put("huge", "set", b"", 50, now=0.0)  # else it could never be written
    assert wq.bytes == 50 and wq.full(1)
    with pytest.raises(QueueFull):
        wq.put("small", "set", b"", 1, now=0.0)
    wq.done(wq.take(0.0))
    wq.put("small", "set", b"", 1, now=0.0)


# ----------------------------------------------------------------------------- outcomes
def test_transient_failures_are_retried_with_full_jitter_then_given_up() -> None:
    policy = RetryPolicy(attempts=4, base=0.1, cap=0.3, budget=None)
    wq = queue(rng_seed=7, retry=policy)
    wq.put("k", "set", b"v", 1, now=0.0)
    batch = wq.take(0.0)
    delays = [wq.failed(batch, DOWN, 0.0) for _ in range(3)]
    assert all(d is not None and 0 <= d <= policy.ceiling(n) for n, d in enumerate(delays))
    assert batch.attempts == 4 and wq.retries == 3 and not batch.finished
    assert wq.pending("k") == ("set", b"v")  # still in flight: reads still see it
    assert wq.failed(batch, DOWN, 0.0) is None
    assert batch.finished and batch.dead == [DeadWrite("k", "set", b"v", 1, DOWN, 4)]
    assert wq.pending("k") is None and wq.dead_lettered == 1 and wq.depth == 0
    wq.settle(batch)
    assert wq.idle
    # The same seed gives the same delays: nothing random but the injected rng.
    again = queue(rng_seed=7, retry=policy)
    again.put("k", "set", b"v", 1, now=0.0)
    batch = again.take(0.0)
    assert [again.failed(batch, DOWN, 0.0) for _ in range(3)] == delays


def test_a_permanent_error_gives_up_at_once() -> None:
    wq = queue()
    wq.put("a", "set", b"1", 1, now=0.0)
    wq.put("b", "delete", None, 0, now=0.0)
    batch = wq.take(0.0)
    assert wq.failed(batch, BAD, 0.0) is None
    assert [(d.key, d.op, d.attempts) for d in batch.dead] == [("a", "set", 1), ("b", "delete", 1)]
    assert wq.dead_lettered == 2 and wq.retries == 0 and wq.unsettled == 2


def test_a_transient_layer_error_is_retried_whatever_retry_on_says() -> None:
    never = RetryPolicy(attempts=None, budget=10.0, retry_on=lambda error: False)
    wq = queue(retry=never)
    wq.put("k", "set", b"", 0, now=0.0)
    batch = wq.take(0.0)
    assert wq.failed(batch, LayerUnavailableError("breaker open"), 0.0) is not None
    assert wq.failed(batch, LayerError("ERR wrong type", transient=False), 0.0) is None

    class DatabaseDown(Exception):
        pass

    custom = RetryPolicy(attempts=None, budget=10.0, retry_on=lambda e: isinstance(e, DatabaseDown))
    wq = queue(retry=custom)
    wq.put("k", "set", b"", 0, now=0.0)
    batch = wq.take(0.0)
    assert wq.failed(batch, DatabaseDown(), 0.0) is not None
    assert wq.failed(batch, ConnectionError(), 0.0) is None  # not in this policy


def test_the_budget_counts_from_the_first_attempt() -> None:
    wq = queue(retry=RetryPolicy(attempts=None, base=0.01, budget=2.0))
    wq.put("k", "set", b"", 0, now=100.0)
    batch = wq.take(100.0)
    assert wq.failed(batch, DOWN, 101.9) is not None
    assert wq.failed(batch, DOWN, 102.1) is None


def test_a_flush_waits_until_the_dead_writes_are_settled() -> None:
    # "After flush(), every write is in the slower layer or in the dead letter": a flush
    # must not end between the give-up and the dead-letter sink's append.
    wq = queue()
    wq.put("k", "set", b"v", 1, now=0.0)
    mark = wq.mark()
    batch = wq.take(0.0)
    assert wq.failed(batch, BAD, 0.0) is None
    assert not wq.reached(mark) and not wq.idle and wq.unsettled == 1
    assert wq.depth == wq.bytes == 0 and not wq.full(1)  # its room is free at once
    wq.put("k", "set", b"v2", 1, now=0.0)  # and its key: a newer write may go
    assert keys(wq.take(0.0)) == ["k"]
    wq.settle(batch)
    wq.settle(batch)  # idempotent
    assert wq.reached(mark) and wq.unsettled == 0
    clean = wq.take(0.0)
    assert clean is None


def test_a_superseded_write_is_never_dead_lettered() -> None:
    wq = queue()
    wq.put("a", "set", b"a-old", 1, now=0.0)
    wq.put("b", "set", b"b-old", 1, now=0.0)
    batch = wq.take(0.0)
    wq.put("a", "set", b"a-new", 1, now=0.0)
    assert wq.failed(batch, BAD, 0.0) is None
    assert [(d.key, d.payload) for d in batch.dead] == [("b", b"b-old")]
    assert wq.pending("a") == ("set", b"a-new")  # ready now, and sent next
    assert [w.payload for w in wq.take(0.0)] == [b"a-new"]
    assert wq.coalesced == 1 and wq.dead_lettered == 1


def test_a_retry_drops_the_superseded_writes_and_frees_their_keys() -> None:
    wq = queue()
    wq.put("a", "set", b"a-old", 1, now=0.0)
    wq.put("b", "set", b"b-old", 1, now=0.0)
    batch = wq.take(0.0)
    wq.put("a", "set", b"a-new", 1, now=0.0)
    assert wq.failed(batch, DOWN, 0.0) is not None
    assert keys(batch) == ["b"]  # the retry sends only what is still current
    newer = wq.take(0.0)  # "a" is no longer in flight: its newer write may go
    assert [w.payload for w in newer] == [b"a-new"]
    wq.done(batch)
    wq.done(newer)
    assert wq.idle and wq.delivered == 2 and wq.dead_lettered == 0


def test_a_batch_whose_writes_were_all_superseded_ends_without_dead_letters() -> None:
    wq = queue()
    wq.put("a", "set", b"1", 1, now=0.0)
    batch = wq.take(0.0)
    wq.put("a", "set", b"2", 1, now=0.0)
    assert wq.failed(batch, DOWN, 0.0) is None
    assert batch.finished and batch.dead == [] and len(batch) == 0


def test_done_with_per_key_errors_dead_letters_those_writes() -> None:
    wq = queue()
    for key in "abc":
        wq.put(key, "set", key.encode(), 1, now=0.0)
    batch = wq.take(0.0)
    wq.put("c", "set", b"c2", 1, now=0.0)
    wrong = LayerError("WRONGTYPE", transient=False)
    wq.done(batch, errors={"b": wrong, "c": wrong})
    assert [(d.key, d.error) for d in batch.dead] == [("b", wrong)]  # "c" is superseded
    assert wq.delivered == 1 and wq.dead_lettered == 1 and wq.pending("c") == ("set", b"c2")


def test_each_outcome_is_reported_once() -> None:
    wq = queue()
    wq.put("a", "set", b"", 0, now=0.0)
    batch = wq.take(0.0)
    wq.done(batch)
    with pytest.raises(ValueError, match="once"):
        wq.done(batch)
    with pytest.raises(ValueError, match="once"):
        wq.failed(batch, DOWN, 0.0)


def test_stats() -> None:
    wq = queue(batch_size=2)
    wq.put("a", "set", b"", 3, now=0.0)
    wq.put("a", "set", b"", 4, now=0.0)
    wq.put("b", "set", b"", 5, now=0.0)
    batch = wq.take(0.0)
    wq.failed(batch, DOWN, 0.0)
    stats = wq.stats()
    assert (stats.depth, stats.bytes, stats.in_flight, stats.puts, stats.coalesced) == (
        2,
        9,
        2,
        3,
        1,
    )
    assert (stats.batches, stats.retries, stats.delivered, stats.dead_lettered) == (1, 1, 0, 0)
    assert stats.dropped == 0 and "2 writes" in repr(wq)


def test_throughput_is_far_above_what_the_acceptance_needs() -> None:
    # 50k writes/s end to end leaves 20 us per write for everything; the queue's share
    # (put, take, done) must be a small part of it. Generous bound: busy CI machines.
    wq = queue()
    names = [f"key{index % 20_000}" for index in range(100_000)]
    started = time.perf_counter()
    for index, key in enumerate(names):
        wq.put(key, "set", b"value", 16, now=index * 1e-5)
        if wq.due(index * 1e-5):
            wq.done(wq.take(index * 1e-5))
    while (batch := wq.take(2.0)) is not None:
        wq.done(batch)
    elapsed = time.perf_counter() - started
    assert wq.idle and wq.delivered + wq.coalesced == 100_000
    assert elapsed < 2.0, f"{100_000 / elapsed:,.0f} writes/s"


# ----------------------------------------------------------------------------- the model
@dataclass
class Put:
    seq: int
    key: int
    op: str
    size: int
    finished: str | None = None  # "delivered" | "dead"


@dataclass
class Model:
    puts: dict[int, Put] = field(default_factory=dict)
    latest: dict[int, int] = field(default_factory=dict)  # key -> seq of its latest put
    finish_order: dict[int, list[int]] = field(default_factory=dict)  # key -> seqs finished


def test_after_a_failure_batches_are_late_until_the_queue_caught_up() -> None:
    q = queue(batch_size=1, max_lag=2.0)
    q.put("a", "set", b"1", 1, now=0.0)
    first = q.take(0.0)
    assert first is not None and not first.late
    assert q.failed(first, DOWN, now=0.1) is not None  # retried: every retry goes late
    q.put("b", "set", b"2", 1, now=0.2)
    during = q.take(3.0)  # "a" has waited 3 s, more than max_lag: still behind
    assert q.recovering and during is not None and during.late
    q.done(first)
    q.done(during)
    q.put("c", "set", b"3", 1, now=5.0)
    after = q.take(5.01)  # the lag is back under max_lag: caught up
    assert after is not None and not after.late and not q.recovering


def test_the_lag_bound_pushes_back_only_while_the_layer_takes_writes() -> None:
    q = queue(batch_size=10, max_lag=1.0, max_delay=60.0)
    q.put("a", "set", b"1", 1, now=0.0)
    assert q.lag(0.5) == 0.5 and not q.full(1, "b", now=0.5)
    assert q.full(1, "b", now=1.5) and not q.offer("b", "set", b"2", 1, now=1.5)
    assert q.offer("a", "set", b"3", 1, now=1.5)  # replaces a queued write: no new slot
    batch = q.take(1.5)
    assert batch is not None and q.failed(batch, DOWN, now=1.6) is not None
    assert q.offer("b", "set", b"2", 1, now=5.0)  # the layer is down: only the bounds hold


def test_a_write_refused_for_lag_says_so() -> None:
    """Refused with one write held: "full" (of 100,000) would send the user to the wrong
    bound."""
    q = queue(batch_size=10, max_lag=1.0, max_delay=60.0)
    q.put("a", "set", b"1", 1, now=0.0)
    with pytest.raises(QueueFull, match=r"behind: its oldest write waited 1\.5 s.*max_lag 1\.0 s"):
        q.put("b", "set", b"2", 1, now=1.5)
    full = queue(max_items=1, batch_size=1, max_lag=1.0)
    full.put("a", "set", b"1", 1, now=0.0)
    with pytest.raises(QueueFull, match=r"queue full: 1 writes, 1 bytes held \(max 1, "):
        full.put("b", "set", b"2", 1, now=1.5)


MAX_ITEMS, MAX_BYTES, BATCH = 6, 30, 3
KEYS = st.integers(0, 4)


class WriteQueueMachine(RuleBasedStateMachine):
    """Drives a small queue with random puts, takes, outcomes, marks, time and close, and
    checks it against a model of which write of each key is the latest."""

    def __init__(self) -> None:
        super().__init__()
        policy = RetryPolicy(attempts=3, base=0.01, cap=0.05, budget=None)
        self.queue = WriteQueue(
            WriteBehind(
                max_items=MAX_ITEMS,
                max_bytes=MAX_BYTES,
                batch_size=BATCH,
                max_delay=0.05,
                retry=policy,
                max_lag=None,  # the lag bound has tests of its own
            ),
            rng=random.Random(0),
        )
        self.model = Model()
        self.batches: list[Batch] = []
        self.unsettled: list[Batch] = []
        self.settled: set[int] = set()  # seqs of dead writes the sink has taken
        self.marks: list[tuple[int, dict[int, int]]] = []
        self.now = 0.0
        self.seq = 0

    # -------------------------------------------------------------- model helpers
    def in_flight(self) -> dict[int, int]:
        """key -> seq of its write in an open batch."""
        return {w.key: w.payload for batch in self.batches for w in batch.writes}

    def held(self) -> list[int]:
        """The seqs the queue must be holding: in flight, plus each key's latest write
        when it is unfinished and not itself in flight."""
        flying = self.in_flight()
        held = list(flying.values())
        for seq in self.model.latest.values():
            if self.model.puts[seq].finished is None and seq not in held:
                held.append(seq)
        return held

    def ready_keys(self) -> set[int]:
        flying = self.in_flight()
        return {
            key
            for key, seq in self.model.latest.items()
            if self.model.puts[seq].finished is None and key not in flying
        }

    def finish(self, seq: int, how: str) -> None:
        put = self.model.puts[seq]
        assert put.finished is None, f"write {seq} finished twice"
        put.finished = how
        order = self.model.finish_order.setdefault(put.key, [])
        assert not order or order[-1] < seq, f"key {put.key}: {seq} finished after {order}"
        order.append(seq)

    def close_batch(self, batch: Batch, sent: set[int]) -> None:
        for dead in batch.dead:
            seq = dead.payload
            assert seq == self.model.latest[dead.key], "a superseded write was dead-lettered"
            assert seq not in sent
            self.finish(seq, "dead")
        self.batches.remove(batch)
        if batch.dead:
            self.unsettled.append(batch)

    # -------------------------------------------------------------- rules
    @rule(key=KEYS, delete=st.booleans(), size=st.integers(0, 10))
    def put(self, key: int, delete: bool, size: int) -> None:
        held = self.held()
        latest = self.model.latest.get(key)
        replaced = (
            latest is not None
            and self.model.puts[latest].finished is None
            and latest not in self.in_flight().values()
        )
        sizes = sum(self.model.puts[seq].size for seq in held)
        items = len(held) + (not replaced)
        rest = sizes - (self.model.puts[latest].size if replaced else 0)
        expect_full = items > MAX_ITEMS or (rest + size > MAX_BYTES and rest > 0)
        assert self.queue.full(size, key) == expect_full
        seq = self.seq
        op = "delete" if delete else "set"
        if self.queue.closed:
            with pytest.raises(WriteQueueClosed):
                self.queue.put(key, op, seq, size, self.now)
            return
        if expect_full:
            with pytest.raises(QueueFull):
                self.queue.put(key, op, seq, size, self.now)
            return
        self.queue.put(key, op, seq, size, self.now)
        self.seq += 1
        self.model.puts[seq] = Put(seq, key, op, size)
        self.model.latest[key] = seq

    @rule()
    def take(self) -> None:
        ready = self.ready_keys()
        flying = self.in_flight()
        batch = self.queue.take(self.now)
        if not ready:
            assert batch is None
            return
        assert batch is not None and len(batch) == min(BATCH, len(ready))
        for write in batch.writes:
            assert write.key not in flying, "a key was sent twice at once"
            assert write.payload == self.model.latest[write.key], "sent a superseded write"
            assert write.key in ready
        assert len({w.key for w in batch.writes}) == len(batch)
        self.batches.append(batch)

    @precondition(lambda self: self.batches)
    @rule(index=st.integers(0, 100), failing=st.sets(KEYS, max_size=2))
    def done(self, index: int, failing: set[int]) -> None:
        batch = self.batches[index % len(self.batches)]
        errors = {key: BAD for key in failing}
        sent = {w.payload for w in batch.writes}
        delivered = [w.payload for w in batch.writes if w.key not in errors]
        self.queue.done(batch, errors)
        for seq in delivered:
            self.finish(seq, "delivered")
        self.close_batch(batch, set(delivered))
        assert {dead.payload for dead in batch.dead} <= sent

    @precondition(lambda self: self.batches)
    @rule(index=st.integers(0, 100), transient=st.booleans())
    def fail(self, index: int, transient: bool) -> None:
        batch = self.batches[index % len(self.batches)]
        before = [w.payload for w in batch.writes]
        delay = self.queue.failed(batch, DOWN if transient else BAD, self.now)
        after = [w.payload for w in batch.writes]
        for seq in set(before) - set(after):  # dropped: superseded by a newer write
            assert self.model.latest[self.model.puts[seq].key] != seq
        if delay is None:
            assert batch.finished
            assert [dead.payload for dead in batch.dead] == after
            self.close_batch(batch, set())
        else:
            assert transient and 0 <= delay <= 0.05 and not batch.finished

    @precondition(lambda self: self.unsettled)
    @rule(index=st.integers(0, 100))
    def settle(self, index: int) -> None:
        batch = self.unsettled.pop(index % len(self.unsettled))
        self.queue.settle(batch)
        self.settled.update(dead.payload for dead in batch.dead)

    @rule(seconds=st.sampled_from([0.001, 0.02, 0.05, 1.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def mark(self) -> None:
        self.marks.append((self.queue.mark(), dict(self.model.latest)))

    @precondition(lambda self: not self.queue.closed)
    @rule(chance=st.integers(0, 9))
    def close(self, chance: int) -> None:
        if chance == 0:  # rarely: most runs should go on accepting writes
            self.queue.close()

    @precondition(lambda self: not self.queue.closed)
    @rule(chance=st.integers(0, 19))
    def abandon(self, chance: int) -> None:
        if chance:  # rarely: it ends the queue
            return
        given_up = self.queue.abandon(BAD, DOWN, self.now)
        assert self.queue.closed and self.queue.depth == 0
        abandoned, self.batches = self.batches, []
        for batch in abandoned:
            assert batch.abandoned and batch.finished
            assert self.queue.failed(batch, DOWN, self.now) is None  # ignored from now on
            self.queue.done(batch)
        for dead in given_up.dead:
            self.finish(dead.payload, "dead")
        if given_up.dead:
            self.unsettled.append(given_up)
        for key, seq in self.model.latest.items():  # every key's latest write is accounted for
            assert self.model.puts[seq].finished is not None, (key, seq)

    # -------------------------------------------------------------- invariants
    @invariant()
    def pending_is_the_latest_unfinished_write(self) -> None:
        for key, seq in self.model.latest.items():
            put = self.model.puts[seq]
            expected = None if put.finished else (put.op, seq)
            assert self.queue.pending(key) == expected

    @invariant()
    def the_counts_agree_with_the_model(self) -> None:
        held = self.held()
        queue = self.queue
        assert queue.depth == len(held) <= MAX_ITEMS
        assert queue.bytes == sum(self.model.puts[seq].size for seq in held)
        assert queue.bytes <= MAX_BYTES or queue.depth == 1
        assert queue.in_flight == len(self.in_flight())
        assert queue.unsettled == sum(len(batch.dead) for batch in self.unsettled)
        assert queue.idle == (not held and not self.unsettled)
        puts = self.model.puts.values()
        stats = queue.stats()
        assert stats.dropped == 0 and stats.puts == len(self.model.puts)
        assert stats.delivered == sum(p.finished == "delivered" for p in puts)
        assert stats.dead_lettered == sum(p.finished == "dead" for p in puts)

    @invariant()
    def due_when_a_batch_is_full_or_closing(self) -> None:
        ready = len(self.ready_keys())
        if ready >= BATCH or (ready and self.queue.closed):
            assert self.queue.due(self.now)
        if not ready:
            assert not self.queue.due(self.now) and self.queue.next_due_in(self.now) is None

    @invariant()
    def a_reached_mark_saw_every_earlier_write_finish(self) -> None:
        for mark, latest in self.marks:
            if not self.queue.reached(mark):
                assert not self.queue.idle
                continue
            for key, seq in latest.items():
                finished = [
                    done
                    for done in self.model.finish_order.get(key, [])
                    if self.model.puts[done].finished == "delivered" or done in self.settled
                ]
                assert finished and finished[-1] >= seq, (mark, key, seq, finished)

    def teardown(self) -> None:
        # Drain: every write is delivered or dead-lettered (once), or superseded by a later
        # write of its key that was; the latest write of every key is accounted for.
        for _ in range(100):
            while self.batches:
                self.done(0, set())
            while (batch := self.queue.take(self.now)) is not None:
                self.batches.append(batch)
            while self.unsettled:
                self.settle(0)
            if not self.batches:
                break
        assert self.queue.idle and not self.batches
        for key, seq in self.model.latest.items():
            assert self.model.puts[seq].finished is not None, f"the latest write of {key} lost"
        for mark, _ in self.marks:
            assert self.queue.reached(mark)
        for put in self.model.puts.values():
            if put.finished is None:
                later = [s for s in self.model.finish_order[put.key] if s > put.seq]
                assert later, f"write {put.seq} was neither finished nor superseded"


WriteQueueMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=60, deadline=None
)
TestWriteQueueMachine = WriteQueueMachine.TestCase


def test_offer_says_when_a_sleeping_sender_must_be_woken() -> None:
    # A sender sleeps until the oldest ready write is max_delay old, or without a timer
    # when nothing is ready: it must be woken for the first ready write and for a full
    # batch, and need not be for anything else (a put per set() otherwise pays for it).
    q = queue(batch_size=3, max_items=5)
    assert q.offer("a", "set", b"1", 1, now=0.0) == WAKE  # the first ready write
    assert q.offer("a", "set", b"2", 1, now=0.0) == QUEUED  # replaces it: nothing new
    assert q.offer("b", "set", b"1", 1, now=0.0) == QUEUED
    assert q.offer("c", "set", b"1", 1, now=0.0) == WAKE  # a full batch
    assert q.due(0.0)
    batch = q.take(0.0)
    assert q.offer("a", "set", b"3", 1, now=0.1) == QUEUED  # behind its in-flight write
    assert not q.due(0.1) and q.ready == 0
    assert q.offer("d", "set", b"1", 1, now=0.1) == WAKE  # the first ready one again
    assert q.offer("e", "set", b"1", 1, now=0.1) == REFUSED  # five held: full
    assert not REFUSED and QUEUED and WAKE  # truthy when accepted, as before
    q.done(batch)
    assert q.ready == 2
