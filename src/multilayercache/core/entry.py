"""The envelope around a value in a shared layer: when it was written, when a refresh is due,
when it turns stale and when it is gone, how long it took to load, and room for the versions
of its tags.

    byte 0       ENVELOPE_TAG (0x03): never a serializer's first byte (0x01, 0x02)
    byte 1       format version (1)
    8 bytes x 4  written, refresh due, stale from, gone at: ms since the epoch, big-endian,
                 -1 for "never"
    4 bytes      load time, float32 seconds
    2 bytes      number of tags, then per tag: 1 byte name length, name, 8 bytes version
    the rest     the serializer's bytes (they start with its own tag)

Times are wall-clock milliseconds, so that every process reading the entry agrees on it
(to within their clocks' skew). Data written before envelopes existed (a serializer's bytes
alone) is still read: as fresh, for as long as Redis keeps it.
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

from .errors import SerializationError, UntrustedDataError
from .freshness import Entry, Lifetime

ENVELOPE_TAG = 0x03
FORMAT_VERSION = 1
_HEADER = struct.Struct(">BBqqqqfH")
_TAG_VERSION = struct.Struct(">q")
NEVER = -1


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
    parts = [
        _HEADER.pack(
            ENVELOPE_TAG,
            FORMAT_VERSION,
            envelope.written_ms,
            envelope.refresh_ms,
            envelope.stale_ms,
            envelope.gone_ms,
            envelope.load_seconds,
            len(envelope.tags),
        )
    ]
    for name, version in envelope.tags:
        encoded = name.encode()
        if len(encoded) > 255:
            raise SerializationError(f"tag names are at most 255 bytes, got {name[:40]!r}...")
        parts += [bytes([len(encoded)]), encoded, _TAG_VERSION.pack(version)]
    parts.append(payload)
    return b"".join(parts)


def unwrap(data: bytes) -> tuple[Envelope | None, memoryview]:
    """The envelope (``None`` for data written without one) and the serializer's bytes."""
    view = memoryview(data)
    if not data or data[0] != ENVELOPE_TAG:
        return None, view
    if len(data) < _HEADER.size:
        raise UntrustedDataError("truncated cache envelope")
    tag, version, written, refresh, stale, gone, load, tag_count = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise UntrustedDataError(f"cache envelope version {version} is not known here")
    offset = _HEADER.size
    tags = []
    try:
        for _ in range(tag_count):
            length = data[offset]
            name = bytes(view[offset + 1 : offset + 1 + length]).decode()
            offset += 1 + length
            (tag_version,) = _TAG_VERSION.unpack_from(data, offset)
            offset += _TAG_VERSION.size
            tags.append((name, tag_version))
    except (IndexError, struct.error, UnicodeDecodeError):
        raise UntrustedDataError("corrupt tags in a cache envelope") from None
    envelope = Envelope(written, refresh, stale, gone, float(load), tuple(tags))
    return envelope, view[offset:]


def _at(now_ms: int, seconds: float) -> int:
    return NEVER if seconds == math.inf else now_ms + max(0, round(seconds * 1000))


def _left(at_ms: int, now_ms: int) -> float:
    return math.inf if at_ms == NEVER else (at_ms - now_ms) / 1000
