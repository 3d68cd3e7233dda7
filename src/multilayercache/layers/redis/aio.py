"""``AsyncRedisLayer``: the asyncio twin of ``RedisLayer`` (``redis.asyncio`` clients), with
the same methods and parameters; keys, expiry, values and counters are the shared
``RedisCodec``.

Connections belong to the event loop that opened them. A layer built from a URL therefore
keeps one client per loop: created at import time and used under successive
``asyncio.run()`` calls (or one test loop after another), it opens fresh connections in each
new loop and drops the old loop's. A layer given an existing ``client`` cannot rebuild it,
and says so clearly when used from a second loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from ...core.errors import LayerUnavailableError
from ...core.freshness import Entry, Lifetime
from ...core.tags import MARK_SECONDS
from ...core.ttl import TTL
from ...serializers import Serializer
from ...serializers.compressed import Algorithm, Compressed
from . import fastpath
from .cluster import ClusterRouting, MovingSlots, read_many_async
from .codec import (
    DEFAULT_MAX_VALUE_BYTES,
    EXTEND_ANSWERS,
    EXTEND_ENTRY,
    EXTEND_ENTRY_SHA,
    SCAN_BATCH,
    ExtendAnswer,
    PackedWrite,
    RedisCodec,
    as_list,
    write_commands,
)
from .codec import client_options as with_defaults
from .lease import release_call, take_call
from .scripts import ScriptCall, checked_delta
from .writebatch import WRITE_BATCH, script_batch, scripts_refused, sets_in

if TYPE_CHECKING:
    from ...serializers.encrypted import Encryption

T = TypeVar("T")

DEFAULT_ASYNC_MAX_CONNECTIONS = 50


class AsyncRedisLayer(ClusterRouting, RedisCodec):
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
        compression: Algorithm | Compressed | None = None,
        encryption: Encryption | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        name: str = "redis",
        verify: bool = False,
        max_connections: int | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(
            prefix, ttl, ttl_jitter, serializer, name, compression, encryption, max_value_bytes
        )
        options_given = client_options
        if (url is None) == (client is None):
            raise ValueError("give either a url or a client")
        if verify and url is None:
            raise ValueError(
                "verify=True needs a url (construction cannot await); "
                "with an existing client, await layer.verify()"
            )
        if client is not None and not isinstance(
            client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
        ):
            raise TypeError(
                f"client must be a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster, "
                f"got {type(client).__name__} (use RedisLayer for synchronous clients)"
            )
        self.url = url
        self._cluster = cluster
        self._max_connections = max_connections
        self._client_options = with_defaults(options_given, AsyncRetry)
        self._gate: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the client serves
        self.client = client if client is not None else self._new_client()
        self.is_cluster = isinstance(self.client, redis.asyncio.cluster.RedisCluster)
        self._moving_slots = MovingSlots()
        if verify:
            assert url is not None  # verify without a url raised above
            _ping_now(url, cluster, self.name, options_given)

    def _new_client(self) -> Any:
        assert self.url is not None  # the callers check: only a url makes new clients
        if self._cluster:
            options = dict(self._client_options)
            if self._max_connections is not None:
                options["max_connections"] = self._max_connections
            self._gate = None
            return redis.asyncio.cluster.RedisCluster.from_url(self.url, **options)
        # A semaphore in front of a plain pool costs ~1 us where redis-py's blocking pool
        # costs ~17 us per command.
        limit = self._max_connections or DEFAULT_ASYNC_MAX_CONNECTIONS
        pool = redis.asyncio.ConnectionPool.from_url(
            self.url, max_connections=limit, **self._client_options
        )
        self._gate = asyncio.Semaphore(limit)
        return redis.asyncio.Redis.from_pool(pool)  # the client owns, and closes, the pool

    def _bound(self) -> Any:
        """The client for the running loop (a new one if the loop changed)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                if self.url is None:
                    raise RuntimeError(
                        f"{self.name}: this AsyncRedisLayer's client was first used in another "
                        "event loop, and redis.asyncio connections cannot move between loops; "
                        "build the layer from a url (it then connects afresh in each loop), "
                        "or create the client inside the loop that uses it"
                    )
                _drop_connections(self.client)
                self.client = self._new_client()
            self._loop = loop
        return self.client

    async def verify(self) -> None:
        """Ping the server; raise ``LayerUnavailableError`` if it cannot be reached."""
        client = self._bound()
        try:
            await self._run(client.ping)
        except RedisError as error:
            raise LayerUnavailableError(
                f"{self.name}: cannot reach {self.url or client!r}: {error}"
            ) from error

    async def get(self, key: Any, default: Any = None, value_type: Any = None) -> Any:
        """The stored value while it is fresh (decoded as ``value_type`` when given), or
        ``default`` on a miss, a stale value or an untrusted one."""
        data = await self._read("GET", self.redis_key(key))
        return self._found(key, data, default, value_type)

    async def get_entry(self, key: Any, value_type: Any = None) -> Entry | None:
        """The stored value with its freshness (stale ones too), or ``None``."""
        data = await self._read("GET", self.redis_key(key))
        return self._found(key, data, None, value_type, False)

    async def set(
        self, key: Any, value: Any, ttl: TTL | None = None, value_type: Any = None
    ) -> None:
        """Store ``value`` (``ttl``: seconds or timedelta; ``None`` = the layer default;
        ``0`` deletes)."""
        await self.set_entry(key, value, self.lifetime(ttl), 0.0, value_type)

    async def set_entry(
        self,
        key: Any,
        value: Any,
        lifetime: Lifetime,
        load_seconds: float = 0.0,
        value_type: Any = None,
    ) -> None:
        """Store ``value`` for ``lifetime`` (fresh for ``ttl``, then stale for
        ``stale_ttl``; Redis drops it after both)."""
        write = self.encode_write(key, value, lifetime, load_seconds, value_type)
        client = self._bound()
        try:
            await self._run(lambda: write.apply(client))
        except RedisError as error:
            raise self._failure("SET", error) from error
        self._count(puts=1)

    async def extend_entry(self, key: Any, lifetime: Lifetime, written_ms: int) -> ExtendAnswer:
        """Give ``key``'s entry a new ``lifetime`` without rewriting its value, if it is
        still the write made at ``written_ms`` (see ``RedisLayer.extend_entry``)."""
        arguments = self._extend_arguments(key, lifetime, written_ms)
        if arguments is None:
            return "write"
        client = self._bound()
        try:
            try:
                answer = await self._run(
                    lambda: client.execute_command("EVALSHA", EXTEND_ENTRY_SHA, *arguments)
                )
            except NoScriptError:  # first use on this server (or after a restart): load it
                answer = await self._run(
                    lambda: client.execute_command("EVAL", EXTEND_ENTRY, *arguments)
                )
        except RedisError as error:
            raise self._failure("EVALSHA (extend)", error) from error
        return EXTEND_ANSWERS[int(answer)]

    async def add(
        self, key: Any, value: Any, ttl: TTL | None = None, value_type: Any = None
    ) -> bool:
        """Store ``value`` only if the key holds no fresh value; True if it was stored
        (atomic: see ``RedisLayer.add``)."""
        return await self.add_entry(key, value, self.lifetime(ttl), 0.0, value_type)

    async def add_entry(
        self,
        key: Any,
        value: Any,
        lifetime: Lifetime,
        load_seconds: float = 0.0,
        value_type: Any = None,
    ) -> bool:
        """``add`` for ``lifetime`` (see ``set_entry``)."""
        call = self._add_call(key, value, lifetime, load_seconds, value_type)
        stored = bool(await self._script(call))
        if stored:
            self._count(puts=1)
        return stored

    async def touch(self, key: Any, ttl: TTL | None = None) -> bool:
        """Give the key's fresh value a new TTL from now, without rewriting it; False if it
        holds none (see ``RedisLayer.touch``)."""
        return await self.touch_entry(key, self.lifetime(ttl))

    async def touch_entry(self, key: Any, lifetime: Lifetime) -> bool:
        """``touch`` with a whole ``lifetime`` (fresh, stale, refresh point)."""
        return bool(await self._script(self._touch_call(key, lifetime)))

    async def incr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """Add ``delta`` to the key's counter atomically; the new count (see
        ``RedisLayer.incr``)."""
        return await self.incr_entry(key, delta, self.lifetime(ttl))

    async def incr_entry(self, key: Any, delta: int, lifetime: Lifetime) -> int:
        """``incr``; ``lifetime`` is a new counter's."""
        return int(await self._script(self._incr_call(key, delta, lifetime)))

    async def take_lease(self, key: Any, token: str, lease_ms: int) -> int:
        """Take ``key``'s fleet lease (see ``RedisLayer.take_lease``)."""
        return int(await self._script(take_call(self.lease_key(key), token, lease_ms)))

    async def release_lease(self, key: Any, token: str) -> bool:
        """End ``key``'s fleet lease if ``token`` still holds it."""
        return bool(await self._script(release_call(self.lease_key(key), token)))

    async def decr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """``incr`` by ``-delta``."""
        return await self.incr(key, -checked_delta(delta), ttl)

    async def _script(self, call: ScriptCall) -> Any:
        client = self._bound()
        args = (1, call.redis_key, *call.args)
        try:
            try:
                return await self._run(
                    lambda: client.execute_command("EVALSHA", call.script.sha, *args)
                )
            except NoScriptError:  # the first run on this server (or after SCRIPT FLUSH)
                return await self._run(
                    lambda: client.execute_command("EVAL", call.script.text, *args)
                )
        except RedisError as error:
            raise self._script_failure(call, error) from error

    async def _read(self, *command: str) -> Any:
        client = self._bound()
        try:
            if self._gate is None:
                return await fastpath.read_async(client, self.is_cluster, *command)
            async with self._gate:
                return await fastpath.read_async(client, False, *command)
        except RedisError as error:
            raise self._failure(command[0], error) from error

    async def delete(self, key: Any) -> bool:
        """Remove the key; True if it existed."""
        redis_key = self.redis_key(key)
        client = self._bound()
        try:
            return bool(await self._run(lambda: client.delete(redis_key)))
        except RedisError as error:
            raise self._failure("DEL", error) from error

    async def delete_many(self, keys: Iterable[Any]) -> int:
        """Remove the keys in one round trip; the number that existed."""
        redis_keys = self._redis_keys(as_list(keys))
        if not redis_keys:
            return 0
        client = self._bound()
        try:
            return int(await self._run(lambda: client.delete(*redis_keys)))
        except RedisError as error:
            raise self._failure("DEL", error) from error

    async def contains(self, key: Any) -> bool:
        """Whether the key is stored (does not count as a read)."""
        redis_key = self.redis_key(key)
        client = self._bound()
        try:
            return bool(await self._run(lambda: client.exists(redis_key)))
        except RedisError as error:
            raise self._failure("EXISTS", error) from error

    async def remaining_ttl(self, key: Any) -> float | None:
        """Seconds until the key expires (``math.inf``: never), or ``None`` if absent."""
        redis_key = self.redis_key(key)
        client = self._bound()
        try:
            return self._seconds_left(await self._run(lambda: client.pttl(redis_key)))
        except RedisError as error:
            raise self._failure("PTTL", error) from error

    async def clear(self) -> int:
        """Delete every key under this layer's prefix, a batch at a time (SCAN + UNLINK:
        Redis never blocks on it; on a cluster, every primary is scanned). Returns how many
        were deleted. Refuses without a prefix, which would empty the whole database. The
        backplane's stream stays (``STREAM_SUFFIX``: its ids must keep growing)."""
        pattern = self._match_pattern()
        kept = self.kept_by_clear
        client = self._bound()
        deleted = 0
        batch: list[bytes] = []
        try:
            async for redis_key in self._scan(client, pattern):
                if redis_key in kept:
                    continue
                batch.append(redis_key)
                if len(batch) == SCAN_BATCH:
                    keys, batch = batch, []
                    deleted += int(await self._run(functools.partial(client.unlink, *keys)))
            if batch:
                deleted += int(await self._run(lambda: client.unlink(*batch)))
        except RedisError as error:
            raise self._failure("SCAN/UNLINK", error) from error
        return deleted

    async def read_marks(self) -> dict[bytes, bytes]:
        """The tag and prefix invalidation marks of this prefix (``core/tags.py``)."""
        client = self._bound()
        try:
            return dict(await self._run(lambda: client.hgetall(self.marks_key)))
        except RedisError as error:
            raise self._failure("HGETALL", error) from error

    async def write_marks(self, fields: list[str], at_ms: int) -> None:
        """Record invalidations at ``at_ms`` (see ``RedisLayer.write_marks``)."""
        client = self._bound()

        async def send() -> Any:
            pipeline = client.pipeline(transaction=False)
            pipeline.hset(self.marks_key, mapping=dict.fromkeys(fields, at_ms))
            pipeline.pexpire(self.marks_key, int(MARK_SECONDS * 1000))
            return await pipeline.execute()

        try:
            await self._run(send)
        except RedisError as error:
            raise self._failure("HSET", error) from error

    async def reencrypt(self) -> int:
        """Rewrite every value under this layer's prefix that is sealed under an older
        key with the active one (``Encryption``), each only if it is still the value read,
        keeping its expiry. Returns how many were rewritten (see ``RedisLayer.reencrypt``)."""
        client = self._bound()
        rewritten = 0
        try:
            async for redis_key in self._scan(client, self._match_pattern()):
                try:
                    key = redis_key.decode()
                except UnicodeDecodeError:  # not a key this layer wrote
                    continue
                data = await self._run(functools.partial(client.get, key))
                call = None if data is None else self._resealed(key, data)
                if call is not None:
                    rewritten += int(await self._script(call))
        except RedisError as error:
            raise self._failure("SCAN/GET", error) from error
        return rewritten

    def _scan(self, client: Any, pattern: str) -> AsyncIterator[bytes]:
        """The keys matching ``pattern``, each SCAN call through the gate (``scan_iter``
        would hold a connection past it, and the pool has no more than the gate lets in)."""
        if self._gate is None:  # a cluster (every primary), or a client of the user's own
            keys: AsyncIterator[bytes] = client.scan_iter(match=pattern, count=SCAN_BATCH)
            return keys

        async def scanned() -> AsyncIterator[bytes]:
            cursor = 0
            while True:
                cursor, keys = await self._run(
                    lambda: client.scan(cursor, match=pattern, count=SCAN_BATCH)  # noqa: B023
                )
                for key in keys:
                    yield key
                if cursor == 0:
                    return

        return scanned()

    async def get_many(self, keys: Iterable[Any], value_type: Any = None) -> dict[Any, Any]:
        """The fresh hits among ``keys``, in one round trip (MGET; a pipeline per hash slot
        on a cluster)."""
        wanted = as_list(keys)
        if not wanted:
            return {}
        redis_keys = self._redis_keys(wanted)
        values = await self._read_many(redis_keys)
        return self._found_many(wanted, values, value_type, True, redis_keys)

    async def get_entries(self, keys: Iterable[Any], value_type: Any = None) -> dict[Any, Entry]:
        """``get_entry`` of every key held, in one round trip."""
        wanted = as_list(keys)
        if not wanted:
            return {}
        redis_keys = self._redis_keys(wanted)
        values = await self._read_many(redis_keys)
        return self._found_many(wanted, values, value_type, False, redis_keys)

    async def get_fresh(
        self, keys: Iterable[Any], entries: dict[Any, Entry] | None = None, value_type: Any = None
    ) -> dict[Any, Any]:
        """The fresh values among ``keys``, in their order, in one round trip: the batch
        read of a manager below its L1 (``get_entries`` without an entry per key; a stale
        value counts as a hit, as there). ``entries``: a dict that receives the entry of
        each value returned (its lifetime, for a copy into a faster layer)."""
        wanted = as_list(keys)
        if not wanted:
            return {}
        redis_keys = self._redis_keys(wanted)
        values = await self._read_many(redis_keys)
        return self._fresh_many(wanted, values, value_type, redis_keys, entries, True)

    async def _read_many(self, redis_keys: list[str]) -> list[Any]:
        client = self._bound()
        try:
            if self.is_cluster:
                moving = self._moving_slots
                return await self._run(lambda: read_many_async(client, redis_keys, moving))
            values: list[Any] = await self._run(
                lambda: fastpath.read_async(client, False, "MGET", *redis_keys)
            )
            return values
        except RedisError as error:
            raise self._failure("MGET", error) from error

    async def set_many(
        self, mapping: Mapping[Any, Any], ttl: TTL | None = None, value_type: Any = None
    ) -> None:
        """Store every item in one pipeline. Every value is encoded first: if one cannot
        be, nothing is written."""
        await self.set_many_entries(mapping, self.lifetime(ttl), 0.0, value_type)

    async def set_many_entries(
        self,
        mapping: Mapping[Any, Any],
        lifetime: Lifetime,
        load_seconds: float = 0.0,
        value_type: Any = None,
    ) -> None:
        """``set_entry`` every item, in one pipeline."""
        self._bound()
        pipeline = self._write_pipeline(mapping, lifetime, load_seconds, value_type)
        if pipeline is None:
            return
        try:
            await self._run(pipeline.execute)
        except RedisError as error:
            raise self._failure("pipeline SET", error) from error
        self._count(puts=len(mapping))

    async def write_packed(self, writes: list[PackedWrite], late: bool = False) -> None:
        """Send encoded writes (``encode_write`` / ``encode_delete``): the write-behind
        queue's flush. One script call on one server (``writebatch.py``); a pipeline of
        commands on a cluster, and for writes that go only over older values (``late``,
        or their own ``only_if_newer``: see ``write_commands``)."""
        if not writes:
            return
        client = self._bound()
        scripted = not (late or self.is_cluster or self.refuses_scripts)
        batch = script_batch(writes) if scripted else None
        try:
            if batch is not None:
                try:
                    for arguments in batch.calls:
                        await self._run(functools.partial(_write_batch, client, arguments))
                except ResponseError as error:
                    if not scripts_refused(error):
                        raise
                    self.note_scripts_refused(error)  # none ran: send the batch as commands
                    batch = None
            if batch is None:
                commands = write_commands(writes, late, self.is_cluster)
                await self._run(lambda: fastpath.write_async(client, self.is_cluster, commands))
        except RedisError as error:
            raise self._failure("pipeline SET", error) from error
        self._count(puts=sets_in(writes) if batch is None else batch.sets)

    async def close(self) -> None:
        """Close the client's connections."""
        if self._loop is None or self._loop is asyncio.get_running_loop():
            await self.client.aclose()
        else:  # opened in a loop that has finished
            _drop_connections(self.client)
        self._loop = None

    def _after_fork(self) -> None:
        """In a forked child: connect afresh, as in a new event loop, leaving the parent's
        connections to it (see ``_drop_connections``). A client given by the user is left
        alone: used in the child's loop, it raises (see ``_bound``)."""
        super()._after_fork()
        if self.url is not None and self._loop is not None:
            _drop_connections(self.client, forked=True)
            self.client = self._new_client()
            self._loop = None

    async def _run(self, command: Callable[[], Awaitable[T]]) -> T:
        """Run one client call, through the gate when this layer built the pool."""
        if self._gate is None:
            return await command()
        async with self._gate:
            return await command()


