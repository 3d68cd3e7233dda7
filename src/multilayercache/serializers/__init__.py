"""Serializers for values stored in shared layers (Redis): ``MsgpackSerializer`` (the safe
default), ``SignedPickleSerializer`` (any object, refuses unsigned bytes), and
``Compressed`` (another serializer's large values, compressed)."""

from ..core.errors import SerializationError, UntrustedDataError
from .base import Serializer
from .compressed import Compressed
from .msgpack import MsgpackSerializer
from .signed_pickle import SignedPickleSerializer

__all__ = [
    "Compressed",
    "MsgpackSerializer",
    "SerializationError",
    "Serializer",
    "SignedPickleSerializer",
    "UntrustedDataError",
]
