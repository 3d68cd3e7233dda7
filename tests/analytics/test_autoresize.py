"""The opt-in rule that resizes an L1 from its size estimates (``AutoResize``): it grows a
layer too small for its traffic, shrinks one whose room buys nothing, stays within its
bounds, waits ``every`` seconds between decisions, and refuses layers it cannot steer."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from multilayercache import AutoResize, InsightsOptions, MultilayerCache
from multilayercache.analytics.autoresize import Resizer, resizer_for
from multilayercache.core.events import Resized

from support import FakeClock


def zipf_keys(count: int, universe: int, seed: int = 1) -> list[int]:
    """``count`` accesses to ``universe`` keys, zipf-like (exponent 0.8): a bigger cache
    keeps hitting more."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 0.8 for rank in range(universe)]
    return rng.choices(range(universe), weights=weights, k=count)


def read_through(layer: Any, keys: list[int]) -> None:
    for key in keys:
        if layer.get(key) is None:
            layer.set(key, key)


def estimating(impl: Any, max_size: int) -> Any:
    return impl.InMemoryLayer(
        max_size=max_size, name="l1", estimate_sizes=(0.5, 2), estimate_sample_rate=1 / 4
    )


def test_a_layer_too_small_for_its_traffic_grows_within_its_bounds(impl) -> None:
    layer, clock, heard = estimating(impl, 200), FakeClock(), []
    resizer = Resizer(AutoResize(min_size=100, max_size=600, every=10), layer, heard.append, clock)
    sizes = []
    for round_ in range(4):
        read_through(layer, zipf_keys(12_000, 20_000, seed=round_))
        clock.now += 10
        resizer.check()
        sizes.append(layer.max_size)
    assert sizes == [400, 600, 600, 600]  # twice, then held at max_size
    assert [(event.old_size, event.new_size) for event in heard] == [(200, 400), (400, 600)]
    assert all(isinstance(event, Resized) and event.estimated_gain >= 0.02 for event in heard)
    assert len(layer) <= 600


def test_a_layer_whose_room_buys_nothing_shrinks_to_min_size(impl) -> None:
    layer, clock = estimating(impl, 1_600), FakeClock()
    resizer = Resizer(AutoResize(min_size=600, max_size=3_200, every=10), layer, None, clock)
    hot = list(range(100)) * 100  # 100 keys: a sixth of the room holds them all
    random.Random(2).shuffle(hot)
    for _ in range(3):
        read_through(layer, hot)
        clock.now += 10
        resizer.check()
    assert layer.max_size == 600 and resizer.resizes == 2  # 1,600 -> 800 -> 600
    assert all(layer.get(key) == key for key in range(100))


def test_no_decision_before_every_seconds_nor_before_enough_sampled_reads(impl) -> None:
    layer, clock = estimating(impl, 200), FakeClock()
    rule = AutoResize(min_size=100, max_size=4_000, every=30, min_sampled_reads=2_000)
    resizer = Resizer(rule, layer, None, clock)
    read_through(layer, zipf_keys(4_000, 20_000))  # about 1,000 sampled reads at 1/4
    clock.now += 30
    assert resizer.check() is None and layer.max_size == 200  # too few sampled reads
    read_through(layer, zipf_keys(12_000, 20_000, seed=3))
    clock.now += 29
    assert resizer.check() is None  # within ``every`` of the last decision
    clock.now += 1
    assert resizer.check() is not None and layer.max_size == 400


def test_a_cache_with_the_rule_resizes_its_l1_on_the_insights_thread(impl) -> None:
    layer = estimating(impl, 200)
    rule = AutoResize(min_size=200, max_size=400, every=0.2, min_sampled_reads=500)
    heard: list[Any] = []
    cache = MultilayerCache(
        [layer], insights=InsightsOptions(interval=0.05, auto_resize=rule), on_event=heard.append
    )
    try:
        for key in zipf_keys(12_000, 20_000):
            cache.get_or_load(key, lambda key: key)
        deadline = time.monotonic() + 10
        while layer.max_size != 400 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert layer.max_size == 400
    finally:
        cache.close()
    assert [(event.old_size, event.new_size) for event in heard if isinstance(event, Resized)] == [
        (200, 400)
    ]


def test_bad_rules_and_layers_it_cannot_steer_are_refused_clearly(impl) -> None:
    with pytest.raises(ValueError, match="min_size .* is above max_size"):
        AutoResize(min_size=10, max_size=5)
    with pytest.raises(ValueError, match="step must be above 1"):
        AutoResize(min_size=1, max_size=5, step=1)
    with pytest.raises(TypeError, match="auto_resize must be an AutoResize"):
        InsightsOptions(auto_resize=(1, 5))  # type: ignore[arg-type]
    rule = AutoResize(min_size=1, max_size=5)
    plain = impl.InMemoryLayer(max_size=10)
    with pytest.raises(ValueError, match=r"estimate_sizes=\(0.5, 2\)"):
        resizer_for(rule, [plain], None)
    with pytest.raises(ValueError, match="no layer 1"):
        resizer_for(AutoResize(min_size=1, max_size=5, layer=1), [plain], None)
    with pytest.raises(ValueError, match=r"estimate_sizes"):
        MultilayerCache([plain], insights=InsightsOptions(auto_resize=rule))


def test_a_resize_starts_the_size_estimates_again_for_the_new_size(impl) -> None:
    layer = estimating(impl, 200)
    read_through(layer, zipf_keys(8_000, 20_000))
    before = layer.size_estimator
    layer.resize(400)
    estimator = layer.size_estimator
    assert estimator is not before and estimator.sampled_reads == 0
    assert estimator.shadow_sizes == (50, 100, 200)  # 0.5x, 1x and 2x of 400, at 1/4
    hits, reads = layer.stats().hits, layer.stats().hits + layer.stats().misses
    read_through(layer, zipf_keys(8_000, 20_000, seed=9))
    stats = layer.stats()
    since = (stats.hits - hits) / (stats.hits + stats.misses - reads)
    assert layer.size_estimates()[1.0] == pytest.approx(since)  # measured since the resize


def test_resizes_under_threads_that_sample_keep_the_layer_and_its_estimates_whole(impl) -> None:
    """Each resize starts the estimates again while 4 threads read and write (and fill the
    sample buffer, whose flushes hand it over between threads)."""
    from invariants import check_invariants

    layer = impl.InMemoryLayer(
        max_size=400, name="l1", estimate_sizes=(0.5, 2), estimate_sample_rate=1 / 2
    )
    stop, errors = threading.Event(), []

    def traffic(seed: int) -> None:
        keys = zipf_keys(20_000, 5_000, seed=seed)
        try:
            while not stop.is_set():
                read_through(layer, keys[:2_000])
        except Exception as error:  # (asserted below)
            errors.append(error)

    threads = [threading.Thread(target=traffic, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(60):
            layer.resize(200 if round_ % 2 else 800)
            estimates = layer.size_estimates()
            assert set(estimates) == {0.5, 1.0, 2.0}
            time.sleep(0.005)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert layer.max_size == 200  # the last resize
    assert layer.size_estimator.shadow_sizes == (50, 100, 200)  # of 200, at 1/2
    assert len(layer) <= 200
    check_invariants(layer)
