"""What both Redis layers do without IO (``RedisCodec``): Redis keys from cache keys, expiry
in milliseconds with jitter, values to bytes and back (as a declared ``value_type``), batch
writes as a pipeline, and the layer's counters.

``RedisLayer`` and ``AsyncRedisLayer`` are this codec plus the calls into redis-py.

Keys are ``str`` (stored as ``prefix + key``, UTF-8). Values go through a ``Serializer``:
MessagePack by default, which cannot run code whatever is in Redis; opt in to pickle with
``SignedPickleSerializer(key=...)``, and to encryption with ``Encryption`` (AES-GCM). A
value that cannot be encoded raises ``SerializationError`` and nothing is written.

Nothing read from Redis is trusted, and every read decodes through one path (``_unpack``;
the common items, untyped MessagePack in an envelope without tags, first take a one-pass
read, ``_core/envelope_batch``, which accepts a subset of what ``_unpack`` accepts and
builds the same entries, and hands every other item to ``_unpack``): a value
larger than ``max_value_bytes`` (checked before decoding), without an envelope this version
writes, written for another key (the envelope's key check, and the associated data of
signed and encrypted values), that does not open or verify, past the serializer's limits,
or that its serializer cannot rebuild, is a miss for that key alone: counted by cause
(``LayerStats.untrusted``, ``CacheStats.untrusted_reads``), logged at a bounded rate.

A write without a TTL of its own gets the layer's ``ttl``: one hour unless set otherwise
(``DEFAULT_TTL_SECONDS``), so that a shared layer never keeps keys forever by accident;
``ttl=math.inf`` keeps them until they are deleted.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..._build import twin
from ..._forking import register_after_fork
from ...core.decorate import CallKey
from ...core.entry import (
    DEADLINES_OFFSET,
    FIRST_BYTE,
    FORMAT_VERSION,
    STEP_OFFSET,
    STEPPED_FIRST_BYTE,
    STEPPED_VERSION,
    WRITTEN_OFFSET,
    Deltas,
    deltas,
    digest,
    envelope_at,
    extension,
    identity,
    key_check,
    step_field,
    unwrap,
    wrap,
    wrap_at,
    wrap_stepped_at,
)
from ...core.errors import LayerError, SerializationError, UntrustedDataError
from ...core.freshness import Entry, Lifetime
from ...core.log import ThrottledWarning, log
from ...core.options import check_jitter, jittered
from ...core.stats import LayerStats
from ...core.ttl import TTL, optional_ttl_seconds
from ...core.writequeue import DeadWrite
from ...deadletter import DeadLetterRecord
from ...deadletter.into_redis import COMPARE_AND_WRITE
from ...journal import journaled
from ...serializers import MsgpackSerializer, Serializer
from ...serializers.base import accepts_value_type, binds_data
from ...serializers.compressed import Algorithm, Compressed
from .keyspace import glob_escaped
from .lease import LEASE_INFIX
from .scripts import (
    ScriptCall,
    add_call,
    checked_delta,
    incr_call,
    reseal_call,
    script_error,
    touch_call,
)

if TYPE_CHECKING:
    # the twin carries the annotations; the compiled module shares them
    from ..._core import _envelope_batch_py as _envelopes
    from ..._core import _envelope_write_py as _writes
    from ...serializers.encrypted import Encryption
else:
    _envelopes = twin(
        "multilayercache._core.envelope_batch", "multilayercache._core._envelope_batch_py"
    )
    _writes = twin(
        "multilayercache._core.envelope_write", "multilayercache._core._envelope_write_py"
    )

DEFAULT_TTL_SECONDS = 3600.0
"""How long a shared layer keeps a value written without a TTL, unless told otherwise."""

CONNECT_TIMEOUT_SECONDS = 0.5
"""Default ``socket_connect_timeout``: a server that does not accept gives up this soon."""
READ_TIMEOUT_SECONDS = 0.5
"""Default ``socket_timeout``: a server that accepts but does not answer (blackholed, or
stuck) gives up this soon, instead of after the OS's TCP timeout (minutes)."""

NOT_NOW = (ReadOnlyError, OutOfMemoryError, TryAgainError, ClusterDownError, MasterDownError)
"""Answers that refuse a command for now, not for good: a replica during a failover,
``maxmemory`` reached (memory frees as keys expire), a slot or a cluster in transition."""

SCAN_BATCH = 500
"""Keys per SCAN call and per UNLINK when ``clear`` empties a prefix."""

MARKS_SUFFIX = "__mlc:marks"
"""After the prefix: the hash of tag and prefix invalidation marks (``core/tags.py``)."""
STREAM_SUFFIX = "__mlc:backplane"
"""After the prefix: the backplane's stream (``backplane.py``). ``clear`` keeps it: a stream
deleted and written again numbers its entries from the clock afresh, so an entry added in
the millisecond of the last one an instance read gets an id that instance has passed, and
it never reads it (the clear's own announcement among them)."""

