"""``AsyncMultilayerCache``: the asyncio twin of ``MultilayerCache``.

Same decisions (both run the plans of ``multilayercache.core.plans``); layers may be
asyncio layers (``AsyncRedisLayer``) or in-process ones (``InMemoryLayer``), which are called
directly since they never wait on IO. Loaders are coroutine functions: ``async def load(key)``.

    acache = AsyncMultilayerCache([InMemoryLayer(max_size=10_000), AsyncRedisLayer(url)])
    user = await acache.get_or_load("user:1", load_user)
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from ..core import plans
from ..core.manager import ManagerBase, check_decorator_options
from ..core.missing import MISSING
from ..core.options import LayerPolicy
from ..core.state import CacheState
from ..core.ttl import TTL, optional_ttl_seconds
from .driver import AsyncDriver

AsyncLoader = Callable[[Any], Awaitable[Any]]
AsyncBulkLoader = Callable[[list[Any]], Awaitable[Mapping[Any, Any]]]


class AsyncMultilayerCache(ManagerBase):
    """A cache made of layers, fastest first, for asyncio code."""

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
            allow_async=True,
            lock=threading.Lock(),
        )
        super().__init__(state, AsyncDriver)

    # ------------------------------------------------------------------ reads
    async def get(self, key: Any, default: Any = None) -> Any:
        """The value from the fastest layer that has it, or ``default``."""
        if self._first_get is not None:
            value = self._first_get(key, MISSING)
            if value is not MISSING:
                return value
        return await self._run(plans.read(self._state, key, default, self._checked_depth))

    async def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The keys found in any layer, as a dict (one batch call per layer)."""
        return await self._run(plans.read_many(self._state, keys))

    # ------------------------------------------------------------------ writes
    async def set(
        self, key: Any, value: Any, ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Write through every layer, slowest first (each caps ``ttl`` by its policy)."""
        plans.check_tags(tags)
        await self._run(plans.write(self._state, {key: value}, ttl))

    async def set_many(
        self, mapping: Mapping[Any, Any], ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Write every item through every layer (one batch call per layer)."""
        plans.check_tags(tags)
        await self._run(plans.write(self._state, mapping, ttl))

    async def delete(self, key: Any) -> bool:
        """Remove the key from every layer; True if any layer had it."""
        return await self._run(plans.delete(self._state, key))

    # ------------------------------------------------------------------ loading
    async def get_or_load(
        self, key: Any, loader: AsyncLoader, ttl: TTL | None = None, tags: Iterable[str] = ()
    ) -> Any:
        """The cached value, or ``await loader(key)``'s, written through every layer.
        Concurrent tasks asking for one missing key share one loader call."""
        plans.check_tags(tags)
        optional_ttl_seconds(ttl)
        if not callable(loader):
            raise TypeError("loader must be a coroutine function: async def load(key)")
        if self._first_get is not None:
            value = self._first_get(key, MISSING)
            if value is not MISSING:
                return value
        return await self._run(plans.load(self._state, key, loader, ttl, self._checked_depth))

    async def get_or_load_many(
        self, keys: Iterable[Any], bulk_loader: AsyncBulkLoader, ttl: TTL | None = None
    ) -> dict[Any, Any]:
        """Like ``get_many``; the keys every layer missed go to ``await bulk_loader(missing)``
        in one call, which returns a mapping (keys it leaves out stay missing)."""
        return await self._run(plans.load_many(self._state, keys, bulk_loader, ttl))

    def cached(
        self,
        ttl: TTL | None = None,
        key: Callable[..., Any] | None = None,
        tags: Iterable[str] = (),
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Decorator for coroutine functions: cache results by arguments (see
        ``MultilayerCache.cached``)."""
        check_decorator_options(ttl, tags)

        def decorate(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            key_of = self._decorator_key(function, key, coroutine=True)

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
        for layer in self.layers:
            close = getattr(layer, "close", None)
            if callable(close):
                result = close()
                if inspect.isawaitable(result):
                    await result
