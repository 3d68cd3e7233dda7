# The compiled layer's slot table: find a key's slot, fill a free slot, free one (removed,
# evicted or expired), count a hit. Inline functions over the layer's fields (layer.pxd),
# so that they compile into the layer's hot path with no call. The pure twin keeps a dict
# instead (``_layer_py.py``).
from cpython.object cimport Py_EQ, PyObject_RichCompareBool
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from ..._core.bits cimport prefetch
from ..._core.policy cimport (
    HASH_STRIDE,
    HEADS,
    NODE_FIELDS,
    OWNER,
    WTinyLfuPolicy,
)
from ..._core.sketch cimport sketch_block
from .index cimport (
    EMPTY,
    NO_BUCKET,
    index_place,
    index_place_at,
    index_remove,
    index_tag,
    slot_mask_of,
    tag_mask_of,
)
from .keys cimport is_plain_int
from .layer cimport InMemoryLayer
from .ownership cimport list_items, replace_item
from .removals cimport EVICTED, EXPIRED, REJECTED, record_removal

cdef enum:
    INTERRUPTED = -3  # find_slot: a write began while a key's __eq__ ran
    # Keys sharing one full hash that the table holds at most (hash flooding: flooding.py)
    KEYS_PER_HASH = 4
    # The slot's record (slot_record): these fields
    HITS = 0  # bits 0-30: the entry's hits; bit 31: PLAIN_INT
    SATURATED_IN = 1  # the policy epoch in which the key was found saturated

cdef extern from *:
    """
    #define MLC_MAX_HITS 0x7FFFFFFFU
    #define MLC_PLAIN_INT 0x80000000U
    """
    const uint32_t MAX_HITS "MLC_MAX_HITS"  # per-slot hit counts saturate here
    # set in HITS if the key is an int hashed to its own value (keys.pxd)
    const uint32_t PLAIN_INT "MLC_PLAIN_INT"

cdef extern from *:
    """
    #define MLC_CROWDED 0xFFFFFFFFFFFFFFFEULL
    """
    # find_slot's ``_vacant_bucket`` when the key is missing and KEYS_PER_HASH other keys
    # hold its hash: the key is not to be inserted (nor its lookups counted)
    const uint64_t CROWDED "MLC_CROWDED"


# Growth, rare once the cache is full (slots.pyx: numpy allocates, so out of the hot path).
cdef int grow_index(InMemoryLayer layer) except -1
cdef Py_ssize_t append_slot(InMemoryLayer layer, object key, object value) except -1
cdef int grow_free(InMemoryLayer layer) except -1


cdef inline PyObject* stored_value(InMemoryLayer layer, Py_ssize_t slot) noexcept:
    """The value in ``slot``, borrowed (the entries list holds it at ``2 * slot + 1``)."""
    return list_items(<PyObject*>layer._entries)[2 * slot + 1]


cdef inline uint32_t* slot_record(InMemoryLayer layer, Py_ssize_t slot) noexcept:
    """The layer's record of ``slot``: kept in the owner's fields of the slot's policy node,
    the cache line that a hit reads and writes for the recency order anyway."""
    return <uint32_t*>&layer._policy._nodes[NODE_FIELDS * (HEADS + slot) + OWNER]


cdef inline Py_ssize_t find_slot(InMemoryLayer layer, object key, uint64_t key_hash,
                                 bint locked) except -2:
    """The key's slot, or -1; INTERRUPTED if not ``locked`` and a write began while a key's
    ``__eq__`` ran (the caller then retries under ownership). On -1, ``_vacant_bucket`` is
    where an insert of the key goes, or CROWDED (``vacancy``)."""
    cdef uint64_t bucket
    cdef int32_t tagged
    cdef uint32_t tag, tag_mask, slot_mask
    cdef Py_ssize_t slot
    cdef uint64_t version
    cdef int equal
    cdef PyObject* stored
    while True:
        # (Inside the loop: a key's __eq__ may grow the table, which changes the tags.)
        slot_mask = slot_mask_of(layer._index_mask)
        tag_mask = tag_mask_of(slot_mask)
        tag = index_tag(key_hash, slot_mask)
        bucket = key_hash & layer._index_mask
        while True:
            tagged = layer._index[bucket]
            if tagged == EMPTY:
                # Where an insert of this key goes; counting the keys that share its hash
                # only if this probe may have met one (none on the hit path).
                layer._vacant_bucket = (
                    bucket if layer._sharer_hash != key_hash else vacancy(layer, key_hash, bucket)
                )
                return -1
            # Another key's tag: skip it without reading its hash or its key (index.pxd).
            if (<uint32_t>tagged & tag_mask) == tag:
                slot = <uint32_t>tagged & slot_mask
                stored = list_items(<PyObject*>layer._entries)[2 * slot]
                if stored == <PyObject*>key:
                    return slot  # the very object (a hit reads this line for the value anyway)
                if layer._policy.hash_of(slot) == key_hash:
                    if slot_record(layer, slot)[HITS] & PLAIN_INT and is_plain_int(key):
                        return slot  # equal ints: the stored one need not be read
                    version = layer._version
                    equal = PyObject_RichCompareBool(<object>stored, key, Py_EQ)
                    if not locked and layer._ownership.owner:
                        return INTERRUPTED
                    if layer._version != version:
                        break  # the cache changed while __eq__ ran: look again
                    if equal:
                        return slot
                    layer._sharer_hash = key_hash  # another key with this hash: see above
            bucket = (bucket + 1) & layer._index_mask


