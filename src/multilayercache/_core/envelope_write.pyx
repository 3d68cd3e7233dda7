"""The common write into a shared layer, encoded in one step (compiled twin of
``_envelope_write_py.py``, which says what a write must be to take this path and why the
result is the general path's, byte for byte).

The stored bytes are allocated once, at their final size, and the header is written into
them field by field (big-endian, as ``struct`` packs it), then the msgspec bytes behind it.
The MessagePack walk is ``msgpack_bounds``' own ``_count``. The key check is a table CRC-32
(zlib's polynomial) of the key's UTF-8 bytes (the ones CPython caches on the ``str``),
continued from the prefix's, which is hashed once.
"""

from cpython.object cimport PyObject
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport fabs
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

from .crc32 cimport crc32_fill, crc32_update
from .msgpack_bounds cimport _count

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

cdef extern from "float.h":
    const double FLT_MAX

cdef extern from *:
    """
    /* A tuple of the subclass ``cls`` (no fields of its own: checked in __init__) holding
       ``items``: what tuple.__new__(cls, items) makes, without the temporary tuple. */
    static PyObject* mlc_tuple_of(PyObject* cls, PyObject** items, Py_ssize_t size) {
        PyTypeObject* type = (PyTypeObject*)cls;
        PyObject* made = type->tp_alloc(type, size);
        Py_ssize_t i;
        if (made == NULL) return NULL;
        for (i = 0; i < size; i++) {
            Py_INCREF(items[i]);
            PyTuple_SET_ITEM(made, i, items[i]);
        }
        return made;
    }
    """
    object mlc_tuple_of(object cls, PyObject** items, Py_ssize_t size)

cdef enum:
    _HEADER = 50  # the format 3 header without tags (49 bytes), then MessagePack's tag
    _FIRST_BYTE = 0x98
    _FORMAT_VERSION = 3
    _MSGPACK_TAG = 0x01

cdef int64_t _NEVER = -1
cdef object _FALSE = False  # (as an object: a bare False is a C 0 here)
cdef int64_t _EXACT = 2**53  # sums below this are exact doubles: / 1000 rounds as Python's

crc32_fill()


cdef inline unsigned char* _put(unsigned char* at, uint64_t value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        at[i] = value & 0xFF
        value >>= 8
    return at + width


cdef inline bint _deadline(int64_t now, object delta, int64_t* at) except -1:
    """``at``: ``now + delta`` (``delta`` ``None``: never); 0 when it leaves int64."""
    if delta is None:
        at[0] = _NEVER
        return 1
    if type(delta) is not int:
        return 0
    cdef int64_t ms
    try:
        ms = delta
    except OverflowError:
        return 0
    if (ms > 0 and now > INT64_MAX - ms) or (ms < 0 and now < INT64_MIN - ms):
        return 0
    at[0] = now + ms
    return 1


cdef class WriteEncoder:
    """Encodes the common writes of one Redis layer (see the pure twin)."""

    cdef readonly object packed_write
    cdef readonly str prefix
    cdef readonly object encode
    cdef readonly Py_ssize_t max_depth
    cdef readonly Py_ssize_t max_items
    cdef uint32_t _prefix_crc

    def __init__(
        self,
        packed_write,
        str prefix not None,
        encode,
        Py_ssize_t max_depth,
        Py_ssize_t max_items,
    ):
        if not (
            isinstance(packed_write, type)
            and issubclass(packed_write, tuple)
            and packed_write.__basicsize__ == tuple.__basicsize__
            and packed_write.__itemsize__ == tuple.__itemsize__
        ):
            raise TypeError(f"packed_write must be a named tuple class, got {packed_write!r}")
        self.packed_write = packed_write
        self.prefix = prefix
        self.encode = encode
        self.max_depth = max_depth
        self.max_items = max_items
        cdef bytes encoded = prefix.encode()
        self._prefix_crc = crc32_update(
            0xFFFFFFFF, <const unsigned char*>PyBytes_AS_STRING(encoded), len(encoded)
        )

    def write(self, key, value, now_ms, load_seconds, deltas, milliseconds):
        """The ``PackedWrite`` of ``value`` under ``key``, or ``None`` for the general path
        (see the pure twin)."""
        if type(key) is not str or type(load_seconds) is not float or type(now_ms) is not int:
            return None
        cdef Py_ssize_t key_size
        cdef const char* key_bytes
        cdef object encoded
        try:
            key_bytes = PyUnicode_AsUTF8AndSize(key, &key_size)
            encoded = self.encode(value)
            if type(encoded) is not bytes:
                return None
            _count(
                <const unsigned char*>PyBytes_AS_STRING(encoded),
                PyBytes_GET_SIZE(encoded), 0, self.max_depth, self.max_items,
            )
        except Exception:  # the general path raises the error the caller must see
            return None
        cdef uint32_t check = crc32_update(
            self._prefix_crc, <const unsigned char*>key_bytes, key_size
        ) ^ 0xFFFFFFFF
        cdef int64_t now, refresh_at, stale_at, gone_at
        try:
            now = now_ms
        except OverflowError:
            return None
        refresh, stale, gone = deltas
        if not (
            _deadline(now, refresh, &refresh_at)
            and _deadline(now, stale, &stale_at)
            and _deadline(now, gone, &gone_at)
        ):
            return None
        cdef double load = load_seconds
        if not fabs(load) <= FLT_MAX:  # NaN, or beyond float32: left to struct
            return None
        cdef float load32 = <float>load
        cdef uint32_t load_bits
        memcpy(&load_bits, &load32, 4)

        cdef Py_ssize_t size = PyBytes_GET_SIZE(encoded)
        cdef bytes data = PyBytes_FromStringAndSize(NULL, _HEADER + size)
        cdef unsigned char* at = <unsigned char*>PyBytes_AS_STRING(data)
        at[0] = _FIRST_BYTE
        at[1] = _FORMAT_VERSION
        at[2] = 0xD3
        at = _put(at + 3, <uint64_t>now, 8)
        at[0] = 0xD3
        at = _put(at + 1, <uint64_t>refresh_at, 8)
        at[0] = 0xD3
        at = _put(at + 1, <uint64_t>stale_at, 8)
        at[0] = 0xD3
        at = _put(at + 1, <uint64_t>gone_at, 8)
        at[0] = 0xCA
        at = _put(at + 1, load_bits, 4)
        at[0] = 0xCE
        at = _put(at + 1, check, 4)
        at[0] = 0x90
        at[1] = _MSGPACK_TAG
        memcpy(at + 2, PyBytes_AS_STRING(encoded), size)

        cdef int64_t expiry
        expires_at = None
        if milliseconds is not None:
            try:
                expiry = milliseconds
            except OverflowError:
                expiry = _EXACT
            if -_EXACT < expiry < _EXACT and -_EXACT < now + expiry < _EXACT:
                expires_at = <double>(now + expiry) / 1000.0
            else:
                expires_at = (now_ms + milliseconds) / 1000
        redis_key = self.prefix + key
        cdef PyObject* fields[6]
        fields[0] = <PyObject*>redis_key
        fields[1] = <PyObject*>data
        fields[2] = <PyObject*>milliseconds
        fields[3] = <PyObject*>expires_at
        fields[4] = <PyObject*>now_ms
        fields[5] = <PyObject*>_FALSE
        return mlc_tuple_of(self.packed_write, fields, 6)
