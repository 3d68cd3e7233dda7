cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class FreshnessDeadlines:
    cdef int64_t[::1] _fresh_until
    cdef int64_t[::1] _refresh_at
    cdef readonly Py_ssize_t count

    cpdef void grow(self, Py_ssize_t slot_count) except *
    cpdef void assign(self, Py_ssize_t slot, int64_t fresh_until, int64_t refresh_at) noexcept
    cpdef void forget(self, Py_ssize_t slot) noexcept
    cpdef int64_t fresh_until(self, Py_ssize_t slot) noexcept
    cpdef int64_t refresh_at(self, Py_ssize_t slot) noexcept
