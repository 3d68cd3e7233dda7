"""``Encryption``: AES-GCM bound to associated data, key ids, rotation, keys from the
environment or a callable, and clear errors for bad keys."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multilayercache import UntrustedDataError
from multilayercache.serializers.encrypted import Encryption

KEY_1, KEY_2 = bytes(range(32)), bytes(range(100, 116))


@given(plaintext=st.binary(max_size=2_000), data=st.binary(max_size=100))
def test_what_is_sealed_opens_only_with_its_associated_data(plaintext, data) -> None:
    encryption = Encryption({"k1": KEY_1})
    sealed = encryption.seal(plaintext, data)
    assert encryption.open(sealed, data) == plaintext
    assert plaintext not in sealed[20:] or len(plaintext) < 4
    with pytest.raises(UntrustedDataError) as refused:
        encryption.open(sealed, data + b"x")
    assert refused.value.cause == "forged"


@given(plaintext=st.binary(min_size=1, max_size=200), where=st.integers(0, 10_000))
def test_any_flipped_bit_is_refused(plaintext, where) -> None:
    encryption = Encryption({"k1": KEY_1})
    sealed = bytearray(encryption.seal(plaintext, b"key"))
    sealed[where % len(sealed)] ^= 0x10
    with pytest.raises(UntrustedDataError):
        encryption.open(bytes(sealed), b"key")


def test_two_seals_of_one_value_differ() -> None:
    encryption = Encryption({"k1": KEY_1})
    assert encryption.seal(b"same", b"k") != encryption.seal(b"same", b"k")
    assert encryption.digest(b"same") == encryption.digest(b"same") != encryption.digest(b"diff")
    assert Encryption({"k1": KEY_2}).digest(b"same") != encryption.digest(b"same")


def test_rotation_old_keys_open_new_writes_use_the_first() -> None:
    old = Encryption({"k1": KEY_1})
    sealed_by_old = old.seal(b"v", b"key")
    rotated = Encryption({"k2": KEY_2, "k1": KEY_1})
    assert rotated.active_id == "k2" and rotated.open(sealed_by_old, b"key") == b"v"
    resealed = rotated.reseal(sealed_by_old, b"key")
    assert resealed is not None and rotated.reseal(resealed, b"key") is None
    assert rotated.open(resealed, b"key") == b"v"
    with pytest.raises(UntrustedDataError, match="'k2'") as refused:  # dropped k1 meanwhile
        old.open(resealed, b"key")
    assert refused.value.cause == "unknown_key_id"


def test_a_callable_ring_is_fetched_again_for_an_unknown_key_id() -> None:
    rings = [{"k1": KEY_1}, {"k2": KEY_2, "k1": KEY_1}]
    fetched = []

    def kms() -> dict[str, bytes]:
        fetched.append(len(fetched))
        return rings[min(len(fetched) - 1, 1)]

    reader = Encryption(kms, reload_every=0)
    writer = Encryption({"k2": KEY_2})
    assert reader.open(writer.seal(b"v", b"key"), b"key") == b"v"  # fetched k2 on demand
    assert len(fetched) == 2 and reader.active_id == "k2"


def test_keys_from_the_environment(monkeypatch) -> None:
    text = f"new={base64.b64encode(KEY_2).decode()}, old={base64.b64encode(KEY_1).decode()}"
    monkeypatch.setenv("MULTILAYERCACHE_KEYS", text)
    encryption = Encryption.from_environment()
    assert encryption.active_id == "new"
    assert encryption.open(Encryption({"old": KEY_1}).seal(b"v", b"k"), b"k") == b"v"
    monkeypatch.setenv("MULTILAYERCACHE_KEYS", "")
    with pytest.raises(ValueError, match="holds no keys"):
        Encryption.from_environment()
    monkeypatch.setenv("MULTILAYERCACHE_KEYS", "nokey")
    with pytest.raises(ValueError, match="id=base64key"):
        Encryption.from_environment()


@pytest.mark.parametrize(
    ("ring", "message"),
    [
        ({}, "at least one key"),
        ({"k": b"short"}, "16, 24 or 32 bytes, got 5"),
        ({"k": "not base64!"}, "not valid base64"),
        ({"": KEY_1}, "non-empty str"),
        ({"k": 12345}, "got int"),
    ],
)
def test_bad_keys_are_refused_clearly(ring, message) -> None:
    with pytest.raises(ValueError, match=message):
        Encryption(ring)


def test_the_repr_never_shows_a_key() -> None:
    key = os.urandom(32)
    assert key.hex() not in repr(Encryption({"k": key})) and "'k'" in repr(Encryption({"k": key}))


def test_a_kms_that_hangs_or_fails_costs_a_read_a_miss_not_a_hang() -> None:
    import threading
    import time

    release = threading.Event()
    calls = []

    def hanging_kms() -> dict[str, bytes]:
        calls.append(1)
        if len(calls) > 1:
            release.wait(30)  # the KMS stops answering after the first fetch
        return {"k1": KEY_1}

    reader = Encryption(hanging_kms, reload_every=0, fetch_timeout=0.2)
    sealed = Encryption({"k2": KEY_2}).seal(b"v", b"key")
    start = time.monotonic()
    with pytest.raises(UntrustedDataError) as refused:
        reader.open(sealed, b"key")
    assert refused.value.cause == "unknown_key_id" and time.monotonic() - start < 2
    release.set()

    fetches = []

    def failing_kms() -> dict[str, bytes]:
        fetches.append(1)
        if len(fetches) > 1:  # answers at construction, fails when fetched again
            raise ConnectionError("KMS unreachable")
        return {"k1": KEY_1}

    broken = Encryption(failing_kms, reload_every=0)
    with pytest.raises(UntrustedDataError) as refused:
        broken.open(sealed, b"key")
    assert refused.value.cause == "unknown_key_id"
    assert broken.open(broken.seal(b"v", b"key"), b"key") == b"v"  # its ring is intact
