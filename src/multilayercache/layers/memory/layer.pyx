"""``InMemoryLayer``: the in-process L1 cache (compiled twin of ``_layer_py.py``, which
explains the design). Comments here cover memory layout and why each trick is safe.

The layer's fields and their layout are in ``layer.pxd``; the slot table (find a key's
slot, fill one, free one, count a hit) is in ``slots.pxd``, inline into the methods here;
stats, snapshots and the other views are in ``introspection.pyx``.

Concurrency: under the GIL each public method is atomic with respect to the cache's own
structures, because Python code (a key's ``__hash__`` / ``__eq__``, the weigher, the clock,
a value's ``__del__``) only runs where the structures are consistent: hashing, weighing and
reading the clock happen first; a lookup that had to call ``__eq__`` restarts if the table
changed meanwhile (``_version``); what leaves the cache is released when the operation ends
(``ownership.pxd``). On a free-threaded build importing this module re-enables the GIL; the
pure twin uses a lock instead. A forked child ends the operation a thread of its parent was
in (``_after_fork``): nothing is added to the hit path.
"""

import numpy as np

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_DECREF, Py_XDECREF, PyObject
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

from ..._core.bits cimport prefetch, spread
from ..._core.hotkeys cimport HotKeyTable
from ..._core.policy cimport NOT_CACHED, WTinyLfuPolicy
from ..._core.sketch cimport sketch_block
from ..._core.timerwheel cimport C_NO_DEADLINE as NO_DEADLINE, TimerWheel
from .clock cimport coarse_slack_ns, deadline_after, has_passed, monotonic_ns
from .freshness cimport FreshnessDeadlines
from .index cimport EMPTY, MIN_INDEX, NO_BUCKET, index_tag, slot_mask_of, tag_mask_of
from .keys cimport HASH_MODULUS
from .keys cimport key_hash as _key_hash
from .ownership cimport (
    clear_graves,
    end_foreign_operation,
    list_items,
    list_size,
    release_graves,
    replace_item,
    take_ownership,
)
from .removals cimport EXPIRED, INVALIDATED, REJECTED, REPLACED, record_removal, swap_halves
from .slots cimport (
    CROWDED,
    HITS,
    INTERRUPTED,
    KEYS_PER_HASH,
    MAX_HITS,
    PLAIN_INT,
    allocate_slot,
    drop_evicted,
    expire_if_due,
    find_slot,
    prefetch_next_evictees,
    prefetch_evictees,
    reclaim_expired,
    record_hit,
    remove_slot,
    slot_record,
    stored_value,
    vacancy,
)

from ..._forking import register_after_fork
from ...core.events import EventStats
from ...core.freshness import Entry, Lifetime
from ...core.ttl import ttl_seconds
from .arguments import (
    INT64_MAX,
    INT64_MIN,
    checked_clock,
    checked_delta,
    checked_weight,
    counted,
    default_ttl_seconds,
    layer_bounds,
    resized_bound,
    value_copier,
)
from .batch import hits_among, set_each
from .deadlines import seconds_left
from .estimates import (
    COMPILED_SAMPLE_BATCH, checked_estimator, restarted_estimator, size_estimator)
from .flooding import warn_crowded
from .introspection import (
    access_counts,
    cached_slots,
    frequency_estimate,
    held_keys,
    internals,
    keys_at,
    missed_keys_at,
    remaining_ttl,
    snapshot,
    stats,
    top_keys,
)
from .introspection_shared import layer_repr
from .removals import (
    DEFAULT_REMOVAL_BUFFER,
    RemovalDelivery,
    checked_buffer_size,
    checked_listener,
)
from .sweep import SWEEP_STEP, PendingDrop

cdef enum:
    # ``_slow_reads`` bits
    COPIES = 1
    PENDING_DROPS = 2

cdef enum:
    # core.freshness.Freshness, as C constants for the hit path
    FRESH = 0
    DUE = 1
    STALE = 2

# ``_last_miss_version`` when no key is known absent (the version, counting writes, never
# gets there).
cdef uint64_t NOT_ABSENT = 0xFFFFFFFFFFFFFFFF
cdef object _NO_KEY = object()  # ``_last_miss`` before any miss: no caller holds it
cdef uint64_t WRITE = 1  # a sampled event's bit 0 (estimates.sampled_event)
cdef Py_ssize_t BATCH = COMPILED_SAMPLE_BATCH  # (a C constant for the sampled path)

MAX_SLOT_HITS = MAX_HITS  # a cached entry's hit count saturates here (31 bits: slots.pxd)
MAX_KEYS_PER_HASH = KEYS_PER_HASH  # keys sharing one hash held at most (flooding.py)


