"""Bounds on untrusted MessagePack (compiled twin of ``_msgpack_bounds_py.py``, which explains
the walk and its budgets).

The walk reads the caller's bytes in place through the buffer protocol (no copy), and keeps
what each open container owes in a C array: on the C stack up to ``_STACK_DEPTH`` levels,
allocated once per call for a larger ``max_depth``. Counts are ``Py_ssize_t`` (64 bits): a
length field holds at most 2**32 - 1, a map owes twice that, and ``items`` never exceeds
``max_items`` by more than one container's claim, so nothing overflows.

The format tables and the messages are the pure twin's, so both read and say the same.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc

from ..core.errors import UntrustedDataError

from ._msgpack_bounds_py import _CONTAINERS, _FIXED_SIZE, _SIZED
from ._msgpack_bounds_py import _never_used, _too_deep, _too_many, _truncated

cdef enum:
    _STACK_DEPTH = 128

# What each marker byte starts, looked up once per token instead of a chain of range tests
# (the dispatch is most of a token's cost): _KIND[marker], and _WIDTH[marker], the bytes to
# skip (SCALAR) or the width of the length field (the others).
cdef enum Kind:
    SCALAR, BYTES, EXT, ARRAY, MAP, FIXARRAY, FIXMAP, NEVER_USED

cdef unsigned char _KIND[256]
cdef unsigned char _WIDTH[256]


cdef void _fill_tables():
    cdef int marker
    for marker in range(256):
        _KIND[marker], _WIDTH[marker] = NEVER_USED, 0
        if marker <= 0x7F or marker >= 0xE0:
            _KIND[marker] = SCALAR
        elif marker <= 0x8F:
            _KIND[marker] = FIXMAP
        elif marker <= 0x9F:
            _KIND[marker] = FIXARRAY
        elif marker <= 0xBF:
            _KIND[marker], _WIDTH[marker] = SCALAR, marker & 0x1F
        elif marker in _FIXED_SIZE:
            _KIND[marker], _WIDTH[marker] = SCALAR, _FIXED_SIZE[marker]
        elif marker in _SIZED:
            width, extra = _SIZED[marker]
            _KIND[marker], _WIDTH[marker] = (EXT if extra else BYTES), width
        elif marker in _CONTAINERS:
            width, per_element = _CONTAINERS[marker]
            _KIND[marker], _WIDTH[marker] = (MAP if per_element == 2 else ARRAY), width


_fill_tables()


def count_objects(data, Py_ssize_t start, Py_ssize_t max_depth, Py_ssize_t max_items):
    """How many complete MessagePack objects ``data[start:]`` holds, one after another;
    ``UntrustedDataError`` naming the bound when it is truncated, invalid, nested deeper
    than ``max_depth`` or holds more than ``max_items`` objects (see the pure twin)."""
    cdef Py_buffer view
    cdef Py_ssize_t size
    if type(data) is bytes:  # what Redis answers: read in place, without a buffer request
        size = PyBytes_GET_SIZE(data)
        if not 0 <= start <= size:
            raise ValueError(f"start={start} is outside the {size} bytes of data")
        return _count(
            <const unsigned char*>PyBytes_AS_STRING(data), size, start, max_depth, max_items
        )
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if not 0 <= start <= view.len:
            raise ValueError(f"start={start} is outside the {view.len} bytes of data")
        return _count(<const unsigned char*>view.buf, view.len, start, max_depth, max_items)
    finally:
        PyBuffer_Release(&view)


cdef inline Py_ssize_t _big_endian(const unsigned char* at, int width) noexcept nogil:
    cdef Py_ssize_t value = 0
    cdef int i
    for i in range(width):
        value = (value << 8) | at[i]
    return value


cdef Py_ssize_t _count(
    const unsigned char* data,
    Py_ssize_t end,
    Py_ssize_t position,
    Py_ssize_t max_depth,
    Py_ssize_t max_items,
) except -1:
    # ``left``: what the innermost open container still owes, kept in a register; the
    # outer ones wait on ``owed``, pushed and popped only as containers open and close.
    cdef Py_ssize_t stack[_STACK_DEPTH]
    cdef Py_ssize_t* owed = stack
    cdef Py_ssize_t depth = 0  # open containers: owed[0 .. depth-2] and left
    cdef Py_ssize_t left = 0
    cdef Py_ssize_t items = 0
    cdef Py_ssize_t objects = 0
    cdef Py_ssize_t children, width
    cdef unsigned char marker, kind
    if max_depth > _STACK_DEPTH:
        owed = <Py_ssize_t*>PyMem_Malloc(max_depth * sizeof(Py_ssize_t))
        if owed == NULL:
            raise MemoryError()
    try:
        while position < end:
            if depth:
                left -= 1
            else:
                items += 1
                if items > max_items:
                    raise UntrustedDataError(_too_many(max_items), cause="limit")
            marker = data[position]
            position += 1
            # Small ints and short strs first, without the tables: a token's end is then
            # known one memory load sooner, and the next token's read starts sooner.
            if marker <= 0x7F or marker >= 0xE0:
                pass
            elif 0xA0 <= marker <= 0xBF:  # a short str: its length is in the marker
                position += marker & 0x1F
                if position > end:
                    raise UntrustedDataError(_truncated(end))
            else:
                kind = _KIND[marker]
                width = _WIDTH[marker]
                if kind == SCALAR:
                    position += width
                    if position > end:
                        raise UntrustedDataError(_truncated(end))
                elif kind == NEVER_USED:
                    raise UntrustedDataError(_never_used(marker, position - 1))
                elif kind == BYTES or kind == EXT:
                    if position + width > end:
                        raise UntrustedDataError(_truncated(end))
                    position += width + (kind == EXT) + _big_endian(data + position, <int>width)
                    if position > end:
                        raise UntrustedDataError(_truncated(end))
                else:  # a container
                    if kind == FIXARRAY:
                        children = marker & 0x0F
                    elif kind == FIXMAP:
                        children = 2 * (marker & 0x0F)
                    else:
                        if position + width > end:
                            raise UntrustedDataError(_truncated(end))
                        children = _big_endian(data + position, <int>width)
                        if kind == MAP:
                            children *= 2
                        position += width
                    if depth >= max_depth:
                        raise UntrustedDataError(_too_deep(max_depth), cause="limit")
                    if children > end - position:
                        raise UntrustedDataError(_truncated(end))
                    if children:
                        items += children
                        if items > max_items:
                            raise UntrustedDataError(_too_many(max_items), cause="limit")
                        if depth:
                            owed[depth - 1] = left
                        left = children
                        depth += 1
            while depth and left == 0:  # the token completed these containers
                depth -= 1
                if depth:
                    left = owed[depth - 1]
            if not depth:
                objects += 1
        if depth:
            raise UntrustedDataError(_truncated(end))
        return objects
    finally:
        if owed != stack:
            PyMem_Free(owed)
