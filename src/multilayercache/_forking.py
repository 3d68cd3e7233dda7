"""What a forked child does with state inherited from its parent's threads.

A pre-fork server (gunicorn, uwsgi, ``multiprocessing`` with the fork start method) forks
after imports and warm-up, while other threads may be inside the cache. The child has only
the thread that called ``fork()``: a lock another thread held stays held forever, a load
another thread was running never ends, a worker thread is gone. Every object that holds such
state registers here and is reset in the child, before the child runs any other code.

    class SingleFlight:
        def __init__(self) -> None:
            ...
            register_after_fork(self)

        def _after_fork(self) -> None:   # in the child: forget the parent's threads
            self._lock = threading.Lock()
            self._calls.clear()

Objects are held weakly: registering costs nothing once the object is gone. Resets run in
registration order, which is construction order: a cache's parts before the cache.

An object whose state a reset cannot repair (the pure-Python L1, whose lists a thread may
have been halfway through updating) may also define ``_hold_for_fork(deadline)``: called in
the parent just before ``fork()``, it takes the object's lock, so that the child's copy is
consistent, waiting until ``deadline`` (``time.monotonic()``) at most, since a holder that
is stuck (in a key's ``__eq__``) must not hang ``fork()``; all holds share one deadline,
``HOLD_SECONDS`` away. ``_end_fork_hold()`` lets go in the parent after ``fork()``; in the
child, ``_after_fork()`` does (and learns from the object itself whether the hold was got).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Protocol

log = logging.getLogger("multilayercache")


HOLD_SECONDS = 0.2
"""How long ``fork()`` waits, in all, for the locks of objects that hold them across it. A
holder normally lets go within one thread switch (a few ms, even with 8 busy threads)."""


class ForkAware(Protocol):
    def _after_fork(self) -> None: ...


_registered: dict[int, weakref.ref[Any]] = {}
_next = 0
_lock = threading.Lock()


def register_after_fork(obj: ForkAware) -> None:
    """Call ``obj._after_fork()`` in the child of every later ``fork()``, while ``obj``
    lives."""
    global _next
    with _lock:
        number = _next
        _next += 1
        _registered[number] = weakref.ref(obj, lambda _: _registered.pop(number, None))


def _each(method: str, *args: Any) -> None:
    """``obj.method(*args)`` for every live object that has ``method``, in registration
    order; one that fails is logged and the others still run."""
    for reference in list(_registered.values()):
        obj = reference()
        call = None if obj is None else getattr(obj, method, None)
        if call is None:
            continue
        try:
            call(*args)
        except Exception:  # one broken reset must not leave the others undone
            log.exception("multilayercache: %s of %r around a fork failed", method, obj)


def _hold_before_fork() -> None:
    _each("_hold_for_fork", time.monotonic() + HOLD_SECONDS)


def _end_holds_in_parent() -> None:
    _each("_end_fork_hold")


def _reset_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it
    _each("_after_fork")


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(
        before=_hold_before_fork,
        after_in_parent=_end_holds_in_parent,
        after_in_child=_reset_in_child,
    )


__all__ = ["ForkAware", "register_after_fork"]
