"""``Encryption``: a shared layer's values sealed with AES-GCM, each bound to its key.

    RedisLayer(url, encryption=Encryption({"2026-12": key}))          # key: 16, 24 or 32 bytes
    RedisLayer(url, encryption=Encryption.from_environment())        # MULTILAYERCACHE_KEYS
    RedisLayer(url, encryption=Encryption(kms.current_keys))         # a callable: a KMS hook

Whoever can read Redis sees only ciphertext; whoever can write it cannot make this cache
accept a value it did not write. The serializer's bytes are encrypted with AES-GCM under
the *active* key (the first of the key ring), with the value's Redis key as associated
data: a value copied under another key, a flipped bit, a value under a key id the layer
does not hold (a retired key) all fail to open, and read as misses (counted by cause in
``stats().untrusted_reads``).

Sealed form: ``ENCRYPTED_TAG``, the key id (one byte of length, then UTF-8), a random
96-bit nonce, then the ciphertext and its 16-byte tag. The key id is authenticated too.

**Rotation.** Put the new key first and keep the old ones after it: new writes use the new
key, values written under an old one still open, and ``RedisLayer.reencrypt()`` rewrites
them under the active key (compare-and-set, so a newer write is never undone), after which
the old key can be dropped. With a callable, the ring is fetched again (at most every
``reload_every`` seconds, a read waiting for it at most ``fetch_timeout``) when a value
names a key id it does not hold: an instance picks up a rotation another instance started,
and a KMS that hangs or fails costs a read a miss, never a hang or an error.

What is not protected: the envelope around the sealed bytes (when it was written, its
deadlines) is readable and not authenticated, since ``touch`` and refresh rewrite the
deadlines in place; someone who can write Redis can make a value live longer or put back
an older value of the same key. They cannot read it, alter it, or move it to another key.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from hashlib import blake2b

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # an optional extra: say which
    raise ImportError(
        "Encryption needs the cryptography package: pip install 'multilayercache[encryption]'"
    ) from None

from ..core.errors import UntrustedDataError
from .base import ENCRYPTED_TAG

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_SIZES = (16, 24, 32)
ENVIRONMENT_VARIABLE = "MULTILAYERCACHE_KEYS"
log = logging.getLogger("multilayercache")

KeyRing = Mapping[str, bytes | str]
"""Key ids to keys: raw bytes, or base64 text of them. The first is the active key."""


class Encryption:
    """AES-GCM for one layer's values, from a key ring or a callable that returns one (see
    the module docstring).

    >>> encryption = Encryption({"k1": bytes(32)})
    >>> sealed = encryption.seal(b"value", b"app:user:1")
    >>> encryption.open(sealed, b"app:user:1")
    b'value'
    """

    def __init__(
        self,
        keys: KeyRing | Callable[[], KeyRing],
        *,
        reload_every: float = 10.0,
        fetch_timeout: float = 2.0,
    ) -> None:
        self._source = keys if callable(keys) else None
        self.reload_every = reload_every
        self._lock = threading.Lock()
        self._loaded_at = time.monotonic()
        self.fetch_timeout = fetch_timeout
        self._fetching: threading.Event | None = None
        self._ring = _ring(keys() if callable(keys) else keys)

    @classmethod
    def from_environment(cls, variable: str = ENVIRONMENT_VARIABLE) -> Encryption:
        """The key ring in the environment variable ``variable``:
        ``id=base64key,id2=base64key`` (the first is active)."""
        text = os.environ.get(variable, "").strip()
        if not text:
            raise ValueError(f"the environment variable {variable} holds no keys")
        ring: dict[str, str] = {}
        for item in text.split(","):
            key_id, equals, key = item.strip().partition("=")
            if not equals:
                raise ValueError(f"{variable}: each key is id=base64key, got {key_id[:20]!r}")
            ring[key_id] = key
        return cls(ring)

    @property
    def active_id(self) -> str:
        """The id of the key new values are sealed with."""
        return next(iter(self._ring))

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        """``plaintext`` encrypted under the active key, bound to ``associated_data``."""
        key_id = self.active_id
        header = ENCRYPTED_TAG + _id_field(key_id)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ring[key_id][1].encrypt(nonce, plaintext, header + associated_data)
        return header + nonce + sealed

    def open(self, data: bytes | memoryview, associated_data: bytes) -> bytes:
        """The plaintext of ``data`` sealed for ``associated_data``; ``UntrustedDataError``
        (with its cause) if it was not sealed so, or under a key this ring lacks."""
        view = memoryview(data)
        if view[:1] != ENCRYPTED_TAG or len(view) < 2:
            raise UntrustedDataError("not encrypted: this layer reads only encrypted values")
        end = 2 + view[1]
        if len(view) < end + NONCE_BYTES + TAG_BYTES:
            raise UntrustedDataError("truncated encrypted value")
        try:
            key_id = bytes(view[2:end]).decode()
        except UnicodeDecodeError:
            raise UntrustedDataError("corrupt key id in an encrypted value") from None
        cipher = self._cipher(key_id)
        try:
            return cipher.decrypt(
                view[end : end + NONCE_BYTES], view[end + NONCE_BYTES :],
                bytes(view[:end]) + associated_data,
            )  # fmt: skip
        except InvalidTag:
            raise UntrustedDataError(
                "encrypted value does not authenticate (tampered, or written for another key)",
                cause="forged",
            ) from None

    def digest(self, plaintext: bytes) -> int:
        """A 64-bit digest of ``plaintext``, keyed by the active key: what an adaptive
        TTL's entry stores to tell an unchanged value (a digest of the ciphertext would
        differ every time; an unkeyed one would let a reader confirm guesses)."""
        digest_key = self._ring[self.active_id][2]
        return int.from_bytes(blake2b(plaintext, digest_size=8, key=digest_key).digest(), "big")

    def reseal(self, data: bytes | memoryview, associated_data: bytes) -> bytes | None:
        """``data`` sealed again under the active key; ``None`` if it already is."""
        view = memoryview(data)
        if view[:1] == ENCRYPTED_TAG and len(view) >= 2:
            if bytes(view[2 : 2 + view[1]]) == self.active_id.encode():
                return None
        return self.seal(self.open(view, associated_data), associated_data)

    def _cipher(self, key_id: str) -> AESGCM:
        found = self._ring.get(key_id)
        if found is None and self._source is not None:
            self._fetch_ring()
            found = self._ring.get(key_id)
        if found is None:
            raise UntrustedDataError(
                f"encrypted under key id {key_id!r}, which this layer does not hold "
                f"(it holds {', '.join(map(repr, self._ring))})",
                cause="unknown_key_id",
            )
        return found[1]

    def _fetch_ring(self) -> None:
        """Fetch the ring again from the callable (at most every ``reload_every``
        seconds; one fetch for every thread that meets a new key id), waiting for it at
        most ``fetch_timeout``: a KMS that hangs costs a read that long (a miss), never
        more, and the fetch goes on in the background."""
        with self._lock:
            fetching = self._fetching
            if fetching is None:
                if time.monotonic() - self._loaded_at < self.reload_every:
                    return
                self._loaded_at = time.monotonic()
                fetching = self._fetching = threading.Event()
                threading.Thread(
                    target=self._fetch, args=(fetching,), name="mlc-key-ring", daemon=True
                ).start()
        fetching.wait(self.fetch_timeout)

    def _fetch(self, done: threading.Event) -> None:
        assert self._source is not None
        try:
            self._ring = _ring(self._source())
        except Exception:  # the KMS failed: the ring stays as it was, the read misses
            log.exception("multilayercache: fetching the encryption keys failed")
        finally:
            with self._lock:
                self._fetching = None
            done.set()

    def __repr__(self) -> str:  # never the keys themselves
        return f"Encryption(key ids={list(self._ring)}, active={self.active_id!r})"


def _ring(keys: KeyRing) -> dict[str, tuple[bytes, AESGCM, bytes]]:
    """The key ring, checked: ids to (key, cipher, digest key), in the order given."""
    if not isinstance(keys, Mapping) or not keys:
        raise ValueError("give at least one key: {key_id: key}, the active key first")
    ring: dict[str, tuple[bytes, AESGCM, bytes]] = {}
    for key_id, key in keys.items():
        if not isinstance(key_id, str) or not key_id or len(key_id.encode()) > 255:
            raise ValueError(f"key ids are non-empty str of at most 255 bytes, got {key_id!r}")
        if isinstance(key, str):
            try:
                key = base64.b64decode(key, validate=True)
            except binascii.Error:
                raise ValueError(f"key {key_id!r}: not valid base64") from None
        if not isinstance(key, bytes) or len(key) not in KEY_SIZES:
            size = len(key) if isinstance(key, bytes) else type(key).__name__
            raise ValueError(f"key {key_id!r}: AES keys are 16, 24 or 32 bytes, got {size}")
        # A key of its own for digests: one key is never used by two algorithms.
        ring[key_id] = (key, AESGCM(key), blake2b(key, person=b"mlc-digest").digest())
    return ring


def _id_field(key_id: str) -> bytes:
    encoded = key_id.encode()
    return bytes([len(encoded)]) + encoded


__all__ = ["ENVIRONMENT_VARIABLE", "Encryption"]
