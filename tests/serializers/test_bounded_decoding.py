"""``MsgpackSerializer`` refuses what whoever can write to Redis could send to exhaust a
reader: deep nesting and array bombs are refused by name, fast and without memory; batch
items cannot run into one another; values beyond the bounds cannot be written either. And a
shared layer reading such bytes answers a miss for that key only (sync and asyncio)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache import (
    AsyncRedisLayer,
    MsgpackSerializer,
    RedisLayer,
    SerializationError,
    UntrustedDataError,
)
from multilayercache.serializers import msgpack as msgpack_module

TAG = b"\x01"
BOMB = b"\xdd" + (10_000_000).to_bytes(4, "big") + b"\x90" * 10_000_000  # ~10 MB of []
DEEP = b"\x91" * 100_000 + b"\x90"  # [[[...]]] 100,000 deep

MEASURE = """
import json, resource, sys, time
from multilayercache import MsgpackSerializer, UntrustedDataError
data = b"\\x01" + {payload}
serializer = MsgpackSerializer()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
best = None
for _ in range(3):
    start = time.perf_counter()
    try:
        serializer.loads(data)
    except UntrustedDataError as error:
        message = str(error)
    elapsed = time.perf_counter() - start
    best = elapsed if best is None else min(best, elapsed)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"bytes": len(data), "grown_kb": grown, "seconds": best, "error": message}}))
