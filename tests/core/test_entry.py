"""The shared-layer envelope: what is written is read back, data from before envelopes is
recognised, and corrupt headers are refused rather than misread."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multilayercache import UntrustedDataError
from multilayercache.core.entry import HEADER_SIZE, Envelope, deltas, unwrap, wrap, wrap_at
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
