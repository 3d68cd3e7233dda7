"""The envelope around a value in a shared layer: when it was written, when a refresh is due,
when it turns stale and when it is gone, how long it took to load, and room for the versions
of its tags.

The header is itself a MessagePack array with fixed-width fields, followed by the
serializer's bytes (which start with the serializer's own tag, 0x01 or 0x02):

    0x97                 array of 7
    0x01                 format version 1
    0xd3 + 8 bytes x 4   written, refresh due, stale from, gone at: ms since the epoch,
                         big-endian int64, -1 for "never"
    0xca + 4 bytes       load time, float32 seconds
    0x9N / 0xdc + 2 b.   tags: an array of [name, version] pairs, each 0x92, 0xd9 + length
                         + UTF-8 name, 0xd3 + int64 version (empty: 0x90)

Fixed widths let a reader find where the header ends without a MessagePack parser, and
being MessagePack lets a batch of enveloped MessagePack values decode in a single msgspec
call (see ``RedisCodec``). Times are wall-clock milliseconds, so that every process reading
the entry agrees on it (to within their clocks' skew). Data written before envelopes
existed (a serializer's bytes alone) is still read: as fresh, for as long as Redis keeps it.
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

from .errors import SerializationError, UntrustedDataError
from .freshness import Entry, Lifetime

FORMAT_VERSION = 1
FIRST_BYTE = 0x97  # a MessagePack array of 7: never a serializer's first byte
NEVER = -1
_FIXED = struct.Struct(">BBBqBqBqBqBf")  # array, version, (0xd3, int64) x 4, 0xca, float32
_TAG = struct.Struct(">BB")  # 0x92 (pair), 0xd9 (str 8) ...; then name, then 0xd3 + int64
_VERSION = struct.Struct(">Bq")
HEADER_SIZE = _FIXED.size + 1  # with no tags


class Envelope(NamedTuple):
    """The header of an enveloped value; times in epoch milliseconds (``NEVER``: -1)."""

    written_ms: int
    refresh_ms: int
    stale_ms: int
    gone_ms: int
    load_seconds: float = 0.0
    tags: tuple[tuple[str, int], ...] = ()

    @classmethod
    def for_write(cls, now_ms: int, lifetime: Lifetime, load_seconds: float = 0.0) -> Envelope:
        """The envelope of a value written at ``now_ms`` to live ``lifetime``."""
        return cls(
            now_ms,
            _at(now_ms, lifetime.refresh_after),
            _at(now_ms, lifetime.ttl),
            _at(now_ms, lifetime.total),
            load_seconds,
        )

    @classmethod
    def from_fields(cls, fields: list[object]) -> Envelope:
        """An envelope decoded by MessagePack as ``[version, written, refresh, stale, gone,
        load, tags]``."""
        if len(fields) != 7 or fields[0] != FORMAT_VERSION:
            raise UntrustedDataError("not a cache envelope this version knows")
        _, written, refresh, stale, gone, load, tags = fields
        pairs = tuple((str(name), int(version)) for name, version in tags)  # type: ignore[attr-defined]
        return cls(written, refresh, stale, gone, float(load), pairs)  # type: ignore[arg-type]

    def entry(self, value: object, now_ms: int) -> Entry:
        """What the value is worth at ``now_ms``."""
        return Entry(
            value,
            fresh_for=_left(self.stale_ms, now_ms),
            gone_in=_left(self.gone_ms, now_ms),
            refresh_in=_left(self.refresh_ms, now_ms),
            load_seconds=self.load_seconds,
        )


def wrap(envelope: Envelope, payload: bytes) -> bytes:
    """The stored form: the header, then the serializer's ``payload``."""
    fixed = _FIXED.pack(
        FIRST_BYTE,
        FORMAT_VERSION,
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
    )
    return fixed + _tags(envelope.tags) + payload


_FIXED_UNTAGGED = struct.Struct(">BBBqBqBqBqBfB")  # _FIXED, then 0x90: no tags


class Deltas(NamedTuple):
    """A lifetime as milliseconds from the write to each deadline (``None``: never), so
    that writes of one lifetime compute them once (``deltas``) and add the time
    (``wrap_at``)."""

    refresh: int | None
    stale: int | None
    gone: int | None


def deltas(lifetime: Lifetime) -> Deltas:
    ttl, stale_ttl, refresh_after = lifetime
    return Deltas(_delta(refresh_after), _delta(ttl), _delta(ttl + stale_ttl))


def _delta(seconds: float) -> int | None:
    return None if seconds == math.inf else max(0, round(seconds * 1000))


def wrap_at(now_ms: int, deltas: Deltas, load_seconds: float, payload: bytes) -> bytes:
    """``wrap(Envelope.for_write(now_ms, lifetime, load_seconds), payload)`` in one step,
    byte for byte, from the lifetime's ``deltas``: the hot path of every write into a
    shared layer (no tags yet)."""
    refresh, stale, gone = deltas
    return (
        _FIXED_UNTAGGED.pack(
            FIRST_BYTE,
            FORMAT_VERSION,
            0xD3,
            now_ms,
            0xD3,
            NEVER if refresh is None else now_ms + refresh,
            0xD3,
            NEVER if stale is None else now_ms + stale,
            0xD3,
            NEVER if gone is None else now_ms + gone,
            0xCA,
            load_seconds,
            0x90,
        )
        + payload
    )


def unwrap(data: bytes | memoryview) -> tuple[Envelope | None, memoryview]:
    """The envelope (``None`` for data written without one) and the serializer's bytes."""
    view = memoryview(data)
    if not view or view[0] != FIRST_BYTE:
        return None, view
    try:
        fields = _FIXED.unpack_from(view)
        count, offset = _array_length(view, _FIXED.size)
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
    _, version, _, written, _, refresh, _, stale, _, gone, _, load = fields
    if version != FORMAT_VERSION:
        raise UntrustedDataError(f"cache envelope version {version} is not known here")
    return Envelope(written, refresh, stale, gone, load, tuple(tags)), view[offset:]


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
    return NEVER if delta is None else now_ms + delta


def _left(at_ms: int, now_ms: int) -> float:
    return math.inf if at_ms == NEVER else (at_ms - now_ms) / 1000
