"""W-TinyLFU policy with a ghost-guided adaptive window and reuse-distance ties (compiled
twin of ``_policy_py.py``, which explains the algorithm; ``docs/policy.md`` keeps the
measurements behind each choice).

Memory layout: node ``n`` is eight ``int32`` in one array (prev, next, region, last use,
the entry's ``uint64`` hash in two, then two that belong to the policy's owner: the layer
keeps its per-slot record there);
nodes 0-2 are the list sentinels and node ``3 + slot`` the entry in ``slot``. The array
starts on a 64-byte boundary, so a hit reads and writes one cache line per node it touches
(its own holding the key's hash and the layer's record too), and a window or probation hit
stamps its last use in the record it already writes. The ``uint32`` reuse distance, the
``uint8`` readmission flag and the ``int64`` weight (weighted caches only) are separate
arrays, read on admission only. Evicted slots are written to a reusable
``int32`` buffer; the layer reads ``_evicted[0 .. count)`` after each call.
"""

import numpy as np

from . import buffers

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

from .doorkeeper cimport Doorkeeper, doorkeeper_add, doorkeeper_contains
from .ghost cimport MAIN as GHOST_MAIN
from .ghost cimport WINDOW as GHOST_WINDOW
from .ghost cimport GhostTable
from .sketch cimport CountMinSketch, sketch_add, sketch_frequency

# The int constants are ``cpdef enum``s in policy.pxd (C and Python alike); these do not
# fit a C int.
UNKNOWN_REUSE = 0xFFFFFFFF
DEFAULT_SEED = 0x2545F4914F6CDD1D

