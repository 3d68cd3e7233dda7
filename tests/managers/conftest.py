"""Fixtures for the manager specs: every behaviour test runs against {sync, asyncio} x
{compiled, pure} L1, over a real Redis server, and again over a real 3-master Redis
Cluster (``backend``: ``server`` or ``cluster``).

On the cluster a test runs with one L1 twin (the compiled one when built): the L1 does not
talk to Redis, and the twins are compared elsewhere. A test that builds its own layers on
the single server (it asks for ``redis_url``, ``redis_server`` or ``doomed_server``), or
that is marked ``single_server`` (it reads one server's INFO, or kills it), runs on the
single server only. ``raw_redis`` is a client of the backend under test (a
``redis.cluster.RedisCluster`` on the cluster), for tests that look at Redis itself."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.cluster

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
)

from support import IMPLEMENTATIONS, Blocking


class Harness:
    """Builds layers and managers of one kind (``sync`` or ``asyncio``) and hands them out
    as blocking views, so that a spec reads the same for both."""

    def __init__(
        self, kind: str, impl: SimpleNamespace, redis_url: str, prefix: str, cluster: bool = False
    ) -> None:
        self.kind = kind
        self.impl = impl
        self.redis_url = redis_url
        self.prefix = prefix
        self.cluster = cluster
        """Layers built without a url of their own talk to the cluster at ``redis_url``."""
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
        if url is None and self.cluster:
            options.setdefault("cluster", True)
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


SERVER_ONLY_FIXTURES = frozenset({"redis_url", "redis_server", "doomed_server"})
"""A test asking for one of these builds layers on the single server itself."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    backends = ["server"]
    server_only = SERVER_ONLY_FIXTURES.intersection(metafunc.fixturenames)
    if not server_only and metafunc.definition.get_closest_marker("single_server") is None:
        backends.append("cluster")
    metafunc.parametrize("backend", backends, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the cluster, one L1 twin is enough (see the module docstring)."""
    kept = [item for item in items if not _a_second_twin_on_the_cluster(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def _a_second_twin_on_the_cluster(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    impl = params.get("impl")
    return (
        params.get("backend") == "cluster"
        and impl is not None
        and impl.name != IMPLEMENTATIONS[-1].name
    )


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Where the shared layers live: ``server`` (one Redis) or ``cluster`` (3 masters)."""
    return request.param


@pytest.fixture
def backend_url(request: pytest.FixtureRequest, backend: str) -> str:
    """The url of the backend under test (a cluster's: give ``cluster=True`` with it)."""
    started = request.getfixturevalue("redis_cluster" if backend == "cluster" else "redis_server")
    return started.url


@pytest.fixture
def raw_redis(backend: str, backend_url: str) -> Iterator[Any]:
    """A plain client of the backend under test, for looking at Redis itself."""
    if backend == "cluster":
        client = redis.cluster.RedisCluster.from_url(backend_url)
    else:
        client = redis.Redis.from_url(backend_url)
    yield client
    client.close()


@pytest.fixture(params=["sync", "asyncio"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def harness(kind, impl, backend, backend_url, prefix) -> Iterator[Harness]:
    harness = Harness(kind, impl, backend_url, prefix, cluster=backend == "cluster")
    yield harness
    harness.close()


@pytest.fixture
def layers(harness) -> tuple[Any, Any]:
    return harness.l1(), harness.l2()


@pytest.fixture
def cache(harness, layers) -> Any:
    return harness.cache(list(layers))
