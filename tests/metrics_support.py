"""The scripted workload of the exporters' tests (tests/observability), and what they must
show for it, written out from ``stats()`` field by field."""

from __future__ import annotations

import time
from typing import Any

import pytest

SECRET_KEY = "user:ada.lovelace@example.com:4711"
"""A key no metric may show: not as a label, not anywhere in an export."""


class LoaderFailed(Exception):
    pass


def run_workload(cache: Any, is_async: bool, raw_redis: Any, prefix: str) -> None:
    def load(key: Any) -> Any:
        return f"loaded {key}"

    def fail(key: Any) -> Any:
        raise LoaderFailed(key)

    loader, failing = (_as_async(load), _as_async(fail)) if is_async else (load, fail)
    # First, while L1 has room (a newcomer admission turns away is reported rejected,
    # whatever removes it later):
    cache.set("short-lived", 1, ttl=0.05)
    time.sleep(0.1)
    cache.get("short-lived")  # expired in L1 (and gone from Redis)
    for n in range(60):  # three times what L1 holds: evictions and rejections
        cache.set(f"item:{n}", n)
    cache.set(SECRET_KEY, "classified")
    cache.flush(timeout=5)
    for _ in range(3):
        for n in range(60):
            cache.get(f"item:{n}")  # L1 hits, and L2 hits for what L1 lost
    cache.get(SECRET_KEY)
    cache.get("absent")  # a miss everywhere
    for n in range(5):
        cache.get_or_load(f"loaded:{n}", loader)
    with pytest.raises(LoaderFailed):
        cache.get_or_load("broken", failing)
    raw_redis.set(f"{prefix}garbage", b"\x00 not an envelope this library writes")
    cache.get("garbage")  # read from L2 and refused: untrusted, a miss
    cache.flush(timeout=5)


def _as_async(function: Any) -> Any:
    async def call(key: Any) -> Any:
        return function(key)

    return call


def expected_samples(stats: Any, cache: str) -> dict[tuple[str, frozenset], float]:
    """What the exporters must show for ``stats`` (a ``CacheStats``), written out field by
    field: ``{(Prometheus sample name, labels): value}``."""
    expected: dict[tuple[str, frozenset], float] = {}

    def put(name: str, value: float, **labels: str) -> None:
        expected[(name, frozenset({"cache": cache, **labels}.items()))] = value

    for layer in stats.layers:
        put("cache_gets_total", layer.hits, layer=layer.name, result="hit")
        put("cache_gets_total", layer.misses, layer=layer.name, result="miss")
        put("cache_puts_total", layer.puts, layer=layer.name)
        size_evictions = layer.evictions - layer.admission_losses
        put("cache_evictions_total", size_evictions, layer=layer.name, cause="size")
        put("cache_evictions_total", layer.expirations, layer=layer.name, cause="expired")
        put("cache_evictions_total", layer.rejections, layer=layer.name, cause="rejected")
        if layer.size is not None:
            put("cache_size", layer.size, layer=layer.name)
    for layer, causes in stats.untrusted_reads.items():
        for cause, count in causes.items():
            put("cache_untrusted_reads_total", count, layer=layer, cause=cause)
    for layer, count in stats.read_errors.items():
        put("cache_read_errors_total", count, layer=layer)
    put("cache_load_total", stats.loader_calls - stats.loader_failures, result="success")
    put("cache_load_total", stats.loader_failures, result="failure")
    put("cache_load_duration_seconds_count", stats.load_latency.count)
    put("cache_load_duration_seconds_sum", stats.load_latency.total_seconds)
    put("cache_stale_served_total", stats.stale_served)
    for kind, count in stats.refreshes_by_kind.items():
        put("cache_refreshes_total", count, kind=kind)
    put("cache_refresh_failures_total", stats.refresh_failures)
    for layer, breaker in stats.breakers.items():
        level = {"closed": 0, "half_open": 1, "open": 2}[breaker.state]
        put("cache_breaker_state", level, layer=layer)
        put("cache_breaker_openings_total", breaker.opened, layer=layer)
    for layer, queue in stats.write_queues.items():
        put("cache_write_queue_depth", queue.depth, layer=layer)
        put("cache_dead_letters_total", queue.dead_lettered, layer=layer)
    return expected


def check_workload_counted(stats: Any) -> None:
    """The workload moved what the exporters are checked on (else equal zeros prove
    little)."""
    l1, l2 = stats.layer("l1"), stats.layer("l2")
    assert l1.hits and l1.misses and l1.puts >= 67 and l1.expirations >= 1
    assert l1.evictions + l1.rejections >= 40
    assert l2.hits and l2.misses and l2.puts >= 60
    assert stats.loader_calls == 6 and stats.loader_failures == 1
    assert stats.load_latency.total_seconds > 0
    assert sum(stats.untrusted_reads["l2"].values()) == 1
    assert "l2" in stats.breakers and "l2" in stats.write_queues
    assert stats.write_queues["l2"].delivered >= 60


