"""The MessagePack scanner (``_core/msgpack_bounds``), both twins: the object counts msgspec
sees, the bounds refused by name, and the compiled twin equal to the pure one on random
bytes and on random (truncated, mutated) MessagePack."""

from __future__ import annotations

import importlib
import re
import struct
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache import UntrustedDataError

from support import requires_compiled

PURE = importlib.import_module("multilayercache._core._msgpack_bounds_py").count_objects
try:
    COMPILED: Callable[..., int] | None = importlib.import_module(
        "multilayercache._core.msgpack_bounds"
    ).count_objects
except ImportError:
    COMPILED = None
SCANNERS = [pytest.param(PURE, id="pure")] + (
    [pytest.param(COMPILED, id="compiled")] if COMPILED else []
)
SETTINGS = settings(max_examples=300, deadline=None)
DEPTH, ITEMS = 64, 1_000_000

encode = msgspec.msgpack.encode

# Random structures msgspec encodes: every MessagePack type, ints at every width's edges.
int64 = st.integers(-(2**63), 2**64 - 1)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    int64,
    st.sampled_from([0, 127, 128, -32, -33, 255, 256, 65535, 65536, 2**32 - 1, 2**32, -(2**31)]),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["x" * 31, "x" * 32, "x" * 255, "x" * 256]),  # fixstr, str 8, str 16
    st.binary(max_size=40),
    st.builds(msgspec.msgpack.Ext, st.integers(0, 127), st.binary(max_size=20)),
)
structures = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.one_of(st.text(max_size=5), int64), children, max_size=6),
    ),
    max_leaves=30,
)
encoded = st.lists(structures, min_size=1, max_size=4).map(
    lambda values: b"".join(encode(value) for value in values)
)


def outcome(scan: Callable[..., int], data: bytes, *args: int) -> Any:
    """The count, or the error's type and message."""
    try:
        return scan(data, *args)
    except (UntrustedDataError, ValueError) as error:
        return type(error).__name__, str(error), getattr(error, "cause", None)


def msgspec_count(data: bytes, count: int) -> bool:
    """Whether msgspec decodes ``data`` as exactly ``count`` objects one after another."""
    try:
        msgspec.msgpack.decode(b"\xdd" + count.to_bytes(4, "big") + data)
    except msgspec.DecodeError:
        return False
    return True


@pytest.mark.parametrize("scan", SCANNERS)
@SETTINGS
@given(values=st.lists(structures, min_size=0, max_size=4))
def test_counts_the_objects_msgspec_encoded(scan, values) -> None:
    data = b"".join(encode(value) for value in values)
    assert scan(data, 0, DEPTH, ITEMS) == len(values)
    assert scan(b"\x01" + data, 1, DEPTH, ITEMS) == len(values)  # from ``start`` on


@pytest.mark.parametrize("scan", SCANNERS)
@SETTINGS
@given(data=st.binary(max_size=60))
def test_valid_for_msgspec_means_the_same_count(scan, data) -> None:
    # Whatever msgspec reads as one object, the scanner reads as one object (two, three:
    # as many as msgspec does); nothing it accepts is refused, and no other error escapes.
    result = outcome(scan, data, 0, DEPTH, ITEMS)
    for count in (1, 2, 3):
        if msgspec_count(data, count):
            assert result == count


