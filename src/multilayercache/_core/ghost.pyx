"""Ghost table of recently evicted keys (compiled twin of ``_ghost_py.py``, which explains
it)."""

import numpy as np

from libc.stdint cimport uint32_t, uint64_t

from .bits cimport next_power_of_two

cdef enum:
    REGION_BITS = 3
    BUCKET_SHIFT = 20


cdef class GhostTable:
    """Recently evicted key hashes: ``remember`` on eviction, ``take`` on a miss."""

    def __init__(self, Py_ssize_t capacity):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        cdef Py_ssize_t bucket_count = max(8, next_power_of_two(capacity))
        self._tags = np.zeros(bucket_count, dtype=np.uint32)
        self._stamps = np.zeros(bucket_count, dtype=np.uint32)
        self._last_uses = np.zeros(bucket_count, dtype=np.uint32)
        self.bucket_mask = bucket_count - 1
        self._evictions[0] = self._evictions[1] = self._evictions[2] = 0

    @property
    def tags(self):
        """A copy of the tag column (``uint32``; 0 = empty bucket)."""
        return np.array(self._tags, dtype=np.uint32, copy=True)

    @property
    def stamps(self):
        """A copy of the stamp column (``uint32`` eviction counts)."""
        return np.array(self._stamps, dtype=np.uint32, copy=True)

    @property
    def last_uses(self):
        """A copy of the last-use column (``uint32`` policy clock values)."""
        return np.array(self._last_uses, dtype=np.uint32, copy=True)

    @property
    def evictions(self):
        """Evictions counted per region, indexed by WINDOW / MAIN (wrapping at 2^32)."""
        return [self._evictions[0], self._evictions[1], self._evictions[2]]

    cpdef void remember(self, uint64_t key_hash, int region, uint32_t last_use=0) except *:
        """Record that the key was just evicted from ``region`` (WINDOW or MAIN), having
        been used last at clock ``last_use``."""
        if region != WINDOW and region != MAIN:
            raise ValueError(f"region must be WINDOW (1) or MAIN (2), got {region!r}")
        # uint32 arithmetic wraps by itself, as the twin's explicit mask does.
        self._evictions[region] += 1
        cdef uint64_t bucket = (key_hash >> BUCKET_SHIFT) & self.bucket_mask
        self._tags[bucket] = (<uint32_t>(key_hash >> 32) & ~(<uint32_t>REGION_BITS)) | region
        self._stamps[bucket] = self._evictions[region]
        self._last_uses[bucket] = last_use

    cpdef (int, uint32_t, uint32_t) take(self, uint64_t key_hash) noexcept:
        """``(region, age, last use)`` if the key is a ghost, else ``(0, 0, 0)``; the ghost
        is consumed."""
        cdef uint64_t bucket = (key_hash >> BUCKET_SHIFT) & self.bucket_mask
        cdef uint32_t tag = self._tags[bucket]
        cdef uint32_t wanted = <uint32_t>(key_hash >> 32) & ~(<uint32_t>REGION_BITS)
        if tag == 0 or (tag & ~(<uint32_t>REGION_BITS)) != wanted:
            return 0, 0, 0
        cdef int region = tag & REGION_BITS
        self._tags[bucket] = 0
        return region, self._evictions[region] - self._stamps[bucket], self._last_uses[bucket]