cdef uint32_t C_UNKNOWN_REUSE = UNKNOWN_REUSE


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
        self._nodes = _aligned_zeros(NODE_FIELDS * HEADS)
        for head in range(HEADS):  # empty lists: each sentinel points at itself
            self._nodes[NODE_FIELDS * head + PREV] = head
            self._nodes[NODE_FIELDS * head + NEXT] = head
        self._node_capacity = 0
        self._reuse = np.empty(0, dtype=np.uint32)
        self._readmit = np.empty(0, dtype=np.uint8)
        self._weight = np.empty(0, dtype=np.int64) if weighted else None
        self._evicted = np.empty(16, dtype=np.int32)
        self._evicted_count = 0
        self._rejected = np.empty(16, dtype=np.int32)
        self._rejected_count = 0
        self.clock = 0
        self.window_hits = self.probation_hits = self.misses_since_check = 0
        self.evictions = 0
        self.rejections = 0
        self.held = -1
        self._victim_node = -1
        self._victim_epoch = 0
        self._victim_estimate = 0
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
        return nodes[HEADS:HEADS + self._slot_count, REGION].astype(np.uint8)

    @property
    def links(self):
        """A copy of the (prev, next) link arrays, shape (2, 3 + slots)."""
        cdef Py_ssize_t nodes = HEADS + self._slot_count
        fields = np.asarray(self._nodes).reshape(-1, NODE_FIELDS)[:nodes]
        return np.array([fields[:, PREV], fields[:, NEXT]], dtype=np.int32)

    cpdef int region_of(self, Py_ssize_t slot) noexcept:
        """The slot's region code."""
        return self._nodes[NODE_FIELDS * (HEADS + slot) + REGION]

    @property
    def evicted(self):
        """The slots the last ``on_insert`` / ``on_update`` evicted (``_evicted[0 .. n)``
        for compiled callers)."""
        return [self._evicted[i] for i in range(self._evicted_count)]

    @property
    def rejected(self):
        """Those of ``evicted`` that admission turned away (``_rejected[0 .. n)``)."""
        return [self._rejected[i] for i in range(self._rejected_count)]

    def order(self, int region):
        """Slots of one region, least recent first (for tests and snapshots)."""
        slots = []
        cdef int32_t node = self._nodes[NODE_FIELDS * (region) + NEXT]
        while node != region:
            slots.append(node - HEADS)
            node = self._nodes[NODE_FIELDS * (node) + NEXT]
        return slots

    # ------------------------------------------------------------------ frequency
    cdef void _cache_frequency_views(self) noexcept:
        self._sketch_words = self.sketch.words
        self._sketch_mask = self.sketch.block_mask
        self._doorkeeper_words = self.doorkeeper.words
        self._doorkeeper_mask = self.doorkeeper.bit_mask

    cpdef bint record_access(self, uint64_t key_hash) noexcept:
        """Count one access. Returns True when the key is *saturated*: in the doorkeeper,
        and its sketch minimum at 15. Until ``epoch`` changes, recording it again changes
        nothing (doorkeeper bits and counters only go up between agings), so the layer may
        skip it for a key it knows is saturated in the current epoch."""
        return self.count_access(key_hash)

    cdef void _age(self) noexcept:
        # Out of line: once per sample period.
        self.sketch.reset()
        self.doorkeeper.clear()
        self.epoch += 1

    cpdef int frequency(self, uint64_t key_hash) noexcept:
        """Estimated recent accesses of the key: sketch count, plus one if the doorkeeper
        has seen it."""
        return policy_frequency(self, key_hash)

    # ------------------------------------------------------------------ slots
    cpdef void grow(self, Py_ssize_t slot_count) except *:
        """Make room for slots ``0 .. slot_count - 1``. Interruptible: the new arrays are
        made first (allocation runs Python code, where a signal handler may raise), and
        swapped in only once all exist, so an interrupted grow leaves the policy as it was."""
        cdef Py_ssize_t old = self._slot_count
        if slot_count <= old:
            return
        cdef Py_ssize_t capacity
        if slot_count > self._node_capacity:
            # Doubling, but not past what the cache can hold at once (its entries, the held
            # newcomer and the slot being filled): a cache of 500,000 entries gets 500,002
            # nodes, not 524,288 (1.5 bytes per entry).
            capacity = max(
                slot_count, min(max(2 * self._node_capacity, 16), self.entry_limit + 2)
            )
            nodes = _aligned_zeros(NODE_FIELDS * (HEADS + capacity))
            nodes[:NODE_FIELDS * (HEADS + old)] = self._nodes[:NODE_FIELDS * (HEADS + old)]
            fields = nodes.reshape(-1, NODE_FIELDS)
            fields[HEADS + old:, PREV] = -1
            fields[HEADS + old:, NEXT] = -1
            fields[HEADS + old:, REGION] = NOT_CACHED
            reuse = _grown(self._reuse, old, capacity, 0)
            readmit = _grown(self._readmit, old, capacity, 0)
            weight = _grown(self._weight, old, capacity, 0) if self.weighted else None
            self._nodes = nodes
            self._reuse = reuse
            self._readmit = readmit
            if self.weighted:
                self._weight = weight
            self._node_capacity = capacity
        self._slot_count = slot_count

    cdef inline int64_t _weight_of(self, Py_ssize_t slot) noexcept:
        return self._weight[slot] if self.weighted else 1

    cpdef void on_hit(self, Py_ssize_t slot) noexcept:
        """A lookup found the entry: update its recency and region."""
        cdef uint8_t region = self._nodes[NODE_FIELDS * (HEADS + slot) + REGION]
        if region == PROTECTED:  # the hot path: unchanged by the recency bookkeeping
            if self._nodes[NODE_FIELDS * (PROTECTED) + PREV] != HEADS + slot:
                self._relink(slot, PROTECTED)
            return
        if region == HELD:
            return
        self._nodes[NODE_FIELDS * (HEADS + slot) + LAST_USE] = <int32_t>self.clock
        if region == WINDOW:
            self.window_hits += 1
            if self.window_target <= self.capacity // 2:
                self._relink(slot, WINDOW)
                return
            self._relink(slot, PROBATION)
        else:
            self.probation_hits += 1
            self._relink(slot, PROTECTED)
        self._demote_protected_overflow()

    cpdef Py_ssize_t on_insert(self, Py_ssize_t slot, uint64_t key_hash,
                               int64_t weight) except -1:
        """A new entry in ``slot``; returns how many slots were evicted to make room (maybe
        ``slot`` itself): they are ``evicted``."""
        cdef int ghost
        cdef uint32_t age, last_use
        self._ensure_sized(self.entries + 1)
        self.clock += 1
        # A new key that left no ghost (most of them) is handled here; a returning one out
        # of line (on a miss stream the calls cost ~10% of an insert's instructions).
        ghost, age, last_use = self.ghosts._take(key_hash)
        if ghost:
            self._learn_from_ghost(slot, key_hash, ghost, age, last_use)
        else:
            self._reuse[slot] = C_UNKNOWN_REUSE
            self._readmit[slot] = 0
        self._nodes[NODE_FIELDS * (HEADS + slot) + LAST_USE] = <int32_t>self.clock
        self.misses_since_check += 1
        if DENSITY_PERIOD * self.misses_since_check >= self._entry_capacity():
            self._check_density()
        self._nodes[NODE_FIELDS * (HEADS + slot) + REGION] = WINDOW
        self.hashes()[HASH_STRIDE * slot] = key_hash
        if self.weighted:
            self._weight[slot] = weight
        else:
            weight = 1
        self._push_most_recent(WINDOW, <int32_t>(HEADS + slot))
        self._region_weights[WINDOW] += weight
        self.total_weight += weight
        self.entries += 1
        return self._balance(slot)

    cpdef Py_ssize_t on_update(self, Py_ssize_t slot, int64_t weight) except -1:
        """The entry's value was replaced (its weight may have changed); returns how many
        slots were evicted to make room. A weighted entry moves to the most recent end of
        its region first, so that the room it needs is taken from others."""
        cdef int64_t delta
        cdef uint8_t region = self._nodes[NODE_FIELDS * (HEADS + slot) + REGION]
        if not self.weighted or region == HELD:
            self._evicted_count = self._rejected_count = 0
            return 0
        delta = weight - self._weight[slot]
        self._weight[slot] = weight
        self._region_weights[region] += delta
        self.total_weight += delta
        self._relink(slot, region)
        return self._balance(slot)

    cpdef void on_remove(self, Py_ssize_t slot) noexcept:
        """The layer dropped the entry (delete or expiry): forget it, leave no ghost."""
        if self._nodes[NODE_FIELDS * (HEADS + slot) + REGION] == HELD:
            self._nodes[NODE_FIELDS * (HEADS + slot) + REGION] = NOT_CACHED
            self.held = -1
            return
        self._unlink(<int32_t>(HEADS + slot))
        self._forget(slot)

    # ------------------------------------------------------------------ resizing
    cpdef Py_ssize_t resize(self, int64_t capacity) except -1:
        """A new ``capacity`` (entries, or total weight), on a running cache; returns how
        many slots were evicted to fit (they are ``evicted``)."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        cdef int64_t old = self.capacity
        cdef Py_ssize_t wanted
        self.capacity = capacity
        if not self.weighted:
            self.entry_limit = <Py_ssize_t>capacity
            wanted = <Py_ssize_t>min(capacity, <int64_t>INITIAL_SIZING)
            if wanted > self.sized_for or RESIZE_SHRINK_FACTOR * wanted <= self.sized_for:
                self._rebuild_frequency(wanted)
        # In Python ints: the product may not fit 64 bits (capacities go up to 2^62).
        self._set_window(int(self.window_target) * int(capacity) // int(old))
        return self._balance(-1)

    cdef int _rebuild_frequency(self, Py_ssize_t sized_for) except -1:
        # Residents' counts recounted into the new tables, slot by slot as the twin does.
        cdef CountMinSketch sketch = CountMinSketch(sized_for)
        cdef Doorkeeper doorkeeper = Doorkeeper(sized_for)
        cdef Py_ssize_t slot
        cdef int _
        cdef uint64_t key_hash
        for slot in range(self._slot_count):
            if self._nodes[NODE_FIELDS * (HEADS + slot) + REGION] >= NOT_CACHED:
                continue
            key_hash = self.hash_of(slot)
            if doorkeeper_contains(self._doorkeeper_words, self._doorkeeper_mask, key_hash):
                doorkeeper_add(doorkeeper.words, doorkeeper.bit_mask, key_hash)
            for _ in range(sketch_frequency(self._sketch_words, self._sketch_mask, key_hash)):
                if sketch_add(sketch.words, sketch.block_mask, key_hash):
                    sketch.additions += 1
        self.sized_for = sized_for
        self.sketch = sketch
        self.doorkeeper = doorkeeper
        self.ghosts = GhostTable(sized_for)
        self._cache_frequency_views()
        self.epoch += 1
        return 0

    # ------------------------------------------------------------------ adaptation
    cdef inline int _ensure_sized(self, Py_ssize_t entries) except -1:
        if entries <= self.sized_for or self.sized_for >= self.entry_limit:
            return 0
        return self._resize_frequency(entries)

    cdef int _resize_frequency(self, Py_ssize_t entries) except -1:
        # Rare (weighted caches that outgrow their first sizing), so out of the hot path.
        while entries > self.sized_for and self.sized_for < self.entry_limit:
            self.sized_for = min(2 * self.sized_for, self.entry_limit)
        self.sketch = CountMinSketch(self.sized_for)
        self.doorkeeper = Doorkeeper(self.sized_for)
        self.ghosts = GhostTable(self.sized_for)
        self._cache_frequency_views()
        self.epoch += 1
        return 0

    cdef inline uint32_t _idle_time(self, Py_ssize_t slot) noexcept:
        return self.clock - <uint32_t>self._nodes[NODE_FIELDS * (HEADS + slot) + LAST_USE]

    cdef void _learn_from_ghost(self, Py_ssize_t slot, uint64_t key_hash, int region,
                                uint32_t age, uint32_t last_use) noexcept:
        # The key's ghost (``on_insert`` took it): ``region`` is GHOST_WINDOW or GHOST_MAIN.
        self._reuse[slot] = self.clock - last_use
        cdef Py_ssize_t horizon = max(1, self._entry_capacity() // 2)
        cdef bint recent = age < horizon
        self._readmit[slot] = 1 if recent and region == GHOST_WINDOW else 0
        if not recent:
            return
        if region == GHOST_MAIN:
            self._set_window(self.window_target - self._step())
            return
        if policy_frequency(self, key_hash) > RECENCY_FREQUENCY:
            return
        cdef Py_ssize_t victim = self.main_victim()
        if victim >= 0 and self._reuse[slot] >= self._idle_time(victim):
            return
        self._set_window(self.window_target + self._step())

    cdef void _check_density(self) noexcept:
        # Every DENSITY_PERIOD-th of the capacity in misses (``on_insert`` counts them).
        cdef int64_t window, probation
        window = self._region_weights[WINDOW]
        probation = self._region_weights[PROBATION]
        # In doubles, as the twin does: hit counts times weights may overflow int64.
        if window > 0 and (<double>self.window_hits * <double>probation
                           < <double>self.probation_hits * <double>window):
            self._set_window(self.window_target
                             - max(self._step(), self.window_target >> DENSITY_SHRINK_SHIFT))
        self.window_hits = self.probation_hits = self.misses_since_check = 0

    cdef inline Py_ssize_t _entry_capacity(self) noexcept:
        return self.sized_for if self.weighted else <Py_ssize_t>self.capacity

    cdef int64_t _step(self) noexcept:
        if not self.weighted:
            return 1
        return max(<int64_t>1, self.total_weight // max(<Py_ssize_t>1, self.entries))

    cdef void _set_window(self, int64_t target) noexcept:
        self.window_target = max(<int64_t>0, min(self.capacity, target))
        self.window_max = self.window_target
        self.protected_max = (self.capacity - self.window_max) * PROTECTED_PERCENT // 100

    # ------------------------------------------------------------------ eviction
    cdef inline Py_ssize_t _balance(self, Py_ssize_t written) except -1:
        cdef Py_ssize_t candidate, victim
        self._evicted_count = self._rejected_count = 0
        if self.held >= 0:  # the slot held since the last write goes now
            self._nodes[NODE_FIELDS * (HEADS + self.held) + REGION] = NOT_CACHED
            self._evicted[0] = <int32_t>self.held  # (the buffers hold at least 16)
            self._rejected[0] = <int32_t>self.held
            self._evicted_count = self._rejected_count = 1
            self.held = -1
        while self._region_weights[WINDOW] > self.window_max:
            candidate = self.admission_candidate()
            if self._make_room_in_main(candidate):
                self._relink(candidate, PROBATION)
            else:
                self.rejections += 1
                self._evict(candidate, GHOST_WINDOW)
                if candidate == written:  # held: its slot stays, readable, until the next write
                    self._evicted_count -= 1
                    self._nodes[NODE_FIELDS * (HEADS + candidate) + REGION] = HELD
                    self.held = candidate
                else:
                    # (never past ``_evicted``'s count, so within its size: grown together)
                    self._rejected[self._rejected_count] = <int32_t>candidate
                    self._rejected_count += 1
        while self.total_weight > self.capacity:
            victim = self.main_victim()
            if victim >= 0:
                self._evict(victim, GHOST_MAIN)
            else:
                self._evict(self.admission_candidate(), GHOST_WINDOW)
        self._demote_protected_overflow()
        return self._evicted_count

    cdef inline bint _make_room_in_main(self, Py_ssize_t candidate) except -1:
        cdef Py_ssize_t victim
        while self.total_weight > self.capacity:
            victim = self.main_victim()
            if victim < 0 or not self._prefer_candidate(candidate, victim):
                return False
            self._evict(victim, GHOST_MAIN)
        return True

    cdef inline bint _prefer_candidate(self, Py_ssize_t candidate, Py_ssize_t victim) noexcept:
        cdef bint sooner = self._reuse[candidate] < self._idle_time(victim)
        if self._readmit[candidate] and sooner:
            return True
        cdef int candidate_frequency = policy_frequency(self, self.hash_of(candidate))
        if sooner and candidate_frequency > RECENCY_FREQUENCY:
            return True
        cdef int victim_frequency = self._victim_frequency(victim)
        if victim_frequency <= candidate_frequency <= victim_frequency + CLOSE_CALL:
            return sooner
        if candidate_frequency > victim_frequency:
            return True
        if candidate_frequency >= WARM_FREQUENCY:
            return self._next_random() >> (64 - RANDOM_ADMIT_BITS) == 0
        return False

    cdef inline int _victim_frequency(self, Py_ssize_t victim) noexcept:
        # The remembered estimate here, a new one out of line (gcc inlines neither half
        # otherwise: every admission paid a call for what is usually two compares).
        if <int32_t>(HEADS + victim) != self._victim_node or self._victim_epoch != self.epoch:
            return self._estimate_victim(victim)
        return self._victim_estimate

    cdef int _estimate_victim(self, Py_ssize_t victim) noexcept:
        cdef int32_t node = <int32_t>(HEADS + victim)
        self._victim_estimate = policy_frequency(self, self.hash_of(victim))
        self._victim_node = node if self._nodes[NODE_FIELDS * node + REGION] == PROBATION else -1
        self._victim_epoch = self.epoch
        return self._victim_estimate

    cdef inline int _evict(self, Py_ssize_t slot, int ghost_region) except -1:
        if self._evicted_count == self._evicted.shape[0]:
            self._grow_evicted()  # first: it may be interrupted, and then nothing changed
        self._unlink(<int32_t>(HEADS + slot))
        self.ghosts._remember(self.hash_of(slot), ghost_region,
                              <uint32_t>self._nodes[NODE_FIELDS * (HEADS + slot) + LAST_USE])
        self._forget(slot)
        self.evictions += 1
        self._evicted[self._evicted_count] = <int32_t>slot
        self._evicted_count += 1
        return 0

    cdef int _grow_evicted(self) except -1:
        # Rare (a write that evicts more than ever before), so out of the hot path. Both
        # buffers are made before either is swapped in (see ``grow``).
        evicted = np.empty(2 * self._evicted_count, dtype=np.int32)
        evicted[:self._evicted_count] = self._evicted
        rejected = np.empty(2 * self._evicted_count, dtype=np.int32)
        rejected[:self._rejected_count] = self._rejected[:self._rejected_count]
        self._evicted = evicted
        self._rejected = rejected
        return 0

    cdef inline void _forget(self, Py_ssize_t slot) noexcept:
        cdef int64_t weight = self._weight_of(slot)
        self._region_weights[self._nodes[NODE_FIELDS * (HEADS + slot) + REGION]] -= weight
        self.total_weight -= weight
        self.entries -= 1
        self._nodes[NODE_FIELDS * (HEADS + slot) + REGION] = NOT_CACHED
        self._readmit[slot] = 0
        if self.weighted:
            self._weight[slot] = 0

    cdef inline void _demote_protected_overflow(self) noexcept:
        while self._region_weights[PROTECTED] > self.protected_max:
            self._relink(self._nodes[NODE_FIELDS * (PROTECTED) + NEXT] - HEADS, PROBATION)

    cdef inline void _relink(self, Py_ssize_t slot, uint8_t region) noexcept:
        cdef int32_t node = <int32_t>(HEADS + slot)
        cdef int64_t weight
        self._unlink(node)
        if self._nodes[NODE_FIELDS * (HEADS + slot) + REGION] != region:
            weight = self._weight_of(slot)
            self._region_weights[self._nodes[NODE_FIELDS * (HEADS + slot) + REGION]] -= weight
            self._region_weights[region] += weight
            self._nodes[NODE_FIELDS * (HEADS + slot) + REGION] = region
        self._push_most_recent(region, node)

    cdef uint64_t _next_random(self) noexcept:
        cdef uint64_t x = self.random_state
        x ^= x >> 12
        x ^= x << 25
        x ^= x >> 27
        self.random_state = x
        return x * 0x2545F4914F6CDD1DULL

    # ------------------------------------------------------------------ lists
    cdef inline void _push_most_recent(self, int32_t head, int32_t node) noexcept:
        cdef int32_t last = self._nodes[NODE_FIELDS * (head) + PREV]
        self._nodes[NODE_FIELDS * (node) + PREV] = last
        self._nodes[NODE_FIELDS * (node) + NEXT] = head
        self._nodes[NODE_FIELDS * (last) + NEXT] = node
        self._nodes[NODE_FIELDS * (head) + PREV] = node

    cdef inline void _unlink(self, int32_t node) noexcept:
        if node == self._victim_node:
            self._victim_node = -1
        cdef int32_t before = self._nodes[NODE_FIELDS * (node) + PREV]
        cdef int32_t after = self._nodes[NODE_FIELDS * (node) + NEXT]
        self._nodes[NODE_FIELDS * (before) + NEXT] = after
        self._nodes[NODE_FIELDS * (after) + PREV] = before


def _grown(view, Py_ssize_t used, Py_ssize_t capacity, fill):
    array = np.asarray(view)
    bigger = buffers.full(capacity, fill, array.dtype)
    bigger[:used] = array[:used]
    return bigger


def _aligned_zeros(Py_ssize_t count):
    # int32 zeros starting on a 64-byte boundary (numpy guarantees 16): with 32-byte nodes,
    # none straddles two cache lines. The view keeps its buffer alive.
    raw = buffers.zeros(count + 16, np.int32)
    cdef Py_ssize_t skip = (-raw.ctypes.data % 64) // 4
    return raw[skip:skip + count]
