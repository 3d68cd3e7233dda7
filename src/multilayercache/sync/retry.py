"""The waiting parts of load limits, for threads: ``LoadGate`` blocks until a load slot is
free, ``wait_for_token`` until a rate limit grants a call. The decisions are the core's
(``core.ratelimit.LoadLimit`` and ``RateLimiter``); ``multilayercache.aio.retry`` is the
asyncio twin, with the same names and parameters. (A layer call's retries wait in the
driver, ``sync/driver.py``, by ``core.backoff.RetryState``.)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from .._forking import register_after_fork
from ..core.errors import LoadGateTimeout
from ..core.nesting import Lead, SlotHold, held_slot, leading
from ..core.ratelimit import LoadLimit, RateLimiter


def wait_for_token(limiter: RateLimiter, wait: float, timeout: float | None) -> bool:
    """After ``limiter.try_take()`` answered ``wait`` (seconds until a token may be
    there): sleep, and try again, until a token is taken (True, counted as delayed) or
    none can come within ``timeout`` seconds from now (False, at once: no caller sleeps
    past its deadline for nothing; ``None``: no deadline). Waiters are not queued in
    order, as ``LoadGate``'s are not: the limit holds, fairness between waiters is rough.
    """
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    while time.monotonic() + wait <= deadline:
        time.sleep(wait)
        wait = limiter.try_take()
        if not wait:
            limiter.count("delayed")
            return True
    return False


class LoadGate:
    """At most ``max_in_flight`` loads at once across threads; the others wait for a slot,
    up to ``timeout`` seconds (``None``: as long as it takes), then ``LoadGateTimeout``.

    >>> gate = LoadGate(4, timeout=0.5)
    >>> with gate.slot():             # or: with gate.slot(timeout=0.1):
    ...     with gate.slot():         # nested in the load above: runs on its slot
    ...         gate.in_flight
    1

    ``slot()`` is for loads: it bounds *independent* loads (see ``core/nesting.py``). A
    block nested in a ``slot()`` block of the same gate, in the same thread or in a thread
    or task that inherited its context, runs on the outer block's slot without waiting;
    and a flight whose leader waits here goes on with the slot of a caller that holds one
    and waits for that flight (``lend``). ``acquire``/``release`` (and ``with gate:``)
    count plain slots.

    Like ``threading.Semaphore`` (a condition variable over a count, here the core's
    ``LoadLimit``), it does not queue waiters in order: a thread arriving as a slot frees
    may take it before one that waited; ``timeout`` bounds how long any thread waits.

    A forked child starts with every slot free: the threads that held them are not in the
    child. The forking thread's own slot (its loader forked) is then not the child's:
    ``slot()`` gives it back in the parent only (a ``release()`` of it in the child raises,
    as for any slot not taken), and loads nested in it in the child take slots of their own.
    """

    def __init__(self, max_in_flight: int, *, timeout: float | None = None) -> None:
        self.limit = LoadLimit(max_in_flight)
        self.timeout = timeout
        self.waiting = 0
        """Threads waiting for a slot now."""
        self.timeouts = 0
        """Acquisitions that gave up."""
        self.lent = 0
        """Loads that went on with a slot lent by a caller waiting for them."""
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
        self._take(timeout, None)

    def _take(self, timeout: float | None, lead: Lead | None) -> bool:
        """Take a slot (False), or go on with one lent to ``lead`` (True)."""
        wait = _seconds(self.timeout if timeout is None else timeout)
        borrowed = False

        def ready() -> bool:
            nonlocal borrowed
            borrowed = lead is not None and lead.lent_by(self)
            return borrowed or self.limit.try_enter()

        with self._condition:
            if ready():
                return borrowed
            self.waiting += 1
            try:
                entered = self._condition.wait_for(ready, wait)
            finally:
                self.waiting -= 1
            if not entered:
                self.timeouts += 1
                raise LoadGateTimeout.for_limit(self.limit, wait)
            if borrowed:
                self.lent += 1
            return borrowed

    def release(self) -> None:
        """Give a slot back (``RuntimeError`` if none is taken)."""
        with self._condition:
            self.limit.leave()
            self._condition.notify()

    @contextmanager
    def slot(self, timeout: float | None = None) -> Iterator[None]:
        """``with gate.slot(timeout):`` holds a slot for the block: at once if this context
        already runs on one of this gate's (nested), or on one lent to the flight this
        context leads."""
        held = held_slot.get()
        if held is not None and held.live and held.gate is self and held.forks == self._forks:
            yield
            return
        borrowed = self._take(timeout, leading.get())
        hold = SlotHold(self, self._forks)
        token = held_slot.set(hold)
        try:
            yield
        finally:
            hold.live = False
            held_slot.reset(token)
            # Not given back if borrowed, or in a forked child, which forgot it already.
            if not borrowed and self._forks == hold.forks:
                self.release()

    def lend(self, hold: SlotHold, lead: Lead) -> bool:
        """While its holder waits for the flight ``lead`` leads, lend that flight the slot
        ``hold`` (if it is a live slot of this gate: False otherwise); ``take_back`` after."""
        if not hold.live or hold.gate is not self or hold.forks != self._forks:
            return False
        with self._condition:
            lead.lenders.append(hold)
            self._condition.notify_all()  # a leader waiting for a slot goes on with it
        return True

    def take_back(self, hold: SlotHold, lead: Lead) -> None:
        """End a ``lend``: a load already going on with the slot keeps it until it ends."""
        with self._condition:
            lead.lenders.remove(hold)

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


__all__ = ["LoadGate", "LoadGateTimeout", "wait_for_token"]
