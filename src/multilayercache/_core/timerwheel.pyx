"""Hierarchical timer wheel (compiled twin of ``_timerwheel_py.py``, which explains it).

Memory layout: the per-slot arrays exist only once something has a deadline, so a cache
that never uses TTLs pays nothing for them. ``_expired`` is a reusable buffer that
``advance`` fills; compiled callers read ``_expired[0 .. count)``.
"""

import numpy as np

from . import buffers

from libc.stdint cimport int32_t, int64_t

cdef int[LEVELS] SHIFTS = [30, 36, 42, 46, 48]
cdef int[LEVELS] BUCKETS = [64, 64, 16, 4, 1]
cdef int[LEVELS] OFFSETS = [0, 64, 128, 144, 148]

# The constants under the pure twin's names (tests/test_twins.py compares them).
NO_DEADLINE = C_NO_DEADLINE
LEVEL_SHIFTS = tuple(SHIFTS)
LEVEL_BUCKETS = tuple(BUCKETS)
LEVEL_OFFSETS = tuple(OFFSETS)
BUCKET_COUNT = BUCKETS_TOTAL
UNSCHEDULED = C_UNSCHEDULED


cdef class TimerWheel:
    """Deadlines (integer nanoseconds) for cache slots: schedule, deschedule, advance."""

    def __init__(self, int64_t now_ns, Py_ssize_t slot_count=0):
        self.now_ns = now_ns
        self.scheduled = 0
        self._slot_count = 0
        self._materialized = False
        self._expired = np.empty(16, dtype=np.int32)
        self._expired_count = 0
        self.grow(slot_count)

    @property
    def links(self):
        """A copy of the (prev, next) link arrays, shape (2, BUCKET_COUNT + slots)."""
        cdef Py_ssize_t nodes = BUCKETS_TOTAL + self._slot_count
        if not self._materialized:
            links = np.full((2, nodes), C_UNSCHEDULED, dtype=np.int32)
            links[:, :BUCKETS_TOTAL] = np.arange(BUCKETS_TOTAL, dtype=np.int32)
            return links
        return np.array([self._prev[:nodes], self._next[:nodes]], dtype=np.int32)

    @property
    def deadlines(self):
        """A copy of the per-slot deadlines."""
        if not self._materialized:
            return [C_NO_DEADLINE] * self._slot_count
        return [self._deadlines[i] for i in range(self._slot_count)]

    cpdef void grow(self, Py_ssize_t slot_count) except *:
        """Make room for slots ``0 .. slot_count - 1`` (interruptible: arrays are made first,
        then swapped in, as ``WTinyLfuPolicy.grow`` does)."""
        cdef Py_ssize_t old = self._slot_count
        if slot_count <= old:
            return
        cdef Py_ssize_t capacity
        if self._materialized and slot_count > self._deadlines.shape[0]:
            capacity = max(slot_count, 2 * self._deadlines.shape[0])
            deadlines = buffers.full(capacity, C_NO_DEADLINE, np.int64)
            deadlines[:old] = self._deadlines[:old]
            links = _links(BUCKETS_TOTAL + capacity)
            links[0, :BUCKETS_TOTAL + old] = self._prev[:BUCKETS_TOTAL + old]
            links[1, :BUCKETS_TOTAL + old] = self._next[:BUCKETS_TOTAL + old]
            self._deadlines = deadlines
            self._prev = links[0]
            self._next = links[1]
        self._slot_count = slot_count

    cdef int _materialize(self) except -1:
        cdef Py_ssize_t capacity = max(16, self._slot_count)
        deadlines = buffers.full(capacity, C_NO_DEADLINE, np.int64)
        links = _links(BUCKETS_TOTAL + capacity)
        links[0, :BUCKETS_TOTAL] = np.arange(BUCKETS_TOTAL, dtype=np.int32)
        links[1, :BUCKETS_TOTAL] = np.arange(BUCKETS_TOTAL, dtype=np.int32)
        self._deadlines = deadlines
        self._prev = links[0]
        self._next = links[1]
        self._materialized = True
        return 0

    cpdef int64_t deadline(self, Py_ssize_t slot) noexcept:
        """The slot's deadline in nanoseconds, or ``NO_DEADLINE``."""
        if not self._materialized:
            return C_NO_DEADLINE
        return self._deadlines[slot]

    cdef int _bucket_for(self, int64_t deadline_ns) noexcept:
        if deadline_ns < self.now_ns:
            deadline_ns = self.now_ns
        cdef int64_t delay = deadline_ns - self.now_ns
        cdef int level = 0
        while level < LEVELS - 1 and delay >= ((<int64_t>BUCKETS[level]) << SHIFTS[level]):
            level += 1
        return OFFSETS[level] + <int>((deadline_ns >> SHIFTS[level]) & (BUCKETS[level] - 1))

    cdef void _link(self, int bucket, int32_t node) noexcept:
        cdef int32_t last = self._prev[bucket]
        self._prev[node] = last
        self._next[node] = bucket
        self._next[last] = node
        self._prev[bucket] = node

    cpdef void schedule(self, Py_ssize_t slot, int64_t deadline_ns) except *:
        """Expire ``slot`` at ``deadline_ns`` (replacing any earlier schedule)."""
        self.deschedule(slot)
        if deadline_ns == C_NO_DEADLINE:
            return
        if not self._materialized:
            self._materialize()
        self._deadlines[slot] = deadline_ns
        self._link(self._bucket_for(deadline_ns), <int32_t>(BUCKETS_TOTAL + slot))
        self.scheduled += 1

    cpdef void deschedule(self, Py_ssize_t slot) noexcept:
        """Forget the slot's deadline, if any."""
        if not self._materialized:
            return
        cdef int32_t node = <int32_t>(BUCKETS_TOTAL + slot)
        cdef int32_t before = self._prev[node], after
        if before == C_UNSCHEDULED:
            return
        after = self._next[node]
        self._next[before] = after
        self._prev[after] = before
        self._prev[node] = self._next[node] = C_UNSCHEDULED
        self._deadlines[slot] = C_NO_DEADLINE
        self.scheduled -= 1

    cpdef Py_ssize_t advance(self, int64_t now_ns) except -1:
        """Move the clock to ``now_ns``; return how many slots expired (now descheduled):
        they are ``expired``."""
        self._expired_count = 0
        if now_ns < self.now_ns:
            return 0
        cdef int64_t previous_ns = self.now_ns
        cdef int64_t previous_tick, current_tick, t, sweep
        cdef int level, buckets
        self.now_ns = now_ns
        if not self._materialized or self.scheduled == 0:
            return 0
        for level in range(LEVELS):
            previous_tick = previous_ns >> SHIFTS[level]
            current_tick = now_ns >> SHIFTS[level]
            if level > 0 and current_tick == previous_tick:
                break
            buckets = BUCKETS[level]
            sweep = min(current_tick - previous_tick + 1, <int64_t>buckets)
            for t in range(previous_tick, previous_tick + sweep):
                self._sweep(OFFSETS[level] + <int>(t & (buckets - 1)))
        return self._expired_count

    cdef int _sweep(self, int bucket) except -1:
        cdef int32_t node = self._next[bucket], following
        cdef Py_ssize_t slot
        cdef int64_t deadline_ns
        self._next[bucket] = self._prev[bucket] = bucket
        while node != bucket:
            following = self._next[node]
            slot = node - BUCKETS_TOTAL
            self._prev[node] = self._next[node] = C_UNSCHEDULED
            deadline_ns = self._deadlines[slot]
            if deadline_ns <= self.now_ns:
                self._deadlines[slot] = C_NO_DEADLINE
                self.scheduled -= 1
                self._push_expired(<int32_t>slot)
            else:
                self._link(self._bucket_for(deadline_ns), node)
            node = following
        return 0

    cdef int _push_expired(self, int32_t slot) except -1:
        if self._expired_count == self._expired.shape[0]:
            bigger = np.empty(2 * self._expired_count, dtype=np.int32)
            bigger[:self._expired_count] = self._expired
            self._expired = bigger
        self._expired[self._expired_count] = slot
        self._expired_count += 1
        return 0

    @property
    def expired(self):
        """The slots that the last ``advance`` expired."""
        return [self._expired[i] for i in range(self._expired_count)]


def _links(Py_ssize_t nodes):
    # prev (row 0) and next (row 1) of every node, unscheduled
    return buffers.full(2 * nodes, C_UNSCHEDULED, np.int32).reshape(2, nodes)
