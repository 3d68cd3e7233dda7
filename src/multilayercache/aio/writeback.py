"""The write-behind worker of an asyncio cache: ``concurrency`` sender tasks per write-behind
layer (on the event loop of the cache's callers), each taking batches from the layer's queue
(``core/writequeue.py``), sending them, retrying them while the layer is down, and handing
what fails for good to the dead-letter sink (through a thread: file IO).

No lock: every call on the queue is made from the event loop, with no ``await`` inside
one. An ``asyncio.Condition`` (one per loop) is only there to sleep on and be woken.

A cache may outlive an event loop (``asyncio.run()`` called again, or an import-time
cache): when the loop that ran the tasks is gone, the next call starts tasks on the new
loop, which first resend the batches that were in flight. An attempt that passes
``batch_timeout`` is cancelled, counted and retried.

How it ends: ``close(timeout)`` delivers within ``timeout`` and then dead-letters whatever
is still held, in flight or not; interpreter exit delivers a queue that is not empty on a
fresh loop (``atexit``); SIGTERM closes every worker first (``multilayercache.shutdown``,
through ``close_blocking``). In a forked child the queue starts empty (the parent delivers
its own writes). With ``journal=`` every write is on disk before ``set()`` returns.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .. import shutdown
from .._forking import register_after_fork
from ..core.errors import LayerError
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

LOOP_HANDOVER_SECONDS = 5.0
"""``close_blocking`` from another thread: how long the cache's event loop has beyond the
close timeout to run the close, before the caller gives up on the loop and dead-letters."""

ENDED_LOOP_SECONDS = 0.05
"""How often ``close_blocking`` looks whether the loop it handed the close to has ended;
and how long one must stay stopped to count as ended (asyncio.run stops between its last
steps for a moment)."""


def _ended(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is closed, or stopped and still stopped a moment later."""
    if loop.is_closed():
        return True
    if loop.is_running():
        return False
    time.sleep(ENDED_LOOP_SECONDS)
    return loop.is_closed() or not loop.is_running()


