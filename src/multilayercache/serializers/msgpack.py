"""``MsgpackSerializer``, the safe default: MessagePack via msgspec.

JSON-like values (``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, lists, dicts,
plus ``datetime``/``date``/``uuid``/``decimal``); tuples come back as lists. Decoding builds
plain data only, so nothing in Redis can make it run code.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..core.errors import SerializationError, UntrustedDataError
from .base import MSGPACK_TAG

_MSGPACK_TAG_VALUE = 1  # the tag byte read as MessagePack: a positive fixint


class MsgpackSerializer:
    """The safe default: MessagePack via msgspec (see the module docstring)."""

    def __init__(self) -> None:
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder().decode

    def dumps(self, value: Any) -> bytes:
        try:
            return MSGPACK_TAG + self._encode(value)
        except (TypeError, ValueError, OverflowError) as error:
            raise SerializationError(
                f"cannot encode a {type(value).__name__} with MessagePack ({error}); "
                "store plain data, or use SignedPickleSerializer(key=...)"
            ) from None

    def loads(self, data: bytes) -> Any:
        if data[:1] != MSGPACK_TAG:
            raise UntrustedDataError("not MessagePack data written by multilayercache")
        try:
            return self._decode(data[1:])
        except msgspec.DecodeError as error:
            raise UntrustedDataError(f"corrupt MessagePack data: {error}") from None

    def loads_many(self, items: list[bytes]) -> list[Any]:
        """Decode many values in one msgspec call. The tag byte is itself a MessagePack
        object (the integer 1), so each item is two objects, and the items joined behind an
        array header are an array of tag, value, tag, value... If any item is not valid,
        raise ``UntrustedDataError`` (callers fall back to ``loads`` per item)."""
        count = len(items)
        joined = b"\xdd" + (2 * count).to_bytes(4, "big") + b"".join(items)  # array 32
        try:
            decoded = self._decode(joined)
        except msgspec.DecodeError as error:
            raise UntrustedDataError(f"corrupt MessagePack data: {error}") from None
        tags = decoded[0::2]
        if len(decoded) != 2 * count or tags.count(_MSGPACK_TAG_VALUE) != count:
            raise UntrustedDataError("not MessagePack data written by multilayercache")
        return decoded[1::2]
