cimport cython
from libc.stdint cimport int32_t, int64_t

cdef enum:
    LEVELS = 5
    BUCKETS_TOTAL = 149
    C_UNSCHEDULED = -1

cdef extern from *:
    """
    #define MLC_NO_DEADLINE ((int64_t)0x7FFFFFFFFFFFFFFFLL)
    """
    # "No deadline": the largest int64 nanosecond count, so that "deadline <= now" is false
    # without a test of its own. The one definition for C; Python reads it as
    # ``timerwheel.NO_DEADLINE`` (the pure twin's name; the memory layer cimports it so).
    int64_t C_NO_DEADLINE "MLC_NO_DEADLINE"


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

    cpdef void grow(self, Py_ssize_t slot_count) except *
    cpdef int64_t deadline(self, Py_ssize_t slot) noexcept
    cpdef void schedule(self, Py_ssize_t slot, int64_t deadline_ns) except *
    cpdef void deschedule(self, Py_ssize_t slot) noexcept
    cpdef Py_ssize_t advance(self, int64_t now_ns) except -1

    # private
    cdef int _materialize(self) except -1
    cdef int _bucket_for(self, int64_t deadline_ns) noexcept
    cdef void _link(self, int bucket, int32_t node) noexcept
    cdef int _sweep(self, int bucket) except -1
    cdef int _push_expired(self, int32_t slot) except -1
