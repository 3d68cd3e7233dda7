"""Per-entry freshness deadlines of the in-memory layer (compiled twin of
``_freshness_py.py``, which explains them). Two ``int64`` arrays, grown by doubling, that
exist only once an entry has a freshness deadline: a cache that never uses stale windows
or refresh points pays nothing for them (at 500,000 entries they would be 16 of its bytes
per entry)."""

import numpy as np

from ..._core import buffers

from libc.stdint cimport int64_t

from ..._core.timerwheel cimport C_NO_DEADLINE as NO_DEADLINE


cdef class FreshnessDeadlines:
    """``fresh_until`` and ``refresh_at`` (integer nanoseconds) of the slots that have
    them; ``NO_DEADLINE`` for the others."""

    def __init__(self):
        self._slot_count = 0
        self._materialized = False
        self.count = 0

    cpdef void grow(self, Py_ssize_t slot_count) except *:
        """Make room for slots ``0 .. slot_count - 1`` (interruptible: arrays are made first,
        then swapped in, as ``WTinyLfuPolicy.grow`` does)."""
        if slot_count <= self._slot_count:
            return
        cdef Py_ssize_t size
        if self._materialized and slot_count > self._fresh_until.shape[0]:
            size = max(slot_count, 2 * self._fresh_until.shape[0])
            fresh_until = _grown(self._fresh_until, size)
            refresh_at = _grown(self._refresh_at, size)
            self._fresh_until = fresh_until
            self._refresh_at = refresh_at
        self._slot_count = slot_count

    cdef int _materialize(self) except -1:
        cdef Py_ssize_t size = max(16, self._slot_count)
        fresh_until = buffers.full(size, NO_DEADLINE, np.int64)
        refresh_at = buffers.full(size, NO_DEADLINE, np.int64)
        self._fresh_until = fresh_until
        self._refresh_at = refresh_at
        self._materialized = True
        return 0

    cpdef void assign(self, Py_ssize_t slot, int64_t fresh_until,
                      int64_t refresh_at) except *:
        """Give ``slot`` these deadlines (``NO_DEADLINE`` for both: it has none)."""
        if refresh_at > fresh_until:
            refresh_at = fresh_until
        cdef bint has = refresh_at != NO_DEADLINE or fresh_until != NO_DEADLINE
        if not self._materialized:
            if not has:
                return  # no slot has any: nothing changes
            self._materialize()
        cdef bint had = self._refresh_at[slot] != NO_DEADLINE or self._fresh_until[slot] != NO_DEADLINE
        self._fresh_until[slot] = fresh_until
        self._refresh_at[slot] = refresh_at
        self.count += <Py_ssize_t>has - <Py_ssize_t>had

    cpdef void forget(self, Py_ssize_t slot) noexcept:
        """The slot left the cache."""
        if self.count:  # (then the arrays exist, and clearing allocates nothing)
            self.assign(slot, NO_DEADLINE, NO_DEADLINE)

    cpdef int64_t fresh_until(self, Py_ssize_t slot) noexcept:
        if not self._materialized:
            return NO_DEADLINE
        return self._fresh_until[slot]

    cpdef int64_t refresh_at(self, Py_ssize_t slot) noexcept:
        if not self._materialized:
            return NO_DEADLINE
        return self._refresh_at[slot]


def _grown(view, Py_ssize_t size):
    array = np.asarray(view)
    bigger = buffers.full(size, NO_DEADLINE, np.int64)
    bigger[:array.shape[0]] = array
    return bigger
