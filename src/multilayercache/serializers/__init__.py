"""Serializers for values stored in shared layers (Redis): ``MsgpackSerializer`` (the safe
default) and ``SignedPickleSerializer`` (any object, refuses unsigned bytes)."""

from ..core.errors import SerializationError, UntrustedDataError
from .base import Serializer
from .msgpack import MsgpackSerializer
from .signed_pickle import SignedPickleSerializer

__all__ = [
    "MsgpackSerializer",
    "SerializationError",
    "Serializer",
    "SignedPickleSerializer",
    "UntrustedDataError",
]
