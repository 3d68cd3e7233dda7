"""The envelope around a value in a shared layer: when it was written, when a refresh is due,
when it turns stale and when it is gone, how long it took to load, and room for the versions
of its tags, and which key it was written for.

The header is itself a MessagePack array with fixed-width fields, followed by the
serializer's bytes (which start with the serializer's own tag, 0x01 or 0x02):

    0x98                 array of 8
    0x03                 format version 3
    0xd3 + 8 bytes x 4   written, refresh due, stale from, gone at: ms since the epoch,
                         big-endian int64, -1 for "never"
    0xca + 4 bytes       load time, float32 seconds
    0xce + 4 bytes       the key check: CRC-32 of the Redis key the value was written under
    0x9N / 0xdc + 2 b.   tags: an array of [name, version] pairs, each 0x92, 0xd9 + length
                         + UTF-8 name, 0xd3 + int64 version (empty: 0x90)

A value loaded by a cache with adaptive TTLs (``core/adaptive.py``) carries two fields
more, before the tags (format 4, an array of 10, first byte 0x9a):

    0xd0 + 1 byte        its adaptive TTL step, int8
    0xcf + 8 bytes       a digest of the serializer's bytes (BLAKE2b, 64 bits), so that a
                         reload can tell whether the value changed without reading it back

Every other write is format 3. The key check binds a value to its key: bytes copied under
another key (by a bug, or by whoever can write to Redis) are refused, and a batch read can
tell each item's value from its neighbours'. A CRC cannot stop someone who can write any
bytes (MessagePack values are not authenticated, and need not be: decoding them cannot
run code); signed and encrypted values also bind their key inside what they authenticate
(``serializers/``). Formats 1 and 2 (the same without the key check, before version 0.9)
are not read: a cache entry written by an older version is a miss, reloaded once.

Fixed widths let a reader find where
the header ends without a MessagePack parser, and let a Lua script rewrite the deadlines in
place (``extension``: an entry extended without its value crossing the network); being
MessagePack lets a batch of enveloped MessagePack values decode in a single msgspec call
(see ``RedisCodec``). Times are wall-clock milliseconds, so that every process reading the
entry agrees on it (to within their clocks' skew).
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from typing import NamedTuple

from .errors import SerializationError, UntrustedDataError
from .freshness import Entry, Lifetime

FORMAT_VERSION = 3
FIRST_BYTE = 0x98  # a MessagePack array of 8: never a serializer's first byte
STEPPED_VERSION = 4
STEPPED_FIRST_BYTE = 0x9A  # an array of 10: format 3's fields, the step and the digest
# "No deadline" in the envelope's epoch-millisecond fields. A wire value, stored in Redis
# and read by every version: not the L1's in-memory NO_DEADLINE (the largest int64
# nanosecond count of a monotonic clock, _core/timerwheel.pxd), a different clock and unit.
NO_DEADLINE_MS = -1
# array, version, (0xd3, int64) x 4, 0xca + float32, 0xce + uint32 (the key check)
_FIXED = struct.Struct(">BBBqBqBqBqBfBI")
_STEP_AND_DIGEST = struct.Struct(">BbBQ")  # 0xd0, int8, 0xcf, uint64
_TAG = struct.Struct(">BB")  # 0x92 (pair), 0xd9 (str 8) ...; then name, then 0xd3 + int64
_VERSION = struct.Struct(">Bq")
HEADER_SIZE = _FIXED.size + 1  # with no tags
STEPPED_HEADER_SIZE = HEADER_SIZE + _STEP_AND_DIGEST.size
WRITTEN_OFFSET = 2  # 0xd3 + written: which write an entry is
DEADLINES_OFFSET = 11  # (0xd3 + int64) x 3: refresh due, stale from, gone at
KEY_CHECK_OFFSET = 43  # 0xce + uint32
STEP_OFFSET = _FIXED.size  # 0xd0 + int8, in format 4


class Envelope(NamedTuple):
    """The header of an enveloped value; times in epoch milliseconds (``NO_DEADLINE_MS``: -1)."""

    written_ms: int
    refresh_ms: int
    stale_ms: int
    gone_ms: int
    load_seconds: float = 0.0
    tags: tuple[tuple[str, int], ...] = ()
    step: int | None = None
    """The adaptive TTL step (format 2); ``None``: format 1."""
    digest: int = 0
    """The digest of the serializer's bytes (format 4)."""
    key_check: int = 0
    """``key_check`` of the Redis key the value was written under."""

    @classmethod
    def for_write(
        cls, now_ms: int, lifetime: Lifetime, load_seconds: float = 0.0, key_check: int = 0
    ) -> Envelope:
        """The envelope of a value written at ``now_ms`` to live ``lifetime`` (its step is
        set apart, with the digest of the bytes it wraps: ``wrap``)."""
        return cls(
            now_ms,
            _at(now_ms, lifetime.refresh_after),
            _at(now_ms, lifetime.ttl),
            _at(now_ms, lifetime.total),
            load_seconds,
            step=lifetime.step,
            key_check=key_check,
        )

    @classmethod
    def from_fields(cls, fields: list[object]) -> Envelope:
        """An envelope decoded by MessagePack as ``[version, written, refresh, stale, gone,
        load, key check, tags]`` (format 3) or ``[version, written, refresh, stale, gone,
        load, key check, step, digest, tags]`` (format 4)."""
        step: object
        digest: object
        if len(fields) == 8 and fields[0] == FORMAT_VERSION:
            _, written, refresh, stale, gone, load, check, tags = fields
            step, digest = None, 0
        elif len(fields) == 10 and fields[0] == STEPPED_VERSION:
            _, written, refresh, stale, gone, load, check, step, digest, tags = fields
        else:
            raise UntrustedDataError("not a cache envelope this version knows")
        # The fields are objects as MessagePack decoded them, taken as the format says: mypy
        # cannot check a decoded header.
        pairs = tuple((str(name), int(version)) for name, version in tags)  # type: ignore[attr-defined]
        return cls(written, refresh, stale, gone, float(load), pairs, step, digest, check)  # type: ignore[arg-type]

    def entry(self, value: object, now_ms: int) -> Entry:
        """What the value is worth at ``now_ms``."""
        step = self.step
        stepped = step is not None
        return Entry(
            value,
            fresh_for=_left(self.stale_ms, now_ms),
            gone_in=_left(self.gone_ms, now_ms),
            refresh_in=_left(self.refresh_ms, now_ms),
            load_seconds=self.load_seconds,
            step=step if step is not None else 0,
            written_ms=self.written_ms,
            digest=self.digest if stepped else None,
            tags=tuple(name for name, _ in self.tags),
        )


