cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class FreshnessDeadlines:
    cdef int64_t[::1] _fresh_until  # (both arrays: only once ``_materialized``)
    cdef int64_t[::1] _refresh_at
    cdef Py_ssize_t _slot_count
    cdef bint _materialized
    cdef readonly Py_ssize_t count

    cdef int _materialize(self) except -1
    cpdef void grow(self, Py_ssize_t slot_count) except *
    cpdef void assign(self, Py_ssize_t slot, int64_t fresh_until,
                      int64_t refresh_at) except *
    cpdef void forget(self, Py_ssize_t slot) noexcept
    cpdef int64_t fresh_until(self, Py_ssize_t slot) noexcept
    cpdef int64_t refresh_at(self, Py_ssize_t slot) noexcept
