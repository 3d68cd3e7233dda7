"""The write-behind worker of an asyncio cache: one task per write-behind layer (on the
event loop of the cache's callers), which sends the layer's queue (``core/writequeue.py``)
in batches, retries them while the layer is down, and hands what fails for good to the
dead-letter sink (through a thread: file IO).

No lock: every call on the queue is made from the event loop, with no ``await`` inside
one. An ``asyncio.Condition`` (one per loop) is only there to sleep on and be woken.

A cache may outlive an event loop (``asyncio.run()`` called again, or an import-time
cache): when the loop that ran the task is gone, the next call starts a task on the new
loop, which first resends the batch that was in flight. At interpreter exit, a queue that
is not empty is delivered on a fresh loop (``atexit``), so writes acknowledged before a
normal exit are delivered or dead-lettered.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
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


class AsyncWriteBehindWorker(WorkerBase):
    """Sends one write-behind tier's queue from a task of its own."""

    def __init__(self, tier: Tier, state: CacheState) -> None:
        super().__init__(tier, sink_for)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Condition | None = None
        """Notified by the worker whenever a batch finishes (room, flush marks)."""
        self._wake = asyncio.Event()
        """Set by callers when the worker should look again (work due, flush, close)."""
        self._current: Batch | None = None  # taken and not finished: resent by a new task
        _OPEN.add(self)

    # ---------------------------------------------------------------- callers
    async def put(self, writes: list[tuple[Any, Op, Any, int]], block: bool) -> None:
        """Queue ``writes``; with ``block`` and ``when_full="block"``, wait for room up to
        ``block_timeout`` per write (``QueueFull`` after that, and at once otherwise)."""
        queue = self.queue
        changed = self._running()
        waits = block and self.options.when_full == "block"
        for key, op, payload, size in writes:
            if waits and queue.full(size, key):
                self._wake.set()  # the worker makes room: let it send what is due
                async with changed:
                    try:
                        await asyncio.wait_for(
                            changed.wait_for(lambda: not queue.full(size, key) or queue.closed),  # noqa: B023
                            self.options.block_timeout,
                        )
                    except TimeoutError:
                        pass
            if not self.put_now(key, op, payload, size):
                raise queue.refusal()  # still no room after block_timeout

    def put_now(self, key: Any, op: Op, payload: Any, size: int) -> bool:
        """Queue one write if there is room now; False (nothing queued) if not. Called
        from the event loop (no await: the fast path of ``set``)."""
        queue = self.queue
        now = time.monotonic()
        was_empty = not queue.ready
        if not queue.offer(key, op, payload, size, now):
            return False
        _HOLDING.add(self)
        self._running()
        if was_empty or queue.due(now):
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
        ``close_timeout``), then dead-letter what is left; False if it had to give up."""
        self.queue.close()
        self._wake.set()  # a worker asleep on an idle queue sees it closed, and ends
        if self.queue.idle:
            return True
        if await self._wait_for(lambda: self.queue.idle, close_timeout(self.tier, timeout)):
            return True
        self._abandon = True
        await self._wait_for(lambda: self.queue.idle, EXIT_TIMEOUT_SECONDS)
        return False

    async def _wait_for(self, predicate: Any, timeout: float | None) -> bool:
        changed = self._running()
        self._wake.set()
        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(predicate), timeout)
            except TimeoutError:
                return bool(predicate())
        return True

    # ---------------------------------------------------------------- the task
    def _running(self) -> asyncio.Condition:
        """This loop's condition, with the worker task running on it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._changed is None:
            self._loop, self._changed, self._task = loop, asyncio.Condition(), None
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._work(self._changed))
        return self._changed

    async def _work(self, changed: asyncio.Condition) -> None:
        queue = self.queue
        while True:
            batch = self._current
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
                        await asyncio.wait_for(wake.wait(), queue.next_due_in(now))
                    except TimeoutError:
                        pass
                batch = self._current = queue.take(now)
                if batch is None:
                    continue
            await self._send(batch, changed)
            self._current = None
            if batch.dead:
                try:  # file IO and fsync: off the event loop
                    await asyncio.to_thread(self.sink.append, dead_letter_records(self.tier, batch))
                except Exception:
                    log.exception(
                        "multilayercache: %s: %d dead write(s) could not be kept",
                        self.tier.name,
                        len(batch.dead),
                    )
                finally:
                    queue.settle(batch)
            async with changed:
                changed.notify_all()

    async def _send(self, batch: Batch, changed: asyncio.Condition) -> None:
        """Send ``batch`` until it is delivered or the queue gives up on it."""
        queue = self.queue
        while True:
            error = abandoned(self.tier) if self._abandon else await self._attempt(batch)
            if error is None:
                queue.done(batch)
                return
            delay = queue.failed(batch, error, time.monotonic())
            if delay is None:
                return
            async with changed:
                changed.notify_all()  # superseded writes may have left: room
            wake = self._wake
            wake.clear()
            deadline = time.monotonic() + delay
            while not self._abandon and (left := deadline - time.monotonic()) > 0:
                try:  # close() cuts the wait short
                    await asyncio.wait_for(wake.wait(), left)
                except TimeoutError:
                    break
                wake.clear()

    async def _attempt(self, batch: Batch) -> Exception | None:
        """One send of ``batch`` through the layer's breaker; the error, or ``None``."""
        tier = self.tier
        try:
            tier.admit()  # an open breaker: a transient error, the batch waits and retries
        except LayerError as refused:
            return refused
        try:
            await tier.layer.write_packed(payloads(batch))
        except Exception as failure:
            tier.settle(failure)
            return failure
        tier.settle(None)
        return None


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
        try:
            asyncio.run(worker.close(worker.options.close_timeout or EXIT_TIMEOUT_SECONDS))
        except Exception:
            log.exception("multilayercache: %s: flushing at exit failed", worker.tier.name)


__all__ = ["AsyncWriteBehindWorker"]
