"""The cache's metrics for OpenTelemetry: observable instruments whose callbacks read
``stats()`` when the SDK collects (extra ``otel``: ``pip install 'multilayercache[otel]'``).

    from multilayercache.observability.otel import instrument, traced
    instrument(cache, name="orders")                # the global MeterProvider unless given
    cache.get_or_load(key, traced(load_order, cache="orders"))   # a span around each load

Instruments are named as the Prometheus families of ``metrics.py`` without ``_total``
(``cache_gets``, ``cache_puts``, ``cache_evictions``, ``cache_size``, ...), with the same
attributes (``cache``, ``layer``, ``result``, ``cause``, ...): an OpenTelemetry Prometheus
exporter adds ``_total`` back to counters, so one dashboard serves both exporters. There is
no observable histogram in OpenTelemetry: the load durations (a summary in Prometheus) are
a gauge ``cache_load_duration_seconds{quantile}`` and two counters,
``cache_load_duration_seconds_count`` and ``_sum``.

Every cache instrumented into one MeterProvider shares one set of instruments, so that
each name is created once. Nothing runs between collections, and a cache hit does no more
work with it than without.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "multilayercache.observability.otel needs opentelemetry-api: "
        "pip install 'multilayercache[otel]'"
    ) from error

from .metrics import SPECS, Durations, Kind, Spec, read

logger = logging.getLogger("multilayercache")

METER_NAME = "multilayercache"
READING_SECONDS = 1.0
"""How long the instruments of one collection report the reading its first one took."""

Reading = dict[str, list[tuple[tuple[str, ...], Any]]]
"""Samples read from the caches: ``{metric name: [(label values, value), ...]}``."""


class CacheInstruments:
    """The observable instruments of one MeterProvider, and the caches they read (by
    name: the ``cache`` attribute). Made by ``instrument``; ``remove(name)`` stops
    reading a cache."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        self._sources: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._reading: tuple[float, Reading] = (-math.inf, {})  # (monotonic time read, reading)
        meter = meter_provider.get_meter(METER_NAME)
        for spec in SPECS:
            _create(meter, spec, self._observer(spec))

    def add(self, cache: Any, name: str) -> None:
        """Read ``cache``'s metrics, with the attribute ``cache=name``, from the next
        collection on."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if not callable(getattr(cache, "stats", None)):
            raise TypeError(f"expected a cache manager or a layer (with stats()), got {cache!r}")
        with self._lock:
            if name in self._sources:
                raise ValueError(f"a cache named {name!r} is already instrumented")
            self._sources[name] = cache
            self._reading = (-math.inf, {})

    def remove(self, name: str) -> None:
        """Stop reading the cache instrumented as ``name`` (``KeyError`` if none)."""
        with self._lock:
            del self._sources[name]
            self._reading = (-math.inf, {})

    @property
    def names(self) -> list[str]:
        """The names of the caches instrumented."""
        with self._lock:
            return list(self._sources)

    def _observer(self, spec: Spec) -> Callable[[CallbackOptions], Iterator[Any]]:
        """The samples of ``spec`` across the caches (what its instruments' callbacks
        report). The SDK calls the callbacks in the order the instruments were made: the
        first one reads the caches, the others report that reading, so a collection
        calls each cache's ``stats()`` once and its instruments agree with each other."""
        first = spec is SPECS[0]

        def observe(options: CallbackOptions) -> Iterator[tuple[dict[str, str], Any]]:
            reading = self._read() if first else self._recent_reading()
            for labels, value in reading.get(spec.name, ()):
                yield dict(zip(spec.labels, labels, strict=True)), value

        return observe

    def _recent_reading(self) -> Reading:
        """The reading of this collection (one younger than ``READING_SECONDS``), or a
        new one (an SDK that calls the first instrument's callback later)."""
        with self._lock:
            taken_at, reading = self._reading
        if time.monotonic() - taken_at < READING_SECONDS:
            return reading
        return self._read()

    def _read(self) -> Reading:
        with self._lock:
            sources = list(self._sources.items())
        reading: Reading = {}
        for name, cache in sources:
            try:
                found = read(cache, name)
            except Exception:  # one broken cache must not cost the others theirs
                logger.exception("metrics of cache %r could not be read", name)
                continue
            for family in found:
                reading.setdefault(family.spec.name, []).extend(
                    (sample.labels, sample.value) for sample in family.samples
                )
        with self._lock:
            self._reading = (time.monotonic(), reading)
        return reading


def _create(meter: Any, spec: Spec, observe: Callable[..., Iterator[Any]]) -> None:
    """``spec``'s instruments on ``meter``: one, or three for a summary."""
    unit = "s" if spec.name.endswith("_seconds") else ""

    def values(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, labels) for labels, value in observe(options)]

    if spec.kind is Kind.COUNTER:
        meter.create_observable_counter(spec.base_name, [values], unit, spec.help)
    elif spec.kind is Kind.GAUGE:
        meter.create_observable_gauge(spec.base_name, [values], unit, spec.help)
    else:
        _create_durations(meter, spec, observe)


def _create_durations(meter: Any, spec: Spec, observe: Callable[..., Iterator[Any]]) -> None:
    def quantiles(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(seconds, {**labels, "quantile": str(quantile)})
            for labels, durations in observe(options)
            for quantile, seconds in durations.quantiles.items()
        ]

    def part(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def values(options: CallbackOptions) -> Iterable[Observation]:
            found: list[tuple[dict[str, str], Durations]] = list(observe(options))
            return [Observation(getattr(durations, field), labels) for labels, durations in found]

        return values

    meter.create_observable_gauge(spec.name, [quantiles], "s", spec.help)
    meter.create_observable_counter(f"{spec.name}_count", [part("count")], "", spec.help)
    meter.create_observable_counter(f"{spec.name}_sum", [part("total_seconds")], "s", spec.help)


_shared: weakref.WeakKeyDictionary[Any, CacheInstruments] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def instrument(
    cache: Any, name: str = "default", meter_provider: MeterProvider | None = None
) -> CacheInstruments:
    """Export ``cache``'s metrics (a manager, sync or asyncio, or a layer) through
    ``meter_provider`` (the global one unless given), with the attribute ``cache=name``.
    Returns the provider's instruments (``remove(name)`` stops)."""
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _shared_lock:
        instruments = _shared.get(provider)
        if instruments is None:
            instruments = _shared[provider] = CacheInstruments(provider)
    instruments.add(cache, name)
    return instruments


def traced(
    loader: Callable[[Any], Any], cache: str = "default", tracer: trace.Tracer | None = None
) -> Callable[[Any], Any]:
    """``loader`` with a span ``cache.load`` around each call (attribute ``cache.name``;
    an exception is recorded and sets the span's status). ``tracer``: the global one
    (``multilayercache``) unless given. Works for ``async def`` loaders too. The key is
    not recorded: it may be personal data. Wrap the plain function, inside
    ``with_context``: ``with_context(traced(load))``."""
    if not callable(loader):
        raise TypeError(f"loader must be callable, got {loader!r}")
    spans = tracer if tracer is not None else trace.get_tracer(METER_NAME)
    attributes = {"cache.name": cache}
    if inspect.iscoroutinefunction(loader):

        @functools.wraps(loader)
        async def traced_async(argument: Any) -> Any:
            with spans.start_as_current_span("cache.load", attributes=attributes):
                return await loader(argument)

        return traced_async

    @functools.wraps(loader)
    def traced_sync(argument: Any) -> Any:
        with spans.start_as_current_span("cache.load", attributes=attributes):
            return loader(argument)

    return traced_sync


__all__ = ["CacheInstruments", "instrument", "traced"]