class AsyncWriteBehindWorker(WorkerBase):
    """Sends one write-behind tier's queue from tasks of its own."""

    def __init__(self, tier: Tier, state: CacheState) -> None:
        super().__init__(tier, sink_for, Journal)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Condition | None = None
        """Notified by the senders whenever a batch finishes (room, flush marks)."""
        self._wake = asyncio.Event()
        """Set by callers when the senders should look again (work due, flush, close)."""
        self._unfinished: dict[Batch, asyncio.Task[None] | None] = {}
        """Batches taken and not finished, and the task sending each (``None``: its loop is
        gone; a sender on the next loop resends it)."""
        self._closing = threading.Lock()
        """Held by ``close_blocking``: SIGTERM's thread and the interpreter's exit may both
        close this worker, each on a loop of its own, and its queue is one loop's at a time."""
        if self.journal is not None:
            forget = self.recover(time.monotonic())
            if not self.queue.idle:
                _HOLDING.add(self)  # sent on the first loop that uses the cache, or at exit
            forget()
        _OPEN.add(self)
        register_after_fork(self)
        shutdown.watch(self)

    # ---------------------------------------------------------------- callers
    async def put(self, writes: list[tuple[Any, Op, Any, int]], block: bool) -> None:
        """Queue ``writes``; with ``block`` and ``when_full="block"``, wait for room (or for
        the queue to catch up with ``max_lag``) up to ``block_timeout`` per write
        (``QueueFull`` after that, and at once otherwise)."""
        queue = self.queue
        changed = self._running()
        waits = block and self.options.when_full == "block"
        for key, op, payload, size in writes:
            if waits and queue.full(size, key, time.monotonic()):

                def room(size: int = size, key: Any = key) -> bool:
                    return queue.closed or not queue.full(size, key, time.monotonic())

                self._wake.set()  # the senders make room: let them send what is due
                async with changed:
                    try:
                        await asyncio.wait_for(changed.wait_for(room), self.options.block_timeout)
                    except TimeoutError:
                        pass
            if not self.put_now(key, op, payload, size):
                raise queue.refusal(time.monotonic())  # still no room after block_timeout

    def put_now(self, key: Any, op: Op, payload: Any, size: int) -> bool:
        """Queue one write if there is room now; False (nothing queued) if not. Called
        from the event loop (no await: the fast path of ``set``)."""
        record = None if self.journal is None else self.record(key, op, payload)
        now = time.monotonic()
        queued = self.queue.offer(key, op, payload, size, now)
        if not queued:
            return False
        if record is not None:
            self.journal_write(record, now)
        _HOLDING.add(self)
        self._running()
        if queued == WAKE:  # the senders' own timers do not foresee it
            self._wake.set()
        return True

    def pending(self, keys: list[Any]) -> dict[Any, tuple[Op, Any]]:
        """The queued writes of ``keys`` (see ``WriteQueue.pending``)."""
        return self.pending_in(keys)  # one event loop: no lock needed

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write queued before this call is delivered or dead-lettered;
        False if ``timeout`` passed first."""
        mark = self.queue.mark()
        if self.queue.reached(mark):
            return True
        return await self._wait_for(lambda: self.queue.reached(mark), timeout)

    async def close(self, timeout: float | None = None) -> bool:
        """Refuse new writes, deliver the rest within ``timeout`` (default: the policy's
        ``close_timeout``), then dead-letter what is left, in flight or not; False if it
        had to give up. Returns within ``timeout`` plus the dead-letter sink's IO."""
        queue = self.queue
        queue.close()
        if self._loop is asyncio.get_running_loop():  # (another loop's senders are gone)
            self._wake.set()  # senders asleep on an idle queue see it closed, and end
        if queue.idle or await self._wait_for(
            lambda: queue.idle, close_timeout(self.tier, timeout)
        ):
            self.close_journal()
            return True
        given_up = self.give_up(time.monotonic())
        for task in self._tasks:  # their batches are abandoned: stop waiting on hung sends
            task.cancel()
        self._unfinished.clear()
        await self._bury(given_up)
        self.close_journal()
        return False

    def close_blocking(self, timeout: float | None = None) -> bool:
        """``close`` from a thread that is not running the cache's event loop (SIGTERM,
        interpreter exit): on that loop while it runs, else on a fresh one; one such close
        at a time (a second one waits, then finds the queue closed and delivered)."""
        with self._closing:
            return self._close_from_outside(timeout)

    def _close_from_outside(self, timeout: float | None) -> bool:
        loop = self._loop
        wait = close_timeout(self.tier, timeout)
        if loop is not None and loop.is_running() and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(self.close(timeout), loop)
            given = None if wait is None else time.monotonic() + wait + LOOP_HANDOVER_SECONDS
            while True:
                try:
                    return future.result(ENDED_LOOP_SECONDS)
                except concurrent.futures.TimeoutError:
                    # A loop that ended without running the close (asyncio.run had run its
                    # last step when the close was handed over) never will: close here.
                    if _ended(loop):
                        future.cancel()  # (a task made from it later is cancelled unstarted)
                        break
                    if given is not None and time.monotonic() > given:
                        log.error(
                            "multilayercache: %s: the event loop did not run the close in time",
                            self.tier.name,
                        )
                        return False
                except (concurrent.futures.CancelledError, RuntimeError):
                    # The loop is ending (asyncio.run cancels what is left, as a server's
                    # shutdown does): once it has, a fresh loop closes.
                    ends = time.monotonic() + LOOP_HANDOVER_SECONDS
                    while loop.is_running() and time.monotonic() < ends:
                        time.sleep(0.01)
                    break
        return asyncio.run(self.close(timeout))

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        changed = self._running()
        self._wake.set()
        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(predicate), timeout)
            except TimeoutError:
                return bool(predicate())
        return True

    # ---------------------------------------------------------------- the senders
    def _running(self) -> asyncio.Condition:
        """This loop's condition, with the sender tasks running on it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._changed is None:
            # A new loop: the old one's tasks are gone, their batches wait for new senders.
            self._loop, self._changed, self._tasks = loop, asyncio.Condition(), set()
            self._wake = asyncio.Event()
            self._unfinished = dict.fromkeys(self._unfinished)
        while len(self._tasks) < self.options.concurrency:
            task = loop.create_task(self._work(self._changed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self._changed

    async def _work(self, changed: asyncio.Condition) -> None:
        queue = self.queue
        me = asyncio.current_task()
        assert me is not None
        while True:
            batch = self._orphan()
            if batch is None:
                wake = self._wake
                while True:
                    wake.clear()  # no await until the wait: a set() from now on is seen
                    if queue.due(now := time.monotonic()):
                        break
                    if queue.idle:
                        _HOLDING.discard(self)
                        if queue.closed:
                            return
                    try:
                        await asyncio.wait_for(wake.wait(), sleep_for(queue.next_due_in(now)))
                    except TimeoutError:
                        pass
                batch = queue.take(now)
                if batch is None:
                    continue
            self._unfinished[batch] = me
            await self._send(batch, changed)
            self._unfinished.pop(batch, None)
            if batch.dead:
                await self._bury(batch)
            self.collect_journal()
            async with changed:
                changed.notify_all()

    def _orphan(self) -> Batch | None:
        """A batch whose sender's loop is gone, to send again (it is still in flight)."""
        for batch, task in self._unfinished.items():
            if task is None:
                return batch
        return None

    async def _send(self, batch: Batch, changed: asyncio.Condition) -> None:
        """Send ``batch`` until it is delivered, given up on, or abandoned by ``close``."""
        queue = self.queue
        while True:
            error = await self._attempt(batch)
            if error is None:
                queue.done(batch)
                self.delivered(batch)
                return
            delay = queue.failed(batch, error, time.monotonic())
            if delay is None:
                return
            async with changed:
                changed.notify_all()  # superseded writes may have left: room
            await asyncio.sleep(delay)

    async def _attempt(self, batch: Batch) -> Exception | None:
        """One send of ``batch`` through the layer's breaker, cancelled past
        ``batch_timeout``; the error, or ``None``. A rate-limited layer: after a token
        (one per batch), waited for as long as it takes (the queue's bounds push back on
        ``set()`` meanwhile), unless ``close`` abandons the batch."""
        tier = self.tier
        limiter = tier.limiter
        if limiter is not None:
            wait = limiter.try_take()
            if wait:
                while wait:
                    await asyncio.sleep(wait)
                    if batch.abandoned:
                        return LayerError(f"{tier.name}: abandoned while waiting for a token")
                    wait = limiter.try_take()
                limiter.count("delayed")
        try:
            tier.admit()  # an open breaker: a transient error, the batch waits and retries
        except LayerError as refused:
            return refused
        limit = self.options.batch_timeout
        try:
            await asyncio.wait_for(tier.layer.write_packed(payloads(batch), late(batch)), limit)
        except TimeoutError:
            self.queue.timeouts += 1
            log.error(
                "multilayercache: %s: a write-behind batch took more than %s s: cancelled, "
                "to be retried (timeouts so far: %d)",
                tier.name,
                limit,
                self.queue.timeouts,
            )
            timed_out = LayerError(f"{tier.name}: the batch took more than {limit} s")
            tier.settle(timed_out)
            return timed_out
        except Exception as failure:
            tier.settle(failure)
            return failure
        tier.settle(None)
        return None

    async def _bury(self, batch: Batch) -> None:
        self.dead_lettered(batch)
        records = dead_letter_records(self.tier, batch)
        try:
            try:  # file IO and fsync: off the event loop
                appended = asyncio.get_running_loop().run_in_executor(
                    None, self.sink.append, records
                )
            except RuntimeError:
                # The interpreter is exiting: thread pools take no more work from the moment
                # its threads are joined, before atexit handlers run. The loop writes.
                self.sink.append(records)
            else:
                await appended
        except Exception:
            log.exception(
                "multilayercache: %s: %d dead write(s) could not be kept",
                self.tier.name,
                len(batch.dead),
            )
        finally:
            self.queue.settle(batch)

    # ---------------------------------------------------------------- fork
    def _after_fork(self) -> None:
        """In a forked child: its parent's loop and tasks are not the child's, and the
        queued writes are the parent's to deliver (see ``WriteQueue.forget``)."""
        self._loop, self._changed, self._tasks = None, None, set()
        self._wake = asyncio.Event()
        self._unfinished = {}
        self._closing = threading.Lock()  # (a parent's thread may have held it)
        self.queue.forget()
        _HOLDING.discard(self)
        if self.journal is not None:
            self.journal.after_fork()


_OPEN: weakref.WeakSet[AsyncWriteBehindWorker] = weakref.WeakSet()
_HOLDING: set[AsyncWriteBehindWorker] = set()
"""Workers with writes not delivered yet, held strongly: a task does not keep its worker
alive once its event loop is gone, and a cache dropped with writes queued must still
deliver them at exit."""


@atexit.register
def _close_all() -> None:
    """At interpreter exit: deliver (or dead-letter) every queue left with writes, on a
    fresh event loop (the one that queued them has ended)."""
    for worker in list(_OPEN):
        if worker.queue.idle:
            continue
        try:  # (after SIGTERM's close, if one is under way: see ``_closing``)
            worker.close_blocking()
        except Exception:
            log.exception("multilayercache: %s: flushing at exit failed", worker.tier.name)


__all__ = ["AsyncWriteBehindWorker"]
