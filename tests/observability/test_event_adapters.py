"""The event adapters: logging (levels, a bounded rate, no values) and OpenTelemetry
(counters read back through the SDK's in-memory reader after a real workload)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from multilayercache import MultilayerCache
from multilayercache.core.events import Anomaly, BreakerTransition, DeadLettered, Refresh, Removal
from multilayercache.observability.events_logging import EventLogger

from support import FakeClock

WAIT = 10.0


def test_each_kind_is_logged_at_its_level(caplog) -> None:
    log = EventLogger()
    with caplog.at_level(logging.DEBUG, logger="multilayercache.events"):
        log(BreakerTransition("l2", "closed", "open"))
        log(BreakerTransition("l2", "half_open", "closed"))
        log(DeadLettered("l2", 3))
        log(Refresh("k", "stale", False, "TimeoutError"))
        log(Refresh("k", "early", True))
        log(Anomaly("key_spike", "l1", 0.2, 0.001, key="hot"))
        log(Removal("l1", "user:1", {"secret": "value"}, "evicted"))
    levels = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert levels == [
        ("WARNING", "l2: circuit breaker closed -> open"),
        ("INFO", "l2: circuit breaker half_open -> closed"),
        ("ERROR", "l2: 3 write(s) given up on, in the dead letter"),
        ("WARNING", "refresh (stale) of 'k' failed: TimeoutError; the stale value is kept"),
        ("DEBUG", "refresh (early) of 'k' done"),
        ("WARNING", "anomaly key_spike on l1, key 'hot': 0.2 against a baseline of 0.001"),
        ("DEBUG", "l1: 'user:1' evicted"),
    ]
    assert "secret" not in caplog.text  # values are never logged


def test_the_rate_is_bounded_per_kind_and_what_was_left_out_is_told(caplog) -> None:
    clock = FakeClock()
    log = EventLogger(per_second=2, burst=3, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="multilayercache.events"):
        for n in range(100):
            log(Removal("l1", n, n, "evicted"))
        log(DeadLettered("l2", 1))  # another kind has a budget of its own
        clock.advance(1.0)  # two more tokens
        log(Removal("l1", "late", 0, "expired"))
    messages = [record.getMessage() for record in caplog.records]
    assert messages[:4] == [
        "l1: 0 evicted",
        "l1: 1 evicted",
        "l1: 2 evicted",
        "l2: 1 write(s) given up on, in the dead letter",
    ]
    assert messages[4] == "l1: 'late' expired (97 more Removal events not logged)"
    assert len(messages) == 5


def test_long_keys_are_shortened_and_bad_settings_refused(caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="multilayercache.events"):
        EventLogger()(Removal("l1", "k" * 1000, None, "invalidated"))
    assert len(caplog.records[0].getMessage()) < 120
    with pytest.raises(ValueError, match="per_second > 0"):
        EventLogger(per_second=0)


def test_a_disabled_level_costs_no_token(caplog) -> None:
    log = EventLogger(burst=1)
    with caplog.at_level(logging.WARNING, logger="multilayercache.events"):
        for n in range(10):
            log(Removal("l1", n, n, "evicted"))  # debug: not logged, not counted
        log(DeadLettered("l2", 1))
    assert [record.levelname for record in caplog.records] == ["ERROR"]
    assert log.suppressed == {}


def test_otel_counters_equal_the_layer_counters_after_a_workload(Layer) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from multilayercache.observability.events_otel import OtelEventCounter

    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    counter = OtelEventCounter(meter, cache_name="users")
    delivered: list[Any] = []

    def listener(event: Any) -> None:
        counter(event)
        delivered.append(event)

    clock = FakeClock()
    l1 = Layer(max_size=50, name="l1", clock=clock)
    cache = MultilayerCache([l1], on_event=listener)
    for key in range(200):
        cache.set(key, key, ttl=1 if key % 4 == 0 else None)
    clock.advance(2)
    for key in range(200):
        cache.get(key)
    for key in range(0, 200, 3):
        cache.delete(key)
    cache.events.emit(Anomaly("key_spike", "k", 1.0, 0.0))
    cache.events.emit(DeadLettered("l2", 4))
    cache.clear()  # what is left leaves too: each of the 200 values is removed once
    deadline = time.monotonic() + WAIT
    while len(delivered) < 202 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = l1.stats()
    points: dict[tuple[str, tuple], int] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points[(metric.name, tuple(sorted(point.attributes.items())))] = point.value

    def removals(cause: str) -> int:
        key = ("cache.removals", (("cache", "users"), ("cause", cause), ("layer", "l1")))
        return points.get(key, 0)

    assert removals("expired") == stats.expirations > 0
    assert removals("evicted") + removals("rejected") == stats.evictions > 0
    assert removals("rejected") == stats.rejections
    assert sum(map(removals, ("expired", "evicted", "rejected", "invalidated"))) == 200
    assert points[("cache.anomalies", (("cache", "users"), ("kind", "key_spike")))] == 1
    assert points[("cache.dead_letters", (("cache", "users"), ("layer", "l2")))] == 4
    assert all("key" not in dict(attributes) for _, attributes in points)
