"""The cache's metrics: one place that names them and reads them from ``stats()``.

``families(stats, cache="orders")`` turns what a manager reports (``CacheStats``) or what
one layer reports (``LayerStats``) into metric families: a name, a kind, a help text and
labelled samples. The exporters (``prometheus.py``, ``otel.py``) only translate these; they
call ``stats()`` when they are scraped, so metrics cost nothing between scrapes and nothing
at all on a cache hit: every number here is a counter the cache keeps anyway.

Names follow what dashboards expect of a cache (Micrometer's, as Prometheus spells them):
``cache_gets_total{cache,layer,result}``, ``cache_puts_total``, ``cache_evictions_total
{cause}``, ``cache_size``, ``cache_load_total{result}``, ``cache_load_duration_seconds``;
the rest (stale served, refreshes, breakers, write-behind queues, ...) are this library's.
A cache made with ``insights=`` adds what ``cache.insights()`` reports (``INSIGHT_SPECS``:
rates over its sliding windows, the zipf exponent, anomalies, size estimates), read from
the samples its sampler thread took: a scrape only copies them out.
Labels name caches, layers, causes and outcomes: never a key (a key in a label would make
one time series per key, and leak keys into the monitoring system). IO-free, and free of
any metrics library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..analytics.insights import CacheInsights, LayerInsights
from ..analytics.sampler import insights_if_on
from ..core.breaker import BreakerState
from ..core.stats import CacheStats, LayerStats


class Kind(StrEnum):
    """What a family's samples are."""

    COUNTER = "counter"
    """Only grows (since the cache was created); the name ends in ``_total``."""
    GAUGE = "gauge"
    """A level now (entries held, a queue's depth, a breaker's state)."""
    SUMMARY = "summary"
    """Durations: a count and a sum since creation, and quantiles of the recent ones."""


