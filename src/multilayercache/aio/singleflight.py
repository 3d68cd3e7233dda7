"""Request coalescing across asyncio tasks: concurrent callers for one key share one call
(the asyncio twin of ``multilayercache.sync.singleflight``: one flight per key, whether a
``do`` or a ``do_many`` started it; lent load slots; ``RecursiveLoadError``).

The call runs in a task of its own, which every caller awaits, the one that started it
included: cancelling a caller does not cancel it for the others, and any caller may stop
waiting at its timeout (``TimedOut``) while the call goes on. A forked child forgets the
calls in flight: they are tasks of its parent's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from .._forking import register_after_fork
from ..core.missing import MISSING
from ..core.nesting import Lead, check_not_waiting_for_itself, held_slot, leading
from ..core.plans import TimedOut


class _Flight:
    """A key's call in flight: ``task`` (of a batch: ``{key: value}``), its ``lead``."""

    __slots__ = ("task", "batch", "lead", "offered")

    def __init__(self, task: asyncio.Task[Any], batch: bool, lead: Lead) -> None:
        self.task = task
        self.batch = batch
        self.lead = lead
        self.offered: Any = None  # a stale entry waiting callers may answer with


class AsyncSingleFlight:
    """Coalesces concurrent calls per key across asyncio tasks."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}
        self.coalesced = 0
        register_after_fork(self)

    def _after_fork(self) -> None:
        self._flights = {}

    def __len__(self) -> int:
        """Keys in flight (not those of an event loop closed with them pending: they never
        end, and nobody can wait for them)."""
        return sum(
            1
            for flight in self._flights.values()
            if not flight.task.done() and not flight.task.get_loop().is_closed()
        )

    def __contains__(self, key: Hashable) -> bool:
        """Whether a call for ``key`` is in flight."""
        flight = self._flights.get(key)
        return flight is not None and not flight.task.done()

    async def do(
        self,
        key: Hashable,
        function: Callable[[], Awaitable[Any]],
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
        fallback: Any = None,
    ) -> Any:
        """``await function()``, run once for all the callers of ``key`` that overlap with
        it; timeouts as ``SingleFlight.do`` has them, for every caller."""
        while True:
            flight = self._flights.get(key)
            started = not _live(flight)
            if flight is None or started:
                flight = self._start([key], function, batch=False)[key]
            else:
                check_not_waiting_for_itself(flight.lead, key)
                self.coalesced += 1
            value = await self._wait(key, flight, soft_timeout, hard_timeout, fallback)
            if value is not MISSING or started:
                return value
            # Another's call that had no value for the key (a batch's, a failed refresh):
            # load it ourselves.

    async def do_many(
        self,
        keys: list[Hashable],
        function: Callable[[list[Hashable]], Awaitable[dict[Any, Any]]],
        hard_timeout: float | None = None,
    ) -> dict[Any, Any]:
        """``function(led)`` for the keys that no other task is loading right now, awaiting
        the other tasks' loads of the rest (see ``SingleFlight.do_many``); ``TimedOut`` for
        each key not loaded within ``hard_timeout``."""
        flights = {}
        led = []
        for key in keys:
            flight = self._flights.get(key)
            if flight is None or not _live(flight):
                led.append(key)
            else:
                check_not_waiting_for_itself(flight.lead, key)
                flights[key] = flight
        self.coalesced += len(keys) - len(led)
        if led:
            flights.update(self._start(led, lambda: function(led), batch=True))
        loop = asyncio.get_running_loop()
        deadline = None if hard_timeout is None else loop.time() + hard_timeout
        found: dict[Any, Any] = {}
        for key in keys:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            value = await self._wait(key, flights[key], None, left, None)
            if value is not MISSING:
                found[key] = value
        return found

    def offer(self, key: Hashable, stale: Any) -> None:
        """Let the callers waiting for the call of ``key`` answer with ``stale`` (an entry)
        when they stop waiting (called by the code the call runs)."""
        flight = self._flights.get(key)
        if flight is not None:
            flight.offered = stale

    def _start(
        self, keys: list[Hashable], function: Callable[[], Awaitable[Any]], batch: bool
    ) -> dict[Hashable, _Flight]:
        """Start the call of ``keys`` in a task that leads their flights."""
        lead = Lead(leading.get())

        async def led() -> Any:
            leading.set(lead)  # in the task's own context (a copy of this one)
            return await function()

        task = asyncio.ensure_future(led())
        flights = {key: _Flight(task, batch, lead) for key in keys}
        self._flights.update(flights)
        task.add_done_callback(lambda done: self._forget(flights, done))
        return flights

    def _forget(self, flights: dict[Hashable, _Flight], task: asyncio.Task[Any]) -> None:
        for key, flight in flights.items():
            if self._flights.get(key) is flight:
                del self._flights[key]
        if not task.cancelled():
            task.exception()  # mark it retrieved: every waiter got it already

    async def _wait(
        self,
        key: Hashable,
        flight: _Flight,
        soft_timeout: float | None,
        hard_timeout: float | None,
        fallback: Any,
    ) -> Any:
        """The value of ``key`` from ``flight`` (raised if it failed; ``MISSING`` if it was
        a batch's that had none), or ``TimedOut``."""
        hold = held_slot.get()
        lent = hold is not None and hold.gate.lend(hold, flight.lead)  # (see nesting.py)
        try:
            if soft_timeout is None and hard_timeout is None:
                result = await asyncio.shield(flight.task)
            else:
                start = asyncio.get_running_loop().time()
                result = _LATE
                if soft_timeout is not None:
                    result = await _within(flight.task, soft_timeout)
                    stale = _stale(flight, fallback)
                    if result is _LATE and stale is not None:
                        return TimedOut(stale, hard=False)
                if result is _LATE:
                    left = None
                    if hard_timeout is not None:
                        waited = asyncio.get_running_loop().time() - start
                        left = max(0.0, hard_timeout - waited)
                    result = await _within(flight.task, left)
                if result is _LATE:
                    return TimedOut(_stale(flight, fallback), hard=True)
        finally:
            if hold is not None and lent:
                hold.gate.take_back(hold, flight.lead)
        return result.get(key, MISSING) if flight.batch else result


def _live(flight: _Flight | None) -> bool:
    """Whether a caller may join ``flight``: running, and on this event loop. A finished
    one is forgotten soon (its done callback); one of another loop never ends if that
    loop was closed with it pending (and cannot be awaited from this one anyway)."""
    if flight is None or flight.task.done():
        return False
    return flight.task.get_loop() is asyncio.get_running_loop()


_LATE = object()  # a task not done within the time a caller waits for it


async def _within(task: asyncio.Task[Any], seconds: float | None) -> Any:
    """``task``'s result (raised if it failed), or ``_LATE`` if it is not done within
    ``seconds`` (``None``: no limit). The task goes on either way: it is not ours to
    cancel. (Not ``asyncio.timeout``, which cannot tell its timeout from a
    ``TimeoutError`` the task raised.)"""
    if seconds is None:
        return await asyncio.shield(task)
    done, _ = await asyncio.wait((task,), timeout=seconds)
    return task.result() if done else _LATE


def _stale(flight: _Flight, fallback: Any) -> Any:
    """What a caller that stops waiting for ``flight`` answers with: the stale entry the
    call offered, else its own (``None``: none)."""
    return fallback if flight.offered is None else flight.offered
