"""What a serializer is, and the format tags that keep serializers apart.

Whoever can write to Redis can put any bytes there, so what a serializer reads back must
never be able to run code. Each encoding starts with a one-byte format tag, so data written
by one serializer is never mistaken for another's.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back.

    A serializer may also take ``value_type=`` on both methods (the type the value is read
    back as); the Redis layers pass it to those that do (``accepts_value_type``).
    """

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def accepts_value_type(serializer: Serializer) -> bool:
    """Whether ``serializer.dumps`` and ``loads`` take ``value_type=``."""
    return accepts(serializer, "value_type")


def binds_data(serializer: Serializer) -> bool:
    """Whether ``serializer.dumps`` and ``loads`` take ``associated_data=``: bytes the
    value is bound to (its Redis key), which they authenticate with it, so that a value
    copied under another key is refused (``SignedPickleSerializer``)."""
    return accepts(serializer, "associated_data")


def accepts(serializer: Serializer, parameter: str) -> bool:
    """Whether ``serializer.dumps`` and ``loads`` both take the keyword ``parameter``."""
    try:
        return all(
            parameter in inspect.signature(method).parameters
            for method in (serializer.dumps, serializer.loads)
        )
    except (TypeError, ValueError):  # a builtin without a signature
        return False


MSGPACK_TAG = b"\x01"
SIGNED_PICKLE_TAG = b"\x02"
ZLIB_TAG = b"\x03"
ZSTD_TAG = b"\x04"
ENCRYPTED_TAG = b"\x05"