@dataclass(frozen=True)
class Spec:
    """A metric family's name, kind, help text and label names (``cache`` first)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ("cache",)

    @property
    def base_name(self) -> str:
        """The name without ``_total`` (what OpenTelemetry instruments are called; its
        Prometheus exporters add the suffix back to counters)."""
        return self.name.removesuffix("_total")


@dataclass(frozen=True)
class Durations:
    """A summary's value: ``count`` durations adding up to ``total_seconds``, and the
    quantiles ``{0.5: seconds, ...}`` of the recent ones (empty before the first)."""

    count: int
    total_seconds: float
    quantiles: dict[float, float]


@dataclass(frozen=True)
class Sample:
    """One time series' value: ``labels`` are the values of the spec's label names, in
    order; ``value`` is a number, or ``Durations`` for a summary."""

    labels: tuple[str, ...]
    value: float | Durations


@dataclass(frozen=True)
class Family:
    """A metric family: what it is, and its samples read from one cache."""

    spec: Spec
    samples: list[Sample]


def _layer(name: str, kind: Kind, help: str, *more: str) -> Spec:
    return Spec(name, kind, help, ("cache", "layer", *more))


GETS = _layer(
    "cache_gets_total", Kind.COUNTER, "Reads of a layer, by result (hit or miss).", "result"
)
PUTS = _layer("cache_puts_total", Kind.COUNTER, "Values written into a layer.")
EVICTIONS = _layer(
    "cache_evictions_total",
    Kind.COUNTER,
    "Entries a layer removed or turned away, by cause: size (evicted for room), "
    "expired (TTL ran out), rejected (lost admission, too large, or a crowded hash).",
    "cause",
)
SIZE = _layer("cache_size", Kind.GAUGE, "Entries a layer holds (in-process layers only).")
WEIGHT = _layer(
    "cache_weight", Kind.GAUGE, "Total weight a layer holds (equals size without a weigher)."
)
MAX_SIZE = _layer("cache_max_size", Kind.GAUGE, "The entries a count-bounded layer may hold.")
MAX_WEIGHT = _layer("cache_max_weight", Kind.GAUGE, "The weight a weight-bounded layer may hold.")
LAYER_ERRORS = _layer(
    "cache_layer_errors_total",
    Kind.COUNTER,
    "A layer's failed calls, and values it read back but refused.",
)
UNTRUSTED = _layer(
    "cache_untrusted_reads_total",
    Kind.COUNTER,
    "Values a layer read back but refused (read as misses), by cause.",
    "cause",
)

LAYER_SPECS = (GETS, PUTS, EVICTIONS, SIZE, WEIGHT, MAX_SIZE, MAX_WEIGHT, LAYER_ERRORS, UNTRUSTED)
"""What a layer reports, bare or in a manager."""

LOADS = Spec(
    "cache_load_total",
    Kind.COUNTER,
    "Loader calls, by result (success or failure).",
    ("cache", "result"),
)
LOAD_DURATION = Spec(
    "cache_load_duration_seconds",
    Kind.SUMMARY,
    "How long loader calls took: count and sum since creation, quantiles of the recent ones.",
)
COALESCED = Spec(
    "cache_coalesced_waits_total", Kind.COUNTER, "Callers that waited for another's load."
)
STALE_SERVED = Spec(
    "cache_stale_served_total",
    Kind.COUNTER,
    "Reads answered with a stale value (stale-while-revalidate, fail-safe, soft timeouts).",
)
FAIL_SAFE = Spec(
    "cache_fail_safe_total", Kind.COUNTER, "Failed loads whose callers got a stale value."
)
REFRESHES = Spec(
    "cache_refreshes_total",
    Kind.COUNTER,
    "Background refreshes taken to run, by kind: stale (the key was served stale "
    "meanwhile) or early (still fresh: refresh-ahead, XFetch).",
    ("cache", "kind"),
)
REFRESH_FAILURES = Spec(
    "cache_refresh_failures_total", Kind.COUNTER, "Background refreshes whose load failed."
)
REFRESHES_DROPPED = Spec(
    "cache_refreshes_dropped_total", Kind.COUNTER, "Refreshes not run for want of budget."
)
RELOADS_UNCHANGED = Spec(
    "cache_reloads_unchanged_total", Kind.COUNTER, "Loads and refreshes whose value was unchanged."
)
TTL_EXTENDED = Spec(
    "cache_ttl_extended_total",
    Kind.COUNTER,
    "Shared entries given a new lifetime without a rewrite.",
)
TIMEOUTS = Spec(
    "cache_load_timeouts_total",
    Kind.COUNTER,
    "Loads past their soft or hard timeout, by kind.",
    ("cache", "kind"),
)
LOADS_HELD_OFF = Spec(
    "cache_loads_held_off_total",
    Kind.COUNTER,
    "Loads not run at once, by reason: throttled (failed lately), delayed or "
    "rate_limited (max_loads_per_second).",
    ("cache", "reason"),
)
UNCONFIRMED = Spec(
    "cache_unconfirmed_deletes", Kind.GAUGE, "Keys whose delete did not reach a layer yet."
)
UNCONFIRMED_DROPPED = Spec(
    "cache_unconfirmed_deletes_dropped_total",
    Kind.COUNTER,
    "Unconfirmed deletes forgotten (bound).",
)
READ_ERRORS = _layer(
    "cache_read_errors_total", Kind.COUNTER, "Failed reads of a layer, taken as misses."
)
WRITE_ERRORS = _layer("cache_write_errors_total", Kind.COUNTER, "Failed writes into a layer.")
ENCODE_ERRORS = _layer(
    "cache_encode_errors_total", Kind.COUNTER, "Loaded values a layer could not encode."
)
BREAKER_STATE = _layer(
    "cache_breaker_state", Kind.GAUGE, "A layer's circuit breaker: 0 closed, 1 half-open, 2 open."
)
BREAKER_OPENINGS = _layer(
    "cache_breaker_openings_total", Kind.COUNTER, "Times a layer's breaker opened."
)
BREAKER_REJECTED = _layer(
    "cache_breaker_rejected_total", Kind.COUNTER, "Calls a layer's open breaker refused."
)
NODE_BREAKER_STATE = _layer(
    "cache_node_breaker_state",
    Kind.GAUGE,
    "A cluster node's circuit breaker: 0 closed, 1 half-open, 2 open.",
    "node",
)
NODE_BREAKER_OPENINGS = _layer(
    "cache_node_breaker_openings_total",
    Kind.COUNTER,
    "Times a cluster node's breaker opened.",
    "node",
)
RATE_LIMITED = _layer(
    "cache_rate_limit_total",
    Kind.COUNTER,
    "What a layer's rate limit did, by outcome: allowed, read_skipped, write_skipped, "
    "write_delayed, write_refused.",
    "outcome",
)
QUEUE_DEPTH = _layer("cache_write_queue_depth", Kind.GAUGE, "Writes a write-behind queue holds.")
QUEUE_BYTES = _layer("cache_write_queue_bytes", Kind.GAUGE, "Bytes a write-behind queue holds.")
QUEUE_LAG = _layer(
    "cache_write_queue_lag_seconds", Kind.GAUGE, "How long the oldest queued write has waited."
)
QUEUE_WRITES = _layer(
    "cache_write_queue_writes_total",
    Kind.COUNTER,
    "Writes of a write-behind queue, by outcome: accepted, delivered, coalesced (replaced "
    "by a newer write of their key), rejected (queue full).",
    "outcome",
)
QUEUE_RETRIES = _layer(
    "cache_write_queue_retries_total", Kind.COUNTER, "Write-behind batch attempts after the first."
)
DEAD_LETTERS = _layer(
    "cache_dead_letters_total",
    Kind.COUNTER,
    "Writes a write-behind queue gave up on (dead-lettered).",
)
FLEET_FLIGHT = Spec(
    "cache_fleet_flight_total",
    Kind.COUNTER,
    "One load across the fleet: leases, waits and how they ended.",
    ("cache", "event"),
)

MANAGER_SPECS = (
    LOADS, LOAD_DURATION, COALESCED, STALE_SERVED, FAIL_SAFE, REFRESHES, REFRESH_FAILURES,
    REFRESHES_DROPPED, RELOADS_UNCHANGED, TTL_EXTENDED, TIMEOUTS, LOADS_HELD_OFF, UNCONFIRMED,
    UNCONFIRMED_DROPPED, READ_ERRORS, WRITE_ERRORS, ENCODE_ERRORS, BREAKER_STATE,
    BREAKER_OPENINGS, BREAKER_REJECTED, NODE_BREAKER_STATE, NODE_BREAKER_OPENINGS, RATE_LIMITED,
    QUEUE_DEPTH, QUEUE_BYTES, QUEUE_LAG, QUEUE_WRITES, QUEUE_RETRIES, DEAD_LETTERS, FLEET_FLIGHT,
)  # fmt: skip
"""What a manager reports beyond its layers'."""

