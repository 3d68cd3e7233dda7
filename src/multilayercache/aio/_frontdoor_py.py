"""The asyncio manager's fast path for ``@cached`` hits (pure-Python twin of
``frontdoor.pyx``).

An ``async def`` wrapper around the cached function costs a Python coroutine and its frame
on every call, before it has even built the key: an L1 hit awaited that way cost about 3x
a trivial ``async def``. ``AsyncCachedCall`` is what ``AsyncMultilayerCache.cached`` returns
instead (a method's is wrapped in a ``CachedMethod``, ``_core/_binding_py.py``): a plain
callable that, when called, builds the call's key and asks the first layer (neither
awaits anything), then returns a coroutine for the caller to await:

* a settled hit: ``settled(value)``, which returns the value at once (compiled, a Cython
  coroutine: a real coroutine, as ``asyncio.create_task`` and ``gather`` require, without
  a Python frame);
* anything else: ``load(key, args, kwargs, stepped_aside)``, the plans' coroutine, which
  runs only when awaited (so an un-awaited call never runs the function).

So bad arguments raise their ``TypeError`` at the call, as a coroutine function's own
signature check does, not at the ``await``; and a hit is the value held when the call
was made.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .._core._binding_py import KeyedCall

if TYPE_CHECKING:
    from ..core.decorate import CallKeys

_T = TypeVar("_T")


async def settled(value: _T) -> _T:
    """A coroutine that returns ``value`` at once (what an L1 hit hands the caller to await)."""
    return value


class AsyncCachedCall(KeyedCall):
    """A cached coroutine function: ``key_of(args, kwargs)`` is the call's key; a settled hit
    in the first layer returns ``settled(value)``, anything else the coroutine
    ``load(key, args, kwargs, stepped_aside)``. A ``DirectCall``: a method's binding may
    call ``call`` directly."""

    # Set by ``AsyncMultilayerCache.cached`` once built (the compiled class has a __dict__).
    cache_key: CallKeys[...]
    invalidate: Callable[..., Coroutine[Any, Any, bool]]
    _load: Callable[[Any, tuple[Any, ...], dict[str, Any], bool], Coroutine[Any, Any, Any]]

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        key = self._key_of(args, kwargs)
        value = self._first_lookup(key, self._missing, self._aside)
        if value is not self._missing and value is not self._aside:
            return settled(value)
        return self._load(key, args, kwargs, value is self._aside)

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Coroutine[Any, Any, Any]:
        """``self(*args, **kwargs)``: the entry the compiled bindings call in C."""
        return self(*args, **kwargs)
