cimport cython
from libc.stdint cimport uint32_t, uint64_t

from .bits cimport prefetch

cpdef enum:
    WINDOW = 1  # the region that evicted a ghost
    MAIN = 2

cdef enum:
    REGION_BITS = 3
    BUCKET_SHIFT = 20


# One bucket is one 16-byte record, so that a ``take`` or a ``remember`` touches one cache
# line (three parallel columns cost three lines, on every miss and every eviction).
cdef struct GhostBucket:
    uint32_t tag
    uint32_t stamp
    uint32_t last_use
    uint32_t unused  # pads the record to 16 bytes: four to a line, none across two


@cython.final
cdef class GhostTable:
    cdef uint32_t[::1] _storage  # owns the buckets: 4 uint32 per bucket
    cdef GhostBucket* buckets
    cdef readonly uint64_t bucket_mask
    cdef uint32_t[3] _evictions

    cpdef void remember(self, uint64_t key_hash, int region, uint32_t last_use=*) except *
    cpdef (int, uint32_t, uint32_t) take(self, uint64_t key_hash) noexcept

    # The policy's hot path (``remember``, ``take``, and a prefetch for the layer's miss):
    # inline here, so that it compiles into its callers' code with no call and, as methods
    # of a final class reached through an attribute, no reference counting.

    cdef inline void _remember(self, uint64_t key_hash, int region, uint32_t last_use) noexcept:
        """``remember`` for a ``region`` known to be WINDOW or MAIN."""
        # uint32 arithmetic wraps by itself, as the twin's explicit mask does.
        self._evictions[region] += 1
        cdef GhostBucket* bucket = self.buckets + ((key_hash >> BUCKET_SHIFT) & self.bucket_mask)
        bucket.tag = (<uint32_t>(key_hash >> 32) & ~(<uint32_t>REGION_BITS)) | <uint32_t>region
        bucket.stamp = self._evictions[region]
        bucket.last_use = last_use

    cdef inline (int, uint32_t, uint32_t) _take(self, uint64_t key_hash) noexcept:
        cdef GhostBucket* bucket = self.buckets + ((key_hash >> BUCKET_SHIFT) & self.bucket_mask)
        cdef uint32_t tag = bucket.tag
        cdef uint32_t wanted = <uint32_t>(key_hash >> 32) & ~(<uint32_t>REGION_BITS)
        if tag == 0 or (tag & ~(<uint32_t>REGION_BITS)) != wanted:
            return 0, 0, 0
        cdef int region = tag & REGION_BITS
        bucket.tag = 0
        return region, self._evictions[region] - bucket.stamp, bucket.last_use

    cdef inline void _prefetch(self, uint64_t key_hash) noexcept:
        """Start loading the key's bucket: a miss calls this, and the insert that usually
        follows then takes its ghost from cache."""
        prefetch(self.buckets + ((key_hash >> BUCKET_SHIFT) & self.bucket_mask))
