"""The common read from a shared layer, decoded in one pass (compiled twin of
``_envelope_batch_py.py``, which says what an item must be to take this path and why the
result is the general path's).

The header's fixed fields are read in place from the bytes Redis answered (no copy, no
Python object per field); the accepted items' headers wait in one C array while their
values are decoded together; the MessagePack walk is ``msgpack_bounds``' own ``_count``.
The key check is a table CRC-32 (zlib's polynomial): the key's UTF-8 bytes are the ones
CPython caches on the ``str``. An entry is allocated as ``tuple.__new__`` allocates it and
filled in place, without the tuple of its items that the call would build and copy.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from cpython.object cimport PyTypeObject
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

from .crc32 cimport crc32, crc32_fill
from .msgpack_bounds cimport _count

from ..core.errors import UntrustedDataError
from ..core.freshness import Entry

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    object PyType_GenericAlloc(PyTypeObject* type, Py_ssize_t items)

FORMAT_3_HEADER = 49
FORMAT_4_HEADER = 60
EXACT_MS = 2**53

cdef enum:
    _FORMAT_3_HEADER = 49
    _FORMAT_4_HEADER = 60
    _MSGPACK_TAG = 0x01

cdef int64_t _EXACT_MS = 2**53
cdef int64_t _NEVER = -1
cdef object _INF = float("inf")

crc32_fill()


cdef inline uint64_t _big_endian(const unsigned char* at, int width) noexcept:
    cdef uint64_t value = 0
    cdef int i
    for i in range(width):
        value = (value << 8) | at[i]
    return value


cdef struct Header:
    Py_ssize_t position  # in the batch
    Py_ssize_t start  # where the value starts: after the header and the tag byte
    int64_t written
    int64_t refresh
    int64_t stale
    int64_t gone
    double load
    int step
    bint stepped
    uint64_t digest


cdef inline bint _near(int64_t deadline, int64_t now_ms) noexcept:
    # now_ms is a clock's: far from int64's ends, so neither sum overflows
    return deadline == _NEVER or (now_ms - _EXACT_MS < deadline < now_ms + _EXACT_MS)


cdef int _read_header(
    object data,
    object redis_key,
    int64_t now_ms,
    Py_ssize_t max_value_bytes,
    Py_ssize_t max_depth,
    Py_ssize_t max_items,
    Header* header,
) except -1:
    """1 and ``header`` filled for an item of the common shape, else 0."""
    if type(data) is not bytes:
        return 0
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef const unsigned char* at = <const unsigned char*>PyBytes_AS_STRING(data)
    if size > max_value_bytes or size < 2:
        return 0
    cdef bint stepped
    if at[0] == 0x98 and at[1] == 3:
        stepped = False
    elif at[0] == 0x9A and at[1] == 4:
        stepped = True
    else:
        return 0
    cdef Py_ssize_t length = _FORMAT_4_HEADER if stepped else _FORMAT_3_HEADER
    if size <= length or at[length - 1] != 0x90 or at[length] != _MSGPACK_TAG:
        return 0
    if at[2] != 0xD3 or at[11] != 0xD3 or at[20] != 0xD3 or at[29] != 0xD3:
        return 0
    if at[38] != 0xCA or at[43] != 0xCE:
        return 0
    if stepped and (at[48] != 0xD0 or at[50] != 0xCF):
        return 0
    cdef Py_ssize_t key_size
    cdef const char* key_bytes
    try:
        key_bytes = PyUnicode_AsUTF8AndSize(redis_key, &key_size)
    except UnicodeEncodeError:
        return 0
    if <uint32_t>_big_endian(at + 44, 4) != crc32(<const unsigned char*>key_bytes, key_size):
        return 0
    header.written = <int64_t>_big_endian(at + 3, 8)
    header.refresh = <int64_t>_big_endian(at + 12, 8)
    header.stale = <int64_t>_big_endian(at + 21, 8)
    header.gone = <int64_t>_big_endian(at + 30, 8)
    if not (_near(header.refresh, now_ms) and _near(header.stale, now_ms)):
        return 0
    if not _near(header.gone, now_ms):
        return 0
    cdef uint32_t load_bits = <uint32_t>_big_endian(at + 39, 4)
    cdef float load
    memcpy(&load, &load_bits, 4)
    header.load = load
    header.stepped = stepped
    header.step = <signed char>at[49] if stepped else 0
    header.digest = _big_endian(at + 51, 8) if stepped else 0
    header.start = length + 1
    try:
        if _count(at, size, header.start, max_depth, max_items) != 1:
            return 0
    except UntrustedDataError:
        return 0
    return 1


cdef inline object _left(int64_t at_ms, int64_t now_ms):
    if at_ms == _NEVER:
        return _INF
    return <double>(at_ms - now_ms) / 1000.0


cdef inline void _put(object entry, Py_ssize_t i, object item) noexcept:
    Py_INCREF(item)  # PyTuple_SET_ITEM takes the reference over
    PyTuple_SET_ITEM(entry, i, item)


cdef object _entry(object value, Header* header, int64_t now_ms):
    # Filled in place: ``tuple.__new__(Entry, items)`` would build the items' tuple, then
    # copy it into the entry (a third of an entry's cost). Every item exists before the
    # entry does, so no collection ever sees it half filled.
    fresh_for = _left(header.stale, now_ms)
    gone_in = _left(header.gone, now_ms)
    refresh_in = _left(header.refresh, now_ms)
    load = header.load
    step = header.step
    written = header.written
    digest = header.digest if header.stepped else None
    # What tuple.__new__ allocates a subclass with (items NULL, filled below).
    entry = PyType_GenericAlloc(<PyTypeObject*>Entry, 9)
    _put(entry, 0, value)
    _put(entry, 1, fresh_for)
    _put(entry, 2, gone_in)
    _put(entry, 3, refresh_in)
    _put(entry, 4, load)
    _put(entry, 5, step)
    _put(entry, 6, written)
    _put(entry, 7, digest)
    _put(entry, 8, ())
    return entry


cdef class _Batch:
    """The common items of one batch read: their headers (a C array, in the order read)
    and their values, decoded in one call; ``leftovers``, the positions of the others."""

    cdef Header* headers
    cdef Py_ssize_t accepted
    cdef list decoded
    cdef list leftovers

    def __dealloc__(self):
        PyMem_Free(self.headers)


cdef _Batch _decoded(
    list keys,
    list redis_keys,
    list values,
    decode,
    int64_t now_ms,
    Py_ssize_t max_value_bytes,
    Py_ssize_t max_depth,
    Py_ssize_t max_items,
):
    cdef Py_ssize_t count = len(values)
    if len(keys) != count or len(redis_keys) != count:
        raise ValueError("keys, redis_keys and values must be as long as each other")
    cdef _Batch batch = _Batch.__new__(_Batch)
    batch.leftovers = []
    batch.headers = <Header*>PyMem_Malloc((count or 1) * sizeof(Header))
    if batch.headers == NULL:
        raise MemoryError()
    cdef Header* headers = batch.headers
    cdef Py_ssize_t accepted = 0, position, total = 5, i, length
    cdef char* out
    for position in range(count):
        data = values[position]
        if data is None:
            continue
        if _read_header(
            data, redis_keys[position], now_ms, max_value_bytes, max_depth, max_items,
            &headers[accepted],
        ):
            headers[accepted].position = position
            total += PyBytes_GET_SIZE(data) - headers[accepted].start
            accepted += 1
        else:
            batch.leftovers.append(position)
    if not accepted:
        return batch
    joined = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(joined)
    out[0] = <char>0xDD  # array 32
    out[1] = <char>((accepted >> 24) & 0xFF)
    out[2] = <char>((accepted >> 16) & 0xFF)
    out[3] = <char>((accepted >> 8) & 0xFF)
    out[4] = <char>(accepted & 0xFF)
    out += 5
    for i in range(accepted):
        data = values[headers[i].position]
        length = PyBytes_GET_SIZE(data) - headers[i].start
        memcpy(out, PyBytes_AS_STRING(data) + headers[i].start, length)
        out += length
    try:
        decoded = decode(joined)
    except Exception:  # msgspec refused what the walk let through: item by item, then
        decoded = None
    if type(decoded) is not list or len(<list>decoded) != accepted:
        batch.leftovers.extend([headers[i].position for i in range(accepted)])
        batch.leftovers.sort()
        return batch
    batch.accepted = accepted
    batch.decoded = <list>decoded
    return batch


def read_batch(
    list keys,
    list redis_keys,
    list values,
    decode,
    int64_t now_ms,
    Py_ssize_t max_value_bytes,
    Py_ssize_t max_depth,
    Py_ssize_t max_items,
):
    """The entries of the common items of one batch read, and the positions of the items
    left to the general path (see the pure twin)."""
    cdef _Batch batch = _decoded(
        keys, redis_keys, values, decode, now_ms, max_value_bytes, max_depth, max_items
    )
    cdef Header* header
    cdef Py_ssize_t i
    entries = {}
    for i in range(batch.accepted):
        header = &batch.headers[i]
        entries[keys[header.position]] = _entry(batch.decoded[i], header, now_ms)
    return entries, batch.leftovers


def read_fresh(
    list keys,
    list redis_keys,
    list values,
    decode,
    int64_t now_ms,
    Py_ssize_t max_value_bytes,
    Py_ssize_t max_depth,
    Py_ssize_t max_items,
    dict entries=None,
):
    """The fresh values of the common items of one batch read, the keys of the stale
    ones, and the positions of the items left to the general path; ``entries`` receives
    the entry of each fresh value (see the pure twin)."""
    cdef _Batch batch = _decoded(
        keys, redis_keys, values, decode, now_ms, max_value_bytes, max_depth, max_items
    )
    cdef Header* header
    cdef Py_ssize_t i
    hits = {}
    stale = []
    for i in range(batch.accepted):
        header = &batch.headers[i]
        key = keys[header.position]
        if header.stale != _NEVER and header.stale <= now_ms:  # ``Entry.fresh_for <= 0``
            stale.append(key)
            continue
        value = batch.decoded[i]
        hits[key] = value
        if entries is not None:
            entries[key] = _entry(value, header, now_ms)
    return hits, stale, batch.leftovers


def read_one(
    redis_key,
    data,
    decode,
    int64_t now_ms,
    Py_ssize_t max_value_bytes,
    Py_ssize_t max_depth,
    Py_ssize_t max_items,
):
    """``read_batch`` of one item: its entry, or ``None`` for the general path."""
    cdef Header header
    if not _read_header(data, redis_key, now_ms, max_value_bytes, max_depth, max_items, &header):
        return None
    try:
        value = decode(memoryview(data)[header.start:])
    except Exception:
        return None
    return _entry(value, &header, now_ms)
