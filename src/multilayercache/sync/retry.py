"""The waiting parts of retries and load limits, for threads: ``call_with_retry`` sleeps
between tries (``time.sleep``), ``LoadGate`` blocks until a load slot is free. The
decisions are the core's (``core.backoff.RetryState``, ``core.ratelimit.LoadLimit``);
``multilayercache.aio.retry`` is the asyncio twin, with the same names and parameters.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from .._forking import register_after_fork
from ..core.backoff import RetryPolicy, RetryState
from ..core.ratelimit import LoadGateTimeout, LoadLimit

T = TypeVar("T")

_rng = random.Random()  # the default jitter source (random.Random is safe across threads)


def call_with_retry(
    function: Callable[[], T],
    policy: RetryPolicy,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """``function()``, tried again after a transient error (``policy.retry_on``) with full
    jitter backoff, within ``policy.attempts`` and ``policy.budget``. When it gives up it
    raises the last error, with a note saying how many tries it made. ``on_retry(error,
    delay)`` is called before each wait (to count or log retries).

    >>> tries = []
    >>> def flaky():
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise ConnectionResetError("dropped")
    ...     return "value"
    >>> call_with_retry(flaky, RetryPolicy(attempts=3, base=0.001)), len(tries)
    ('value', 3)
    """
    state = RetryState(policy, rng or _rng)
    start = clock()
    while True:
        try:
            return function()
        except Exception as error:
            delay = state.next_delay(error, clock() - start)
            if delay is None:
                if state.retries:
                    error.add_note(f"gave up after {state.retries + 1} tries")
                raise
            if on_retry is not None:
                on_retry(error, delay)
        time.sleep(delay)


class LoadGate:
    """At most ``max_in_flight`` loads at once across threads; the others wait for a slot,
    up to ``timeout`` seconds (``None``: as long as it takes), then ``LoadGateTimeout``.

    >>> gate = LoadGate(4, timeout=0.5)
    >>> with gate:                    # or: with gate.slot(timeout=0.1):
    ...     gate.in_flight
    1

    Like ``threading.Semaphore`` (a condition variable over a count, here the core's
    ``LoadLimit``), it does not queue waiters in order: a thread arriving as a slot frees
    may take it before one that waited; ``timeout`` bounds how long any thread waits.

    A forked child starts with every slot free: the threads that held them are not in the
    child. The forking thread's own slot (its loader forked) is then not the child's:
    ``slot()`` gives it back in the parent only (a ``release()`` of it in the child raises,
    as for any slot not taken).
    """

    def __init__(self, max_in_flight: int, *, timeout: float | None = None) -> None:
        self.limit = LoadLimit(max_in_flight)
        self.timeout = timeout
        self.waiting = 0
        """Threads waiting for a slot now."""
        self.timeouts = 0
        """Acquisitions that gave up."""
        self._condition = threading.Condition(threading.Lock())
        self._forks = 0  # forks this gate's process came from: ``slot()`` tells slots apart
        register_after_fork(self)

    def _after_fork(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self.limit.forget_in_flight()
        self.waiting = 0
        self._forks += 1

    @property
    def in_flight(self) -> int:
        """Slots taken now."""
        return self.limit.in_flight

    def acquire(self, timeout: float | None = None) -> None:
        """Take a slot, waiting up to ``timeout`` seconds (``None``: the gate's
        ``timeout``; ``math.inf``: forever); ``LoadGateTimeout`` if none came free."""
        wait = _seconds(self.timeout if timeout is None else timeout)
        with self._condition:
            if self.limit.try_enter():
                return
            self.waiting += 1
            try:
                entered = self._condition.wait_for(self.limit.try_enter, wait)
            finally:
                self.waiting -= 1
            if not entered:
                self.timeouts += 1
                raise LoadGateTimeout.for_limit(self.limit, wait)

    def release(self) -> None:
        """Give a slot back (``RuntimeError`` if none is taken)."""
        with self._condition:
            self.limit.leave()
            self._condition.notify()

    @contextmanager
    def slot(self, timeout: float | None = None) -> Iterator[None]:
        """``with gate.slot(timeout):`` holds a slot for the block."""
        self.acquire(timeout)
        forks = self._forks
        try:
            yield
        finally:
            if self._forks == forks:  # else a forked child, which forgot the slot already
                self.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<LoadGate {self.in_flight}/{self.limit.max_in_flight} in flight>"


def _seconds(timeout: float | None) -> float | None:
    """A timeout as ``Condition.wait_for`` takes it: ``None`` for forever."""
    if timeout is None or timeout == math.inf:
        return None
    return max(0.0, timeout)


__all__ = ["LoadGate", "LoadGateTimeout", "call_with_retry"]
