"""The waiting parts of load limits, for asyncio: ``LoadGate`` awaits a free load slot,
``wait_for_token`` a rate limit's grant. The twin of ``multilayercache.sync.retry``: the
same names and parameters; the decisions are the core's (``core.ratelimit.LoadLimit`` and
``RateLimiter``). (A layer call's retries wait in the driver, ``aio/driver.py``.)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from types import TracebackType

from .._forking import register_after_fork
from ..core.errors import LoadGateTimeout
from ..core.nesting import Lead, SlotHold, held_slot, leading
from ..core.ratelimit import LoadLimit, RateLimiter


async def wait_for_token(limiter: RateLimiter, wait: float, timeout: float | None) -> bool:
    """After ``limiter.try_take()`` answered ``wait``: sleep and try again until a token
    is taken (True, counted as delayed), or none can come within ``timeout`` seconds
    (False, at once); see ``multilayercache.sync.retry.wait_for_token``."""
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    while time.monotonic() + wait <= deadline:
        await asyncio.sleep(wait)
        wait = limiter.try_take()
        if not wait:
            limiter.count("delayed")
            return True
    return False


class LoadGate:
    """At most ``max_in_flight`` loads at once across asyncio tasks; the others wait for a
    slot, up to ``timeout`` seconds (``None``: as long as it takes), then
    ``LoadGateTimeout``.

    ``async with gate:`` (or ``async with gate.slot(timeout=0.1):``) holds a slot for the
    block. Waiters are served first come, first served: a freed slot is handed straight to
    the oldest waiter (like ``asyncio.Semaphore``), and a waiter that times out or is
    cancelled as it is handed one passes it on, so no slot is lost.

    ``slot()`` is for loads, as in ``multilayercache.sync.retry.LoadGate``: a block nested
    in a ``slot()`` block of the same gate (in the same task, or a task created inside it,
    which copies its context) runs on the outer block's slot, and a flight whose leader
    waits here goes on with the slot a waiting caller lends it (``lend``).

    A forked child starts with every slot free and no waiter: the tasks that held or
    awaited them belong to its parent's event loop.
    """

    def __init__(self, max_in_flight: int, *, timeout: float | None = None) -> None:
        self.limit = LoadLimit(max_in_flight)
        self.timeout = timeout
        self.timeouts = 0
        """Acquisitions that gave up."""
        self.lent = 0
        """Loads that went on with a slot lent by a caller waiting for them."""
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._leaders: dict[Lead, asyncio.Future[bool]] = {}  # waiters a lend can wake
        self._forks = 0  # forks this gate's process came from: ``slot()`` tells slots apart
        register_after_fork(self)

    def _after_fork(self) -> None:
        self.limit.forget_in_flight()
        self._waiters = deque()
        self._leaders = {}
        self._forks += 1

    @property
    def in_flight(self) -> int:
        """Slots taken now."""
        return self.limit.in_flight

    @property
    def waiting(self) -> int:
        """Tasks waiting for a slot now."""
        return len(self._waiters)

    async def acquire(self, timeout: float | None = None) -> None:
        """Take a slot, waiting up to ``timeout`` seconds (``None``: the gate's
        ``timeout``; ``math.inf``: forever); ``LoadGateTimeout`` if none came free."""
        await self._take(timeout, None)

    async def _take(self, timeout: float | None, lead: Lead | None) -> bool:
        """Take a slot (False), or go on with one lent to ``lead`` (True)."""
        if lead is not None and lead.lent_by(self):
            return True
        wait = _seconds(self.timeout if timeout is None else timeout)
        if not self._waiters and self.limit.try_enter():
            return False
        if wait == 0:
            self.timeouts += 1
            raise LoadGateTimeout.for_limit(self.limit, wait)
        # Resolved by release(), which hands over its slot (False), or by lend() (True).
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if lead is not None:
            self._leaders[lead] = future
        try:
            async with asyncio.timeout(wait):
                borrowed = await future
        except BaseException as error:
            if future.done() and not future.cancelled():
                if not future.result():
                    self.release()  # handed a slot as we gave up: pass it on
            else:
                with suppress(ValueError):  # release() may have dropped it already
                    self._waiters.remove(future)
            if isinstance(error, TimeoutError):
                self.timeouts += 1
                raise LoadGateTimeout.for_limit(self.limit, wait) from None
            raise
        finally:
            if lead is not None:
                self._leaders.pop(lead, None)
        if borrowed:
            self.lent += 1
        return borrowed

    def release(self) -> None:
        """Give a slot back (``RuntimeError`` if none is taken): to the oldest waiter if
        any, else to the pool."""
        # Waiters exist only while every slot is taken, so a release without an acquire
        # finds none and reaches leave(), which raises.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)  # the slot changes hands: in_flight stays
                return
        self.limit.leave()

    @asynccontextmanager
    async def slot(self, timeout: float | None = None) -> AsyncIterator[None]:
        """``async with gate.slot(timeout):`` holds a slot for the block: at once if this
        context already runs on one of this gate's (nested), or on one lent to the flight
        this context leads."""
        held = held_slot.get()
        if held is not None and held.live and held.gate is self and held.forks == self._forks:
            yield
            return
        borrowed = await self._take(timeout, leading.get())
        hold = SlotHold(self, self._forks)
        token = held_slot.set(hold)
        try:
            yield
        finally:
            hold.live = False
            with suppress(ValueError):  # closed from another context (a task destroyed)
                held_slot.reset(token)
            # Not given back if borrowed, or in a forked child, which forgot it already.
            if not borrowed and self._forks == hold.forks:
                self.release()

    def lend(self, hold: SlotHold, lead: Lead) -> bool:
        """While its holder waits for the flight ``lead`` leads, lend that flight the slot
        ``hold`` (if it is a live slot of this gate: False otherwise); ``take_back`` after."""
        if not hold.live or hold.gate is not self or hold.forks != self._forks:
            return False
        lead.lenders.append(hold)
        waiter = self._leaders.pop(lead, None)
        if waiter is not None and not waiter.done():
            with suppress(ValueError):
                self._waiters.remove(waiter)  # (a done waiter in line would stall others)
            waiter.set_result(True)  # the leader goes on with the lent slot
        return True

    def take_back(self, hold: SlotHold, lead: Lead) -> None:
        """End a ``lend``: a load already going on with the slot keeps it until it ends."""
        lead.lenders.remove(hold)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<LoadGate {self.in_flight}/{self.limit.max_in_flight} in flight>"


def _seconds(timeout: float | None) -> float | None:
    """A timeout as ``asyncio.timeout`` takes it: ``None`` for forever."""
    if timeout is None or timeout == math.inf:
        return None
    return max(0.0, timeout)


__all__ = ["LoadGate", "LoadGateTimeout", "wait_for_token"]
