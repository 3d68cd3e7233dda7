cimport cython
from libc.stdint cimport uint32_t, uint64_t


@cython.final
cdef class GhostTable:
    cdef uint32_t[::1] _tags
    cdef uint32_t[::1] _stamps
    cdef readonly uint64_t slot_mask
    cdef uint32_t[::1] _last_uses
    cdef uint32_t[3] _evictions

    cdef void note(self, uint64_t key_hash, int region, uint32_t last_use) noexcept
    cdef int pop(self, uint64_t key_hash, uint32_t* age, uint32_t* last_use) noexcept