def wrap(envelope: Envelope, payload: bytes) -> bytes:
    """The stored form: the header, then the serializer's ``payload`` (format 4, with the
    envelope's digest, or else the payload's, when the envelope has a step)."""
    stepped = envelope.step is not None
    fixed = _FIXED.pack(
        STEPPED_FIRST_BYTE if stepped else FIRST_BYTE,
        STEPPED_VERSION if stepped else FORMAT_VERSION,
        0xD3,
        envelope.written_ms,
        0xD3,
        envelope.refresh_ms,
        0xD3,
        envelope.stale_ms,
        0xD3,
        envelope.gone_ms,
        0xCA,
        envelope.load_seconds,
        0xCE,
        envelope.key_check,
    )
    if stepped:
        stamp = envelope.digest or digest(payload)  # given when it is keyed (encryption)
        fixed += _STEP_AND_DIGEST.pack(0xD0, envelope.step, 0xCF, stamp)
    return fixed + _tags(envelope.tags) + payload


def digest(payload: bytes | memoryview) -> int:
    """The 64-bit digest of a serializer's bytes stored in format 4: equal bytes, equal
    digests, in every process (unlike ``hash``, which is salted per process)."""
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "big")


def key_check(redis_key: str) -> int:
    """The key check of a value written under ``redis_key``: its CRC-32 (see the module
    docstring: it tells keys apart, it does not authenticate)."""
    return zlib.crc32(redis_key.encode())


