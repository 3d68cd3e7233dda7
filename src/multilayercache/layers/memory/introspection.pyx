"""What the compiled ``InMemoryLayer`` reports about itself (compiled twin of
``_introspection_py.py``): a key's remaining TTL and frequency, the top keys, stats,
snapshots, and the structures behind it for tests. None of it is on the hot path; the layer's methods of the
same names call these. Each reads the layer under its ownership, as its own operations do.
"""

import numpy as np

from libc.stdint cimport int64_t, uint64_t

from ..._core.hotkeys cimport HotKeyTable
from ..._core.policy cimport HASH, HEADS, NODE_FIELDS, NOT_CACHED, OWNER, REGION, WTinyLfuPolicy
from .index cimport EMPTY
from .keys cimport key_hash
from .layer cimport InMemoryLayer
from .slots cimport HITS, MAX_HITS, find_slot, slot_record

from .arguments import checked_top_n
from .introspection_shared import AccessCounts, layer_snapshot, layer_stats


def remaining_ttl(InMemoryLayer layer, key):
    """``InMemoryLayer.remaining_ttl``: seconds the entry stays fresh, or None."""
    cdef uint64_t hashed = key_hash(key)
    cdef int64_t now_ns = layer._now_ns()
    cdef Py_ssize_t slot
    layer._lock_for_write()
    try:
        slot = find_slot(layer, key, hashed, True)
        if slot < 0 or layer._is_expired(slot, now_ns):
            return None
        return layer._entry(slot, now_ns).fresh_for
    finally:
        layer._unlock()


def frequency_estimate(InMemoryLayer layer, key):
    """``InMemoryLayer.get_frequency_estimate``: estimated recent accesses (0..16)."""
    cdef uint64_t hashed = key_hash(key)
    layer._lock_for_write()
    try:
        return layer._policy.frequency(hashed)
    finally:
        layer._unlock()


def top_keys(InMemoryLayer layer, n):
    """``InMemoryLayer.get_top_keys``: the ``n`` hottest live keys with their estimates."""
    checked_top_n(n)
    cdef int64_t now_ns = layer._now_ns()
    cdef WTinyLfuPolicy policy = layer._policy
    layer._lock_for_write()
    try:
        ranked = [
            (layer._entries[2 * slot], policy.frequency(policy.hash_of(slot)))
            for slot in cached_slots(layer)
            if not layer._is_expired(slot, now_ns)
        ]
    finally:
        layer._unlock()
    ranked.sort(key=lambda pair: -pair[1])
    return ranked[:n]


def stats(InMemoryLayer layer):
    """``InMemoryLayer.stats``: the counters, read together."""
    cdef WTinyLfuPolicy policy = layer._policy
    layer._lock_for_write()
    try:
        counters = (layer._hits, layer._misses, policy.evictions, layer._expirations,
                    policy.rejections + layer._oversized + layer._crowded, policy.entries,
                    policy.total_weight, policy.window_max, layer._puts, policy.rejections)
    finally:
        layer._unlock()
    return layer_stats(layer, counters)


def snapshot(InMemoryLayer layer, hot_keys):
    """``InMemoryLayer.snapshot``: sketch table copy, hot keys' hits and misses, counters."""
    counted = stats(layer)
    cdef WTinyLfuPolicy policy = layer._policy
    layer._lock_for_write()
    try:
        cached = [
            (layer._entries[2 * slot], policy.hash_of(slot),
             slot_record(layer, slot)[HITS] & MAX_HITS)
            for slot in cached_slots(layer)
        ]
        return layer_snapshot(counted, policy, cached, layer._missed, hot_keys)
    finally:
        layer._unlock()


def access_counts(InMemoryLayer layer):
    """``InMemoryLayer.access_counts``: per-slot hashes and hits, per-bucket missed keys.
    The slots' hashes, regions and hits sit in the policy's nodes (32 bytes a slot): numpy
    copies the nodes once and picks the columns out afterwards, outside the ownership."""
    cdef WTinyLfuPolicy policy = layer._policy
    cdef HotKeyTable missed = layer._missed
    cdef Py_ssize_t slot_count
    layer._lock_for_write()
    try:
        slot_count = layer._slot_count
        nodes = np.array(
            np.asarray(policy._nodes)[NODE_FIELDS * HEADS:NODE_FIELDS * (HEADS + slot_count)]
        )
        missed_hashes, missed_counts, missed_scores = missed.columns()
    finally:
        layer._unlock()
    nodes = nodes.reshape(slot_count, NODE_FIELDS)
    cached = nodes[:, REGION] != NOT_CACHED
    slot_hashes = np.ascontiguousarray(nodes[:, HASH:HASH + 2]).view(np.uint64).reshape(-1)
    slot_hits = (nodes[:, OWNER].view(np.uint32) & MAX_HITS).astype(np.int64)
    return AccessCounts(
        np.where(cached, slot_hashes, 0).astype(np.uint64),
        np.where(cached, slot_hits, 0),
        missed_hashes,
        np.where(missed_scores > 0, missed_counts, 0),
    )


def keys_at(InMemoryLayer layer, slots):
    """``InMemoryLayer.keys_at``: the key held in each ``(slot, key_hash)``, or ``None``
    if the slot holds no key of that hash now."""
    cdef WTinyLfuPolicy policy = layer._policy
    cdef Py_ssize_t slot
    cdef uint64_t hashed
    found = []
    layer._lock_for_write()
    try:
        for slot, hashed in slots:
            held = (
                0 <= slot < layer._slot_count
                and policy.region_of(slot) != NOT_CACHED
                and policy.hash_of(slot) == hashed
            )
            found.append(layer._entries[2 * slot] if held else None)
    finally:
        layer._unlock()
    return found


def missed_keys_at(InMemoryLayer layer, buckets):
    """``InMemoryLayer.missed_keys_at``: the key that the missed-keys table tracks in each
    ``(bucket, key_hash)``, or ``None`` (another key, or one seen only once)."""
    cdef HotKeyTable missed = layer._missed
    cdef Py_ssize_t bucket
    cdef uint64_t hashed
    found = []
    layer._lock_for_write()
    try:
        for bucket, hashed in buckets:
            held = (
                0 <= bucket <= <Py_ssize_t>missed.bucket_mask
                and missed._records[bucket].score != 0
                and missed._records[bucket].key_hash == hashed
                and missed._records[bucket].count > 1
            )
            found.append(missed._keys[bucket] if held else None)
    finally:
        layer._unlock()
    return found


def internals(InMemoryLayer layer):
    """For tests: the structures behind the layer (see tests/invariants.py)."""
    cdef Py_ssize_t bucket
    return {
        "policy": layer._policy,
        "wheel": layer._wheel,
        "cached": [(slot, layer._entries[2 * slot]) for slot in cached_slots(layer)],
        "free": [layer._free[i] for i in range(layer._free_count)],
        "slot_count": layer._slot_count,
        "indexed": sum(
            1 for bucket in range(layer._index_mask + 1) if layer._index[bucket] != EMPTY
        ),
        "find": lambda key: find_slot(layer, key, key_hash(key), True),
    }


def held_keys(InMemoryLayer layer):
    """The keys the layer holds now (expired ones not yet reclaimed included)."""
    return [layer._entries[2 * slot] for slot in cached_slots(layer)]


def cached_slots(InMemoryLayer layer):
    """The slots that hold an entry, in slot order."""
    return [
        slot for slot in range(layer._slot_count)
        if layer._policy.region_of(slot) != NOT_CACHED
    ]
