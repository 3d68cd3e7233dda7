"""The common read from a shared layer, decoded in one pass (pure-Python twin of
``envelope_batch.pyx``).

A Redis layer reads an entry as an envelope (``core/entry.py``), then the serializer's tag
and the MessagePack value. The general path (``RedisCodec._unpack``) takes any envelope
apart with a parser, and any serializer, for every item. Nearly every item of a read is
the common shape: an envelope without tags, of format 3 or 4, written for this key,
around untyped MessagePack, and the layer neither encrypts nor decodes by type. Those
take this path; anything else is handed back (``leftovers``), item by item, to the
general path, which decides, counts and logs exactly as it always did.

What an item must be here, checked byte by byte on the fixed layout (every check of
``unwrap``, ``RedisCodec._decode`` and ``MsgpackSerializer.loads``, so this path accepts a
subset of what they accept, and builds the same ``Entry``):

* bytes, at most ``max_value_bytes`` long;
* ``0x98 0x03`` (format 3) or ``0x9a 0x04`` (format 4), the type bytes of the fixed fields
  where they belong (``0xd3`` before the four times, ``0xca`` before the load time,
  ``0xce`` before the key check; format 4: ``0xd0`` before the step, ``0xcf`` before the
  digest), then ``0x90``: no tags;
* the key check equal to the CRC-32 of the Redis key's UTF-8 bytes;
* then MessagePack's tag, ``0x01``, and exactly one MessagePack object within the
  serializer's bounds (``count_objects``);
* deadlines that are "never" (-1) or within 2**53 ms of ``now_ms``, so that the seconds
  left are exact in a double (the general path computes them with Python's ints).

The values of every accepted item are decoded in one call of ``decode`` (the serializer's
untyped msgspec decoder): their bytes joined behind one array header. Each was walked on
its own first, so no item's bytes can reach into its neighbour's. If that call fails
anyway (bytes msgspec refuses that the walk accepts: invalid UTF-8, say), every accepted
item is handed back: the general path then refuses the bad one alone.

``read_batch`` answers an entry per item (``get_entries``); ``read_fresh`` the fresh values
only, in the order read, building entries only for a caller that copies them up (a
manager's ``get_many`` below L1, through the layer's ``get_fresh``): for 100 small values,
their entries cost about a third of the whole decode.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from typing import Any, TypeAlias

from ..core.errors import UntrustedDataError
from ..core.freshness import Entry
from ._msgpack_bounds_py import count_objects

FORMAT_3_HEADER = 49
"""Bytes of a format 3 header without tags (``core/entry.HEADER_SIZE``)."""
FORMAT_4_HEADER = 60
"""Bytes of a format 4 header without tags (``core/entry.STEPPED_HEADER_SIZE``)."""
EXACT_MS = 2**53
"""Deadlines further than this from now are left to the general path (see above)."""

# 0x98/0x9a, version, then (0xd3, int64) x 4, (0xca, float32), (0xce, uint32)
_FIXED = struct.Struct(">BBBqBqBqBqBfBI")
_STEP_AND_DIGEST = struct.Struct(">BbBQ")  # 0xd0, int8, 0xcf, uint64
_MARKERS = (0xD3, 0xD3, 0xD3, 0xD3, 0xCA, 0xCE)
_NEVER = -1  # core/entry.NO_DEADLINE_MS
_MSGPACK_TAG = 0x01
_Header: TypeAlias = "tuple[int, int, int, int, float, int, int | None]"
"""``(written, refresh, stale, gone, load, step, digest)``: ``stale`` is when the value
stops being fresh."""


def read_batch(
    keys: list[Any],
    redis_keys: list[str],
    values: list[Any],
    decode: Callable[[bytes], Any],
    now_ms: int,
    max_value_bytes: int,
    max_depth: int,
    max_items: int,
) -> tuple[dict[Any, Entry], list[int]]:
    """The entries of the common items of one batch read (``values[i]`` read under
    ``redis_keys[i]`` for ``keys[i]``; ``None``: not held), and the positions of the items
    left to the general path."""
    accepted, decoded, leftovers = _decoded(
        keys, redis_keys, values, decode, now_ms, max_value_bytes, max_depth, max_items
    )
    entries: dict[Any, Entry] = {}
    for (position, header), value in zip(accepted, decoded, strict=True):
        entries[keys[position]] = _entry(value, header, now_ms)
    return entries, leftovers


def read_fresh(
    keys: list[Any],
    redis_keys: list[str],
    values: list[Any],
    decode: Callable[[bytes], Any],
    now_ms: int,
    max_value_bytes: int,
    max_depth: int,
    max_items: int,
    entries: dict[Any, Entry] | None = None,
) -> tuple[dict[Any, Any], list[Any], list[int]]:
    """``read_batch`` for a reader that wants the fresh values only (a ``get_many``):
    ``(hits, stale, leftovers)``, the fresh values of the common items by key in the order
    read, the keys of the common items that are stale, and the positions left to the
    general path. No entry is built, unless ``entries`` is given: it then receives the
    entry of every fresh value (which a promotion copies up with its lifetime). A key
    asked twice is expected to hold the same bytes both times, as one read answers it."""
    accepted, decoded, leftovers = _decoded(
        keys, redis_keys, values, decode, now_ms, max_value_bytes, max_depth, max_items
    )
    hits: dict[Any, Any] = {}
    stale: list[Any] = []
    for (position, header), value in zip(accepted, decoded, strict=True):
        key = keys[position]
        fresh_until = header[2]
        if fresh_until != _NEVER and fresh_until <= now_ms:  # ``Entry.fresh_for <= 0``
            stale.append(key)
            continue
        hits[key] = value
        if entries is not None:
            entries[key] = _entry(value, header, now_ms)
    return hits, stale, leftovers


def _decoded(
    keys: list[Any],
    redis_keys: list[str],
    values: list[Any],
    decode: Callable[[bytes], Any],
    now_ms: int,
    max_value_bytes: int,
    max_depth: int,
    max_items: int,
) -> tuple[list[tuple[int, _Header]], list[Any], list[int]]:
    """``(accepted, decoded, leftovers)``: the position and header of each common item,
    their values decoded (in the same order), and the positions of the other items held.
    When msgspec refuses the joined values, every item is left over."""
    if len(keys) != len(values) or len(redis_keys) != len(values):
        raise ValueError("keys, redis_keys and values must be as long as each other")
    leftovers: list[int] = []
    accepted: list[tuple[int, _Header]] = []
    payloads: list[bytes] = []
    for position, data in enumerate(values):
        if data is None:
            continue
        header = _common_header(data, redis_keys[position], now_ms, max_value_bytes)
        start = -1 if header is None else _value_start(data)
        if start < 0 or not _one_value(data, start, max_depth, max_items):
            leftovers.append(position)
            continue
        accepted.append((position, header))  # type: ignore[arg-type]
        payloads.append(data[start:])
    if not accepted:
        return accepted, [], leftovers
    joined = b"\xdd" + len(accepted).to_bytes(4, "big") + b"".join(payloads)  # array 32
    try:
        decoded = decode(joined)
    except Exception:  # msgspec refused what the walk let through: item by item, then
        decoded = None
    if type(decoded) is not list or len(decoded) != len(accepted):
        leftovers.extend(position for position, _ in accepted)
        leftovers.sort()
        return [], [], leftovers
    return accepted, decoded, leftovers


def read_one(
    redis_key: str,
    data: Any,
    decode: Callable[[Any], Any],
    now_ms: int,
    max_value_bytes: int,
    max_depth: int,
    max_items: int,
) -> Entry | None:
    """``read_batch`` of one item: its entry, or ``None`` for the general path."""
    header = _common_header(data, redis_key, now_ms, max_value_bytes)
    if header is None:
        return None
    start = _value_start(data)
    if not _one_value(data, start, max_depth, max_items):
        return None
    try:
        value = decode(memoryview(data)[start:])
    except Exception:
        return None
    return _entry(value, header, now_ms)


def _common_header(data: Any, redis_key: str, now_ms: int, max_value_bytes: int) -> _Header | None:
    """``(written, refresh, stale, gone, load, step, digest)`` of an item of the common
    shape, or ``None``."""
    if type(data) is not bytes or len(data) > max_value_bytes:
        return None
    stepped = data[:2] == b"\x9a\x04"
    if not stepped and data[:2] != b"\x98\x03":
        return None
    size = FORMAT_4_HEADER if stepped else FORMAT_3_HEADER
    if len(data) <= size or data[size - 1] != 0x90 or data[size] != _MSGPACK_TAG:
        return None
    fields = _FIXED.unpack_from(data)
    if fields[2::2] != _MARKERS:
        return None
    _, _, _, written, _, refresh, _, stale, _, gone, _, load, _, check = fields
    step, digest = 0, None
    if stepped:
        step_marker, step, digest_marker, digest = _STEP_AND_DIGEST.unpack_from(data, _FIXED.size)
        if (step_marker, digest_marker) != (0xD0, 0xCF):
            return None
    try:
        if check != zlib.crc32(redis_key.encode()):
            return None
    except UnicodeEncodeError:
        return None
    for deadline in (refresh, stale, gone):
        if deadline != _NEVER and abs(deadline - now_ms) >= EXACT_MS:
            return None
    return written, refresh, stale, gone, load, step, digest


def _value_start(data: bytes) -> int:
    """Where the MessagePack value starts: after the header and the tag byte."""
    return (FORMAT_4_HEADER if data[0] == 0x9A else FORMAT_3_HEADER) + 1


def _one_value(data: bytes, start: int, max_depth: int, max_items: int) -> bool:
    try:
        return count_objects(data, start, max_depth, max_items) == 1
    except UntrustedDataError:
        return False


def _entry(value: Any, header: _Header, now_ms: int) -> Entry:
    written, refresh, stale, gone, load, step, digest = header
    return Entry(
        value,
        _left(stale, now_ms),
        _left(gone, now_ms),
        _left(refresh, now_ms),
        load,
        step,
        written,
        digest,
        (),
    )


def _left(at_ms: int, now_ms: int) -> float:
    return math.inf if at_ms == _NEVER else (at_ms - now_ms) / 1000
