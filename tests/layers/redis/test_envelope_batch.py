"""The one-pass read of a batch (``_core/envelope_batch``, both twins) against the general
path (``RedisCodec._unpack``, item by item), on random batches of honest, mutated, forged
and random bytes: every item it accepts is one the general path accepts, decoded to the
same entry; everything else is handed back; the two twins agree exactly. The layers never
connect: the tests hand them the bytes a read would receive."""

from __future__ import annotations

import math
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multilayercache import RedisLayer
from multilayercache.core.entry import deltas, key_check, wrap, wrap_at, wrap_stepped_at
from multilayercache.core.freshness import Lifetime
from multilayercache.layers.redis.codec import _now_ms

from support import IMPLEMENTATIONS

PREFIX = "fz:"
KEYS = ["k0", "k1", "k2", "é"]
TWINS = IMPLEMENTATIONS  # (each twin's classes and functions, support.TWINNED)
fuzz = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
plain_data = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
    | st.binary(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


def layer(**options: Any) -> RedisLayer:
    return RedisLayer("redis://127.0.0.1:9/0", prefix=PREFIX, **options)


@st.composite
def stored(draw: Any) -> bytes | None:
    """What one key of a batch could hold in Redis."""
    kind = draw(st.sampled_from(["none", "honest", "mutated", "forged", "tagged", "random"]))
    if kind == "none":
        return None
    if kind == "random":
        return draw(st.binary(max_size=120))
    value = draw(plain_data)
    payload = b"\x01" + msgspec.msgpack.encode(value)
    now = draw(st.sampled_from([_now_ms(), draw(st.integers(-(2**63) + 2**53, 2**62))]))
    lifetime = Lifetime(draw(st.floats(0, 1e12)), draw(st.floats(0, 1e6)))
    check = key_check(PREFIX + draw(st.sampled_from(KEYS)))
    load = draw(st.floats(width=32))
    if kind == "tagged":
        envelope = wrap_at(now, deltas(lifetime), load, check, b"")
        return wrap(_unwrapped(envelope)._replace(tags=(("t", 1),)), payload)
    if draw(st.booleans()):
        data = wrap_stepped_at(
            now, deltas(lifetime), load, draw(st.integers(-128, 127)), check,
            draw(st.integers(0, 2**64 - 1)), payload,
        )  # fmt: skip
    else:
        data = wrap_at(now, deltas(lifetime), load, check, payload)
    if kind == "forged":  # any header field: random bytes in the fixed layout
        where = draw(st.integers(0, 59))
        data = data[:where] + draw(st.binary(min_size=1, max_size=8)) + data[where + 8 :]
    elif kind == "mutated":
        out = bytearray(data)
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        data = bytes(out[: draw(st.integers(0, len(out)))]) if draw(st.booleans()) else bytes(out)
    return data


def _unwrapped(data: bytes) -> Any:
    from multilayercache.core.entry import unwrap

    return unwrap(data)[0]


batches = st.lists(st.tuples(st.sampled_from(KEYS), stored()), max_size=8)


def same_entry(a: Any, b: Any) -> bool:
    """Equal entries, NaN-aware (a NaN decoded twice is two objects)."""
    if a is None or b is None:
        return a is b
    same_value = msgspec.msgpack.encode(a.value) == msgspec.msgpack.encode(b.value)
    pack = struct.Struct(">d").pack
    same_load = pack(a.load_seconds) == pack(b.load_seconds) or (
        math.isnan(a.load_seconds) and math.isnan(b.load_seconds)
    )
    return same_value and same_load and a[1:4] == b[1:4] and a[5:] == b[5:]


def read(twin: Any, reader: RedisLayer, keys: list[str], values: list[Any], now: int) -> Any:
    redis_keys = [PREFIX + key for key in keys]
    return twin.read_batch(keys, redis_keys, values, reader._common_decode, now, *reader._bounds)


@fuzz
@given(batch=batches, max_items=st.sampled_from([3, 1_000_000]))
def test_a_batch_reads_as_the_general_path_reads_each_item(batch, max_items) -> None:
    from multilayercache import MsgpackSerializer

    reader = layer(serializer=MsgpackSerializer(max_depth=3, max_items=max_items))
    keys, values = [key for key, _ in batch], [data for _, data in batch]
    now = _now_ms()
    results = [read(twin, reader, keys, values, now) for twin in TWINS]
    entries, leftovers = results[0]
    assert leftovers == sorted(set(leftovers))
    held = [position for position, data in enumerate(values) if data is not None]
    assert set(leftovers) <= set(held)
    # A key repeated in the batch holds what its last accepted item holds.
    last = {keys[position]: position for position in held if position not in leftovers}
    assert last.keys() == entries.keys()
    for position in held:
        general = reader._unpack(keys[position], values[position], None, now)
        if position not in leftovers:  # accepted: what the general path makes of it
            assert general is not None
            if last[keys[position]] == position:
                assert same_entry(entries[keys[position]], general)
        one = [twin.read_one(PREFIX + keys[position], values[position], reader._common_decode,
                             now, *reader._bounds) for twin in TWINS]  # fmt: skip
        assert all(same_entry(entry, one[0]) for entry in one)
        # The batch accepts only what one read accepts; it may leave more to the general
        # path (all of it when msgspec refuses the joined values), never less.
        if one[0] is None:
            assert position in leftovers
        if one[0] is not None:
            assert same_entry(one[0], general)
    for other_entries, other_leftovers in results[1:]:  # the twins agree exactly
        assert other_leftovers == leftovers and other_entries.keys() == entries.keys()
        assert all(same_entry(other_entries[key], entries[key]) for key in entries)


def test_honest_writes_of_either_format_take_the_one_pass_read() -> None:
    # So that the test above cannot pass by handing every item back.
    writer = layer()
    keys = [f"k{i}" for i in range(50)]
    values = [
        writer.encode_write(key, {"n": i, "s": "x" * i}, Lifetime(60, 5, 30, i % 3 or None)).data
        for i, key in enumerate(keys)
    ]
    now = _now_ms()
    for twin in TWINS:
        entries, leftovers = read(twin, writer, [*keys, "gone"], [*values, None], now)
        assert leftovers == [] and list(entries) == keys  # "gone": a miss, not handed back
        assert entries["k4"].value == {"n": 4, "s": "xxxx"} and entries["k4"].step == 1
        assert entries["k3"].digest is None and entries["k3"].written_ms is not None


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
def test_an_item_msgspec_refuses_sends_the_batch_item_by_item(twin) -> None:
    # Invalid UTF-8 in a str: the bounds walk passes it, msgspec refuses it.
    reader = layer()
    good = reader.encode_write("k0", "fine", Lifetime(60)).data
    honest = reader.encode_write("k1", "x", Lifetime(60)).data
    bad = honest[:-1] + b"\xff"  # the str's byte: not UTF-8
    entries, leftovers = read(twin, reader, ["k0", "k1"], [good, bad], _now_ms())
    assert entries == {} and leftovers == [0, 1]
    assert reader._found_many(["k0", "k1"], [good, bad]) == {"k0": "fine"}
    assert reader.stats().untrusted == {"corrupt": 1} and reader.stats().hits == 1


def test_sealed_or_typed_reads_never_take_the_one_pass_read() -> None:
    from multilayercache.serializers.encrypted import Encryption

    sealed = layer(encryption=Encryption({"k": bytes(32)}))
    assert sealed._common_decode is None
    plain = layer()
    data = plain.encode_write("k0", (1, 2), Lifetime(60)).data
    assert plain._found_many(["k0"], [data], tuple[int, int]) == {"k0": (1, 2)}
    assert plain._found_many(["k0"], [data]) == {"k0": [1, 2]}


@fuzz
@given(batch=batches, max_items=st.sampled_from([3, 1_000_000]), with_entries=st.booleans())
def test_the_fresh_values_of_a_batch_are_those_of_its_entries(batch, max_items, with_entries):
    from multilayercache import MsgpackSerializer

    reader = layer(serializer=MsgpackSerializer(max_depth=3, max_items=max_items))
    # A key asked twice in one read (one MGET) is answered the same bytes both times.
    first: dict[str, Any] = {}
    keys, values = [key for key, _ in batch], [first.setdefault(key, data) for key, data in batch]
    redis_keys = [PREFIX + key for key in keys]
    now = _now_ms()
    results = []
    for twin in TWINS:
        entries: dict[str, Any] | None = {} if with_entries else None
        hits, stale, leftovers = twin.read_fresh(
            keys, redis_keys, values, reader._common_decode, now, *reader._bounds, entries
        )
        results.append((hits, stale, leftovers, entries))
        # What read_batch accepts, read_fresh accepts, split by freshness, in the order read.
        all_entries, all_leftovers = twin.read_batch(
            keys, redis_keys, values, reader._common_decode, now, *reader._bounds
        )
        assert leftovers == all_leftovers
        fresh = {key: entry for key, entry in all_entries.items() if entry.fresh_for > 0}
        assert list(hits) == list(fresh)
        assert all(
            same_entry(entry._replace(value=hits[key]), entry) for key, entry in fresh.items()
        )
        assert set(stale) == {key for key, entry in all_entries.items() if entry.fresh_for <= 0}
        if entries is not None:
            assert entries.keys() == fresh.keys()
            assert all(same_entry(entries[key], fresh[key]) for key in fresh)
    hits, stale, leftovers, entries = results[0]
    for other in results[1:]:  # the twins agree exactly
        assert list(other[0]) == list(hits) and other[1:3] == (stale, leftovers)
        assert all(same_value(other[0][key], hits[key]) for key in hits)
        if entries is not None:
            assert all(same_entry(other[3][key], entries[key]) for key in entries)


def same_value(a: Any, b: Any) -> bool:
    return msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)


