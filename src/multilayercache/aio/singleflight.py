"""Request coalescing across asyncio tasks: concurrent callers for one key share one call
(the asyncio twin of ``multilayercache.sync.singleflight``). A forked child forgets the
calls in flight: they are tasks of its parent's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from .._forking import register_after_fork


class AsyncSingleFlight:
    """Coalesces concurrent calls per key across asyncio tasks.

    The call runs in its own task, so cancelling one waiting caller does not cancel it for
    the others.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task] = {}
        self._batched: dict[Hashable, asyncio.Task] = {}  # per key, the batch loading it
        self.coalesced = 0
        register_after_fork(self)

    def _after_fork(self) -> None:
        self._tasks = {}
        self._batched = {}

    def __len__(self) -> int:
        """Keys in flight."""
        return len(self._tasks) + len(self._batched)

    def __contains__(self, key: Hashable) -> bool:
        """Whether a call for ``key`` is in flight."""
        running = self._tasks.get(key) or self._batched.get(key)
        return running is not None and not running.done()

    async def do(self, key: Hashable, function: Callable[[], Awaitable[Any]]) -> Any:
        task = self._tasks.get(key)
        if task is None or task.done():  # a finished call is forgotten on the next tick
            task = asyncio.ensure_future(function())
            self._tasks[key] = task
            task.add_done_callback(lambda done, key=key: self._forget(key, done))
        else:
            self.coalesced += 1
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Task) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # mark it retrieved: every waiter got it already

    async def do_many(
        self,
        keys: list[Hashable],
        function: Callable[[list[Hashable]], Awaitable[dict[Any, Any]]],
    ) -> dict[Any, Any]:
        """``function(led)`` for the keys that no other task is loading right now, awaiting
        the other tasks' loads of the rest (see ``SingleFlight.do_many``)."""
        led = [key for key in keys if key not in self._batched or self._batched[key].done()]
        waits = {self._batched[key] for key in keys if key not in led}
        self.coalesced += len(keys) - len(led)
        batches = list(waits)
        if led:
            task = asyncio.ensure_future(function(led))
            for key in led:
                self._batched[key] = task
            task.add_done_callback(lambda done, led=led: self._forget_batch(led, done))
            batches.insert(0, task)
        found: dict[Any, Any] = {}
        wanted = set(keys)
        for batch in batches:
            loaded = await asyncio.shield(batch)
            found.update((key, value) for key, value in loaded.items() if key in wanted)
        return found

    def _forget_batch(self, keys: list[Hashable], task: asyncio.Task) -> None:
        for key in keys:
            if self._batched.get(key) is task:
                del self._batched[key]
        if not task.cancelled():
            task.exception()  # mark it retrieved: every waiter got it already
