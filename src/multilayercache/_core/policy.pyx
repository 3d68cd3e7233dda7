"""W-TinyLFU policy with a ghost-guided adaptive window and reuse-distance ties (compiled
twin of ``_policy_py.py``, which explains the algorithm and every choice).

Memory layout: node ``n`` is four ``int32`` in one array (prev, next, region, last use);
nodes 0-2 are the list sentinels and node ``3 + slot`` the entry in ``slot``. A hit then
reads and writes one 16-byte record per node it touches, and a window or probation hit
stamps its last use in the record it already writes. The ``uint64`` hash, the ``uint32``
reuse distance, the ``uint8`` readmission flag and the ``int64`` weight (weighted caches
only) are separate arrays, read on admission only. Evicted slots are written to a reusable
``int32`` buffer; the layer reads ``_evicted[0 .. count)`` after each call.
"""

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

from .doorkeeper cimport Doorkeeper, doorkeeper_add, doorkeeper_contains
from .ghost cimport GhostTable
from .sketch cimport CountMinSketch, sketch_add, sketch_frequency

WINDOW = 0
PROBATION = 1
PROTECTED = 2
NOT_CACHED = 3
HEADS = 3
PROTECTED_PERCENT = 65
WARM_FREQUENCY = 6
RANDOM_ADMIT_BITS = 7
CLOSE_CALL = 1
RECENCY_FREQUENCY = 2
UNKNOWN_REUSE = 0xFFFFFFFF
DENSITY_PERIOD = 4
DENSITY_SHRINK_SHIFT = 3
INITIAL_SIZING = 1 << 20
WEIGHTED_INITIAL_SIZING = 1 << 10
DEFAULT_SEED = 0x2545F4914F6CDD1D
MAX_ENTRIES = (1 << 31) - 1

cdef enum:
    # Each node is NODE_FIELDS int32s, so a node's links and region share one cache line
    # (and its neighbours' links are one line each).
    NODE_FIELDS = 4
    PREV = 0
    NEXT = 1
    REGION = 2
    LAST_USE = 3
    C_WINDOW = 0
    C_PROBATION = 1
    C_PROTECTED = 2
    C_NOT_CACHED = 3
    C_HEADS = 3
    C_PROTECTED_PERCENT = 65
    C_WARM_FREQUENCY = 6
    C_RANDOM_ADMIT_BITS = 7
    C_CLOSE_CALL = 1
    C_RECENCY_FREQUENCY = 2
    C_DENSITY_PERIOD = 4
    C_DENSITY_SHRINK_SHIFT = 3
    GHOST_WINDOW = 1
    GHOST_MAIN = 2

cdef uint32_t C_UNKNOWN_REUSE = 0xFFFFFFFF


