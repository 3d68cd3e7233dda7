"""Hot-key table (compiled twin of ``_hotkeys_py.py``, which explains the algorithm)."""

import numpy as np

from libc.stdint cimport uint32_t, uint64_t

HOT_KEY_BUCKETS = 256

RECORD = np.dtype([("key_hash", np.uint64), ("score", np.uint32), ("count", np.uint32)])
"""A bucket's record as numpy sees ``HotRecord`` (hotkeys.pxd): native order, no padding."""

MAX_COUNT = 0xFFFFFFFF


cdef class HotKeyTable:
    """Counts events per key for the most frequent keys: ``record``, ``count_of``, ``top``."""

    def __init__(self, Py_ssize_t bucket_count=HOT_KEY_BUCKETS):
        if bucket_count < 1 or bucket_count & (bucket_count - 1):
            raise ValueError(f"bucket_count must be a power of two, got {bucket_count!r}")
        self.bucket_mask = bucket_count - 1
        self._keys = [None] * bucket_count
        words = np.zeros(2 * bucket_count, dtype=np.uint64)  # (8-byte aligned)
        cdef uint64_t[::1] view = words
        self._records = <HotRecord*>&view[0]
        self._buffer = words.view(RECORD)

    def columns(self):
        """Copies of every bucket's ``(key_hash, count, score)`` (``uint64``, ``int64``,
        ``uint32`` arrays): what a snapshot reads, under the layer's lock."""
        return (self._buffer["key_hash"].copy(), self._buffer["count"].astype(np.int64),
                self._buffer["score"].copy())

    @property
    def scores(self):
        """A copy of the per-bucket scores (``uint32``)."""
        return self._buffer["score"].copy()

    cpdef void record(self, uint64_t key_hash, object key) noexcept:
        """Count one event for ``key`` (whose spread hash is ``key_hash``)."""
        self._record(key_hash, key)

    def count_of(self, uint64_t key_hash) -> int:
        """Events counted for the key, or 0 if it is not tracked."""
        cdef HotRecord* record = &self._records[key_hash & self.bucket_mask]
        if record.score and record.key_hash == key_hash:
            return record.count
        return 0

    def top(self, Py_ssize_t n):
        """Up to ``n`` tracked keys seen twice or more, as ``(key, count, key_hash)``,
        highest score first."""
        cdef HotRecord* records = self._records
        occupied = [
            bucket for bucket in range(self.bucket_mask + 1)
            if records[bucket].score and records[bucket].count > 1
        ]
        occupied.sort(key=lambda bucket: -self._records[bucket].score)
        return [(self._keys[bucket], records[bucket].count, records[bucket].key_hash)
                for bucket in occupied[:n]]

    def clear(self) -> None:
        """Forget every tracked key."""
        self._buffer[:] = np.zeros(1, dtype=RECORD)
        self._keys[:] = [None] * len(self._keys)
