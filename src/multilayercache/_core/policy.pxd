cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

from .doorkeeper cimport Doorkeeper, doorkeeper_add, doorkeeper_contains
from .ghost cimport GhostTable
from .sketch cimport CountMinSketch, sketch_add, sketch_frequency

cpdef enum:
    # Regions, as per-slot codes; nodes 0..2 are the lists' sentinels.
    WINDOW = 0
    PROBATION = 1
    PROTECTED = 2
    NOT_CACHED = 3
    HEADS = 3
    HELD = 4  # the newest insert, turned away by admission, readable until the next
    # Tuning (explained in _policy_py.py).
    PROTECTED_PERCENT = 65
    WARM_FREQUENCY = 6
    RANDOM_ADMIT_BITS = 7
    CLOSE_CALL = 1
    RECENCY_FREQUENCY = 2
    DENSITY_PERIOD = 4
    DENSITY_SHRINK_SHIFT = 3
    INITIAL_SIZING = 1048576  # 1 << 20
    WEIGHTED_INITIAL_SIZING = 1024  # 1 << 10
    MAX_ENTRIES = 2147483647  # (1 << 31) - 1: slots are int32
    RESIZE_SHRINK_FACTOR = 4


cdef enum:
    # Each node is NODE_FIELDS int32s on a 32-byte boundary, so a node's links, region, hash
    # and its owner's fields share one cache line (and its neighbours' links are one line
    # each): whoever touches an entry reads everything about it in one load.
    NODE_FIELDS = 8
    PREV = 0
    NEXT = 1
    REGION = 2
    LAST_USE = 3
    HASH = 4  # fields 4 and 5: the entry's spread hash, one uint64 (8-byte aligned)
    HASH_STRIDE = 4  # NODE_FIELDS / 2: uint64s from one node's hash to the next's
    # Fields OWNER .. NODE_FIELDS - 1 of an entry's node are its owner's (the memory layer's
    # per-slot record): the policy never reads or writes them, but keeps them when it grows.
    OWNER = 6


