"""Fuzzing every decode path of the Redis layers (single read, batch read, its one-call fast
path, the write-behind peek) with Hypothesis: random bytes, random MessagePack structures,
valid envelopes with random headers and payloads, mutated honest values, signed pickles of
random objects, under every serializer setup. Whatever the bytes, a read returns a value
or a counted miss, never an exception; and a single read and a batch read of the same
bytes always agree.

The budget is bounded for CI (``FUZZ_EXAMPLES``, 300 examples per test unless set); a
longer run: ``FUZZ_EXAMPLES=20000 pytest tests/faults/test_fuzz_decoding.py``."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multilayercache import Compressed, RedisLayer, SignedPickleSerializer
from multilayercache.core.entry import deltas, key_check, wrap_at, wrap_stepped_at
from multilayercache.core.freshness import Lifetime
from multilayercache.serializers.encrypted import Encryption

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
PREFIX = "fuzz:"
SETUPS = {
    "msgpack": {},
    "zlib": {"compression": "zlib"},
    "signed pickle": {"serializer": SignedPickleSerializer(key=b"s" * 32)},
    "signed pickle, zstd": {
        "serializer": Compressed(SignedPickleSerializer(key=b"s" * 32), algorithm="zstd")
    },
    "encrypted": {"encryption": Encryption({"k": bytes(32)})},
}
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def layer_for(setup: str) -> RedisLayer:
    """A layer that never connects: the tests hand it the bytes a read would receive."""
    return RedisLayer("redis://127.0.0.1:9/0", prefix=PREFIX, **SETUPS[setup])


plain_data = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
    | st.binary(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=20,
)  # fmt: skip


@st.composite
def envelopes(draw: Any, payload: Any) -> bytes:
    """A well-formed envelope (random times, either format, right or wrong key check)
    around ``payload`` bytes."""
    now = draw(st.integers(-(2**62), 2**62))
    lifetime = Lifetime(draw(st.floats(0, 1e6)), draw(st.floats(0, 1e6)))
    check = key_check(PREFIX + "k") if draw(st.booleans()) else draw(st.integers(0, 2**32 - 1))
    load = draw(st.floats(0, 100, width=32))
    if draw(st.booleans()):
        step, stamp = draw(st.integers(-128, 127)), draw(st.integers(0, 2**64 - 1))
        return wrap_stepped_at(now, deltas(lifetime), load, step, check, stamp, payload)
    return wrap_at(now, deltas(lifetime), load, check, payload)


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, cut short, or grown."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "grow"]))
        if action == "flip" and out:
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        elif action == "cut" and out:
            del out[draw(st.integers(0, len(out) - 1)) :]
        else:
            out += draw(st.binary(max_size=20))
    return bytes(out)


def stored_bytes(draw: Any, setup: str) -> bytes:
    """Bytes as they could be found in Redis under ``fuzz:k``."""
    layer = layer_for(setup)
    kind = draw(st.sampled_from(["random", "msgpack", "envelope", "honest", "mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "msgpack":
        return msgspec.msgpack.encode(draw(plain_data))
    if kind == "envelope":
        inner = b"\x01" + msgspec.msgpack.encode(draw(plain_data))
        payload = draw(st.sampled_from([inner, draw(st.binary(max_size=100))]))
        return draw(envelopes(payload))
    honest = layer.encode_write(
        draw(st.sampled_from(["k", "other"])), draw(plain_data), Lifetime(60)
    ).data
    assert honest is not None
    return honest if kind == "honest" else draw(mutated(honest))


def read_all_ways(layer: RedisLayer, data: bytes) -> list[Any]:
    """What every decode path makes of ``data`` stored under ``k``: no exception escapes."""
    missing = object()
    one = layer._found("k", data, missing, fresh=False)
    batch = layer._found_many(["k", "k"], [data, data], fresh=False).get("k", missing)
    peeked = layer.pending_entry("k", layer.encode_write("k", 1, Lifetime(60))._replace(data=data))
    return [
        one if one is missing else one.value,
        batch if batch is missing else batch.value,
        missing if peeked is None else peeked.value,
        missing,
    ]


@pytest.mark.parametrize("setup", sorted(SETUPS))
@fuzz
@given(data=st.data())
def test_any_stored_bytes_read_as_a_value_or_a_counted_miss(setup: str, data: Any) -> None:
    layer = layer_for(setup)
    stored = stored_bytes(data.draw, setup)
    one, batch, peeked, missing = read_all_ways(layer, stored)
    assert _same(one, batch) and _same(one, peeked), (one, batch, peeked)
    refused = sum(layer.stats().untrusted.values())
    assert refused == (0 if one is not missing else 4)  # the 3 reads (the batch twice)


@fuzz
@given(good=plain_data, bad=st.binary(max_size=200), position=st.integers(0, 2))
def test_no_item_of_a_batch_changes_what_its_neighbours_read(good, bad, position) -> None:
    """The batch fast path decodes all items in one call: crafted bytes in one item must
    never alter another item's value (the get_many(["bad", "victim"]) of the probe)."""
    layer = layer_for("msgpack")
    keys = ["a", "b", "c"]
    values = [layer.encode_write(key, good, Lifetime(60)).data for key in keys]
    values[position] = bad + values[(position + 1) % 3][: len(bad) % 64]
    found = layer._found_many(keys, values)
    for index, key in enumerate(keys):
        if index != position:
            assert _same(found[key], good)


class Recorded:
    """A picklable object with random state."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recorded) and other.state == self.state


@fuzz
@given(state=plain_data, flip=st.integers(0, 10_000))
def test_signed_pickles_of_random_objects_round_trip_and_any_change_is_refused(
    state: Any, flip: int
) -> None:
    layer = layer_for("signed pickle")
    data = layer.encode_write("k", Recorded(state), Lifetime(60)).data
    assert data is not None
    entry = layer._found("k", data, None, fresh=False)
    assert isinstance(entry.value, Recorded) and _same(entry.value.state, state)
    changed = bytearray(data)
    where = 50 + flip % (len(data) - 50)  # after the tag byte: the signature or the pickle
    changed[where] ^= 0x01
    assert layer._found("k", bytes(changed), "missed") == "missed"
    assert layer.stats().untrusted == {"forged": 1}


def _same(a: Any, b: Any) -> bool:
    """Equal values (NaN-aware: a float NaN decoded twice is two objects)."""
    try:
        return bool(msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b))
    except TypeError:
        return a is b or a == b
