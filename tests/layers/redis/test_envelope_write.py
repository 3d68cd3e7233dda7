"""The one-step encoding of the common write (``_core/envelope_write``, both twins) against
the general path (the serializer's ``dumps``, ``key_check``, ``wrap_at``), on random keys,
values, lifetimes, times and load times: every write it encodes is the general path's, byte
for byte; every write the general path refuses (an error the caller must see) it hands back
(``None``); the two twins agree exactly. The layers never connect."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multilayercache import RedisLayer, SerializationError
from multilayercache.core.entry import deltas, key_check, wrap_at
from multilayercache.core.freshness import Lifetime
from multilayercache.layers.redis.codec import PackedWrite
from multilayercache.serializers import MsgpackSerializer

from support import IMPLEMENTATIONS

TWINS = IMPLEMENTATIONS  # (each twin's classes and functions, support.TWINNED)
fuzz = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Opaque:
    """A value MessagePack cannot represent."""


plain_data = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
    | st.binary(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)  # fmt: skip
values = plain_data | st.sampled_from([2**64, -(2**63) - 1, Opaque(), [[[[1]]]], {"a": Opaque()}])
keys = st.text(max_size=12) | st.sampled_from(["k", "é", "\ud800", "x" * 300]) | st.integers()
times = st.integers(0, 2**62) | st.sampled_from([-(2**63), 2**63 - 1, 2**63, 1.5, 10**30])
durations = st.floats(0, 1e12) | st.sampled_from([math.inf, 0.0, 1e300])
load_times = st.floats() | st.sampled_from([0.0, 3.4028235e38, 3.4028236e38, 1e39, math.inf])
prefixes = st.sampled_from(["", "p:", "é-pre:", "x" * 40])


def serializer() -> MsgpackSerializer:
    return MsgpackSerializer(max_depth=3, max_items=40)  # small bounds: some values pass them


def general(
    prefix: str, key: Any, value: Any, now_ms: Any, load: float, lifetime: Lifetime, ms: Any
) -> PackedWrite:
    """What the general path writes (or raises)."""
    if not isinstance(key, str):
        raise TypeError("not a str key")
    redis_key = prefix + key
    payload = serializer().dumps(value)
    data = wrap_at(now_ms, deltas(lifetime), load, key_check(redis_key), payload)
    expires_at = None if ms is None else (now_ms + ms) / 1000
    return PackedWrite(redis_key, data, ms, expires_at, now_ms, False)


@fuzz
@given(
    prefix=prefixes,
    key=keys,
    value=values,
    now_ms=times,
    load=load_times,
    ttl=durations,
    stale=durations,
    refresh=durations,
    ms=st.none() | st.integers(0, 2**63),
)
def test_the_common_write_is_the_general_one_byte_for_byte(
    prefix, key, value, now_ms, load, ttl, stale, refresh, ms
) -> None:
    lifetime = Lifetime(ttl, stale, refresh)
    try:
        expected: PackedWrite | None = general(prefix, key, value, now_ms, load, lifetime, ms)
    except Exception:  # noqa: BLE001 (any error: the caller must see it, from the general path)
        expected = None
    made = []
    for twin in TWINS:
        encoder = twin.WriteEncoder(PackedWrite, prefix, serializer().untyped_encode, 3, 40)
        write = encoder.write(key, value, now_ms, load, deltas(lifetime), ms)
        if expected is None:
            assert write is None, twin.name
        elif write is not None:
            assert type(write) is PackedWrite
            assert write == expected, twin.name
            assert [type(field) for field in write] == [type(field) for field in expected]
        made.append(write)
    assert all(write == made[0] for write in made)  # the twins agree, None or not


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
def test_the_common_writes_of_a_plain_layer_take_the_one_step_path(twin, monkeypatch) -> None:
    # The shapes a write-behind set() has: both twins encode them (never None), as the
    # general path would have.
    encoder = twin.WriteEncoder(PackedWrite, "p:", MsgpackSerializer().untyped_encode, 64, 10**6)
    value = {"id": 1, "name": "product", "price": 9.99, "tags": ["a", "b"]}
    for key in ["k", "ключ", "x" * 300]:
        for lifetime in [Lifetime(3600.0), Lifetime(10.0, 5.0, 3.0), Lifetime(math.inf)]:
            now = time.time_ns() // 1_000_000
            ms = RedisLayer._expiry_ms(lifetime)
            write = encoder.write(key, value, now, 0.0, deltas(lifetime), ms)
            assert write is not None
            original = MsgpackSerializer()
            assert write.data == wrap_at(
                now, deltas(lifetime), 0.0, key_check("p:" + key), original.dumps(value)
            )


def layer(**options: Any) -> RedisLayer:
    return RedisLayer("redis://127.0.0.1:9/0", prefix="ew:", **options)


@pytest.mark.parametrize(
    "lifetime",
    [Lifetime(None), Lifetime(60.0, 30.0, 20.0), Lifetime(math.inf), Lifetime(60.0, tags=("t",))],
    ids=["default", "stale-and-refresh", "forever", "tagged"],
)
@pytest.mark.parametrize("key", ["k", "é", "\ud800", "x" * 300])
def test_encode_write_writes_what_the_general_path_writes(lifetime, key, monkeypatch) -> None:
    now_ns = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: now_ns)
    fast, slow = layer(), layer()
    slow._common_writer = None  # the general path only
    assert fast._common_writer is not None
    value = {"n": 1, "s": "x" * 10}
    try:
        expected = slow.encode_write(key, value, lifetime)
    except UnicodeEncodeError:  # a key without UTF-8: both raise it
        with pytest.raises(UnicodeEncodeError):
            fast.encode_write(key, value, lifetime)
        return
    assert fast.encode_write(key, value, lifetime) == expected
    assert fast.encode_write(key, value, lifetime, 1.25) == slow.encode_write(
        key, value, lifetime, 1.25
    )


def test_an_unencodable_value_raises_the_serializers_error_from_encode_write() -> None:
    with pytest.raises(SerializationError, match="cannot encode a value of type 'Opaque'"):
        layer().encode_write("k", Opaque(), Lifetime(60.0))
    with pytest.raises(SerializationError, match="beyond 64 bits"):
        layer().encode_write("k", 2**64, Lifetime(60.0))
    deep = layer(serializer=MsgpackSerializer(max_depth=2))
    with pytest.raises(SerializationError, match="max_depth=2"):
        deep.encode_write("k", [[[1]]], Lifetime(60.0))


def test_layers_that_seal_or_compress_have_no_one_step_path() -> None:
    # Their bytes are not MessagePack behind the envelope: the general path writes them.
    from multilayercache.serializers.encrypted import Encryption

    assert layer(compression="zlib")._common_writer is None
    assert layer(encryption=Encryption({"k": bytes(range(32))}))._common_writer is None
    assert layer()._common_writer is not None


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
def test_the_encoder_refuses_a_result_class_that_is_not_a_plain_tuple(twin) -> None:
    with pytest.raises(TypeError, match="named tuple"):
        twin.WriteEncoder(dict, "p:", MsgpackSerializer().untyped_encode, 64, 10**6)
