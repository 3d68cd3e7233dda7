"""Doorkeeper Bloom filter (compiled twin of ``_doorkeeper_py.py``, which explains it)."""

import numpy as np

from . import buffers

from libc.stdint cimport uint64_t
from libc.string cimport memset

from .bits cimport next_power_of_two

cpdef enum:
    BITS_PER_ENTRY = 16
    PROBES = 2  # doorkeeper.pxd's inline functions are written out for exactly two


cdef class Doorkeeper:
    """A Bloom filter over 64-bit key hashes: ``put``, ``might_contain``, ``clear``."""

    def __init__(self, Py_ssize_t capacity):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        cdef Py_ssize_t bit_count = max(64, next_power_of_two(BITS_PER_ENTRY * capacity))
        self._words = buffers.zeros(bit_count // 64, np.uint64)
        self.words = &self._words[0]
        self.bit_mask = bit_count - 1

    @property
    def bits(self):
        """A copy of the filter: bit ``i`` is bit ``i % 64`` of word ``i // 64``."""
        return np.array(self._words, dtype=np.uint64, copy=True)

    cpdef void clear(self) noexcept:
        """Forget every key (called when the sketch ages)."""
        memset(&self._words[0], 0, self._words.shape[0] * sizeof(uint64_t))

    def might_contain(self, uint64_t key_hash) -> bool:
        """False if the key was certainly not put since the last clear."""
        return doorkeeper_contains(self.words, self.bit_mask, key_hash)

    def put(self, uint64_t key_hash) -> bool:
        """Add the key. Returns whether it (probably) was there already."""
        return doorkeeper_add(self.words, self.bit_mask, key_hash)
