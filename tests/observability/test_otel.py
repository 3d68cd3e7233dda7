"""The OpenTelemetry instruments, read by the SDK's in-memory reader after a real workload
(L1 over a real Redis, sync and asyncio, each L1 twin): every metric is there with its
layer attribute, equal to ``stats()``; no key shows. And spans around loads."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from multilayercache import AsyncMultilayerCache, InMemoryLayer, MultilayerCache
from multilayercache.observability.metrics import METRIC_NAMES
from multilayercache.observability.otel import instrument, traced

from metrics_support import (
    INSIGHT_NAMES,
    SECRET_KEY,
    check_insights_moved,
    check_workload_counted,
    expected_insight_samples,
    expected_samples,
)


def collect(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset], float]:
    """``{(name, attributes): value}`` of one collection, named as Prometheus would show
    them (counters get their ``_total`` back)."""
    found: dict[tuple[str, frozenset], float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                name = metric.name
                summary_part = name.startswith("cache_load_duration_seconds_")
                if getattr(metric.data, "is_monotonic", False) and not summary_part:
                    name += "_total"
                for point in metric.data.data_points:
                    found[(name, frozenset(point.attributes.items()))] = point.value
    return found


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


def test_a_collection_shows_every_metric_equal_to_stats(worked: Any, reader: Any) -> None:
    provider = MeterProvider(metric_readers=[reader])
    try:
        instrument(worked, name="orders", meter_provider=provider)
        collected = collect(reader)
        stats = worked.stats()
    finally:
        provider.shutdown()
    check_workload_counted(stats)
    expected = expected_samples(stats, "orders")
    missing = set(expected) - set(collected)
    assert not missing, sorted(missing)
    for sample, value in expected.items():
        assert math.isclose(collected[sample], value), (sample, collected[sample], value)
    for name in ("cache_gets_total", "cache_puts_total", "cache_evictions_total"):
        assert {dict(labels)["layer"] for metric, labels in collected if metric == name} == {
            "l1",
            "l2",
        }
    quantiles = {
        dict(labels)["quantile"]
        for name, labels in collected
        if name == "cache_load_duration_seconds"
    }
    assert quantiles == {"0.5", "0.9", "0.99"}
    values = {value for _, labels in collected for _, value in labels}
    assert not any(SECRET_KEY in value or "item:" in value for value in values)
    known = METRIC_NAMES | {"cache_load_duration_seconds_count", "cache_load_duration_seconds_sum"}
    assert {name for name, _ in collected} <= known


def test_a_collection_shows_every_insight_equal_to_insights(insightful: Any, reader: Any) -> None:
    provider = MeterProvider(metric_readers=[reader])
    try:
        instrument(insightful, name="orders", meter_provider=provider)
        collected = collect(reader)
        report = insightful.insights()
    finally:
        provider.shutdown()
    check_insights_moved(report)
    expected = expected_insight_samples(report, "orders")
    exported = {series for series in collected if series[0] in INSIGHT_NAMES}
    assert exported == set(expected), sorted(exported ^ set(expected))
    for sample, value in expected.items():
        assert math.isclose(collected[sample], value), (sample, collected[sample], value)
    values = {value for _, labels in collected for _, value in labels}
    assert not any("item:" in value or "cold:" in value for value in values)


def test_a_cache_without_insights_reports_no_insight_series(worked: Any, reader: Any) -> None:
    provider = MeterProvider(metric_readers=[reader])
    try:
        instrument(worked, name="orders", meter_provider=provider)
        collected = collect(reader)
    finally:
        provider.shutdown()
    assert collected
    assert not {name for name, _ in collected} & set(INSIGHT_NAMES)


def test_two_caches_share_the_instruments_of_one_provider(reader: Any) -> None:
    provider = MeterProvider(metric_readers=[reader])
    try:
        sync_cache = MultilayerCache([InMemoryLayer(max_size=10, name="l1")])
        async_cache = AsyncMultilayerCache([InMemoryLayer(max_size=10, name="l1")])
        first = instrument(sync_cache, name="a", meter_provider=provider)
        assert instrument(async_cache, name="b", meter_provider=provider) is first
        sync_cache.set("k", 1)
        sync_cache.get("k")
        asyncio.run(async_cache.get("k"))
        collected = collect(reader)
        hits = {
            dict(labels)["cache"]: value
            for (name, labels), value in collected.items()
            if name == "cache_gets_total" and dict(labels)["result"] == "hit"
        }
        assert hits == {"a": 1, "b": 0}
        with pytest.raises(ValueError, match="already"):
            instrument(sync_cache, name="a", meter_provider=provider)
        first.remove("b")
        assert {dict(labels)["cache"] for _, labels in collect(reader)} == {"a"}
    finally:
        provider.shutdown()


def test_traced_loaders_make_a_span_per_load_and_record_failures() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("test")
    cache = MultilayerCache([InMemoryLayer(max_size=10)])

    def broken(key: Any) -> Any:
        raise ValueError("no such order")

    assert cache.get_or_load(SECRET_KEY, traced(str.upper, "orders", tracer)) == SECRET_KEY.upper()
    assert cache.get_or_load(SECRET_KEY, traced(str.upper, "orders", tracer)) == SECRET_KEY.upper()
    with pytest.raises(ValueError):
        cache.get_or_load("other", traced(broken, "orders", tracer))
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["cache.load", "cache.load"]  # the hit loads nothing
    assert all(span.attributes == {"cache.name": "orders"} for span in spans)
    assert spans[0].status.status_code is not StatusCode.ERROR
    assert spans[1].status.status_code is StatusCode.ERROR
    assert spans[1].events[0].name == "exception"


def test_traced_async_loaders() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=10)])

    async def load(key: Any) -> Any:
        await asyncio.sleep(0)
        return key * 2

    loader = traced(load, "orders", tracer_provider.get_tracer("test"))
    assert asyncio.run(cache.get_or_load("ab", loader)) == "abab"
    assert [span.name for span in exporter.get_finished_spans()] == ["cache.load"]
    with pytest.raises(TypeError, match="callable"):
        traced("not a function")  # type: ignore[arg-type]


def test_a_collection_reads_each_cache_once(reader: Any) -> None:
    """Its instruments report one reading: they agree, and a collection costs one
    ``stats()`` per cache, not one per instrument."""

    class Counted:
        def __init__(self) -> None:
            self.layer = InMemoryLayer(max_size=10, name="l1")
            self.reads = 0

        def stats(self) -> Any:
            self.reads += 1
            return self.layer.stats()

    provider = MeterProvider(metric_readers=[reader])
    try:
        counted = Counted()
        instrument(counted, name="counted", meter_provider=provider)
        collect(reader)
        assert counted.reads == 1
        counted.layer.set("k", 1)
        counted.layer.get("k")
        collected = collect(reader)  # the next collection reads afresh
        assert counted.reads == 2
        hit = frozenset({"cache": "counted", "layer": "l1", "result": "hit"}.items())
        assert collected[("cache_gets_total", hit)] == 1
    finally:
        provider.shutdown()


def test_a_cache_whose_stats_fail_costs_the_others_nothing(
    reader: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def stats(self) -> Any:
            raise RuntimeError("stats broke")

    provider = MeterProvider(metric_readers=[reader])
    try:
        instruments = instrument(Broken(), name="broken", meter_provider=provider)
        instruments.add(InMemoryLayer(max_size=10, name="fine"), "fine")
        assert {dict(labels)["cache"] for _, labels in collect(reader)} == {"fine"}
        assert "stats broke" in caplog.text
        with pytest.raises(TypeError, match="stats"):
            instruments.add(object(), "x")
    finally:
        provider.shutdown()
