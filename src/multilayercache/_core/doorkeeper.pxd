cimport cython
from libc.stdint cimport uint64_t

# Hot operations inline over the raw bit array (pointer and mask), compiled into the policy
# that cimports this file and caches both.


@cython.final
cdef class Doorkeeper:
    cdef uint64_t[::1] _words
    cdef uint64_t* words
    cdef readonly uint64_t bit_mask

    cpdef void clear(self) noexcept


cdef inline bint doorkeeper_contains(uint64_t* words, uint64_t bit_mask,
                                     uint64_t key_hash) noexcept:
    # Two probes from the two halves of the hash (Kirsch & Mitzenmacher), both in the
    # first one's word (blocked: one cache line; see the twin).
    cdef uint64_t high = key_hash >> 32, low = key_hash & 0xFFFFFFFFULL
    cdef uint64_t first = high & bit_mask
    cdef uint64_t second = (first & ~(<uint64_t>63)) | ((high + low) & 63)
    return ((words[first >> 6] >> (first & 63)) & 1
            and (words[second >> 6] >> (second & 63)) & 1)


cdef inline bint doorkeeper_add(uint64_t* words, uint64_t bit_mask, uint64_t key_hash) noexcept:
    """Set the key's bits; return whether both were set already."""
    cdef uint64_t high = key_hash >> 32, low = key_hash & 0xFFFFFFFFULL
    cdef uint64_t first = high & bit_mask
    cdef uint64_t second = (first & ~(<uint64_t>63)) | ((high + low) & 63)
    cdef uint64_t first_mask = (<uint64_t>1) << (first & 63)
    cdef uint64_t second_mask = (<uint64_t>1) << (second & 63)
    # ``&``, not ``and``: no branch on bits that are set at random.
    cdef bint present = (((words[first >> 6] & first_mask) != 0)
                         & ((words[second >> 6] & second_mask) != 0))
    words[first >> 6] |= first_mask
    words[second >> 6] |= second_mask
    return present
