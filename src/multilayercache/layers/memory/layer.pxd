# What the compiled InMemoryLayer holds (layer.pyx defines its methods). Declared here so
# that its friends compile against it: slots.pxd (the slot table, inline into the layer's
# hot path; slots.pyx grows it) and introspection.pyx (stats, snapshots and the other views, off
# the hot path).
#
# Layout: ``_index`` (index.pxd) maps spread hashes to slots tagged with hash bits, and
# compares the tag, then the policy's per-slot hash, before any key object. ``_entries``
# is one list with slot ``s``'s key at ``2s`` and value at ``2s + 1``: the garbage
# collector sees what the cache holds, and a hit reads both from one cache line. The
# layer's per-slot record (hits, ...) lives in the policy's node of the slot
# (``slot_record`` in slots.pxd).
cimport cython
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from ..._core.hotkeys cimport HotKeyTable
from ..._core.policy cimport WTinyLfuPolicy
from ..._core.timerwheel cimport TimerWheel
from .freshness cimport FreshnessDeadlines
from .ownership cimport Ownership
from .removals cimport RemovalLog


@cython.final
cdef class InMemoryLayer:
    cdef readonly str name
    cdef readonly object max_size
    cdef readonly object max_weight
    cdef readonly double default_ttl
    cdef object _weigher
    cdef object _clock
    cdef object _copy  # a function copying values in and out, or None (``copy=``)
    cdef bint _copies  # _copy is set
    # Reads that take the locked path: COPIES (values are copied) | PENDING_DROPS
    # (invalidations not yet swept, ``drop_later``); tested with the owner, in one test.
    cdef unsigned long _slow_reads
    cdef object _pending  # a sweep.PendingDrop, or None
    cdef Py_ssize_t _sweep_at  # the next slot the sweep looks at
    cdef uint64_t _sweep_epoch  # bumped by drop_later: a sweep begun before is not the last
    cdef Py_ssize_t _sweepers  # threads inside a sweep step (the last one out may end it)
    cdef WTinyLfuPolicy _policy
    cdef TimerWheel _wheel
    cdef FreshnessDeadlines _fresh
    cdef HotKeyTable _missed
    cdef int32_t[::1] _index
    cdef uint64_t _index_mask
    cdef list _entries
    cdef int32_t[::1] _free
    cdef Py_ssize_t _free_count
    cdef Py_ssize_t _slot_count
    cdef uint64_t _version  # bumped whenever a slot enters or leaves the index
    # The last key that the fast path found missing, its spread hash, and the version at
    # which it was missing: a ``set`` of that same object while the version holds knows
    # its hash and that it is absent (a miss is usually followed by a set of its key).
    cdef object _last_miss
    cdef uint64_t _last_miss_hash
    cdef uint64_t _last_miss_version
    cdef uint64_t _last_miss_bucket  # where its probe found an empty bucket (or NO_BUCKET)
    cdef uint64_t _vacant_bucket  # where the last find_slot that missed stopped
    # The last hash that a probe found held by another key than the one it looked for: a
    # miss on that hash counts the keys sharing it (slots.pxd, ``vacancy``).
    cdef uint64_t _sharer_hash
    cdef int64_t _coarse_slack_ns
    cdef Py_ssize_t _hits, _misses, _expirations, _oversized
    cdef Py_ssize_t _crowded  # new keys turned away: their hash was crowded (flooding.py)
    cdef Py_ssize_t _puts  # values written (kept or not): ``LayerStats.puts``
    cdef Ownership _ownership
    cdef list _grave_overflow
    # ``estimate_sizes=`` (estimates.py): a key is sampled iff its spread hash is below
    # ``_sample_below`` (0 when off: never); sampled accesses wait in ``_samples``.
    cdef readonly object size_estimator
    cdef uint64_t _sample_below
    cdef object _sample_array
    cdef uint64_t[::1] _samples
    cdef Py_ssize_t _sample_count
    cdef object _spare_samples  # the last replayed buffer, reused by the next flush (or None)
    cdef RemovalLog _removals  # what left, for the removal listeners (removals.pxd)
    cdef object _delivery  # their RemovalDelivery (removals.py), or None
    cdef object __weakref__  # for multilayercache._forking, which holds layers weakly
    # The last lifetime ``set_entry`` was given, and its seconds: a manager passes its
    # policy's one default lifetime again and again, and checking it costs more than the set.
    cdef object _known_lifetime
    cdef double _known_ttl, _known_stale, _known_refresh

    # reads
    cdef object _read(self, object key, object default, int accept, object aside)
    cdef object _read_locked(self, object key, uint64_t key_hash, object default, int accept,
                             object aside)
    cdef int _freshness(self, Py_ssize_t slot, int64_t now_ns) except -1
    cdef object _entry(self, Py_ssize_t slot, int64_t now_ns)
    cdef Py_ssize_t _live_slot(self, object key, uint64_t key_hash) except -2
    cdef void _remember_miss(self, object key, uint64_t key_hash, uint64_t absent_at,
                             uint64_t bucket) noexcept
    # lazy drops
    cdef object _settle(self, object key)
    cdef int _sweep(self, Py_ssize_t step) except -1
    # writes
    cdef int _store(self, object key, object value, double ttl, double stale,
                    double refresh, bint only_if_absent) except -1
    cdef bint _inserts_plainly(self) noexcept
    cdef int _insert_missed(self, object key, object value) except -1
    cdef bint _holds_key(self, object key, uint64_t key_hash, uint64_t absent_at,
                         int64_t now_ns) except -1
    cdef bint _holds_fresh(self, Py_ssize_t slot, int64_t now_ns) except -1
    cdef tuple _deadlines(self, int64_t now_ns, double ttl, double stale, double refresh)
    cdef int _set_locked(self, object key, object value, uint64_t key_hash,
                         uint64_t absent_at, uint64_t absent_bucket, int64_t weight,
                         int64_t now_ns, int64_t deadline, int64_t fresh_until,
                         int64_t refresh_at) except -1
    # size estimates
    cdef int _sample(self, uint64_t event) except -1
    cdef int _flush_samples(self) except -1
    cdef bint _replays_plainly(self) noexcept
    cdef int _insert_replayed(self, list keys, Py_ssize_t index, uint64_t number,
                              uint64_t key_hash) except -1
    # ownership
    cdef int _lock_for_write(self) except -1
    cdef void _unlock(self) noexcept
    cdef int _replace_item(self, Py_ssize_t index, object item) except -1
    # time
    cdef int64_t _now_ns(self) except? -1
    cdef bint _is_expired(self, Py_ssize_t slot, int64_t now_ns=*) except -1
    cdef bint _has_passed(self, int64_t deadline) except -1
