"""What a serializer is, and the format tags that keep serializers apart.

Whoever can write to Redis can put any bytes there, so what a serializer reads back must
never be able to run code. Each encoding starts with a one-byte format tag, so data written
by one serializer is never mistaken for another's.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


MSGPACK_TAG = b"\x01"
SIGNED_PICKLE_TAG = b"\x02"
