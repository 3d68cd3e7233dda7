"""Background refreshes for threads: a few daemon worker threads take the refreshes that
plans queue (``core/refresh.py``: stale before early, hot before cold, bounded) and run each
in the flight of its key, so that a caller who needs the key meanwhile waits for that
refresh instead of loading again. The asyncio twin is ``multilayercache.aio.worker``.

A forked child has none of its parent's workers: it starts its own at its first refresh
(``CacheState.after_fork`` forgets the refreshes the parent's were running or had queued)."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .._forking import register_after_fork
from ..core.plans import Refresh
from ..core.state import CacheState

if TYPE_CHECKING:
    from .driver import Driver

log = logging.getLogger("multilayercache")

WORKERS = 2
"""Refreshes run at once. A refresh mostly waits on IO; more workers only help a loader
that can take more concurrent calls, and the queue keeps the hottest keys first anyway."""
BATCH = 64
"""Keys refreshed together by one bulk loader call at most."""
IDLE_POLL = 0.005
"""Seconds between looks at the loads in flight while ``idle()`` waits for them to end."""


class RefreshWorkers:
    """The threads that run one manager's background refreshes (started on first use)."""

    def __init__(self, driver: Driver, state: CacheState, size: int = WORKERS) -> None:
        self._driver = driver
        self._state = state
        self._size = size
        self._ready = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._busy = 0
        register_after_fork(self)

    def _after_fork(self) -> None:
        # The thread that forked may be one of the workers (its loader forked): it goes on
        # with its refresh in the child, and is still busy with it.
        me = threading.current_thread()
        self._ready = threading.Condition(threading.Lock())
        self._threads = [thread for thread in self._threads if thread is me]
        self._busy = len(self._threads)

    def submit(self, step: Refresh) -> None:
        """Queue refreshes (each dropped if its key is queued or running already, or the
        budget is spent)."""
        with self._ready:
            queued = [
                self._state.refreshes.push(key, step.job, stale, frequency)
                for key, stale, frequency in step.items
            ]
            if not any(queued):
                return
            if len(self._threads) < self._size and self._busy >= len(self._threads):
                thread = threading.Thread(
                    target=self._work, name="multilayercache-refresh", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._ready.notify_all()

    def idle(self, timeout: float | None = None) -> bool:
        """Wait until no refresh is queued or running and no load is in flight (a load
        whose waiting callers gave up goes on in the thread that leads it); False on
        timeout. For tests and shutdown: a loader that calls it waits for itself."""
        deadline = None if timeout is None else time.monotonic() + timeout
        flight = self._driver.flight
        with self._ready:
            while self._busy or len(self._state.refreshes) or len(flight):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if len(flight):  # a flight's end is not signalled here: look again soon
                    left = IDLE_POLL if left is None else min(left, IDLE_POLL)
                self._ready.wait(left)
            return True

    def _work(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: len(self._state.refreshes) > 0)
                batch = self._state.refreshes.pop_batch(BATCH)
                self._busy += 1
            try:
                self._refresh(batch)
            except Exception:  # a plan's bug must not kill the worker
                log.exception("multilayercache: a background refresh failed")
            finally:
                with self._ready:
                    self._state.refreshes.finish([key for key, _ in batch])
                    self._busy -= 1
                    self._ready.notify_all()

    def _refresh(self, batch: list[tuple[Any, Any]]) -> None:
        run, flight = self._driver.run, self._driver.flight
        keys = [key for key, _ in batch]
        job = batch[0][1]
        if job.group is None:  # one key, and its plan answers with the key's value
            flight.do(keys[0], lambda: run(job.plan_for(keys)))
        else:
            flight.do_many(keys, lambda led: run(job.plan_for(led)) or {})
