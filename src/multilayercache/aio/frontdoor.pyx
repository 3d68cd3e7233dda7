"""The asyncio manager's fast path for ``@cached`` hits (compiled twin of ``_frontdoor_py.py``,
which explains it)."""

from .._core.binding cimport DirectCall
from .._core.callkey cimport KeyMaker


async def settled(value):
    """A coroutine that returns ``value`` at once (what an L1 hit hands the caller to await)."""
    return value


cdef class AsyncCachedCall(DirectCall):
    """A cached coroutine function: ``key_of(args, kwargs)`` is the call's key; a settled hit
    in the first layer returns ``settled(value)``, anything else the coroutine
    ``load(key, args, kwargs, stepped_aside)``. A ``DirectCall``: a method's binding calls
    ``call`` in C."""

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


cdef inline object _hit_or_load(AsyncCachedCall self, tuple args, dict kwargs):
    # one body for both entries, inlined: a plain call pays no virtual call
    if self._maker is not None:
        key = self._maker.key(args, kwargs)
    else:
        key = self._key_of(args, kwargs)
    value = self._first_lookup(key, self._missing, self._aside)
    if value is not self._missing and value is not self._aside:
        return settled(value)
    return self._load(key, args, kwargs, value is self._aside)
