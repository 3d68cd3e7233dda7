"""Serializers for values stored in shared layers (Redis).

Whoever can write to Redis can put any bytes there, so what a serializer reads back must
never be able to run code:

* ``MsgpackSerializer`` (the default) uses msgspec's MessagePack codec: JSON-like values
  (``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, lists, dicts, plus
  ``datetime``/``date``/``uuid``/``decimal``); tuples come back as lists. Decoding builds
  plain data only.
* ``SignedPickleSerializer`` stores any picklable object, signed with HMAC-SHA256 under a
  secret key: only bytes carrying a valid signature are ever unpickled. Forged, corrupted or
  unsigned bytes raise ``UntrustedDataError`` before ``pickle`` sees them.

Each encoding starts with a one-byte format tag, so data written by one serializer is never
mistaken for another's.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any, Protocol, runtime_checkable

import msgspec


class SerializationError(TypeError):
    """A value could not be encoded; nothing was written."""


class UntrustedDataError(ValueError):
    """Bytes read back could not be decoded safely (corrupt, forged or foreign)."""


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


MSGPACK_TAG = b"\x01"
_MSGPACK_TAG_VALUE = 1  # the tag byte read as MessagePack: a positive fixint
SIGNED_PICKLE_TAG = b"\x02"


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


class SignedPickleSerializer:
    """Pickle, signed with HMAC-SHA256 under ``key``; refuses anything unsigned.

    >>> serializer = SignedPickleSerializer(key=b"a secret of 32 bytes or more....")
    >>> serializer.loads(serializer.dumps({1, 2}))
    {1, 2}
    """

    MIN_KEY_BYTES = 16

    def __init__(self, key: bytes, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, bytes) or len(key) < self.MIN_KEY_BYTES:
            raise ValueError(f"the signing key must be at least {self.MIN_KEY_BYTES} bytes")
        self._key = key
        self._protocol = protocol

    def _signature(self, payload: bytes | memoryview) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def dumps(self, value: Any) -> bytes:
        try:
            payload = pickle.dumps(value, protocol=self._protocol)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise SerializationError(f"cannot pickle a {type(value).__name__}: {error}") from None
        return SIGNED_PICKLE_TAG + self._signature(payload) + payload

    def loads(self, data: bytes) -> Any:
        if data[:1] != SIGNED_PICKLE_TAG or len(data) < 33:
            raise UntrustedDataError("unsigned data: refusing to unpickle it")
        view = memoryview(data)
        signature, payload = bytes(view[1:33]), view[33:]
        if not hmac.compare_digest(signature, self._signature(payload)):
            raise UntrustedDataError("bad signature: refusing to unpickle forged or foreign data")
        return pickle.loads(payload)


__all__ = [
    "MsgpackSerializer",
    "SerializationError",
    "Serializer",
    "SignedPickleSerializer",
    "UntrustedDataError",
]