cdef class WTinyLfuPolicy:
    """Decides admission and eviction for up to ``capacity`` entries (or total weight)."""

    def __init__(self, int64_t capacity, bint weighted=False, uint64_t seed=DEFAULT_SEED):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        if seed == 0:
            raise ValueError("seed must be non-zero (xorshift has a fixed point at 0)")
        self.capacity = capacity
        self.weighted = weighted
        self.entry_limit = MAX_ENTRIES if weighted else capacity
        self.sized_for = min(
            self.entry_limit, WEIGHTED_INITIAL_SIZING if weighted else INITIAL_SIZING
        )
        self.sketch = CountMinSketch(self.sized_for)
        self.doorkeeper = Doorkeeper(self.sized_for)
        self.ghosts = GhostTable(self.sized_for)
        self._cache_frequency_views()
        self.epoch = 1
        self.random_state = seed
        self._region_weights[0] = self._region_weights[1] = self._region_weights[2] = 0
        self.entries = 0
        self.total_weight = 0
        self._slot_count = 0
        self._nodes = np.zeros(NODE_FIELDS * C_HEADS, dtype=np.int32)
        for head in range(C_HEADS):  # empty lists: each sentinel points at itself
            self._nodes[NODE_FIELDS * head + PREV] = head
            self._nodes[NODE_FIELDS * head + NEXT] = head
        self._node_capacity = 0
        self._hash = np.empty(0, dtype=np.uint64)
        self._reuse = np.empty(0, dtype=np.uint32)
        self._readmit = np.empty(0, dtype=np.uint8)
        self._weight = np.empty(0, dtype=np.int64) if weighted else None
        self._evicted = np.empty(16, dtype=np.int32)
        self._evicted_count = 0
        self.clock = 0
        self.window_hits = self.probation_hits = self.misses_since_check = 0
        self.evictions = 0
        self.rejections = 0
        self._set_window(0)

    # ------------------------------------------------------------------ introspection
    @property
    def region_weights(self):
        """Weight held by the window, probation and protected regions."""
        return [self._region_weights[0], self._region_weights[1], self._region_weights[2]]

    @property
    def regions(self):
        """A copy of the per-slot region codes (0 window, 1 probation, 2 protected, 3 free)."""
        nodes = np.asarray(self._nodes).reshape(-1, NODE_FIELDS)
        return nodes[C_HEADS:C_HEADS + self._slot_count, REGION].astype(np.uint8)

    @property
    def links(self):
        """A copy of the (prev, next) link arrays, shape (2, 3 + slots)."""
        cdef Py_ssize_t nodes = C_HEADS + self._slot_count
        fields = np.asarray(self._nodes).reshape(-1, NODE_FIELDS)[:nodes]
        return np.array([fields[:, PREV], fields[:, NEXT]], dtype=np.int32)

    def region_of(self, Py_ssize_t slot) -> int:
        """The slot's region code."""
        return self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION]

    def order(self, int region):
        """Slots of one region, least recent first (for tests and snapshots)."""
        slots = []
        cdef int32_t node = self._nodes[NODE_FIELDS * (region) + NEXT]
        while node != region:
            slots.append(node - C_HEADS)
            node = self._nodes[NODE_FIELDS * (node) + NEXT]
        return slots

    # ------------------------------------------------------------------ frequency
    cdef void _cache_frequency_views(self) noexcept:
        self._sketch_words = self.sketch.words
        self._sketch_mask = self.sketch.block_mask
        self._doorkeeper_words = self.doorkeeper.words
        self._doorkeeper_mask = self.doorkeeper.bit_mask

    cdef bint record(self, uint64_t key_hash) noexcept:
        """Count one access. Returns True when the key is *saturated*: in the doorkeeper,
        and its sketch minimum at 15. Until ``epoch`` changes, recording it again changes
        nothing (doorkeeper bits and counters only go up between agings), so the layer may
        skip it for a key it knows is saturated in the current epoch."""
        if not doorkeeper_add(self._doorkeeper_words, self._doorkeeper_mask, key_hash):
            return False
        if not sketch_add(self._sketch_words, self._sketch_mask, key_hash):
            return True
        cdef CountMinSketch sketch = self.sketch
        sketch.additions += 1
        if sketch.additions >= sketch.sample_size:
            sketch.reset()
            self.doorkeeper.clear()
            self.epoch += 1
        return False

    cdef int freq(self, uint64_t key_hash) noexcept:
        return (sketch_frequency(self._sketch_words, self._sketch_mask, key_hash)
                + doorkeeper_contains(self._doorkeeper_words, self._doorkeeper_mask, key_hash))

    def record_access(self, uint64_t key_hash) -> None:
        """Count one access to the key (hit or miss)."""
        self.record(key_hash)

    def frequency(self, uint64_t key_hash) -> int:
        """Estimated recent accesses of the key."""
        return self.freq(key_hash)

    def has_seen(self, uint64_t key_hash) -> bool:
        """Whether the key was accessed before in this sample period (doorkeeper)."""
        return doorkeeper_contains(self._doorkeeper_words, self._doorkeeper_mask, key_hash)

    # ------------------------------------------------------------------ slots
    cdef int ensure_slots(self, Py_ssize_t slot_count) except -1:
        cdef Py_ssize_t old = self._slot_count
        if slot_count <= old:
            return 0
        self._slot_count = slot_count
        if slot_count <= self._node_capacity:
            return 0
        cdef Py_ssize_t capacity = max(slot_count, 2 * self._node_capacity, 16)
        nodes = np.zeros(NODE_FIELDS * (C_HEADS + capacity), dtype=np.int32)
        nodes[:NODE_FIELDS * (C_HEADS + old)] = self._nodes[:NODE_FIELDS * (C_HEADS + old)]
        fields = nodes.reshape(-1, NODE_FIELDS)
        fields[C_HEADS + old:, PREV] = -1
        fields[C_HEADS + old:, NEXT] = -1
        fields[C_HEADS + old:, REGION] = C_NOT_CACHED
        self._nodes = nodes
        self._node_capacity = capacity
        self._hash = _grown(self._hash, old, capacity, 0)
        self._reuse = _grown(self._reuse, old, capacity, 0)
        self._readmit = _grown(self._readmit, old, capacity, 0)
        if self.weighted:
            self._weight = _grown(self._weight, old, capacity, 0)
        return 0

    cdef uint8_t slot_region(self, Py_ssize_t slot) noexcept:
        return <uint8_t>self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION]

    def grow(self, Py_ssize_t slot_count) -> None:
        """Make room for slots ``0 .. slot_count - 1``."""
        self.ensure_slots(slot_count)

    cdef int64_t _weight_of(self, Py_ssize_t slot) noexcept:
        return self._weight[slot] if self.weighted else 1

    cdef void hit(self, Py_ssize_t slot) noexcept:
        cdef uint8_t region = self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION]
        if region == C_PROTECTED:  # the hot path: unchanged by the recency bookkeeping
            if self._nodes[NODE_FIELDS * (C_PROTECTED) + PREV] != C_HEADS + slot:
                self._relink(slot, C_PROTECTED)
            return
        self._nodes[NODE_FIELDS * (C_HEADS + slot) + LAST_USE] = <int32_t>self.clock
        if region == C_WINDOW:
            self.window_hits += 1
            if self.window_target <= self.capacity // 2:
                self._relink(slot, C_WINDOW)
                return
            self._relink(slot, C_PROBATION)
        else:
            self.probation_hits += 1
            self._relink(slot, C_PROTECTED)
        self._demote_protected_overflow()

    cdef Py_ssize_t insert(self, Py_ssize_t slot, uint64_t key_hash, int64_t weight) except -1:
        self._ensure_sized(self.entries + 1)
        self.clock += 1
        self._learn_from_ghost(slot, key_hash)
        self._nodes[NODE_FIELDS * (C_HEADS + slot) + LAST_USE] = <int32_t>self.clock
        self._check_density()
        self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION] = C_WINDOW
        self._hash[slot] = key_hash
        if self.weighted:
            self._weight[slot] = weight
        else:
            weight = 1
        self._push_most_recent(C_WINDOW, <int32_t>(C_HEADS + slot))
        self._region_weights[C_WINDOW] += weight
        self.total_weight += weight
        self.entries += 1
        return self._balance()

    cdef Py_ssize_t update(self, Py_ssize_t slot, int64_t weight) except -1:
        cdef int64_t delta
        if self.weighted:
            delta = weight - self._weight[slot]
            self._weight[slot] = weight
            self._region_weights[self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION]] += delta
            self.total_weight += delta
        return self._balance()

    cdef void remove(self, Py_ssize_t slot) noexcept:
        self._unlink(<int32_t>(C_HEADS + slot))
        self._forget(slot)

    def on_hit(self, Py_ssize_t slot) -> None:
        """A lookup found the entry: update its recency and region."""
        self.hit(slot)

    def on_insert(self, Py_ssize_t slot, uint64_t key_hash, int64_t weight):
        """A new entry in ``slot``; returns the slots evicted to make room (maybe ``slot``)."""
        cdef Py_ssize_t count = self.insert(slot, key_hash, weight)
        return [self._evicted[i] for i in range(count)]

    def on_update(self, Py_ssize_t slot, int64_t weight):
        """The entry's weight changed; returns the slots evicted to make room."""
        cdef Py_ssize_t count = self.update(slot, weight)
        return [self._evicted[i] for i in range(count)]

    def on_remove(self, Py_ssize_t slot) -> None:
        """The layer dropped the entry (delete or expiry): forget it, leave no ghost."""
        self.remove(slot)

    # ------------------------------------------------------------------ adaptation
    cdef int _ensure_sized(self, Py_ssize_t entries) except -1:
        if entries <= self.sized_for or self.sized_for >= self.entry_limit:
            return 0
        while entries > self.sized_for and self.sized_for < self.entry_limit:
            self.sized_for = min(2 * self.sized_for, self.entry_limit)
        self.sketch = CountMinSketch(self.sized_for)
        self.doorkeeper = Doorkeeper(self.sized_for)
        self.ghosts = GhostTable(self.sized_for)
        self._cache_frequency_views()
        self.epoch += 1
        return 0

    cdef uint32_t _idle_time(self, Py_ssize_t slot) noexcept:
        return self.clock - <uint32_t>self._nodes[NODE_FIELDS * (C_HEADS + slot) + LAST_USE]

    cdef void _learn_from_ghost(self, Py_ssize_t slot, uint64_t key_hash) noexcept:
        cdef uint32_t age, last_use
        cdef int region = self.ghosts.pop(key_hash, &age, &last_use)
        self._reuse[slot] = self.clock - last_use if region else C_UNKNOWN_REUSE
        cdef Py_ssize_t horizon = max(1, self._entry_capacity() // 2)
        cdef bint recent = region != 0 and age < horizon
        self._readmit[slot] = 1 if recent and region == GHOST_WINDOW else 0
        if not recent:
            return
        if region == GHOST_MAIN:
            self._set_window(self.window_target - self._step())
            return
        if self.freq(key_hash) > C_RECENCY_FREQUENCY:
            return
        cdef Py_ssize_t victim = self._main_victim()
        if victim >= 0 and self._reuse[slot] >= self._idle_time(victim):
            return
        self._set_window(self.window_target + self._step())

    cdef void _check_density(self) noexcept:
        cdef int64_t window, probation
        self.misses_since_check += 1
        if C_DENSITY_PERIOD * self.misses_since_check < self._entry_capacity():
            return
        window = self._region_weights[C_WINDOW]
        probation = self._region_weights[C_PROBATION]
        # In doubles, as the twin does: hit counts times weights may overflow int64.
        if window > 0 and (<double>self.window_hits * <double>probation
                           < <double>self.probation_hits * <double>window):
            self._set_window(self.window_target
                             - max(self._step(), self.window_target >> C_DENSITY_SHRINK_SHIFT))
        self.window_hits = self.probation_hits = self.misses_since_check = 0

    cdef Py_ssize_t _entry_capacity(self) noexcept:
        return self.sized_for if self.weighted else <Py_ssize_t>self.capacity

    cdef int64_t _step(self) noexcept:
        if not self.weighted:
            return 1
        return max(<int64_t>1, self.total_weight // max(<Py_ssize_t>1, self.entries))

    cdef void _set_window(self, int64_t target) noexcept:
        self.window_target = max(<int64_t>0, min(self.capacity, target))
        self.window_max = self.window_target
        self.protected_max = (self.capacity - self.window_max) * C_PROTECTED_PERCENT // 100

    # ------------------------------------------------------------------ eviction
    cdef Py_ssize_t _balance(self) except -1:
        cdef Py_ssize_t candidate, victim
        self._evicted_count = 0
        while self._region_weights[C_WINDOW] > self.window_max:
            candidate = self._nodes[NODE_FIELDS * (C_WINDOW) + NEXT] - C_HEADS
            if self._make_room_in_main(candidate):
                self._relink(candidate, C_PROBATION)
            else:
                self.rejections += 1
                self._evict(candidate, GHOST_WINDOW)
        while self.total_weight > self.capacity:
            victim = self._main_victim()
            if victim >= 0:
                self._evict(victim, GHOST_MAIN)
            else:
                self._evict(self._nodes[NODE_FIELDS * (C_WINDOW) + NEXT] - C_HEADS, GHOST_WINDOW)
        self._demote_protected_overflow()
        return self._evicted_count

    cdef bint _make_room_in_main(self, Py_ssize_t candidate) except -1:
        cdef Py_ssize_t victim
        while self.total_weight > self.capacity:
            victim = self._main_victim()
            if victim < 0 or not self._prefer_candidate(candidate, victim):
                return False
            self._evict(victim, GHOST_MAIN)
        return True

    cdef Py_ssize_t _main_victim(self) noexcept:
        cdef int32_t node = self._nodes[NODE_FIELDS * (C_PROBATION) + NEXT]
        if node != C_PROBATION:
            return node - C_HEADS
        node = self._nodes[NODE_FIELDS * (C_PROTECTED) + NEXT]
        if node != C_PROTECTED:
            return node - C_HEADS
        return -1

    cdef bint _prefer_candidate(self, Py_ssize_t candidate, Py_ssize_t victim) noexcept:
        cdef bint sooner = self._reuse[candidate] < self._idle_time(victim)
        if self._readmit[candidate] and sooner:
            return True
        cdef int candidate_frequency = self.freq(self._hash[candidate])
        cdef int victim_frequency = self.freq(self._hash[victim])
        if victim_frequency <= candidate_frequency <= victim_frequency + C_CLOSE_CALL:
            return sooner
        if candidate_frequency > victim_frequency:
            return True
        if candidate_frequency >= C_WARM_FREQUENCY:
            return self._next_random() >> (64 - C_RANDOM_ADMIT_BITS) == 0
        return False

    cdef int _evict(self, Py_ssize_t slot, int ghost_region) except -1:
        self._unlink(<int32_t>(C_HEADS + slot))
        self.ghosts.note(self._hash[slot], ghost_region,
                         <uint32_t>self._nodes[NODE_FIELDS * (C_HEADS + slot) + LAST_USE])
        self._forget(slot)
        self.evictions += 1
        if self._evicted_count == self._evicted.shape[0]:
            bigger = np.empty(2 * self._evicted_count, dtype=np.int32)
            bigger[:self._evicted_count] = self._evicted
            self._evicted = bigger
        self._evicted[self._evicted_count] = <int32_t>slot
        self._evicted_count += 1
        return 0

    cdef void _forget(self, Py_ssize_t slot) noexcept:
        cdef int64_t weight = self._weight_of(slot)
        self._region_weights[self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION]] -= weight
        self.total_weight -= weight
        self.entries -= 1
        self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION] = C_NOT_CACHED
        self._readmit[slot] = 0
        if self.weighted:
            self._weight[slot] = 0

    cdef void _demote_protected_overflow(self) noexcept:
        while self._region_weights[C_PROTECTED] > self.protected_max:
            self._relink(self._nodes[NODE_FIELDS * (C_PROTECTED) + NEXT] - C_HEADS, C_PROBATION)

    cdef void _relink(self, Py_ssize_t slot, uint8_t region) noexcept:
        cdef int32_t node = <int32_t>(C_HEADS + slot)
        cdef int64_t weight
        self._unlink(node)
        if self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION] != region:
            weight = self._weight_of(slot)
            self._region_weights[self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION]] -= weight
            self._region_weights[region] += weight
            self._nodes[NODE_FIELDS * (C_HEADS + slot) + REGION] = region
        self._push_most_recent(region, node)

    cdef uint64_t _next_random(self) noexcept:
        cdef uint64_t x = self.random_state
        x ^= x >> 12
        x ^= x << 25
        x ^= x >> 27
        self.random_state = x
        return x * 0x2545F4914F6CDD1DULL

    # ------------------------------------------------------------------ lists
    cdef void _push_most_recent(self, int32_t head, int32_t node) noexcept:
        cdef int32_t last = self._nodes[NODE_FIELDS * (head) + PREV]
        self._nodes[NODE_FIELDS * (node) + PREV] = last
        self._nodes[NODE_FIELDS * (node) + NEXT] = head
        self._nodes[NODE_FIELDS * (last) + NEXT] = node
        self._nodes[NODE_FIELDS * (head) + PREV] = node

    cdef void _unlink(self, int32_t node) noexcept:
        cdef int32_t before = self._nodes[NODE_FIELDS * (node) + PREV], after = self._nodes[NODE_FIELDS * (node) + NEXT]
        self._nodes[NODE_FIELDS * (before) + NEXT] = after
        self._nodes[NODE_FIELDS * (after) + PREV] = before


def _grown(view, Py_ssize_t used, Py_ssize_t capacity, fill):
    array = np.asarray(view)
    bigger = np.full(capacity, fill, dtype=array.dtype)
    bigger[:used] = array[:used]
    return bigger
