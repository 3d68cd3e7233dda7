"""The sync manager's fast paths for L1 hits (compiled twin of ``_frontdoor_py.py``, which
explains them)."""

from .._core.binding cimport DirectCall
from .._core.callkey cimport KeyMaker


cdef class FrontDoor:
    """``get`` and ``get_or_load`` that ask the first layer, and call ``below`` or
    ``load_below`` only when it has no (settled) fresh value."""

    cdef object _first_get
    cdef object _first_lookup
    cdef object _below
    cdef object _load_below
    cdef object _check_ttl
    cdef object _missing
    cdef object _aside

    def __init__(self, first_get, first_lookup, below, load_below, check_ttl, missing, aside):
        self._first_get = first_get
        self._first_lookup = first_lookup
        self._below = below
        self._load_below = load_below
        self._check_ttl = check_ttl
        self._missing = missing
        self._aside = aside

    def get(self, key, default=None):
        """The value from the fastest layer that has it, or ``default``."""
        value = self._first_get(key, self._missing)
        if value is not self._missing:
            return value
        return self._below(key, default)

    def get_or_load(self, key, loader, ttl=None, value_type=None, soft_timeout=None,
                    hard_timeout=None, tags=(), fleet_single_flight=None):
        """The settled value from the first layer, else ``load_below(key, loader, ttl,
        value_type, soft_timeout, hard_timeout, fleet_single_flight, stepped_aside,
        tags)``. A TTL is checked on a hit too, so bad input never passes unseen."""
        if ttl is not None:
            self._check_ttl(ttl)
        value = self._first_lookup(key, self._missing, self._aside)
        if value is not self._missing and value is not self._aside:
            return value
        return self._load_below(key, loader, ttl, value_type, soft_timeout, hard_timeout,
                                fleet_single_flight, value is self._aside, tags)


cdef class CachedCall(DirectCall):
    """A cached function: ``key_of(args, kwargs)`` is the call's key; a settled hit in the
    first layer answers, anything else calls ``load(key, args, kwargs, stepped_aside)``.
    A ``DirectCall``: a method's binding calls ``call`` in C."""

    cdef object _key_of
    cdef KeyMaker _maker  # when key_of is a KeyMaker's key: called directly, in C
    cdef object _first_lookup
    cdef object _load
    cdef object _missing
    cdef object _aside
    cdef dict __dict__  # functools.update_wrapper sets __name__, __doc__, __wrapped__ ...
    cdef object __weakref__  # as a function can be

    def __init__(self, key_of, first_lookup, load, missing, aside):
        self._key_of = key_of
        maker = getattr(key_of, "__self__", None)
        self._maker = maker if type(maker) is KeyMaker else None
        self._first_lookup = first_lookup
        self._load = load
        self._missing = missing
        self._aside = aside

    def __call__(self, *args, **kwargs):
        return _hit_or_load(self, args, kwargs)

    cdef object call(self, tuple args, dict kwargs):
        return _hit_or_load(self, args, kwargs)


cdef inline object _hit_or_load(CachedCall self, tuple args, dict kwargs):
    # one body for both entries, inlined: a plain call pays no virtual call
    if self._maker is not None:
        key = self._maker.key(args, kwargs)
    else:
        key = self._key_of(args, kwargs)
    value = self._first_lookup(key, self._missing, self._aside)
    if value is not self._missing and value is not self._aside:
        return value
    return self._load(key, args, kwargs, value is self._aside)