async def _write_batch(client: Any, arguments: tuple[Any, ...]) -> None:
    try:
        await fastpath.read_async(client, False, "EVALSHA", WRITE_BATCH.sha, 0, *arguments)
    except NoScriptError:  # the first batch on this server (or after SCRIPT FLUSH)
        await fastpath.read_async(client, False, "EVAL", WRITE_BATCH.text, 0, *arguments)


def _drop_connections(client: Any, *, forked: bool = False) -> None:
    """Close, without a loop, the sockets of a client whose event loop has finished, or
    (``forked``) a forked child's copies of its parent's sockets.

    Their transports belong to a closed loop, so the usual close (which schedules work on
    that loop) cannot run; left alone, they would only be reclaimed by the garbage collector,
    with ResourceWarnings. Best effort: this reaches into redis-py's pool and asyncio's
    transport, and whatever it cannot close is left to the collector.

    After a fork the parent's loop may still be running, and its selector (epoll) is shared
    with the child: taking a socket out of it, as ``abort()`` or a connection's finalizer
    would, takes it out for the parent too, whose reads on it then time out. So only the
    child's copy of each socket is closed, and the connections are left with nothing to
    close when they are collected.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        connections = [
            *getattr(pool, "_available_connections", ()),
            *getattr(pool, "_in_use_connections", ()),
        ]
    elif forked:  # a cluster client: its nodes hold the connections
        nodes = getattr(getattr(client, "nodes_manager", None), "nodes_cache", {})
        connections = [
            connection
            for node in nodes.values()
            for connection in getattr(node, "_connections", ())
        ]
    else:  # a cluster client whose loop has finished: its nodes' pools are dropped with it
        return
    for connection in connections:
        writer = getattr(connection, "_writer", None)
        if writer is None:
            continue
        transport = writer.transport
        if not forked:
            with contextlib.suppress(Exception):
                transport.abort()  # marks it closing; scheduling the rest fails on a closed loop
        with contextlib.suppress(Exception):
            transport._sock.close()
            transport._sock = None
        connection._reader = connection._writer = None
    if pool is not None:
        with contextlib.suppress(Exception):
            pool.reset()


def _ping_now(url: str, cluster: bool, name: str, options: dict[str, Any]) -> None:
    """``verify=True``: ping ``url`` with a short-lived sync client, at construction."""
    factory = redis.cluster.RedisCluster if cluster else redis.Redis
    try:
        probe = factory.from_url(url, **with_defaults(options, Retry))
    except RedisError as error:
        raise LayerUnavailableError(f"{name}: cannot reach {url}: {error}") from error
    try:
        probe.ping()
    except RedisError as error:
        raise LayerUnavailableError(f"{name}: cannot reach {url}: {error}") from error
    finally:
        probe.close()


__all__ = ["AsyncRedisLayer"]
