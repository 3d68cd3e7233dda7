cimport cython
from libc.stdint cimport uint64_t

from .bits cimport GOLDEN64

cpdef enum:
    DEPTH = 4  # (the inline functions below are written out for exactly four rows)
    MAX_COUNT = 15
    WORDS_PER_BLOCK = 8
    MIN_WORDS = 64
    SAMPLE_MULTIPLIER = 10

# The hot operations are inline functions over the raw table (pointer and mask) so that the
# policy, which cimports this file and caches both, compiles them into its own code: no call,
# no reference counting on a cache hit.


@cython.final
cdef class CountMinSketch:
    cdef uint64_t[::1] _table
    cdef uint64_t* words
    cdef uint64_t block_mask
    cdef readonly Py_ssize_t sample_size
    cdef public Py_ssize_t additions

    cpdef void reset(self) noexcept


# Row i of the sketch uses words 2i and 2i + 1 of the key's block; byte i of the counter
# hash picks the word (bit 0) and the nibble in it (bits 1-4). Rows never share a word.

cdef inline uint64_t* sketch_block(uint64_t* words, uint64_t block_mask,
                                   uint64_t key_hash) noexcept nogil:
    """The key's block: its WORDS_PER_BLOCK words, one cache line."""
    return words + (key_hash & block_mask) * WORDS_PER_BLOCK


cdef inline int _nibble(uint64_t word, unsigned shift) noexcept nogil:
    return <int>((word >> shift) & MAX_COUNT)


cdef inline int sketch_frequency(uint64_t* words, uint64_t block_mask, uint64_t key_hash) noexcept:
    cdef uint64_t* block = sketch_block(words, block_mask, key_hash)
    cdef uint64_t c = (key_hash * GOLDEN64) >> 32
    cdef int v0 = _nibble(block[c & 1], ((c >> 1) & 15) << 2)
    cdef int v1 = _nibble(block[2 + ((c >> 8) & 1)], ((c >> 9) & 15) << 2)
    cdef int v2 = _nibble(block[4 + ((c >> 16) & 1)], ((c >> 17) & 15) << 2)
    cdef int v3 = _nibble(block[6 + ((c >> 24) & 1)], ((c >> 25) & 15) << 2)
    return min(min(v0, v1), min(v2, v3))


cdef inline bint sketch_add(uint64_t* words, uint64_t block_mask, uint64_t key_hash) noexcept:
    # Conservative update: bump only the counters that equal the current minimum. The caller
    # counts the addition (``additions``) when this returns True.
    cdef uint64_t* block = sketch_block(words, block_mask, key_hash)
    cdef uint64_t c = (key_hash * GOLDEN64) >> 32
    cdef uint64_t* w0 = block + (c & 1)
    cdef uint64_t* w1 = block + 2 + ((c >> 8) & 1)
    cdef uint64_t* w2 = block + 4 + ((c >> 16) & 1)
    cdef uint64_t* w3 = block + 6 + ((c >> 24) & 1)
    cdef unsigned s0 = ((c >> 1) & 15) << 2
    cdef unsigned s1 = ((c >> 9) & 15) << 2
    cdef unsigned s2 = ((c >> 17) & 15) << 2
    cdef unsigned s3 = ((c >> 25) & 15) << 2
    cdef int v0 = _nibble(w0[0], s0), v1 = _nibble(w1[0], s1)
    cdef int v2 = _nibble(w2[0], s2), v3 = _nibble(w3[0], s3)
    cdef int smallest = min(min(v0, v1), min(v2, v3))
    if smallest == MAX_COUNT:
        return False
    w0[0] += (<uint64_t>(v0 == smallest)) << s0
    w1[0] += (<uint64_t>(v1 == smallest)) << s1
    w2[0] += (<uint64_t>(v2 == smallest)) << s2
    w3[0] += (<uint64_t>(v3 == smallest)) << s3
    return True
