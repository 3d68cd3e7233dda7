"""Ghost table of recently evicted keys (compiled twin of ``_ghost_py.py``, which explains
it). The buckets are 16-byte records (``ghost.pxd``); the columns below are copies."""

import numpy as np

from . import buffers

from libc.stdint cimport uint32_t, uint64_t

from .bits cimport next_power_of_two

cdef enum:
    FIELDS = 4  # uint32 per GhostBucket


cdef class GhostTable:
    """Recently evicted key hashes: ``remember`` on eviction, ``take`` on a miss."""

    def __init__(self, Py_ssize_t capacity):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        cdef Py_ssize_t bucket_count = max(8, next_power_of_two(capacity))
        self._storage = buffers.zeros(FIELDS * bucket_count, np.uint32)
        self.buckets = <GhostBucket*>&self._storage[0]
        self.bucket_mask = bucket_count - 1
        self._evictions[0] = self._evictions[1] = self._evictions[2] = 0

    def _column(self, Py_ssize_t field):
        return np.array(np.asarray(self._storage)[field::FIELDS], dtype=np.uint32, copy=True)

    @property
    def tags(self):
        """A copy of the tag column (``uint32``; 0 = empty bucket)."""
        return self._column(0)

    @property
    def stamps(self):
        """A copy of the stamp column (``uint32`` eviction counts)."""
        return self._column(1)

    @property
    def last_uses(self):
        """A copy of the last-use column (``uint32`` policy clock values)."""
        return self._column(2)

    @property
    def evictions(self):
        """Evictions counted per region, indexed by WINDOW / MAIN (wrapping at 2^32)."""
        return [self._evictions[0], self._evictions[1], self._evictions[2]]

    cpdef void remember(self, uint64_t key_hash, int region, uint32_t last_use=0) except *:
        """Record that the key was just evicted from ``region`` (WINDOW or MAIN), having
        been used last at clock ``last_use``."""
        if region != WINDOW and region != MAIN:
            raise ValueError(f"region must be WINDOW (1) or MAIN (2), got {region!r}")
        self._remember(key_hash, region, last_use)

    cpdef (int, uint32_t, uint32_t) take(self, uint64_t key_hash) noexcept:
        """``(region, age, last use)`` if the key is a ghost, else ``(0, 0, 0)``; the ghost
        is consumed."""
        return self._take(key_hash)