WINDOW_HIT_RATIO = _layer(
    "cache_window_hit_ratio",
    Kind.GAUGE,
    "Hits / reads of a layer over a sliding window (insights; absent before a read).",
    "window",
)
WINDOW_REQUESTS = _layer(
    "cache_window_requests_per_second",
    Kind.GAUGE,
    "Reads of a layer per second over a sliding window (insights).",
    "window",
)
WINDOW_EVICTIONS = _layer(
    "cache_window_evictions_per_second",
    Kind.GAUGE,
    "Entries a layer removed per second over a sliding window, by cause: size (evicted "
    "for room) or expired (insights).",
    "window",
    "cause",
)
ZIPF_EXPONENT = _layer(
    "cache_zipf_exponent",
    Kind.GAUGE,
    "The skew of an in-process layer's per-key accesses, fitted to a zipf law (insights; "
    "absent before enough traffic).",
)
ANOMALIES = _layer(
    "cache_anomalies_total",
    Kind.COUNTER,
    "Anomalies reported, by kind: key_spike (one key's share of requests jumped) or "
    "miss_rate_spike (a layer's miss ratio jumped).",
    "kind",
)
SIZE_ESTIMATE = _layer(
    "cache_size_estimate_hit_ratio",
    Kind.GAUGE,
    "The hit ratio an L1 built with estimate_sizes would have at factor x its size "
    "(1: its own, measured; insights).",
    "factor",
)

INSIGHT_SPECS = (
    WINDOW_HIT_RATIO, WINDOW_REQUESTS, WINDOW_EVICTIONS, ZIPF_EXPONENT, ANOMALIES, SIZE_ESTIMATE,
)  # fmt: skip
"""What a cache made with ``insights=`` reports beyond its stats (``cache.insights()``)."""

SPECS = LAYER_SPECS + MANAGER_SPECS + INSIGHT_SPECS
METRIC_NAMES = frozenset(spec.name for spec in SPECS)
"""Every name an exporter may produce (as Prometheus exposes them)."""

QUANTILES = (0.5, 0.9, 0.99)
BREAKER_LEVELS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
"""A breaker's state as a gauge: higher is worse, so a dashboard can alert on ``> 0``."""


