"""A write-behind batch packed into the arguments of one script call (compiled twin of
``_write_batch_py.py``, which says what is packed and why).

Two passes over the writes: the first checks them and sums the sizes, the second copies
keys and values into byte strings allocated once, and writes the lengths and deadlines
little-endian byte by byte (the script reads them so whatever this machine's order). The
fields are read by position from ``PackedWrite``, a named tuple: a batch of any other type
goes to the pure twin.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, uint64_t
from libc.string cimport memchr, memcpy

from . import _write_batch_py

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

NO_EXPIRY = 0.0
DELETE = -1

cdef double _NO_EXPIRY = 0.0
cdef int32_t _DELETE = -1
cdef tuple _FIELDS = (
    "redis_key", "data", "milliseconds", "expires_at", "written_ms", "only_if_newer"
)


cdef inline void _put_int32(char* at, int32_t value) noexcept:
    cdef unsigned int bits = <unsigned int>value
    at[0] = <char>(bits & 0xFF)
    at[1] = <char>((bits >> 8) & 0xFF)
    at[2] = <char>((bits >> 16) & 0xFF)
    at[3] = <char>((bits >> 24) & 0xFF)


cdef inline void _put_double(char* at, double value) noexcept:
    cdef uint64_t bits
    memcpy(&bits, &value, 8)
    cdef int shift
    for shift in range(8):
        at[shift] = <char>((bits >> (8 * shift)) & 0xFF)


def pack_writes(list writes, double now):
    cdef Py_ssize_t count = len(writes), i, key_size, keys_size = 0, values_size = 0
    cdef const char* key_bytes
    cdef tuple write
    cdef object data
    if not count or getattr(type(writes[0]), "_fields", ())[:6] != _FIELDS:
        return _write_batch_py.pack_writes(writes, now)
    cls = type(writes[0])
    sets = 0
    for i in range(count):
        if type(writes[i]) is not cls:
            return _write_batch_py.pack_writes(writes, now)
        write = <tuple>writes[i]
        if write[5]:  # only_if_newer
            return None
        key_bytes = PyUnicode_AsUTF8AndSize(write[0], &key_size)
        if memchr(key_bytes, 0, key_size) != NULL:
            return None
        keys_size += key_size + 1
        data = write[1]
        if data is not None:
            values_size += PyBytes_GET_SIZE(<bytes?>data)
            sets += 1
    keys = PyBytes_FromStringAndSize(NULL, keys_size)
    values = PyBytes_FromStringAndSize(NULL, values_size)
    value_lengths = PyBytes_FromStringAndSize(NULL, 4 * count)
    deadlines = PyBytes_FromStringAndSize(NULL, 8 * count)
    cdef char* key_at = PyBytes_AS_STRING(keys)
    cdef char* value_at = PyBytes_AS_STRING(values)
    cdef char* length_at = PyBytes_AS_STRING(value_lengths)
    cdef char* deadline_at = PyBytes_AS_STRING(deadlines)
    cdef Py_ssize_t value_size
    cdef double deadline
    for i in range(count):
        write = <tuple>writes[i]
        key_bytes = PyUnicode_AsUTF8AndSize(write[0], &key_size)
        memcpy(key_at, key_bytes, key_size)
        key_at[key_size] = 0
        key_at += key_size + 1
        data = write[1]
        if data is None:
            _put_int32(length_at, _DELETE)
            deadline = _NO_EXPIRY
        else:
            value_size = PyBytes_GET_SIZE(data)
            memcpy(value_at, PyBytes_AS_STRING(data), value_size)
            value_at += value_size
            _put_int32(length_at, <int32_t>value_size)
            if write[3] is not None:
                deadline = write[3]
            elif write[2] is not None:  # a lifetime without a deadline: from now
                deadline = now + write[2] / 1000
            else:
                deadline = _NO_EXPIRY
        _put_double(deadline_at, deadline)
        length_at += 4
        deadline_at += 8
    return keys, values, value_lengths, deadlines, sets
