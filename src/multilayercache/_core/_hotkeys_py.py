"""Hot-key table: the most frequent keys of an event stream, with counts, in bounded memory.

The reference (pure-Python) twin of ``hotkeys.pyx``. ``InMemoryLayer`` feeds it its misses
(hits are counted per cached slot instead, which is cheaper on the hit path), so that a
snapshot can show which hot keys keep missing.

Idea (the "Frequent" algorithm of Misra & Gries 1982, one counter per bucket, as in the
heavy-hitter tables of network switches): a direct-mapped table of ``slot_count`` keys.
A key that maps to its own slot adds to its count. A different key *wears down* the
resident's score by one, and takes the slot over once the score is zero. A key that is a
large share of its slot's traffic therefore stays, and one-off keys never displace it.
Memory is fixed and a record is one array probe.

``count`` starts when the key takes its slot: exact for a key that stays, a lower bound
otherwise.
"""

from typing import Any

import numpy as np

HOT_KEY_SLOTS = 256
MAX_COUNT = 0xFFFFFFFF  # counters saturate like the compiled uint32 ones


class HotKeyTable:
    """Counts events per key for the most frequent keys: ``record``, ``count_of``, ``top``."""

    def __init__(self, slot_count: int = HOT_KEY_SLOTS) -> None:
        if slot_count < 1 or slot_count & (slot_count - 1):
            raise ValueError(f"slot_count must be a power of two, got {slot_count!r}")
        self.slot_mask = slot_count - 1
        self._keys: list[Any] = [None] * slot_count
        self._hashes = [0] * slot_count
        self._scores = [0] * slot_count
        self._counts = [0] * slot_count

    @property
    def scores(self) -> np.ndarray:
        """A copy of the per-slot scores (``uint32``)."""
        return np.array(self._scores, dtype=np.uint32)

    def record(self, key_hash: int, key: Any) -> None:
        """Count one event for ``key`` (whose spread hash is ``key_hash``)."""
        slot = key_hash & self.slot_mask
        if self._scores[slot] and self._hashes[slot] == key_hash:
            self._scores[slot] = min(self._scores[slot] + 1, MAX_COUNT)
            self._counts[slot] = min(self._counts[slot] + 1, MAX_COUNT)
        elif self._scores[slot]:
            self._scores[slot] -= 1
        else:
            self._keys[slot] = key
            self._hashes[slot] = key_hash
            self._scores[slot] = 1
            self._counts[slot] = 1

    def count_of(self, key_hash: int) -> int:
        """Events counted for the key, or 0 if it is not tracked."""
        slot = key_hash & self.slot_mask
        if self._scores[slot] and self._hashes[slot] == key_hash:
            return self._counts[slot]
        return 0

    def top(self, n: int) -> list[tuple[Any, int, int]]:
        """Up to ``n`` tracked keys as ``(key, count, key_hash)``, highest score first."""
        occupied = [slot for slot, score in enumerate(self._scores) if score]
        occupied.sort(key=lambda slot: -self._scores[slot])
        return [(self._keys[slot], self._counts[slot], self._hashes[slot]) for slot in occupied[:n]]

    def clear(self) -> None:
        """Forget every tracked key."""
        for column in (self._scores, self._counts, self._hashes):
            column[:] = [0] * len(column)
        self._keys[:] = [None] * len(self._keys)
