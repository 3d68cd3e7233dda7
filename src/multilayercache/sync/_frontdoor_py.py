"""The sync manager's fast paths for L1 hits (pure-Python twin of ``frontdoor.pyx``).

``MultilayerCache.get`` runs on every read, and most reads are L1 hits. A Python method
that calls the L1's ``get`` costs about 50 ns on top of the L1's own 40 ns, more than the
hit itself. The compiled twins of these classes are the same few lines without the Python
frames:

* ``FrontDoor.get``: the manager installs it as its instance's ``get``;
* ``CachedCall``: what ``@cache.cached`` returns for a function (a method's is wrapped in a
  ``CachedMethod``, ``_core/_binding_py.py``, which passes it the instance first): build
  the call's key, ask the first layer, and only on a miss go to ``load`` (the plans, in
  readable Python, where the IO dominates anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core._binding_py import DirectCall

if TYPE_CHECKING:
    from ..core.decorate import CallKeys


class FrontDoor:
    """``get`` and ``get_or_load`` that ask the first layer, and call ``below`` or
    ``load_below`` only when it has no fresh value (``first_get``) or no settled fresh value
    (``first_lookup``, which answers ``aside`` for a key held but due or stale)."""

    def __init__(
        self,
        first_get: Callable[[Any, Any], Any],
        first_lookup: Callable[[Any, Any, Any], Any],
        below: Callable[[Any, Any], Any],
        load_below: Callable[..., Any],
        check_ttl: Callable[[Any], object],
        missing: Any,
        aside: Any,
    ) -> None:
        self._first_get = first_get
        self._first_lookup = first_lookup
        self._below = below
        self._load_below = load_below
        self._check_ttl = check_ttl
        self._missing = missing
        self._aside = aside

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


class CachedCall(DirectCall):
    """A cached function: ``key_of(args, kwargs)`` is the call's key; a settled hit in the
    first layer answers, anything else calls ``load(key, args, kwargs, stepped_aside)``.
    A ``DirectCall``: a method's binding may call ``call`` directly."""

    # Set by ``MultilayerCache.cached`` once built (the compiled class has a ``__dict__``).
    cache_key: CallKeys[...]
    invalidate: Callable[..., bool]

    def __init__(
        self,
        key_of: Callable[[tuple[Any, ...], dict[str, Any] | None], Any],
        first_lookup: Callable[[Any, Any, Any], Any],
        load: Callable[[Any, tuple[Any, ...], dict[str, Any], bool], Any],
        missing: Any,
        aside: Any,
    ) -> None:
        self._key_of = key_of
        self._first_lookup = first_lookup
        self._load = load
        self._missing = missing
        self._aside = aside

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = self._key_of(args, kwargs)
        value = self._first_lookup(key, self._missing, self._aside)
        if value is not self._missing and value is not self._aside:
            return value
        return self._load(key, args, kwargs, value is self._aside)

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``self(*args, **kwargs)``: the entry the compiled bindings call in C."""
        return self(*args, **kwargs)