"""


@pytest.mark.parametrize("extensions", ["compiled", "pure"])
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('b"\\xdd" + (10_000_000).to_bytes(4, "big") + b"\\x90" * 10_000_000', "max_items"),
        ('b"\\x91" * 100_000 + b"\\x90"', "max_depth=64"),
        # no header that claims too much: a million objects walked one by one
        ('b"\\xdc\\xff\\xff" + (b"\\x9f" + b"\\x90" * 15) * 65535', "max_items"),
    ],
    ids=["array bomb", "100,000 deep", "a million small arrays"],
)
def test_bombs_are_refused_fast_and_without_memory(extensions, payload, message) -> None:
    env = dict(os.environ, MULTILAYERCACHE_NO_EXTENSIONS="1" if extensions == "pure" else "")
    out = subprocess.run(
        [sys.executable, "-c", MEASURE.format(payload=payload)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(out.stdout)
    assert message in figures["error"]
    # ru_maxrss is in KB on Linux: the peak may grow by at most 3x the bytes read (it
    # grows by ~0: nothing is built), where msgspec alone takes ~750 MB and 5 s.
    assert figures["grown_kb"] * 1024 <= 3 * figures["bytes"]
    # The compiled scanner walks a million objects in a few ms; the pure twin (no compiler
    # at install) in about half a second, bounded by max_items all the same.
    assert figures["seconds"] < (0.05 if extensions == "compiled" else 2.0)


def test_refusals_name_the_limit() -> None:
    serializer = MsgpackSerializer(max_depth=3, max_items=10)
    assert serializer.loads(TAG + msgspec.msgpack.encode([[[1]]])) == [[[1]]]
    with pytest.raises(UntrustedDataError, match="nested deeper than max_depth=3"):
        serializer.loads(TAG + msgspec.msgpack.encode([[[[1]]]]))
    assert serializer.loads(TAG + msgspec.msgpack.encode(list(range(9)))) == list(range(9))
    with pytest.raises(UntrustedDataError, match="more than max_items=10"):
        serializer.loads(TAG + msgspec.msgpack.encode(list(range(10))))  # 11 with the list
    with pytest.raises(UntrustedDataError, match="more than max_items=10"):
        serializer.loads(TAG + msgspec.msgpack.encode({str(i): i for i in range(5)}))
    with pytest.raises(UntrustedDataError, match="0xc1 is never used") as corrupt:
        MsgpackSerializer().loads(TAG + b"\xc1")
    assert corrupt.value.cause == "corrupt"


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (TAG + DEEP, "limit"),
        (TAG + BOMB, "limit"),
        (TAG + b"\x92\x01", "corrupt"),  # truncated
        (TAG + b"\xc1", "corrupt"),
        (TAG + b"\x01\x02", "corrupt"),  # two values
        (TAG + msgspec.msgpack.encode("text"), "wrong_type"),  # declared: int
    ],
    ids=["deep", "bomb", "truncated", "0xc1", "two values", "not an int"],
)
def test_refusals_say_their_cause(data, cause) -> None:
    with pytest.raises(UntrustedDataError) as refused:
        MsgpackSerializer().loads(data, value_type=int if cause == "wrong_type" else None)
    assert refused.value.cause == cause


@pytest.mark.parametrize(
    "data", [TAG, TAG + b"\x01\x02", TAG + b"\xa1", TAG + b"\x92\x01"], ids=repr
)
def test_loads_takes_exactly_one_value(data) -> None:
    with pytest.raises(UntrustedDataError):
        MsgpackSerializer().loads(data)


def test_a_recursion_error_is_untrusted_data() -> None:
    # Bounds set beyond what the interpreter can decode: the scanner lets the value
    # through, msgspec runs out of stack, and a reader still sees UntrustedDataError.
    serializer = MsgpackSerializer(max_depth=10**6)
    with pytest.raises(UntrustedDataError, match="too deep to decode") as refused:
        serializer.loads(TAG + DEEP)
    assert refused.value.cause == "limit"
    assert serializer.loads_sequence([DEEP], 1) is None
    with pytest.raises(UntrustedDataError, match="too deep to decode"):
        serializer.loads_many([TAG + DEEP])


def test_values_beyond_the_bounds_cannot_be_written() -> None:
    serializer = MsgpackSerializer(max_depth=4, max_items=100)
    serializer.dumps([[[["4 deep"]]]])
    with pytest.raises(SerializationError, match="max_depth=4.*raise the limit"):
        serializer.dumps([[[[["5 deep"]]]]])
    with pytest.raises(SerializationError, match="max_items=100"):
        serializer.dumps(list(range(100)))
    nested: Any = []
    for _ in range(2000):
        nested = [nested]
    with pytest.raises(SerializationError, match="max_depth"):
        MsgpackSerializer().dumps(nested)  # beyond the interpreter's own limit too


def test_the_bounds_are_checked_when_the_serializer_is_made() -> None:
    assert (MsgpackSerializer().max_depth, MsgpackSerializer().max_items) == (64, 1_000_000)
    assert MsgpackSerializer.MAX_DEPTH == 64 and MsgpackSerializer.MAX_ITEMS == 1_000_000
    with pytest.raises(ValueError, match="max_depth must be at least 1, got 0"):
        MsgpackSerializer(max_depth=0)
    with pytest.raises(TypeError, match="max_items must be an int, got float"):
        MsgpackSerializer(max_items=1e6)  # type: ignore[arg-type]
    assert MsgpackSerializer(max_items=2**80).max_items == 2**62  # no bound, in 64 bits


def test_the_compiled_scanner_is_used_when_built() -> None:
    from multilayercache import _core

    module = msgpack_module.count_objects.__module__
    if _core.COMPILED:
        assert module == "multilayercache._core.msgpack_bounds"
    else:
        assert module == "multilayercache._core._msgpack_bounds_py"


# ---------------------------------------------------------------------------- batches
def test_an_item_cannot_run_into_the_next() -> None:
    serializer = MsgpackSerializer()
    victim = msgspec.msgpack.encode(["header"]) + TAG + msgspec.msgpack.encode("value")
    # A str header claiming more bytes than its item holds: joined, it would swallow the
    # victim's header and tag, and the batch would still count three objects per item.
    swallowing = len(victim) - len(msgspec.msgpack.encode("value"))
    bad = msgspec.msgpack.encode(["h"]) + TAG + b"\xd9" + bytes([swallowing])
    assert serializer.loads_sequence([bad, victim, bad], 3) is None
    assert serializer.loads_sequence([victim, victim], 3) == [["header"], 1, "value"] * 2
    # loads_many: an item of three objects next to one of one made two pairs before.
    with pytest.raises(UntrustedDataError, match="does not hold 2 objects"):
        serializer.loads_many([TAG + b"\xa1a" + TAG, TAG])
    assert serializer.loads_many([TAG + b"\xa1a", TAG + b"\x02"]) == ["a", 2]


def test_each_item_is_bounded_on_its_own() -> None:
    serializer = MsgpackSerializer(max_depth=4, max_items=10)
    small = TAG + msgspec.msgpack.encode(list(range(5)))  # 7 objects with the tag
    assert serializer.loads_many([small] * 5) == [list(range(5))] * 5  # 35 in all
    assert serializer.loads_sequence([small] * 5, 2) is not None
    large = TAG + msgspec.msgpack.encode(list(range(9)))
    assert serializer.loads_sequence([small, large], 2) is None
    with pytest.raises(UntrustedDataError, match="max_items=10"):
        serializer.loads_many([small, large])


items = st.lists(
    st.one_of(
        st.builds(
            lambda values: b"".join(msgspec.msgpack.encode(value) for value in values),
            st.lists(st.one_of(st.integers(-5, 300), st.text(max_size=8), st.none()), max_size=4),
        ),
        st.binary(max_size=12),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(items=items, per_item=st.integers(1, 3))
def test_a_batch_decodes_as_its_items_would_one_by_one(items, per_item) -> None:
    # The batch is one msgspec call; whatever it returns is what each item alone holds.
    decoded = MsgpackSerializer().loads_sequence(items, per_item)
    if decoded is None:
        return
    one_by_one = []
    for item in items:
        one_by_one += msgspec.msgpack.decode(b"\xdd" + per_item.to_bytes(4, "big") + item)
    assert decoded == one_by_one


# ---------------------------------------------------------------------------- in a layer
def stolen_batch(raw_redis: Any, prefix: str, set_value: Any) -> None:
    """Write "victim" (a bytes value, as an application would: it may hold what a user
    sent) and "bad" (forged), so that read together, "bad" swallows the start of "victim"
    and the rest of "victim" reads as an entry whose value is "STOLEN"."""
    set_value("x", "STOLEN")
    entry = raw_redis.get(prefix + "x")  # envelope, tag, "STOLEN": three objects
    set_value("victim", entry)
    stored = raw_redis.get(prefix + "victim")
    assert stored.endswith(entry) and len(stored) - len(entry) < 256
    envelope = entry[: -len(TAG + msgspec.msgpack.encode("STOLEN"))]
    forged = envelope + TAG + b"\xc4" + bytes([len(stored) - len(entry)])  # bin 8
    raw_redis.set(prefix + "bad", forged)


def test_a_forged_item_cannot_change_another_keys_value(redis_url, prefix, raw_redis) -> None:
    layer = RedisLayer(redis_url, prefix=prefix)
    try:
        stolen_batch(raw_redis, prefix, layer.set)
        victim = layer.get("victim")
        assert layer.get_many(["bad", "victim"]) == {"victim": victim}
        assert victim.endswith(b"STOLEN") and layer.stats().errors == 1
    finally:
        layer.close()


def test_a_forged_item_cannot_change_another_keys_value_asyncio(
    redis_url, prefix, raw_redis
) -> None:
    writer = RedisLayer(redis_url, prefix=prefix)
    try:
        stolen_batch(raw_redis, prefix, writer.set)
    finally:
        writer.close()

    async def scenario() -> None:
        layer = AsyncRedisLayer(redis_url, prefix=prefix)
        try:
            victim = await layer.get("victim")
            assert await layer.get_many(["bad", "victim"]) == {"victim": victim}
            assert victim.endswith(b"STOLEN") and layer.stats().errors == 1
        finally:
            await layer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("poison", [DEEP, BOMB], ids=["100,000 deep", "array bomb"])
def test_a_poisoned_key_is_a_miss_for_that_key_only(redis_url, prefix, raw_redis, poison) -> None:
    layer = RedisLayer(redis_url, prefix=prefix)
    try:
        layer.set("good", {"a": [1, 2]})
        layer.set("bad", "honest, for now")
        stored = raw_redis.get(prefix + "bad")
        envelope = stored[: -len(TAG + msgspec.msgpack.encode("honest, for now"))]
        raw_redis.set(prefix + "bad", envelope + TAG + poison)
        assert layer.get("bad", "missing") == "missing"
        assert layer.get_many(["bad", "good"]) == {"good": {"a": [1, 2]}}
        assert layer.stats().errors == 2
    finally:
        layer.close()
