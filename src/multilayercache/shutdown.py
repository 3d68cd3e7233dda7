"""Ending the process without losing acknowledged writes.

SIGTERM is how process managers stop a service (systemd, Kubernetes, Docker, gunicorn's
master, supervisord). Python leaves SIGTERM at its default disposition, which ends the
process at once: no ``finally``, no ``atexit``, and every write that a write-behind queue
acknowledged but had not sent yet would be gone.

So when the first write-behind worker is built in the main thread, ``install_sigterm_handler``
puts a handler in front of SIGTERM (it can be called by hand from the main thread, for a
cache built elsewhere):

* **The application has a handler of its own** (a framework's graceful shutdown): ours calls
  it, and that is all. The application decides how and when it ends; a normal exit delivers
  every queue (``atexit``), and so does ``close()``.
* **SIGTERM had its default disposition**: ours closes every write-behind worker on a thread
  of its own (new writes are refused with ``WriteQueueClosed``, queued ones delivered, what
  cannot go within ``WriteBehind.close_timeout`` dead-lettered), while the program goes on;
  then it restores the default and raises SIGTERM again, so the process ends exactly as
  SIGTERM would have ended it (killed by signal 15), with nothing acknowledged lost. The
  close runs off the signal handler: the main thread may have been interrupted inside the
  cache, holding one of its locks, and an asyncio worker needs its event loop, which the
  handler would block.
* **SIGTERM is ignored** (``SIG_IGN``): it stays ignored.

Installed after ours, an application's handler replaces it: that handler then decides, as
above. A process ended by SIGKILL runs nothing: only ``WriteBehind(journal=...)`` keeps its
writes (``multilayercache.journal``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Any, Protocol

log = logging.getLogger("multilayercache")

END_GRACE_SECONDS = 5.0
"""After delivering, how long the main thread has to take the re-raised SIGTERM before the
process ends itself (``os._exit``): a main thread stuck in C code never runs handlers."""


class Closable(Protocol):
    def close_blocking(self, timeout: float | None = None) -> bool: ...


_watched: weakref.WeakSet[Any] = weakref.WeakSet()
_previous: Any = None
_installed = False
_ending = False
_delivered = False


def watch(worker: Closable) -> None:
    """Close ``worker`` (``close_blocking``) before a SIGTERM ends the process; installs the
    handler when called from the main thread."""
    _watched.add(worker)
    install_sigterm_handler()


def install_sigterm_handler() -> bool:
    """Put the handler in front of SIGTERM (see the module docstring). Only the main
    thread can: returns False elsewhere, or when SIGTERM is ignored or handled from C.
    Idempotent."""
    global _installed, _previous
    if _installed:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is signal.SIG_IGN or current is None:
        return False
    _previous = current
    signal.signal(signal.SIGTERM, _on_sigterm)
    _installed = True
    return True


def close_all(timeout: float | None = None) -> bool:
    """Close every write-behind worker now, all at once (each within ``timeout``, default
    its own ``close_timeout``). True if none had to give up."""
    workers = list(_watched)
    results: list[bool] = []

    def close(worker: Closable) -> None:
        try:
            results.append(worker.close_blocking(timeout))
        except Exception:
            log.exception("multilayercache: closing %r at shutdown failed", worker)
            results.append(False)

    threads = [threading.Thread(target=close, args=(worker,), daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return all(results)


def _on_sigterm(signum: int, frame: FrameType | None) -> Any:
    global _ending
    if _delivered:  # our own second SIGTERM: every queue is delivered, end as the default
        _end()
        return None
    if callable(_previous):  # the application's handler decides how the process ends
        return _previous(signum, frame)
    if _ending:  # delivering already
        return None
    _ending = True
    try:
        threading.Thread(
            target=_deliver_then_end, name="multilayercache-sigterm", daemon=True
        ).start()
    except RuntimeError:  # the interpreter is shutting down: no new threads
        close_all()
        _end()
    return None


def _deliver_then_end() -> None:
    global _delivered
    try:
        close_all()
    finally:
        _delivered = True
        os.kill(os.getpid(), signal.SIGTERM)  # the main thread's handler ends the process
        time.sleep(END_GRACE_SECONDS)
        os._exit(128 + signal.SIGTERM)


def _end() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


__all__ = ["close_all", "install_sigterm_handler", "watch"]
