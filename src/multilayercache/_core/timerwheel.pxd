cimport cython
from libc.stdint cimport int32_t, int64_t


@cython.final
cdef class TimerWheel:
    cdef readonly int64_t now_ns
    cdef readonly Py_ssize_t scheduled
    cdef Py_ssize_t _slot_count
    cdef bint _materialized
    cdef int64_t[::1] _deadlines
    cdef int32_t[::1] _prev
    cdef int32_t[::1] _next
    cdef int32_t[::1] _expired
    cdef Py_ssize_t _expired_count

    cdef int ensure(self, Py_ssize_t slot_count) except -1
    cdef int64_t deadline_of(self, Py_ssize_t slot) noexcept
    cdef int plan(self, Py_ssize_t slot, int64_t deadline_ns) except -1
    cdef void cancel(self, Py_ssize_t slot) noexcept
    cdef Py_ssize_t tick(self, int64_t now_ns) except -1

    # private
    cdef int _materialize(self) except -1
    cdef int _bucket_for(self, int64_t deadline_ns) noexcept
    cdef void _link(self, int bucket, int32_t node) noexcept
    cdef int _sweep(self, int bucket) except -1
    cdef int _push_expired(self, int32_t slot) except -1
