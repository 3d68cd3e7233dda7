"""``cache.insights()`` and ``insights=`` / ``on_anomaly=`` on both managers ({sync,
asyncio} x {compiled, pure}, over a real Redis and a real cluster): a sampler thread reads
the layers' counters while the cache serves, and reports rates per layer."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from multilayercache import InsightsOptions

FAST = InsightsOptions(interval=0.02, windows=(1.0, 60.0), recent_seconds=0.1)


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_insights_per_layer_from_a_sampler_thread(harness) -> None:
    cache = harness.cache([harness.l1(), harness.l2()], insights=FAST)
    try:
        wait_for(lambda: cache.insights().samples >= 1)  # the windows start before the traffic
        cache.set("a", "1")
        for _ in range(50):
            assert cache.get("a") == "1"  # L1 hits
            assert cache.get("absent") is None  # a miss in both layers
        sampled = cache.insights().samples
        wait_for(lambda: cache.insights().samples >= sampled + 2)  # one after all the traffic
        report = cache.insights()
        assert [layer.name for layer in report.layers] == ["l1", "l2"]
        l1, l2 = report.layer("l1"), report.layer("l2")
        assert [rates.seconds for rates in l1.windows] == [1.0, 60.0]
        assert l1.window(60).hit_ratio == pytest.approx(0.5)
        assert l2.window(60).hit_ratio == 0.0  # only the absent key reached it
        stats = cache.stats()
        covered = l1.window(60).covered_seconds
        assert l1.window(60).requests_per_second * covered == pytest.approx(
            stats.layer("l1").requests
        )
        assert l2.window(60).misses_per_second * covered == pytest.approx(stats.layer("l2").misses)
        assert report.anomalies == [] and l2.zipf_exponent is None
    finally:
        cache.close()


def test_insights_are_off_by_default(harness) -> None:
    cache = harness.cache([harness.l1(), harness.l2()])
    with pytest.raises(RuntimeError, match="insights are off"):
        cache.insights()
    assert cache._target._sampler is None


def test_on_anomaly_alone_turns_insights_on(harness) -> None:
    def alert(anomaly) -> None:
        pass

    cache = harness.cache([harness.l1()], on_anomaly=alert)
    try:
        assert cache._target._sampler.insights.options.on_anomaly is alert
        assert cache.insights().layers[0].name == "l1"
    finally:
        cache.close()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"insights": "yes"}, TypeError, "insights must be"),
        ({"on_anomaly": 42}, TypeError, "on_anomaly must be callable"),
        (
            {"insights": InsightsOptions(on_anomaly=print), "on_anomaly": print},
            ValueError,
            "on_anomaly is given twice",
        ),
    ],
)
def test_bad_insights_arguments_name_what_is_wrong(harness, options, error, message) -> None:
    before = threading.active_count()
    with pytest.raises(error, match=message):
        harness.cache([harness.l1()], **options)
    assert threading.active_count() == before  # nothing was started


def test_close_stops_the_sampler(harness) -> None:
    cache = harness.cache([harness.l1()], insights=FAST)
    sampler = cache._target._sampler
    assert sampler.running
    cache.close()
    wait_for(lambda: not sampler.running)
    samples = cache.insights().samples  # what was sampled stays readable
    time.sleep(0.1)
    assert cache.insights().samples == samples


def test_a_cache_dropped_without_close_stops_its_sampler(harness) -> None:
    cache = harness.cache([harness.l1()], insights=FAST)
    thread = cache._target._sampler._thread
    harness._caches.remove(cache)
    del cache
    gc.collect()
    wait_for(lambda: not thread.is_alive())


def test_a_failing_callback_does_not_stop_the_sampling(harness, caplog) -> None:
    calls = []

    def broken(anomaly) -> None:
        calls.append(anomaly)
        raise RuntimeError("pager down")

    options = InsightsOptions(
        interval=0.02, recent_seconds=0.1, warmup_seconds=0.2, min_requests=20, on_anomaly=broken
    )
    cache = harness.cache([harness.l1()], insights=options)
    try:
        for key in range(200):  # a steady stream of hits
            cache.set(f"k{key}", "v")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for key in range(0, 200, 7):
                cache.get(f"k{key}")
            time.sleep(0.005)
        for _ in range(40):  # then everything misses
            for key in range(50):
                cache.get(f"gone{key}")
            time.sleep(0.005)
        wait_for(lambda: calls)
        samples = cache.insights().samples
        wait_for(lambda: cache.insights().samples > samples + 2)  # still sampling
        assert any("on_anomaly raised" in r.getMessage() for r in caplog.records)
    finally:
        cache.close()