_STEPPED_START = bytes([STEPPED_FIRST_BYTE, STEPPED_VERSION])
_MARKERS = (0xD3, 0xD3, 0xD3, 0xD3, 0xCA, 0xCE)  # the type bytes of _FIXED's fields
_FIXED_UNTAGGED = struct.Struct(">BBBqBqBqBqBfBIB")  # _FIXED, then 0x90: no tags


class Deltas(NamedTuple):
    """A lifetime as milliseconds from the write to each deadline (``None``: never), so
    that writes of one lifetime compute them once (``deltas``) and add the time
    (``wrap_at``)."""

    refresh: int | None
    stale: int | None
    gone: int | None


def deltas(lifetime: Lifetime) -> Deltas:
    ttl, stale_ttl, refresh_after = lifetime.ttl, lifetime.stale_ttl, lifetime.refresh_after
    return Deltas(_delta(refresh_after), _delta(ttl), _delta(ttl + stale_ttl))


def _delta(seconds: float) -> int | None:
    return None if seconds == math.inf else max(0, round(seconds * 1000))


def wrap_at(now_ms: int, deltas: Deltas, load_seconds: float, check: int, payload: bytes) -> bytes:
    """``wrap(Envelope.for_write(now_ms, lifetime, load_seconds, check), payload)`` in one
    step, byte for byte, from the lifetime's ``deltas``: the hot path of every write into a
    shared layer (no tags yet)."""
    refresh, stale, gone = deltas
    return (
        _FIXED_UNTAGGED.pack(
            FIRST_BYTE,
            FORMAT_VERSION,
            0xD3,
            now_ms,
            0xD3,
            NO_DEADLINE_MS if refresh is None else now_ms + refresh,
            0xD3,
            NO_DEADLINE_MS if stale is None else now_ms + stale,
            0xD3,
            NO_DEADLINE_MS if gone is None else now_ms + gone,
            0xCA,
            load_seconds,
            0xCE,
            check,
            0x90,
        )
        + payload
    )


def wrap_stepped_at(
    now_ms: int,
    deltas: Deltas,
    load_seconds: float,
    step: int,
    check: int,
    stamp: int,
    payload: bytes,
) -> bytes:
    """``wrap`` of a format 4 envelope (step, digest ``stamp``, no tags) from the
    lifetime's ``deltas``: a loaded value, in a cache with adaptive TTLs. Format 3's
    fixed fields, under format 4's first bytes, then the step and digest, then no tags."""
    fixed = wrap_at(now_ms, deltas, load_seconds, check, b"")[2:-1]  # without 0x98 0x03, 0x90
    return (
        _STEPPED_START + fixed + _STEP_AND_DIGEST.pack(0xD0, step, 0xCF, stamp) + b"\x90" + payload
    )


def envelope_at(now_ms: int, deltas: Deltas, load_seconds: float, check: int) -> Envelope:
    """The envelope ``wrap_at`` writes, as an ``Envelope`` (to add tags or a step)."""
    refresh, stale, gone = deltas
    return Envelope(
        now_ms,
        NO_DEADLINE_MS if refresh is None else now_ms + refresh,
        NO_DEADLINE_MS if stale is None else now_ms + stale,
        NO_DEADLINE_MS if gone is None else now_ms + gone,
        load_seconds,
        key_check=check,
    )


def extension(now_ms: int, deltas: Deltas) -> bytes:
    """The deadline fields (refresh due, stale from, gone at) of an entry extended at
    ``now_ms`` to live ``deltas`` more: written in place at ``DEADLINES_OFFSET``."""
    return b"".join(
        _VERSION.pack(0xD3, NO_DEADLINE_MS if delta is None else now_ms + delta) for delta in deltas
    )


