"""Delivery of a manager's events to its listeners, on a thread of its own (sync).

``EventHub.emit`` (``core/events.py``) only queues an event and calls ``wake``; this
worker's daemon thread, started with the first listener, takes the queued events and calls
each listener in turn. A listener that raises is logged (at most once per 10 s) and
counted, and the next one still runs; a listener that hangs holds up this thread only:
events then wait in the hub's bounded buffer, and once it is full new ones are dropped and
counted (``cache.events.stats()``). A forked child starts a thread of its own. The asyncio
twin is ``multilayercache.aio.events``.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import weakref
from typing import Any

from .._forking import register_after_fork
from ..core.events import EventHub, EventListener
from ..core.log import ThrottledWarning

log = logging.getLogger("multilayercache")

BATCH = 256
"""Events taken from the hub at a time."""
IDLE_CHECK_SECONDS = 5.0
"""How often an idle thread checks that its hub still exists."""
CLOSE_DELIVERY_SECONDS = 1.0
"""How long ``close`` waits for the queued events to reach the listeners: a listener that
hangs must not hold up a process that is shutting down."""


class EventDelivery:
    """Calls ``hub``'s listeners with its events, on a daemon thread (started on the first
    event)."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._warn = ThrottledWarning()
        self._signal = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.delivering = False
        """The thread holds events it took from the buffer and has not delivered yet."""
        hub.wake = self.wake
        register_after_fork(self)

    def check(self, listener: EventListener) -> None:
        """Raise ``TypeError`` for a listener this cache cannot call."""
        if inspect.iscoroutinefunction(listener):
            raise TypeError(
                f"{listener!r} is a coroutine function: MultilayerCache calls event listeners "
                "on a thread; subscribe it to an AsyncMultilayerCache, or pass a plain function"
            )

    def wake(self) -> None:
        """An event was queued (from any thread; never blocks for long)."""
        if self._thread is None:
            self._start()
        self._signal.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=_deliver_forever,
                args=(weakref.ref(self), self._signal),
                name="multilayercache-events",
                daemon=True,
            )
            self._thread.start()

    def deliver_pending(self) -> int:
        """Call the listeners with the queued events; how many were taken."""
        hub = self._hub
        events = hub.buffer.take(BATCH)
        for event in events:
            for listener in hub.listeners:
                self.call(listener, event)
        return len(events)

    def idle(self) -> bool:
        """Every event queued so far has reached the listeners."""
        return not len(self._hub.buffer) and not self.delivering

    def drain(self, timeout: float = CLOSE_DELIVERY_SECONDS) -> bool:
        """Wait up to ``timeout`` seconds for the queued events to be delivered (``close``);
        whether they were."""
        deadline = time.monotonic() + timeout
        if self._thread is None and len(self._hub.buffer):
            self.wake()
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            self._signal.set()
            time.sleep(0.005)
        return True

    def call(self, listener: EventListener, event: Any) -> None:
        try:
            listener(event)
        except Exception as error:
            self.failed(listener, error)
        else:
            self._hub.delivered += 1

    def failed(self, listener: Any, error: BaseException) -> None:
        hub = self._hub
        hub.listener_errors += 1
        self._warn(
            "multilayercache: event listener %r raised %s: %s (%d errors so far)",
            listener,
            type(error).__name__,
            error,
            hub.listener_errors,
        )

    def _after_fork(self) -> None:
        # The parent's thread is not the child's: the next event starts one (and any event
        # queued before the fork is delivered by it).
        self._signal = threading.Event()
        self._start_lock = threading.Lock()
        self._thread = None
        self.delivering = False  # the parent's thread was; none of the child's is
        if len(self._hub.buffer):
            self.wake()


def _deliver_forever(
    delivery_ref: weakref.ReferenceType[EventDelivery], signal: threading.Event
) -> None:
    """Wait for a wake-up, deliver until the buffer is empty, again; end when the delivery
    is gone (its cache was collected) or replaced this thread after a fork."""
    while True:
        signal.wait(IDLE_CHECK_SECONDS)
        signal.clear()
        delivery = delivery_ref()
        if delivery is None or delivery._signal is not signal:
            return
        delivery.delivering = True  # before taking: ``drain`` must not see an idle moment
        try:
            while delivery.deliver_pending():
                pass
        except Exception:  # never lose the thread: the next wake-up tries again
            log.exception("multilayercache: delivering events failed")
        finally:
            delivery.delivering = False
        del delivery


__all__ = ["CLOSE_DELIVERY_SECONDS", "EventDelivery"]
