"""The write-behind worker of a sync cache: ``concurrency`` daemon threads per write-behind
layer, each taking batches from the layer's queue (``core/writequeue.py``), sending them,
retrying them while the layer is down, and handing what fails for good to the dead-letter
sink.

Every call on the queue is made under ``self.changed`` (a ``threading.Condition``): writers
``put`` under it and wake the senders when a batch becomes due; the senders wake the writers
blocked on a full or lagging queue, and the flushes, whenever a batch finishes.

How it ends (every way keeps what was acknowledged: delivered, or in the dead letter):

* ``close(timeout)`` refuses new writes and delivers the rest; when ``timeout`` runs out it
  dead-letters whatever is still held itself (``WriteQueue.abandon``), so it returns on time
  even while a batch hangs in the layer.
* Interpreter exit closes every worker still open (``atexit``); SIGTERM does the same before
  the process ends (``multilayercache.shutdown``).
* A sender whose attempt passes ``batch_timeout`` is reported and replaced: a thread cannot
  be stopped, so its keys wait for it while the other batches go on. Another sender notices
  it, or, when every sender hangs (``concurrency=1``), the next write, a flush or a writer
  waiting for room: no thread of its own watches. Writes queued before the timeout passed
  wait until one of those comes (or the hung attempt returns). At most ``concurrency``
  senders are replaced at a time: when every call hangs, so would more threads.
* In a forked child the queue starts empty (the parent delivers its own writes) and the
  threads start again at the child's first write.
* With ``journal=`` every write is appended to a local file before ``set()`` returns
  (``multilayercache.journal``), so that even SIGKILL loses nothing acknowledged.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .. import shutdown
from .._forking import register_after_fork
from ..core.errors import LayerError
from ..core.ratelimit import RateLimiter
from ..core.state import CacheState
from ..core.tiers import Tier
from ..core.writeback import (
    WorkerBase,
    close_timeout,
    dead_letter_records,
    late,
    payloads,
    sleep_for,
)
from ..core.writepolicy import Op
from ..core.writequeue import WAKE, Batch
from ..deadletter import sink_for
from ..journal import Journal

log = logging.getLogger("multilayercache.writeback")


class WriteBehindWorker(WorkerBase):
    """Sends one write-behind tier's queue from threads of its own."""

    def __init__(self, tier: Tier, state: CacheState) -> None:
        super().__init__(tier, sink_for, Journal)
        self._mutex = threading.RLock()  # ``changed``'s: entered directly by ``put_now``
        self.changed = threading.Condition(self._mutex)
        self._senders: set[threading.Thread] = set()
        self._asleep = 0  # senders waiting on ``changed`` for work to be due
        self._look_at = -math.inf
        """When ``put_now`` must look at the senders (``_look``): at once while none runs,
        else when the earliest attempt passes ``batch_timeout``."""
        if self.journal is not None:
            with self.changed:
                forget = self.recover(time.monotonic())
                if not self.queue.idle:
                    self._start()
            forget()
        _OPEN.add(self)
        register_after_fork(self)
        shutdown.watch(self)

    # ---------------------------------------------------------------- callers
    def put(self, writes: list[tuple[Any, Op, Any, int]], block: bool) -> None:
        """Queue ``writes``; with ``block`` and ``when_full="block"``, wait for room (or for
        the queue to catch up with ``max_lag``) up to ``block_timeout`` per write
        (``QueueFull`` after that, and at once otherwise)."""
        queue, changed = self.queue, self.changed
        waits = block and self.options.when_full == "block"
        for key, op, payload, size in writes:
            if waits:
                with changed:
                    if queue.full(size, key, time.monotonic()):
                        self._start()
                        changed.notify_all()  # the senders make room: send what is due
                        self._wait_for(
                            lambda: queue.closed or not queue.full(size, key, time.monotonic()),  # noqa: B023
                            self.options.block_timeout,
                        )
            if not self.put_now(key, op, payload, size):
                with changed:
                    raise queue.refusal(time.monotonic())  # still no room after block_timeout

    def put_now(self, key: Any, op: Op, payload: Any, size: int) -> bool:
        """Queue one write if there is room now; False (nothing queued) if not. The
        fast path of ``set``: as little as possible under the lock, which every writer
        thread takes. A sender asleep is woken only when the write gives it work its own
        timer does not foresee (``WriteQueue.offer``: ``WAKE``)."""
        record = None if self.journal is None else self.record(key, op, payload)
        now = time.monotonic()
        # ``changed``'s lock, without the Condition's Python frames. ``with``, not acquire()
        # then try: a KeyboardInterrupt may land as acquire() returns, before the try, and
        # the lock would stay held; ``with`` enters its block without that gap.
        with self._mutex:
            queued = self.queue.offer(key, op, payload, size, now)
            if not queued:
                return False
            if record is not None:
                self.journal_write(record, now)
            # One float compare: every write-behind set() runs this. True while no sender
            # runs, and once the earliest attempt passes batch_timeout: when every sender
            # is inside one (concurrency=1, a hung layer), a writer is left to notice it.
            if now >= self._look_at:
                self._look(now)
            if queued == WAKE and self._asleep:
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
            return self._wait_for(lambda: self.queue.reached(mark), timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new writes, deliver the rest within ``timeout`` (default: the policy's
        ``close_timeout``), then dead-letter what is left, in flight or not. True if all
        was delivered or dead-lettered by the senders' own decisions, False if ``close``
        had to give up. Returns within ``timeout`` plus the dead-letter sink's IO."""
        queue, changed = self.queue, self.changed
        with changed:
            queue.close()
            changed.notify_all()  # senders asleep on an idle queue see it closed, and end
            if not queue.idle:
                self._start()
            if self._wait_for(lambda: queue.idle, close_timeout(self.tier, timeout)):
                self.close_journal()
                return True
            given_up = self.give_up(time.monotonic())
            changed.notify_all()
        self._bury(given_up)  # file IO: not under the lock
        with changed:
            self.close_journal()
        return False

    def close_blocking(self, timeout: float | None = None) -> bool:
        """``close``, as ``multilayercache.shutdown`` calls every worker's."""
        return self.close(timeout)

    def _wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """``changed.wait_for``, but awake when an attempt passes ``batch_timeout``, to report
        and replace it: a writer waiting for room, or a flush, waits on the senders, and when
        every one of them hangs in the layer no sender is left to notice (callers hold
        ``changed``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done = predicate()
        while not done:
            now = time.monotonic()
            left = None if deadline is None else deadline - now
            if left is not None and left <= 0:
                break
            self._notice_hung(now)
            # An attempt that starts later wakes nobody: a wait no longer than batch_timeout
            # still wakes before that attempt passes it, and then sleeps until it does.
            limit = self.options.batch_timeout
            self.changed.wait(sleep_for(left, self.next_timeout_in(now), limit))
            done = predicate()
        return done

    # ---------------------------------------------------------------- the senders
    def _start(self) -> None:
        """Start the senders that are not running (first write, after a fork, in place of
        hung ones), up to twice ``concurrency`` threads: a layer that hangs every call (its
        server stopped, a database locked) hangs a new sender too, and one more thread each
        ``batch_timeout`` would pile up for as long as it lasts. Callers hold ``changed``."""
        concurrency = self.options.concurrency
        while (
            len(self._senders) - len(self.hung) < concurrency
            and len(self._senders) < 2 * concurrency
        ):
            thread = threading.Thread(
                target=self._work, name=f"multilayercache-writeback-{self.tier.name}", daemon=True
            )
            self._senders.add(thread)
            thread.start()

    def _look(self, now: float) -> None:
        """``put_now``'s rare path: start the senders if none runs (the first write, after a
        fork or after a sender ended), report and replace the attempts past
        ``batch_timeout``, and note when to look again. Callers hold ``changed``."""
        if not self._senders:
            self._start()
        self._notice_hung(now)
        wait = self.next_timeout_in(now)
        self._look_at = math.inf if wait is None else now + wait

    def _work(self) -> None:
        me = threading.current_thread()
        queue, changed = self.queue, self.changed
        while True:
            with changed:
                while not queue.due(now := time.monotonic()):  # a closed queue: due if any
                    if (queue.closed and queue.idle) or self._surplus(me):
                        self._senders.discard(me)
                        self._look_at = -math.inf  # the next write sees whether any is left
                        return
                    self._notice_hung(now)
                    self._asleep += 1
                    changed.wait(sleep_for(queue.next_due_in(now), self.next_timeout_in(now)))
                    self._asleep -= 1
                batch = queue.take(now)
            if batch is not None:
                self._send(batch)

    def _surplus(self, me: threading.Thread) -> bool:
        """More senders than ``concurrency`` are not hung: one that came back from a hung
        attempt (and was replaced meanwhile) ends."""
        return len(self._senders) - len(self.hung) > self.options.concurrency

    def _notice_hung(self, now: float) -> None:
        """Report attempts past ``batch_timeout`` and start senders in their place."""
        stuck = self.newly_hung(now)
        if not stuck:
            return
        self._start()
        if len(self._senders) > len(self.hung):
            log.error(
                "multilayercache: %s: a write-behind batch has been sending for more than %s "
                "s; its keys wait for it, other writes go on (timeouts so far: %d)",
                self.tier.name,
                self.options.batch_timeout,
                self.queue.timeouts,
            )
        else:
            log.error(
                "multilayercache: %s: a write-behind batch has been sending for more than %s "
                "s, and every write-behind sender hangs (%d): no more are started until one "
                "returns; writes wait (timeouts so far: %d)",
                self.tier.name,
                self.options.batch_timeout,
                len(self.hung),
                self.queue.timeouts,
            )

    def _send(self, batch: Batch) -> None:
        """Send ``batch`` until it is delivered, given up on, or abandoned by ``close``."""
        queue, changed = self.queue, self.changed
        while True:
            error = self._attempt(batch)
            with changed:
                if error is None:
                    queue.done(batch)
                    self.collect_journal()
                    changed.notify_all()
                    break
                delay = queue.failed(batch, error, time.monotonic())
                changed.notify_all()  # superseded writes may have left: room
                if delay is None:
                    break
                changed.wait_for(lambda: batch.abandoned, delay)  # close() cuts the wait short
        if batch.dead:
            self._bury(batch)
        elif error is None:
            self.delivered(batch)

    def _attempt(self, batch: Batch) -> Exception | None:
        """One send of ``batch`` through the layer's rate limit and breaker; the error,
        or ``None``."""
        tier = self.tier
        limiter = tier.limiter  # read once: update_policy may replace it
        if limiter is not None and not self._take_token(batch, limiter):
            return LayerError(f"{tier.name}: abandoned while waiting for a rate limit token")
        try:
            tier.admit()  # an open breaker: a transient error, the batch waits and retries
        except LayerError as refused:
            return refused
        me = threading.current_thread()
        with self.changed:
            self.attempts[me] = started = time.monotonic()
            if self.options.batch_timeout is not None:  # the writers look when it passes
                self._look_at = min(self._look_at, started + self.options.batch_timeout)
        try:
            tier.layer.write_packed(payloads(batch), late(batch))
        except Exception as failure:
            tier.settle(failure)
            return failure
        else:
            tier.settle(None)
            return None
        finally:
            with self.changed:
                del self.attempts[me]
                self.hung.discard(me)

    def _take_token(self, batch: Batch, limiter: RateLimiter) -> bool:
        """Wait for a token of the layer's rate limit (one per batch), as long as it takes:
        the queue's bounds push back on ``set()`` meanwhile. False if ``close`` abandoned
        the batch while it waited."""
        wait = limiter.try_take()
        if not wait:
            return True
        while wait:
            with self.changed:
                if self.changed.wait_for(lambda: batch.abandoned, wait):
                    return False
            wait = limiter.try_take()
        limiter.count("delayed")
        return True

    def _bury(self, batch: Batch) -> None:
        self.dead_lettered(batch)
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
                self.collect_journal()
                self.changed.notify_all()

    # ---------------------------------------------------------------- fork
    def _after_fork(self) -> None:
        """In a forked child: the parent's threads are gone and its queued writes are the
        parent's to deliver (see ``WriteQueue.forget``); start afresh."""
        self._mutex = threading.RLock()
        self.changed = threading.Condition(self._mutex)
        self._senders = set()
        self._asleep = 0
        self._look_at = -math.inf
        self.attempts.clear()
        self.hung.clear()
        self.queue.forget()
        if self.journal is not None:
            self.journal.after_fork()


_OPEN: weakref.WeakSet[WriteBehindWorker] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At interpreter exit: deliver (or dead-letter) every queue still open. Daemon threads
    still run while ``atexit`` handlers do."""
    for worker in list(_OPEN):
        if not worker.queue.idle or not worker.queue.closed:
            worker.close()


__all__ = ["WriteBehindWorker"]