cdef class InMemoryLayer:
    """An in-process cache: W-TinyLFU admission, per-entry TTL, bounded by size or weight.

    >>> l1 = InMemoryLayer(max_size=10_000, ttl=60)
    >>> l1.set("user:1", {"name": "Ada"})
    >>> l1.get("user:1")
    {'name': 'Ada'}
    """

    in_process = True

    def __init__(self, max_size=None, *, max_weight=None, weigher=None, ttl=None,
                 clock=None, str name="memory", copy=False, estimate_sizes=None,
                 estimate_sample_rate=None, removal_listener=None,
                 removal_buffer=DEFAULT_REMOVAL_BUFFER):
        capacity, weighted = layer_bounds(max_size, max_weight, weigher)
        self._removals.capacity = checked_buffer_size(removal_buffer)
        if removal_listener is not None:
            checked_listener(removal_listener)
        self._copy = value_copier(copy)
        self._copies = self._copy is not None
        self._slow_reads = COPIES if self._copies else 0
        self.name = name
        self.max_size = None if weighted else capacity
        self.max_weight = capacity if weighted else None
        self.default_ttl = default_ttl_seconds(ttl)
        self._weigher = weigher
        self._clock = checked_clock(clock)
        self._coarse_slack_ns = coarse_slack_ns()
        self._policy = WTinyLfuPolicy(capacity, weighted)
        self._wheel = TimerWheel(self._now_ns())
        self._fresh = FreshnessDeadlines()
        self._missed = HotKeyTable()
        self._index = np.full(MIN_INDEX, EMPTY, dtype=np.int32)
        self._index_mask = MIN_INDEX - 1
        self._entries = []
        self._free = np.empty(16, dtype=np.int32)
        self._free_count = 0
        self._slot_count = 0
        self._version = 0
        self._last_miss = _NO_KEY
        self._last_miss_version = NOT_ABSENT
        self._last_miss_bucket = self._vacant_bucket = NO_BUCKET
        self._hits = self._misses = self._expirations = self._oversized = self._crowded = 0
        self._puts = 0
        self.size_estimator = size_estimator(self, capacity, weighted, estimate_sizes,
                                             estimate_sample_rate)
        if self.size_estimator is not None:
            self._sample_below = self.size_estimator.threshold
            self._sample_array = np.empty(BATCH, dtype=np.uint64)
            self._samples = self._sample_array
        register_after_fork(self)
        if removal_listener is not None:
            self.add_removal_listener(removal_listener)

    def __cinit__(self):
        self._ownership.owner = 0
        self._ownership.grave_count = 0
        self._grave_overflow = []
        self._removals.active = self._removals.wake = False
        self._removals.count = self._removals.dropped = 0
        self._removals.records = self._removals.spare_records = NULL
        self._removals.causes = self._removals.spare_causes = NULL

    def __dealloc__(self):
        clear_graves(&self._ownership)
        cdef Py_ssize_t i
        for i in range(2 * self._removals.count):  # (the spare half was emptied: delivered)
            Py_XDECREF(self._removals.records[i])
        PyMem_Free(self._removals.records)
        PyMem_Free(self._removals.causes)
        PyMem_Free(self._removals.spare_records)
        PyMem_Free(self._removals.spare_causes)

    # ------------------------------------------------------------------ reads
    def get(self, key, default=None):
        """The cached value while it is fresh, or ``default`` (a miss, or an entry that is
        gone or stale)."""
        return self._read(key, default, DUE, None)

    def lookup(self, key, missing, aside):
        """The managers' fast path: the value while it is fresh and no refresh is due,
        ``missing`` on a miss (counted), or ``aside`` when the key is held but due or stale
        (nothing counted: the manager then asks ``get_entry``)."""
        return self._read(key, missing, FRESH, aside)

    cdef inline object _read(self, object key, object default, int accept, object aside):
        # ``aside`` is None for ``get``: a stale entry then reads as a miss.
        cdef uint64_t key_hash = _key_hash(key)
        cdef Py_ssize_t slot
        cdef int64_t deadline
        cdef uint64_t absent_at, vacant
        # Another thread is inside a write (wait for it), values are copied (``copy=``),
        # or invalidations are being swept (``drop_later``): one test on the hit path.
        if self._ownership.owner | self._slow_reads:
            return self._read_locked(key, key_hash, default, accept, aside)
        slot = find_slot(self, key, key_hash, False)
        if slot == INTERRUPTED:
            return self._read_locked(key, key_hash, default, accept, aside)
        # No Python code ran since the probe ended: the key is absent at this version, and
        # would go in the bucket where the probe stopped (read now: Python code that runs
        # before the miss is remembered may probe for other keys).
        absent_at = self._version if slot < 0 else NOT_ABSENT
        vacant = self._vacant_bucket
        if slot >= 0:
            # The value's own line is often cold and returning it touches it (the reference
            # count): start that load now, so that it overlaps the hit's bookkeeping.
            prefetch(stored_value(self, slot))
        if slot >= 0 and self._wheel.scheduled:
            deadline = self._wheel.deadline(slot)
            # An injected clock runs Python code, and an expired entry must be removed:
            # both take the locked path.
            if deadline != NO_DEADLINE and (self._clock is not None or self._has_passed(deadline)):
                return self._read_locked(key, key_hash, default, accept, aside)
        if slot >= 0 and self._fresh.count:
            if self._clock is not None:
                return self._read_locked(key, key_hash, default, accept, aside)
            if self._freshness(slot, -1) > accept:
                if aside is not None:
                    return aside
                slot = -1  # stale: ``get`` no longer serves it
        if slot < 0:
            # Frequency counts every lookup, hit or miss, but that of a key that can never
            # get in (its hash is crowded): it would only be credited to the keys that hold
            # the hash (flooding.py).
            if vacant != CROWDED or absent_at == NOT_ABSENT:
                self._policy.count_access(key_hash)
            self._policy.ghosts._prefetch(key_hash)  # for the set that usually follows
            prefetch_evictees(self)
            self._misses += 1
            self._missed._record(key_hash, key)
            self._remember_miss(key, key_hash, absent_at, vacant)
            if key_hash < self._sample_below:
                self._sample(key_hash & ~WRITE)
            return default
        record_hit(self, slot, key_hash)
        if key_hash < self._sample_below:
            # The value first: the replay runs Python code, and the slot may change then.
            value = <object>stored_value(self, slot)
            self._sample(key_hash & ~WRITE)
            return value
        return <object>stored_value(self, slot)

    cdef object _read_locked(self, object key, uint64_t key_hash, object default, int accept,
                             object aside):
        cdef Py_ssize_t slot
        cdef object result
        cdef uint64_t absent_at = NOT_ABSENT, vacant = NO_BUCKET
        if self._pending is not None:
            self._settle(key)
        self._lock_for_write()
        try:
            slot = self._live_slot(key, key_hash)
            if slot < 0:
                absent_at = self._version
                vacant = self._vacant_bucket
            if slot >= 0 and self._fresh.count and self._freshness(slot, -1) > accept:
                if aside is not None:
                    return aside
                slot = -1
            if slot < 0:
                if vacant != CROWDED:  # (as ``_read`` counts)
                    self._policy.count_access(key_hash)
                self._misses += 1
                result = default
            else:
                record_hit(self, slot, key_hash)
                result = <object>stored_value(self, slot)
        finally:
            self._unlock()
        if slot < 0:
            self._missed.record(key_hash, key)
            self._remember_miss(key, key_hash, absent_at, vacant)
        elif self._copies:
            result = self._copy(result)
        if key_hash < self._sample_below:
            self._sample(key_hash & ~WRITE)
        return result

    def get_entry(self, key):
        """The held value with its freshness (stale ones too), or ``None``; counted as a
        hit or a miss."""
        cdef uint64_t key_hash = _key_hash(key)
        cdef Py_ssize_t slot
        cdef object entry = None
        cdef uint64_t absent_at = NOT_ABSENT, vacant = NO_BUCKET
        self._settle(key)
        self._lock_for_write()
        try:
            slot = self._live_slot(key, key_hash)
            if slot < 0:
                absent_at = self._version
                vacant = self._vacant_bucket
                if vacant != CROWDED:  # (as ``_read`` counts)
                    self._policy.count_access(key_hash)
                self._misses += 1
            else:
                record_hit(self, slot, key_hash)
                entry = self._entry(slot, self._now_ns())
        finally:
            self._unlock()
        if slot < 0:
            self._missed.record(key_hash, key)
            self._remember_miss(key, key_hash, absent_at, vacant)
        elif self._copy is not None:
            entry = entry._replace(value=self._copy(entry.value))
        if key_hash < self._sample_below:
            self._sample(key_hash & ~WRITE)
        return entry

    cdef inline Py_ssize_t _live_slot(self, object key, uint64_t key_hash) except -2:
        """(Owning the layer) the key's slot, or -1 (an entry found gone is removed first);
        on -1, ``_vacant_bucket`` says where the key would go (find_slot)."""
        cdef Py_ssize_t slot = find_slot(self, key, key_hash, True)
        if slot >= 0 and self._wheel.scheduled and expire_if_due(self, slot):
            slot = find_slot(self, key, key_hash, True)  # -1 now; for ``_vacant_bucket``
        return slot

    def get_entries(self, keys):
        """``get_entry`` of every key, the ones held only."""
        found = {}
        for key in keys:
            entry = self.get_entry(key)
            if entry is not None:
                found[key] = entry
        return found

    cdef int _freshness(self, Py_ssize_t slot, int64_t now_ns) except -1:
        """FRESH, DUE or STALE (``now_ns < 0``: read the clock as the hit path does)."""
        cdef int64_t fresh_until = self._fresh.fresh_until(slot)
        cdef int64_t refresh_at = self._fresh.refresh_at(slot)
        if fresh_until != NO_DEADLINE and (
            fresh_until <= now_ns if now_ns >= 0 else self._has_passed(fresh_until)
        ):
            return STALE
        if refresh_at != NO_DEADLINE and (
            refresh_at <= now_ns if now_ns >= 0 else self._has_passed(refresh_at)
        ):
            return DUE
        return FRESH

    cdef object _entry(self, Py_ssize_t slot, int64_t now_ns):
        cdef int64_t gone = self._wheel.deadline(slot)
        cdef int64_t fresh_until = self._fresh.fresh_until(slot)
        return Entry(
            <object>stored_value(self, slot),
            seconds_left(gone if fresh_until == NO_DEADLINE else fresh_until, now_ns),
            seconds_left(gone, now_ns),
            seconds_left(self._fresh.refresh_at(slot), now_ns),
        )

    def get_many(self, keys):
        """The cached values among ``keys`` (hits only), each lookup counted as a ``get``."""
        return hits_among(self.get, keys)

    def __contains__(self, key):
        """Whether a live entry exists (does not count as an access)."""
        cdef uint64_t key_hash = _key_hash(key)
        cdef Py_ssize_t slot
        self._settle(key)
        self._lock_for_write()
        try:
            slot = find_slot(self, key, key_hash, True)
            return slot >= 0 and not self._is_expired(slot)
        finally:
            self._unlock()

    def __len__(self):
        """Live entries (expired ones are reclaimed first)."""
        cdef int64_t now_ns = self._now_ns() if self._wheel.scheduled else 0
        self._sweep(self._slot_count)
        self._lock_for_write()
        try:
            if now_ns:
                reclaim_expired(self, now_ns)
            return self._policy.entries
        finally:
            self._unlock()

    # ------------------------------------------------------------------ writes
    def set(self, key, value, ttl=None):
        """Store ``value`` (``ttl``: seconds or timedelta, ``None`` = the layer default,
        ``math.inf`` = never expires). The policy may decline to keep a new entry."""
        if ttl is None and key is self._last_miss and self._inserts_plainly():
            self._insert_missed(key, value)
            return
        cdef double seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        if self._copy is None:
            self._store(key, value, seconds, 0.0, seconds, False)
        else:  # (a branch: reassigning ``value`` would cost every set a reference count)
            self._store(key, self._copy(value), seconds, 0.0, seconds, False)

    def set_entry(self, key, value, lifetime, load_seconds=0.0):
        """Store ``value`` for ``lifetime``: fresh for ``ttl`` seconds, then stale (served
        only by the managers' stale-while-revalidate and fail-safe) for ``stale_ttl``
        more; a refresh is due after ``refresh_after``."""
        cdef double ttl, stale, refresh
        if lifetime is self._known_lifetime:
            ttl, stale, refresh = self._known_ttl, self._known_stale, self._known_refresh
        else:
            ttl, stale, refresh = self._lifetime_seconds(lifetime)
            # (no Python code runs between these lines: no thread sees them half done)
            self._known_lifetime = lifetime
            self._known_ttl, self._known_stale, self._known_refresh = ttl, stale, refresh
        if self._copy is None:
            self._store(key, value, ttl, stale, refresh, False)
        else:
            self._store(key, self._copy(value), ttl, stale, refresh, False)

    def _lifetime_seconds(self, lifetime):
        """``(ttl, stale, refresh)`` seconds of a lifetime (``ttl=None``: the default)."""
        ttl = self.default_ttl if lifetime.ttl is None else ttl_seconds(lifetime.ttl)
        stale = ttl_seconds(lifetime.stale_ttl, "stale_ttl")
        refresh = ttl_seconds(lifetime.refresh_after, "refresh_after")
        return ttl, stale, refresh

    def set_many_entries(self, mapping, lifetime, load_seconds=0.0):
        """``set_entry`` every item (the keys and the lifetime are checked first, the
        lifetime once: a promotion of a batch)."""
        for key in mapping:
            _key_hash(key)
        ttl, stale, refresh = self._lifetime_seconds(lifetime)
        for key, value in mapping.items():
            if self._copy is None:
                self._store(key, value, ttl, stale, refresh, False)
            else:
                self._store(key, self._copy(value), ttl, stale, refresh, False)

    cdef inline void _remember_miss(self, object key, uint64_t key_hash,
                                    uint64_t absent_at, uint64_t bucket) noexcept:
        # The version first: dropping the previous key may run Python code that changes
        # the cache, which then bumps the version past ``absent_at``.
        self._last_miss_version = absent_at
        self._last_miss_hash = key_hash
        self._last_miss_bucket = bucket
        self._last_miss = key

    cdef inline bint _inserts_plainly(self) noexcept:
        """Whether a ``set`` of ``_last_miss`` with the default lifetime is a plain insert
        (``_insert_missed``): the key is still absent where its probe stopped (not crowded),
        and nothing that ``_store`` prepares applies (TTL, weigher, copy, pending drops)."""
        return (
            self._last_miss_version == self._version and self._last_miss_bucket != CROWDED
            and self.default_ttl == INFINITY and self._weigher is None and not self._copies
            and self._pending is None and not self._wheel.scheduled
        )

    cdef int _insert_missed(self, object key, object value) except -1:
        """``_store`` of the key that just missed, where ``_inserts_plainly``: what
        ``_set_locked`` does for it (the most common write: a read-through cache's set
        after a miss), without the steps that do not apply, each a branch and together
        ~15% of a miss-and-set's instructions."""
        # Read together, before the layer is taken (waiting for another thread's operation,
        # this one may see a third thread's miss replace them; the version says whether the
        # index changed, not whose miss they are).
        cdef uint64_t key_hash = self._last_miss_hash
        cdef uint64_t absent_at = self._last_miss_version
        cdef uint64_t vacant = self._last_miss_bucket
        cdef bint crowded = False
        self._lock_for_write()
        try:
            if absent_at == self._version:
                # (as ``_set_locked`` inserts a key known absent, with no deadline)
                self._puts += 1
                _admit(self, allocate_slot(self, key, value, key_hash, vacant), key_hash, 1)
            else:  # another thread wrote while this one waited for the layer
                crowded = self._set_locked(key, value, key_hash, absent_at, vacant, 1, 0,
                                           NO_DEADLINE, NO_DEADLINE, NO_DEADLINE)
        finally:
            self._unlock()
        if key_hash < self._sample_below:
            self._sample(key_hash | WRITE)
        if crowded and _warns_at(self._crowded):
            warn_crowded(self.name, key, self._crowded)
        return 0

    cdef int _store(self, object key, object value, double ttl, double stale,
                    double refresh, bint only_if_absent) except -1:
        """Store the value for its lifetime; with ``only_if_absent``, only if the key holds
        no fresh value. 1 if it was stored, else 0."""
        cdef uint64_t key_hash
        cdef uint64_t absent_at = NOT_ABSENT, vacant = NO_BUCKET
        if key is self._last_miss:  # the key that just missed: hashed already
            # (the three read together: see ``_insert_missed``)
            key_hash = self._last_miss_hash
            absent_at = self._last_miss_version
            vacant = self._last_miss_bucket
        else:
            key_hash = _key_hash(key)
        cdef int64_t weight = 1
        cdef int64_t now_ns = 0, deadline = NO_DEADLINE
        cdef int64_t fresh_until = NO_DEADLINE, refresh_at = NO_DEADLINE
        # Everything that may run Python code happens before the lock (copies too: the
        # callers copy ``value``).
        if self._weigher is not None:
            weight = checked_weight(self._weigher(key, value), key)
        if ttl != INFINITY or stale != 0.0 or refresh < ttl or self._wheel.scheduled or (
            only_if_absent
        ):
            now_ns = self._now_ns()
            if ttl + stale != INFINITY:
                deadline = deadline_after(now_ns, ttl + stale, NO_DEADLINE)
            if stale != 0.0 and ttl != INFINITY:
                fresh_until = deadline_after(now_ns, ttl, NO_DEADLINE)
            if refresh < ttl:
                refresh_at = deadline_after(now_ns, refresh, NO_DEADLINE)
        cdef bint crowded
        # (``_settle`` tested here first: a call that returns None costs every write ~25
        # instructions.)
        cdef object pending = None if self._pending is None else self._settle(key)
        self._lock_for_write()
        try:
            if only_if_absent and self._holds_key(key, key_hash, absent_at, now_ns):
                return 0
            crowded = self._set_locked(key, value, key_hash, absent_at, vacant, weight, now_ns,
                                       deadline, fresh_until, refresh_at)
        finally:
            self._unlock()
        if pending is not None:
            pending.rescue(key)  # written after the invalidations: they do not apply to it
        if key_hash < self._sample_below:
            self._sample(key_hash | WRITE)
        if crowded and _warns_at(self._crowded):
            warn_crowded(self.name, key, self._crowded)
        return 1

    cdef bint _holds_key(self, object key, uint64_t key_hash, uint64_t absent_at,
                         int64_t now_ns) except -1:
        """(Owning the layer) whether the key holds a fresh value: ``add``'s test. Out of
        ``_store``'s line, which every ``set`` runs."""
        if self._wheel.scheduled:
            reclaim_expired(self, now_ns)  # (as a write does first)
        if absent_at == self._version:
            return False
        return self._holds_fresh(find_slot(self, key, key_hash, True), now_ns)

    cdef bint _holds_fresh(self, Py_ssize_t slot, int64_t now_ns) except -1:
        """Whether ``slot`` (maybe -1) holds a value ``get`` would return (due ones too)."""
        if slot < 0 or self._is_expired(slot, now_ns):
            return False
        return not self._fresh.count or self._freshness(slot, now_ns) != STALE

    cdef tuple _deadlines(self, int64_t now_ns, double ttl, double stale, double refresh):
        """``(gone, fresh until, refresh at)`` of an entry written at ``now_ns`` (as
        ``_store`` computes them)."""
        cdef int64_t deadline = NO_DEADLINE, fresh_until = NO_DEADLINE, refresh_at = NO_DEADLINE
        if ttl + stale != INFINITY:
            deadline = deadline_after(now_ns, ttl + stale, NO_DEADLINE)
        if stale != 0.0 and ttl != INFINITY:
            fresh_until = deadline_after(now_ns, ttl, NO_DEADLINE)
        if refresh < ttl:
            refresh_at = deadline_after(now_ns, refresh, NO_DEADLINE)
        return deadline, fresh_until, refresh_at

    cdef inline int _set_locked(self, object key, object value, uint64_t key_hash,
                                uint64_t absent_at, uint64_t absent_bucket, int64_t weight,
                                int64_t now_ns, int64_t deadline, int64_t fresh_until,
                                int64_t refresh_at) except -1:
        # ``absent_at``: the version at which the key was seen missing (NOT_ABSENT: unknown),
        # and ``absent_bucket`` the empty bucket where that probe stopped.
        # The weigher and the clock ran Python code since; any change bumped the version.
        # 1 if the key was turned away because its hash is crowded (flooding.py), else 0.
        cdef Py_ssize_t slot
        cdef uint64_t vacant = NO_BUCKET
        self._puts += 1
        if now_ns and self._wheel.scheduled:
            reclaim_expired(self, now_ns)
        if absent_at == self._version:
            slot = -1
            vacant = absent_bucket
        else:
            slot = find_slot(self, key, key_hash, True)
            if slot < 0:
                vacant = self._vacant_bucket
        if (deadline != NO_DEADLINE and deadline <= now_ns) or weight > self._policy.capacity:
            # Already expired, or can never fit: the old value must not survive the write.
            if slot >= 0:
                remove_slot(self, slot, REPLACED)
            if weight > self._policy.capacity:
                self._oversized += 1  # a rejection: the value is turned away
                if self._removals.active:
                    record_removal(&self._removals, <PyObject*>key, <PyObject*>value, REJECTED)
            return 0
        if slot >= 0:
            if self._removals.active:
                record_removal(&self._removals, list_items(<PyObject*>self._entries)[2 * slot],
                               stored_value(self, slot), REPLACED)
            self._replace_item(2 * slot + 1, value)
            self._wheel.schedule(slot, deadline)
            self._fresh.assign(slot, fresh_until, refresh_at)
            if self._policy.weighted:
                drop_evicted(self, self._policy.on_update(slot, weight))
            return 0
        if vacant == CROWDED:
            self._crowded += 1  # a rejection: the value is turned away
            if self._removals.active:
                record_removal(&self._removals, <PyObject*>key, <PyObject*>value, REJECTED)
            return 1
        slot = allocate_slot(self, key, value, key_hash, vacant)
        if deadline != NO_DEADLINE:
            self._wheel.schedule(slot, deadline)
        if fresh_until != NO_DEADLINE or refresh_at != NO_DEADLINE:
            self._fresh.assign(slot, fresh_until, refresh_at)
        _admit(self, slot, key_hash, weight)
        return 0

    def set_many(self, mapping, ttl=None):
        """``set`` every item. The TTL and every key are checked first, so bad input writes
        nothing."""
        set_each(self.set, _check_key, mapping, ttl)

    def add(self, key, value, ttl=None):
        """Store ``value`` only if the key holds no fresh value (none, or an expired or
        stale one: what ``get`` misses); True if it was stored. Atomic between threads."""
        cdef double seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        if self._copy is not None:
            value = self._copy(value)
        return bool(self._store(key, value, seconds, 0.0, seconds, True))

    def add_entry(self, key, value, lifetime, load_seconds=0.0):
        """``add`` for ``lifetime`` (see ``set_entry``)."""
        ttl, stale, refresh = self._lifetime_seconds(lifetime)
        if self._copy is not None:
            value = self._copy(value)
        return bool(self._store(key, value, ttl, stale, refresh, True))

    def touch(self, key, ttl=None):
        """Give the key's fresh value a new TTL from now (``None``: the layer default; ``0``
        removes it), without rewriting it; False if it holds none (stale ones neither)."""
        cdef double seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        return self.touch_entry(key, Lifetime(seconds, 0.0, seconds))

    def touch_entry(self, key, lifetime):
        """``touch`` with a whole ``lifetime``: fresh for ``ttl``, stale for ``stale_ttl``
        more, a refresh due after ``refresh_after`` (see ``set_entry``)."""
        cdef uint64_t key_hash = _key_hash(key)
        ttl, stale, refresh = self._lifetime_seconds(lifetime)
        cdef int64_t now_ns = self._now_ns()
        cdef int64_t deadline, fresh_until, refresh_at
        deadline, fresh_until, refresh_at = self._deadlines(now_ns, ttl, stale, refresh)
        cdef Py_ssize_t slot
        self._settle(key)
        self._lock_for_write()
        try:
            slot = find_slot(self, key, key_hash, True)
            if not self._holds_fresh(slot, now_ns):
                return False
            if deadline <= now_ns:
                remove_slot(self, slot, EXPIRED)
                return True
            self._wheel.schedule(slot, deadline)
            self._fresh.assign(slot, fresh_until, refresh_at)
            return True
        finally:
            self._unlock()

    def incr(self, key, delta=1, ttl=None):
        """Add ``delta`` to the key's counter and return the new count, atomically between
        threads; the counter keeps its TTL (and, in a weighted layer, its weight). A key
        holding no fresh value starts at 0, living ``ttl`` (``None``: the layer default).
        Raises ``TypeError`` if the value is not an int, ``OverflowError`` past 64 bits."""
        cdef double seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        return self.incr_entry(key, delta, Lifetime(seconds, 0.0, seconds))

    def incr_entry(self, key, delta, lifetime):
        """``incr``; ``lifetime`` is a new counter's."""
        cdef uint64_t key_hash = _key_hash(key)
        checked_delta(delta)
        counted(0, delta, key)
        ttl, stale, refresh = self._lifetime_seconds(lifetime)
        cdef int64_t weight = 1
        if self._weigher is not None:  # a new counter's (Python code: before the lock)
            weight = checked_weight(self._weigher(key, delta), key)
        cdef int64_t now_ns = self._now_ns()
        cdef int64_t deadline, fresh_until, refresh_at
        deadline, fresh_until, refresh_at = self._deadlines(now_ns, ttl, stale, refresh)
        cdef Py_ssize_t slot
        cdef object value = None, count = None
        cdef int crowded = -1  # a new counter: whether its hash was crowded
        cdef object pending = self._settle(key)
        self._lock_for_write()
        try:
            if self._wheel.scheduled:
                reclaim_expired(self, now_ns)
            slot = find_slot(self, key, key_hash, True)
            if self._holds_fresh(slot, now_ns):
                value = <object>stored_value(self, slot)
                # Checked here without running Python code (the errors are raised below).
                if type(value) is int:
                    count = value + delta
                    if INT64_MIN <= count <= INT64_MAX:
                        if self._removals.active:
                            record_removal(&self._removals,
                                           list_items(<PyObject*>self._entries)[2 * slot],
                                           stored_value(self, slot), REPLACED)
                        self._replace_item(2 * slot + 1, count)
                        return count
            else:
                crowded = self._set_locked(key, delta, key_hash, NOT_ABSENT, NO_BUCKET, weight,
                                           now_ns, deadline, fresh_until, refresh_at)
        finally:
            self._unlock()
        if crowded < 0:
            return counted(value, delta, key)  # raises the error
        if pending is not None:
            pending.rescue(key)  # a new counter, written after the invalidations
        if crowded and _warns_at(self._crowded):
            warn_crowded(self.name, key, self._crowded)
        return delta

    def decr(self, key, delta=1, ttl=None):
        """``incr`` by ``-delta``."""
        return self.incr(key, -checked_delta(delta), ttl)

    def delete(self, key):
        """Remove the entry; True if a live one was there."""
        cdef uint64_t key_hash = _key_hash(key)
        cdef Py_ssize_t slot
        cdef bint live
        self._settle(key)
        self._lock_for_write()
        try:
            slot = find_slot(self, key, key_hash, True)
            if slot < 0:
                return False
            live = not self._is_expired(slot)
            remove_slot(self, slot, INVALIDATED if live else EXPIRED)
            return live
        finally:
            self._unlock()

    def adjust_ttl(self, key, ttl):
        """Give a live entry a new TTL, counted from now (``None`` = the layer default).
        Returns False if there is no live entry."""
        cdef uint64_t key_hash = _key_hash(key)
        cdef double seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        cdef int64_t now_ns = self._now_ns()
        cdef int64_t deadline
        cdef Py_ssize_t slot
        self._settle(key)
        self._lock_for_write()
        try:
            slot = find_slot(self, key, key_hash, True)
            if slot < 0 or self._is_expired(slot, now_ns):
                return False
            deadline = NO_DEADLINE if seconds == INFINITY else deadline_after(now_ns, seconds, NO_DEADLINE)
            if deadline <= now_ns:
                remove_slot(self, slot, EXPIRED)
            else:
                self._wheel.schedule(slot, deadline)
                self._fresh.forget(slot)  # a new TTL: fresh until it is gone
            return True
        finally:
            self._unlock()

    def clear(self):
        """Remove every entry (frequency history is kept). Entries found gone count as
        expirations (as ``delete`` counts them)."""
        cdef int64_t now_ns = self._now_ns() if self._wheel.scheduled else -1
        self._lock_for_write()
        try:
            for slot in cached_slots(self):
                remove_slot(self, slot, EXPIRED if now_ns >= 0 and self._is_expired(slot, now_ns)
                            else INVALIDATED)
            self._pending = None
            self._slow_reads = COPIES if self._copies else 0
        finally:
            self._unlock()

    def set_default_ttl(self, ttl):
        """The layer's own TTL for writes without one, from the next write on: see the
        twin."""
        self.default_ttl = default_ttl_seconds(ttl)
        self._known_lifetime = None  # its seconds may have been this default

    def resize(self, max_size=None, *, max_weight=None):
        """A new ``max_size`` (or ``max_weight``) for a running layer: see the twin."""
        capacity = resized_bound(max_size, max_weight, self.max_weight is not None)
        # The clock may run Python code: read it before taking ownership.
        cdef int64_t now_ns = self._now_ns() if self._wheel.scheduled else 0
        cdef Py_ssize_t evicted
        self._lock_for_write()
        try:
            if now_ns and self._wheel.scheduled:
                reclaim_expired(self, now_ns)
            evicted = self._policy.resize(capacity)
            if evicted:
                drop_evicted(self, evicted)
            if self.max_weight is None:
                self.max_size = capacity
            else:
                self.max_weight = capacity
            if self.size_estimator is not None:  # its shadows were sized for the old bound
                self.size_estimator = restarted_estimator(
                    self, capacity, self._hits, self._hits + self._misses)
                self._sample_below = self.size_estimator.threshold
                if self._sample_count < BATCH:  # (full: a flush is handing its buffer over)
                    self._sample_count = 0  # what was buffered sampled the old shadows
        finally:
            self._unlock()

    # ------------------------------------------------------------------ introspection
    def remaining_ttl(self, key):
        """Seconds the entry stays fresh (``math.inf``: never expires; ``0.0``: stale, still
        held for the managers' fail-safe), or ``None`` when there is none. Does not count
        as an access."""
        self._settle(key)
        return remaining_ttl(self, key)

    def __repr__(self):
        return layer_repr(self)

    def get_frequency_estimate(self, key):
        """Estimated recent accesses of ``key`` (0..16), cached or not."""
        return frequency_estimate(self, key)

    def get_top_keys(self, n=10):
        """The ``n`` cached keys with the highest estimated frequency, hottest first."""
        return top_keys(self, n)

    def stats(self):
        """Counters since creation: hits, misses, evictions, expirations, rejections, ..."""
        return stats(self)

    def snapshot(self, hot_keys=32):
        """A raw export: sketch table copy, the hottest keys' hits and misses, counters."""
        return snapshot(self, hot_keys)

    def access_counts(self):
        """Per-key counts the layer keeps anyway (hits per cached entry, misses of the keys
        that miss most), copied in one short hold: what ``cache.insights()``, anomaly
        detection and the fleet's global top-N sample, off the request path."""
        return access_counts(self)

    def keys_at(self, slots):
        """The keys behind ``(slot, key_hash)`` pairs of ``access_counts`` (``None``: the
        slot holds another key by now)."""
        return keys_at(self, slots)

    def missed_keys_at(self, buckets):
        """The keys behind ``(bucket, key_hash)`` pairs of ``access_counts``' missed keys."""
        return missed_keys_at(self, buckets)

    def keys(self):
        """A list of the keys held now, pending ``drop_later`` invalidations swept first
        (a copy: O(size); for tools and tests, not for the request path)."""
        self._sweep(self._slot_count)
        return held_keys(self)

    # ------------------------------------------------------------------ lazy drops
    def drop_later(self, keysets, prefixes=()):
        """Invalidate the entries whose key is in one of ``keysets`` (containers of keys)
        or starts with one of ``prefixes``, at a cost that does not grow with their number:
        from now on each operation checks its own key, and removes the invalid entries of
        a few slots, until all are gone (``sweep.py``)."""
        cdef object pending = self._pending
        if pending is None:
            pending = PendingDrop()
        pending.add(keysets, prefixes)  # checks the prefixes: nothing changed if it raises
        self._pending = pending
        self._sweep_at = 0  # the new rules apply to every slot
        self._sweep_epoch += 1
        self._slow_reads |= PENDING_DROPS
        self._sweep(SWEEP_STEP)  # a small layer is done at once

    cdef object _settle(self, object key):
        """With invalidations pending: sweep a few slots, and remove ``key``'s entry if it
        is invalid. Returns them (a write rescues its key once stored), else None. The
        rules are Python code (a key's ``__eq__``): asked before the layer is taken; a
        write of the key meanwhile may be removed too, a miss, never a stale read."""
        cdef object pending = self._pending
        cdef Py_ssize_t slot
        if pending is None:
            return None
        self._sweep(SWEEP_STEP)
        if pending.covers(key):
            self._lock_for_write()
            try:
                slot = find_slot(self, key, _key_hash(key), True)
                if slot >= 0:  # (one found gone counts as expired, as ``delete`` counts it)
                    remove_slot(self, slot, EXPIRED if self._is_expired(slot) else INVALIDATED)
            finally:
                self._unlock()
        return pending

    cdef int _sweep(self, Py_ssize_t step) except -1:
        """Remove the invalid entries of the next ``step`` slots. The invalidations are
        done once the sweep has passed the last slot and no thread is still inside an
        earlier step (its keys' rules are Python code: another thread may run meanwhile),
        unless ``drop_later`` added some since."""
        cdef object pending = self._pending
        cdef uint64_t epoch = self._sweep_epoch
        cdef Py_ssize_t start = self._sweep_at, end, slot
        if pending is None:
            return 0
        end = min(start + step, self._slot_count)
        self._sweep_at = end
        self._sweepers += 1
        try:
            held = [
                (slot, self._entries[2 * slot]) for slot in range(start, end)
                if self._policy.region_of(slot) != NOT_CACHED
            ]
            for slot, key in held:
                if pending.covers(key):  # Python code: the slot is checked again once taken
                    self._lock_for_write()
                    try:
                        if (self._entries[2 * slot] is key
                                and self._policy.region_of(slot) != NOT_CACHED):
                            remove_slot(self, slot,
                                        EXPIRED if self._is_expired(slot) else INVALIDATED)
                    finally:
                        self._unlock()
        finally:
            self._sweepers -= 1
        if (self._sweepers == 0 and self._sweep_at >= self._slot_count
                and self._sweep_epoch == epoch and self._pending is pending):
            self._pending = None
            self._slow_reads = COPIES if self._copies else 0
        return 0

    def size_estimates(self):
        """The hit ratio (0..1) this layer would have had since it was built at each size
        factor of ``estimate_sizes``, and at 1 (its own size: the ratio it measured), from
        sampled shadow caches (``analytics/mrc.py``); ``nan`` before any sampled read.
        ``RuntimeError`` if it was built without ``estimate_sizes``."""
        estimator = checked_estimator(self)
        if self._sample_count < BATCH:  # (full: another thread is handing it over)
            self._flush_samples()
        return estimator.estimates(self._hits, self._hits + self._misses)

    cdef inline int _sample(self, uint64_t event) except -1:
        # Under the GIL no other thread runs between reading the count and writing it back.
        # A full buffer is being handed over by the thread that filled it (Python code:
        # threads may switch): this access then goes unsampled, never past the end.
        cdef Py_ssize_t count = self._sample_count
        if count < BATCH:
            self._samples[count] = event
            self._sample_count = count + 1
            if count + 1 == BATCH:
                self._flush_samples()
        return 0

    cdef int _flush_samples(self) except -1:
        # Marked full first, then the spare buffer (or a new one, while another thread still
        # replays the spare) put in place and only then marked empty: whatever runs in
        # between (allocation may run a finalizer, and switch threads) cannot write into
        # the buffer being replayed, outside of the layer's ownership. The replayed buffer
        # becomes the spare once its replay is over.
        cdef Py_ssize_t count = self._sample_count
        self._sample_count = BATCH
        cdef object full = self._sample_array
        cdef object spare = self._spare_samples
        self._spare_samples = None
        self._sample_array = np.empty(BATCH, dtype=np.uint64) if spare is None else spare
        self._samples = self._sample_array
        self._sample_count = 0
        if count:
            self.size_estimator.replay(full[:count])
        self._spare_samples = full
        return 0

    def _replay_accesses(self, const uint64_t[::1] events, list keys):
        """For the shadows of ``analytics/mrc.py``: replay sampled events (bit 0 set: a
        write) with each event's other bits as an int key, a read that misses followed by a
        write of ``True`` (as a read-through cache does); the number of reads that hit.
        ``keys``: one item per event, None until a shadow builds that event's key, which
        then serves the other shadows (one int object per event, not per shadow).

        The same decisions as ``get`` and ``set`` (the pure twin's definition), on the lean
        path a shadow allows: a layer without TTLs, weights, copies, listeners or pending
        drops, touched by one replay at a time (the estimator's lock), whose keys are ints.
        A key's hash is computed from the event (no int object for a lookup), and an int
        object is needed only for a key that goes in. What only reports on the layer (the
        missed keys' table, ``_last_miss``) is not kept. ``RuntimeError`` for another
        layer."""
        if not self._replays_plainly():
            raise RuntimeError(
                f"InMemoryLayer {self.name!r}: _replay_accesses is for size-estimate "
                "shadows (no TTL, weigher, copy, removal listener or pending drop)"
            )
        if len(keys) != events.shape[0]:
            raise ValueError("_replay_accesses: one item of keys per event")
        cdef Py_ssize_t index, slot, hits = 0, count = events.shape[0]
        cdef uint64_t event, number, key_hash, next_hash = 0
        if count:
            next_hash = _replayed_hash(events[0])
        # One operation for the whole batch: no Python code of a user runs in it (the keys
        # are ints), and nothing else touches a shadow.
        self._lock_for_write()
        try:
            for index in range(count):
                event = events[index]
                number = event >> 1
                key_hash = next_hash
                if index + 1 < count:
                    # The next event's bucket and counters are likely cold (the layer's own
                    # traffic ran since the last replay): start loading them now.
                    next_hash = _replayed_hash(events[index + 1])
                    prefetch(&self._index[next_hash & self._index_mask])
                    prefetch(sketch_block(self._policy._sketch_words, self._policy._sketch_mask,
                                          next_hash))
                if number < <uint64_t>HASH_MODULUS:
                    slot = _plain_int_slot(self, key_hash)
                else:  # equal hashes need not be equal ints: compare the keys
                    slot = find_slot(self, _replayed_key(keys, index, number), key_hash, True)
                if event & WRITE:
                    if slot >= 0:
                        self._puts += 1  # (it holds True already: nothing else changes)
                        continue
                elif slot >= 0:
                    record_hit(self, slot, key_hash)  # (as ``_read`` counts a hit)
                    hits += 1
                    continue
                else:  # (as ``_read`` counts a miss)
                    if self._vacant_bucket != CROWDED:
                        self._policy.count_access(key_hash)
                    self._policy.ghosts._prefetch(key_hash)
                    prefetch_evictees(self)
                    self._misses += 1
                self._insert_replayed(keys, index, number, key_hash)
        finally:
            self._unlock()
        return hits

    cdef bint _replays_plainly(self) noexcept:
        """Whether this layer is one ``_replay_accesses`` can take its lean path in."""
        return (
            self.default_ttl == INFINITY and self._weigher is None and not self._copies
            and self.max_weight is None and not self._removals.active
            and self._pending is None and not self._wheel.scheduled and not self._fresh.count
        )

    cdef inline int _insert_replayed(self, list keys, Py_ssize_t index, uint64_t number,
                                     uint64_t key_hash) except -1:
        """(Owning the layer) ``_set_locked`` of the missing key of event ``index`` with
        ``True``, right after the probe that found it missing (``_vacant_bucket``) and
        without a lifetime."""
        cdef uint64_t vacant = self._vacant_bucket
        cdef Py_ssize_t slot, evicted
        self._puts += 1
        if vacant == CROWDED:
            self._crowded += 1  # (a shadow does not warn: its keys are not the user's)
            return 0
        # (Allocating the key may run a finalizer: before the slot table changes.)
        slot = allocate_slot(self, _replayed_key(keys, index, number), True, key_hash, vacant)
        evicted = self._policy.on_insert(slot, key_hash, 1)
        if evicted:
            drop_evicted(self, evicted)
            # What left is ints and True: releasing them runs no Python code, so it need
            # not wait for the end of the batch.
            release_graves(&self._ownership)
        prefetch_next_evictees(self)
        return 0

    def _internals(self):
        """For tests: the structures behind the layer (see tests/invariants.py)."""
        return internals(self)

    # ------------------------------------------------------------------ ownership
    cdef inline int _lock_for_write(self) except -1:
        return take_ownership(&self._ownership)

    cdef inline void _unlock(self) noexcept:
        self._ownership.owner = 0
        if self._ownership.grave_count:
            release_graves(&self._ownership)
        if list_size(<PyObject*>self._grave_overflow):
            self._grave_overflow = []  # releases what spilled over, after the unlock
        if self._removals.wake:  # removals were recorded into an empty log
            self._removals.wake = False
            self._delivery.wake()

    # ------------------------------------------------------------------ removal listeners
    def add_removal_listener(self, listener):
        """Call ``listener(key, value, cause)`` on a thread of its own for every entry that
        leaves the layer from now on (see ``removals.py``); returns a function that removes
        it again."""
        checked_listener(listener)
        cdef Py_ssize_t capacity = self._removals.capacity
        cdef PyObject** records
        cdef PyObject** spare
        cdef uint8_t* causes
        cdef uint8_t* spare_causes
        if self._removals.records == NULL:
            # Allocated before taking ownership: under it, only pointers are stored.
            records = <PyObject**>PyMem_Malloc(2 * capacity * sizeof(PyObject*))
            spare = <PyObject**>PyMem_Malloc(2 * capacity * sizeof(PyObject*))
            causes = <uint8_t*>PyMem_Malloc(capacity)
            spare_causes = <uint8_t*>PyMem_Malloc(capacity)
            if not (records and spare and causes and spare_causes):
                PyMem_Free(records)
                PyMem_Free(spare)
                PyMem_Free(causes)
                PyMem_Free(spare_causes)
                raise MemoryError("no memory for the removal log")
            self._lock_for_write()
            if self._removals.records == NULL:
                self._removals.records, self._removals.spare_records = records, spare
                self._removals.causes, self._removals.spare_causes = causes, spare_causes
                records = spare = NULL
                causes = spare_causes = NULL
            self._unlock()
            # (Another thread's first listener may have allocated the log meanwhile.)
            PyMem_Free(records)
            PyMem_Free(spare)
            PyMem_Free(causes)
            PyMem_Free(spare_causes)
        if self._delivery is None:
            self._delivery = RemovalDelivery(self)
        self._delivery.add(listener)
        self._removals.active = True

        def remove():
            if not self._delivery.remove(listener):
                self._removals.active = False  # nobody listens: record nothing more
                self._delivery.wake()  # (what was recorded is taken and dropped)

        return remove

    def removal_stats(self):
        """Removals delivered to the listeners, dropped (the log was full), that made a
        listener raise, and waiting now (``core.events.EventStats``)."""
        if self._delivery is None:
            return EventStats(0, self._removals.dropped, 0, self._removals.count)
        return self._delivery.stats(self._removals.dropped, self._removals.count)

    def _take_removals(self):
        """For the delivery thread: every recorded removal, as ``(key, value, cause
        code)``; the log is swapped under ownership, the tuples built after it."""
        cdef Py_ssize_t count, i
        cdef PyObject** records
        cdef uint8_t* causes
        if self._removals.records == NULL:
            return []
        self._lock_for_write()
        count = swap_halves(&self._removals)
        records = self._removals.spare_records
        causes = self._removals.spare_causes
        self._unlock()
        taken = []
        try:
            for i in range(count):
                taken.append((<object>records[2 * i], <object>records[2 * i + 1], causes[i]))
        finally:
            for i in range(2 * count):  # the tuples hold their own references now
                Py_DECREF(<object>records[i])
                records[i] = NULL
        return taken

    def _after_fork(self):
        # In a forked child (``multilayercache._forking``): see ``ownership.pxd``.
        if end_foreign_operation(&self._ownership):
            self._grave_overflow = []

    cdef inline int _replace_item(self, Py_ssize_t index, object item) except -1:
        # ``_entries[index] = item``; the old item is released when the operation ends.
        return replace_item(&self._ownership, list_items(<PyObject*>self._entries), index, item,
                            <PyObject*>self._grave_overflow)

    # ------------------------------------------------------------------ time
    cdef int64_t _now_ns(self) except? -1:
        if self._clock is not None:
            return <int64_t>(<double>self._clock() * 1e9)
        return monotonic_ns()

    cdef bint _is_expired(self, Py_ssize_t slot, int64_t now_ns=-1) except -1:
        """Whether the entry's deadline has passed (by ``now_ns`` if given)."""
        cdef int64_t deadline = self._wheel.deadline(slot)
        if deadline == NO_DEADLINE:
            return False
        return self._has_passed(deadline) if now_ns < 0 else deadline <= now_ns

    cdef bint _has_passed(self, int64_t deadline) except -1:
        if self._clock is not None:
            return deadline <= self._now_ns()
        return has_passed(deadline, self._coarse_slack_ns)


