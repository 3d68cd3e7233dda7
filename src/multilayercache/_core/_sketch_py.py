"""Count-min sketch of 4-bit counters: how often has a key been seen lately?

The reference (pure-Python) twin of ``sketch.pyx``; both give the same answers and hold the
same table after the same calls.

Idea (Cormode & Muthukrishnan 2005; as used by TinyLFU, Einziger, Friedman & Manes 2017):
each key maps to ``DEPTH = 4`` counters; an increment bumps them, and the estimate is the
smallest, since collisions can only inflate a counter.

Layout choices:

* Counters are 4 bits and saturate at 15. An admission policy only needs to tell "rarely"
  from "often", and 16 counters fit in one 64-bit word.
* The table is ``next_power_of_two(capacity)`` words, about 8 bytes per cached entry, split
  into blocks of 8 words (64 bytes, one cache line). A key's four counters all live in one
  block, so an increment touches one cache line. Counter ``i`` sits in word
  ``2*i`` or ``2*i + 1`` of the block, at one of the 16 nibbles of that word, both picked by
  byte ``i`` of a second hash.
* Conservative update (Estan & Varghese 2002): an increment only bumps the counters that
  equal the current minimum. The others are already overestimates, so this keeps estimates
  tighter at no extra memory.
* Aging: after ``10 * capacity`` increments every counter is halved, so that the sketch
  follows a changing workload. ``increment`` reports whether a counter moved, and the caller
  (the policy) decides when to ``reset`` (it also clears the doorkeeper then).
"""

import numpy as np

from ._bits_py import GOLDEN64, MASK64, next_power_of_two

DEPTH = 4
MAX_COUNT = 15
WORDS_PER_BLOCK = 8
MIN_WORDS = 64  # tiny caches still get 8 blocks: fewer collisions for 512 bytes
SAMPLE_MULTIPLIER = 10
ODD_NIBBLES_MASK = 0x7777777777777777  # after a right shift, drops the bit from the next nibble


class CountMinSketch:
    """Frequency estimates for 64-bit key hashes, in about 8 bytes per cached entry."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        length = max(MIN_WORDS, next_power_of_two(capacity))
        self._table = [0] * length
        self.block_mask = length // WORDS_PER_BLOCK - 1
        self.sample_size = SAMPLE_MULTIPLIER * capacity
        self.additions = 0

    @property
    def table(self) -> np.ndarray:
        """A copy of the counter table: ``uint64`` words of 16 four-bit counters."""
        return np.array(self._table, dtype=np.uint64)

    def _counters(self, key_hash: int) -> list[tuple[int, int]]:
        """(word index, bit shift) of the key's four counters."""
        block = (key_hash & self.block_mask) * WORDS_PER_BLOCK
        counter_hash = ((key_hash * GOLDEN64) & MASK64) >> 32
        counters = []
        for i in range(DEPTH):
            byte = counter_hash >> (8 * i)
            word = block + 2 * i + (byte & 1)
            shift = ((byte >> 1) & 15) * 4
            counters.append((word, shift))
        return counters

    def frequency(self, key_hash: int) -> int:
        """Estimated number of increments of this hash since the last halvings (0..15)."""
        table = self._table
        return min((table[word] >> shift) & MAX_COUNT for word, shift in self._counters(key_hash))

    def increment(self, key_hash: int) -> bool:
        """Count one more occurrence. False if the key's estimate is already saturated."""
        counters = self._counters(key_hash)
        table = self._table
        values = [(table[word] >> shift) & MAX_COUNT for word, shift in counters]
        smallest = min(values)
        if smallest == MAX_COUNT:
            return False
        for (word, shift), value in zip(counters, values, strict=True):
            if value == smallest:
                table[word] += 1 << shift
        self.additions += 1
        return True

    def needs_reset(self) -> bool:
        """True once a sample period's worth of increments has been counted."""
        return self.additions >= self.sample_size

    def reset(self) -> None:
        """Halve every counter (aging) and the increment count with them."""
        table = self._table
        for i in range(len(table)):
            table[i] = (table[i] >> 1) & ODD_NIBBLES_MASK
        self.additions //= 2
