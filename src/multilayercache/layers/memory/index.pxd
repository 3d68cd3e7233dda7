# The compiled layer's index: an open-addressing table (linear probing, load <= 1/2,
# backward-shift deletion, so no tombstones) of int32 buckets, probed from the key's spread
# hash. The hashes themselves live in the policy's nodes (one copy for both, in the line
# that a hit or an eviction reads anyway), so these functions take them as ``hashes``,
# slot ``s``'s at ``hashes[stride * s]``. Looking a key up (which may run a key's __eq__)
# stays in the layer, which knows how to stay consistent meanwhile.
#
# A bucket is EMPTY or a slot number *tagged* with hash bits. With 2**k buckets and load
# <= 1/2, every slot is below 2**(k - 1) (slots are reused, so there are never more than the
# entries ever held at once), so ``slot_mask`` = 2**(k - 1) - 1 (the table's mask shifted
# right by one) covers the slot and the bits above it, up to the sign bit, are free: they hold the key's top hash bits. A probe
# then passes over a bucket whose tag differs without reading the per-slot hash or the
# key: on a miss, most probes touch the index alone. (With the hot-key change of the same
# commit, a mixed zipf replay's first-level cache misses fell from 12.8 to 11.6 per
# operation, by cachegrind.) The tags shrink by a bit each time the table doubles; at worst
# (2**31 buckets) none are left and every probe compares hashes, as before tags.
from libc.stdint cimport int32_t, uint32_t, uint64_t

cdef enum:
    EMPTY = -1
    MIN_INDEX = 16  # buckets of a new table

cdef extern from *:
    """
    #define MLC_NO_BUCKET 0xFFFFFFFFFFFFFFFFULL
    """
    const uint64_t NO_BUCKET "MLC_NO_BUCKET"  # no bucket known


cdef inline uint32_t slot_mask_of(uint64_t mask) noexcept nogil:
    """The bits a slot may use in a table whose bucket mask is ``mask``."""
    return <uint32_t>(mask >> 1)


cdef inline uint32_t index_tag(uint64_t key_hash, uint32_t slot_mask) noexcept nogil:
    """The key's tag: its top hash bits, in bucket bits 31 - popcount(slot_mask) .. 30
    (never the sign bit, so a tagged slot is never EMPTY). The low hash bits chose the
    bucket; these are independent of them."""
    return <uint32_t>(key_hash >> 33) & ~slot_mask


cdef inline void index_place(int32_t* index, uint64_t mask, int32_t slot,
                             uint64_t key_hash) noexcept nogil:
    """Put ``slot``, tagged, in the first empty bucket of its probe run."""
    cdef uint64_t bucket = key_hash & mask
    while index[bucket] != EMPTY:
        bucket = (bucket + 1) & mask
    index_place_at(index, mask, slot, key_hash, bucket)


cdef inline void index_place_at(int32_t* index, uint64_t mask, int32_t slot,
                                uint64_t key_hash, uint64_t bucket) noexcept nogil:
    """Put ``slot``, tagged, in ``bucket``: the first empty bucket of its probe run."""
    index[bucket] = <int32_t>(index_tag(key_hash, slot_mask_of(mask)) | <uint32_t>slot)


cdef inline void index_remove(int32_t* index, uint64_t mask, const uint64_t* hashes,
                              Py_ssize_t stride, int32_t slot) noexcept nogil:
    """Take ``slot`` out, pulling later entries of its probe run into the hole."""
    cdef uint32_t slot_mask = slot_mask_of(mask)
    cdef uint64_t hole = hashes[stride * slot] & mask
    cdef uint64_t probe, home
    cdef int32_t moved
    while (<uint32_t>index[hole] & slot_mask) != <uint32_t>slot:
        hole = (hole + 1) & mask
    probe = hole
    while True:
        probe = (probe + 1) & mask
        moved = index[probe]
        if moved == EMPTY:
            break
        home = hashes[stride * (<uint32_t>moved & slot_mask)] & mask
        # Move ``moved`` into the hole unless its home lies cyclically in (hole, probe].
        if ((probe - home) & mask) >= ((probe - hole) & mask):
            index[hole] = moved
            hole = probe
    index[hole] = EMPTY
