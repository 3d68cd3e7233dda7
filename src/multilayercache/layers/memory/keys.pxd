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
from cpython.long cimport PyLong_CheckExact
from libc.stdint cimport int64_t, uint64_t

from ..._core.bits cimport spread

cdef extern from *:
    """
    /* PyObject_Hash, with the layer's wording for an unhashable key (as
       arguments.unhashable_key words it for the pure twin). Out of line: keeping the
       error path out of key_hash lets the compiler inline key_hash into every caller. */
    #if defined(_MSC_VER)
    #define MLC_NOINLINE __declspec(noinline)
    #else
    #define MLC_NOINLINE __attribute__((noinline))
    #endif
    static MLC_NOINLINE Py_hash_t mlc_hash_slowly(PyObject* key) {
        Py_hash_t h = PyObject_Hash(key);
        PyObject* name;
        if (h == -1 && PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            name = PyType_GetName(Py_TYPE(key));
            if (name != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "cache keys must be hashable, got unhashable %R", name);
                Py_DECREF(name);
            }
        }
        return h;
    }
    """
    Py_hash_t hash_slowly "mlc_hash_slowly"(object key) except -1

cdef extern from *:
    """
    /* An exact int of one machine digit, read in place: 1 and its value in *value, else 0
       (the layout differs from 3.12 on). */
    static inline int mlc_compact_int(PyObject* op, int64_t* value) {
    #if PY_VERSION_HEX >= 0x030C0000
        if (!PyUnstable_Long_IsCompact((PyLongObject*)op)) return 0;
        *value = (int64_t)PyUnstable_Long_CompactValue((PyLongObject*)op);
    #else
        Py_ssize_t size = Py_SIZE(op);
        if (size < -1 || size > 1) return 0;
        *value = (int64_t)size * (int64_t)((PyLongObject*)op)->ob_digit[0];
    #endif
        return 1;
    }

    /* The value of an exact int, if it fits in int64 (*fits = 0 otherwise); beyond one
       digit through the C API, which cannot fail for an exact int. */
    static inline int64_t mlc_int_value(PyObject* op, int* fits) {
        int overflow = 0;
        int64_t value;
        if (mlc_compact_int(op, &value)) { *fits = 1; return value; }
        value = (int64_t)PyLong_AsLongLongAndOverflow(op, &overflow);
        *fits = !overflow;
        return value;
    }

    /* Python's hash of the two commonest key types, read in place rather than through
       PyObject_Hash's call into the type: an exact str's cached hash (-1 until first
       computed), an exact one-digit int's value (-1 hashes to -2). -1 for anything else:
       the caller then asks PyObject_Hash. */
    static inline Py_hash_t mlc_quick_hash(PyObject* op) {
        int64_t value;
    #if PY_VERSION_HEX < 0x030E0000
        if (PyUnicode_CheckExact(op)) return ((PyASCIIObject*)op)->hash;
    #endif
        if (!PyLong_CheckExact(op) || !mlc_compact_int(op, &value)) return -1;
        return value == -1 ? -2 : (Py_hash_t)value;
    }

    #define MLC_HASH_MODULUS ((int64_t)2305843009213693951LL)
    """
    int64_t int_value "mlc_int_value"(object op, int* fits) noexcept
    Py_hash_t quick_hash "mlc_quick_hash"(object op) noexcept
    # 2**61 - 1: ``sys.hash_info.modulus`` on 64-bit CPython, which this layer requires
    const int64_t HASH_MODULUS "MLC_HASH_MODULUS"


cdef inline bint is_plain_int(object key) noexcept:
    """Whether ``key`` is an exact int whose hash is its value. Python hashes an int ``n``
    with ``|n| < 2**61 - 1`` to ``n`` itself, but -1 to -2; beyond that, modulo 2**61 - 1
    (64-bit CPython, ``sys.hash_info.modulus``)."""
    cdef int fits = 0
    cdef int64_t value
    if not PyLong_CheckExact(key):
        return False
    value = int_value(key, &fits)
    return fits and -HASH_MODULUS < value < HASH_MODULUS and value != -1


cdef inline uint64_t key_hash(object key) except? 0:
    """The key's spread hash (``bits.pxd``); the layer's error for an unhashable key."""
    cdef Py_hash_t h = quick_hash(key)
    if h == -1:
        h = hash_slowly(key)
    return spread(<uint64_t>h)
