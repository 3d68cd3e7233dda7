"""``MultilayerCache``: one cache made of layers, fastest first (sync).

    cache = MultilayerCache(
        [InMemoryLayer(max_size=10_000), RedisLayer(url, prefix="app:")],
        [LayerPolicy(ttl=30), LayerPolicy(ttl=600, ttl_jitter=0.1)],
    )
    user = cache.get_or_load(f"user:{user_id}", lambda key: db.load_user(user_id))

* ``get``: the first layer that has the key answers; the value is copied up into the faster
  layers whose policy accepts it (by default: L1 once its doorkeeper has seen the key).
* ``set`` writes through every layer (slowest first, so a value the shared layer cannot
  encode is written nowhere); ``delete`` removes from every layer.
* ``get_or_load``: concurrent callers for one missing key share one loader call.
* A layer that fails on a read counts as a miss there (logged, counted in ``stats()``); a
  failed write raises, since the caller must know that the write did not happen.

Every decision is in ``multilayercache.core.plans`` (shared with ``AsyncMultilayerCache``);
this class only performs the calls, through ``Driver``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .._build import twin
from ..core import plans
from ..core.manager import ManagerBase, check_decorator_options
from ..core.missing import MISSING
from ..core.options import LayerPolicy
from ..core.state import CacheState
from ..core.ttl import TTL, optional_ttl_seconds
from .driver import Driver

FrontDoor = twin("multilayercache.sync.frontdoor", "multilayercache.sync._frontdoor_py").FrontDoor

Loader = Callable[[Any], Any]
BulkLoader = Callable[[list[Any]], Mapping[Any, Any]]


class MultilayerCache(ManagerBase):
    """A cache made of layers (``InMemoryLayer``, ``RedisLayer``, ...), fastest first."""

    _first_get: Callable[[Any, Any], Any]  # every layer of a sync manager is sync

    def __init__(
        self,
        layers: Sequence[Any],
        policies: Sequence[LayerPolicy | None] | None = None,
        *,
        record_latency: bool = False,
    ) -> None:
        state = CacheState(
            layers,
            policies,
            record_latency=record_latency,
            allow_async=False,
            lock=threading.Lock(),
        )
        super().__init__(state, Driver)
        # Reads are mostly L1 hits: answer them from compiled code, with the same behaviour
        # as ``get`` below (see sync/_frontdoor_py.py). The plans take over below L1.
        self.get = FrontDoor(self._first_get, self._get_below, MISSING).get

    # ------------------------------------------------------------------ reads
    def get(self, key: Any, default: Any = None) -> Any:
        """The value from the fastest layer that has it, or ``default``."""
        value = self._first_get(key, MISSING)
        if value is not MISSING:
            return value
        return self._get_below(key, default)

    def _get_below(self, key: Any, default: Any) -> Any:
        return self._run(plans.read(self._state, key, default, start=1))

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The keys found in any layer, as a dict (one batch call per layer)."""
        return self._run(plans.read_many(self._state, keys))

    # ------------------------------------------------------------------ writes
    def set(self, key: Any, value: Any, ttl: TTL | None = None, tags: Iterable[str] = ()) -> None:
        """Write through every layer (each caps ``ttl`` by its policy)."""
        plans.check_tags(tags)
        self._run(plans.write(self._state, {key: value}, ttl))

    def set_many(
        self, mapping: Mapping[Any, Any], ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Write every item through every layer (one batch call per layer)."""
        plans.check_tags(tags)
        self._run(plans.write(self._state, mapping, ttl))

    def delete(self, key: Any) -> bool:
        """Remove the key from every layer; True if any layer had it. If a layer fails, the
        others are still cleared and the error is raised."""
        return self._run(plans.delete(self._state, key))

    # ------------------------------------------------------------------ loading
    def get_or_load(
        self, key: Any, loader: Loader, ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> Any:
        """The cached value, or ``loader(key)``'s, written through every layer. Concurrent
        callers for one missing key share one loader call (and its value or exception)."""
        plans.check_tags(tags)
        optional_ttl_seconds(ttl)
        value = self._first_get(key, MISSING)
        if value is not MISSING:
            return value
        return self._run(plans.load(self._state, key, loader, ttl, start=1))

    def get_or_load_many(
        self, keys: Iterable[Any], bulk_loader: BulkLoader, ttl: TTL | None = None
    ) -> dict[Any, Any]:
        """Like ``get_many``; the keys every layer missed go to ``bulk_loader(missing)`` in
        one call, which returns a mapping (keys it leaves out stay missing)."""
        return self._run(plans.load_many(self._state, keys, bulk_loader, ttl))

    def cached(
        self,
        ttl: TTL | None = None,
        key: Callable[..., Any] | None = None,
        tags: Iterable[str] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: cache a function's results by its arguments.

        >>> @cache.cached(ttl=60)
        ... def user(user_id: int) -> dict: ...

        The key is ``key(*args, **kwargs)`` if given, else the function's qualified name and
        its arguments as canonical JSON. ``user.invalidate(42)`` forgets one result.
        """
        check_decorator_options(ttl, tags)

        def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
            key_of = self._decorator_key(function, key, coroutine=False)

            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return self.get_or_load(
                    key_of(*args, **kwargs), lambda _: function(*args, **kwargs), ttl=ttl
                )

            wrapper.cache_key = key_of  # type: ignore[attr-defined]
            wrapper.invalidate = lambda *a, **kw: self.delete(key_of(*a, **kw))  # type: ignore[attr-defined]
            return wrapper

        return decorate

    # ------------------------------------------------------------------ introspection
    def close(self) -> None:
        """Close the layers that hold connections."""
        for layer in self.layers:
            close = getattr(layer, "close", None)
            if callable(close):
                close()
