"""The shared-layer envelope: what is written is read back (with the key check that binds
it to its key), data without an envelope of this version is refused, and corrupt headers
are refused rather than misread."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multilayercache import UntrustedDataError
from multilayercache.core.entry import (
    DEADLINES_OFFSET,
    HEADER_SIZE,
    KEY_CHECK_OFFSET,
    STEP_OFFSET,
    STEPPED_FIRST_BYTE,
    STEPPED_HEADER_SIZE,
    WRITTEN_OFFSET,
    Envelope,
    deltas,
    digest,
    extension,
    identity,
    step_field,
    unwrap,
    wrap,
    wrap_at,
    wrap_stepped_at,
)
from multilayercache.core.freshness import Freshness, Lifetime

seconds = st.one_of(st.just(math.inf), st.floats(0, 1e7, allow_nan=False))
tags = st.lists(st.tuples(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1)), max_size=20)


@given(
    now=st.integers(0, 2**50),
    ttl=seconds,
    stale=st.floats(0, 1e6),
    refresh=seconds,
    load=st.floats(0, 100, width=32),
    tags=tags,
    check=st.integers(0, 2**32 - 1),
    payload=st.binary(),
)
def test_what_is_wrapped_unwraps(now, ttl, stale, refresh, load, tags, check, payload) -> None:
    envelope = Envelope.for_write(now, Lifetime(ttl, stale, refresh), load, check)._replace(
        tags=tuple(tags)
    )
    back, rest = unwrap(wrap(envelope, payload))
    assert back == envelope and bytes(rest) == payload
    assert (
        Envelope.from_fields(
            msgspec.msgpack.decode(wrap(envelope, b"")[: len(wrap(envelope, b""))])
        )
        == envelope
    )


def test_the_header_is_one_messagepack_array_before_the_payload() -> None:
    envelope = Envelope.for_write(1_000, Lifetime(10, 5, 8))
    data = wrap(envelope, msgspec.msgpack.encode("value"))
    assert len(data) == HEADER_SIZE + len(msgspec.msgpack.encode("value"))
    header, value = msgspec.msgpack.decode(b"\x92" + data)
    assert Envelope.from_fields(header) == envelope and value == "value"


def test_freshness_over_time() -> None:
    envelope = Envelope.for_write(0, Lifetime(10, 5, 8))
    assert envelope.entry("v", 7_000).freshness is Freshness.FRESH
    assert envelope.entry("v", 8_000).freshness is Freshness.DUE
    assert envelope.entry("v", 10_000).freshness is Freshness.STALE
    assert envelope.entry("v", 12_000).gone_in == 3.0
    assert Envelope.for_write(0, Lifetime(math.inf)).entry("v", 10**12).fresh_for == math.inf


def test_data_without_an_envelope_of_this_version_is_refused() -> None:
    format_1 = b"\x97\x01\xd3" + bytes(8) + (b"\xd3" + bytes(8)) * 3 + b"\xca" + bytes(4) + b"\x90"
    for foreign in (b"\x01\xa5value", b"\x02" + b"s" * 40, b"", format_1 + b"\x01\x01"):
        with pytest.raises(UntrustedDataError) as refused:
            unwrap(foreign)
        assert refused.value.cause == "corrupt"


@pytest.mark.parametrize("offset", [2, 11, 20, 29, 38, KEY_CHECK_OFFSET])
def test_a_header_not_in_its_fixed_layout_is_refused(offset) -> None:
    """A compact header (MessagePack would read the same numbers) is not what ``wrap``
    writes, and the scripts that patch headers in place rely on the layout."""
    data = bytearray(wrap(Envelope.for_write(0, Lifetime(1)), b"\x01\x01"))
    data[offset] = 0xCF
    with pytest.raises(UntrustedDataError, match="fixed layout"):
        unwrap(bytes(data))


@pytest.mark.parametrize("cut", [1, 10, HEADER_SIZE - 1])
def test_a_truncated_header_is_refused(cut) -> None:
    data = wrap(Envelope.for_write(0, Lifetime(1)), b"\x01\x01")
    with pytest.raises(UntrustedDataError):
        unwrap(data[:cut])


def test_an_unknown_version_is_refused() -> None:
    data = bytearray(wrap(Envelope.for_write(0, Lifetime(1)), b"\x01\x01"))
    data[1] = 9
    with pytest.raises(UntrustedDataError, match="version 9"):
        unwrap(bytes(data))


@given(
    now_ms=st.integers(0, 2**50),
    ttl=st.one_of(st.floats(0, 1e7), st.just(math.inf)),
    stale=st.one_of(st.floats(0, 1e7), st.just(math.inf)),
    refresh=st.one_of(st.floats(0, 1e7), st.just(math.inf)),
    load=st.floats(0, 100, width=32),
    payload=st.binary(max_size=40),
)
def test_the_one_step_wrap_is_byte_for_byte_the_envelope_wrap(
    now_ms: int, ttl: float, stale: float, refresh: float, load: float, payload: bytes
) -> None:
    lifetime = Lifetime(ttl, stale, refresh)
    expected = wrap(Envelope.for_write(now_ms, lifetime, load, 7), payload)
    assert wrap_at(now_ms, deltas(lifetime), load, 7, payload) == expected


# ----------------------------------------------------------------------------- format 4
steps = st.integers(-100, 100)


@given(
    now=st.integers(0, 2**50),
    ttl=seconds,
    stale=st.floats(0, 1e6),
    refresh=seconds,
    step=steps,
    load=st.floats(0, 100, width=32),
    tags=tags,
    payload=st.binary(),
)
def test_a_stepped_envelope_carries_its_step_and_the_digest_of_its_payload(
    now, ttl, stale, refresh, step, load, tags, payload
) -> None:
    envelope = Envelope.for_write(now, Lifetime(ttl, stale, refresh, step), load)._replace(
        tags=tuple(tags)
    )
    data = wrap(envelope, payload)
    assert data[0] == STEPPED_FIRST_BYTE
    back, rest = unwrap(data)
    assert back == envelope._replace(digest=digest(payload)) and bytes(rest) == payload
    header = msgspec.msgpack.decode(data[: len(data) - len(payload)])
    assert Envelope.from_fields(header) == back
    entry = back.entry("v", now)
    assert (entry.step, entry.written_ms, entry.digest) == (step, now, digest(payload))


@given(
    now_ms=st.integers(0, 2**50),
    ttl=st.one_of(st.floats(0, 1e7), st.just(math.inf)),
    refresh=st.one_of(st.floats(0, 1e7), st.just(math.inf)),
    step=steps,
    payload=st.binary(max_size=40),
)
def test_the_one_step_stepped_wrap_is_byte_for_byte_the_envelope_wrap(
    now_ms, ttl, refresh, step, payload
) -> None:
    lifetime = Lifetime(ttl, 5.0, refresh, step)
    expected = wrap(Envelope.for_write(now_ms, lifetime, 0.5, 9), payload)
    stamp = digest(payload)
    assert wrap_stepped_at(now_ms, deltas(lifetime), 0.5, step, 9, stamp, payload) == expected
    assert len(expected) == STEPPED_HEADER_SIZE + len(payload)


def test_an_unstepped_write_is_format_3() -> None:
    data = wrap(Envelope.for_write(1_000, Lifetime(10, 5, 8)), b"\x01\xa1v")
    assert data[:2] == b"\x98\x03" and len(data) == HEADER_SIZE + 3
    assert unwrap(data)[0].step is None and unwrap(data)[0].entry("v", 0).digest is None


def test_digests_are_equal_for_equal_bytes_only() -> None:
    assert digest(b"\x01abc") == digest(memoryview(b"\x01abc")) != digest(b"\x01abd")
    assert 0 <= digest(b"") < 2**64


def test_an_extension_rewrites_the_deadlines_and_step_in_place() -> None:
    stamp = digest(b"\x01\xa1v")
    data = wrap_stepped_at(1_000, deltas(Lifetime(10, 5, 8)), 0.25, 1, 0, stamp, b"\x01\xa1v")
    later = Lifetime(40, 5, 32, 2)
    patched = bytearray(data)
    new_deadlines = extension(20_000, deltas(later))
    patched[DEADLINES_OFFSET : DEADLINES_OFFSET + len(new_deadlines)] = new_deadlines
    patched[STEP_OFFSET : STEP_OFFSET + 2] = step_field(2)
    assert bytes(data[WRITTEN_OFFSET : WRITTEN_OFFSET + 9]) == identity(1_000)
    envelope, payload = unwrap(bytes(patched))
    assert bytes(payload) == b"\x01\xa1v" and envelope.written_ms == 1_000
    assert (envelope.refresh_ms, envelope.stale_ms, envelope.gone_ms) == (52_000, 60_000, 65_000)
    assert envelope.step == 2 and envelope.digest == digest(b"\x01\xa1v")


@pytest.mark.parametrize(
    ("offset", "byte", "message"),
    [
        (STEP_OFFSET, 0xCC, "corrupt step"),  # not 0xd0 + int8
        (STEP_OFFSET + 2, 0xCE, "corrupt step"),  # not 0xcf + uint64
        (1, 3, "version 3"),  # a format 4 array that claims format 3
    ],
)
def test_a_corrupt_stepped_header_is_refused(offset, byte, message) -> None:
    data = bytearray(wrap_stepped_at(0, deltas(Lifetime(1)), 0.0, 3, 0, 0, b"\x01\x01"))
    data[offset] = byte
    with pytest.raises(UntrustedDataError, match=message):
        unwrap(bytes(data))


@pytest.mark.parametrize("cut", [HEADER_SIZE, STEPPED_HEADER_SIZE - 2])
def test_a_truncated_stepped_header_is_refused(cut) -> None:
    data = wrap_stepped_at(0, deltas(Lifetime(1)), 0.0, -2, 0, 0, b"\x01\x01")
    with pytest.raises(UntrustedDataError):
        unwrap(data[:cut])
    with pytest.raises(UntrustedDataError):
        Envelope.from_fields([4, 0, 0, 0, 0, 0.0, 0, []])  # format 4 with 8 fields
