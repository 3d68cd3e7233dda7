"""What both Redis layers do without IO (``RedisCodec``): Redis keys from cache keys, expiry
in milliseconds with jitter, values to bytes and back (as a declared ``value_type``), batch
writes as a pipeline, and the layer's counters.

``RedisLayer`` and ``AsyncRedisLayer`` are this codec plus the calls into redis-py.

Keys are ``str`` (stored as ``prefix + key``, UTF-8). Values go through a ``Serializer``:
MessagePack by default, which cannot run code whatever is in Redis; opt in to pickle with
``SignedPickleSerializer(key=...)``. A value that cannot be encoded raises
``SerializationError`` and nothing is written. A value that cannot be decoded (corrupt, or
forged by whoever can write to Redis) is never trusted: it counts as an error and a miss.

A write without a TTL of its own gets the layer's ``ttl``: one hour unless set otherwise
(``DEFAULT_TTL_SECONDS``), so that a shared layer never keeps keys forever by accident;
``ttl=math.inf`` keeps them until they are deleted.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from redis.exceptions import RedisError

from ...core.decorate import CallKey
from ...core.errors import LayerError, UntrustedDataError
from ...core.log import ThrottledWarning
from ...core.missing import MISSING
from ...core.options import check_jitter, jittered
from ...core.stats import LayerStats
from ...core.ttl import TTL, optional_ttl_seconds
from ...serializers import MsgpackSerializer, Serializer
from ...serializers.base import accepts_value_type

DEFAULT_TTL_SECONDS = 3600.0
"""How long a shared layer keeps a value written without a TTL, unless told otherwise."""

SCAN_BATCH = 500
"""Keys per SCAN call and per UNLINK when ``clear`` empties a prefix."""


class RedisCodec:
    """IO-free state and logic shared by both Redis layers."""

    client: Any  # set by each layer: a sync or an asyncio redis-py client
    url: str | None
    typed_values = True
    """The manager may pass ``value_type=`` to ``get``, ``get_many``, ``set``, ``set_many``."""

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
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        self.name = name
        self.prefix = prefix
        default = optional_ttl_seconds(ttl)
        self.default_ttl = DEFAULT_TTL_SECONDS if default is None else default
        self.ttl_jitter = check_jitter(ttl_jitter)
        self.serializer = serializer or MsgpackSerializer()
        self._dumps = self.serializer.dumps
        self._loads = self.serializer.loads
        self._typed = accepts_value_type(self.serializer)
        loads_many = getattr(self.serializer, "loads_many", None)
        if loads_many is None or not self._typed:
            loads_many = None
        self._loads_many = loads_many or self._loads_each
        self._rng = random.Random()
        self._counter_lock = threading.Lock()
        self._hits = self._misses = self._errors = 0
        self._warn_untrusted = ThrottledWarning()

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

    def _match_pattern(self) -> str:
        """A SCAN pattern matching exactly this layer's keys (the prefix, glob-escaped)."""
        if not self.prefix:
            raise ValueError(
                f"{self.name}: clear() needs a key prefix, or it would delete every key of "
                "the database; give the layer a prefix (or run FLUSHDB yourself)"
            )
        escaped = "".join(f"\\{char}" if char in "*?[]\\" else char for char in self.prefix)
        return escaped + "*"

    def _redis_keys(self, keys: list[Any]) -> list[str]:
        """``redis_key`` of every key."""
        prefix = self.prefix
        try:
            return [prefix + key for key in keys]
        except TypeError:  # not all str: one at a time (call keys, or the error)
            return [self.redis_key(key) for key in keys]

    def _expiry_ms(self, ttl: TTL | None) -> int | None:
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

    @staticmethod
    def _seconds_left(milliseconds: int) -> float | None:
        """What PTTL answered, as ``remaining_ttl`` reports it."""
        if milliseconds == -2:  # no such key
            return None
        if milliseconds == -1:  # no expiry
            return math.inf
        return milliseconds / 1000

    # ---------------------------------------------------------------- values
    def _encode(self, value: Any, value_type: Any = None) -> bytes:
        if value_type is None or not self._typed:
            return self._dumps(value)
        return self._dumps(value, value_type=value_type)

    def _loads_each(self, items: list[bytes], value_type: Any = None) -> list[Any]:
        return [self._load(item, value_type) for item in items]

    def _load(self, data: bytes, value_type: Any) -> Any:
        if value_type is None or not self._typed:
            return self._loads(data)
        return self._loads(data, value_type=value_type)

    def _decode(self, key: Any, data: Any, value_type: Any = None) -> Any:
        """The value stored as ``data``, or ``MISSING`` if it cannot be trusted."""
        if not isinstance(data, bytes):
            raise TypeError(
                "the Redis client must return bytes: create it with "
                "decode_responses=False (the default)"
            )
        try:
            return self._load(data, value_type)
        except UntrustedDataError as error:
            self._count(errors=1)
            self._warn_untrusted("%s: ignoring the stored value of %r: %s", self.name, key, error)
            return MISSING

    def _found(self, key: Any, data: Any, default: Any, value_type: Any = None) -> Any:
        """Account for one read of ``key`` that returned ``data``."""
        if data is not None:
            value = self._decode(key, data, value_type)
            if value is not MISSING:
                self._count(hits=1)
                return value
        self._count(misses=1)
        return default

    def _found_many(
        self, keys: list[Any], values: list[Any], value_type: Any = None
    ) -> dict[Any, Any]:
        """Account for one batch read of ``keys`` (each read counts, repeats too) that
        returned ``values``; return the hits."""
        if None not in values:  # every key found: decode the reply as it is
            try:
                result = dict(zip(keys, self._loads_many(values, value_type), strict=True))
                self._count(hits=len(values))
                return result
            except UntrustedDataError:
                pass  # decode one by one below, keeping the good values
        found_keys = []
        found_data = []
        for key, data in zip(keys, values, strict=True):
            if data is not None:
                found_keys.append(key)
                found_data.append(data)
        result = {}
        hits = 0
        if found_data:
            try:
                decoded = self._loads_many(found_data, value_type)
                result = dict(zip(found_keys, decoded, strict=True))
                hits = len(found_data)
            except UntrustedDataError:  # one bad item: decode one by one, keep the good ones
                for key, data in zip(found_keys, found_data, strict=True):
                    value = self._decode(key, data, value_type)
                    if value is not MISSING:
                        result[key] = value
                        hits += 1
        self._count(hits=hits, misses=len(keys) - hits)
        return result

    def _write_pipeline(
        self, mapping: Mapping[Any, Any], ttl: TTL | None, value_type: Any = None
    ) -> Any:
        """A pipeline, not yet run, that stores every item (``None`` if there is none).
        Every value is encoded before any IO, so one that cannot be encoded writes nothing."""
        plan = [
            (self.redis_key(key), self._encode(value, value_type), self._expiry_ms(ttl))
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

    def _failure(self, operation: str, error: RedisError) -> LayerError:
        """The ``LayerError`` to raise for a failed Redis call (counted)."""
        self._count(errors=1)
        return LayerError(f"{self.name}: {operation} failed: {error}")

    # ---------------------------------------------------------------- stats
    def _count(self, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        with self._counter_lock:
            self._hits += hits
            self._misses += misses
            self._errors += errors

    def stats(self) -> LayerStats:
        """Hits, misses and errors (failed calls and untrusted values) since creation.
        ``size`` is ``None``: counting this layer's keys would mean scanning Redis."""
        with self._counter_lock:
            return LayerStats(
                name=self.name, hits=self._hits, misses=self._misses, errors=self._errors
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


def as_list(keys: Iterable[Any]) -> list[Any]:
    """The keys of a batch read as a list. No need to drop repeats: MGET answers each, and
    the result is a dict anyway."""
    return keys if type(keys) is list else list(keys)
