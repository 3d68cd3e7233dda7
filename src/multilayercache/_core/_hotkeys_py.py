"""Hot-key table: per-key hits and misses of the hottest keys, in bounded memory.

The reference (pure-Python) twin of ``hotkeys.pyx``.

Idea (the "Frequent" algorithm of Misra & Gries 1982, one counter per bucket, as in the
"heavy hitters" tables of network switches): a direct-mapped table of ``slot_count`` keys.
A key that maps to its own slot adds to its counts. A different key *wears down* the
resident's score by one, and takes the slot over once the score is zero. A key that is a
large share of its slot's traffic therefore stays, and one-off keys never displace it. Memory
is fixed, and a lookup is one array probe, cheap enough for every ``get``.

``hits`` and ``misses`` count from the moment the key took its slot, so they are exact for a
key that stays hot and a lower bound otherwise.
"""

from typing import Any

import numpy as np

HOT_KEY_SLOTS = 256
MAX_COUNT = 0xFFFFFFFF  # counters saturate like the compiled uint32 ones


class HotKeyTable:
    """Tracks hits and misses of the hottest keys: ``record``, ``top``."""

    def __init__(self, slot_count: int = HOT_KEY_SLOTS) -> None:
        if slot_count < 1 or slot_count & (slot_count - 1):
            raise ValueError(f"slot_count must be a power of two, got {slot_count!r}")
        self.slot_mask = slot_count - 1
        self._keys: list[Any] = [None] * slot_count
        self._hashes = [0] * slot_count
        self._scores = [0] * slot_count
        self._hits = [0] * slot_count
        self._misses = [0] * slot_count

    @property
    def scores(self) -> np.ndarray:
        """A copy of the per-slot scores (``uint32``)."""
        return np.array(self._scores, dtype=np.uint32)

    def record(self, key_hash: int, key: Any, hit: bool) -> None:
        """Count one lookup of ``key`` (whose spread hash is ``key_hash``)."""
        slot = key_hash & self.slot_mask
        if self._scores[slot] and self._hashes[slot] == key_hash:
            self._scores[slot] = min(self._scores[slot] + 1, MAX_COUNT)
            if hit:
                self._hits[slot] = min(self._hits[slot] + 1, MAX_COUNT)
            else:
                self._misses[slot] = min(self._misses[slot] + 1, MAX_COUNT)
        elif self._scores[slot]:
            self._scores[slot] -= 1
        else:
            self._keys[slot] = key
            self._hashes[slot] = key_hash
            self._scores[slot] = 1
            self._hits[slot] = 1 if hit else 0
            self._misses[slot] = 0 if hit else 1

    def top(self, n: int) -> list[tuple[Any, int, int, int]]:
        """Up to ``n`` tracked keys as ``(key, hits, misses, key_hash)``, highest score first."""
        occupied = [slot for slot, score in enumerate(self._scores) if score]
        occupied.sort(key=lambda slot: -self._scores[slot])
        return [
            (self._keys[slot], self._hits[slot], self._misses[slot], self._hashes[slot])
            for slot in occupied[:n]
        ]

    def clear(self) -> None:
        """Forget every tracked key."""
        for column in (self._scores, self._hits, self._misses, self._hashes):
            column[:] = [0] * len(column)
        self._keys[:] = [None] * len(self._keys)
