"""Removal listeners of an ``InMemoryLayer``: delivery off the request path.

``InMemoryLayer(max_size=..., removal_listener=fn)`` (or ``layer.add_removal_listener(fn)``)
calls ``fn(key, value, cause)`` for every entry that leaves the layer, ``cause`` one of
``core.events.REMOVAL_CAUSES`` (as Caffeine's ``RemovalCause``):

* ``evicted``: the size or weight bound made room; ``rejected``: a new entry lost
  W-TinyLFU admission (it stays readable until the next new key is written, and is
  reported when it leaves, whatever takes it then), or could never fit;
* ``expired``: its TTL ran out (reported when the layer finds it gone: a read, a write, or
  ``len``, since nothing scans the layer in the background);
* ``replaced``: a ``set`` or ``incr`` wrote over a live entry (the old value is reported);
* ``invalidated``: ``delete``, ``clear``, and the managers' tag, prefix and backplane drops.

A value turned away by a write (heavier than the whole layer, or its hash crowded by hash
flooding) is reported ``rejected`` at once, as ``stats().rejections`` counts it; a value
written already expired (a TTL of 0) never entered, and is not reported.

How: the layer records each removal in a bounded log while it holds its lock (the compiled
twin: a reference to the key and to the value in a C array, no Python code; ``removals.pxd``),
and wakes this module's ``RemovalDelivery``, one daemon thread per layer that has
listeners, which takes the log and calls the listeners. So a listener never runs inside a
``get`` or a ``set``, may call the cache, and a slow one delays only later notifications.
When the log is full (``removal_buffer`` removals waiting, 8,192 by default) a removal is
dropped and counted; the cache never waits for a listener. A listener that raises is
logged (at most once per 10 s) and counted; one that hangs stops its layer's deliveries
(the log fills, and drops are counted), never the cache. ``layer.removal_stats()`` tells
what was delivered, dropped and failed. In a forked child the thread is started again.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..._forking import register_after_fork
from ...core.events import REMOVAL_CAUSES, EventStats, RemovalListener
from ...core.log import ThrottledWarning

log = logging.getLogger("multilayercache")

DEFAULT_REMOVAL_BUFFER = 8192
"""Removals that may wait for delivery, per layer; past that they are dropped (counted)."""
BATCH = 1024
"""Removals the pure twin hands over per take (the compiled one: a whole half of its log)."""
IDLE_CHECK_SECONDS = 5.0
"""How often an idle delivery thread checks that its layer still exists."""


def checked_listener(listener: object) -> RemovalListener:
    if not callable(listener):
        raise TypeError(f"a removal listener must be callable, got {listener!r}")
    return listener


def checked_buffer_size(size: Any) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"removal_buffer must be an int >= 1, got {size!r}")
    return size


class RemovalDelivery:
    """The listeners of one layer and the thread that calls them (started with the first
    listener). ``layer._take_removals()`` hands over what was recorded, as
    ``(key, value, cause_code)`` tuples."""

    def __init__(self, layer: Any) -> None:
        self._layer = weakref.ref(layer)
        self.name: str = layer.name
        self.listeners: tuple[RemovalListener, ...] = ()
        self.delivered = 0
        self.listener_errors = 0
        self._warn = ThrottledWarning()
        self._signal = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        register_after_fork(self)

    def add(self, listener: RemovalListener) -> None:
        self.listeners = (*self.listeners, listener)
        self._ensure_thread()

    def remove(self, listener: RemovalListener) -> bool:
        """Forget ``listener``; whether any listener is left."""
        self.listeners = tuple(known for known in self.listeners if known is not listener)
        return bool(self.listeners)

    def wake(self) -> None:
        """Removals were recorded (called by the layer, out of its lock in the compiled
        twin; never blocks)."""
        self._signal.set()

    def stats(self, dropped: int, pending: int) -> EventStats:
        return EventStats(self.delivered, dropped, self.listener_errors, pending)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=_deliver_forever,
                args=(weakref.ref(self), self._signal),
                name=f"multilayercache-removals-{self.name}",
                daemon=True,
            )
            self._thread.start()

    def deliver_pending(self) -> int:
        """Take what the layer recorded and call the listeners; how many removals were
        taken (0: nothing was waiting, or the layer is gone)."""
        layer = self._layer()
        if layer is None:
            return 0
        taken = layer._take_removals()
        del layer  # (the thread must not keep the layer alive while it waits)
        for key, value, code in taken:
            cause = REMOVAL_CAUSES[code]
            for listener in self.listeners:
                try:
                    listener(key, value, cause)
                except Exception as error:
                    self.listener_errors += 1
                    self._warn(
                        "%s: a removal listener raised %s (%d errors so far)",
                        self.name,
                        _describe(error),
                        self.listener_errors,
                    )
                else:
                    self.delivered += 1
        return len(taken)

    def _after_fork(self) -> None:
        # The parent's thread is not the child's: start one, for what is recorded already.
        self._signal = threading.Event()
        self._start_lock = threading.Lock()
        self._thread = None
        if self.listeners:
            self._ensure_thread()
            self._signal.set()


def _deliver_forever(
    delivery_ref: Callable[[], RemovalDelivery | None], signal: threading.Event
) -> None:
    """The delivery thread: wait for a wake-up, deliver until the log is empty, again; end
    once the layer (or, after a fork, this thread's own signal) is gone."""
    while True:
        signal.wait(IDLE_CHECK_SECONDS)
        signal.clear()
        delivery = delivery_ref()
        if delivery is None or delivery._signal is not signal or delivery._layer() is None:
            return
        try:
            while delivery.deliver_pending():
                pass
        except Exception:  # never lose the thread: the next wake-up tries again
            log.exception("multilayercache: %s: delivering removals failed", delivery.name)
        del delivery


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = [
    "BATCH",
    "DEFAULT_REMOVAL_BUFFER",
    "RemovalDelivery",
    "checked_buffer_size",
    "checked_listener",
]
