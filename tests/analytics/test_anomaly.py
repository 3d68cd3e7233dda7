"""The anomaly detectors on their own, fed samples by hand (an injected clock): what they
report, when, how often, and that their memory stays bounded."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache import Anomaly, InsightsOptions
from multilayercache.analytics.anomaly import (
    KEY_SPIKE,
    MISS_RATE_SPIKE,
    KeySpikes,
    MissRateSpikes,
    deliver,
    log_tail_bound,
)
from multilayercache.core.log import ThrottledWarning

from support import FakeClock

TICK = 0.25
OPTIONS = InsightsOptions()


def steady_counts(rng: np.random.Generator, requests: int, shares: list[float]) -> dict:
    """Accesses of keys 1..n (hashes) in one sample of ``requests``, each with its share."""
    drawn = rng.multinomial(requests, [*shares, 1 - sum(shares)])[:-1]
    return {key_hash: (int(count), ("slot", key_hash)) for key_hash, count in
            enumerate(drawn, start=1) if count}  # fmt: skip


ZIPF_SHARES = [0.1 / rank for rank in range(1, 40)]  # the head of a zipf(1) workload


def test_a_cold_key_jumping_to_a_fifth_of_the_traffic_is_reported_once() -> None:
    rng = np.random.default_rng(1)
    spikes = KeySpikes("l1", OPTIONS)
    found = []
    for tick in range(4 * 60):  # a steady minute: nothing
        assert not spikes.observe(TICK, 500, steady_counts(rng, 500, ZIPF_SHARES), tick)
    for tick in range(4 * 10):  # then key 999 takes 20% of the requests, for 10 s
        counts = steady_counts(rng, 400, ZIPF_SHARES)
        counts[999] = (100, ("slot", 7))
        found += [(tick, spike) for spike in spikes.observe(TICK, 500, counts, tick)]
    assert len(found) == 1  # reported once, not at every sample while it lasts
    tick, spike = found[0]
    assert tick * TICK <= 0.5  # at the first or second sample of the spike
    assert spike.kind == KEY_SPIKE and spike.key_hash == 999 and spike.layer == "l1"
    assert spike.baseline < 0.01 and spike.observed >= OPTIONS.key_share
    assert spikes.locator_of(999) == ("slot", 7)


def test_a_spike_is_reported_again_only_after_it_calmed_down() -> None:
    rng = np.random.default_rng(2)
    spikes = KeySpikes("l1", OPTIONS)
    reported = 0
    for phase in ["steady"] * 40 + ["spike"] * 8 + ["steady"] * 8 + ["spike"] * 8:
        counts = steady_counts(rng, 400, ZIPF_SHARES)
        if phase == "spike":
            counts[999] = (100, ("slot", 7))
        reported += len(spikes.observe(TICK, 500, counts, 0))
    assert reported == 2


def test_nothing_is_reported_before_the_warmup_nor_on_quiet_traffic() -> None:
    spikes = KeySpikes("l1", OPTIONS)
    for _ in range(int(OPTIONS.warmup_seconds / TICK)):  # a hot key from the very start
        assert not spikes.observe(TICK, 500, {1: (250, None)}, 0)
    quiet = KeySpikes("l1", OPTIONS)  # 40 requests a second: too few to judge (min_requests)
    for tick in range(200):
        counts = {1: (5, None)} if tick < 100 else {2: (10, None)}
        assert not quiet.observe(TICK, 10, counts, 0)


def test_the_hottest_key_of_a_steady_workload_is_not_a_spike() -> None:
    # Its share is high (50%) but usual: the baseline learns it during the warmup.
    rng = np.random.default_rng(3)
    spikes = KeySpikes("l1", OPTIONS)
    for _ in range(4 * 300):
        assert not spikes.observe(TICK, 500, steady_counts(rng, 500, [0.5, 0.1, 0.05]), 0)


def test_a_layers_miss_ratio_far_above_its_baseline() -> None:
    rng = np.random.default_rng(4)
    misses = MissRateSpikes("l2", OPTIONS)
    found = []
    for tick in range(4 * 120):
        ratio = 0.1 if tick < 4 * 60 else 0.6  # an invalidation storm after a minute
        missed = int(rng.binomial(500, ratio))
        spike = misses.observe(TICK, 500 - missed, missed, tick)
        if spike is not None:
            found.append((tick, spike))
    assert len(found) == 1
    tick, spike = found[0]
    assert 4 * 60 <= tick <= 4 * 60 + 2
    assert spike.kind == MISS_RATE_SPIKE and spike.layer == "l2"
    assert abs(spike.baseline - 0.1) < 0.02 and spike.observed >= 0.35


def test_a_steady_miss_ratio_with_noise_is_not_a_spike() -> None:
    rng = np.random.default_rng(5)
    misses = MissRateSpikes("l2", OPTIONS)
    for tick in range(4 * 600):
        requests = int(rng.integers(50, 1000))  # bursty traffic, same miss ratio
        missed = int(rng.binomial(requests, 0.3))
        assert misses.observe(TICK, requests - missed, missed, tick) is None


def test_the_chernoff_bound() -> None:
    assert log_tail_bound(5, 10) == 0  # fewer than expected: no surprise
    assert log_tail_bound(100, 0) > log_tail_bound(100, 10) > log_tail_bound(100, 50) > 0
    # 25 events where 5 were expected: about as unlikely as exp(-20)
    assert 19 < log_tail_bound(25, 5) < 21


@settings(max_examples=60, deadline=None)
@given(
    tracked=st.integers(1, 20),
    samples=st.lists(
        st.tuples(
            st.integers(0, 2_000),
            st.dictionaries(st.integers(0, 200), st.integers(0, 500), max_size=40),
        ),
        max_size=120,
    ),
)
def test_memory_stays_bounded(tracked: int, samples: list) -> None:
    options = InsightsOptions(tracked_keys=tracked, warmup_seconds=1)
    spikes = KeySpikes("l1", options)
    misses = MissRateSpikes("l1", options)
    for requests, counts in samples:
        spikes.observe(TICK, requests, {h: (c, h) for h, c in counts.items()}, 0)
        misses.observe(TICK, requests // 2, requests - requests // 2, 0)
        assert len(spikes) <= tracked
        for key_hash, entry in spikes._tracked.items():
            assert len(entry.window.recent) <= options.recent_samples
            assert entry.locator == key_hash
        assert len(misses._window.recent) <= options.recent_samples


def anomaly(**fields) -> Anomaly:
    base = dict(kind=KEY_SPIKE, layer="l1", observed=0.2, baseline=0.0, requests=900,
                window_seconds=1.0, at=0.0, key="k", key_hash=1)  # fmt: skip
    return Anomaly(**{**base, **fields})


def test_delivery_to_the_callback_and_the_log(caplog) -> None:
    clock = FakeClock()
    warn = ThrottledWarning(10, clock)
    got = []
    with caplog.at_level(logging.WARNING, "multilayercache"):
        for _ in range(3):
            deliver(anomaly(), got.append, warn)
        clock.advance(11)
        deliver(anomaly(key="other"), got.append, warn)
    assert [a.key for a in got] == ["k", "k", "k", "other"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # rate-limited: once per 10 s, then the count of the others
    assert "key 'k' is 20.0% of l1's requests" in messages[0]
    assert "'other'" in messages[1] and "2 similar warnings suppressed" in messages[1]


def test_a_callback_that_raises_is_logged_not_raised(caplog) -> None:
    def broken(_: Anomaly) -> None:
        raise RuntimeError("pager down")

    with caplog.at_level(logging.ERROR, "multilayercache"):
        deliver(anomaly(), broken, ThrottledWarning())
    assert any("on_anomaly raised" in r.getMessage() for r in caplog.records)


def test_anomalies_are_frozen_and_say_what_happened() -> None:
    spike = anomaly(kind=MISS_RATE_SPIKE, layer="l2", observed=0.6, baseline=0.1, key=None)
    assert str(spike) == (
        "l2's miss ratio is 60.0% over the last 1.0 s (900 requests; baseline 10.0%)"
    )
    with pytest.raises(AttributeError):
        spike.observed = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": float("nan")}, ValueError, "interval"),
        ({"key_share": "5%"}, TypeError, "key_share"),
        ({"key_share": 1.5}, ValueError, "key_share"),
        ({"windows": ()}, ValueError, "windows"),
        ({"windows": (10, -1)}, ValueError, "windows"),
        ({"recent_seconds": 0.1, "interval": 0.5}, ValueError, "recent_seconds"),
        ({"tracked_keys": 2.5}, ValueError, "tracked_keys"),
        ({"on_anomaly": "print"}, TypeError, "on_anomaly"),
        ({"min_requests": True}, TypeError, "min_requests"),
    ],
)
def test_bad_options_name_what_is_wrong(options: dict, error: type, named: str) -> None:
    with pytest.raises(error, match=named):
        InsightsOptions(**options)


def test_a_layer_that_served_nothing_yet_has_no_usual_miss_ratio() -> None:
    # An L2 that sees no request for a while (L1 answers everything), then only misses:
    # not a spike, since there was no miss ratio to depart from.
    misses = MissRateSpikes("l2", OPTIONS)
    for _ in range(4 * 30):
        assert misses.observe(TICK, 0, 0, 0) is None
    for _ in range(8):
        assert misses.observe(TICK, 0, 100, 0) is None
