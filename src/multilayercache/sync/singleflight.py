"""Request coalescing across threads: concurrent callers for one key share one call.

The first caller for a key runs the function, in its own thread; callers that arrive while
it runs wait for it and get its result or its exception. A key has one flight whoever
started it: a ``do`` of one key and a ``do_many`` of a batch join each other's loads of
the keys they share (a batch that had no value for a key makes a ``do`` of it load it
anew). The in-flight entry is removed when the call ends, however it ends.
(``multilayercache.aio.singleflight`` is the asyncio twin.)

Waiting callers may stop waiting (``soft_timeout``, ``hard_timeout``): they get a
``TimedOut`` with the stale entry they could answer with, their own or one the running call
``offer``-ed, while the call goes on for the others. The caller that runs the call cannot
stop: it is the one running it. A caller waiting while it holds a load slot lends the slot
to the call it waits for, and one that would wait for a call it is itself running raises
``RecursiveLoadError`` (see ``core/nesting.py``).

A forked child forgets the calls in flight: the threads running them are not in the child,
so a caller there would wait for them forever; it makes its own call instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from .._build import twin
from .._forking import register_after_fork
from ..core.missing import MISSING
from ..core.nesting import Lead, check_not_waiting_for_itself, held_slot, leading
from ..core.plans import TimedOut

if TYPE_CHECKING:
    from .._core._flight_py import Call
else:  # compiled: the front door starts and ends a load in C (see ``_core/_flight_py.py``)
    Call = twin("multilayercache._core.flight", "multilayercache._core._flight_py").Call


class SingleFlight:
    """Coalesces concurrent calls per key across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, Call] = {}
        self.coalesced = 0  # callers (or, for batches, keys) that waited for another's call
        register_after_fork(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._calls = {}

    def __len__(self) -> int:
        """Keys in flight."""
        return len(self._calls)

    def __contains__(self, key: Hashable) -> bool:
        """Whether a call for ``key`` is in flight."""
        return key in self._calls

    def do(
        self,
        key: Hashable,
        function: Callable[[], Any],
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
        fallback: Any = None,
    ) -> Any:
        """``function()``, run once for all the callers of ``key`` that overlap with it.
        A caller that waits for another's call stops waiting after ``soft_timeout`` if it
        has a stale entry to answer with (``fallback``, or one the call offered), after
        ``hard_timeout`` in any case: then it gets ``TimedOut``."""
        while True:
            call = self.lead(key)
            if call is not None:
                break
            with self._lock:
                running = self._calls.get(key)
                if running is None:  # it ended meanwhile
                    continue
                self.coalesced += 1
                _watch(running)
            value = self._wait(key, running, soft_timeout, hard_timeout, fallback)
            if value is not MISSING:
                return value
            # Another's call that had no value for the key (a batch's, a failed refresh):
            # load it ourselves.
        failure: BaseException | None = None
        try:
            value = function()
        except BaseException as error:
            value, failure = None, error
        # End the call however often a signal handler's exception (KeyboardInterrupt, a
        # task's soft time limit) lands meanwhile, and raise it after: a call left in flight
        # would hold its key for good (its waiters until their hard timeout, this thread
        # with RecursiveLoadError). Inline: a handler may run as any function starts.
        interrupt = None
        while True:
            try:
                self.end(key, call, value, failure)
                if call.ended is None or call.ended.is_set():
                    break
            except BaseException as caught:
                interrupt = caught
        if failure is not None:
            raise failure
        if interrupt is not None:
            raise interrupt
        return value

    def lead(self, key: Hashable) -> Call | None:
        """Start the call of ``key`` for a caller that runs it itself and then ``end``-s it
        (in the same thread); ``None`` if a call of it is in flight: ``do`` joins it."""
        parent = leading.get()
        call = Call(Lead(parent))
        try:
            if self._calls.setdefault(key, call) is not call:  # (atomic under the GIL)
                return None
            call.token = leading.set(call.lead)
        except BaseException:  # a signal handler's, between the two: leave no call behind
            if self._calls.get(key) is call:
                del self._calls[key]
            leading.set(parent)
            raise
        return call

    def end(
        self, key: Hashable, call: Call, value: Any = None, error: BaseException | None = None
    ) -> None:
        """End the call of ``key`` that ``lead`` started: its waiters get ``value``, or
        ``error`` raised. Again after an interruption, it does what is left."""
        token, call.token = call.token, None
        if token is not None:  # (None: an interrupted end already reset it)
            leading.reset(token)
        calls = self._calls
        # Not ours any more if a fork happened meanwhile (this thread forked): the child's
        # calls are a new dict, where nothing else replaces a call in flight.
        if calls.get(key) is call:
            del calls[key]
        call.value, call.error = value, error  # ``call.finish``, inlined: every load runs it
        call.done = True
        ended = call.ended
        if ended is not None:
            ended.set()

    def do_many(
        self,
        keys: list[Hashable],
        function: Callable[[list[Hashable]], dict[Any, Any]],
        hard_timeout: float | None = None,
    ) -> dict[Any, Any]:
        """``function(led)`` for the keys that no other caller is loading right now (``led``),
        while this caller waits for the others' loads of the rest (up to ``hard_timeout``:
        ``TimedOut`` for a key whose load was not over by then); ``{key: value}`` for every
        key that got one. Each caller loads its own keys before it waits, so two callers
        that wait on each other's keys cannot deadlock."""
        lead = Lead(leading.get())
        calls: dict[Hashable, Call] = {}
        led = []
        with self._lock:
            for key in keys:
                if key not in calls:  # (``setdefault``: see ``lead``)
                    call = calls[key] = self._calls.setdefault(key, Call(lead))
                    if call.lead is lead:
                        led.append(key)
                    else:
                        _watch(call)
            self.coalesced += len(calls) - len(led)
        found: dict[Any, Any] = {}
        if led:
            token = leading.set(lead)
            try:
                loaded = function(led)
                for key in led:
                    calls[key].value = loaded.get(key, MISSING)
                found.update(loaded)
            except BaseException as error:
                for key in led:
                    calls[key].error = error
                raise
            finally:
                leading.reset(token)
                for key in led:
                    call = calls[key]
                    if self._calls.get(key) is call:  # (see ``end``)
                        del self._calls[key]
                    call.finish(call.value, call.error)
        deadline = None if hard_timeout is None else time.monotonic() + hard_timeout
        for key, call in calls.items():
            if call.lead is lead:
                continue  # loaded above
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            value = self._wait(key, call, None, left, None)
            if value is not MISSING:
                found[key] = value
        return found

    def offer(self, key: Hashable, stale: Any) -> None:
        """Let the callers waiting for the call of ``key`` answer with ``stale`` (an entry)
        when they stop waiting (called by the code the call runs)."""
        call = self._calls.get(key)
        if call is not None:
            call.offered = stale

    def _wait(
        self,
        key: Hashable,
        call: Call,
        soft_timeout: float | None,
        hard_timeout: float | None,
        fallback: Any,
    ) -> Any:
        """The result of another caller's ``call`` (raised if it failed), or ``TimedOut``."""
        check_not_waiting_for_itself(call.lead, key)
        hold = held_slot.get()
        lent = hold is not None and hold.gate.lend(hold, call.lead)
        try:
            if soft_timeout is None and hard_timeout is None:
                _ended(call)
            else:
                start = time.monotonic()
                if soft_timeout is not None and not _ended(call, soft_timeout):
                    stale = _stale(call, fallback)
                    if stale is not None:
                        return TimedOut(stale, hard=False)
                if hard_timeout is None:
                    _ended(call)
                elif not _ended(call, max(0.0, hard_timeout - (time.monotonic() - start))):
                    return TimedOut(_stale(call, fallback), hard=True)
        finally:
            if hold is not None and lent:
                hold.gate.take_back(hold, call.lead)
        if call.error is not None:
            raise call.error
        return call.value


def _watch(call: Call) -> None:
    """Before waiting for ``call`` (under the flight's lock): its ``ended``."""
    if call.ended is None:
        call.ended = threading.Event()


def _ended(call: Call, timeout: float | None = None) -> bool:
    """Wait until ``call`` (``_watch``-ed) has ended (``timeout``: for at most that many
    seconds); False if it had not by then."""
    assert call.ended is not None
    return call.done or call.ended.wait(timeout)


def _stale(call: Call, fallback: Any) -> Any:
    """What a caller that stops waiting for ``call`` answers with: the stale entry the call
    offered, else its own (``None``: none)."""
    return fallback if call.offered is None else call.offered
