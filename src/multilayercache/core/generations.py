"""Which writes a read below L1 may have missed: a generation number per key, so that a
reader never copies a value into a faster layer after a write or delete of the key
replaced it there (``KeyGenerations``).

The race it closes. A reader finds the old value in L2 and copies it up into L1; a writer
of the same key writes L2, then L1. Nothing orders the reader's copy with the writer's L1
write: when the copy lands last, L1 holds the old value, with L2 holding the new one (or,
for a delete, nothing) until L1's TTL ends.

The rule. Every write or delete through the manager *bumps* the key's generation after it
wrote each slower layer and before it writes the next faster one (for the usual L1 + L2:
L2, bump, L1). A reader notes the generation before it reads below the fastest layer,
copies a value up only if the generation is unchanged, and checks again after the copy: if
it changed, it deletes the copy it just made (invalidate after write). The interleavings,
for reader R (note, read L2, check, copy into L1, check) and writer W (write L2, bump,
write L1), with the new value V and the old one O:

1. R reads L2 after W wrote it: R copies V, whatever the order of the rest. Fine.
2. R read O, and W bumped before R's first check: R copies nothing.
3. R read O, passed its first check, and W bumped before R's second check: R deletes its
   copy. If W's L1 write came before that delete, L1 loses V too: a miss, never O.
4. R read O, and R's second check came before W's bump: then R's copy came before W's
   bump, which comes before W's L1 write: W's write lands last, and L1 holds V.

So L1 may lose a value (a miss, the safe direction), never hold one older than L2's. R
must note the generation *before* reading L2: noted after, W could write L2, bump and
write L1 in between, and R's copy of O would pass both checks. With more layers the same
holds for a copy into any faster layer, since W bumps before writing each of them.
Loaded values follow the same rule (a load that began before a write or delete of its key
is not written over it, see ``plans.write_loaded``), and ``clear`` bumps every key.

The table. Generations live in a fixed table of ``SLOTS`` numbers indexed by the key's
hash: memory is bounded whatever the keys, and two keys that share a slot only make a copy
of one skip after a write of the other (the safe direction). A bump stores a new ticket
from a counter that never repeats, rather than adding one: two writers bumping at once
cannot store the value a reader noted, so no lock is needed (taking a ticket and storing
it into a list are each atomic under the GIL; the compiled layer keeps the GIL on).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

SLOTS = 4096
"""Generation slots (a power of two). A read below L1 lasts one round trip, so two keys of
one slot rarely meet within one: a copy skipped for that is one more read below L1."""


class KeyGenerations:
    """Per-key generations over a fixed table (see the module docstring).

    >>> generations = KeyGenerations()
    >>> seen = generations.of("user:1")
    >>> generations.changed({"user:1": seen})
    []
    >>> generations.bump("user:1")
    >>> generations.changed({"user:1": seen})
    ['user:1']
    """

    __slots__ = ("table", "mask", "tickets")

    def __init__(self, slots: int = SLOTS) -> None:
        if slots < 1 or slots & (slots - 1):
            raise ValueError(f"slots must be a power of two, got {slots}")
        # Public for callers that work inline: ``table[hash(key) & mask] = next(tickets)`` is
        # ``bump(key)`` (``write_at_once``, every write-behind set), ``table[hash(key) &
        # mask]`` is ``of(key)`` (``plans.noted_generations``, a batch). Never rebound.
        self.table = [0] * slots  # tickets start at 1: a noted 0 changes at the first bump
        self.mask = slots - 1
        self.tickets = itertools.count(1)

    def of(self, key: Any) -> int:
        """The key's generation now: note it before reading below L1."""
        return self.table[hash(key) & self.mask]

    def note(self, keys: Iterable[Any], seen: dict[Any, int]) -> None:
        """Note the generation of each key not noted in ``seen`` yet."""
        table, mask = self.table, self.mask
        for key in keys:
            if key not in seen:
                seen[key] = table[hash(key) & mask]

    def bump(self, key: Any) -> None:
        """A write or delete of ``key`` reached the slower layers: copies of what a reader
        found before it must not land in the faster ones."""
        self.table[hash(key) & self.mask] = next(self.tickets)

    def bump_many(self, keys: Iterable[Any]) -> None:
        table, mask, tickets = self.table, self.mask, self.tickets
        for key in keys:
            table[hash(key) & mask] = next(tickets)

    def bump_all(self) -> None:
        """Every key changed (``clear``). One new ticket for every slot: it was never
        stored anywhere, so every slot now differs from whatever a reader noted."""
        self.table[:] = [next(self.tickets)] * len(self.table)

    def moved(self, keys: Iterable[Any], seen: Mapping[Any, int]) -> list[Any]:
        """The keys of ``keys`` whose generation moved since it was noted in ``seen`` (or
        that were never noted there): ``changed`` without a mapping built for it."""
        table, mask, noted = self.table, self.mask, seen.get
        return [key for key in keys if table[hash(key) & mask] != noted(key, -1)]

    def changed(self, seen: Mapping[Any, int]) -> list[Any]:
        """The keys of ``seen`` whose generation moved since it was noted."""
        table, mask = self.table, self.mask
        return [key for key, noted in seen.items() if table[hash(key) & mask] != noted]


__all__ = ["SLOTS", "KeyGenerations"]
