"""Hierarchical timer wheel: per-entry expiry in O(1), without scanning the cache.

The reference (pure-Python) twin of ``timerwheel.pyx``.

Idea (Varghese & Lauck, "Hashed and hierarchical timing wheels", SOSP 1987; the layout
Caffeine uses for ``expireAfter``): time is cut into ticks; each level of the wheel is a ring
of buckets, one bucket per tick of that level's tick length. An entry goes into the finest
level whose ring still covers its deadline, in the bucket of the deadline's tick:

    level  tick length           buckets  ring covers
    0      2^30 ns  (~1.07 s)    64       ~1.1 minutes
    1      2^36 ns  (~1.15 min)  64       ~1.2 hours
    2      2^42 ns  (~1.22 h)    16       ~19.5 hours
    3      2^46 ns  (~19.5 h)    4        ~3.3 days
    4      2^48 ns  (~3.3 days)  1        everything later

``advance(now)`` empties the buckets whose ticks have passed, at every level whose tick
changed, plus the current level-0 bucket: entries whose deadline has come are expired, the
others fall into a finer level. Each entry moves down at most four times in its life, so
expiry is O(1) amortized, and nothing outside the passed buckets is touched.

Buckets are intrusive doubly linked lists over two int arrays: node ``b`` for
``b < BUCKET_COUNT`` is the sentinel of bucket ``b``, and node ``BUCKET_COUNT + slot`` is the
cache entry in ``slot``. Scheduling and descheduling are a few array writes.
"""

import numpy as np

NO_DEADLINE = (1 << 63) - 1
LEVEL_SHIFTS = (30, 36, 42, 46, 48)
LEVEL_BUCKETS = (64, 64, 16, 4, 1)
LEVEL_OFFSETS = (0, 64, 128, 144, 148)  # index of each level's first bucket
BUCKET_COUNT = 149
UNSCHEDULED = -1


class TimerWheel:
    """Deadlines (integer nanoseconds) for cache slots: schedule, deschedule, advance."""

    def __init__(self, now_ns: int, slot_count: int = 0) -> None:
        self.now_ns = now_ns
        self.deadlines: list[int] = []
        self._prev = list(range(BUCKET_COUNT))
        self._next = list(range(BUCKET_COUNT))
        self.scheduled = 0
        self.expired: list[int] = []  # the slots that the last ``advance`` expired
        self.grow(slot_count)

    @property
    def links(self) -> np.ndarray:
        """A copy of the (prev, next) link arrays, shape (2, BUCKET_COUNT + slots)."""
        return np.array([self._prev, self._next], dtype=np.int32)

    def grow(self, slot_count: int) -> None:
        """Make room for slots ``0 .. slot_count - 1``."""
        # (each list by itself: see WTinyLfuPolicy.grow; the links start with the buckets')
        self.deadlines.extend([NO_DEADLINE] * (slot_count - len(self.deadlines)))
        for links in (self._prev, self._next):
            links.extend([UNSCHEDULED] * (BUCKET_COUNT + slot_count - len(links)))

    def deadline(self, slot: int) -> int:
        """The slot's deadline in nanoseconds, or ``NO_DEADLINE``."""
        return self.deadlines[slot]

    def _bucket_for(self, deadline_ns: int) -> int:
        # The ring of a level covers delays below (tick length * buckets); deadlines already
        # due go to the current level-0 bucket, which every advance looks at.
        deadline_ns = max(deadline_ns, self.now_ns)
        delay = deadline_ns - self.now_ns
        last = len(LEVEL_SHIFTS) - 1
        for level in range(last):
            if delay < (LEVEL_BUCKETS[level] << LEVEL_SHIFTS[level]):
                break
        else:
            level = last
        tick = deadline_ns >> LEVEL_SHIFTS[level]
        return LEVEL_OFFSETS[level] + (tick & (LEVEL_BUCKETS[level] - 1))

    def schedule(self, slot: int, deadline_ns: int) -> None:
        """Expire ``slot`` at ``deadline_ns`` (replacing any earlier schedule)."""
        self.deschedule(slot)
        if deadline_ns == NO_DEADLINE:
            return
        self.deadlines[slot] = deadline_ns
        self._link(self._bucket_for(deadline_ns), BUCKET_COUNT + slot)
        self.scheduled += 1

    def deschedule(self, slot: int) -> None:
        """Forget the slot's deadline, if any."""
        node = BUCKET_COUNT + slot
        if self._prev[node] == UNSCHEDULED:
            return
        self._unlink(node)
        self.deadlines[slot] = NO_DEADLINE
        self.scheduled -= 1

    def advance(self, now_ns: int) -> int:
        """Move the clock to ``now_ns``; return how many slots expired (now descheduled):
        they are ``expired``."""
        expired: list[int] = []
        self.expired = expired
        if now_ns < self.now_ns:
            return 0
        previous_ns = self.now_ns
        self.now_ns = now_ns
        for level, shift in enumerate(LEVEL_SHIFTS):
            previous_tick = previous_ns >> shift
            current_tick = now_ns >> shift
            if level > 0 and current_tick == previous_tick:
                break  # coarser levels cannot have moved either
            buckets = LEVEL_BUCKETS[level]
            sweep = min(current_tick - previous_tick + 1, buckets)
            for tick in range(previous_tick, previous_tick + sweep):
                self._sweep(LEVEL_OFFSETS[level] + (tick & (buckets - 1)), expired)
        return len(expired)

    def _sweep(self, bucket: int, expired: list[int]) -> None:
        # Detach the whole list first: entries rescheduled below may land in this bucket again.
        node = self._next[bucket]
        self._next[bucket] = self._prev[bucket] = bucket
        while node != bucket:
            following = self._next[node]
            slot = node - BUCKET_COUNT
            self._prev[node] = self._next[node] = UNSCHEDULED
            deadline_ns = self.deadlines[slot]
            if deadline_ns <= self.now_ns:
                self.deadlines[slot] = NO_DEADLINE
                self.scheduled -= 1
                expired.append(slot)
            else:
                self._link(self._bucket_for(deadline_ns), node)
            node = following

    def _link(self, bucket: int, node: int) -> None:
        last = self._prev[bucket]
        self._prev[node] = last
        self._next[node] = bucket
        self._next[last] = node
        self._prev[bucket] = node

    def _unlink(self, node: int) -> None:
        before, after = self._prev[node], self._next[node]
        self._next[before] = after
        self._prev[after] = before
        self._prev[node] = self._next[node] = UNSCHEDULED
