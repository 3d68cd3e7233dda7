cimport cython
from libc.stdint cimport uint32_t, uint64_t


@cython.final
cdef class HotKeyTable:
    cdef readonly uint64_t bucket_mask
    cdef list _keys
    cdef uint64_t[::1] _hashes
    cdef uint32_t[::1] _scores
    cdef uint32_t[::1] _counts

    cpdef void record(self, uint64_t key_hash, object key) noexcept
