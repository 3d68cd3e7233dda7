"""What the write-behind workers (``sync/writeback.py``, ``aio/writeback.py``) share without
IO: their state (``WorkerBase``), what a batch sends, which attempts passed their timeout,
how long close waits, and what goes to the dead letter when it gives up. The workers only
send (through the layer's breaker), sleep, lock and write files."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from operator import attrgetter
from typing import Any

from .events import DeadLettered
from .tiers import Tier
from .writepolicy import WriteQueueClosed
from .writequeue import Batch, WriteQueue

log = logging.getLogger("multilayercache.writeback")


class WorkerBase:
    """What both workers hold: the tier, its queue and policy, the dead-letter sink and the
    journal (made by ``make_sink`` and ``make_journal`` from the policy: file IO is not the
    core's), and the attempts running now, by sender, with when they started (for
    ``batch_timeout``). Callers of the journal methods hold the queue's lock, if any."""

    def __init__(
        self,
        tier: Tier,
        make_sink: Callable[[Any], Any],
        make_journal: Callable[[Any, str, bool], Any],
    ) -> None:
        assert tier.queue is not None
        self.tier = tier
        self.queue: WriteQueue = tier.queue
        self.options = self.queue.options
        self.sink = make_sink(self.options.dead_letter)
        self.journal: Any = None
        """The local journal (``multilayercache.journal``), with ``WriteBehind(journal=)``."""
        if self.options.journal is not None:
            self.journal = make_journal(self.options.journal, tier.name, self.options.journal_fsync)
        self.attempts: dict[Hashable, float] = {}
        """Attempts in progress: sender -> when it started (monotonic seconds)."""
        self.hung: set[Hashable] = set()
        """Senders whose attempt passed ``batch_timeout`` (reported once each)."""
        self.announce: Callable[[list[Any]], None] | None = None
        """Told the keys of every batch delivered (the backplane: other instances drop
        them from their L1 once the new values are in the shared layer)."""
        self.emit: Callable[[Any], None] = _ignore
        """Where events go (the manager's ``EventHub.emit``): ``DeadLettered`` here."""

    def delivered(self, batch: Batch) -> None:
        """``batch`` reached the layer: announce its keys (never raises)."""
        announce = self.announce
        if announce is not None:
            try:
                announce([write.key for write in batch.writes])
            except Exception:
                log.exception("multilayercache: announcing a delivered batch failed")

    def dead_lettered(self, batch: Batch) -> None:
        """The writes of ``batch`` given up on go to the dead letter now: tell the
        listeners (never raises)."""
        if not batch.dead:
            return
        try:
            self.emit(DeadLettered(self.tier.name, len(batch.dead)))
        except Exception:
            log.exception("multilayercache: reporting a dead letter failed")

    def pending_in(self, keys: list[Any]) -> dict[Any, Any]:
        """The queued writes of ``keys`` (callers hold the queue's lock, if any)."""
        found = {}
        for key in keys:
            write = self.queue.pending(key)
            if write is not None:
                found[key] = write
        return found

    # ---------------------------------------------------------------- the journal
    def record(self, key: Any, op: str, payload: Any) -> bytes | None:
        """The journal record of a write (made before the lock: it pickles), or ``None``."""
        return None if self.journal is None else self.journal.encode(key, op, payload)

    def journal_write(self, record: bytes, now: float) -> None:
        """Append a write's record, right after it was queued. A journal that cannot be
        written is logged: the write is queued all the same, only not journaled."""
        try:
            self.journal.append(record, now, lambda: self.queue.mark(flush=False))
        except OSError as error:
            log.error("multilayercache: %s: cannot journal a write: %s", self.tier.name, error)
            return
        self.queue.journaled += 1
        self.journal.collect(self.queue.reached)

    def collect_journal(self) -> None:
        """Delete the journal segments whose writes have all left the queue."""
        if self.journal is not None:
            self.journal.collect(self.queue.reached)

    def close_journal(self) -> None:
        if self.journal is not None:
            self.journal.close(self.queue.idle)

    def recover(self, now: float) -> Callable[[], None]:
        """Queue, and journal again, what dead processes left in the journal; what to call
        once done (it deletes their files). Sent so as never to overwrite a newer value
        where the layer can (Redis): other processes may have written these keys since."""
        forget: Callable[[], None]
        records, forget = self.journal.recover()
        recovered = getattr(self.tier.layer, "recovered_write", None) or (lambda write: write)
        for key, op, payload in records:
            payload = recovered(payload)
            self.queue.restore(key, op, payload, payload.size, now)
            self.journal_write(self.journal.encode(key, op, payload), now)
        return forget

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


_PAYLOAD = attrgetter("payload")


def _ignore(event: Any) -> None:
    """``WorkerBase.emit`` until a manager connects its events."""


def payloads(batch: Batch) -> list[Any]:
    """What the layer's ``write_packed`` sends for ``batch`` (rebuilt on every attempt: a
    retry may have dropped superseded writes)."""
    return list(map(_PAYLOAD, batch.writes))


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
