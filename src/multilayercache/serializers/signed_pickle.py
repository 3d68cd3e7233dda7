"""``SignedPickleSerializer``: any picklable object, signed with HMAC-SHA256 under a secret
key. Only bytes carrying a valid signature are ever unpickled: forged, corrupted or unsigned
bytes raise ``UntrustedDataError`` before ``pickle`` sees them.

The signature also covers ``associated_data``: a Redis layer passes the value's Redis key,
so a signed value copied under another key does not verify. A signed value that pickle
cannot rebuild (its class was renamed or removed by a deploy) is ``UntrustedDataError``
too (cause ``"unpickle"``): a miss, and the loader runs."""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any

from ..core.errors import SerializationError, UntrustedDataError
from .base import SIGNED_PICKLE_TAG


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

    def _signature(self, payload: bytes | memoryview, associated_data: bytes) -> bytes:
        mac = hmac.new(self._key, len(associated_data).to_bytes(4, "big"), hashlib.sha256)
        mac.update(associated_data)
        mac.update(payload)
        return mac.digest()

    def dumps(self, value: Any, value_type: Any = None, associated_data: bytes = b"") -> bytes:
        """``value`` pickled and signed together with ``associated_data`` (pickle keeps
        every type: ``value_type`` is not needed)."""
        try:
            payload = pickle.dumps(value, protocol=self._protocol)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise SerializationError(f"cannot pickle a {type(value).__name__}: {error}") from None
        return SIGNED_PICKLE_TAG + self._signature(payload, associated_data) + payload

    def loads(self, data: bytes, value_type: Any = None, associated_data: bytes = b"") -> Any:
        """The value, if ``data`` carries a valid signature for ``associated_data``."""
        if data[:1] != SIGNED_PICKLE_TAG or len(data) < 33:
            raise UntrustedDataError("unsigned data: refusing to unpickle it")
        view = memoryview(data)
        signature, payload = bytes(view[1:33]), view[33:]
        if not hmac.compare_digest(signature, self._signature(payload, associated_data)):
            raise UntrustedDataError(
                "bad signature: refusing to unpickle forged or foreign data (or a value "
                "written for another key)",
                cause="forged",
            )
        try:
            return pickle.loads(payload)
        except Exception as error:  # signed by us, yet not rebuildable here: a deploy
            raise UntrustedDataError(
                f"signed value cannot be unpickled here: {type(error).__name__}: {error}",
                cause="unpickle",
            ) from None