# ---------------------------------------------------------------------------- insights
INSIGHT_OPTIONS: dict[str, Any] = dict(
    interval=0.05,
    windows=(1.0, 30.0),
    recent_seconds=0.2,
    baseline_seconds=2.0,
    warmup_seconds=0.3,
    min_requests=50,
    skew_seconds=0.4,
)
"""Insights sampled fast enough, and judged on small enough numbers, that a workload of
about two seconds moves every one of them."""


def run_insights_workload(cache: Any, is_async: bool, insights: Any) -> None:
    """Steady zipf reads (hits mostly: the rates, the zipf fit, the size estimates), then
    reads of keys never seen (all misses) until the miss-rate spike is reported;
    ``insights``: the manager's ``insights`` (plain on both managers)."""
    from multilayercache.tools.benchmarking import zipf_indices

    load = _as_async(str) if is_async else str
    order = zipf_indices(40_000, 400, exponent=1.1, seed=3).tolist()

    def steady(seconds: float) -> None:
        started = time.monotonic()
        for step, rank in enumerate(order):
            cache.get_or_load(f"item:{rank}", load)
            if step % 500 == 0 and time.monotonic() - started > seconds:
                return

    steady(1.2)
    deadline = time.monotonic() + 10
    fresh = 0
    while not insights().anomalies and time.monotonic() < deadline:
        for _ in range(50):
            fresh += 1
            cache.get_or_load(f"cold:{fresh}", load)
    assert insights().anomalies, "no miss-rate spike was reported within 10 s"
    # Steady again for two skew windows: the zipf exponent is fitted to skewed traffic,
    # not to the keys read once each.
    steady(2.5 * INSIGHT_OPTIONS["skew_seconds"])


def expected_insight_samples(report: Any, cache: str) -> dict[tuple[str, frozenset], float]:
    """What the exporters must show for ``report`` (a ``CacheInsights``), written out field
    by field as ``expected_samples`` does for the stats."""
    expected: dict[tuple[str, frozenset], float] = {}

    def put(name: str, value: float, **labels: str) -> None:
        expected[(name, frozenset({"cache": cache, **labels}.items()))] = value

    for layer in report.layers:
        for rates in layer.windows:
            window = f"{rates.seconds:g}s"
            if rates.hit_ratio is not None:
                put("cache_window_hit_ratio", rates.hit_ratio, layer=layer.name, window=window)
            put(
                "cache_window_requests_per_second",
                rates.requests_per_second,
                layer=layer.name,
                window=window,
            )
            for cause, value in (
                ("size", rates.evictions_per_second),
                ("expired", rates.expirations_per_second),
            ):
                put(
                    "cache_window_evictions_per_second",
                    value,
                    layer=layer.name,
                    window=window,
                    cause=cause,
                )
        if layer.zipf_exponent is not None:
            put("cache_zipf_exponent", layer.zipf_exponent, layer=layer.name)
        for kind, count in layer.anomalies_reported.items():
            put("cache_anomalies_total", count, layer=layer.name, kind=kind)
        for factor, hit_ratio in (layer.size_estimates or {}).items():
            put("cache_size_estimate_hit_ratio", hit_ratio, layer=layer.name, factor=f"{factor:g}")
    return expected


def check_insights_moved(report: Any) -> None:
    """The insights workload moved every insight the exporters are checked on."""
    l1, l2 = report.layer("l1"), report.layer("l2")
    assert l1.zipf_exponent is not None and l2.zipf_exponent is None
    assert sum(l1.anomalies_reported.values()) + sum(l2.anomalies_reported.values()) >= 1
    assert set(l1.anomalies_reported) == {"key_spike", "miss_rate_spike"}
    assert set(l2.anomalies_reported) == {"miss_rate_spike"}  # no per-key counts in Redis
    assert l1.size_estimates is not None and l2.size_estimates is None
    assert set(l1.size_estimates) == {0.5, 1.0, 2.0}
    assert all(0 <= ratio <= 1 for ratio in l1.size_estimates.values())
    for layer in (l1, l2):
        assert layer.window(30).requests_per_second > 0 and layer.window(30).hit_ratio is not None
    assert l1.window(30).evictions_per_second > 0  # 400 keys and more through 200 places


INSIGHT_NAMES = (
    "cache_window_hit_ratio",
    "cache_window_requests_per_second",
    "cache_window_evictions_per_second",
    "cache_zipf_exponent",
    "cache_anomalies_total",
    "cache_size_estimate_hit_ratio",
)