cdef inline uint64_t _replayed_hash(uint64_t event) noexcept:
    """The spread hash of a replayed event's key ``event >> 1`` (``_key_hash`` of that int,
    without the int: Python hashes a non-negative int to itself modulo 2**61 - 1)."""
    cdef uint64_t number = event >> 1
    return spread(number if number < <uint64_t>HASH_MODULUS else number % <uint64_t>HASH_MODULUS)


cdef inline object _replayed_key(list keys, Py_ssize_t index, uint64_t number):
    """Event ``index``'s key, ``number``: the int object another shadow built, else a new
    one, left in ``keys`` for the next shadows."""
    cdef object key = keys[index]
    if key is None:
        key = number
        keys[index] = key
    return key


cdef inline Py_ssize_t _plain_int_slot(InMemoryLayer layer, uint64_t key_hash) noexcept:
    """``find_slot`` (locked) of an int key that Python hashes to itself, from its spread
    hash alone (``_replay_accesses``): a slot flagged PLAIN_INT with the same hash holds an
    equal int, and one not flagged holds a key of another value (a shadow holds only ints),
    as find_slot's compare would find."""
    cdef uint32_t slot_mask = slot_mask_of(layer._index_mask)
    cdef uint32_t tag_mask = tag_mask_of(slot_mask)
    cdef uint32_t tag = index_tag(key_hash, slot_mask)
    cdef uint64_t bucket = key_hash & layer._index_mask
    cdef int32_t tagged
    cdef Py_ssize_t slot
    while True:
        tagged = layer._index[bucket]
        if tagged == EMPTY:
            layer._vacant_bucket = (
                bucket if layer._sharer_hash != key_hash else vacancy(layer, key_hash, bucket)
            )
            return -1
        if (<uint32_t>tagged & tag_mask) == tag:
            slot = <uint32_t>tagged & slot_mask
            if layer._policy.hash_of(slot) == key_hash:
                if slot_record(layer, slot)[HITS] & PLAIN_INT:
                    return slot
                layer._sharer_hash = key_hash  # (as find_slot records another key's hash)
        bucket = (bucket + 1) & layer._index_mask


cdef inline bint _warns_at(Py_ssize_t turned_away) noexcept:
    """Whether ``flooding.warn_crowded`` logs at this count (1, 10, 100, ...): checked here
    first, so that a flood costs no call per key."""
    while turned_away >= 10 and turned_away % 10 == 0:
        turned_away //= 10
    return turned_away == 1


def _check_key(key):
    """Raise the layer's error for an unhashable key."""
    _key_hash(key)


cdef inline int _admit(InMemoryLayer layer, Py_ssize_t slot, uint64_t key_hash,
                       int64_t weight) except -1:
    """A new entry, its slot filled, goes to the policy; what it evicts (maybe the newcomer
    itself) is dropped. (A function, not a method: gcc inlines it into both inserts.)"""
    cdef Py_ssize_t evicted = layer._policy.on_insert(slot, key_hash, weight)
    if evicted:
        drop_evicted(layer, evicted)
    prefetch_next_evictees(layer)  # for the next miss
    return 0
