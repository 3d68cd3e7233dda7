"""The manager's ``get`` fast path (compiled twin of ``_frontdoor_py.py``, which explains it).
"""

cdef class FrontDoor:
    """``get`` that asks the first layer, and calls ``below`` only on a miss."""

    cdef object _first_get
    cdef object _below
    cdef object _missing

    def __init__(self, first_get, below, missing):
        self._first_get = first_get
        self._below = below
        self._missing = missing

    def get(self, key, default=None):
        """The value from the fastest layer that has it, or ``default``."""
        value = self._first_get(key, self._missing)
        if value is not self._missing:
            return value
        return self._below(key, default)