@cython.final
cdef class WTinyLfuPolicy:
    cdef readonly int64_t capacity
    cdef readonly bint weighted
    cdef readonly Py_ssize_t entry_limit
    cdef readonly Py_ssize_t sized_for
    cdef readonly CountMinSketch sketch
    cdef readonly Doorkeeper doorkeeper
    cdef readonly GhostTable ghosts
    cdef readonly uint64_t random_state
    cdef readonly Py_ssize_t entries
    cdef readonly int64_t total_weight
    cdef readonly int64_t window_target
    cdef readonly int64_t window_max
    cdef readonly int64_t protected_max
    cdef readonly Py_ssize_t evictions
    cdef readonly Py_ssize_t rejections
    cdef readonly Py_ssize_t held  # the held newcomer's slot, or -1 (see _policy_py.py)
    cdef readonly uint32_t epoch  # bumped whenever frequencies age or are rebuilt
    cdef readonly uint32_t clock  # misses so far (wraps)
    cdef readonly Py_ssize_t window_hits  # since the last density check
    cdef readonly Py_ssize_t probation_hits
    cdef readonly Py_ssize_t misses_since_check
    cdef int64_t[3] _region_weights
    # raw views of the frequency structures, refreshed whenever they are rebuilt
    cdef uint64_t* _sketch_words
    cdef uint64_t _sketch_mask
    cdef uint64_t* _doorkeeper_words
    cdef uint64_t _doorkeeper_mask
    cdef Py_ssize_t _slot_count
    cdef int32_t[::1] _nodes  # per node: prev, next, region, last use, hash, owner's fields
    cdef Py_ssize_t _node_capacity
    cdef uint32_t[::1] _reuse  # per slot: reuse distance seen at insertion
    cdef uint8_t[::1] _readmit  # per slot: a recent window ghost (second chance)
    cdef int64_t[::1] _weight
    cdef int32_t[::1] _evicted
    cdef Py_ssize_t _evicted_count
    # Which of ``_evicted[0 .. count)`` admission turned away (the layer reports them as
    # rejected, the others as evicted): ``_rejected[0 .. _rejected_count)``, the same size.
    cdef int32_t[::1] _rejected
    cdef Py_ssize_t _rejected_count
    cdef int32_t _victim_node  # main's victim whose frequency is remembered, or -1
    cdef uint32_t _victim_epoch
    cdef int _victim_estimate

    cpdef bint record_access(self, uint64_t key_hash) noexcept
    cpdef int frequency(self, uint64_t key_hash) noexcept
    cpdef void on_hit(self, Py_ssize_t slot) noexcept
    cpdef Py_ssize_t on_insert(self, Py_ssize_t slot, uint64_t key_hash, int64_t weight) except -1
    cpdef Py_ssize_t on_update(self, Py_ssize_t slot, int64_t weight) except -1
    cpdef void on_remove(self, Py_ssize_t slot) noexcept
    cpdef void grow(self, Py_ssize_t slot_count) except *
    cpdef int region_of(self, Py_ssize_t slot) noexcept
    cpdef Py_ssize_t resize(self, int64_t capacity) except -1

    # private
    cdef int64_t _weight_of(self, Py_ssize_t slot) noexcept
    cdef int _ensure_sized(self, Py_ssize_t entries) except -1
    cdef int _resize_frequency(self, Py_ssize_t entries) except -1
    cdef int _rebuild_frequency(self, Py_ssize_t sized_for) except -1
    cdef void _age(self) noexcept
    cdef void _cache_frequency_views(self) noexcept
    cdef uint32_t _idle_time(self, Py_ssize_t slot) noexcept
    cdef void _learn_from_ghost(self, Py_ssize_t slot, uint64_t key_hash, int region,
                                uint32_t age, uint32_t last_use) noexcept
    cdef void _check_density(self) noexcept
    cdef Py_ssize_t _entry_capacity(self) noexcept
    cdef int64_t _step(self) noexcept
    cdef void _set_window(self, int64_t target) noexcept
    cdef Py_ssize_t _balance(self, Py_ssize_t written) except -1
    cdef bint _make_room_in_main(self, Py_ssize_t candidate) except -1
    cdef bint _prefer_candidate(self, Py_ssize_t candidate, Py_ssize_t victim) noexcept
    cdef int _victim_frequency(self, Py_ssize_t victim) noexcept
    cdef int _estimate_victim(self, Py_ssize_t victim) noexcept
    cdef int _evict(self, Py_ssize_t slot, int ghost_region) except -1
    cdef int _grow_evicted(self) except -1
    cdef void _forget(self, Py_ssize_t slot) noexcept
    cdef void _demote_protected_overflow(self) noexcept
    cdef void _relink(self, Py_ssize_t slot, uint8_t region) noexcept
    cdef uint64_t _next_random(self) noexcept
    cdef void _push_most_recent(self, int32_t head, int32_t node) noexcept
    cdef void _unlink(self, int32_t node) noexcept

    # The hot path, inline here so that the policy and the layer (which call these on every
    # miss, hit and admission) compile them in: no call, and, as methods of a final class
    # reached through an attribute, no reference counting either.

    cdef inline bint count_access(self, uint64_t key_hash) noexcept:
        """``record_access``."""
        if not doorkeeper_add(self._doorkeeper_words, self._doorkeeper_mask, key_hash):
            return False
        if not sketch_add(self._sketch_words, self._sketch_mask, key_hash):
            return True
        self.sketch.additions += 1  # (no local: that would count a reference)
        if self.sketch.additions >= self.sketch.sample_size:
            self._age()
        return False

    cdef inline Py_ssize_t admission_candidate(self) noexcept:
        """The window's oldest entry, the next to be weighed against main's victim (or a
        negative slot if the window is empty)."""
        return self._nodes[NODE_FIELDS * WINDOW + NEXT] - HEADS

    cdef inline Py_ssize_t main_victim(self) noexcept:
        """Main's next victim: probation's oldest entry, else protected's, else -1."""
        cdef int32_t node = self._nodes[NODE_FIELDS * PROBATION + NEXT]
        if node != PROBATION:
            return node - HEADS
        node = self._nodes[NODE_FIELDS * PROTECTED + NEXT]
        if node != PROTECTED:
            return node - HEADS
        return -1

    cdef inline uint64_t* hashes(self) noexcept:
        """Where slot 0's hash is; slot ``s``'s is ``HASH_STRIDE * s`` uint64s further on."""
        return <uint64_t*>&self._nodes[NODE_FIELDS * HEADS + HASH]

    cdef inline uint64_t hash_of(self, Py_ssize_t slot) noexcept:
        """The spread hash of the key in ``slot`` (cached), as given to ``on_insert``."""
        return self.hashes()[HASH_STRIDE * slot]

    cdef inline void touch(self, Py_ssize_t slot) noexcept:
        """``on_hit``, its common case (a protected entry) inline for the layer's hit path:
        the entry moves to the protected list's most recent end, nothing else changes."""
        cdef int32_t* nodes = &self._nodes[0]
        cdef int32_t node = <int32_t>(HEADS + slot)
        cdef int32_t* record = nodes + NODE_FIELDS * node
        cdef int32_t last
        if record[REGION] != PROTECTED:
            self.on_hit(slot)
            return
        last = nodes[NODE_FIELDS * PROTECTED + PREV]
        if last == node:
            return  # already the most recent
        # unlink (``node`` is not the last, so ``last`` stays the last), then push after it
        nodes[NODE_FIELDS * record[PREV] + NEXT] = record[NEXT]
        nodes[NODE_FIELDS * record[NEXT] + PREV] = record[PREV]
        record[PREV] = last
        record[NEXT] = PROTECTED
        nodes[NODE_FIELDS * last + NEXT] = node
        nodes[NODE_FIELDS * PROTECTED + PREV] = node


# ``frequency``, inline for the policy's admission and the layer's views.
cdef inline int policy_frequency(WTinyLfuPolicy policy, uint64_t key_hash) noexcept:
    return (sketch_frequency(policy._sketch_words, policy._sketch_mask, key_hash)
            + doorkeeper_contains(policy._doorkeeper_words, policy._doorkeeper_mask, key_hash))
