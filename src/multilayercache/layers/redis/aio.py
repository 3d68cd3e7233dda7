"""``AsyncRedisLayer``: the asyncio twin of ``RedisLayer`` (``redis.asyncio`` clients), with
the same methods and parameters; keys, expiry, values and counters are the shared
``RedisCodec``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import RedisError

from ...core.errors import LayerUnavailableError
from ...core.ttl import TTL
from ...serializers import Serializer
from . import fastpath
from .codec import RedisCodec, as_list

DEFAULT_ASYNC_MAX_CONNECTIONS = 50


class AsyncRedisLayer(RedisCodec):
    """The asyncio twin of ``RedisLayer``.

    ``max_connections`` (default 50 when built from a URL): at most that many commands run
    at once, and other tasks wait their turn rather than fail, since a burst of tasks would
    otherwise open one connection each. ``verify=True`` pings the server at construction
    (a short blocking call, so construction stays synchronous) and needs a ``url``; with an
    existing ``client``, ``await layer.verify()`` instead.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster | None = None,
        cluster: bool = False,
        prefix: str = "",
        ttl: TTL | None = None,
        ttl_jitter: float = 0.0,
        serializer: Serializer | None = None,
        name: str = "redis",
        verify: bool = False,
        max_connections: int | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(prefix, ttl, ttl_jitter, serializer, name)
        if (url is None) == (client is None):
            raise ValueError("give either a url or a client")
        if verify and url is None:
            raise ValueError(
                "verify=True needs a url (construction cannot await); "
                "with an existing client, await layer.verify()"
            )
        self._gate: asyncio.Semaphore | None = None
        if client is None and cluster:
            if max_connections is not None:
                client_options = {**client_options, "max_connections": max_connections}
            client = redis.asyncio.cluster.RedisCluster.from_url(url, **client_options)
        elif client is None:
            # A semaphore in front of a plain pool costs ~1 us where redis-py's blocking
            # pool costs ~17 us per command.
            limit = max_connections or DEFAULT_ASYNC_MAX_CONNECTIONS
            pool = redis.asyncio.ConnectionPool.from_url(
                url, max_connections=limit, **client_options
            )
            client = redis.asyncio.Redis.from_pool(pool)  # the client owns, and closes, the pool
            self._gate = asyncio.Semaphore(limit)
        elif not isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            raise TypeError(
                f"client must be a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster, "
                f"got {type(client).__name__} (use RedisLayer for synchronous clients)"
            )
        self.client = client
        self.is_cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self.url = url
        if verify:
            _ping_now(url, cluster, self.name, client_options)

    async def verify(self) -> None:
        """Ping the server; raise ``LayerUnavailableError`` if it cannot be reached."""
        try:
            await self._run(self.client.ping)
        except RedisError as error:
            raise LayerUnavailableError(
                f"{self.name}: cannot reach {self.url or self.client!r}: {error}"
            ) from error

    async def get(self, key: Any, default: Any = None) -> Any:
        """The stored value, or ``default`` on a miss (or an untrusted value)."""
        redis_key = self.redis_key(key)
        try:
            if self._gate is None:
                data = await fastpath.read_async(self.client, self.is_cluster, "GET", redis_key)
            else:
                async with self._gate:
                    data = await fastpath.read_async(self.client, False, "GET", redis_key)
        except RedisError as error:
            raise self._failure("GET", error) from error
        return self._found(key, data, default)

    async def set(self, key: Any, value: Any, ttl: TTL | None = None) -> None:
        """Store ``value`` (``ttl``: seconds or timedelta; ``None`` = the layer default;
        ``0`` deletes)."""
        redis_key = self.redis_key(key)
        data = self._encode(value)
        milliseconds = self._expiry_ms(ttl)
        try:
            if milliseconds == 0:
                await self._run(lambda: self.client.delete(redis_key))
            else:
                await self._run(lambda: self.client.set(redis_key, data, px=milliseconds))
        except RedisError as error:
            raise self._failure("SET", error) from error

    async def delete(self, key: Any) -> bool:
        """Remove the key; True if it existed."""
        redis_key = self.redis_key(key)
        try:
            return bool(await self._run(lambda: self.client.delete(redis_key)))
        except RedisError as error:
            raise self._failure("DEL", error) from error

    async def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The hits among ``keys``, in one round trip (MGET; a pipeline per hash slot on a
        cluster)."""
        wanted = as_list(keys)
        if not wanted:
            return {}
        redis_keys = self._redis_keys(wanted)
        try:
            if self.is_cluster:
                values = await self._run(lambda: self.client.mget_nonatomic(redis_keys))
            else:
                values = await self._run(
                    lambda: fastpath.read_async(self.client, False, "MGET", *redis_keys)
                )
        except RedisError as error:
            raise self._failure("MGET", error) from error
        return self._found_many(wanted, values)

    async def set_many(self, mapping: Mapping[Any, Any], ttl: TTL | None = None) -> None:
        """Store every item in one pipeline. Every value is encoded first: if one cannot
        be, nothing is written."""
        pipeline = self._write_pipeline(mapping, ttl)
        if pipeline is None:
            return
        try:
            await self._run(pipeline.execute)
        except RedisError as error:
            raise self._failure("pipeline SET", error) from error

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()

    async def _run(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run one client call, through the gate when this layer built the pool."""
        if self._gate is None:
            return await command()
        async with self._gate:
            return await command()


def _ping_now(url: str, cluster: bool, name: str, options: dict[str, Any]) -> None:
    """``verify=True``: ping ``url`` with a short-lived sync client, at construction."""
    factory = redis.cluster.RedisCluster if cluster else redis.Redis
    try:
        probe = factory.from_url(url, **options)
    except RedisError as error:
        raise LayerUnavailableError(f"{name}: cannot reach {url}: {error}") from error
    try:
        probe.ping()
    except RedisError as error:
        raise LayerUnavailableError(f"{name}: cannot reach {url}: {error}") from error
    finally:
        probe.close()


__all__ = ["AsyncRedisLayer"]
