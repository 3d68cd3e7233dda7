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

Python runs a signal handler in the main thread, between two bytecodes. A main thread stuck
in C code (a long numpy or crypto call, a C driver's blocking call that ignores signals, or a
sleep it entered just as the signal came) would run ours only when that call returns, and a
process manager sends SIGKILL after its grace period (Kubernetes: 30 s). So the handler also
takes the signal *wakeup fd* (``signal.set_wakeup_fd``: CPython's C-level handler writes
the signal's number there at once, from any thread) when nothing else holds it, and a thread
of ours waits on it: at a SIGTERM that our handler would turn into delivering, it starts the
delivery itself. The end is then ``os._exit`` after ``END_GRACE_SECONDS`` if the main thread
still cannot take the re-raised SIGTERM. An event loop that takes the wakeup fd later
(asyncio's ``add_signal_handler``) takes it from us: its main thread wakes at every signal.
(Trio warns when it finds the wakeup fd taken: build the cache inside ``trio.run``, or call
``signal.set_wakeup_fd(-1)`` before it, to leave the fd to Trio.)
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
_delivering = threading.Lock()  # taken once, by whoever starts delivering (handler or watcher)
_delivered = False
_wakeup: tuple[int, int] | None = None  # our wakeup pipe (read end, write end)


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
    _watch_wakeups()
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
    if _delivered:  # our own second SIGTERM: every queue is delivered, end as the default
        _end()
        return None
    if callable(_previous):  # the application's handler decides how the process ends
        return _previous(signum, frame)
    if not _delivering.acquire(blocking=False):  # delivering already (or the watcher is)
        return None
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


def _watch_wakeups() -> None:
    """Take the signal wakeup fd if it is free, and wait on it from a thread of our own (see
    the module docstring). Main thread only, as ``install_sigterm_handler``."""
    global _wakeup
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # (CPython's handler must never block on it)
    try:
        holder = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        if holder != -1:  # an event loop's: give it back, its thread wakes at every signal
            signal.set_wakeup_fd(holder)
    except ValueError:  # not the main thread (after a fork from another thread)
        holder = write_end
    if holder != -1:
        os.close(read_end)
        os.close(write_end)
        return
    _wakeup = (read_end, write_end)
    threading.Thread(
        target=_wait_for_sigterm, args=(read_end,), name="multilayercache-signals", daemon=True
    ).start()


def _wait_for_sigterm(read_end: int) -> None:
    """Start delivering at a SIGTERM that ``_on_sigterm`` would deliver for, without waiting
    for the main thread to run it."""
    while True:
        try:
            numbers = os.read(read_end, 64)
        except OSError:  # closed (after a fork, in the child)
            return
        if not numbers:
            return
        if (
            signal.SIGTERM in numbers
            and not _delivered
            and not callable(_previous)
            and signal.getsignal(signal.SIGTERM) is _on_sigterm  # no handler replaced ours
            and _delivering.acquire(blocking=False)
        ):
            _deliver_then_end()
            return


def _after_fork_in_child() -> None:
    """A child starts undelivered, with a wakeup pipe and watcher of its own: it inherited
    the parent's pipe, which the parent's watcher reads (a child's SIGTERM would end the
    parent)."""
    global _wakeup, _delivering, _delivered
    _delivering, _delivered = threading.Lock(), False
    if _wakeup is None:
        return
    inherited, _wakeup = _wakeup, None
    try:
        holder = signal.set_wakeup_fd(-1)
        if holder == inherited[1]:
            _watch_wakeups()
        else:  # someone else's since: leave it to them
            signal.set_wakeup_fd(holder)
    except ValueError:  # forked from a thread that is not the main one: left without
        pass
    for fd in inherited:
        os.close(fd)


os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["close_all", "install_sigterm_handler", "watch"]
