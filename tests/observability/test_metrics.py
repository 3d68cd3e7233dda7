"""The metric families themselves (``observability/metrics.py``) and the counters they
need: ``puts`` in both L1 twins and in the Redis layers, evictions by cause that never run
backwards, labels that name layers and never keys, a breaker's state as a level."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache import (
    InMemoryLayer,
    LayerError,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.observability.metrics import (
    METRIC_NAMES,
    SPECS,
    Durations,
    Kind,
    families,
    layer_labels,
)
from multilayercache.tools.servers import free_port

from support import IMPLEMENTATIONS


def values(stats: Any, name: str, cache: str = "c") -> dict[tuple[str, ...], Any]:
    """``{labels after cache: value}`` of the family ``name``."""
    (family,) = [family for family in families(stats, cache) if family.spec.name == name]
    return {sample.labels[1:]: sample.value for sample in family.samples}


def test_l1_counts_every_value_written(Layer: type) -> None:
    l1 = Layer(max_size=100)
    l1.set("a", 1)
    l1.set("a", 2)  # an update is a put too
    l1.set_many({"b": 1, "c": 2})
    assert l1.add("a", 3) is False  # held: nothing written
    assert l1.add("d", 4) is True
    l1.incr("n")  # a new counter is written ...
    l1.incr("n")  # ... an increment is not a put
    l1.get("a")
    l1.delete("b")
    assert l1.stats().puts == 6
    assert values(l1.stats(), "cache_puts_total") == {("memory",): 6}


def test_a_value_too_large_is_a_rejection_and_no_eviction(Layer: type) -> None:
    l1 = Layer(max_weight=10, weigher=lambda key, value: len(value), name="l1")
    l1.set("small", "abc")
    l1.set("huge", "x" * 11)
    stats = l1.stats()
    assert (stats.rejections, stats.admission_losses, stats.evictions) == (1, 0, 0)
    causes = values(stats, "cache_evictions_total")
    assert causes == {("l1", "size"): 0, ("l1", "expired"): 0, ("l1", "rejected"): 1}


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda impl: impl.name)
@settings(max_examples=100, deadline=None)
@given(
    max_size=st.integers(1, 12),
    ops=st.lists(st.tuples(st.sampled_from("ssg"), st.integers(0, 30)), max_size=300),
)
def test_evictions_by_cause_account_for_every_new_entry(impl: Any, max_size: int, ops) -> None:
    """Every new key written is held, evicted for size or rejected: the causes add up, and
    no counter ever runs backwards (Prometheus reads a drop as a restart). (Deletes are
    left out: a declined key stays readable until the next new key, so deleting it then
    removes a key already counted as rejected.)"""
    l1 = impl.InMemoryLayer(max_size=max_size, name="l1")
    new_keys = 0
    last: dict[tuple[str, tuple[str, ...]], float] = {}
    for op, key in ops:
        if op == "s":
            new_keys += key not in l1
            l1.set(key, key)
        else:
            l1.get(key)
        stats = l1.stats()
        causes = values(stats, "cache_evictions_total")
        held = values(stats, "cache_size")[("l1",)]
        assert new_keys == held + causes[("l1", "size")] + causes[("l1", "rejected")]
        for family in families(stats, "c"):
            if family.spec.kind is Kind.COUNTER:
                for sample in family.samples:
                    series = (family.spec.name, sample.labels)
                    assert sample.value >= last.get(series, 0), series
                    last[series] = sample.value


def test_redis_layer_counts_the_writes_that_succeeded(redis_url: str, prefix: str) -> None:
    l2 = RedisLayer(redis_url, prefix=prefix)
    try:
        l2.set("a", 1)
        l2.set_many({"b": 1, "c": 2})
        assert l2.add("a", 2) is False
        assert l2.add("d", 2) is True
        assert l2.stats().puts == 4
    finally:
        l2.close()
    down = RedisLayer(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix)
    with pytest.raises(LayerError):
        down.set("a", 1)
    assert down.stats().puts == 0


def test_layers_of_one_name_get_the_labels_the_manager_gives_them() -> None:
    cache = MultilayerCache([InMemoryLayer(max_size=10), InMemoryLayer(max_size=20)])
    stats = cache.stats()
    assert layer_labels(stats.layers) == ["memory", "memory#1"] == list(stats.read_errors)
    assert values(stats, "cache_max_size") == {("memory",): 10, ("memory#1",): 20}


def test_loads_are_counted_by_result_and_timed() -> None:
    cache = MultilayerCache([InMemoryLayer(max_size=10)])

    def broken(key: Any) -> Any:
        raise KeyError(key)

    cache.get_or_load("a", str.upper)
    cache.get_or_load("b", str.upper)
    with pytest.raises(KeyError):
        cache.get_or_load("c", broken)
    stats = cache.stats()
    assert values(stats, "cache_load_total") == {("success",): 2, ("failure",): 1}
    (durations,) = values(stats, "cache_load_duration_seconds").values()
    assert isinstance(durations, Durations)
    assert durations.count == 3 and durations.total_seconds > 0
    assert set(durations.quantiles) == {0.5, 0.9, 0.99}
    empty = values(
        MultilayerCache([InMemoryLayer(max_size=10)]).stats(), "cache_load_duration_seconds"
    )
    assert empty == {(): Durations(0, 0.0, {})}  # no made-up quantiles before a load


def test_an_open_breaker_reads_2_and_counts_its_opening(prefix: str) -> None:
    l2 = RedisLayer(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix, name="l2")
    cache = MultilayerCache([InMemoryLayer(max_size=10), l2], [None, LayerPolicy(retry=None)])
    assert values(cache.stats(), "cache_breaker_state") == {("l2",): 0}
    for n in range(20):
        cache.get(f"k{n}")  # refused connections: read errors, then the breaker opens
    stats = cache.stats()
    assert stats.breakers["l2"].state == "open"
    assert values(stats, "cache_breaker_state") == {("l2",): 2}
    assert values(stats, "cache_breaker_openings_total") == {("l2",): 1}
    assert values(stats, "cache_read_errors_total")[("l2",)] == stats.read_errors["l2"] > 0


def test_names_are_declared_once_and_spelled_as_dashboards_expect() -> None:
    assert len(METRIC_NAMES) == len(SPECS)
    for spec in SPECS:
        assert spec.name.startswith("cache_") and spec.labels[0] == "cache"
        assert spec.name.endswith("_total") == (spec.kind is Kind.COUNTER), spec.name
        assert "key" not in spec.labels
    for name in ("cache_gets_total", "cache_puts_total", "cache_evictions_total", "cache_size",
                 "cache_load_total", "cache_load_duration_seconds"):  # fmt: skip
        assert name in METRIC_NAMES


def test_bad_input_is_refused_by_name() -> None:
    stats = InMemoryLayer(max_size=10).stats()
    with pytest.raises(ValueError, match="cache name"):
        families(stats, "")
    with pytest.raises(TypeError, match="CacheStats or a LayerStats"):
        families({"hits": 1}, "c")  # type: ignore[arg-type]


def test_refreshes_are_counted_by_kind_and_stale_reads_as_served(clock: Any) -> None:
    policy = LayerPolicy(ttl=10, stale_ttl=100, refresh_ahead=0.5, refresh_jitter=0)
    cache = MultilayerCache([InMemoryLayer(max_size=10, clock=clock)], [policy])
    versions = iter(range(100))

    def load(key: Any) -> Any:
        return next(versions)

    def failing(key: Any) -> Any:
        raise ConnectionError(key)

    try:
        assert cache.get_or_load("k", load) == 0
        clock.advance(6)  # past the refresh point, still fresh: an early refresh
        assert cache.get_or_load("k", load) == 0
        assert cache.wait_idle(5)
        clock.advance(20)  # stale: served at once, refreshed behind
        assert cache.get_or_load("k", load) == 1
        assert cache.wait_idle(5)
        clock.advance(20)
        assert cache.get_or_load("k", failing) == 2  # stale again; its refresh fails
        assert cache.wait_idle(5)
        stats = cache.stats()
    finally:
        cache.close()
    assert values(stats, "cache_refreshes_total") == {("stale",): 2, ("early",): 1}
    assert values(stats, "cache_refresh_failures_total") == {(): 1}
    assert values(stats, "cache_stale_served_total") == {(): 2} == {(): stats.stale_served}
    assert stats.refreshes == 3


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [("prometheus", "prometheus_client", "prometheus"), ("otel", "opentelemetry", "otel")],
)
def test_without_the_extra_the_import_error_names_it(module: str, missing: str, extra: str) -> None:
    """In a fresh interpreter where the package cannot be imported."""
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        f"import multilayercache.observability as observability  # needs neither\n"
        f"import multilayercache.observability.{module}"
    )
    source = str(Path(__file__).resolve().parents[2] / "src")
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": source},
    )
    assert result.returncode == 1
    assert f"ImportError: multilayercache.observability.{module} needs" in result.stderr
    assert f"pip install 'multilayercache[{extra}]'" in result.stderr
