# Keys of the compiled layer: their spread hash, and which ones compare equal without
# reading the stored key.
#
# A hit on a key that is equal but not identical to the stored one (ints and strings built
# per request) must compare the two, and ``__eq__`` reads the stored key object, which sits
# on its own cache line and is cold for all but the hottest entries: on a replay of a
# million distinct int objects, that one load was ~15 ns of every hit. For exact ints that
# Python hashes to their own value (|n| < 2**61 - 1 on 64-bit CPython, -1 excepted: it
# hashes to -2), the hash is the value, so equal hashes mean equal keys. The layer flags
# such keys when it stores them and then answers from the hashes alone.
from cpython.exc cimport PyErr_Clear, PyErr_ExceptionMatches
from cpython.long cimport PyLong_CheckExact
from libc.stdint cimport int64_t, uint64_t

from ..._core.bits cimport spread

cdef extern from "Python.h":
    # Declared without an exception value, so that key_hash can word the error itself.
    Py_hash_t hash_or_minus_one "PyObject_Hash"(object key)

cdef extern from *:
    """
    /* The value of an exact int, if it fits in int64 (*fits = 0 otherwise). Small ints are
       read in place (one machine digit); others go through the C API, which cannot fail
       for an exact int. */
    static inline int64_t mlc_int_value(PyObject* op, int* fits) {
        int overflow = 0;
        long long value;
    #if PY_VERSION_HEX >= 0x030C0000
        if (PyUnstable_Long_IsCompact((PyLongObject*)op)) {
            *fits = 1;
            return (int64_t)PyUnstable_Long_CompactValue((PyLongObject*)op);
        }
    #else
        Py_ssize_t size = Py_SIZE(op);
        if (size == 0) { *fits = 1; return 0; }
        if (size == 1 || size == -1) {
            *fits = 1;
            return (int64_t)size * (int64_t)((PyLongObject*)op)->ob_digit[0];
        }
    #endif
        value = PyLong_AsLongLongAndOverflow(op, &overflow);
        *fits = !overflow;
        return (int64_t)value;
    }
    """
    int64_t int_value "mlc_int_value"(object op, int* fits) noexcept


cdef inline bint is_plain_int(object key, uint64_t key_hash) noexcept:
    """Whether ``key`` is an exact int whose hash is its value (``key_hash`` is its spread
    hash)."""
    cdef int fits = 0
    cdef int64_t value
    if not PyLong_CheckExact(key):
        return False
    value = int_value(key, &fits)
    # spread is a bijection: equal spread hashes mean value == hash(key).
    return fits and spread(<uint64_t>value) == key_hash


cdef inline uint64_t key_hash(object key) except? 0:
    """The key's spread hash (``bits.pxd``); the layer's error for an unhashable key."""
    cdef Py_hash_t h = hash_or_minus_one(key)
    if h == -1:
        raise_hash_error(key)
    return spread(<uint64_t>h)


cdef inline int raise_hash_error(object key) except -1:
    # -1 is never a valid hash: an exception is pending. Reword "unhashable" ones.
    if PyErr_ExceptionMatches(TypeError):
        PyErr_Clear()
        from multilayercache.layers.memory.arguments import unhashable_key

        raise unhashable_key(key)
    return -1
