"""Hot-key table (compiled twin of ``_hotkeys_py.py``, which explains the algorithm)."""

import numpy as np

from libc.stdint cimport uint32_t, uint64_t

HOT_KEY_BUCKETS = 256

MAX_COUNT = 0xFFFFFFFF
cdef uint32_t _MAX_COUNT = MAX_COUNT


cdef class HotKeyTable:
    """Counts events per key for the most frequent keys: ``record``, ``count_of``, ``top``."""

    def __init__(self, Py_ssize_t bucket_count=HOT_KEY_BUCKETS):
        if bucket_count < 1 or bucket_count & (bucket_count - 1):
            raise ValueError(f"bucket_count must be a power of two, got {bucket_count!r}")
        self.bucket_mask = bucket_count - 1
        self._keys = [None] * bucket_count
        self._hashes = np.zeros(bucket_count, dtype=np.uint64)
        self._scores = np.zeros(bucket_count, dtype=np.uint32)
        self._counts = np.zeros(bucket_count, dtype=np.uint32)

    @property
    def scores(self):
        """A copy of the per-bucket scores (``uint32``)."""
        return np.array(self._scores, dtype=np.uint32, copy=True)

    cpdef void record(self, uint64_t key_hash, object key) noexcept:
        """Count one event for ``key`` (whose spread hash is ``key_hash``)."""
        self._record(key_hash, key)

    def count_of(self, uint64_t key_hash) -> int:
        """Events counted for the key, or 0 if it is not tracked."""
        cdef uint64_t bucket = key_hash & self.bucket_mask
        if self._scores[bucket] and self._hashes[bucket] == key_hash:
            return self._counts[bucket]
        return 0

    def top(self, Py_ssize_t n):
        """Up to ``n`` tracked keys seen twice or more, as ``(key, count, key_hash)``,
        highest score first."""
        occupied = [
            bucket for bucket in range(self.bucket_mask + 1)
            if self._scores[bucket] and self._counts[bucket] > 1
        ]
        occupied.sort(key=lambda bucket: -self._scores[bucket])
        return [(self._keys[bucket], self._counts[bucket], self._hashes[bucket])
                for bucket in occupied[:n]]

    def clear(self) -> None:
        """Forget every tracked key."""
        self._scores[:] = 0
        self._counts[:] = 0
        self._hashes[:] = 0
        self._keys[:] = [None] * len(self._keys)