DEFAULT_MAX_VALUE_BYTES = 64 * 1024 * 1024
"""The largest value a layer decodes (``max_value_bytes``): anything longer read from Redis
is refused before decoding. A cache entry beyond this is not one a request should wait for."""

EXTEND_ENTRY = f"""
local head = redis.call('GETRANGE', KEYS[1], 0, {STEP_OFFSET + 1})
if #head < {STEP_OFFSET + 1} then return 0 end
local first, version = string.byte(head, 1, 2)
local stepped = first == {STEPPED_FIRST_BYTE} and version == {STEPPED_VERSION}
if not stepped and not (first == {FIRST_BYTE} and version == {FORMAT_VERSION}) then return 0 end
if string.sub(head, {WRITTEN_OFFSET + 1}, {DEADLINES_OFFSET}) ~= ARGV[1] then return 2 end
if ARGV[3] ~= '' then
  if not stepped then return 0 end
  redis.call('SETRANGE', KEYS[1], {STEP_OFFSET}, ARGV[3])
end
redis.call('SETRANGE', KEYS[1], {DEADLINES_OFFSET}, ARGV[2])
if ARGV[4] == '' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 1
"""
"""Extend an entry in place, if it is still the write it was read as (``ARGV[1]``, its
``written`` field): new deadlines (``ARGV[2]``), step (``ARGV[3]``, format 2 only; '' to
leave it) and expiry (``ARGV[4]`` ms, '' for none). The value is not rewritten: one round
trip of a few dozen bytes, whatever its size. 1: extended; 2: overtaken (another write
replaced the entry meanwhile: it is newer, and left alone); 0: the caller must write the
value (the key is gone or holds no envelope, or is format 3 and a step must be stored)."""
ExtendAnswer = Literal["extended", "overtaken", "write"]
EXTEND_ANSWERS: dict[int, ExtendAnswer] = {1: "extended", 2: "overtaken", 0: "write"}
EXTEND_ENTRY_SHA = hashlib.sha1(EXTEND_ENTRY.encode()).hexdigest()


@journaled
class PackedWrite(NamedTuple):
    """An encoded write: SET ``redis_key`` to ``data`` until ``expires_at`` (Unix seconds;
    ``None``: no expiry), or DEL it when ``data`` is ``None``. ``milliseconds``: the expiry
    as it was when the write was encoded (what a dead-letter record shows).
    ``written_ms``: when the write was made (Unix epoch ms; a set's is its envelope's), so
    that a replay of its dead letter can tell it from newer writes of the key.
    ``only_if_newer``: written only over an older value (or none), atomically in Redis: a
    write recovered from a dead process's journal, which other processes may have
    overtaken meanwhile (``recovered_write``). Late write-behind batches are sent so too
    (``write_commands``)."""

    redis_key: str
    data: bytes | None
    milliseconds: int | None
    expires_at: float | None = None
    written_ms: int | None = None
    only_if_newer: bool = False

    def apply(self, client: Any) -> Any:
        """Send it through ``client`` (a client or a pipeline; awaitable for asyncio)."""
        return client.execute_command(*self.command())

    def command(self, script: str = "EVAL") -> tuple[Any, ...]:
        """The Redis command. A write sent late (queued, retried) keeps its deadline: it
        gets what is left of its lifetime, and one whose lifetime is over becomes a DEL,
        since the value it carried must no longer be served. ``only_if_newer``: the
        compare-and-write script, by ``script``: ``"EVAL"`` (its text) or ``"EVALSHA"``
        (its digest, once ``SCRIPT LOAD`` ran on the connection)."""
        milliseconds = self.milliseconds
        if self.expires_at is not None and self.data is not None:
            milliseconds = max(0, math.ceil((self.expires_at - time.time()) * 1000))
        if self.only_if_newer:
            op = "delete" if self.data is None or milliseconds == 0 else "set"
            body = COMPARE_AND_WRITE if script == "EVAL" else COMPARE_AND_WRITE_SHA
            return (
                script, body, 1, self.redis_key,
                "" if self.written_ms is None else self.written_ms, op,
                self.data or b"", "" if milliseconds is None else milliseconds, "",
            )  # fmt: skip
        if self.data is None or milliseconds == 0:  # a delete, or expired already
            return ("DEL", self.redis_key)
        if milliseconds is None:
            return ("SET", self.redis_key, self.data)
        return ("SET", self.redis_key, self.data, "PX", milliseconds)

    @property
    def size(self) -> int:
        """Bytes it holds in a write-behind queue (key and value)."""
        return len(self.redis_key) + (len(self.data) if self.data is not None else 0)


COMPARE_AND_WRITE_SHA = hashlib.sha1(COMPARE_AND_WRITE.encode()).hexdigest()


