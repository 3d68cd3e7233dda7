"""Request coalescing: concurrent callers for one key share one call.

``SingleFlight`` (threads) and ``AsyncSingleFlight`` (asyncio tasks): the first caller for a
key runs the function; callers that arrive while it runs wait for it and get its result or
its exception. The in-flight entry is removed when the call ends, however it ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class _Call:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    """Coalesces concurrent calls per key across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}
        self.coalesced = 0  # callers that waited for another's call

    def __len__(self) -> int:
        """Calls in flight."""
        return len(self._calls)

    def do(self, key: Hashable, function: Callable[[], Any]) -> Any:
        """``function()``, run once for all the callers of ``key`` that overlap with it."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if leader:
                call = self._calls[key] = _Call()
            else:
                self.coalesced += 1
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.value
        try:
            call.value = function()
            return call.value
        except BaseException as error:
            call.error = error
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()


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
