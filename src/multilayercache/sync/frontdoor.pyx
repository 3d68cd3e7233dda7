"""The sync manager's fast paths for L1 hits, and for the writes and misses of a cache of
one in-process layer (compiled twin of ``_frontdoor_py.py``, which explains them)."""

from cpython.contextvars cimport PyContextVar_Reset, PyContextVar_Set, get_value

from .._core.binding cimport KeyedCall
from .._core.flight cimport Call, new_call
from .._core.latency cimport Recorder

from time import perf_counter
from types import CoroutineType

from ..core.loadcontext import ContextualLoader, TaggedLoader
from ..core.loading import loaded_alone_failed
from ..core.nesting import leading
from .driver import refuse_coroutine


cdef class FrontDoor:
    """``get`` and ``get_or_load`` that ask the first layer, and call ``below`` or
    ``load_below`` only when it has no (settled) fresh value; ``set`` that writes the only
    layer at once, or calls ``set_below``."""

    cdef object _first_get
    cdef object _first_lookup
    cdef object _below
    cdef object _load_below
    cdef object _check_ttl
    cdef object _missing
    cdef object _aside
    cdef object _set_below
    cdef object _only
    cdef object _only_set_entry
    cdef object _state
    cdef object _flight

    def __init__(self, first_get, first_lookup, below, load_below, check_ttl, missing, aside,
                 set_below, only=None, loads=None):
        self._first_get = first_get
        self._first_lookup = first_lookup
        self._below = below
        self._load_below = load_below
        self._check_ttl = check_ttl
        self._missing = missing
        self._aside = aside
        self._set_below = set_below
        self._only = only
        self._only_set_entry = None if only is None else only.layer.set_entry
        self._state = self._flight = None
        if loads is not None:  # (the driver's call_loader, which the twin calls, is inlined)
            self._state, self._flight = loads[0], loads[1]

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
        if (value is self._missing and self._state is not None and soft_timeout is None
                and hard_timeout is None and fleet_single_flight is None and not tags):
            value = self.load_alone(key, loader, ttl)
            if value is not self._missing:
                return value
        return self._load_below(key, loader, ttl, value_type, soft_timeout, hard_timeout,
                                fleet_single_flight, value is self._aside, tags)

    cpdef object load_alone(self, key, loader, ttl, condition=None):
        """A miss of the only layer, without a plan, or ``missing`` when the load needs
        one: see the twin. ``SingleFlight.lead`` and ``end``, the driver's ``call_loader``
        and ``loading.keep_loaded_alone`` inlined, in C: each is a Python frame or more."""
        cdef Call call
        state = self._state
        if state is None or not _loads_at_once(state, loader, ttl):
            return self._missing
        call = new_call(get_value(leading))
        if self._flight._calls.setdefault(key, call) is not call:
            return self._missing  # another caller loads it: the plan waits for that load
        call.token = PyContextVar_Set(leading, call.lead)
        try:
            start = perf_counter()
            try:
                value = loader(key)
            except Exception as error:
                state.count_load(perf_counter() - start, True)
                loaded_alone_failed(state, key, error, loader)
                raise
            except BaseException:
                state.count_load(perf_counter() - start, True)
                raise
            seconds = perf_counter() - start
            (<Recorder?>state.loads).record(seconds)  # ``count_load``: one step, no lock
            if type(value) is CoroutineType:
                refuse_coroutine(loader, value)
            if state.throttle.failed_at:  # (a key whose load failed lately)
                state.load_succeeded(key)
            if condition is None or condition(value):
                tier = self._only
                lifetime = tier.default_lifetime if ttl is None else None
                if lifetime is None:
                    lifetime = tier.lifetime_for(ttl, state.rng)
                self._only_set_entry(key, value, lifetime, seconds)
        except BaseException as error:
            self._end(key, call, None, error)
            raise
        self._end(key, call, value, None)
        return value

    cdef inline _end(self, key, Call call, value, error):
        """``SingleFlight.end``: the call of ``key`` is over."""
        PyContextVar_Reset(leading, call.token)
        calls = self._flight._calls  # (read now: a fork replaces it)
        if calls.get(key) is call:
            del calls[key]
        call.finish(value, error)

    def set(self, key, value, ttl=None, tags=()):
        """Into the only layer at once, with its policy's lifetime, when the write has no
        TTL or tags of its own; else ``set_below(key, value, ttl, tags)``."""
        if self._only is not None and ttl is None and not tags:
            lifetime = self._only.default_lifetime  # read each time: update_policy changes it
            if lifetime is not None:
                self._only_set_entry(key, value, lifetime)
                return
        self._set_below(key, value, ttl, tags)


cdef inline bint _loads_at_once(state, loader, ttl):
    """``loading.loads_at_once``, inlined (the twin calls it)."""
    return (not state.adapts
            and not state.throttle.failed_at
            and callable(loader)
            and type(loader) is not TaggedLoader
            and type(loader) is not ContextualLoader
            and not callable(ttl))  # (``adaptive.is_rule``)


cdef class CachedCall(KeyedCall):
    """A cached function: ``key_of(args, kwargs)`` is the call's key; a settled hit in the
    first layer answers, anything else calls ``load(key, args, kwargs, stepped_aside)``.
    A ``DirectCall``: a method's binding calls ``call`` in C."""

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