cdef inline uint64_t vacancy(InMemoryLayer layer, uint64_t key_hash,
                             uint64_t bucket) noexcept:
    """Where a key missing from the table goes: ``bucket``, the empty one its probe ended
    at, or CROWDED if KEYS_PER_HASH keys share its hash. All of them lie on the probe's
    way, from the key's home bucket to ``bucket`` (same home, same tag); no key is compared."""
    cdef uint32_t slot_mask = slot_mask_of(layer._index_mask)
    cdef uint32_t tag_mask = tag_mask_of(slot_mask)
    cdef uint32_t tag = index_tag(key_hash, slot_mask)
    cdef uint64_t at = key_hash & layer._index_mask
    cdef Py_ssize_t sharing = 0
    cdef int32_t tagged
    while at != bucket:
        tagged = layer._index[at]
        if ((<uint32_t>tagged & tag_mask) == tag
                and layer._policy.hash_of(<uint32_t>tagged & slot_mask) == key_hash):
            sharing += 1
        at = (at + 1) & layer._index_mask
    return bucket if sharing < KEYS_PER_HASH else CROWDED


cdef inline Py_ssize_t allocate_slot(InMemoryLayer layer, object key, object value,
                                     uint64_t key_hash, uint64_t vacant) except -1:
    """A slot holding ``key`` and ``value``, in the index (the policy is told next).
    ``vacant``: the empty bucket where a probe for the key ended, the index unchanged since
    (NO_BUCKET if unknown)."""
    cdef Py_ssize_t slot
    # The index grows first, before the slot is taken: growing may be interrupted (see
    # ``append_slot``), and then nothing has changed.
    # (Slots in use: the entries, a held one (the policy's ``held``) and this one.)
    if 4 * (layer._policy.entries + 2) > <Py_ssize_t>(layer._index_mask + 1):
        grow_index(layer)
        vacant = NO_BUCKET  # the buckets moved
    if layer._free_count:
        layer._free_count -= 1
        slot = layer._free[layer._free_count]
        # A free slot holds None twice: replacing them releases nothing.
        replace_none(list_items(<PyObject*>layer._entries), 2 * slot, key)
        replace_none(list_items(<PyObject*>layer._entries), 2 * slot + 1, value)
    else:
        slot = append_slot(layer, key, value)
    cdef uint32_t* meta = slot_record(layer, slot)
    meta[HITS] = PLAIN_INT if is_plain_int(key) else 0
    meta[SATURATED_IN] = 0
    # The index needs the hash before the policy has it; the policy overwrites it with the
    # same value on insert.
    layer._policy.hashes()[HASH_STRIDE * slot] = key_hash
    if vacant == NO_BUCKET or layer._index[vacant] != EMPTY:
        index_place(&layer._index[0], layer._index_mask, <int32_t>slot, key_hash)
    else:
        # The probe that found the key missing stopped here: no second walk over the run
        # (its length is random, so the walk's last branch is mispredicted half the time).
        index_place_at(&layer._index[0], layer._index_mask, <int32_t>slot, key_hash, vacant)
    layer._version += 1
    return slot


cdef inline int release_slot(InMemoryLayer layer, Py_ssize_t slot, int cause) except -1:
    """Take the slot out of the index and free it (the policy has forgotten it); a removal
    listener will hear of it, for ``cause`` (removals.pxd)."""
    if layer._removals.active:
        record_removal(&layer._removals, list_items(<PyObject*>layer._entries)[2 * slot],
                       list_items(<PyObject*>layer._entries)[2 * slot + 1], cause)
    if layer._fresh.count:
        layer._fresh.forget(slot)
    index_remove(&layer._index[0], layer._index_mask, layer._policy.hashes(), HASH_STRIDE,
                 <int32_t>slot)
    # The key and value are released when the operation ends (that may run Python code).
    replace_item(&layer._ownership, list_items(<PyObject*>layer._entries), 2 * slot, None,
                 <PyObject*>layer._grave_overflow)
    replace_item(&layer._ownership, list_items(<PyObject*>layer._entries), 2 * slot + 1, None,
                 <PyObject*>layer._grave_overflow)
    if layer._free_count == layer._free.shape[0]:
        grow_free(layer)
    layer._free[layer._free_count] = <int32_t>slot
    layer._free_count += 1
    layer._version += 1
    return 0