def families(
    stats: CacheStats | LayerStats, cache: str, insights: CacheInsights | None = None
) -> list[Family]:
    """The metric families of a manager's ``stats()`` or of one layer's, every sample
    labelled ``cache=cache``, and of the manager's ``insights()`` when given. A family with
    no samples (no layer has a breaker, or the cache has no insights, say) is still listed,
    so that exporters describe the same names whatever the setup."""
    if not isinstance(cache, str) or not cache:
        raise ValueError(f"the cache name must be a non-empty str, got {cache!r}")
    samples: dict[Spec, list[Sample]] = {spec: [] for spec in SPECS}
    if isinstance(stats, LayerStats):
        _add_layer(samples, cache, stats.name, stats)
        specs: tuple[Spec, ...] = LAYER_SPECS
    elif isinstance(stats, CacheStats):
        for name, layer in zip(layer_labels(stats.layers), stats.layers, strict=True):
            _add_layer(samples, cache, name, layer)
        _add_manager(samples, cache, stats)
        if insights is not None:
            labels = layer_labels(stats.layers)
            for name, layer_insights in zip(labels, insights.layers, strict=True):
                _add_insights(samples, cache, name, layer_insights)
        specs = SPECS
    else:
        raise TypeError(f"stats must be a CacheStats or a LayerStats, got {stats!r}")
    return [Family(spec, samples[spec]) for spec in specs]


def read(source: Any, cache: str) -> list[Family]:
    """``families(source.stats(), cache, insights)``: ``source`` is a manager (sync or
    asyncio: its ``stats()`` and ``insights()`` are plain calls) or a layer. The insights
    are read only from a cache that has them: without, a scrape costs nothing more."""
    return families(source.stats(), cache, insights_if_on(source))


def window_label(seconds: float) -> str:
    """A sliding window's ``window`` label: ``10s``, ``60s``, ``300s``."""
    return f"{seconds:g}s"


def factor_label(factor: float) -> str:
    """A size factor's ``factor`` label: ``0.5``, ``1``, ``2``."""
    return f"{factor:g}"


def layer_labels(layers: Iterable[LayerStats]) -> list[str]:
    """Each layer's label: its name, or ``name#depth`` for a name an earlier layer took
    (the manager names its layers so too, in ``CacheStats.read_errors`` and the like)."""
    names: list[str] = []
    for depth, layer in enumerate(layers):
        names.append(layer.name if layer.name not in names else f"{layer.name}#{depth}")
    return names


def _add_layer(out: dict[Spec, list[Sample]], cache: str, layer: str, stats: LayerStats) -> None:
    def add(spec: Spec, value: float, *labels: str) -> None:
        out[spec].append(Sample((cache, layer, *labels), value))

    add(GETS, stats.hits, "hit")
    add(GETS, stats.misses, "miss")
    add(PUTS, stats.puts)
    add(EVICTIONS, stats.evictions - stats.admission_losses, "size")
    add(EVICTIONS, stats.expirations, "expired")
    add(EVICTIONS, stats.rejections, "rejected")
    bounds = ((SIZE, stats.size), (WEIGHT, stats.weight),
              (MAX_SIZE, stats.max_size), (MAX_WEIGHT, stats.max_weight))  # fmt: skip
    for spec, value in bounds:
        if value is not None:  # unknown (a shared layer's size) or unbounded that way
            add(spec, value)
    add(LAYER_ERRORS, stats.errors)
    for cause, count in sorted(stats.untrusted.items()):
        add(UNTRUSTED, count, cause)


