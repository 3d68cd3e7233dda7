"""The write-behind worker of a sync cache: one daemon thread per write-behind layer, which
sends the layer's queue (``core/writequeue.py``) in batches, retries them while the layer is
down, and hands what fails for good to the dead-letter sink.

Every call on the queue is made under ``self.changed`` (a ``threading.Condition``): writers
``put`` under it and wake the worker when a batch becomes due; the worker wakes the writers
blocked on a full queue, and the flushes, whenever a batch finishes. The thread starts with
the first write and ends at ``close()``; interpreter exit closes every worker still open
(``atexit``), so writes acknowledged before a normal exit are delivered or dead-lettered.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import Any

from ..core.errors import LayerError
from ..core.state import CacheState
from ..core.tiers import Tier
from ..core.writeback import (
    EXIT_TIMEOUT_SECONDS,
    WorkerBase,
    abandoned,
    close_timeout,
    dead_letter_records,
    payloads,
)
from ..core.writepolicy import Op
from ..core.writequeue import Batch
from ..deadletter import sink_for

log = logging.getLogger("multilayercache.writeback")


class WriteBehindWorker(WorkerBase):
    """Sends one write-behind tier's queue from a thread of its own."""

    def __init__(self, tier: Tier, state: CacheState) -> None:
        super().__init__(tier, sink_for)
        self.changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._asleep = False  # the worker waits on ``changed`` for work to be due
        _OPEN.add(self)

    # ---------------------------------------------------------------- callers
    def put(self, writes: list[tuple[Any, Op, Any, int]], block: bool) -> None:
        """Queue ``writes``; with ``block`` and ``when_full="block"``, wait for room up to
        ``block_timeout`` per write (``QueueFull`` after that, and at once otherwise)."""
        queue, changed = self.queue, self.changed
        waits = block and self.options.when_full == "block"
        with changed:
            self._start()
            for key, op, payload, size in writes:
                if waits and queue.full(size, key):
                    changed.notify_all()  # the worker makes room: let it send what is due
                    changed.wait_for(
                        lambda: not queue.full(size, key) or queue.closed,  # noqa: B023
                        self.options.block_timeout,
                    )
                if not self.put_now(key, op, payload, size):
                    raise queue.refusal()  # still no room after block_timeout

    def put_now(self, key: Any, op: Op, payload: Any, size: int) -> bool:
        """Queue one write if there is room now; False (nothing queued) if not. The
        fast path of ``set``: as little as possible under the lock, which every writer
        thread takes."""
        now = time.monotonic()
        queue = self.queue
        with self.changed:
            was_empty = not queue.ready
            if not queue.offer(key, op, payload, size, now):
                return False
            if self._thread is None:  # inlined check: every write-behind set() runs this
                self._start()
            if self._asleep and (was_empty or queue.due(now)):
                self.changed.notify_all()
        return True

    def pending(self, keys: list[Any]) -> dict[Any, tuple[Op, Any]]:
        """The queued writes of ``keys`` (see ``WriteQueue.pending``)."""
        with self.changed:
            return self.pending_in(keys)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write queued before this call is delivered or dead-lettered;
        False if ``timeout`` passed first."""
        with self.changed:
            mark = self.queue.mark()
            if self.queue.reached(mark):
                return True
            self._start()
            self.changed.notify_all()
            return self.changed.wait_for(lambda: self.queue.reached(mark), timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new writes, deliver the rest within ``timeout`` (default: the policy's
        ``close_timeout``), then dead-letter what is left. True if all was delivered or
        dead-lettered by the worker's own decisions, False if ``close`` had to give up."""
        wait = close_timeout(self.tier, timeout)
        with self.changed:
            self.queue.close()
            self.changed.notify_all()  # a worker asleep on an idle queue sees it closed, and ends
            if self.queue.idle:
                return True
            self._start()
            if self.changed.wait_for(lambda: self.queue.idle, wait):
                return True
            self._abandon = True  # every batch from now on goes to the dead letter
            self.changed.notify_all()
            # Giving up costs one attempt at most (a socket timeout) plus the sink's IO.
            self.changed.wait_for(lambda: self.queue.idle, EXIT_TIMEOUT_SECONDS)
            return False

    # ---------------------------------------------------------------- the thread
    def _start(self) -> None:
        """Start the thread if it is not running (first write, or after a fork)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name=f"multilayercache-writeback-{self.tier.name}", daemon=True
            )
            self._thread.start()

    def _work(self) -> None:
        queue, changed = self.queue, self.changed
        while True:
            with changed:
                while not queue.due(now := time.monotonic()):  # a closed queue: due if any
                    if queue.closed and queue.idle:
                        self._thread = None
                        return
                    self._asleep = True
                    changed.wait(queue.next_due_in(now))
                    self._asleep = False
                batch = queue.take(now)
            if batch is not None:
                self._send(batch)

    def _send(self, batch: Batch) -> None:
        """Send ``batch`` until it is delivered or the queue gives up on it."""
        queue, changed = self.queue, self.changed
        while True:
            error = abandoned(self.tier) if self._abandon else self._attempt(batch)
            with changed:
                if error is None:
                    queue.done(batch)
                    changed.notify_all()
                    break
                delay = queue.failed(batch, error, time.monotonic())
                changed.notify_all()  # superseded writes may have left: room
                if delay is None:
                    break
                changed.wait_for(lambda: self._abandon, delay)  # close() cuts the wait short
        if batch.dead:
            self._bury(batch)

    def _attempt(self, batch: Batch) -> Exception | None:
        """One send of ``batch`` through the layer's breaker; the error, or ``None``."""
        tier = self.tier
        try:
            tier.admit()  # an open breaker: a transient error, the batch waits and retries
        except LayerError as refused:
            return refused
        try:
            tier.layer.write_packed(payloads(batch))
        except Exception as failure:
            tier.settle(failure)
            return failure
        tier.settle(None)
        return None

    def _bury(self, batch: Batch) -> None:
        try:
            self.sink.append(dead_letter_records(self.tier, batch))  # file IO: not under the lock
        except Exception:
            log.exception(
                "multilayercache: %s: %d dead write(s) could not be kept",
                self.tier.name,
                len(batch.dead),
            )
        finally:
            with self.changed:
                self.queue.settle(batch)  # now a flush may count them as finished
                self.changed.notify_all()


_OPEN: weakref.WeakSet[WriteBehindWorker] = weakref.WeakSet()


def _after_fork() -> None:
    """A forked child has none of its parent's threads (and maybe a lock held by one of
    them): each worker gets a new condition and starts its thread at its next write. The
    child's copy of the queue is sent too, which only repeats sets and deletes."""
    for worker in list(_OPEN):
        worker._thread = None
        worker._asleep = False
        worker.changed = threading.Condition()


os.register_at_fork(after_in_child=_after_fork)


@atexit.register
def _close_all() -> None:
    """At interpreter exit: deliver (or dead-letter) every queue still open. Daemon threads
    still run while ``atexit`` handlers do."""
    for worker in list(_OPEN):
        if not worker.queue.idle or not worker.queue.closed:
            timeout = worker.options.close_timeout
            worker.close(EXIT_TIMEOUT_SECONDS if timeout is None else timeout)


__all__ = ["WriteBehindWorker"]
