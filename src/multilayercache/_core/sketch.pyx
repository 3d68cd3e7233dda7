"""Count-min sketch of 4-bit counters (compiled twin of ``_sketch_py.py``, which explains the
algorithm). The hot operations are inline functions in ``sketch.pxd``."""

import numpy as np

from . import buffers

from libc.stdint cimport uint64_t

from .bits cimport next_power_of_two

ODD_NIBBLES_MASK = 0x7777777777777777
cdef uint64_t _ODD_NIBBLES_MASK = ODD_NIBBLES_MASK


cdef class CountMinSketch:
    """Frequency estimates for 64-bit key hashes, in about 8 bytes per cached entry."""

    def __init__(self, Py_ssize_t capacity):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        cdef Py_ssize_t length = max(MIN_WORDS, next_power_of_two(capacity))
        self._table = _cache_line_aligned_zeros(length)
        self.words = &self._table[0]
        self.block_mask = length // WORDS_PER_BLOCK - 1
        self.sample_size = SAMPLE_MULTIPLIER * capacity
        self.additions = 0

    @property
    def table(self):
        """A copy of the counter table: ``uint64`` words of 16 four-bit counters."""
        return np.array(self._table, dtype=np.uint64, copy=True)

    cpdef void reset(self) noexcept:
        """Halve every counter (aging) and the increment count with them."""
        cdef Py_ssize_t i
        cdef uint64_t* table = &self._table[0]
        for i in range(self._table.shape[0]):
            table[i] = (table[i] >> 1) & _ODD_NIBBLES_MASK
        self.additions //= 2

    def frequency(self, uint64_t key_hash) -> int:
        """Estimated number of increments of this hash since the last halvings (0..15)."""
        return sketch_frequency(self.words, self.block_mask, key_hash)

    def increment(self, uint64_t key_hash) -> bool:
        """Count one more occurrence. False if the key's estimate is already saturated."""
        if sketch_add(self.words, self.block_mask, key_hash):
            self.additions += 1
            return True
        return False

    def needs_reset(self) -> bool:
        """True once a sample period's worth of increments has been counted."""
        return self.additions >= self.sample_size


def _cache_line_aligned_zeros(Py_ssize_t length):
    # A block of 8 words must sit in one 64-byte cache line; numpy only promises 16-byte
    # alignment, so over-allocate by one line and slice at the first 64-byte boundary.
    buffer = buffers.zeros(length + 8, np.uint64)
    offset = (-buffer.ctypes.data % 64) // 8
    return buffer[offset:offset + length]
