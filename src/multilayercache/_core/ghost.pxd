cimport cython
from libc.stdint cimport uint32_t, uint64_t

cpdef enum:
    WINDOW = 1  # the region that evicted a ghost
    MAIN = 2


@cython.final
cdef class GhostTable:
    cdef uint32_t[::1] _tags
    cdef uint32_t[::1] _stamps
    cdef readonly uint64_t bucket_mask
    cdef uint32_t[::1] _last_uses
    cdef uint32_t[3] _evictions

    cpdef void remember(self, uint64_t key_hash, int region, uint32_t last_use=*) except *
    cpdef (int, uint32_t, uint32_t) take(self, uint64_t key_hash) noexcept
