"""Fixtures for the manager specs: every behaviour test runs against {sync, asyncio} x
{compiled, pure} L1, over a real Redis server."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
)

from support import Blocking


class Harness:
    """Builds layers and managers of one kind (``sync`` or ``asyncio``) and hands them out
    as blocking views, so that a spec reads the same for both."""

    def __init__(self, kind: str, impl: SimpleNamespace, redis_url: str, prefix: str) -> None:
        self.kind = kind
        self.impl = impl
        self.redis_url = redis_url
        self.prefix = prefix
        self.loop = asyncio.new_event_loop() if kind == "asyncio" else None
        self._closers: list[Any] = []
        self._caches: list[Any] = []

    @property
    def is_async(self) -> bool:
        return self.loop is not None

    def l1(self, max_size: int = 1_000, **options: Any) -> Any:
        return self.impl.InMemoryLayer(max_size=max_size, name="l1", **options)

    def l2(self, url: str | None = None, **options: Any) -> Any:
        options.setdefault("prefix", self.prefix)
        options.setdefault("name", "l2")
        factory = AsyncRedisLayer if self.is_async else RedisLayer
        layer = Blocking(factory(url or self.redis_url, **options), self.loop)
        self._closers.append(layer)
        return layer

    def cache(
        self, layers: list[Any], policies: list[LayerPolicy | None] | None = None, **options: Any
    ) -> Any:
        raw = [layer._target if isinstance(layer, Blocking) else layer for layer in layers]
        factory = AsyncMultilayerCache if self.is_async else MultilayerCache
        cache = Blocking(factory(raw, policies, **options), self.loop)
        self._caches.append(cache)
        return cache

    def loader(self, function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``function`` as the loader this kind of manager takes (a coroutine function for
        asyncio)."""
        if not self.is_async:
            return function

        async def load(argument: Any) -> Any:
            return function(argument)

        return load

    def define(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` as this kind of manager decorates it (a coroutine function for
        asyncio, with the same signature and annotations)."""
        if not self.is_async:
            return function

        @functools.wraps(function)
        async def coroutine_function(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

        return coroutine_function

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a (decorated) function and return its result, awaiting it for asyncio."""
        result = function(*args, **kwargs)
        return self.loop.run_until_complete(result) if self.is_async else result

    def close(self) -> None:
        for cache in self._caches:  # stops write-behind workers (their tasks, on asyncio)
            cache._target._leave_fleet()  # and the backplane's threads
            if cache._target._driver.writers:
                try:
                    cache.close(timeout=1)
                except Exception:
                    pass
        for layer in self._closers:
            try:
                layer.close()
            except Exception:  # a test killed the server: nothing left to close
                pass
        if self.loop is not None:
            self.loop.close()


@pytest.fixture(params=["sync", "asyncio"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def harness(kind, impl, redis_url, prefix) -> Iterator[Harness]:
    harness = Harness(kind, impl, redis_url, prefix)
    yield harness
    harness.close()


@pytest.fixture
def layers(harness) -> tuple[Any, Any]:
    return harness.l1(), harness.l2()


@pytest.fixture
def cache(harness, layers) -> Any:
    return harness.cache(list(layers))
