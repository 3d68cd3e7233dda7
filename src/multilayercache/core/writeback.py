"""What the write-behind workers (``sync/writeback.py``, ``aio/writeback.py``) share without
IO: their state (``WorkerBase``), what a batch sends, how long close waits, and what goes
to the dead letter. The workers only send (through the layer's breaker), sleep and lock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .tiers import Tier
from .writepolicy import WriteQueueClosed
from .writequeue import Batch, WriteQueue

EXIT_TIMEOUT_SECONDS = 10.0
"""How long interpreter exit waits for a queue whose policy sets no ``close_timeout``."""


class WorkerBase:
    """What both workers hold: the tier, its queue and policy, the dead-letter sink (made by
    ``make_sink`` from the policy's ``dead_letter``: file IO is not the core's), and whether
    ``close()`` gave up waiting."""

    def __init__(self, tier: Tier, make_sink: Callable[[Any], Any]) -> None:
        assert tier.queue is not None
        self.tier = tier
        self.queue: WriteQueue = tier.queue
        self.options = self.queue.options
        self.sink = make_sink(self.options.dead_letter)
        self._abandon = False  # close() stopped waiting: dead-letter the rest

    def pending_in(self, keys: list[Any]) -> dict[Any, Any]:
        """The queued writes of ``keys`` (callers hold the queue's lock, if any)."""
        found = {}
        for key in keys:
            write = self.queue.pending(key)
            if write is not None:
                found[key] = write
        return found


def payloads(batch: Batch) -> list[Any]:
    """What the layer's ``write_packed`` sends for ``batch`` (rebuilt on every attempt: a
    retry may have dropped superseded writes)."""
    return [write.payload for write in batch.writes]


def abandoned(tier: Tier) -> WriteQueueClosed:
    """The error of the writes still queued when ``close()`` stopped waiting: not
    retryable, so the queue hands them to the dead letter."""
    return WriteQueueClosed(
        f"{tier.name}: the cache was closed before this write could be delivered"
    )


def dead_letter_records(tier: Tier, batch: Batch) -> list[Any]:
    """The dead-letter records of the writes of ``batch`` given up on."""
    describe = tier.layer.dead_letter_record
    return [describe(dead) for dead in batch.dead]


def close_timeout(tier: Tier, timeout: float | None) -> float | None:
    """How long a ``close`` waits for ``tier``'s queue: the call's own, else the policy's."""
    assert tier.queue is not None
    return tier.queue.options.close_timeout if timeout is None else timeout