cdef inline int remove_slot(InMemoryLayer layer, Py_ssize_t slot, int cause) except -1:
    """Drop the entry in ``slot`` (a delete, an expiry, a write that cannot stay), counted
    as an expiration for ``cause`` EXPIRED. A held newcomer (``_policy_py.py``, section 6)
    was counted as evicted and rejected already: whatever removes it, it was rejected."""
    if slot == layer._policy.held:
        cause = REJECTED
    elif cause == EXPIRED:
        layer._expirations += 1
    layer._policy.on_remove(slot)
    if layer._wheel.scheduled:  # else nothing is scheduled: nothing to deschedule
        layer._wheel.deschedule(slot)
    return release_slot(layer, slot, cause)


cdef inline int drop_evicted(InMemoryLayer layer, Py_ssize_t count) except -1:
    """Free the ``count`` slots the policy just evicted (its ``_evicted`` buffer)."""
    cdef Py_ssize_t i, slot
    for i in range(count):
        slot = layer._policy._evicted[i]
        if layer._wheel.scheduled:
            layer._wheel.deschedule(slot)
        release_slot(layer, slot, eviction_cause(layer, slot) if layer._removals.active else 0)
    return 0


cdef inline int eviction_cause(InMemoryLayer layer, Py_ssize_t slot) noexcept:
    """REJECTED if admission turned ``slot`` away in the policy's last balance, else EVICTED
    (its ``_rejected`` buffer: usually empty or one slot)."""
    cdef Py_ssize_t i
    for i in range(layer._policy._rejected_count):
        if layer._policy._rejected[i] == slot:
            return REJECTED
    return EVICTED


cdef inline int reclaim_expired(InMemoryLayer layer, int64_t now_ns) except -1:
    """Free every slot whose deadline is at or before ``now_ns`` (the timer wheel's)."""
    cdef Py_ssize_t count = layer._wheel.advance(now_ns)
    cdef Py_ssize_t i, slot
    cdef int cause
    for i in range(count):
        slot = layer._wheel._expired[i]
        cause = EXPIRED
        if slot == layer._policy.held:
            cause = REJECTED  # (see remove_slot)
        else:
            layer._expirations += 1
        layer._policy.on_remove(slot)
        release_slot(layer, slot, cause)
    return 0


cdef inline bint expire_if_due(InMemoryLayer layer, Py_ssize_t slot) except -1:
    """Remove the entry if its deadline has passed."""
    if not layer._is_expired(slot):
        return False
    remove_slot(layer, slot, EXPIRED)
    return True


cdef inline void record_hit(InMemoryLayer layer, Py_ssize_t slot, uint64_t key_hash) noexcept:
    # Frequency first: recording a key already known to be saturated in this epoch is a
    # no-op (see WTinyLfuPolicy.record_access), so skip it; hot keys are hit most.
    cdef uint32_t* meta = slot_record(layer, slot)
    if meta[SATURATED_IN] != layer._policy.epoch and layer._policy.count_access(key_hash):
        meta[SATURATED_IN] = layer._policy.epoch
    layer._hits += 1
    if meta[HITS] & MAX_HITS != MAX_HITS:
        meta[HITS] += 1  # (never into PLAIN_INT)
    layer._policy.touch(slot)


cdef inline void prefetch_evictees(InMemoryLayer layer) noexcept:
    """Start loading what the insert that usually follows a miss reads about the two entries
    that may leave, the admission candidate and main's victim: their index buckets and
    sketch blocks are cold by then (an entry is evicted long after anything last touched
    it), and the insert would wait for each in turn. (Their nodes, which hold the hashes,
    were asked for after the last insert: ``prefetch_next_evictees``.)"""
    prefetch_index_and_counters(layer, layer._policy.admission_candidate())
    prefetch_index_and_counters(layer, layer._policy.main_victim())


cdef inline void prefetch_next_evictees(InMemoryLayer layer) noexcept:
    """After an insert: start loading the nodes and keys of the next admission candidate
    and main's next victim, so that ``prefetch_evictees`` finds their hashes at hand at the
    next miss, and the insert after it finds the key it may release (its reference count is
    read, and the key object itself is far: a key was last touched long before it leaves)."""
    prefetch_node_and_key(layer, layer._policy.admission_candidate())
    prefetch_node_and_key(layer, layer._policy.main_victim())


cdef inline void prefetch_node_and_key(InMemoryLayer layer, Py_ssize_t slot) noexcept:
    if slot < 0:
        return  # that list is empty
    prefetch(&layer._policy._nodes[NODE_FIELDS * (HEADS + slot)])
    prefetch(list_items(<PyObject*>layer._entries)[2 * slot])


cdef inline void prefetch_index_and_counters(InMemoryLayer layer, Py_ssize_t slot) noexcept:
    if slot < 0:
        return  # that list is empty
    cdef uint64_t key_hash = layer._policy.hash_of(slot)
    prefetch(&layer._index[key_hash & layer._index_mask])
    prefetch(sketch_block(layer._policy._sketch_words, layer._policy._sketch_mask, key_hash))


cdef inline void replace_none(PyObject** items, Py_ssize_t index, object item) noexcept:
    # ``items[index]`` (a list's ``list_items``) is None: dropping the list's reference to it
    # runs no Python code.
    cdef PyObject* old = items[index]
    Py_INCREF(item)
    items[index] = <PyObject*>item
    Py_DECREF(<object>old)
