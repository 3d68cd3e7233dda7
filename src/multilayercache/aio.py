"""``AsyncMultilayerCache``: the asyncio twin of ``MultilayerCache``.

Same semantics (see ``multilayercache.manager``); layers may be asyncio layers
(``AsyncRedisLayer``) or in-process ones (``InMemoryLayer``), which are called directly
since they never wait on IO. Loaders are coroutine functions: ``async def load(key)``.

    acache = AsyncMultilayerCache([InMemoryLayer(max_size=10_000), AsyncRedisLayer(url)])
    user = await acache.get_or_load("user:1", load_user)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from .layering import (
    LayerSlot,
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
from .singleflight import AsyncSingleFlight
from .ttl import TTL, optional_ttl_seconds

AsyncLoader = Callable[[Any], Awaitable[Any]]
AsyncBulkLoader = Callable[[list[Any]], Awaitable[Mapping[Any, Any]]]


async def _call(slot: LayerSlot, method: str, *args: Any, **kwargs: Any) -> Any:
    result = getattr(slot.layer, method)(*args, **kwargs)
    return await result if slot.is_async else result


class AsyncMultilayerCache(ManagerBase):
    """A cache made of layers, fastest first, for asyncio code."""

    def __init__(
        self,
        layers: Sequence[Any],
        policies: Sequence[LayerPolicy | None] | None = None,
        *,
        record_latency: bool = False,
    ) -> None:
        super().__init__(layers, policies, record_latency, AsyncSingleFlight(), allow_async=True)

    # ------------------------------------------------------------------ reads
    async def get(self, key: Any, default: Any = None) -> Any:
        """The value from the fastest layer that has it, or ``default``."""
        for depth, slot in enumerate(self._slots):
            start = now()
            try:
                value = await _call(slot, "get", key, MISSING)
            except LayerError as error:
                note_read_error(slot, key, error)
                continue
            finally:
                if self._record_latency:
                    slot.latency.record(now() - start)
            if value is not MISSING:
                if depth:
                    await self._promote(key, value, depth)
                return value
        return default

    async def _promote(self, key: Any, value: Any, depth: int) -> None:
        for slot in self._slots[:depth]:
            if not slot.policy.accepts_promotion(key, slot.layer):
                continue
            try:
                await _call(slot, "set", key, value, ttl=slot.policy.ttl_for(None, self._rng))
            except LayerError as error:
                note_write_error(slot, key, error)

    async def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The keys found in any layer, as a dict (one batch call per layer)."""
        wanted = unique(keys)
        found: dict[Any, Any] = {}
        remaining = wanted
        for depth, slot in enumerate(self._slots):
            try:
                hits = await _call(slot, "get_many", remaining)
            except LayerError as error:
                note_read_error(slot, remaining, error)
                continue
            if not hits:
                continue
            if depth:
                await self._promote_many(hits, depth)
            if not found and len(hits) == len(wanted):
                return hits  # one layer had everything (in the order asked)
            found.update(hits)
            remaining = [key for key in remaining if key not in hits]
            if not remaining:
                break
        return {key: found[key] for key in wanted if key in found}

    async def _promote_many(self, hits: dict[Any, Any], depth: int) -> None:
        for slot in self._slots[:depth]:
            accepted = promotable(slot, hits)
            if not accepted:
                continue
            try:
                await _call(slot, "set_many", accepted, ttl=slot.policy.ttl_for(None, self._rng))
            except LayerError as error:
                note_write_error(slot, list(accepted), error)

    # ------------------------------------------------------------------ writes
    async def set(
        self, key: Any, value: Any, ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Write through every layer, slowest first (each caps ``ttl`` by its policy)."""
        check_tags(tags)
        optional_ttl_seconds(ttl)
        for slot in reversed(self._slots):
            await _call(slot, "set", key, value, ttl=slot.policy.ttl_for(ttl, self._rng))

    async def set_many(
        self, mapping: Mapping[Any, Any], ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Write every item through every layer (one batch call per layer)."""
        check_tags(tags)
        optional_ttl_seconds(ttl)
        if not mapping:
            return
        for slot in reversed(self._slots):
            await _call(slot, "set_many", mapping, ttl=slot.policy.ttl_for(ttl, self._rng))

    async def delete(self, key: Any) -> bool:
        """Remove the key from every layer; True if any layer had it."""
        removed = False
        failure: LayerError | None = None
        for slot in self._slots:
            try:
                removed = await _call(slot, "delete", key) or removed
            except LayerError as error:
                note_write_error(slot, key, error)
                failure = failure or error
        if failure is not None:
            raise failure
        return removed

    # ------------------------------------------------------------------ loading
    async def get_or_load(
        self, key: Any, loader: AsyncLoader, ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> Any:
        """The cached value, or ``await loader(key)``'s, written through every layer.
        Concurrent tasks asking for one missing key share one loader call."""
        check_tags(tags)
        optional_ttl_seconds(ttl)
        if not callable(loader):
            raise TypeError("loader must be a coroutine function: async def load(key)")
        value = await self.get(key, MISSING)
        if value is not MISSING:
            return value
        return await self._flight.do(key, lambda: self._load(key, loader, ttl))

    async def _load(self, key: Any, loader: AsyncLoader, ttl: TTL | None) -> Any:
        start = now()
        try:
            result = loader(key)
            if not inspect.isawaitable(result):
                raise TypeError(
                    f"loader {getattr(loader, '__qualname__', loader)!r} returned a "
                    f"{type(result).__name__}, not an awaitable: use async def"
                )
            value = await result
        finally:
            self._count_load(now() - start)
        await self._write_loaded({key: value}, ttl)
        return value

    async def _write_loaded(self, mapping: Mapping[Any, Any], ttl: TTL | None) -> None:
        for slot in reversed(self._slots):
            try:
                await _call(slot, "set_many", mapping, ttl=slot.policy.ttl_for(ttl, self._rng))
            except LayerError as error:
                note_write_error(slot, list(mapping), error)

    async def get_or_load_many(
        self, keys: Iterable[Any], bulk_loader: AsyncBulkLoader, ttl: TTL | None = None
    ) -> dict[Any, Any]:
        """Like ``get_many``; the keys every layer missed go to ``await bulk_loader(missing)``
        in one call, which returns a mapping (keys it leaves out stay missing)."""
        optional_ttl_seconds(ttl)
        wanted = unique(keys)
        found = await self.get_many(wanted)
        missing = [key for key in wanted if key not in found]
        if missing:
            start = now()
            try:
                loaded = loaded_for(missing, await bulk_loader(missing), bulk_loader)
            finally:
                self._count_load(now() - start)
            if loaded:
                await self._write_loaded(loaded, ttl)
            found.update(loaded)
        return {key: found[key] for key in wanted if key in found}

    def cached(
        self,
        ttl: TTL | None = None,
        key: Callable[..., Any] | None = None,
        tags: Iterable[str] = (),
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Decorator for coroutine functions: cache results by arguments (see
        ``MultilayerCache.cached``)."""
        check_tags(tags)
        optional_ttl_seconds(ttl)

        def decorate(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            if not inspect.iscoroutinefunction(function):
                raise TypeError(
                    f"{function.__qualname__} is not a coroutine function: "
                    "decorate it with MultilayerCache.cached"
                )

            key_of = key_maker(function, key)

            @functools.wraps(function)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self.get_or_load(
                    key_of(*args, **kwargs), lambda _: function(*args, **kwargs), ttl=ttl
                )

            async def invalidate(*args: Any, **kwargs: Any) -> bool:
                return await self.delete(key_of(*args, **kwargs))

            wrapper.cache_key = key_of  # type: ignore[attr-defined]
            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            return wrapper

        return decorate

    # ------------------------------------------------------------------ introspection
    async def close(self) -> None:
        """Close the layers that hold connections."""
        for slot in self._slots:
            close = getattr(slot.layer, "close", None)
            if callable(close):
                result = close()
                if inspect.isawaitable(result):
                    await result
