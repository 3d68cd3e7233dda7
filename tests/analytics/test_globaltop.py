"""The IO-free half of global top-N: per-instance rates (``AccessRates``, fed the accesses
between readings), their merge, and the published format read back as untrusted bytes
(``fleetreport``)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache.analytics.fleetreport import (
    INFO_FIELD,
    MAX_KEY_BYTES,
    InstanceReport,
    LayerSummary,
    decode,
    encode,
)
from multilayercache.analytics.globaltop import MAX_PUBLISHED_KEYS, AccessRates, merge_top


def steady(rates: dict[str, float], seconds: float, period: float, start: float = 0.0):
    """Readings of keys accessed at constant ``rates`` (per second), every ``period``."""
    tracker = AccessRates(window_seconds=30)
    now = start
    tracker.observe({}, now)
    while now < start + seconds:
        now += period
        tracker.observe({key: rate * period for key, rate in rates.items()}, now)
    return tracker


def test_a_steady_rate_is_measured_from_the_first_period_on() -> None:
    # The start correction: an instance up for one period already reports full rates.
    for seconds in (5.0, 60.0, 600.0):
        measured = dict(steady({"a": 100.0, "b": 7.0}, seconds, period=5.0).top())
        assert measured["a"] == pytest.approx(100.0, rel=1e-6)
        assert measured["b"] == pytest.approx(7.0, rel=1e-6)


def test_the_baseline_counts_for_nothing() -> None:
    tracker = AccessRates(window_seconds=30)
    tracker.observe({"old": 1_000_000}, 0.0)  # what came before the first reading
    tracker.observe({"old": 50, "new": 50}, 10.0)
    rates = dict(tracker.top())
    assert rates["old"] == pytest.approx(5.0)
    assert rates["new"] == pytest.approx(5.0)


def test_a_key_that_cooled_down_decays() -> None:
    tracker = AccessRates(window_seconds=10)
    tracker.observe({}, 0.0)
    tracker.observe({"a": 100, "b": 100}, 1.0)
    tracker.observe({"b": 30}, 2.0)  # a: not among the most accessed; b: 30 accesses
    rates = dict(tracker.top())
    assert rates["a"] < 100 * 0.6
    assert rates["b"] == pytest.approx(
        (100 * (1 - math.exp(-0.1)) * math.exp(-0.1) + 30 * (1 - math.exp(-0.1)))
        / (1 - math.exp(-0.2))
    )


def test_memory_is_bounded() -> None:
    tracker = AccessRates(window_seconds=10, capacity=50)
    tracker.observe({}, 0.0)
    for step in range(1, 30):
        tracker.observe({f"k{step}-{i}": i for i in range(40)}, float(step))
    assert len(tracker) == 50


def test_a_clock_that_does_not_move_changes_nothing() -> None:
    tracker = AccessRates()
    tracker.observe({"a": 1}, 5.0)
    tracker.observe({"a": 9}, 6.0)
    before = tracker.top()
    tracker.observe({"a": 1_000}, 6.0)
    tracker.observe({"a": 1_000}, 4.0)
    assert tracker.top() == before


@pytest.mark.parametrize("bad", [0, -1, math.inf, math.nan, "60"])
def test_bad_windows_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        AccessRates(window_seconds=bad)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from("abcdefgh"),
            st.floats(0, 1e6, allow_nan=False),
            max_size=8,
        ),
        max_size=5,
    ),
    st.integers(0, 10),
)
def test_the_merge_ranks_keys_by_their_summed_rate(views, n) -> None:
    merged = merge_top(views, n)
    total: dict[str, float] = {}
    for view in views:
        for key, rate in view.items():
            total[key] = total.get(key, 0.0) + rate
    assert len(merged) == min(n, len(total))
    assert [per_minute for _, per_minute in merged] == sorted(
        (per_minute for _, per_minute in merged), reverse=True
    )
    for key, per_minute in merged:
        assert per_minute == round(total[key] * 60)
    left_out = set(total) - {key for key, _ in merged}
    if merged and left_out:
        assert max(total[key] for key in left_out) <= min(total[key] for key, _ in merged)


def test_merging_different_instances_ranks_as_the_union_of_their_traffic() -> None:
    # Two instances with different speeds and overlapping keys, measured over the same
    # span: the merged ranking is the ranking of the summed counts.
    fast = steady({"a": 500.0, "b": 100.0, "c": 10.0}, 30, period=2.0)
    slow = steady({"b": 450.0, "c": 300.0, "d": 5.0}, 30, period=3.0, start=1000.0)
    merged = merge_top([dict(fast.top()), dict(slow.top())], 4)
    assert [key for key, _ in merged] == ["b", "a", "c", "d"]  # 550, 500, 310, 5
    assert merged[0][1] == pytest.approx(550 * 60, rel=1e-3)


# ---------------------------------------------------------------------------- the format
def report(**top: float) -> InstanceReport:
    layers = (
        LayerSummary("memory", 90, 10, 0.9, 100),
        LayerSummary("redis", 5, 5, 0.5, None, "closed", 2, 17, 3),
    )
    return InstanceReport("7-ab", "host", 7, 1000.5, 5.0, layers, dict(top))


def test_what_is_published_reads_back_the_same() -> None:
    published = report(**{"user:1": 12.5, "ключ": 3.25})
    read, skipped = decode("7-ab", encode(published))
    assert skipped == 0
    assert read == published


def test_only_the_hottest_keys_are_published_and_never_a_long_one() -> None:
    top = {f"k{i}": float(i) for i in range(MAX_PUBLISHED_KEYS + 50)}
    top["x" * (MAX_KEY_BYTES + 1)] = 1e6
    fields = encode(report(**top))
    keys = [name for name in fields if name != INFO_FIELD]
    assert len(keys) == MAX_PUBLISHED_KEYS
    assert b"k:k149" in fields and b"k:k49" not in fields


def test_poisoned_fields_are_skipped_and_counted() -> None:
    fields = encode(report(good=4.0))
    fields.update(
        {
            b"k:bad-utf8-\xff": b"1.0",
            b"k:nan": b"nan",
            b"k:negative": b"-3",
            b"k:inf": b"inf",
            b"k:huge": b"1e300",
            b"k:text": b"twelve",
            b"k:binary": b"\x00\xff",
            b"unknown": b"1",
        }
    )
    read, skipped = decode("7-ab", fields)
    assert read.top == {"good": 4.0}
    assert skipped == 8
    assert read.layers == report().layers


@pytest.mark.parametrize(
    "info",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"v": 2}',
        b'{"v": 1, "host": 3, "pid": 1, "at": 1, "period": 1, "layers": []}',
        b'{"v": 1, "host": "h", "pid": 1, "at": 1, "period": 1, "layers": 5}',
        b"[" * 100_000,
    ],
)
def test_a_poisoned_summary_is_skipped_and_the_keys_still_count(info) -> None:
    fields = encode(report(good=4.0))
    fields[INFO_FIELD] = info
    read, skipped = decode("7-ab", fields)
    assert read.top == {"good": 4.0}
    assert read.layers == ()
    assert skipped == 1


def test_a_poisoned_layer_summary_is_skipped_alone() -> None:
    fields = encode(report())
    fields[INFO_FIELD] = fields[INFO_FIELD].replace(b'"hits":90', b'"hits":"90"')
    read, skipped = decode("7-ab", fields)
    assert [layer.name for layer in read.layers] == ["redis"]
    assert skipped == 1


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.binary(max_size=40), st.binary(max_size=60), max_size=20))
def test_any_bytes_read_back_never_raise(fields) -> None:
    read, skipped = decode("x", fields)
    assert len(read.top) + skipped <= len(fields) + len(read.layers) + 1
    for rate in read.top.values():
        assert math.isfinite(rate) and rate >= 0
