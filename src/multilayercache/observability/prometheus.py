"""The cache's metrics for Prometheus: a prometheus-client collector that reads ``stats()``
when it is scraped (extra ``prometheus``: ``pip install 'multilayercache[prometheus]'``).

    from multilayercache.observability.prometheus import register
    register(cache, name="orders")          # into prometheus_client's default registry
    register(sessions_l1, name="sessions")  # a bare layer works too; so does an asyncio cache

Nothing runs between scrapes, and a cache hit does no more work with it than without.
Every cache registered into one registry shares one collector (``CacheCollector``), so that
each metric name is exposed once, its series told apart by the ``cache`` label. The names
are ``metrics.METRIC_NAMES`` (see ``metrics.py``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "multilayercache.observability.prometheus needs prometheus-client: "
        "pip install 'multilayercache[prometheus]'"
    ) from error

from .metrics import SPECS, Durations, Family, Kind, Spec, read

logger = logging.getLogger("multilayercache")


class CacheCollector(Collector):
    """A prometheus-client collector of caches' metrics, read from their ``stats()`` at
    each scrape. ``add`` a manager (``MultilayerCache``, ``AsyncMultilayerCache``) or a
    layer under a name, the ``cache`` label of its series::

        collector = CacheCollector(cache, "orders")
        prometheus_client.REGISTRY.register(collector)

    ``register`` does both, and shares one collector per registry."""

    def __init__(self, cache: Any = None, name: str = "default") -> None:
        self._sources: dict[str, Any] = {}
        self._lock = threading.Lock()
        if cache is not None:
            self.add(cache, name)

    def add(self, cache: Any, name: str = "default") -> None:
        """Collect ``cache``'s metrics, labelled ``cache=name``, from the next scrape on."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if not callable(getattr(cache, "stats", None)):
            raise TypeError(f"expected a cache manager or a layer (with stats()), got {cache!r}")
        with self._lock:
            if name in self._sources:
                raise ValueError(f"a cache named {name!r} is already collected; pick another name")
            self._sources[name] = cache

    def remove(self, name: str) -> None:
        """Stop collecting the cache added as ``name`` (``KeyError`` if there is none)."""
        with self._lock:
            del self._sources[name]

    @property
    def names(self) -> list[str]:
        """The names of the caches collected."""
        with self._lock:
            return list(self._sources)

    def describe(self) -> Iterator[Metric]:
        """The families this collector produces, without reading any cache (the registry
        asks at ``register``, to refuse names that clash)."""
        for spec in SPECS:
            yield _empty(spec)

    def collect(self) -> Iterator[Metric]:
        """Every family, with the samples of every cache added, read now."""
        with self._lock:
            sources = list(self._sources.items())
        merged: dict[str, list[Family]] = {spec.name: [] for spec in SPECS}
        for name, cache in sources:
            try:
                read_now = read(cache, name)
            except Exception:  # one broken cache must not cost the others their scrape
                logger.exception("metrics of cache %r could not be read", name)
                continue
            for family in read_now:
                merged[family.spec.name].append(family)
        for spec in SPECS:
            yield _metric(spec, merged[spec.name])


_shared: weakref.WeakKeyDictionary[CollectorRegistry, CacheCollector] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def register(
    cache: Any, name: str = "default", registry: CollectorRegistry = REGISTRY
) -> CacheCollector:
    """Export ``cache``'s metrics (a manager, sync or asyncio, or a layer) through
    ``registry`` (prometheus-client's default one unless given), labelled ``cache=name``.
    Returns the registry's collector of caches (``collector.remove(name)`` stops)."""
    with _shared_lock:
        collector = _shared.get(registry)
        if collector is None:
            collector = CacheCollector()
            registry.register(collector)
            _shared[registry] = collector
    collector.add(cache, name)
    return collector


def unregister(name: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Stop exporting the cache registered as ``name`` into ``registry``."""
    with _shared_lock:
        collector = _shared.get(registry)
    if collector is None:
        raise KeyError(name)
    collector.remove(name)


def _empty(spec: Spec) -> Metric:
    if spec.kind is Kind.COUNTER:
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    if spec.kind is Kind.GAUGE:
        return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
    return Metric(spec.name, spec.help, "summary")


def _metric(spec: Spec, families: list[Family]) -> Metric:
    metric = _empty(spec)
    for family in families:
        for sample in family.samples:
            labels = dict(zip(spec.labels, sample.labels, strict=True))
            value = sample.value
            if isinstance(value, Durations):
                for quantile, seconds in value.quantiles.items():
                    metric.add_sample(spec.name, {**labels, "quantile": str(quantile)}, seconds)
                metric.add_sample(f"{spec.name}_count", labels, value.count)
                metric.add_sample(f"{spec.name}_sum", labels, value.total_seconds)
            else:
                metric.add_metric(list(sample.labels), value)  # type: ignore[attr-defined]
    return metric


__all__ = ["CacheCollector", "register", "unregister"]
