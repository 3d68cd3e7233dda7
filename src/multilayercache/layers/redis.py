"""The shared layer (L2): Redis, through redis-py (with hiredis), single server or cluster.

``RedisLayer`` (sync) and ``AsyncRedisLayer`` (asyncio) share everything that does no IO:
key encoding, TTL with jitter, value (de)serialization and counters (``_RedisCore``). Only
the calls into redis-py differ.

    l2 = RedisLayer("redis://127.0.0.1:6379/0", prefix="app:", ttl=300, ttl_jitter=0.1)
    # ttl_jitter=0.1: each entry lives between 270 and 300 seconds
    l2 = RedisLayer(client=redis.cluster.RedisCluster.from_url(url), prefix="app:")

Keys are ``str`` (stored as ``prefix + key``, UTF-8). Values go through a ``Serializer``:
MessagePack by default, which cannot run code whatever is in Redis; opt in to pickle with
``SignedPickleSerializer(key=...)``. A value that cannot be encoded raises
``SerializationError`` and nothing is written. A value that cannot be decoded (corrupt, or
forged by whoever can write to Redis) is never trusted: it counts as an error and a miss.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection as AsyncAbstractConnection
from redis.connection import AbstractConnection
from redis.exceptions import RedisError

from ..serializers import MsgpackSerializer, Serializer, UntrustedDataError
from ..stats import LayerStats
from ..ttl import TTL, optional_ttl_seconds
from .base import MISSING, LayerError, LayerUnavailableError, jittered

log = logging.getLogger("multilayercache")


class _RedisCore:
    """IO-free state and logic shared by both Redis layers."""

    client: Any  # set by each layer: a sync or an asyncio redis-py client

    def __init__(
        self,
        prefix: str,
        ttl: TTL | None,
        ttl_jitter: float,
        serializer: Serializer | None,
        name: str,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if isinstance(ttl_jitter, bool) or not isinstance(ttl_jitter, (int, float)):
            raise TypeError("ttl_jitter must be a fraction between 0 and 1")
        if not 0 <= ttl_jitter < 1:
            raise ValueError(f"ttl_jitter must be in [0, 1), got {ttl_jitter!r}")
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        self.name = name
        self.prefix = prefix
        default = optional_ttl_seconds(ttl)
        self.default_ttl = math.inf if default is None else default
        self.ttl_jitter = float(ttl_jitter)
        self.serializer = serializer or MsgpackSerializer()
        self._dumps = self.serializer.dumps
        self._loads = self.serializer.loads
        loads_many = getattr(self.serializer, "loads_many", None)
        self._loads_many = loads_many or (lambda items: [self._loads(item) for item in items])
        self._rng = random.Random()
        self._counter_lock = threading.Lock()
        self._hits = self._misses = self._errors = 0
        self._last_warning = -1e9

    # ---------------------------------------------------------------- keys and TTLs
    def redis_key(self, key: Any) -> str:
        """The Redis key for ``key``: the prefix and the key (redis-py sends it as UTF-8;
        handing it a ``str`` saves encoding it twice)."""
        if not isinstance(key, str):
            raise TypeError(
                f"RedisLayer keys must be str, got {type(key).__name__} {key!r} "
                "(build a string key, e.g. f'user:{user_id}')"
            )
        return self.prefix + key

    def expiry_ms(self, ttl: TTL | None) -> int | None:
        """Milliseconds to keep a value written with ``ttl`` (``None``: the layer default),
        after jitter: ``None`` means no expiry, 0 means "expired already"."""
        seconds = optional_ttl_seconds(ttl)
        if seconds is None:
            seconds = self.default_ttl
        seconds = jittered(seconds, self.ttl_jitter, self._rng)
        if seconds == math.inf:
            return None
        if seconds <= 0:
            return 0
        return max(1, round(seconds * 1000))

    # ---------------------------------------------------------------- values
    def encode(self, value: Any) -> bytes:
        return self._dumps(value)

    def decode(self, key: Any, data: Any) -> Any:
        """The value stored as ``data``, or ``MISSING`` if it cannot be trusted."""
        if not isinstance(data, bytes):
            raise TypeError(
                "the Redis client must return bytes: create it with "
                "decode_responses=False (the default)"
            )
        try:
            return self._loads(data)
        except UntrustedDataError as error:
            self.count(errors=1)
            if time.monotonic() - self._last_warning >= 10.0:  # at most one warning per 10 s
                self._last_warning = time.monotonic()
                log.warning("%s: ignoring the stored value of %r: %s", self.name, key, error)
            return MISSING

    def found(self, key: Any, data: Any, default: Any) -> Any:
        """Account for one read of ``key`` that returned ``data``."""
        if data is not None:
            value = self.decode(key, data)
            if value is not MISSING:
                self.count(hits=1)
                return value
        self.count(misses=1)
        return default

    def found_many(self, keys: list[Any], values: list[Any]) -> dict[Any, Any]:
        """Account for one batch read of ``keys`` (each read counts, repeats too) that
        returned ``values``; return the hits."""
        if None not in values:  # every key found: decode the reply as it is
            try:
                result = dict(zip(keys, self._loads_many(values), strict=True))
                self.count(hits=len(values))
                return result
            except UntrustedDataError:
                pass  # decode one by one below, keeping the good values
        found_keys = []
        found_data = []
        for key, data in zip(keys, values, strict=True):
            if data is not None:
                found_keys.append(key)
                found_data.append(data)
        result: dict[Any, Any] = {}
        hits = 0
        if found_data:
            try:
                result = dict(zip(found_keys, self._loads_many(found_data), strict=True))
                hits = len(found_data)
            except UntrustedDataError:  # one bad item: decode one by one, keep the good ones
                for key, data in zip(found_keys, found_data, strict=True):
                    value = self.decode(key, data)
                    if value is not MISSING:
                        result[key] = value
                        hits += 1
        self.count(hits=hits, misses=len(keys) - hits)
        return result

    def redis_keys(self, keys: list[Any]) -> list[str]:
        """``redis_key`` of every key."""
        prefix = self.prefix
        try:
            return [prefix + key for key in keys]
        except TypeError:  # not a str: let redis_key word the error
            for key in keys:
                self.redis_key(key)
            raise

    def write_pipeline(self, mapping: Mapping[Any, Any], ttl: TTL | None) -> Any:
        """A pipeline, not yet run, that stores every item (``None`` if there is none).
        Every value is encoded before any IO, so one that cannot be encoded writes nothing."""
        plan = [
            (self.redis_key(key), self.encode(value), self.expiry_ms(ttl))
            for key, value in mapping.items()
        ]
        if not plan:
            return None
        pipeline = self.client.pipeline(transaction=False)
        for redis_key, data, milliseconds in plan:
            if milliseconds == 0:  # a TTL of 0: expired already
                pipeline.delete(redis_key)
            else:
                pipeline.set(redis_key, data, px=milliseconds)
        return pipeline

    def failure(self, operation: str, error: RedisError) -> LayerError:
        self.count(errors=1)
        return LayerError(f"{self.name}: {operation} failed: {error}")

    # ---------------------------------------------------------------- stats
    def count(self, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        with self._counter_lock:
            self._hits += hits
            self._misses += misses
            self._errors += errors

    def stats(self) -> LayerStats:
        """Hits, misses and errors (failed calls and untrusted values) since creation."""
        with self._counter_lock:
            return LayerStats(
                name=self.name, hits=self._hits, misses=self._misses, errors=self._errors
            )


def _as_list(keys: Iterable[Any]) -> list[Any]:
    # No need to drop repeats: MGET answers each, and the result is a dict anyway.
    return keys if type(keys) is list else list(keys)


class RedisLayer(_RedisCore):
    """A Redis (or Redis Cluster) layer for synchronous code.

    Give a ``url`` (``cluster=True`` for a cluster URL), or an existing ``client``
    (``redis.Redis`` or ``redis.cluster.RedisCluster``). ``verify=True`` pings the server
    now and raises ``LayerUnavailableError`` if it cannot be reached.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | redis.cluster.RedisCluster | None = None,
        cluster: bool = False,
        prefix: str = "",
        ttl: TTL | None = None,
        ttl_jitter: float = 0.0,
        serializer: Serializer | None = None,
        name: str = "redis",
        verify: bool = False,
        **client_options: Any,
    ) -> None:
        super().__init__(prefix, ttl, ttl_jitter, serializer, name)
        if (url is None) == (client is None):
            raise ValueError("give either a url or a client")
        if client is None:
            factory = redis.cluster.RedisCluster if cluster else redis.Redis
            client = factory.from_url(url, **client_options)
        elif not isinstance(client, (redis.Redis, redis.cluster.RedisCluster)):
            raise TypeError(
                f"client must be a redis.Redis or redis.cluster.RedisCluster, got "
                f"{type(client).__name__} (use AsyncRedisLayer for asyncio clients)"
            )
        self.client = client
        self.is_cluster = isinstance(client, redis.cluster.RedisCluster)
        self.url = url
        if verify:
            try:
                client.ping()
            except RedisError as error:
                raise LayerUnavailableError(
                    f"{name}: cannot reach {url or client!r}: {error}"
                ) from error

    def get(self, key: Any, default: Any = None) -> Any:
        """The stored value, or ``default`` on a miss (or an untrusted value)."""
        redis_key = self.redis_key(key)
        try:
            data = self._execute("GET", redis_key)
        except RedisError as error:
            raise self.failure("GET", error) from error
        return self.found(key, data, default)

    def set(self, key: Any, value: Any, ttl: TTL | None = None) -> None:
        """Store ``value`` (``ttl``: seconds or timedelta; ``None`` = the layer default;
        ``0`` deletes)."""
        redis_key = self.redis_key(key)
        data = self.encode(value)
        milliseconds = self.expiry_ms(ttl)
        try:
            if milliseconds == 0:
                self.client.delete(redis_key)
            else:
                self.client.set(redis_key, data, px=milliseconds)
        except RedisError as error:
            raise self.failure("SET", error) from error

    def delete(self, key: Any) -> bool:
        """Remove the key; True if it existed."""
        redis_key = self.redis_key(key)
        try:
            return bool(self.client.delete(redis_key))
        except RedisError as error:
            raise self.failure("DEL", error) from error

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The hits among ``keys``, in one round trip (MGET; a pipeline per hash slot on a
        cluster)."""
        wanted = _as_list(keys)
        if not wanted:
            return {}
        redis_keys = self.redis_keys(wanted)
        try:
            if self.is_cluster:
                values = self.client.mget_nonatomic(redis_keys)
            else:
                values = self._execute("MGET", *redis_keys)
        except RedisError as error:
            raise self.failure("MGET", error) from error
        return self.found_many(wanted, values)

    def _execute(self, *args: str) -> Any:
        """Run one read command (GET, MGET) on a pooled connection, packed by hiredis at once.

        ``client.get``/``client.mget`` do the same through redis-py's generic command path,
        which walks every argument in Python before packing: ~10% of a GET and ~20% of a
        100-key MGET. Connection handling keeps redis-py's contract (the connection's retry
        policy, disconnect on failure, release to the pool). Clients this does not fit
        (a cluster, one dedicated connection, client-side caching) run the command
        themselves.
        """
        client = self.client
        if self.is_cluster or client.connection is not None:  # set by single_connection_client
            return client.execute_command(*args)
        command = [pack_command(args)]
        pool = client.connection_pool
        connection = pool.get_connection()
        try:
            if not isinstance(connection, AbstractConnection):  # e.g. a client-side cache proxy
                return client.execute_command(*args)

            def send_and_read() -> Any:
                connection.send_packed_command(command)
                return connection.read_response()

            return connection.retry.call_with_retry(
                send_and_read, lambda _error: connection.disconnect()
            )
        finally:
            pool.release(connection)

    def set_many(self, mapping: Mapping[Any, Any], ttl: TTL | None = None) -> None:
        """Store every item in one pipeline. Every value is encoded first: if one cannot
        be, nothing is written."""
        pipeline = self.write_pipeline(mapping, ttl)
        if pipeline is None:
            return
        try:
            pipeline.execute()
        except RedisError as error:
            raise self.failure("pipeline SET", error) from error

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class AsyncRedisLayer(_RedisCore):
    """The asyncio twin of ``RedisLayer`` (``redis.asyncio`` clients). ``await verify()``
    pings the server (construction cannot await). Built from a URL, it runs at most
    ``max_connections`` commands at once: other tasks wait their turn rather than fail."""

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
        max_connections: int = 50,
        **client_options: Any,
    ) -> None:
        super().__init__(prefix, ttl, ttl_jitter, serializer, name)
        if (url is None) == (client is None):
            raise ValueError("give either a url or a client")
        self._gate: asyncio.Semaphore | None = None
        if client is None and cluster:
            client = redis.asyncio.cluster.RedisCluster.from_url(url, **client_options)
        elif client is None:
            # Many tasks may read at once: at most ``max_connections`` commands run at a
            # time and the rest wait, instead of failing with "Too many connections". A
            # semaphore in front of a plain pool costs ~1 us where redis-py's blocking pool
            # costs ~17 us per command.
            pool = redis.asyncio.ConnectionPool.from_url(
                url, max_connections=max_connections, **client_options
            )
            client = redis.asyncio.Redis.from_pool(pool)  # the client owns, and closes, the pool
            self._gate = asyncio.Semaphore(max_connections)
        elif not isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            raise TypeError(
                f"client must be a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster, "
                f"got {type(client).__name__} (use RedisLayer for synchronous clients)"
            )
        self.client = client
        self.is_cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self.url = url

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
                data = await self._execute("GET", redis_key)
            else:
                async with self._gate:
                    data = await self._execute("GET", redis_key)
        except RedisError as error:
            raise self.failure("GET", error) from error
        return self.found(key, data, default)

    async def _run(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run one client call, through the gate when this layer built the pool."""
        if self._gate is None:
            return await command()
        async with self._gate:
            return await command()

    async def set(self, key: Any, value: Any, ttl: TTL | None = None) -> None:
        """Store ``value`` (``ttl``: seconds or timedelta; ``None`` = the layer default;
        ``0`` deletes)."""
        redis_key = self.redis_key(key)
        data = self.encode(value)
        milliseconds = self.expiry_ms(ttl)
        try:
            if milliseconds == 0:
                await self._run(lambda: self.client.delete(redis_key))
            else:
                await self._run(lambda: self.client.set(redis_key, data, px=milliseconds))
        except RedisError as error:
            raise self.failure("SET", error) from error

    async def delete(self, key: Any) -> bool:
        """Remove the key; True if it existed."""
        redis_key = self.redis_key(key)
        try:
            return bool(await self._run(lambda: self.client.delete(redis_key)))
        except RedisError as error:
            raise self.failure("DEL", error) from error

    async def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The hits among ``keys``, in one round trip (MGET; a pipeline per hash slot on a
        cluster)."""
        wanted = _as_list(keys)
        if not wanted:
            return {}
        redis_keys = self.redis_keys(wanted)
        try:
            if self.is_cluster:
                values = await self._run(lambda: self.client.mget_nonatomic(redis_keys))
            else:
                values = await self._run(lambda: self._execute("MGET", *redis_keys))
        except RedisError as error:
            raise self.failure("MGET", error) from error
        return self.found_many(wanted, values)

    async def _execute(self, *args: str) -> Any:
        """Run one read command on a pooled connection, packed by hiredis at once (see
        ``RedisLayer._execute``)."""
        client = self.client
        if self.is_cluster or client.single_connection_client:
            return await client.execute_command(*args)
        command = [pack_command(args)]
        pool = client.connection_pool
        connection = await pool.get_connection()
        try:
            if not isinstance(connection, AsyncAbstractConnection):
                return await client.execute_command(*args)

            async def send_and_read() -> Any:
                await connection.send_packed_command(command)
                return await connection.read_response()

            async def drop(_error: Exception) -> None:
                await connection.disconnect()

            return await connection.retry.call_with_retry(send_and_read, drop)
        finally:
            await pool.release(connection)

    async def set_many(self, mapping: Mapping[Any, Any], ttl: TTL | None = None) -> None:
        """Store every item in one pipeline. Every value is encoded first: if one cannot
        be, nothing is written."""
        pipeline = self.write_pipeline(mapping, ttl)
        if pipeline is None:
            return
        try:
            await self._run(pipeline.execute)
        except RedisError as error:
            raise self.failure("pipeline SET", error) from error

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()


__all__ = ["AsyncRedisLayer", "RedisLayer"]
