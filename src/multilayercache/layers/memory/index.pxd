# The compiled layer's index: an open-addressing table (linear probing, load <= 1/4,
# backward-shift deletion, so no tombstones) of int32 buckets, probed from the key's spread
# hash. The hashes themselves live in the policy's nodes (one copy for both, in the line
# that a hit or an eviction reads anyway), so these functions take them as ``hashes``,
# slot ``s``'s at ``hashes[stride * s]``. Looking a key up (which may run a key's __eq__)
# stays in the layer, which knows how to stay consistent meanwhile.
#
# The load stays low because a probe's length is random and each step of it is a branch
# the processor guesses wrong about as often as there is one: at 1/4 rather than 1/2, a
# miss finds an empty bucket at once three times in four instead of twice in three, and a
# deletion pulls fewer entries back. That costs memory: 16 to 32 bytes of index per entry
# instead of 8 to 16 (beside the 32-byte node and the 16 of the entries list; at 500,000
# entries the layer's RSS grew from 96 to 112 bytes per entry; docs/memory.md accounts for
# today's 81). (Mixed zipf replay vs cachebox, medians of 8 alternated runs: 1.190x at 1/2,
# 1.139x at 1/4.)
#
# A bucket is EMPTY or a slot number with hash facts above it. With 2**k buckets and load
# <= 1/4, every slot is below 2**(k - 2) (slots are reused, so there are never more than the
# entries ever held at once), so ``slot_mask`` = 2**(k - 2) - 1 (the table's mask shifted
# right by two) covers the slot, and the bits above it, up to the sign bit, are free:
#
# * the next DISPLACEMENT_BITS hold the entry's distance from its home bucket, saturated at
#   the field's maximum: deleting pulls later entries of a probe run back into the hole,
#   and whether one may move depends on its home; with the distance at hand, the deletion
#   need not read the hash of every entry it passes (each one a cold cache line). A
#   saturated distance (a run that long is rare) is recomputed from the hash.
# * the rest hold the key's *tag*, its top hash bits: a probe passes over a bucket whose tag
#   differs without reading the hash or the key, so on a miss most probes touch the index
#   alone.
#
# Both fields are kept in units of ``slot_mask + 1`` (where they start), so no shift count
# is needed. The tags shrink by a bit each time the table doubles; in the largest tables
# none are left (every probe compares hashes, as before tags) and then the distance field
# shrinks too, down to none (every deletion reads hashes).
from libc.stdint cimport int32_t, uint32_t, uint64_t

cdef enum:
    EMPTY = -1
    MIN_INDEX = 16  # buckets of a new table
    DISPLACEMENT_BITS = 4

cdef extern from *:
    """
    #define MLC_NO_BUCKET 0xFFFFFFFFFFFFFFFFULL
    """
    const uint64_t NO_BUCKET "MLC_NO_BUCKET"  # no bucket known


cdef inline uint32_t slot_mask_of(uint64_t mask) noexcept nogil:
    """The bits a slot may use in a table whose bucket mask is ``mask``."""
    return <uint32_t>(mask >> 2)


cdef inline uint32_t displacement_mask_of(uint32_t slot_mask) noexcept nogil:
    """The bits of the distance field (all set: saturated)."""
    return (((1 << DISPLACEMENT_BITS) - 1) * (slot_mask + 1)) & 0x7FFFFFFF


cdef inline uint32_t tag_mask_of(uint32_t slot_mask) noexcept nogil:
    """The bits of the tag: the rest below the sign bit."""
    return ~(slot_mask | displacement_mask_of(slot_mask)) & 0x7FFFFFFF


cdef inline uint32_t index_tag(uint64_t key_hash, uint32_t slot_mask) noexcept nogil:
    """The key's tag, in the bucket's tag bits (never the sign bit, so a tagged slot is
    never EMPTY). The low hash bits chose the bucket; these are independent of them."""
    return <uint32_t>(key_hash >> 33) & tag_mask_of(slot_mask)


cdef inline void index_place(int32_t* index, uint64_t mask, int32_t slot,
                             uint64_t key_hash) noexcept nogil:
    """Put ``slot`` in the first empty bucket of its probe run."""
    cdef uint64_t bucket = key_hash & mask
    while index[bucket] != EMPTY:
        bucket = (bucket + 1) & mask
    index_place_at(index, mask, slot, key_hash, bucket)


cdef inline void index_place_at(int32_t* index, uint64_t mask, int32_t slot,
                                uint64_t key_hash, uint64_t bucket) noexcept nogil:
    """Put ``slot`` in ``bucket``: the first empty bucket of its probe run."""
    cdef uint32_t slot_mask = slot_mask_of(mask)
    cdef uint64_t distance = ((bucket - key_hash) & mask) * (slot_mask + 1)
    index[bucket] = <int32_t>(index_tag(key_hash, slot_mask)
                              | min(distance, <uint64_t>displacement_mask_of(slot_mask))
                              | <uint32_t>slot)


cdef inline void index_remove(int32_t* index, uint64_t mask, const uint64_t* hashes,
                              Py_ssize_t stride, int32_t slot) noexcept nogil:
    """Take ``slot`` out, pulling later entries of its probe run into the hole."""
    cdef uint32_t slot_mask = slot_mask_of(mask)
    cdef uint32_t field = displacement_mask_of(slot_mask)
    cdef uint64_t unit = slot_mask + 1
    cdef uint64_t hole = hashes[stride * slot] & mask
    cdef uint64_t probe, gap, distance
    cdef uint32_t moved
    while (<uint32_t>index[hole] & slot_mask) != <uint32_t>slot:
        hole = (hole + 1) & mask
    probe = hole
    while True:
        probe = (probe + 1) & mask
        if index[probe] == EMPTY:
            break
        moved = <uint32_t>index[probe]
        # Its distance from home, in field units; read from its hash only if saturated.
        distance = moved & field
        if distance == field:
            distance = ((probe - hashes[stride * (moved & slot_mask)]) & mask) * unit
        gap = ((probe - hole) & mask) * unit
        # Move it into the hole unless its home lies cyclically in (hole, probe].
        if distance >= gap:
            index[hole] = <int32_t>((moved & ~field) | min(distance - gap, <uint64_t>field))
            hole = probe
    index[hole] = EMPTY
