# Bit helpers inlined into every compiled module; the pure twins use _bits_py.py.
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #define MLC_GOLDEN64 0x9E3779B97F4A7C15ULL
    #if defined(__GNUC__) || defined(__clang__)
    #define MLC_PREFETCH(address) __builtin_prefetch(address)
    #else
    #define MLC_PREFETCH(address) ((void)(address))
    #endif
    """
    uint64_t GOLDEN64 "MLC_GOLDEN64"
    # A hint to start loading the cache line at ``address``; never faults, changes nothing.
    void prefetch "MLC_PREFETCH"(const void* address) nogil


cdef inline uint64_t spread(uint64_t z) noexcept nogil:
    # splitmix64 finalizer: every output bit depends on every input bit.
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline Py_ssize_t next_power_of_two(Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t p = 1
    while p < n:
        p <<= 1
    return p
