"""The common write into a shared layer, encoded in one step (pure-Python twin of
``envelope_write.pyx``).

Every write-behind ``set()`` encodes its value before it returns (``RedisCodec.encode_write``:
a value that cannot be encoded must raise there, not in the sender later). The general path
goes through the serializer's ``dumps``, ``key_check``, the envelope's ``wrap_at`` and a
``PackedWrite``, a Python call each. Nearly every write is the common shape: a ``str`` key,
the default ``MsgpackSerializer`` untyped, no encryption, no tags, no adaptive step. Those
take this path, which builds the same ``PackedWrite``, byte for byte:

    redis_key   prefix + key
    data        the format 3 envelope (``core/entry.wrap_at``): 0x98 0x03, then
                (0xd3 + int64) x 4 (written, refresh due, stale from, gone at: ms since the
                epoch, -1 for "never"), 0xca + float32 load time, 0xce + uint32 CRC-32 of
                the Redis key's UTF-8 bytes, 0x90 (no tags); then MessagePack's tag 0x01
                and the msgspec encoding of the value
    expiry      ``milliseconds`` as given; ``expires_at`` = (now + milliseconds) / 1000

Anything this path cannot do exactly as the general one returns ``None``, and the caller
takes the general path, which then decides (and raises) as it always did: a key that is not
a ``str`` or has no UTF-8 form, a value msgspec refuses or that is beyond the serializer's
bounds (``count_objects``: ``dumps`` refuses those), a time outside int64, a load time
beyond float32. So an unencodable value still raises ``SerializationError`` with the
serializer's own message, from the general path.

The CRC of the Redis key continues the prefix's (``zlib.crc32(key, crc32(prefix))``): the
prefix is hashed once, when the writer is made.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._msgpack_bounds_py import count_objects

# 0x98 0x03, (0xd3, int64) x 4, (0xca, float32), (0xce, uint32), 0x90, 0x01
_HEADER = struct.Struct(">BBBqBqBqBqBfBIBB")
_FIRST_BYTE = 0x98  # core/entry.FIRST_BYTE
_FORMAT_VERSION = 3  # core/entry.FORMAT_VERSION
_NEVER = -1  # core/entry.NO_DEADLINE_MS
_MSGPACK_TAG = 0x01  # serializers/base.MSGPACK_TAG
_INT64 = (-(2**63), 2**63 - 1)
_FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]

Packed = TypeVar("Packed", bound=tuple[Any, ...])


class WriteEncoder(Generic[Packed]):
    """Encodes the common writes of one Redis layer (see the module docstring).

    ``packed_write``: the class of the result (``PackedWrite``, a named tuple of
    ``(redis_key, data, milliseconds, expires_at, written_ms, only_if_newer)``);
    ``encode``: the serializer's msgspec encoder; ``max_depth``, ``max_items``: its bounds.
    """

    def __init__(
        self,
        packed_write: type[Packed],
        prefix: str,
        encode: Callable[[Any], bytes],
        max_depth: int,
        max_items: int,
    ) -> None:
        if not (isinstance(packed_write, type) and issubclass(packed_write, tuple)):
            raise TypeError(f"packed_write must be a named tuple class, got {packed_write!r}")
        self.packed_write = packed_write
        self.prefix = prefix
        self.encode = encode
        self.max_depth = max_depth
        self.max_items = max_items
        self._prefix_crc = zlib.crc32(prefix.encode())

    def write(
        self,
        key: Any,
        value: Any,
        now_ms: int,
        load_seconds: float,
        deltas: tuple[int | None, int | None, int | None],
        milliseconds: int | None,
    ) -> Packed | None:
        """The ``PackedWrite`` of ``value`` under ``key``, written at ``now_ms`` to live
        ``deltas`` (ms from the write to refresh due, stale from, gone at; ``None``: never)
        and kept ``milliseconds`` by Redis (``None``: no expiry); ``None`` when the general
        path must encode it."""
        if type(key) is not str or type(load_seconds) is not float or type(now_ms) is not int:
            return None
        try:
            check = zlib.crc32(key.encode(), self._prefix_crc)
            encoded = self.encode(value)
            count_objects(encoded, 0, self.max_depth, self.max_items)
        except Exception:  # the general path raises the error the caller must see
            return None
        refresh, stale, gone = deltas
        if not all(delta is None or type(delta) is int for delta in deltas):
            return None
        times = (
            now_ms,
            _NEVER if refresh is None else now_ms + refresh,
            _NEVER if stale is None else now_ms + stale,
            _NEVER if gone is None else now_ms + gone,
        )
        if not all(_INT64[0] <= at <= _INT64[1] for at in times):
            return None
        if not abs(load_seconds) <= _FLOAT32_MAX:  # NaN, or beyond float32: left to struct
            return None
        written, refresh_at, stale_at, gone_at = times
        header = _HEADER.pack(
            _FIRST_BYTE, _FORMAT_VERSION,
            0xD3, written, 0xD3, refresh_at, 0xD3, stale_at, 0xD3, gone_at,
            0xCA, load_seconds, 0xCE, check, 0x90, _MSGPACK_TAG,
        )  # fmt: skip
        expires_at = None if milliseconds is None else (now_ms + milliseconds) / 1000
        return tuple.__new__(
            self.packed_write,
            (self.prefix + key, header + encoded, milliseconds, expires_at, now_ms, False),
        )
