"""Background refreshes for asyncio: a few worker tasks take the refreshes that plans queue
(``core/refresh.py``) and run each in the flight of its key (the asyncio twin of
``multilayercache.sync.worker``). Workers belong to the running event loop; a new loop (or a
forked child) gets new ones."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .._forking import register_after_fork
from ..core.plans import Refresh
from ..core.state import CacheState

if TYPE_CHECKING:
    from .driver import AsyncDriver

log = logging.getLogger("multilayercache")

WORKERS = 2
"""Refreshes run at once (see ``multilayercache.sync.worker.WORKERS``)."""
BATCH = 64
"""Keys refreshed together by one bulk loader call at most."""


class RefreshWorkers:
    """The tasks that run one manager's background refreshes (started on first use)."""

    def __init__(self, driver: AsyncDriver, state: CacheState, size: int = WORKERS) -> None:
        self._driver = driver
        self._state = state
        self._size = size
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = 0
        self._refreshing: set[Any] = set()  # keys this loop's tasks are refreshing
        register_after_fork(self)

    def _after_fork(self) -> None:
        self._loop, self._tasks, self._busy = None, set(), 0
        self._refreshing = set()

    def _on_this_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop. When it is not the one the tasks ran on, those tasks are gone
        (their loop ended, maybe closed with them pending): their keys are no longer being
        refreshed, and may be again."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._state.refreshes.finish(list(self._refreshing))
            self._loop, self._tasks, self._busy, self._refreshing = loop, set(), 0, set()
        return loop

    def submit(self, step: Refresh) -> None:
        """Queue refreshes (each dropped if its key is queued or running already, or the
        budget is spent)."""
        loop = self._on_this_loop()
        queued = [
            self._state.refreshes.push(key, step.job, stale, frequency)
            for key, stale, frequency in step.items
        ]
        if not any(queued):
            return
        if len(self._tasks) < self._size and self._busy >= len(self._tasks):
            task = loop.create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def idle(self, timeout: float | None = None) -> bool:
        """Wait until no refresh is queued or running and no load is in flight (a load
        whose callers all gave up goes on in its task); False on timeout."""
        deadline = None if timeout is None else self._on_this_loop().time() + timeout
        flight = self._driver.flight
        while self._busy or len(self._state.refreshes) or len(flight):
            if deadline is not None and asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def _work(self) -> None:
        # A worker ends when the queue is empty; the next refresh starts another.
        while True:
            batch = self._state.refreshes.pop_batch(BATCH)
            if not batch:
                return
            keys = [key for key, _ in batch]
            self._busy += 1
            self._refreshing.update(keys)
            try:
                await self._refresh(batch)
            except Exception:  # a plan's bug must not kill the worker
                log.exception("multilayercache: a background refresh failed")
            finally:
                self._state.refreshes.finish(keys)
                self._refreshing.difference_update(keys)
                self._busy -= 1

    async def _refresh(self, batch: list[tuple[Any, Any]]) -> None:
        run, flight = self._driver.run, self._driver.flight
        keys = [key for key, _ in batch]
        job = batch[0][1]
        if job.group is None:  # one key, and its plan answers with the key's value
            await flight.do(keys[0], lambda: run(job.plan_for(keys)))
        else:

            async def many(led: list[Any]) -> dict[Any, Any]:
                return (await run(job.plan_for(led))) or {}

            await flight.do_many(keys, many)
