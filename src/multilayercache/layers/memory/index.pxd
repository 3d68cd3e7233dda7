# The compiled layer's index: an open-addressing table (linear probing, load <= 1/2,
# backward-shift deletion, so no tombstones) of int32 slot numbers, probed from the key's
# spread hash. The hashes themselves live in the policy's per-slot array (one copy for
# both), so these functions take it as ``hashes``. Looking a key up (which may run a key's
# __eq__) stays in the layer, which knows how to stay consistent meanwhile.
from libc.stdint cimport int32_t, uint64_t

cdef enum:
    EMPTY = -1
    MIN_INDEX = 16  # buckets of a new table


cdef inline void index_place(int32_t* index, uint64_t mask, int32_t slot,
                             uint64_t key_hash) noexcept nogil:
    """Put ``slot`` in the first empty bucket of its probe run."""
    cdef uint64_t bucket = key_hash & mask
    while index[bucket] != EMPTY:
        bucket = (bucket + 1) & mask
    index[bucket] = slot


cdef inline void index_remove(int32_t* index, uint64_t mask, const uint64_t* hashes,
                              int32_t slot) noexcept nogil:
    """Take ``slot`` out, pulling later entries of its probe run into the hole."""
    cdef uint64_t hole = hashes[slot] & mask
    cdef uint64_t probe, home
    cdef int32_t moved
    while index[hole] != slot:
        hole = (hole + 1) & mask
    probe = hole
    while True:
        probe = (probe + 1) & mask
        moved = index[probe]
        if moved == EMPTY:
            break
        home = hashes[moved] & mask
        # Move ``moved`` into the hole unless its home lies cyclically in (hole, probe].
        if ((probe - home) & mask) >= ((probe - hole) & mask):
            index[hole] = moved
            hole = probe
    index[hole] = EMPTY
