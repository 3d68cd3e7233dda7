"""Count a cache's events with OpenTelemetry metrics: a listener for ``cache.subscribe``
(needs ``opentelemetry-api``: the ``otel`` extra; an SDK of yours exports them).

    from multilayercache.observability.events_otel import OtelEventCounter

    cache.subscribe(OtelEventCounter(cache_name="users"))

One counter per kind, with the attributes dashboards group by, never a key:

==============================  =========================================================
``cache.removals``              ``cache``, ``layer``, ``cause`` (evicted, expired, ...)
``cache.refreshes``             ``cache``, ``trigger`` (early, stale, background), ``result``
``cache.breaker.transitions``   ``cache``, ``layer``, ``from``, ``to``
``cache.dead_letters``          ``cache``, ``layer`` (counts writes)
``cache.anomalies``             ``cache``, ``kind``
==============================  =========================================================

Counters rather than span events: listeners run on a delivery thread, after the request,
where no request span is current to attach an event to.
"""

from __future__ import annotations

from typing import Any

try:
    from opentelemetry import metrics
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "multilayercache.observability.events_otel needs opentelemetry-api: "
        "pip install 'multilayercache[otel]'"
    ) from missing

from ..core.events import Anomaly, BreakerTransition, DeadLettered, Event, Refresh, Removal

METER_NAME = "multilayercache"


class OtelEventCounter:
    """A listener that adds each event to its kind's counter (see the module docstring).
    ``meter``: where the counters live (``metrics.get_meter("multilayercache")`` by
    default); ``cache_name``: the ``cache`` attribute, telling caches apart."""

    def __init__(self, meter: Any = None, *, cache_name: str = "default") -> None:
        meter = meter or metrics.get_meter(METER_NAME)
        self.cache_name = cache_name
        self._removals = meter.create_counter(
            "cache.removals", unit="{entry}", description="Entries that left an in-process layer"
        )
        self._refreshes = meter.create_counter(
            "cache.refreshes", unit="{refresh}", description="Background refreshes that ended"
        )
        self._transitions = meter.create_counter(
            "cache.breaker.transitions",
            unit="{transition}",
            description="Circuit breaker changes of state",
        )
        self._dead_letters = meter.create_counter(
            "cache.dead_letters", unit="{write}", description="Writes handed to the dead letter"
        )
        self._anomalies = meter.create_counter(
            "cache.anomalies", unit="{anomaly}", description="Breaks from the traffic baseline"
        )

    def __call__(self, event: Event) -> None:
        name = self.cache_name
        if isinstance(event, Removal):
            self._removals.add(1, {"cache": name, "layer": event.layer, "cause": event.cause})
        elif isinstance(event, Refresh):
            result = "ok" if event.ok else "failed"
            self._refreshes.add(1, {"cache": name, "trigger": event.trigger, "result": result})
        elif isinstance(event, BreakerTransition):
            self._transitions.add(
                1,
                {
                    "cache": name,
                    "layer": event.layer,
                    "from": event.from_state,
                    "to": event.to_state,
                },
            )
        elif isinstance(event, DeadLettered):
            self._dead_letters.add(event.count, {"cache": name, "layer": event.layer})
        elif isinstance(event, Anomaly):
            self._anomalies.add(1, {"cache": name, "kind": event.kind})


__all__ = ["METER_NAME", "OtelEventCounter"]