def write_commands(
    writes: list[PackedWrite], late: bool, is_cluster: bool
) -> list[tuple[Any, ...]]:
    """The commands of a write-behind batch. ``late`` (a retry, or a batch taken while the
    queue recovers from failures: see ``core/writequeue.py``): every write only over an
    older value, since another process may have written its key meanwhile. On one server
    the script is loaded once, first in the batch, and run by its digest; a cluster routes
    each command by key, and gets the script's text each time (late batches are rare)."""
    commands: list[tuple[Any, ...]] = []
    loaded = is_cluster
    for write in writes:
        if late and not write.only_if_newer:
            write = write._replace(only_if_newer=True)
        if write.only_if_newer and not loaded:
            commands.append(("SCRIPT", "LOAD", COMPARE_AND_WRITE))
            loaded = True
        commands.append(write.command("EVAL" if is_cluster else "EVALSHA"))
    return commands


class RedisCodec:
    """IO-free state and logic shared by both Redis layers."""

    client: Any  # set by each layer: a sync or an asyncio redis-py client
    url: str | None
    typed_values = True
    """The manager may pass ``value_type=`` to ``get``, ``get_many``, ``set``, ``set_many``."""
    stores_steps = True
    """Entries carry the adaptive TTL step and value digest of a loaded value (format 2 of
    ``core/entry.py``) when the manager gives one (``Lifetime.step``)."""

    def __init__(
        self,
        prefix: str,
        ttl: TTL | None,
        ttl_jitter: float,
        serializer: Serializer | None,
        name: str,
        compression: Algorithm | Compressed | None = None,
        encryption: Encryption | None = None,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        if isinstance(compression, str):  # large values compressed (serializers/compressed.py)
            serializer = Compressed(serializer, algorithm=compression)
        elif isinstance(compression, Compressed):
            if serializer is not None:
                raise TypeError("give the serializer inside Compressed(serializer), not both")
            serializer = compression
        elif compression is not None:
            raise TypeError(
                f'compression must be "zlib", "zstd" or Compressed(...), got {compression!r}'
            )
        if encryption is not None and not callable(getattr(encryption, "seal", None)):
            raise TypeError(f"encryption must be an Encryption(...), got {encryption!r}")
        if type(max_value_bytes) is not int or max_value_bytes < 1:
            raise ValueError(f"max_value_bytes must be an int >= 1, got {max_value_bytes!r}")
        self.name = name
        self.prefix = prefix
        self.encryption = encryption
        self.max_value_bytes = max_value_bytes
        default = optional_ttl_seconds(ttl)
        self.default_ttl = DEFAULT_TTL_SECONDS if default is None else default
        self.ttl_jitter = check_jitter(ttl_jitter)
        self.serializer = serializer or MsgpackSerializer()
        # Called with the keywords the serializer takes, found at run time (below).
        self._dumps: Callable[..., bytes] = self.serializer.dumps
        self._loads: Callable[..., Any] = self.serializer.loads
        self._typed = accepts_value_type(self.serializer)
        self._binds = binds_data(self.serializer)  # authenticates the Redis key with the value
        self._reads_views = type(self.serializer) is MsgpackSerializer
        # The common read (``_core/_envelope_batch_py.py``): untyped MessagePack, not
        # sealed. A compressed item has another tag: that path hands it to ``_unpack``.
        plain = self.serializer
        if type(plain) is Compressed:
            plain = plain.inner
        self._common_decode: Callable[[Any], Any] | None = None
        self._bounds = (max_value_bytes, 0, 0)
        if type(plain) is MsgpackSerializer and encryption is None:
            self._common_decode = plain.untyped_decode
            self._bounds = (max_value_bytes, plain.max_depth, plain.max_items)
        # The common write (``_core/_envelope_write_py.py``): untyped MessagePack, not
        # sealed; ``encode_write`` hands it every write without tags or a step.
        self._common_writer: _writes.WriteEncoder[PackedWrite] | None = None
        if type(self.serializer) is MsgpackSerializer and encryption is None:
            msgpack = self.serializer
            try:
                self._common_writer = _writes.WriteEncoder(
                    PackedWrite, prefix, msgpack.untyped_encode, msgpack.max_depth,
                    msgpack.max_items,
                )  # fmt: skip
            except UnicodeEncodeError:  # a prefix without UTF-8: the general path says so
                pass
        self._rng = random.Random()
        self._counter_lock = threading.Lock()
        self._hits = self._misses = self._errors = self._puts = 0
        self._untrusted: dict[str, int] = {}
        self._warn_untrusted = ThrottledWarning()
        self.refuses_scripts = False
        """The server refused a write-behind batch's script (an ACL without ``@scripting``):
        batches go as commands from then on (``writebatch.scripts_refused``)."""
        # encode_write's memo: the last lifetime, and its deltas and expiry.
        self._packing_memo: tuple[Lifetime | None, tuple[Any, int | None]] = (None, (None, None))
        # digest_of's memo: the last value digested, its key and its bytes, which the write
        # of a changed value that usually follows then does not encode again.
        self._digested: tuple[Any, Any, str, bytes] | None = None
        register_after_fork(self)

    def _after_fork(self) -> None:
        """In a forked child: a counter lock of its own (a thread of the parent may have
        held this one). redis-py's sync pools notice the new pid and connect afresh."""
        self._counter_lock = threading.Lock()

    # ---------------------------------------------------------------- keys and TTLs
    def redis_key(self, key: Any) -> str:
        """The Redis key for ``key``: the prefix and the key (redis-py sends it as UTF-8;
        handing it a ``str`` saves encoding it twice). A ``@cached`` call's key is stored
        under its canonical text."""
        if isinstance(key, str):
            return self.prefix + key
        if isinstance(key, CallKey):
            return self.prefix + key.text
        raise TypeError(
            f"RedisLayer keys must be str, got {type(key).__name__} {key!r} "
            "(build a string key, e.g. f'user:{user_id}')"
        )

    @property
    def marks_key(self) -> str:
        """The hash of this prefix's tag and prefix invalidations (``core/tags.py``)."""
        return self.prefix + MARKS_SUFFIX

    @property
    def kept_by_clear(self) -> frozenset[str | bytes]:
        """The keys under the prefix that ``clear`` leaves (see ``STREAM_SUFFIX``), as
        text and as bytes: SCAN answers either, as the client decodes."""
        stream = self.prefix + STREAM_SUFFIX
        return frozenset((stream, stream.encode()))

    def lease_key(self, key: Any) -> str:
        """The Redis key of ``key``'s fleet lease (``lease.py``)."""
        return self.prefix + LEASE_INFIX + self.redis_key(key)[len(self.prefix) :]

    def _match_pattern(self) -> str:
        """A SCAN pattern matching exactly this layer's keys (the prefix, glob-escaped)."""
        if not self.prefix:
            raise ValueError(
                f"{self.name}: clear() needs a key prefix, or it would delete every key of "
                "the database; give the layer a prefix (or run FLUSHDB yourself)"
            )
        return glob_escaped(self.prefix) + "*"

    def _redis_keys(self, keys: list[Any]) -> list[str]:
        """``redis_key`` of every key."""
        prefix = self.prefix
        try:
            return [prefix + key for key in keys]
        except TypeError:  # not all str: one at a time (call keys, or the error)
            return [self.redis_key(key) for key in keys]

    def lifetime(self, ttl: TTL | None) -> Lifetime:
        """What a plain ``set`` with ``ttl`` (``None``: the layer default) lives, after the
        layer's jitter: fresh until gone, no refresh point."""
        seconds = optional_ttl_seconds(ttl)
        if seconds is None:
            seconds = self.default_ttl
        return Lifetime(jittered(seconds, self.ttl_jitter, self._rng) or 0.0)

    def _resolved(self, lifetime: Lifetime) -> Lifetime:
        """``lifetime`` with the layer's default TTL where the manager left it to the layer
        (``ttl=None``)."""
        if lifetime.ttl is not None:
            return lifetime
        if self.ttl_jitter:
            ttl = jittered(self.default_ttl, self.ttl_jitter, self._rng) or 0.0
        else:
            ttl = self.default_ttl
        return Lifetime(ttl, lifetime.stale_ttl, lifetime.refresh_after, lifetime.step)

    @staticmethod
    def _expiry_ms(lifetime: Lifetime) -> int | None:
        """Milliseconds Redis keeps a value living ``lifetime``: ``None`` means no expiry,
        0 means "expired already"."""
        seconds = lifetime.total
        if seconds == math.inf:
            return None
        if seconds <= 0:
            return 0
        return max(1, round(seconds * 1000))

    @staticmethod
    def _seconds_left(milliseconds: int) -> float | None:
        """What PTTL answered, as ``remaining_ttl`` reports it."""
        if milliseconds == -2:  # no such key
            return None
        if milliseconds == -1:  # no expiry
            return math.inf
        return milliseconds / 1000

    def _extend_arguments(
        self, key: Any, lifetime: Lifetime, written_ms: int
    ) -> tuple[Any, ...] | None:
        """The ``EVALSHA`` arguments (after the script) that extend ``key``'s entry written
        at ``written_ms`` to live ``lifetime`` from now (see ``EXTEND_ENTRY``); ``None``
        when ``lifetime`` is over already (nothing to extend)."""
        resolved = self._resolved(lifetime)
        milliseconds = self._expiry_ms(resolved)
        if milliseconds == 0:
            return None
        step = b"" if resolved.step is None else step_field(resolved.step)
        return (
            1,
            self.redis_key(key),
            identity(written_ms),
            extension(_now_ms(), deltas(resolved)),
            step,
            b"" if milliseconds is None else milliseconds,
        )

    # ---------------------------------------------------------------- values
    def _pack_at(
        self,
        now_ms: int,
        redis_key: str,
        value: Any,
        lifetime: Deltas,
        load_seconds: float,
        value_type: Any,
        step: int | None = None,
        tags: tuple[str, ...] = (),
    ) -> bytes:
        """The stored form of ``value`` under ``redis_key``: its envelope (with the key's
        check, and its tags), then the serializer's bytes, sealed when the layer
        encrypts."""
        plain = self._payload(redis_key, value, value_type)
        stored = plain
        if self.encryption is not None:
            stored = self.encryption.seal(plain, redis_key.encode())
        check = key_check(redis_key)
        if tags:  # the general form (the fast ones below write no tags)
            envelope = envelope_at(now_ms, lifetime, load_seconds, check)._replace(
                tags=tuple((tag, 0) for tag in tags),
                step=step,
                digest=0 if step is None else self._stamp(plain),
            )
            return wrap(envelope, stored)
        if step is not None:  # a loaded value in a cache with adaptive TTLs: format 4
            stamp = self._stamp(plain)
            return wrap_stepped_at(now_ms, lifetime, load_seconds, step, check, stamp, stored)
        return wrap_at(now_ms, lifetime, load_seconds, check, stored)

    def _payload(self, redis_key: str, value: Any, value_type: Any) -> bytes:
        """The serializer's bytes for ``value`` (those ``digest_of`` just made, if it did)."""
        memo = self._digested  # one read: threads replace it whole
        if memo is not None and memo[0] is value and memo[1] is value_type:
            if memo[2] == redis_key:
                self._digested = None
                return memo[3]
        if self._binds:
            if value_type is None or not self._typed:
                return self._dumps(value, associated_data=redis_key.encode())
            return self._dumps(value, value_type=value_type, associated_data=redis_key.encode())
        if value_type is None or not self._typed:
            return self._dumps(value)
        return self._dumps(value, value_type=value_type)

    def _stamp(self, plain: bytes) -> int:
        """The digest a format 4 entry carries of its serializer's bytes ``plain`` (keyed
        when the layer encrypts: see ``Encryption.digest``)."""
        return digest(plain) if self.encryption is None else self.encryption.digest(plain)

    def digest_of(self, key: Any, value: Any, value_type: Any = None) -> int:
        """The digest a format 4 entry of ``value`` under ``key`` carries
        (``core/entry.py``): equal to a stored entry's when the value encodes to the same
        bytes. Raises ``SerializationError`` for a value that cannot be encoded."""
        self._digested = None
        redis_key = self.redis_key(key)
        payload = self._payload(redis_key, value, value_type)
        self._digested = (value, value_type, redis_key, payload)
        return self._stamp(payload)

    def _unpack(self, key: Any, data: Any, value_type: Any, now_ms: int) -> Entry | None:
        """The entry stored as ``data`` under ``key``, or ``None`` if it cannot be trusted
        (counted by cause, and logged): the one decode path of every read."""
        if not isinstance(data, bytes):
            raise TypeError(
                "the Redis client must return bytes: create it with "
                "decode_responses=False (the default)"
            )
        try:
            return self._decode(key, data, value_type, now_ms)
        except UntrustedDataError as error:
            self._refused(key, error.cause, error)
        except Exception as error:  # e.g. RecursionError, or a serializer's own bug
            self._refused(key, "corrupt", error)
        return None

    def _decode(self, key: Any, data: bytes, value_type: Any, now_ms: int) -> Entry:
        """``_unpack``'s checks, in order; raises ``UntrustedDataError`` for the first
        that fails."""
        if len(data) > self.max_value_bytes:
            raise UntrustedDataError(
                f"{len(data)} bytes, past max_value_bytes={self.max_value_bytes}", cause="limit"
            )
        envelope, payload = unwrap(data)
        redis_key = self.redis_key(key)
        if envelope.key_check != key_check(redis_key):
            raise UntrustedDataError(
                "written for another key (copied or moved): its key check differs",
                cause="wrong_key",
            )
        plain: bytes | memoryview = payload
        if self.encryption is not None:
            plain = self.encryption.open(payload, redis_key.encode())
        # MessagePack decodes the view in place; other serializers get bytes (a copy:
        # with a 10 MB value, the difference between 2x and 3x its size in memory).
        readable = plain if self._reads_views else bytes(plain)
        if not self._binds and (value_type is None or not self._typed):
            return envelope.entry(self._loads(readable), now_ms)  # the usual read
        options: dict[str, Any] = {}
        if value_type is not None and self._typed:
            options["value_type"] = value_type
        if self._binds:
            options["associated_data"] = redis_key.encode()
        return envelope.entry(self._loads(readable, **options), now_ms)

    def note_scripts_refused(self, error: Exception) -> None:
        """The server will not run the write-behind batch's script: send batches as
        commands (said once; a late batch's compare-and-write still needs a script)."""
        if not self.refuses_scripts:
            self.refuses_scripts = True
            log.warning(
                "%s: the server refuses scripts (%s): write-behind batches go as commands, "
                "and retried ones, which need a script, will fail",
                self.name, error,
            )  # fmt: skip

    def _refused(self, key: Any, cause: str, error: Exception) -> None:
        """Count and log (at a bounded rate) a value read back but not trusted."""
        with self._counter_lock:
            self._errors += 1
            self._untrusted[cause] = self._untrusted.get(cause, 0) + 1
        self._warn_untrusted(
            "%s: ignoring the stored value of %r (%s): %s: %s",
            self.name, key, cause, type(error).__name__, error,
        )  # fmt: skip

    @overload
    def _found(
        self, key: Any, data: Any, default: Any, value_type: Any = None, fresh: Literal[True] = True
    ) -> Any: ...

    @overload
    def _found(
        self, key: Any, data: Any, default: None, value_type: Any, fresh: Literal[False]
    ) -> Entry | None: ...

    def _found(
        self, key: Any, data: Any, default: Any, value_type: Any = None, fresh: bool = True
    ) -> Any:
        """Account for one read of ``key`` that returned ``data``: the value (``fresh``:
        only while fresh, for ``get``) or the ``Entry`` (for ``get_entry``), or
        ``default``."""
        if data is not None:
            now_ms = _now_ms()
            decode = self._common_decode if value_type is None else None
            entry = None
            if decode is not None:  # the common read (see ``_found_many``)
                entry = _envelopes.read_one(
                    self.redis_key(key), data, decode, now_ms, *self._bounds
                )
            if entry is None:
                entry = self._unpack(key, data, value_type, now_ms)
            if entry is not None and (not fresh or entry.fresh_for > 0):
                self._count(hits=1)
                return entry.value if fresh else entry
        self._count(misses=1)
        return default

    def _found_many(
        self,
        keys: list[Any],
        values: list[Any],
        value_type: Any = None,
        fresh: bool = True,
        redis_keys: list[str] | None = None,
    ) -> dict[Any, Any]:
        """Account for one batch read of ``keys`` (each read counts, repeats too; their
        ``redis_keys``, if the caller has them) that returned ``values``; the hits, as
        values (``fresh``) or entries."""
        if fresh:
            return self._fresh_many(keys, values, value_type, redis_keys, None, False)
        now_ms = _now_ms()
        decode = self._common_decode if value_type is None else None
        if decode is None:
            entries: dict[Any, Entry] = {}
            leftovers: Iterable[int] = range(len(keys))
        else:  # the common items in one pass; the general path for the others
            entries, leftovers = _envelopes.read_batch(
                keys,
                self._redis_keys(keys) if redis_keys is None else redis_keys,
                values,
                decode,
                now_ms,
                *self._bounds,
            )
        for position in leftovers:
            data = values[position]
            if data is not None:
                entry = self._unpack(keys[position], data, value_type, now_ms)
                if entry is not None:
                    entries[keys[position]] = entry
        self._count_batch(keys, entries, ())
        return entries

    def _fresh_many(
        self,
        keys: list[Any],
        values: list[Any],
        value_type: Any,
        redis_keys: list[str] | None,
        entries: dict[Any, Entry] | None,
        stale_hits: bool,
    ) -> dict[Any, Any]:
        """Account for one batch read of ``keys`` that returned ``values``: the fresh
        values by key, in the order of ``keys``, without an entry per key (the common
        items: ``_core/envelope_batch.read_fresh``). ``entries``: a dict that receives the
        entry of each (for a copy into a faster layer). ``stale_hits``: a stale value read
        counts as a hit (as ``get_entries`` counts it), else as a miss (as ``get_many``)."""
        now_ms = _now_ms()
        decode = self._common_decode if value_type is None else None
        if decode is None:
            hits: dict[Any, Any] = {}
            stale: list[Any] = []
            leftovers: Iterable[int] = range(len(keys))
        else:  # the common items in one pass; the general path for the others
            if redis_keys is None:
                redis_keys = self._redis_keys(keys)
            hits, stale, leftovers = _envelopes.read_fresh(
                keys, redis_keys, values, decode, now_ms, *self._bounds, entries
            )
        if leftovers:
            in_order = not hits  # hits of the general path come after the others'
            found_late = False
            for position in leftovers:
                data = values[position]
                if data is None:
                    continue
                key = keys[position]
                entry = self._unpack(key, data, value_type, now_ms)
                if entry is None:
                    continue
                if entry.fresh_for <= 0:
                    stale.append(key)
                    continue
                hits[key] = entry.value
                found_late = True
                if entries is not None:
                    entries[key] = entry
            if found_late and not in_order:
                hits = {key: hits[key] for key in keys if key in hits}
        self._count_batch(keys, hits, stale if stale_hits else ())
        return hits

    def _count_batch(self, keys: list[Any], found: Mapping[Any, Any], stale: Any) -> None:
        """Count a batch read of ``keys``: a hit for each read of a key ``found`` or
        ``stale``, a miss for each other (each read counts, a repeat too)."""
        if len(found) == len(keys) and not stale:
            hits = len(keys)
        elif stale:
            held = {*found, *stale}
            hits = sum(1 for key in keys if key in held)
        else:
            hits = sum(1 for key in keys if key in found)
        self._count(hits=hits, misses=len(keys) - hits)

    def encode_write(
        self,
        key: Any,
        value: Any,
        lifetime: Lifetime,
        load_seconds: float = 0.0,
        value_type: Any = None,
    ) -> PackedWrite:
        """A write, encoded now and sent later (write-behind): the Redis key, the stored
        bytes and the expiry. Raises ``SerializationError`` at once for a value that cannot
        be encoded, so that nothing unwritable is ever acknowledged."""
        # Every write-behind set() runs this: the lifetime's arithmetic is done once per
        # lifetime (a set() without ttl passes the same object each time).
        memo = self._packing_memo  # one read: threads replace it whole
        if memo[0] is lifetime:
            packing = memo[1]
        else:
            resolved = self._resolved(lifetime)
            packing = (deltas(resolved), self._expiry_ms(resolved))
            if lifetime.ttl is not None or not self.ttl_jitter:  # else jittered each time
                self._packing_memo = (lifetime, packing)
        now_ms = time.time_ns() // 1_000_000  # _now_ms(), inlined
        lifetime_deltas, milliseconds = packing
        writer = self._common_writer
        if (
            writer is not None
            and value_type is None
            and lifetime.step is None
            and not lifetime.tags
            and self._digested is None  # else _payload may hand back digest_of's bytes
        ):
            write = writer.write(key, value, now_ms, load_seconds, lifetime_deltas, milliseconds)
            if write is not None:
                stored = write[1]  # (write.data)
                if stored is not None and len(stored) > self.max_value_bytes:
                    raise self._too_large(key, stored)
                return write
        redis_key = self.redis_key(key)
        data = self._pack_at(
            now_ms,
            redis_key,
            value,
            lifetime_deltas,
            load_seconds,
            value_type,
            lifetime.step,
            lifetime.tags,
        )
        if len(data) > self.max_value_bytes:
            raise self._too_large(key, data)
        # tuple.__new__: the named tuple without its Python-level __new__ (every set()).
        if milliseconds is None:
            return _new(PackedWrite, (redis_key, data, None, None, now_ms, False))
        expires_at = (now_ms + milliseconds) / 1000
        return _new(PackedWrite, (redis_key, data, milliseconds, expires_at, now_ms, False))

    def _too_large(self, key: Any, data: bytes) -> SerializationError:
        """A value whose stored form no read of this layer would take (``_decode`` refuses
        it as ``limit``): written, it would cost Redis its bytes and every reader a miss."""
        return SerializationError(
            f"{self.name}: the value of {key!r:.80} is {len(data)} bytes once encoded, past "
            f"max_value_bytes={self.max_value_bytes}: no read would return it (raise "
            "max_value_bytes on every instance to store it)"
        )

    # ---------------------------------------------------------------- atomic operations
    def _add_call(
        self, key: Any, value: Any, lifetime: Lifetime, load_seconds: float, value_type: Any
    ) -> ScriptCall:
        """The script that stores ``value`` unless the key holds a fresh value (``add``)."""
        write = self.encode_write(key, value, lifetime, load_seconds, value_type)
        assert write.written_ms is not None and write.data is not None
        return add_call(write.redis_key, write.written_ms, write.data, write.milliseconds)

    def _touch_call(self, key: Any, lifetime: Lifetime) -> ScriptCall:
        """The script that gives the key's fresh value ``lifetime`` from now (``touch``)."""
        resolved = self._resolved(lifetime)
        return touch_call(
            self.redis_key(key), _now_ms(), deltas(resolved), self._expiry_ms(resolved)
        )

    def _incr_call(self, key: Any, delta: int, lifetime: Lifetime) -> ScriptCall:
        """The script that adds ``delta`` to the key's counter (``incr``); ``lifetime`` is a
        new counter's."""
        checked_delta(delta)
        serializer = self.serializer
        if isinstance(serializer, Compressed):  # a counter is never large enough to compress
            serializer = serializer.inner
        if not isinstance(serializer, MsgpackSerializer):
            raise TypeError(
                f"{self.name}: incr needs the MessagePack serializer: a counter is computed "
                f"inside Redis, which cannot sign or pickle ({type(self.serializer).__name__})"
            )
        resolved = self._resolved(lifetime)
        return incr_call(
            self.redis_key(key), _now_ms(), delta, deltas(resolved), self._expiry_ms(resolved)
        )

    def _resealed(self, redis_key: str, data: bytes) -> ScriptCall | None:
        """The script that rewrites ``data``, read under ``redis_key``, sealed under the
        active encryption key, header untouched (``reencrypt``); ``None`` when it already
        is, or when it does not open (left to expire: reads refuse it anyway)."""
        if self.encryption is None:
            raise ValueError(f"{self.name}: reencrypt needs a layer with encryption=...")
        try:
            envelope, payload = unwrap(data)
            if envelope.key_check != key_check(redis_key):
                return None
            sealed = self.encryption.reseal(payload, redis_key.encode())
        except UntrustedDataError:
            return None
        if sealed is None:
            return None
        header = data[: len(data) - len(payload)]
        return reseal_call(redis_key, data, header + sealed)

    def _script_failure(self, call: ScriptCall, error: RedisError) -> Exception:
        """What to raise when a script failed: the script's own refusal (``TypeError``,
        ``OverflowError``: nothing was written), or the layer's ``LayerError``."""
        if isinstance(error, ResponseError):
            refused = script_error(str(error))
            if refused is not None:
                return refused
        return self._failure(call.operation, error)

    @staticmethod
    def recovered_write(write: PackedWrite) -> PackedWrite:
        """A write found in a dead process's journal (``multilayercache.journal``), to be
        sent so that it never overwrites a newer value of its key."""
        return write._replace(only_if_newer=True)

    def encode_delete(self, key: Any) -> PackedWrite:
        """A delete, to be sent later (write-behind), stamped with the time it was made."""
        return PackedWrite(self.redis_key(key), None, 0, None, _now_ms())

    def pending_entry(self, key: Any, write: PackedWrite, value_type: Any = None) -> Entry | None:
        """What a read of ``key`` finds while ``write`` waits in the write-behind queue:
        the entry it will store, decoded as a read from Redis would decode it (``None``
        for a delete). Not counted as a hit or a miss of the layer: Redis was not asked."""
        if write.data is None:
            return None
        return self._unpack(key, write.data, value_type, _now_ms())

    def dead_letter_record(self, dead: DeadWrite) -> DeadLetterRecord:
        """The dead-letter record of a write the queue gave up on: the encoded bytes, the
        Redis key, the expiry and when the write was made, so that ``replay_into_redis``
        writes it byte for byte, and only over older values."""
        write: PackedWrite = dead.payload
        return DeadLetterRecord.of(
            dead,
            self.name,
            value=write.data,
            store_key=write.redis_key,
            px=write.milliseconds,
            expires_at=write.expires_at,
            written_ms=write.written_ms,
        )

    def _packed_pipeline(self, writes: Iterable[PackedWrite]) -> Any:
        pipeline = self.client.pipeline(transaction=False)
        for write in writes:
            write.apply(pipeline)
        return pipeline

    def _write_pipeline(
        self,
        mapping: Mapping[Any, Any],
        lifetime: Lifetime,
        load_seconds: float = 0.0,
        value_type: Any = None,
    ) -> Any:
        """A pipeline, not yet run, that stores every item (``None`` if there is none).
        Every value is encoded before any IO, so one that cannot be encoded writes nothing."""
        writes = [
            self.encode_write(key, value, lifetime, load_seconds, value_type)
            for key, value in mapping.items()
        ]
        return self._packed_pipeline(writes) if writes else None

    def _failure(self, operation: str, error: RedisError) -> LayerError:
        """The ``LayerError`` to raise for a failed Redis call (counted). It is transient
        (retried, and counted by the breaker) when Redis could not be reached or did not
        answer in time, not when it answered with an error; retryable too when the answer
        means "not now" (``NOT_NOW``)."""
        self._count(errors=1)
        transient = isinstance(error, (RedisConnectionError, RedisTimeoutError))
        return LayerError(
            f"{self.name}: {operation} failed: {_without_arguments(str(error))}",
            transient=transient,
            retryable=transient or isinstance(error, NOT_NOW),
        )

    # ---------------------------------------------------------------- stats
    def _count(self, hits: int = 0, misses: int = 0, errors: int = 0, puts: int = 0) -> None:
        with self._counter_lock:
            self._hits += hits
            self._misses += misses
            self._errors += errors
            self._puts += puts

    def stats(self) -> LayerStats:
        """Hits, misses, puts (values written), errors (failed calls and untrusted values)
        and untrusted values by cause, since creation.
        ``size`` is ``None``: counting this layer's keys would mean scanning Redis."""
        with self._counter_lock:
            return LayerStats(
                name=self.name,
                hits=self._hits,
                misses=self._misses,
                puts=self._puts,
                errors=self._errors,
                untrusted=dict(self._untrusted),
            )

    def __repr__(self) -> str:
        where = _without_password(self.url) if self.url else type(self.client).__name__
        return f"{type(self).__name__}(name={self.name!r}, {where!r}, prefix={self.prefix!r})"


def _without_password(url: str) -> str:
    """``url`` with any password replaced by ``***`` (reprs end up in logs)."""
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{separator}{user}:***@{host}"


def client_options(options: dict[str, Any], retry_class: type) -> dict[str, Any]:
    """redis-py client options with this package's defaults for what the user left out:
    short timeouts, and no retries of redis-py's own. (redis-py 8 retries 10 times with up
    to a second between tries: a dead server then takes seconds per call to fail; the
    layer's ``LayerPolicy.retry`` and circuit breaker take that role instead.)"""
    defaults = {
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": READ_TIMEOUT_SECONDS,
        "retry": retry_class(NoBackoff(), 0),
    }
    return {**defaults, **options}


_new = tuple.__new__


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def as_list(keys: Iterable[Any]) -> list[Any]:
    """The keys of a batch read as a list. No need to drop repeats: MGET answers each, and
    the result is a dict anyway."""
    return keys if type(keys) is list else list(keys)


_PIPELINE_COMMAND = re.compile(r"Command # (\d+) \(.*?\) of pipeline caused error", re.S)


def _without_arguments(message: str) -> str:
    """redis-py's message for a failed pipeline command, without the command's text: it
    quotes the stored bytes (a value's first ~80), which would go on into the logs, the
    ``LayerError`` and the dead-letter records."""
    return _PIPELINE_COMMAND.sub(r"Command # \1 of pipeline caused error", message, count=1)
