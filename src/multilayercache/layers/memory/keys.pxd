# Keys of the compiled layer: which ones compare equal without reading the stored key.
#
# A hit on a key that is equal but not identical to the stored one (ints and strings built
# per request) must compare the two, and ``__eq__`` reads the stored key object, which sits
# on its own cache line and is cold for all but the hottest entries: on a replay of a
# million distinct int objects, that one load was ~15 ns of every hit. For exact ints that
# Python hashes to their own value (|n| < 2**61 - 1 on 64-bit CPython, -1 excepted: it
# hashes to -2), the hash is the value, so equal hashes mean equal keys. The layer flags
# such keys when it stores them and then answers from the hashes alone.
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from libc.stdint cimport uint64_t

from ..._core.bits cimport spread


cdef inline bint is_plain_int(object key, uint64_t key_hash) noexcept:
    """Whether ``key`` is an exact int whose hash is its value (``key_hash`` is its spread
    hash). Never raises: an exact int converts or overflows, with no error."""
    cdef int overflow = 0
    cdef long long value
    if not PyLong_CheckExact(key):
        return False
    value = PyLong_AsLongLongAndOverflow(key, &overflow)
    # spread is a bijection: equal spread hashes mean value == hash(key).
    return not overflow and spread(<uint64_t>value) == key_hash
