"""Insights of a real InMemoryLayer (both twins), sampled on an injected clock: the same
``Insights.sample()`` the sampler thread runs, driven through simulated minutes."""

from __future__ import annotations

import numpy as np
import pytest

from multilayercache import InsightsOptions
from multilayercache.analytics.anomaly import KEY_SPIKE, MISS_RATE_SPIKE
from multilayercache.analytics.insights import Insights, zipf_exponent

from support import IMPLEMENTATIONS, FakeClock

TICK = 0.25
COMPILED_OR_PURE = IMPLEMENTATIONS[-1]  # the long runs: compiled when built


def zipf_keys(rng: np.random.Generator, exponent: float, universe: int, n: int) -> np.ndarray:
    """``n`` keys of a zipf(``exponent``) workload over ``universe`` keys, ranks shuffled
    (so that key values say nothing of their rank), the same way at every call."""
    weights = np.arange(1, universe + 1, dtype=np.float64) ** -exponent
    ranked = np.random.default_rng(0).permutation(universe)
    return ranked[rng.choice(universe, n, p=weights / weights.sum())]


class Workload:
    """An L1 read through (a miss stores the key), sampled every ``TICK`` of a fake clock."""

    def __init__(self, layer_class: type, options: InsightsOptions | None = None, size=2_000):
        self.clock = FakeClock()
        self.layer = layer_class(max_size=size, name="l1", clock=self.clock)
        self.emitted: list = []  # what the cache's events would get (``cache.subscribe``)
        self.insights = Insights([self.layer], options, clock=self.clock, emit=self.emitted.append)
        self.found: list = []
        self.insights.sample()

    def run(self, keys: np.ndarray, per_tick: int) -> None:
        get, put = self.layer.get, self.layer.set
        for start in range(0, len(keys), per_tick):
            for key in keys[start : start + per_tick].tolist():
                if get(key) is None:
                    put(key, key)
            self.clock.advance(TICK)
            self.found += self.insights.sample()


def test_ten_minutes_of_steady_zipf_traffic_report_nothing() -> None:
    # 600 requests a second for 10 simulated minutes (2,400 samples).
    rng = np.random.default_rng(11)
    work = Workload(COMPILED_OR_PURE.InMemoryLayer)
    work.run(zipf_keys(rng, 1.0, 20_000, 600 * 600), 150)
    assert work.found == []
    report = work.insights.report()
    assert report.samples == 2_401 and report.anomalies == []
    rates = report.layer("l1").window(60)
    assert rates.requests_per_second == pytest.approx(600, rel=0.02)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda impl: impl.name)
def test_a_cold_key_jumping_to_a_fifth_of_the_traffic_is_reported_within_two_seconds(impl):
    rng = np.random.default_rng(12)
    work = Workload(impl.InMemoryLayer)
    work.run(zipf_keys(rng, 1.0, 20_000, 600 * 20), 150)  # 20 s steady
    assert work.found == []
    spiking = zipf_keys(rng, 1.0, 20_000, 600 * 5).astype(object)
    spiking[rng.random(len(spiking)) < 0.2] = "cold key"  # 20% of the traffic from now on
    for second in range(5):
        work.run(spiking[second * 600 : (second + 1) * 600], 150)
        if work.found:
            break
    assert second < 2, "not reported within 2 s"
    [spike] = work.found
    assert spike.kind == KEY_SPIKE and spike.key == "cold key" and spike.layer == "l1"
    assert spike.observed >= 0.05 and spike.baseline < 0.01
    assert work.insights.report().anomalies == [spike]
    assert work.emitted == [spike]  # and the cache's event listeners hear of it


def test_a_key_that_keeps_missing_is_reported_too() -> None:
    # A key the application never stores (a negative lookup under attack): counted by the
    # layer's table of keys that keep missing.
    rng = np.random.default_rng(13)
    impl = COMPILED_OR_PURE
    work = Workload(impl.InMemoryLayer)
    work.run(zipf_keys(rng, 1.0, 20_000, 600 * 20), 150)
    get = work.layer.get
    for _ in range(8):
        for key in zipf_keys(rng, 1.0, 20_000, 120).tolist():
            if get(key) is None:
                work.layer.set(key, key)
        for _ in range(30):
            get("absent")
        work.clock.advance(TICK)
        work.found += work.insights.sample()
    assert [(a.kind, a.key) for a in work.found][:1] == [(KEY_SPIKE, "absent")]


def test_a_miss_rate_spike_of_a_real_layer() -> None:
    rng = np.random.default_rng(14)
    work = Workload(COMPILED_OR_PURE.InMemoryLayer)
    work.run(zipf_keys(rng, 1.0, 20_000, 600 * 20), 150)
    baseline_ratio = work.insights.report().layer("l1").window(10).hit_ratio
    for _ in range(8):  # the keys change: a deploy with a new key scheme
        for key in zipf_keys(rng, 1.0, 20_000, 150).tolist():
            work.layer.get(("v2", key))
        work.clock.advance(TICK)
        work.found += work.insights.sample()
    [spike] = [a for a in work.found if a.kind == MISS_RATE_SPIKE]
    # The new scheme's hottest keys (never seen, now several % of the traffic) spike too.
    assert all(a.key[0] == "v2" for a in work.found if a.kind == KEY_SPIKE)
    assert spike.baseline == pytest.approx(1 - baseline_ratio, abs=0.05)
    assert spike.observed >= spike.baseline + 0.25


