"""The records of a load in flight (pure-Python twin of ``flight.pyx``): who leads it, and
how the callers waiting for it learn its outcome.

* ``Lead``: one caller's lead of a flight (of a key, or of a batch's keys): the load slots
  that callers waiting for it lend it (``lenders``) and the lead it runs inside of
  (``parent``: ``None`` at the top). See ``core/nesting.py``.
* ``Call``: one key's call in a thread flight (``sync/singleflight.py``): its lead, its
  outcome once ``done``, and the stale entry it ``offered`` to callers who stop waiting.

A waiter learns that the call ended without a lock on the caller's path (most calls are
never waited for, and an ``Event`` costs more to make than a load's fast path): the waiter
makes ``ended`` and then looks at ``done``; the caller running the call sets ``done`` and
then looks for ``ended`` to set. Under the GIL one of the two sees the other's write.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any


class Lead:
    """One caller's lead of a flight."""

    __slots__ = ("lenders", "parent")

    def __init__(self, parent: Lead | None) -> None:
        self.lenders: list[Any] = []  # SlotHold-s (core/nesting.py)
        self.parent = parent

    def lent_by(self, gate: Any) -> bool:
        """Whether a caller waiting for this flight lends it a slot of ``gate``."""
        return any(hold.gate is gate for hold in self.lenders)


class Call:
    """One key's call in a thread flight."""

    __slots__ = ("done", "ended", "value", "error", "lead", "offered", "token")

    def __init__(self, lead: Lead) -> None:
        self.done = False
        self.ended: Any = None  # a threading.Event, made by the first waiter
        self.value: Any = None
        self.error: BaseException | None = None
        self.lead = lead
        self.offered: Any = None  # a stale entry waiting callers may answer with
        self.token: Token[Any] | None = None  # the leader's ``leading`` before it

    def finish(self, value: Any, error: BaseException | None) -> None:
        """The call ended (taken out of the flight's calls): wake its waiters."""
        self.value, self.error = value, error
        self.done = True
        ended = self.ended
        if ended is not None:
            ended.set()


__all__ = ["Call", "Lead"]
