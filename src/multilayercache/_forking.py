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
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, Protocol

log = logging.getLogger("multilayercache")


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


def _reset_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it
    for reference in list(_registered.values()):
        obj = reference()
        if obj is None:
            continue
        try:
            obj._after_fork()
        except Exception:  # one broken reset must not leave the others undone
            log.exception("multilayercache: resetting %r after fork failed", obj)


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_reset_in_child)


__all__ = ["ForkAware", "register_after_fork"]
