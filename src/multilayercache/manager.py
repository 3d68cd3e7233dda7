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
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._core import FrontDoor
from .layering import (
    ManagerBase,
    check_tags,
    key_maker,
    loaded_for,
    note_read_error,
    note_write_error,
    now,
    promotable,
    unique,
)
from .layers.base import MISSING, LayerError, LayerPolicy
from .singleflight import SingleFlight
from .ttl import TTL, optional_ttl_seconds

Loader = Callable[[Any], Any]
BulkLoader = Callable[[list[Any]], Mapping[Any, Any]]


class MultilayerCache(ManagerBase):
    """A cache made of layers (``InMemoryLayer``, ``RedisLayer``, ...), fastest first."""

    def __init__(
        self,
        layers: Sequence[Any],
        policies: Sequence[LayerPolicy | None] | None = None,
        *,
        record_latency: bool = False,
    ) -> None:
        super().__init__(layers, policies, record_latency, SingleFlight(), allow_async=False)
        self._first = self._slots[0]
        self._first_get = self._first.layer.get if not record_latency else self._timed_first_get
        if not record_latency:
            # Reads are mostly L1 hits: answer them from compiled code, with the same
            # behaviour as ``get`` below (see _core/_frontdoor_py.py).
            self.get = FrontDoor(self._first_get, self._get_below, MISSING).get

    # ------------------------------------------------------------------ reads
    def get(self, key: Any, default: Any = None) -> Any:
        """The value from the fastest layer that has it, or ``default``."""
        value = self._first_get(key, MISSING)
        if value is not MISSING:
            return value
        return self._get_below(key, default)

    def _timed_first_get(self, key: Any, default: Any) -> Any:
        start = now()
        try:
            return self._first.layer.get(key, default)
        finally:
            self._first.latency.record(now() - start)

    def _get_below(self, key: Any, default: Any) -> Any:
        for depth in range(1, len(self._slots)):
            slot = self._slots[depth]
            start = now()
            try:
                value = slot.layer.get(key, MISSING)
            except LayerError as error:
                note_read_error(slot, key, error)
                continue
            finally:
                if self._record_latency:
                    slot.latency.record(now() - start)
            if value is not MISSING:
                self._promote(key, value, depth)
                return value
        return default

    def _promote(self, key: Any, value: Any, depth: int) -> None:
        for slot in self._slots[:depth]:
            if not slot.policy.accepts_promotion(key, slot.layer):
                continue
            try:
                slot.layer.set(key, value, ttl=slot.policy.ttl_for(None, self._rng))
            except LayerError as error:
                note_write_error(slot, key, error)

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The keys found in any layer, as a dict (one batch call per layer)."""
        wanted = unique(keys)
        found: dict[Any, Any] = {}
        remaining = wanted
        for depth, slot in enumerate(self._slots):
            try:
                hits = slot.layer.get_many(remaining)
            except LayerError as error:
                note_read_error(slot, remaining, error)
                continue
            if not hits:
                continue
            if depth:
                self._promote_many(hits, depth)
            if not found and len(hits) == len(wanted):
                return hits  # one layer had everything (in the order asked)
            found.update(hits)
            remaining = [key for key in remaining if key not in hits]
            if not remaining:
                break
        return {key: found[key] for key in wanted if key in found}

    def _promote_many(self, hits: dict[Any, Any], depth: int) -> None:
        for slot in self._slots[:depth]:
            accepted = promotable(slot, hits)
            if not accepted:
                continue
            try:
                slot.layer.set_many(accepted, ttl=slot.policy.ttl_for(None, self._rng))
            except LayerError as error:
                note_write_error(slot, list(accepted), error)

    # ------------------------------------------------------------------ writes
    def set(self, key: Any, value: Any, ttl: TTL | None = None, tags: Iterable[str] = ()) -> None:
        """Write through every layer (each caps ``ttl`` by its policy)."""
        check_tags(tags)
        optional_ttl_seconds(ttl)
        for slot in reversed(self._slots):
            slot.layer.set(key, value, ttl=slot.policy.ttl_for(ttl, self._rng))

    def set_many(
        self, mapping: Mapping[Any, Any], ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Write every item through every layer (one batch call per layer)."""
        check_tags(tags)
        optional_ttl_seconds(ttl)
        if not mapping:
            return
        for slot in reversed(self._slots):
            slot.layer.set_many(mapping, ttl=slot.policy.ttl_for(ttl, self._rng))

    def delete(self, key: Any) -> bool:
        """Remove the key from every layer; True if any layer had it. If a layer fails, the
        others are still cleared and the error is raised."""
        removed = False
        failure: LayerError | None = None
        for slot in self._slots:
            try:
                removed = slot.layer.delete(key) or removed
            except LayerError as error:
                note_write_error(slot, key, error)
                failure = failure or error
        if failure is not None:
            raise failure
        return removed

    # ------------------------------------------------------------------ loading
    def get_or_load(
        self, key: Any, loader: Loader, ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> Any:
        """The cached value, or ``loader(key)``'s, written through every layer. Concurrent
        callers for one missing key share one loader call (and its value or exception)."""
        check_tags(tags)
        optional_ttl_seconds(ttl)
        value = self.get(key, MISSING)
        if value is not MISSING:
            return value
        return self._flight.do(key, lambda: self._load(key, loader, ttl))

    def _load(self, key: Any, loader: Loader, ttl: TTL | None) -> Any:
        start = now()
        try:
            value = loader(key)
        finally:
            self._count_load(now() - start)
        self._write_loaded({key: value}, ttl)
        return value

    def _write_loaded(self, mapping: Mapping[Any, Any], ttl: TTL | None) -> None:
        # A loaded value is returned even if caching it fails: log and count, do not raise.
        for slot in reversed(self._slots):
            try:
                if len(mapping) == 1:
                    ((key, value),) = mapping.items()
                    slot.layer.set(key, value, ttl=slot.policy.ttl_for(ttl, self._rng))
                else:
                    slot.layer.set_many(mapping, ttl=slot.policy.ttl_for(ttl, self._rng))
            except LayerError as error:
                note_write_error(slot, list(mapping), error)

    def get_or_load_many(
        self, keys: Iterable[Any], bulk_loader: BulkLoader, ttl: TTL | None = None
    ) -> dict[Any, Any]:
        """Like ``get_many``; the keys every layer missed go to ``bulk_loader(missing)`` in
        one call, which returns a mapping (keys it leaves out stay missing)."""
        optional_ttl_seconds(ttl)
        wanted = unique(keys)
        found = self.get_many(wanted)
        missing = [key for key in wanted if key not in found]
        if missing:
            start = now()
            try:
                loaded = loaded_for(missing, bulk_loader(missing), bulk_loader)
            finally:
                self._count_load(now() - start)
            if loaded:
                self._write_loaded(loaded, ttl)
            found.update(loaded)
        return {key: found[key] for key in wanted if key in found}

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
        check_tags(tags)
        optional_ttl_seconds(ttl)

        def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.iscoroutinefunction(function):
                raise TypeError(
                    f"{function.__qualname__} is a coroutine function: "
                    "decorate it with AsyncMultilayerCache.cached"
                )

            key_of = key_maker(function, key)

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
        for slot in self._slots:
            close = getattr(slot.layer, "close", None)
            if callable(close):
                close()
