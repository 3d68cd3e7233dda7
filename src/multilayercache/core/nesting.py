"""Loads inside loads: what a running load hands down to the cache calls its loader makes,
so that they never wait for something it holds.

A loader may call the cache again: a cached function that calls another, in its own thread
or task, or in threads and tasks it starts. Two things travel with a load, in context
variables (``contextvars``: an asyncio task starts with a copy of its creator's, a thread
with an empty context unless it runs in a copy, ``contextvars.copy_context().run``):

* ``held_slot``: the load slot (``LoadGate``, ``LoadOptions.max_concurrent_loads``) the
  load runs on. A load nested in it runs on that slot too instead of waiting for another,
  since with every slot held by a load waiting for a nested one, none would ever come
  free. The gate bounds *independent* loads: however many loads one load runs inside it,
  they count as one.
* ``leading``: the flight (``SingleFlight``) the load leads, as a ``Lead``, which knows the
  lead it runs inside of. A caller that holds a slot and waits for a flight that another
  caller leads *lends* it its slot while it waits, since that flight is now part of its
  own load: a leader still waiting for a slot goes on with the lent one (without it, every
  slot holder could be waiting for a flight whose leader waits for a slot). And a caller
  that would wait for a flight its own chain of leads is running raises
  ``RecursiveLoadError`` instead of waiting for itself forever.

A slot is handed down only while its load runs (``SlotHold.live``): a thread that outlives
the load that started it takes slots of its own again.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .._build import twin
from .errors import RecursiveLoadError

if TYPE_CHECKING:
    from .._core._flight_py import Lead
else:  # compiled: the sync front door makes one per load, in C
    Lead = twin("multilayercache._core.flight", "multilayercache._core._flight_py").Lead


class SlotHold:
    """A load slot taken from (or lent to a load by a caller of) ``gate``, as the loads
    nested in its load see it; ``forks``: the gate's fork count when it was taken (a forked
    child's gate has forgotten its parent's slots)."""

    __slots__ = ("gate", "forks", "live")

    def __init__(self, gate: Any, forks: int) -> None:
        self.gate = gate
        self.forks = forks
        self.live = True


held_slot: ContextVar[SlotHold | None] = ContextVar("multilayercache_held_slot", default=None)
"""The load slot the current load runs on (``None``: not inside a load that holds one)."""

leading: ContextVar[Lead | None] = ContextVar("multilayercache_leading", default=None)
"""The flight the current code runs inside of, as its leader (``None``: none)."""


def check_not_waiting_for_itself(lead: Lead, key: Any) -> None:
    """Raise ``RecursiveLoadError`` if ``lead`` (of the flight that would be waited for, for
    ``key``) is the current code's own lead or one it runs inside of."""
    mine = leading.get()
    while mine is not None:
        if mine is lead:
            raise RecursiveLoadError(
                f"the load of {key!r} asked for {key!r} again (directly or through the "
                "loads nested in it): it would wait for itself forever"
            )
        mine = mine.parent


__all__ = ["Lead", "SlotHold", "check_not_waiting_for_itself", "held_slot", "leading"]
