"""What the write-behind workers (``sync/writeback.py``, ``aio/writeback.py``) share without
IO: their state (``WorkerBase``), what a batch sends, which attempts passed their timeout,
how long close waits, and what goes to the dead letter when it gives up. The workers only
send (through the layer's breaker), sleep, lock and write files."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from .tiers import Tier
from .writepolicy import WriteQueueClosed
from .writequeue import Batch, WriteQueue


class WorkerBase:
    """What both workers hold: the tier, its queue and policy, the dead-letter sink (made by
    ``make_sink`` from the policy's ``dead_letter``: file IO is not the core's), and the
    attempts running now, by sender, with when they started (for ``batch_timeout``)."""

    def __init__(self, tier: Tier, make_sink: Callable[[Any], Any]) -> None:
        assert tier.queue is not None
        self.tier = tier
        self.queue: WriteQueue = tier.queue
        self.options = self.queue.options
        self.sink = make_sink(self.options.dead_letter)
        self.attempts: dict[Hashable, float] = {}
        """Attempts in progress: sender -> when it started (monotonic seconds)."""
        self.hung: set[Hashable] = set()
        """Senders whose attempt passed ``batch_timeout`` (reported once each)."""

    def pending_in(self, keys: list[Any]) -> dict[Any, Any]:
        """The queued writes of ``keys`` (callers hold the queue's lock, if any)."""
        found = {}
        for key in keys:
            write = self.queue.pending(key)
            if write is not None:
                found[key] = write
        return found

    def newly_hung(self, now: float) -> list[Hashable]:
        """The senders whose attempt has just passed ``batch_timeout``: counted once each
        (``timeouts``), and remembered until their attempt ends."""
        limit = self.options.batch_timeout
        if limit is None:
            return []
        late = [
            sender
            for sender, started in self.attempts.items()
            if sender not in self.hung and now - started > limit
        ]
        self.hung.update(late)
        self.queue.timeouts += len(late)
        return late

    def next_timeout_in(self, now: float) -> float | None:
        """Seconds until the next attempt in progress passes ``batch_timeout`` (``None``:
        none will), so that a sleeping sender wakes to notice it."""
        limit = self.options.batch_timeout
        running = [start for sender, start in self.attempts.items() if sender not in self.hung]
        if limit is None or not running:
            return None
        return max(0.0, min(running) + limit - now)

    def give_up(self, now: float) -> Batch:
        """``close`` ran out of time: every write held goes to the dead letter (see
        ``WriteQueue.abandon``)."""
        name = self.tier.name
        closed = f"{name}: the cache was closed before this write could be delivered"
        return self.queue.abandon(
            WriteQueueClosed(closed),
            WriteQueueClosed(f"{closed} (its batch was being sent or retried: it may have landed)"),
            now,
        )


def payloads(batch: Batch) -> list[Any]:
    """What the layer's ``write_packed`` sends for ``batch`` (rebuilt on every attempt: a
    retry may have dropped superseded writes)."""
    return [write.payload for write in batch.writes]


def late(batch: Batch) -> bool:
    """Whether ``batch`` goes out late: a retry, or taken while the queue recovered from
    failures (``Batch.late``). The layer then writes it only over older values."""
    return batch.late or batch.attempts > 1


def dead_letter_records(tier: Tier, batch: Batch) -> list[Any]:
    """The dead-letter records of the writes of ``batch`` given up on."""
    describe = tier.layer.dead_letter_record
    return [describe(dead) for dead in batch.dead]


def close_timeout(tier: Tier, timeout: float | None) -> float | None:
    """How long a ``close`` waits for ``tier``'s queue: the call's own, else the policy's."""
    assert tier.queue is not None
    return tier.queue.options.close_timeout if timeout is None else timeout


def sleep_for(*waits: float | None) -> float | None:
    """The shortest of ``waits`` (``None``: no limit)."""
    given = [wait for wait in waits if wait is not None]
    return min(given) if given else None