def identity(written_ms: int) -> bytes:
    """The bytes at ``WRITTEN_OFFSET`` of the entry written at ``written_ms``."""
    return _VERSION.pack(0xD3, written_ms)


def step_field(step: int) -> bytes:
    """The bytes at ``STEP_OFFSET`` of a format 4 entry with ``step``."""
    return struct.pack(">Bb", 0xD0, step)


def unwrap(data: bytes | memoryview) -> tuple[Envelope, memoryview]:
    """The envelope and the serializer's bytes; ``UntrustedDataError`` for data without
    an envelope of a format this version writes (fixed widths, as ``wrap`` writes them)."""
    view = memoryview(data)
    if not view or view[0] not in (FIRST_BYTE, STEPPED_FIRST_BYTE):
        raise UntrustedDataError("not a cache envelope of this version (3 or 4)")
    step: int | None = None
    stamp = 0
    try:
        fields = _FIXED.unpack_from(view)
        offset = _FIXED.size
        if view[0] == STEPPED_FIRST_BYTE:
            step_marker, step, digest_marker, stamp = _STEP_AND_DIGEST.unpack_from(view, offset)
            if (step_marker, digest_marker) != (0xD0, 0xCF):
                raise UntrustedDataError("corrupt step in a cache envelope")
            offset += _STEP_AND_DIGEST.size
        count, offset = _array_length(view, offset)
        tags = []
        for _ in range(count):
            pair, marker = _TAG.unpack_from(view, offset)
            length = view[offset + 2]
            name = bytes(view[offset + 3 : offset + 3 + length]).decode()
            offset += 3 + length
            version_marker, version = _VERSION.unpack_from(view, offset)
            offset += _VERSION.size
            if (pair, marker, version_marker) != (0x92, 0xD9, 0xD3):
                raise UntrustedDataError("corrupt tags in a cache envelope")
            tags.append((name, version))
    except (IndexError, struct.error, UnicodeDecodeError):
        raise UntrustedDataError("truncated or corrupt cache envelope") from None
    if fields[2::2] != _MARKERS:
        raise UntrustedDataError("corrupt cache envelope: not the fixed layout")
    _, version, _, written, _, refresh, _, stale, _, gone, _, load, _, check = fields
    if version != (FORMAT_VERSION if step is None else STEPPED_VERSION):
        raise UntrustedDataError(f"cache envelope version {version} is not known here")
    envelope = Envelope(written, refresh, stale, gone, load, tuple(tags), step, stamp, check)
    return envelope, view[offset:]


def _tags(tags: tuple[tuple[str, int], ...]) -> bytes:
    count = len(tags)
    parts = [bytes([0x90 | count]) if count < 16 else b"\xdc" + count.to_bytes(2, "big")]
    for name, version in tags:
        encoded = name.encode()
        if len(encoded) > 255:
            raise SerializationError(f"tag names are at most 255 bytes, got {name[:40]!r}...")
        parts += [
            _TAG.pack(0x92, 0xD9),
            bytes([len(encoded)]),
            encoded,
            _VERSION.pack(0xD3, version),
        ]
    return b"".join(parts)


def _array_length(view: memoryview, offset: int) -> tuple[int, int]:
    first = view[offset]
    if first & 0xF0 == 0x90:
        return first & 0x0F, offset + 1
    if first == 0xDC:
        return int.from_bytes(view[offset + 1 : offset + 3], "big"), offset + 3
    raise UntrustedDataError("corrupt tags in a cache envelope")


def _at(now_ms: int, seconds: float) -> int:
    delta = _delta(seconds)
    return NO_DEADLINE_MS if delta is None else now_ms + delta


def _left(at_ms: int, now_ms: int) -> float:
    return math.inf if at_ms == NO_DEADLINE_MS else (at_ms - now_ms) / 1000