def _add_manager(out: dict[Spec, list[Sample]], cache: str, stats: CacheStats) -> None:
    def add(spec: Spec, value: float | Durations, *labels: str) -> None:
        out[spec].append(Sample((cache, *labels), value))

    add(LOADS, stats.loader_calls - stats.loader_failures, "success")
    add(LOADS, stats.loader_failures, "failure")
    latency = stats.load_latency
    quantiles = dict(zip(QUANTILES, (latency.p50, latency.p90, latency.p99), strict=True))
    durations = Durations(latency.count, latency.total_seconds, quantiles if latency.count else {})
    add(LOAD_DURATION, durations)
    for spec, value in (
        (COALESCED, stats.coalesced_waits),
        (STALE_SERVED, stats.stale_served),
        (FAIL_SAFE, stats.fail_safe),
        (REFRESH_FAILURES, stats.refresh_failures),
        (REFRESHES_DROPPED, stats.refreshes_dropped),
        (RELOADS_UNCHANGED, stats.refreshes_unchanged),
        (TTL_EXTENDED, stats.ttl_extended),
        (UNCONFIRMED, stats.unconfirmed_deletes),
        (UNCONFIRMED_DROPPED, stats.unconfirmed_deletes_dropped),
    ):
        add(spec, value)
    for kind in ("stale", "early"):
        add(REFRESHES, stats.refreshes_by_kind.get(kind, 0), kind)
    add(TIMEOUTS, stats.soft_timeouts, "soft")
    add(TIMEOUTS, stats.hard_timeouts, "hard")
    add(LOADS_HELD_OFF, stats.throttled_loads, "throttled")
    add(LOADS_HELD_OFF, stats.loads_delayed, "delayed")
    add(LOADS_HELD_OFF, stats.loads_rate_limited, "rate_limited")
    errors = ((READ_ERRORS, stats.read_errors), (WRITE_ERRORS, stats.write_errors),
              (ENCODE_ERRORS, stats.encode_errors))  # fmt: skip
    for spec, per_layer in errors:
        for layer, count in per_layer.items():
            add(spec, count, layer)
    for layer, breaker in stats.breakers.items():
        add(BREAKER_STATE, BREAKER_LEVELS[breaker.state], layer)
        add(BREAKER_OPENINGS, breaker.opened, layer)
        add(BREAKER_REJECTED, breaker.rejected, layer)
    for layer, nodes in stats.node_breakers.items():
        for node, breaker in sorted(nodes.items()):
            add(NODE_BREAKER_STATE, BREAKER_LEVELS[breaker.state], layer, node)
            add(NODE_BREAKER_OPENINGS, breaker.opened, layer, node)
    for layer, limits in stats.rate_limits.items():
        for outcome, count in _rate_limit_outcomes(limits):
            add(RATE_LIMITED, count, layer, outcome)
    for layer, queue in stats.write_queues.items():
        add(QUEUE_DEPTH, queue.depth, layer)
        add(QUEUE_BYTES, queue.bytes, layer)
        add(QUEUE_LAG, queue.lag, layer)
        for outcome, count in (
            ("accepted", queue.puts),
            ("delivered", queue.delivered),
            ("coalesced", queue.coalesced),
            ("rejected", queue.rejected),
        ):
            add(QUEUE_WRITES, count, layer, outcome)
        add(QUEUE_RETRIES, queue.retries, layer)
        add(DEAD_LETTERS, queue.dead_lettered, layer)
    for event, count in stats.fleet_flight.items():
        add(FLEET_FLIGHT, count, event)


def _add_insights(
    out: dict[Spec, list[Sample]], cache: str, layer: str, insights: LayerInsights
) -> None:
    def add(spec: Spec, value: float, *labels: str) -> None:
        out[spec].append(Sample((cache, layer, *labels), value))

    for rates in insights.windows:
        window = window_label(rates.seconds)
        if rates.hit_ratio is not None:  # no read in the window: no ratio, not 0
            add(WINDOW_HIT_RATIO, rates.hit_ratio, window)
        add(WINDOW_REQUESTS, rates.requests_per_second, window)
        add(WINDOW_EVICTIONS, rates.evictions_per_second, window, "size")
        add(WINDOW_EVICTIONS, rates.expirations_per_second, window, "expired")
    if insights.zipf_exponent is not None:
        add(ZIPF_EXPONENT, insights.zipf_exponent)
    for kind, count in sorted(insights.anomalies_reported.items()):
        add(ANOMALIES, count, kind)
    for factor, hit_ratio in sorted((insights.size_estimates or {}).items()):
        if not math.isnan(hit_ratio):  # nothing sampled yet
            add(SIZE_ESTIMATE, hit_ratio, factor_label(factor))


def _rate_limit_outcomes(limits: Any) -> Iterator[tuple[str, int]]:
    yield "allowed", limits.calls
    yield "read_skipped", limits.reads_skipped
    yield "write_skipped", limits.writes_skipped
    yield "write_delayed", limits.writes_delayed
    yield "write_refused", limits.writes_refused