@fuzz
@given(
    held=st.dictionaries(st.sampled_from(KEYS), stored()),
    keys=st.lists(st.sampled_from(KEYS), max_size=8),
    with_entries=st.booleans(),
)
def test_a_layer_reads_fresh_values_as_the_general_path_reads_each_item(held, keys, with_entries):
    # ``get_fresh``'s decoding (RedisCodec._fresh_many): the fresh values item by item by
    # the general path, in the order asked, each read counted as ``get_entries`` counts it.
    # A key asked twice reads the same bytes twice (one MGET).
    values = [held.get(key) for key in keys]
    now = _now_ms()
    general = layer()
    expected: dict[str, Any] = {}
    trusted = set()
    for key, data in zip(keys, values, strict=True):
        entry = None if data is None else general._unpack(key, data, None, now)
        if entry is not None:
            trusted.add(key)
            if entry.fresh_for > 0:
                expected[key] = entry.value
    reader = layer()
    entries: dict[str, Any] | None = {} if with_entries else None
    hits = reader._fresh_many(keys, values, None, None, entries, True)
    assert list(hits) == list(expected)
    assert all(same_value(hits[key], expected[key]) for key in expected)
    if entries is not None:  # an entry of each value, for a copy into L1
        assert entries.keys() == expected.keys()
        assert all(same_value(entries[key].value, expected[key]) for key in expected)
    counted = reader.stats()
    assert counted.hits == sum(1 for key in keys if key in trusted)
    assert counted.misses == len(keys) - counted.hits
    assert counted.untrusted == general.stats().untrusted
