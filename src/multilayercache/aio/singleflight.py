"""Request coalescing across asyncio tasks: concurrent callers for one key share one call
(the asyncio twin of ``multilayercache.sync.singleflight``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class AsyncSingleFlight:
    """Coalesces concurrent calls per key across asyncio tasks.

    The call runs in its own task, so cancelling one waiting caller does not cancel it for
    the others.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task] = {}
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._tasks)

    async def do(self, key: Hashable, function: Callable[[], Awaitable[Any]]) -> Any:
        task = self._tasks.get(key)
        if task is None:
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
