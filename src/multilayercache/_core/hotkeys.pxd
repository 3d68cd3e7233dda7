cimport cython
from cpython.list cimport PyList_GET_ITEM, PyList_SET_ITEM
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.stdint cimport uint32_t, uint64_t

cdef extern from *:
    """
    #define MLC_HOT_MAX_COUNT 0xFFFFFFFFU
    """
    # counts saturate here (a constant for the inline record below)
    const uint32_t HOT_MAX_COUNT "MLC_HOT_MAX_COUNT"


cdef struct HotRecord:
    # One bucket's record in one 16-byte struct: a record touches one cache line, not one
    # per column (the miss path's stream evicts this small table from the first-level cache).
    uint64_t key_hash
    uint32_t score
    uint32_t count


@cython.final
cdef class HotKeyTable:
    cdef readonly uint64_t bucket_mask
    cdef list _keys
    cdef object _buffer  # owns the records (a numpy array of two uint64 per bucket)
    cdef HotRecord* _records

    cpdef void record(self, uint64_t key_hash, object key) noexcept

    cdef inline void _record(self, uint64_t key_hash, object key) noexcept:
        """``record``, inline here so that the layer's miss path compiles it in (no call and,
        as a method of a final class reached through an attribute, no reference counting)."""
        cdef HotRecord* record = &self._records[key_hash & self.bucket_mask]
        cdef uint32_t score = record.score
        cdef uint32_t count
        cdef bint empty
        cdef uint64_t take
        # The hash first: it almost never matches on a miss stream, a predictable branch,
        # where a zero score (half the buckets, at random) is not.
        if record.key_hash == key_hash and score:
            count = record.count
            if score != HOT_MAX_COUNT:
                record.score = score + 1
            if count != HOT_MAX_COUNT:
                record.count = count + 1
            if count == 1:  # its second event: store the key now (see the twin), last
                store_key(self, key_hash & self.bucket_mask, key)
            return
        # Another key's bucket loses a point, an empty one takes this key. Without a branch:
        # on a miss stream the two cases alternate at random, which no predictor learns.
        # (Masks, not ``x if empty else y``: Cython writes that as an ``if``.)
        empty = score == 0
        take = -<uint64_t>empty  # all ones if the bucket is empty
        record.score = score - 1 + 2 * empty
        record.key_hash = (key_hash & take) | (record.key_hash & ~take)
        record.count = (<uint32_t>take & 1) | (record.count & ~<uint32_t>take)


cdef inline void store_key(HotKeyTable table, uint64_t bucket, object key) noexcept:
    # Swap the key reference by hand; releasing the old key last, once the table is
    # consistent, since that may run arbitrary Python code.
    cdef PyObject* old = PyList_GET_ITEM(table._keys, bucket)
    Py_INCREF(key)
    PyList_SET_ITEM(table._keys, bucket, key)
    Py_DECREF(<object>old)
