"""Growth of the compiled layer's slot table (``slots.pxd`` has the hot operations). Rare
once a cache is full: every array doubles, so growth is amortized."""

import numpy as np

from ..._core import buffers

from libc.stdint cimport int32_t

from ..._core.policy cimport NOT_CACHED
from .index cimport EMPTY, index_place


cdef int grow_index(InMemoryLayer layer) except -1:
    """Double the index (its load stays <= 1/4), placing every cached slot again (the
    tags lose a bit: index.pxd)."""
    cdef Py_ssize_t size = 2 * (layer._index_mask + 1)
    cdef int32_t[::1] index = buffers.full(size, EMPTY, np.int32)
    cdef Py_ssize_t slot
    for slot in range(layer._slot_count):
        if layer._policy.region_of(slot) != NOT_CACHED:
            index_place(&index[0], size - 1, <int32_t>slot, layer._policy.hash_of(slot))
    layer._index = index
    layer._index_mask = size - 1
    return 0


cdef Py_ssize_t append_slot(InMemoryLayer layer, object key, object value) except -1:
    """A new slot at the end, for ``key`` and ``value``; every per-slot array grows. The
    arrays grow first: each growth may be interrupted (a signal handler's exception while
    an allocation runs Python code), and one that is leaves the layer without the slot,
    every array at least as large as before; the slot is taken only once all have room."""
    cdef Py_ssize_t slot = layer._slot_count
    layer._policy.grow(slot + 1)
    layer._wheel.grow(slot + 1)
    layer._fresh.grow(slot + 1)
    layer._entries.append(key)
    layer._entries.append(value)
    layer._slot_count = slot + 1
    return slot


cdef int grow_free(InMemoryLayer layer) except -1:
    """Double the free list."""
    layer._free = _grown(layer._free, 2 * layer._free_count)
    return 0


def _grown(view, Py_ssize_t size):
    # A bigger copy of a per-slot array.
    array = np.asarray(view)
    bigger = buffers.zeros(size, array.dtype)
    bigger[:array.shape[0]] = array
    return bigger