def test_rates_over_sliding_windows() -> None:
    clock = FakeClock()
    layer = IMPLEMENTATIONS[0].InMemoryLayer(max_size=10, clock=clock, name="l1")
    insights = Insights([layer], InsightsOptions(windows=(10, 60)), clock=clock)
    layer.set("k", 1)
    for second in range(120):
        # first minute: 20 hits and 5 misses a second; second minute: 10 hits, no miss
        for _ in range(20 if second < 60 else 10):
            layer.get("k")
        for _ in range(5 if second < 60 else 0):
            layer.get("absent")
        clock.advance(1)
        insights.sample()
    ten, sixty = insights.report().layer("l1").windows
    assert (ten.seconds, ten.covered_seconds) == (10, 10)
    assert ten.hits_per_second == 10 and ten.misses_per_second == 0 and ten.hit_ratio == 1
    assert sixty.covered_seconds == 60 and sixty.requests_per_second == 10
    for _ in range(3):  # after 5 s of nothing, the 10 s window holds half of it
        clock.advance(1)
        insights.sample()
    for _ in range(2):
        clock.advance(1)
        insights.sample()
    assert insights.report().layer("l1").window(10).hits_per_second == 5


def test_evictions_and_expirations_per_second() -> None:
    clock = FakeClock()
    layer = IMPLEMENTATIONS[0].InMemoryLayer(max_size=100, clock=clock, name="l1", ttl=1)
    insights = Insights([layer], InsightsOptions(windows=(10,)), clock=clock)
    insights.sample()
    for second in range(10):
        for key in range(300):  # 300 new keys a second into 100 places ...
            for _ in range(second + 2):  # ... each asked for more than the last second's
                layer.get((second, key))
            layer.set((second, key), key)
        clock.advance(1)
        insights.sample()
    rates = insights.report().layer("l1").window(10)
    stats = layer.stats()
    # Evicted for room, as cache_evictions_total{cause="size"}: a newcomer that lost
    # admission is a rejection.
    assert stats.admission_losses > 0
    assert rates.evictions_per_second == (stats.evictions - stats.admission_losses) / 10 > 0
    assert rates.expirations_per_second == stats.expirations / 10 > 0


@pytest.mark.parametrize("exponent", [0.8, 1.0, 1.2])
def test_the_zipf_exponent_of_synthetic_traffic(exponent: float) -> None:
    rng = np.random.default_rng(15)
    work = Workload(COMPILED_OR_PURE.InMemoryLayer, size=10_000)
    work.run(zipf_keys(rng, exponent, 100_000, 4_000 * 62), 1_000)  # 62 s at 4,000/s
    layer = work.insights.report().layer("l1")
    assert layer.zipf_exponent == pytest.approx(exponent, abs=0.05)
    assert layer.zipf_keys == 256


def test_the_zipf_fit() -> None:
    ranks = np.arange(1, 1_001, dtype=np.float64)
    assert zipf_exponent(np.round(1e6 * ranks**-1.1).astype(np.int64))[0] == pytest.approx(
        1.1, abs=0.01
    )
    assert zipf_exponent(np.full(100, 50)) == (pytest.approx(0.0, abs=1e-9), 100)  # uniform
    assert zipf_exponent(np.array([1_000, 500, 3, 2, 1])) == (None, 2)  # too few keys


def test_memory_stays_bounded_over_a_long_run() -> None:
    rng = np.random.default_rng(16)
    options = InsightsOptions(windows=(10, 60), tracked_keys=16)
    work = Workload(COMPILED_OR_PURE.InMemoryLayer, options)
    work.run(zipf_keys(rng, 0.9, 50_000, 200 * 4 * 200), 200)  # 200 s of many keys
    sampled = work.insights._layers[0]
    assert len(sampled.ring) <= sampled.ring.maxlen <= 62
    assert len(sampled.keys) <= 16
    assert len(work.insights.report().anomalies) <= 32


def test_a_layer_without_per_key_counts_gets_rates_only(redis_url, prefix) -> None:
    from multilayercache import RedisLayer

    clock = FakeClock()
    l2 = RedisLayer(redis_url, prefix=prefix, name="l2")
    try:
        insights = Insights([l2], clock=clock)
        insights.sample()
        l2.set("a", 1)
        for _ in range(30):
            l2.get("a")
            l2.get("b")
        clock.advance(1)
        insights.sample()
        layer = insights.report().layer("l2")
        assert layer.window(10).hits_per_second == 30 and layer.window(10).hit_ratio == 0.5
        assert layer.zipf_exponent is None and layer.tracked_keys == 0
    finally:
        l2.close()
