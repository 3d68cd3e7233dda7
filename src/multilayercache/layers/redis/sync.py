"""``RedisLayer``: the shared layer (L2) for synchronous code, single server or cluster.

    l2 = RedisLayer("redis://127.0.0.1:6379/0", prefix="app:", ttl=300, ttl_jitter=0.1)
    # ttl_jitter=0.1: each entry lives between 270 and 300 seconds
    l2 = RedisLayer(client=redis.cluster.RedisCluster.from_url(url), prefix="app:")

Keys, expiry, values and counters are the IO-free ``RedisCodec`` (see ``codec.py``); this
module only makes the calls. ``AsyncRedisLayer`` (``aio.py``) is its asyncio twin, with the
same methods and parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import redis
import redis.cluster
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from ...core.errors import LayerUnavailableError
from ...core.freshness import Entry, Lifetime
from ...core.tags import MARK_SECONDS
from ...core.ttl import TTL
from ...serializers import Serializer
from ...serializers.compressed import Algorithm, Compressed
from . import fastpath
from .cluster import ClusterRouting, MovingSlots, read_many
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
    client_options,
    write_commands,
)
from .lease import release_call, take_call
from .scripts import ScriptCall, checked_delta
from .writebatch import WRITE_BATCH, script_batch, scripts_refused, sets_in

if TYPE_CHECKING:
    from ...serializers.encrypted import Encryption


class RedisLayer(ClusterRouting, RedisCodec):
    """A Redis (or Redis Cluster) layer for synchronous code.

    Give a ``url`` (``cluster=True`` for a cluster URL), or an existing ``client``
    (``redis.Redis`` or ``redis.cluster.RedisCluster``). ``verify=True`` pings the server
    now and raises ``LayerUnavailableError`` if it cannot be reached. ``ttl``: how long a
    value written without a TTL of its own is kept (default one hour; ``math.inf``: until
    deleted).
    ``max_connections``: ``None`` lets the pool open one connection per thread that needs
    one (redis-py's default); a number caps it, and threads beyond it wait their turn.
    Built from a URL, the client gives up connecting or reading after 0.5 s and does not
    retry on its own (``client_options`` overrides either); ``LayerPolicy.retry`` and the
    circuit breaker do that.
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
        if (url is None) == (client is None):
            raise ValueError("give either a url or a client")
        if client is None:
            assert url is not None  # checked above: one of the two is given
            client = _client_for(url, cluster, max_connections, client_options)
        elif not isinstance(client, (redis.Redis, redis.cluster.RedisCluster)):
            raise TypeError(
                f"client must be a redis.Redis or redis.cluster.RedisCluster, got "
                f"{type(client).__name__} (use AsyncRedisLayer for asyncio clients)"
            )
        self.client = client
        self.is_cluster = isinstance(client, redis.cluster.RedisCluster)
        self._moving_slots = MovingSlots()
        self.url = url
        if verify:
            self.verify()

    def verify(self) -> None:
        """Ping the server; raise ``LayerUnavailableError`` if it cannot be reached."""
        try:
            self.client.ping()
        except RedisError as error:
            raise LayerUnavailableError(
                f"{self.name}: cannot reach {self.url or self.client!r}: {error}"
            ) from error

    def get(self, key: Any, default: Any = None, value_type: Any = None) -> Any:
        """The stored value while it is fresh (decoded as ``value_type`` when given), or
        ``default`` on a miss, a stale value or an untrusted one."""
        return self._found(key, self._read("GET", self.redis_key(key)), default, value_type)

    def get_entry(self, key: Any, value_type: Any = None) -> Entry | None:
        """The stored value with its freshness (stale ones too), or ``None``."""
        return self._found(key, self._read("GET", self.redis_key(key)), None, value_type, False)

    def set(self, key: Any, value: Any, ttl: TTL | None = None, value_type: Any = None) -> None:
        """Store ``value`` (``ttl``: seconds or timedelta; ``None`` = the layer default;
        ``0`` deletes)."""
        self.set_entry(key, value, self.lifetime(ttl), 0.0, value_type)

    def set_entry(
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
        try:
            write.apply(self.client)
        except RedisError as error:
            raise self._failure("SET", error) from error
        self._count(puts=1)

    def extend_entry(self, key: Any, lifetime: Lifetime, written_ms: int) -> ExtendAnswer:
        """Give ``key``'s entry a new ``lifetime`` from now without rewriting its value
        (its deadlines rewritten in place, and PEXPIRE: one small round trip), if it is
        still the write made at ``written_ms``: ``"extended"``. ``"overtaken"``: another
        write replaced it meanwhile (newer: left alone). ``"write"``: write the value
        instead (the key is gone, or its entry cannot store the step)."""
        arguments = self._extend_arguments(key, lifetime, written_ms)
        if arguments is None:
            return "write"
        try:
            try:
                answer = self.client.execute_command("EVALSHA", EXTEND_ENTRY_SHA, *arguments)
            except NoScriptError:  # first use on this server (or after a restart): load it
                answer = self.client.execute_command("EVAL", EXTEND_ENTRY, *arguments)
        except RedisError as error:
            raise self._failure("EVALSHA (extend)", error) from error
        return EXTEND_ANSWERS[int(answer)]

    def add(self, key: Any, value: Any, ttl: TTL | None = None, value_type: Any = None) -> bool:
        """Store ``value`` only if the key holds no fresh value; True if it was stored.
        Atomic: of concurrent ``add`` calls of one key (from any process), one wins."""
        return self.add_entry(key, value, self.lifetime(ttl), 0.0, value_type)

    def add_entry(
        self,
        key: Any,
        value: Any,
        lifetime: Lifetime,
        load_seconds: float = 0.0,
        value_type: Any = None,
    ) -> bool:
        """``add`` for ``lifetime`` (see ``set_entry``)."""
        stored = bool(self._script(self._add_call(key, value, lifetime, load_seconds, value_type)))
        if stored:
            self._count(puts=1)
        return stored

    def touch(self, key: Any, ttl: TTL | None = None) -> bool:
        """Give the key's fresh value a new TTL from now (``None``: the layer default; ``0``
        deletes it), without rewriting it; False if it holds none."""
        return self.touch_entry(key, self.lifetime(ttl))

    def touch_entry(self, key: Any, lifetime: Lifetime) -> bool:
        """``touch`` with a whole ``lifetime`` (fresh, stale, refresh point)."""
        return bool(self._script(self._touch_call(key, lifetime)))

    def incr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """Add ``delta`` to the key's counter atomically and return the new count; the
        counter keeps its TTL. A missing key starts at 0, living ``ttl`` (``None``: the
        layer default). Raises ``TypeError`` if the value is not an integer, and
        ``OverflowError`` beyond +-2**53 (Redis scripts count in doubles)."""
        return self.incr_entry(key, delta, self.lifetime(ttl))

    def incr_entry(self, key: Any, delta: int, lifetime: Lifetime) -> int:
        """``incr``; ``lifetime`` is a new counter's."""
        return int(self._script(self._incr_call(key, delta, lifetime)))

    def take_lease(self, key: Any, token: str, lease_ms: int) -> int:
        """Take ``key``'s fleet lease for ``lease_ms`` if no instance holds it: 0, taken;
        else the milliseconds the holder's lease has left (see ``lease.py``)."""
        return int(self._script(take_call(self.lease_key(key), token, lease_ms)))

    def release_lease(self, key: Any, token: str) -> bool:
        """End ``key``'s fleet lease if ``token`` still holds it."""
        return bool(self._script(release_call(self.lease_key(key), token)))

    def decr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """``incr`` by ``-delta``."""
        return self.incr(key, -checked_delta(delta), ttl)

    def _script(self, call: ScriptCall) -> Any:
        args = (1, call.redis_key, *call.args)
        try:
            try:
                return self.client.execute_command("EVALSHA", call.script.sha, *args)
            except NoScriptError:  # the first run on this server (or after SCRIPT FLUSH)
                return self.client.execute_command("EVAL", call.script.text, *args)
        except RedisError as error:
            raise self._script_failure(call, error) from error

    def _read(self, *command: str) -> Any:
        try:
            return fastpath.read(self.client, self.is_cluster, *command)
        except RedisError as error:
            raise self._failure(command[0], error) from error

    def delete(self, key: Any) -> bool:
        """Remove the key; True if it existed."""
        redis_key = self.redis_key(key)
        try:
            return bool(self.client.delete(redis_key))
        except RedisError as error:
            raise self._failure("DEL", error) from error

    def delete_many(self, keys: Iterable[Any]) -> int:
        """Remove the keys in one round trip; the number that existed."""
        redis_keys = self._redis_keys(as_list(keys))
        if not redis_keys:
            return 0
        try:
            return int(self.client.delete(*redis_keys))
        except RedisError as error:
            raise self._failure("DEL", error) from error

    def contains(self, key: Any) -> bool:
        """Whether the key is stored (does not count as a read)."""
        redis_key = self.redis_key(key)
        try:
            return bool(self.client.exists(redis_key))
        except RedisError as error:
            raise self._failure("EXISTS", error) from error

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def remaining_ttl(self, key: Any) -> float | None:
        """Seconds until the key expires (``math.inf``: never), or ``None`` if absent."""
        redis_key = self.redis_key(key)
        try:
            return self._seconds_left(self.client.pttl(redis_key))
        except RedisError as error:
            raise self._failure("PTTL", error) from error

    def clear(self) -> int:
        """Delete every key under this layer's prefix, a batch at a time (SCAN + UNLINK:
        Redis never blocks on it; on a cluster, every primary is scanned). Returns how many
        were deleted. Refuses without a prefix, which would empty the whole database. The
        backplane's stream stays (``STREAM_SUFFIX``: its ids must keep growing)."""
        pattern = self._match_pattern()
        kept = self.kept_by_clear
        deleted = 0
        batch: list[bytes] = []
        try:
            for redis_key in self.client.scan_iter(match=pattern, count=SCAN_BATCH):
                if redis_key in kept:
                    continue
                batch.append(redis_key)
                if len(batch) == SCAN_BATCH:
                    deleted += int(self.client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self.client.unlink(*batch))
        except RedisError as error:
            raise self._failure("SCAN/UNLINK", error) from error
        return deleted

    def read_marks(self) -> dict[bytes, bytes]:
        """The tag and prefix invalidation marks of this prefix (``core/tags.py``)."""
        try:
            return dict(self.client.hgetall(self.marks_key))
        except RedisError as error:
            raise self._failure("HGETALL", error) from error

    def write_marks(self, fields: list[str], at_ms: int) -> None:
        """Record invalidations at ``at_ms`` (one field per tag or prefix); the hash lives
        ``MARK_SECONDS`` after the latest."""
        pipeline = self.client.pipeline(transaction=False)
        pipeline.hset(self.marks_key, mapping=dict.fromkeys(fields, at_ms))
        pipeline.pexpire(self.marks_key, int(MARK_SECONDS * 1000))
        try:
            pipeline.execute()
        except RedisError as error:
            raise self._failure("HSET", error) from error

    def reencrypt(self) -> int:
        """Rewrite every value under this layer's prefix that is sealed under an older
        key with the active one (``Encryption``), a SCAN batch at a time; each only if it
        is still the value read, keeping its expiry. Returns how many were rewritten;
        after it, the old key may be dropped from the ring."""
        rewritten = 0
        try:
            for redis_key in self.client.scan_iter(match=self._match_pattern(), count=SCAN_BATCH):
                try:
                    key = redis_key.decode()
                except UnicodeDecodeError:  # not a key this layer wrote
                    continue
                data = self.client.get(key)
                call = None if data is None else self._resealed(key, data)
                if call is not None:
                    rewritten += int(self._script(call))
        except RedisError as error:
            raise self._failure("SCAN/GET", error) from error
        return rewritten

    def get_many(self, keys: Iterable[Any], value_type: Any = None) -> dict[Any, Any]:
        """The fresh hits among ``keys``, in one round trip (MGET; on a cluster an MGET per
        hash slot in one pipeline, and a GET per key of a slot that is being migrated: see
        ``cluster.py``)."""
        wanted = as_list(keys)
        if not wanted:
            return {}
        redis_keys = self._redis_keys(wanted)
        return self._found_many(wanted, self._read_many(redis_keys), value_type, True, redis_keys)

    def get_entries(self, keys: Iterable[Any], value_type: Any = None) -> dict[Any, Entry]:
        """``get_entry`` of every key held, in one round trip."""
        wanted = as_list(keys)
        if not wanted:
            return {}
        redis_keys = self._redis_keys(wanted)
        values = self._read_many(redis_keys)
        return self._found_many(wanted, values, value_type, False, redis_keys)

    def get_fresh(
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
        values = self._read_many(redis_keys)
        return self._fresh_many(wanted, values, value_type, redis_keys, entries, True)

    def _read_many(self, redis_keys: list[str]) -> list[Any]:
        try:
            if self.is_cluster:
                return read_many(self.client, redis_keys, self._moving_slots)
            values: list[Any] = fastpath.read(self.client, False, "MGET", *redis_keys)
            return values
        except RedisError as error:
            raise self._failure("MGET", error) from error

    def set_many(
        self, mapping: Mapping[Any, Any], ttl: TTL | None = None, value_type: Any = None
    ) -> None:
        """Store every item in one pipeline. Every value is encoded first: if one cannot
        be, nothing is written."""
        self.set_many_entries(mapping, self.lifetime(ttl), 0.0, value_type)

    def set_many_entries(
        self,
        mapping: Mapping[Any, Any],
        lifetime: Lifetime,
        load_seconds: float = 0.0,
        value_type: Any = None,
    ) -> None:
        """``set_entry`` every item, in one pipeline."""
        pipeline = self._write_pipeline(mapping, lifetime, load_seconds, value_type)
        if pipeline is None:
            return
        try:
            pipeline.execute()
        except RedisError as error:
            raise self._failure("pipeline SET", error) from error
        self._count(puts=len(mapping))

    def write_packed(self, writes: list[PackedWrite], late: bool = False) -> None:
        """Send encoded writes (``encode_write`` / ``encode_delete``): the write-behind
        queue's flush. One script call on one server (``writebatch.py``); a pipeline of
        commands on a cluster, and for writes that go only over older values (``late``,
        or their own ``only_if_newer``: see ``write_commands``)."""
        if not writes:
            return
        scripted = not (late or self.is_cluster or self.refuses_scripts)
        batch = script_batch(writes) if scripted else None
        try:
            if batch is not None:
                try:
                    for arguments in batch.calls:
                        self._write_batch(arguments)
                except ResponseError as error:
                    if not scripts_refused(error):
                        raise
                    self.note_scripts_refused(error)  # none ran: send the batch as commands
                    batch = None
            if batch is None:
                commands = write_commands(writes, late, self.is_cluster)
                fastpath.write(self.client, self.is_cluster, commands)
        except RedisError as error:
            raise self._failure("pipeline SET", error) from error
        self._count(puts=sets_in(writes) if batch is None else batch.sets)

    def _write_batch(self, arguments: tuple[Any, ...]) -> None:
        try:
            fastpath.read(self.client, False, "EVALSHA", WRITE_BATCH.sha, 0, *arguments)
        except NoScriptError:  # the first batch on this server (or after SCRIPT FLUSH)
            fastpath.read(self.client, False, "EVAL", WRITE_BATCH.text, 0, *arguments)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def _client_for(
    url: str, cluster: bool, max_connections: int | None, options: dict[str, Any]
) -> redis.Redis | redis.cluster.RedisCluster:
    options = client_options(options, Retry)
    if cluster:
        if max_connections is not None:
            options = {**options, "max_connections": max_connections}
        return redis.cluster.RedisCluster.from_url(url, **options)
    if max_connections is None:
        return redis.Redis.from_url(url, **options)
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections, **options)
    return redis.Redis.from_pool(pool)  # the client owns, and closes, the pool


__all__ = ["RedisLayer"]