@pytest.mark.parametrize("scan", SCANNERS)
@SETTINGS
@given(data=encoded, cut=st.integers(0, 10_000))
def test_truncated_data_is_refused(scan, data, cut) -> None:
    cut %= len(data)
    prefix = data[:cut]
    result = outcome(scan, prefix, 0, DEPTH, ITEMS)
    if isinstance(result, int):  # the cut fell between two objects
        assert msgspec_count(prefix, result)
    else:
        assert result[0] == "UntrustedDataError"
        assert "truncated" in result[1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "0xc1 is never used (at byte 0)"),
        (b"\x92\x01", "truncated"),
        (b"\xd9\x05abc", "truncated"),
        (b"\xc6\xff\xff\xff\xff", "truncated"),  # a bin claiming 4 GB
        (b"\xda\x00", "truncated"),  # inside the length field
        (b"\x91" * (DEPTH + 1) + b"\x01", f"nested deeper than max_depth={DEPTH}"),
        (b"\x91" * DEPTH + b"\x90", f"nested deeper than max_depth={DEPTH}"),  # empty, too
        (b"\xdd\xff\xff\xff\xff\x90", "truncated"),  # claims 2**32 - 1, one is there
        (b"\xdf\x00\x02\xa1\x20\x01\xa1\x21", "truncated"),  # a map owes 2 per entry
        # all there, refused at the header: the array and its elements are one too many
        (b"\xdd" + ITEMS.to_bytes(4, "big") + b"\xc0" * ITEMS, f"more than max_items={ITEMS}"),
        (b"\x01" * (ITEMS + 1), f"more than max_items={ITEMS}"),  # top-level ones count
    ],
)
@pytest.mark.parametrize("scan", SCANNERS)
def test_refusals_name_what_is_wrong(scan, data, message) -> None:
    with pytest.raises(UntrustedDataError, match=re.escape(message)) as refused:
        scan(data, 0, DEPTH, ITEMS)
    assert refused.value.cause == ("limit" if "max_" in message else "corrupt")


@pytest.mark.parametrize("scan", SCANNERS)
def test_the_bounds_are_inclusive(scan) -> None:
    assert scan(b"\x91" * (DEPTH - 1) + b"\x90", 0, DEPTH, ITEMS) == 1  # DEPTH deep
    assert scan(b"\x91" * 300 + b"\x90", 0, 301, ITEMS) == 1  # beyond the C stack's 128
    items = b"\xdc" + struct.pack(">H", 999) + b"\x00" * 999  # the array and 999 ints
    assert scan(items, 0, DEPTH, 1000) == 1
    with pytest.raises(UntrustedDataError, match="max_items=999"):
        scan(items, 0, DEPTH, 999)
    assert scan(encode({"a": [1, 2]}), 0, DEPTH, 5) == 1  # map, "a", list, 1, 2
    with pytest.raises(UntrustedDataError, match="max_items=4"):
        scan(encode({"a": [1, 2]}), 0, DEPTH, 4)


@pytest.mark.parametrize("scan", SCANNERS)
def test_reads_any_buffer_and_checks_start(scan) -> None:
    data = encode([1, "a"]) * 2
    assert scan(memoryview(data), 0, DEPTH, ITEMS) == 2
    assert scan(bytearray(data), 4, DEPTH, ITEMS) == 1
    assert scan(data, len(data), DEPTH, ITEMS) == 0
    with pytest.raises(ValueError, match="start=-1"):
        scan(data, -1, DEPTH, ITEMS)
    with pytest.raises(ValueError, match="start=11"):
        scan(data, 11, DEPTH, ITEMS)


# ---------------------------------------------------------------------------- the twins
mutations = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4)
bounds = st.tuples(st.integers(0, 8), st.integers(0, 60))


@requires_compiled
@SETTINGS
@given(data=st.binary(max_size=80), start=st.integers(-1, 90), limits=bounds)
def test_twins_agree_on_random_bytes(data, start, limits) -> None:
    max_depth, max_items = limits
    assert outcome(COMPILED, data, start, max_depth, max_items) == outcome(
        PURE, data, start, max_depth, max_items
    )


@requires_compiled
@SETTINGS
@given(data=encoded, cut=st.integers(0, 10_000), changes=mutations, limits=bounds)
def test_twins_agree_on_mutated_messagepack(data, cut, changes, limits) -> None:
    mutated = bytearray(data[: 1 + cut % len(data)])
    for position, byte in changes:
        mutated[position % len(mutated)] = byte
    for max_depth, max_items in (limits, (DEPTH, ITEMS)):
        assert outcome(COMPILED, bytes(mutated), 0, max_depth, max_items) == outcome(
            PURE, bytes(mutated), 0, max_depth, max_items
        )
    count = outcome(COMPILED, bytes(mutated), 0, DEPTH, ITEMS)
    for msgspec_sees in range(1, 6):  # a mutation msgspec still reads: the same count
        if msgspec_count(bytes(mutated), msgspec_sees):
            assert count == msgspec_sees
