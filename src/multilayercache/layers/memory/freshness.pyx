"""Per-entry freshness deadlines of the in-memory layer (compiled twin of
``_freshness_py.py``, which explains them). Two ``int64`` arrays, grown by doubling."""

import numpy as np

from libc.stdint cimport int64_t

from ..._core.timerwheel cimport C_NO_DEADLINE as NO_DEADLINE


cdef class FreshnessDeadlines:
    """``fresh_until`` and ``refresh_at`` (integer nanoseconds) of the slots that have
    them; ``NO_DEADLINE`` for the others."""

    def __init__(self):
        self._fresh_until = np.full(16, NO_DEADLINE, dtype=np.int64)
        self._refresh_at = np.full(16, NO_DEADLINE, dtype=np.int64)
        self.count = 0

    cpdef void grow(self, Py_ssize_t slot_count) except *:
        """Make room for slots ``0 .. slot_count - 1``."""
        cdef Py_ssize_t old = self._fresh_until.shape[0]
        if slot_count <= old:
            return
        cdef Py_ssize_t size = max(slot_count, 2 * old)
        self._fresh_until = _grown(self._fresh_until, size)
        self._refresh_at = _grown(self._refresh_at, size)

    cpdef void assign(self, Py_ssize_t slot, int64_t fresh_until, int64_t refresh_at) noexcept:
        """Give ``slot`` these deadlines (``NO_DEADLINE`` for both: it has none)."""
        if refresh_at > fresh_until:
            refresh_at = fresh_until
        cdef bint had = self._refresh_at[slot] != NO_DEADLINE or self._fresh_until[slot] != NO_DEADLINE
        cdef bint has = refresh_at != NO_DEADLINE or fresh_until != NO_DEADLINE
        self._fresh_until[slot] = fresh_until
        self._refresh_at[slot] = refresh_at
        self.count += <Py_ssize_t>has - <Py_ssize_t>had

    cpdef void forget(self, Py_ssize_t slot) noexcept:
        """The slot left the cache."""
        if self.count:
            self.assign(slot, NO_DEADLINE, NO_DEADLINE)

    cpdef int64_t fresh_until(self, Py_ssize_t slot) noexcept:
        return self._fresh_until[slot]

    cpdef int64_t refresh_at(self, Py_ssize_t slot) noexcept:
        return self._refresh_at[slot]


def _grown(view, Py_ssize_t size):
    array = np.asarray(view)
    bigger = np.full(size, NO_DEADLINE, dtype=np.int64)
    bigger[:array.shape[0]] = array
    return bigger
