"""The sync manager's fast paths for L1 hits, and for the writes and misses of a cache of
one in-process layer (pure-Python twin of ``frontdoor.pyx``).

``MultilayerCache.get`` runs on every read, and most reads are L1 hits. A Python method
that calls the L1's ``get`` costs about 50 ns on top of the L1's own 40 ns, more than the
hit itself. The compiled twins of these classes are the same few lines without the Python
frames:

* ``FrontDoor.get``, ``get_or_load`` and ``set``: the manager installs them as its
  instance's. With one in-process layer, ``set`` writes it directly (the plan's
  decisions come down to one ``set_entry``), and a miss of ``get_or_load`` goes to
  a plan-free load (``loads``: the manager's state, flight and ``call_loader``) unless the
  call asks for what only the plan does (timeouts, one load across the fleet, tags);
* ``CachedCall``: what ``@cache.cached`` returns for a function (a method's is wrapped in a
  ``CachedMethod``, ``_core/_binding_py.py``, which passes it the instance first): build
  the call's key, ask the first layer, and only on a miss go to ``load`` (the plans, in
  readable Python, where the IO dominates anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core._binding_py import KeyedCall
from ..core.loading import keep_loaded_alone, loaded_alone_failed, loads_at_once

if TYPE_CHECKING:
    from ..core.decorate import CallKeys
    from ..core.plans import Loaded
    from ..core.state import CacheState
    from ..core.tiers import Tier
    from .singleflight import SingleFlight


class FrontDoor:
    """``get`` and ``get_or_load`` that ask the first layer, and call ``below`` or
    ``load_below`` only when it has no fresh value (``first_get``) or no settled fresh value
    (``first_lookup``, which answers ``aside`` for a key held but due or stale); ``set``
    that writes ``only`` (the cache's one in-process layer's ``Tier``, if that is all it
    has) at once, or calls ``set_below``."""

    def __init__(
        self,
        first_get: Callable[[Any, Any], Any],
        first_lookup: Callable[[Any, Any, Any], Any],
        below: Callable[[Any, Any], Any],
        load_below: Callable[..., Any],
        check_ttl: Callable[[Any], object],
        missing: Any,
        aside: Any,
        set_below: Callable[[Any, Any, Any, Any], None],
        only: Tier | None = None,
        loads: tuple[CacheState, SingleFlight, Callable[[Any, Any], Loaded]] | None = None,
    ) -> None:
        self._first_get = first_get
        self._first_lookup = first_lookup
        self._below = below
        self._load_below = load_below
        self._check_ttl = check_ttl
        self._missing = missing
        self._aside = aside
        self._set_below = set_below
        self._only = only
        if only is not None:
            self._only_set_entry = only.layer.set_entry
        self._state: CacheState | None = None
        if loads is not None:
            self._state, self._flight, self._call_loader = loads

    def get(self, key: Any, default: Any = None) -> Any:
        """The value from the fastest layer that has it, or ``default``."""
        value = self._first_get(key, self._missing)
        if value is not self._missing:
            return value
        return self._below(key, default)

    def get_or_load(
        self,
        key: Any,
        loader: Any,
        ttl: Any = None,
        value_type: Any = None,
        soft_timeout: Any = None,
        hard_timeout: Any = None,
        tags: Any = (),
        fleet_single_flight: Any = None,
    ) -> Any:
        """The settled value from the first layer, else ``load_below(key, loader, ttl,
        value_type, soft_timeout, hard_timeout, fleet_single_flight, stepped_aside,
        tags)``. A TTL is checked on a hit too, so bad input never passes unseen."""
        if ttl is not None:
            self._check_ttl(ttl)
        value = self._first_lookup(key, self._missing, self._aside)
        if value is not self._missing and value is not self._aside:
            return value
        if (
            value is self._missing
            and self._state is not None
            and soft_timeout is None
            and hard_timeout is None
            and fleet_single_flight is None
            and not tags
        ):
            value = self.load_alone(key, loader, ttl)
            if value is not self._missing:
                return value
        return self._load_below(
            key,
            loader,
            ttl,
            value_type,
            soft_timeout,
            hard_timeout,
            fleet_single_flight,
            value is self._aside,
            tags,
        )

    def load_alone(self, key: Any, loader: Any, ttl: Any, condition: Any = None) -> Any:
        """A miss of the only layer, loaded without a plan when the load needs none of its
        decisions (``loading.loads_at_once``), else ``missing`` (the caller runs the plan):
        the loader runs in the key's flight (the plans' loads of the key join it, and it
        theirs), and its value is written with one call (``plans.write_loaded_at_once``),
        if ``condition(value)`` allows, counted and held off after a failure as the plan's
        load (``loading.load``) would be. ``missing`` too when another caller is loading
        the key: the plan waits for that load."""
        state, flight = self._state, self._flight
        if state is None or not loads_at_once(state, loader, ttl):
            return self._missing
        call = flight.lead(key)
        if call is None:
            return self._missing
        try:
            try:
                loaded = self._call_loader(loader, key)
            except Exception as error:
                loaded_alone_failed(state, key, error, loader)
                raise
            keep_loaded_alone(state, key, loaded.value, loaded.seconds, ttl, condition)
        except BaseException as error:
            flight.end(key, call, None, error)
            raise
        flight.end(key, call, loaded.value)
        return loaded.value

    def set(self, key: Any, value: Any, ttl: Any = None, tags: Any = ()) -> None:
        """Into the only layer at once, with its policy's lifetime, when the write has no
        TTL or tags of its own; else ``set_below(key, value, ttl, tags)``."""
        if self._only is not None and ttl is None and not tags:
            lifetime = self._only.default_lifetime  # read each time: update_policy changes it
            if lifetime is not None:
                self._only_set_entry(key, value, lifetime)
                return
        self._set_below(key, value, ttl, tags)


class CachedCall(KeyedCall):
    """A cached function: ``key_of(args, kwargs)`` is the call's key; a settled hit in the
    first layer answers, anything else calls ``load(key, args, kwargs, stepped_aside)``.
    A ``DirectCall``: a method's binding may call ``call`` directly."""

    # Set by ``MultilayerCache.cached`` once built (the compiled class has a ``__dict__``).
    cache_key: CallKeys[...]
    invalidate: Callable[..., bool]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = self._key_of(args, kwargs)
        value = self._first_lookup(key, self._missing, self._aside)
        if value is not self._missing and value is not self._aside:
            return value
        return self._load(key, args, kwargs, value is self._aside)

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``self(*args, **kwargs)``: the entry the compiled bindings call in C."""
        return self(*args, **kwargs)
