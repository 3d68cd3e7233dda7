"""Hot-key table (compiled twin of ``_hotkeys_py.py``, which explains the algorithm)."""

import numpy as np

from cpython.list cimport PyList_GET_ITEM, PyList_SET_ITEM
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.stdint cimport uint32_t, uint64_t

HOT_KEY_SLOTS = 256

cdef uint32_t MAX_COUNT = 0xFFFFFFFF


cdef class HotKeyTable:
    """Counts events per key for the most frequent keys: ``record``, ``count_of``, ``top``."""

    def __init__(self, Py_ssize_t slot_count=HOT_KEY_SLOTS):
        if slot_count < 1 or slot_count & (slot_count - 1):
            raise ValueError(f"slot_count must be a power of two, got {slot_count!r}")
        self.slot_mask = slot_count - 1
        self._keys = [None] * slot_count
        self._hashes = np.zeros(slot_count, dtype=np.uint64)
        self._scores = np.zeros(slot_count, dtype=np.uint32)
        self._counts = np.zeros(slot_count, dtype=np.uint32)

    @property
    def scores(self):
        """A copy of the per-slot scores (``uint32``)."""
        return np.array(self._scores, dtype=np.uint32, copy=True)

    cdef void count(self, uint64_t key_hash, object key) noexcept:
        cdef uint64_t slot = key_hash & self.slot_mask
        cdef uint32_t score = self._scores[slot]
        cdef PyObject* old
        if score and self._hashes[slot] == key_hash:
            if score != MAX_COUNT:
                self._scores[slot] = score + 1
            if self._counts[slot] != MAX_COUNT:
                self._counts[slot] += 1
        elif score:
            self._scores[slot] = score - 1
        else:
            self._hashes[slot] = key_hash
            self._scores[slot] = 1
            self._counts[slot] = 1
            # Swap the key reference by hand; releasing the old key last, once the table
            # is consistent, since that may run arbitrary Python code.
            old = PyList_GET_ITEM(self._keys, slot)
            Py_INCREF(key)
            PyList_SET_ITEM(self._keys, slot, key)
            Py_DECREF(<object>old)

    def record(self, uint64_t key_hash, key) -> None:
        """Count one event for ``key`` (whose spread hash is ``key_hash``)."""
        self.count(key_hash, key)

    def count_of(self, uint64_t key_hash) -> int:
        """Events counted for the key, or 0 if it is not tracked."""
        cdef uint64_t slot = key_hash & self.slot_mask
        if self._scores[slot] and self._hashes[slot] == key_hash:
            return self._counts[slot]
        return 0

    def top(self, Py_ssize_t n):
        """Up to ``n`` tracked keys as ``(key, count, key_hash)``, highest score first."""
        occupied = [slot for slot in range(self.slot_mask + 1) if self._scores[slot]]
        occupied.sort(key=lambda slot: -self._scores[slot])
        return [(self._keys[slot], self._counts[slot], self._hashes[slot]) for slot in occupied[:n]]

    def clear(self) -> None:
        """Forget every tracked key."""
        self._scores[:] = 0
        self._counts[:] = 0
        self._hashes[:] = 0
        self._keys[:] = [None] * len(self._keys)
