"""Per-entry freshness deadlines of the in-memory layer (pure-Python twin of
``freshness.pyx``).

Most entries only have a physical deadline (the timer wheel's): fresh until they are gone.
An entry written with a stale window or a refresh point (see
``multilayercache.core.freshness``) also has a *fresh-until* deadline (after it, the entry
is stale: only the manager's stale-while-revalidate and fail-safe serve it) and a
*refresh-at* deadline (after it, a hit is due to refresh it, ``<=`` fresh-until). This table
holds those two, for the slots that have them; ``count`` of them is zero in a cache that
uses neither, and the hit path then never looks here. Its two per-slot arrays exist only
once a slot has a deadline here (until then, every slot has none): a cache that uses
neither pays no memory for them.
"""

from __future__ import annotations

from ..._core._timerwheel_py import NO_DEADLINE


class FreshnessDeadlines:
    """``fresh_until`` and ``refresh_at`` (integer nanoseconds) of the slots that have
    them; ``NO_DEADLINE`` for the others."""

    def __init__(self) -> None:
        self._slot_count = 0
        self._fresh_until: list[int] = []  # (both: only once ``_materialized``)
        self._refresh_at: list[int] = []
        self._materialized = False
        self.count = 0  # slots with a deadline here

    def grow(self, slot_count: int) -> None:
        """Make room for slots ``0 .. slot_count - 1``."""
        if self._materialized:  # (each list by itself: see WTinyLfuPolicy.grow)
            for column in (self._fresh_until, self._refresh_at):
                column.extend([NO_DEADLINE] * (slot_count - len(column)))
        self._slot_count = max(self._slot_count, slot_count)

    def _materialize(self) -> None:
        fresh_until = [NO_DEADLINE] * self._slot_count
        refresh_at = [NO_DEADLINE] * self._slot_count
        self._fresh_until, self._refresh_at = fresh_until, refresh_at
        self._materialized = True

    def assign(self, slot: int, fresh_until: int, refresh_at: int) -> None:
        """Give ``slot`` these deadlines (``NO_DEADLINE`` for both: it has none)."""
        refresh_at = min(refresh_at, fresh_until)
        has = refresh_at != NO_DEADLINE or fresh_until != NO_DEADLINE
        if not self._materialized:
            if not has:
                return  # no slot has any: nothing changes
            self._materialize()
        had = self._refresh_at[slot] != NO_DEADLINE or self._fresh_until[slot] != NO_DEADLINE
        self._fresh_until[slot] = fresh_until
        self._refresh_at[slot] = refresh_at
        self.count += int(has) - int(had)

    def forget(self, slot: int) -> None:
        """The slot left the cache."""
        if self.count:  # (then the arrays exist)
            self.assign(slot, NO_DEADLINE, NO_DEADLINE)

    def fresh_until(self, slot: int) -> int:
        return self._fresh_until[slot] if self._materialized else NO_DEADLINE

    def refresh_at(self, slot: int) -> int:
        return self._refresh_at[slot] if self._materialized else NO_DEADLINE
