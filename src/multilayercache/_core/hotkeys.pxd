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


@cython.final
cdef class HotKeyTable:
    cdef readonly uint64_t bucket_mask
    cdef list _keys
    cdef uint64_t[::1] _hashes
    cdef uint32_t[::1] _scores
    cdef uint32_t[::1] _counts

    cpdef void record(self, uint64_t key_hash, object key) noexcept

    cdef inline void _record(self, uint64_t key_hash, object key) noexcept:
        """``record``, inline here so that the layer's miss path compiles it in (no call and,
        as a method of a final class reached through an attribute, no reference counting)."""
        cdef uint64_t bucket = key_hash & self.bucket_mask
        cdef uint32_t score = self._scores[bucket]
        cdef uint32_t count
        cdef bint empty
        cdef uint64_t take
        # The hash first: it almost never matches on a miss stream, a predictable branch,
        # where a zero score (half the buckets, at random) is not.
        if self._hashes[bucket] == key_hash and score:
            count = self._counts[bucket]
            if score != HOT_MAX_COUNT:
                self._scores[bucket] = score + 1
            if count != HOT_MAX_COUNT:
                self._counts[bucket] = count + 1
            if count == 1:  # its second event: store the key now (see the twin), last
                store_key(self, bucket, key)
            return
        # Another key's bucket loses a point, an empty one takes this key. Without a branch:
        # on a miss stream the two cases alternate at random, which no predictor learns.
        # (Masks, not ``x if empty else y``: Cython writes that as an ``if``.)
        empty = score == 0
        take = -<uint64_t>empty  # all ones if the bucket is empty
        self._scores[bucket] = score - 1 + 2 * empty
        self._hashes[bucket] = (key_hash & take) | (self._hashes[bucket] & ~take)
        self._counts[bucket] = (<uint32_t>take & 1) | (self._counts[bucket] & ~<uint32_t>take)


cdef inline void store_key(HotKeyTable table, uint64_t bucket, object key) noexcept:
    # Swap the key reference by hand; releasing the old key last, once the table is
    # consistent, since that may run arbitrary Python code.
    cdef PyObject* old = PyList_GET_ITEM(table._keys, bucket)
    Py_INCREF(key)
    PyList_SET_ITEM(table._keys, bucket, key)
    Py_DECREF(<object>old)
