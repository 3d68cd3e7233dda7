"""Delivery of an ``AsyncMultilayerCache``'s events to its listeners.

As the sync twin (``multilayercache.sync.events``), a daemon thread takes the queued events,
so that no listener ever runs inside a request. A plain function listener is called on that
thread. A coroutine function listener runs on the cache's event loop (the one running when it
subscribed, or the last one an event was emitted from: its requests' loop), as a task of its
own: at most ``MAX_RUNNING`` of them at once (past that, events for it are dropped and
counted, so a coroutine that hangs cannot pile up tasks). While no such loop is known (a
listener given to the constructor, before any event came from a loop), or once it is
closed, it runs on the delivery thread, in a loop of that thread's own.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

from ..core.events import EventHub, EventListener
from ..sync.events import EventDelivery as ThreadDelivery

MAX_RUNNING = 1000
"""Coroutine listener calls running at once, per cache."""


class EventDelivery(ThreadDelivery):
    """Calls ``hub``'s listeners: plain functions on a thread, coroutine functions on the
    cache's event loop."""

    def __init__(self, hub: EventHub) -> None:
        super().__init__(hub)
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop coroutine listeners run on: the one the last event was emitted from."""
        self._running = 0
        self._running_lock = threading.Lock()

    def check(self, listener: EventListener) -> None:
        """Both plain and coroutine functions are welcome here; subscribed from a running
        loop, coroutine listeners run on it."""
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            pass

    def wake(self) -> None:
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:  # emitted from a thread (a layer's removals): keep the last
            pass
        super().wake()

    def call(self, listener: EventListener, event: Any) -> None:
        if not inspect.iscoroutinefunction(listener):
            super().call(listener, event)
            return
        loop = self.loop
        if loop is None or loop.is_closed():
            # No loop of the cache's known yet (it was not used from one since): run it here,
            # on a loop of this thread's own.
            asyncio.run(self._run(listener, event, counted=False))
            return
        with self._running_lock:
            if self._running >= MAX_RUNNING:
                self._hub.buffer.dropped += 1
                return
            self._running += 1
        call = self._run(listener, event)
        try:
            asyncio.run_coroutine_threadsafe(call, loop)
        except RuntimeError as error:  # the loop closed meanwhile
            call.close()
            self._done()
            self.failed(listener, error)

    async def _run(self, listener: EventListener, event: Any, counted: bool = True) -> None:
        try:
            await listener(event)
        except Exception as error:
            self.failed(listener, error)
        else:
            self._hub.delivered += 1
        finally:
            if counted:
                self._done()

    def idle(self) -> bool:
        """Every queued event delivered, coroutine listeners' calls included."""
        return super().idle() and not self._running

    def _done(self) -> None:
        with self._running_lock:
            self._running -= 1

    def _after_fork(self) -> None:
        super()._after_fork()
        self.loop = None  # the parent's loop does not run in the child
        self._running = 0
        self._running_lock = threading.Lock()


__all__ = ["MAX_RUNNING", "EventDelivery"]
