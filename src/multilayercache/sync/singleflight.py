"""Request coalescing across threads: concurrent callers for one key share one call.

The first caller for a key runs the function; callers that arrive while it runs wait for it
and get its result or its exception. The in-flight entry is removed when the call ends,
however it ends. (``multilayercache.aio.singleflight`` is the asyncio twin.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
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
