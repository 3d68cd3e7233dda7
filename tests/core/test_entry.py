"""The shared-layer envelope: what is written is read back, data from before envelopes is
recognised, and corrupt headers are refused rather than misread."""

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
    payload=st.binary(),
)
def test_what_is_wrapped_unwraps(now, ttl, stale, refresh, load, tags, payload) -> None:
    envelope = Envelope.for_write(now, Lifetime(ttl, stale, refresh), load)._replace(
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


def test_data_without_an_envelope_is_recognised() -> None:
    for legacy in (b"\x01\xa5value", b"\x02" + b"s" * 40, b""):
        envelope, rest = unwrap(legacy)
        assert envelope is None and bytes(rest) == legacy


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
    expected = wrap(Envelope.for_write(now_ms, lifetime, load), payload)
    assert wrap_at(now_ms, deltas(lifetime), load, payload) == expected


# ----------------------------------------------------------------------------- format 2
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
    expected = wrap(Envelope.for_write(now_ms, lifetime, 0.5), payload)
    assert wrap_stepped_at(now_ms, deltas(lifetime), 0.5, step, payload) == expected
    assert len(expected) == STEPPED_HEADER_SIZE + len(payload)


def test_an_unstepped_write_is_format_1_as_before() -> None:
    data = wrap(Envelope.for_write(1_000, Lifetime(10, 5, 8)), b"\x01\xa1v")
    assert data[:2] == b"\x97\x01" and len(data) == HEADER_SIZE + 3
    assert unwrap(data)[0].step is None and unwrap(data)[0].entry("v", 0).digest is None


def test_digests_are_equal_for_equal_bytes_only() -> None:
    assert digest(b"\x01abc") == digest(memoryview(b"\x01abc")) != digest(b"\x01abd")
    assert 0 <= digest(b"") < 2**64


def test_an_extension_rewrites_the_deadlines_and_step_in_place() -> None:
    data = wrap_stepped_at(1_000, deltas(Lifetime(10, 5, 8)), 0.25, 1, b"\x01\xa1v")
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
        (1, 1, "version 1"),  # a format 2 array that claims format 1
    ],
)
def test_a_corrupt_stepped_header_is_refused(offset, byte, message) -> None:
    data = bytearray(wrap_stepped_at(0, deltas(Lifetime(1)), 0.0, 3, b"\x01\x01"))
    data[offset] = byte
    with pytest.raises(UntrustedDataError, match=message):
        unwrap(bytes(data))


@pytest.mark.parametrize("cut", [HEADER_SIZE, STEPPED_HEADER_SIZE - 2])
def test_a_truncated_stepped_header_is_refused(cut) -> None:
    data = wrap_stepped_at(0, deltas(Lifetime(1)), 0.0, -2, b"\x01\x01")
    with pytest.raises(UntrustedDataError):
        unwrap(data[:cut])
    with pytest.raises(UntrustedDataError):
        Envelope.from_fields([2, 0, 0, 0, 0, 0.0, []])  # format 2 with 7 fields
