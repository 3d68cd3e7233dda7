"""The thread that samples a cache's insights: one small daemon thread per cache, for
``MultilayerCache`` and ``AsyncMultilayerCache`` alike.

A thread, also for asyncio: a sample only reads counters (``stats()``, an in-process
layer's ``access_counts()``), no IO, and a thread keeps sampling while the event loop is
busy, which is when a spike matters. ``on_anomaly`` runs on this thread.

The thread holds the ``Insights`` weakly: a cache dropped without ``close()`` stops its
sampler at the next tick. A forked child starts a sampler of its own.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._forking import register_after_fork
from ..core.events import Anomaly
from .autoresize import Resizer, resizer_for
from .insights import CacheInsights, Insights
from .options import InsightsOptions

log = logging.getLogger("multilayercache")


class Sampler:
    """Calls ``insights.sample()`` every ``insights.options.interval`` seconds on a daemon
    thread, from ``start()`` to ``stop()``."""

    def __init__(self, insights: Insights, resizer: Resizer | None = None) -> None:
        self.insights = insights
        self.resizer = resizer
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        register_after_fork(self)

    def start(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(
            target=_run,
            args=(weakref.ref(self.insights), self._stopped, self.resizer),
            name="multilayercache-insights",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float | None = 1.0) -> None:
        """Stop sampling; wait up to ``timeout`` seconds for a sample under way (``0``: do
        not wait, as from an event loop)."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and timeout != 0 and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _after_fork(self) -> None:
        # The parent's thread is gone in the child: sample the child's traffic on its own.
        if self._thread is not None and not self._stopped.is_set():
            self._stopped = threading.Event()
            self.start()


def _run(
    insights: weakref.ref[Insights], stopped: threading.Event, resizer: Resizer | None
) -> None:
    while True:
        current = insights()
        if current is None:
            return  # the cache is gone
        interval = current.options.interval
        try:
            current.sample()
            if resizer is not None:
                resizer.check()
        except Exception:  # a bug (or a layer's stats() failing) must not end the sampling
            log.exception("multilayercache: sampling the cache's insights failed")
        del current
        if stopped.wait(interval):
            return


def insights_options(
    insights: InsightsOptions | bool | None,
    on_anomaly: Callable[[Anomaly], Any] | None,
) -> InsightsOptions | None:
    """The options a manager's ``insights=`` and ``on_anomaly=`` ask for (``None``: insights
    are off, the default); checked before the manager starts anything."""
    if on_anomaly is not None and not callable(on_anomaly):
        raise TypeError(f"on_anomaly must be callable, got {on_anomaly!r}")
    if insights is None or insights is False:
        return None if on_anomaly is None else InsightsOptions(on_anomaly=on_anomaly)
    if insights is True:
        return InsightsOptions(on_anomaly=on_anomaly)
    if not isinstance(insights, InsightsOptions):
        raise TypeError(f"insights must be True, False or an InsightsOptions, got {insights!r}")
    if on_anomaly is None:
        return insights
    if insights.on_anomaly is not None:
        raise ValueError("on_anomaly is given twice: as an argument and in insights=")
    return dataclasses.replace(insights, on_anomaly=on_anomaly)


def start_insights(
    layers: Sequence[Any],
    options: InsightsOptions | None,
    emit: Callable[[Any], Any] | None = None,
) -> Sampler | None:
    """A started sampler of ``layers`` (``None`` if ``options`` is); anomalies also go to
    ``emit`` (the cache's events)."""
    if options is None:
        return None
    resizer = resizer_for(options.auto_resize, layers, emit)  # checked before it starts
    sampler = Sampler(Insights(layers, options, emit=emit), resizer)
    sampler.start()
    return sampler


def insights_if_on(cache: Any) -> CacheInsights | None:
    """``cache.insights()`` of a manager made with insights, else ``None`` (insights off,
    or a bare layer): what the metrics exporters read at a scrape."""
    sampler: Sampler | None = getattr(cache, "_sampler", None)
    return None if sampler is None else sampler.insights.report()


def cache_insights(cache: Any) -> CacheInsights:
    """Per layer: request, hit, miss, eviction and expiration rates over sliding windows
    (``InsightsOptions.windows``: 10 s, 1 min, 5 min), the zipf exponent of the keys'
    accesses (in-process layers), and the latest anomalies (``analytics/anomaly.py``), as
    sampled so far off the request path. ``RuntimeError`` unless the cache was made with
    ``insights=`` or ``on_anomaly=``. (``MultilayerCache.insights`` and
    ``AsyncMultilayerCache.insights``: plain on both, it does no IO.)"""
    sampler: Sampler | None = cache._sampler
    if sampler is None:
        raise RuntimeError(
            "insights are off: create the cache with insights=True, "
            "insights=InsightsOptions(...) or on_anomaly=..."
        )
    return sampler.insights.report()
