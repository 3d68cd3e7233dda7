"""Insights per layer: rates over sliding windows, frequency skew, and the anomaly
detectors, from periodic samples of what the layers count anyway.

``Insights.sample()`` is one tick (``sampler.py`` calls it on a thread of its own, tests
call it on an injected clock): it reads each layer's ``stats()`` and, from an in-process
layer, its per-key counts (``accesses.py``, the reader the fleet's global top-N uses too),
and feeds them to

* a ring of counter samples, one per second or so, bounded by the longest window: the
  rates of ``insights()`` are differences between its newest sample and the one a window
  ago;
* ``MissRateSpikes`` and ``KeySpikes`` (``anomaly.py``), whose anomalies go to the log and
  to ``on_anomaly`` (``deliver``);
* a skew estimate: per-key accesses over ``skew_seconds``, fitted to a zipf law.

Memory: the ring (a few hundred tuples), the detectors' tracked keys, and two copies of
an in-process layer's per-slot counters (12 bytes a slot).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._forking import register_after_fork
from ..core.events import KEY_SPIKE, MISS_RATE_SPIKE, Anomaly
from ..core.log import ThrottledWarning
from .accesses import SLOT, access_deltas, top_accesses
from .anomaly import KeySpikes, MissRateSpikes, deliver
from .mrc import size_estimates
from .options import InsightsOptions

RECENT_ANOMALIES = 32
"""Anomalies that ``insights()`` lists (the most recent)."""
SKEW_RANKS = 256
"""The most accessed keys a zipf exponent is fitted to."""
SKEW_MIN_COUNT = 16
"""Accesses a key needs to be fitted (fewer: its count is mostly noise, +-25% at 16)."""
SKEW_MIN_KEYS = 8
"""Keys the fit needs, else no estimate."""


@dataclass(frozen=True)
class WindowRates:
    """One layer's traffic over one sliding window."""

    seconds: float
    """The window asked for."""
    covered_seconds: float
    """The history it covers (less than ``seconds`` until that much was sampled)."""
    requests_per_second: float
    hits_per_second: float
    misses_per_second: float
    evictions_per_second: float
    """Entries evicted for room (as ``cache_evictions_total{cause="size"}``: a newcomer
    that lost admission is a rejection, not an eviction)."""
    expirations_per_second: float
    hit_ratio: float | None
    """hits / requests over the window (``None``: no request)."""


@dataclass(frozen=True)
class LayerInsights:
    """What the samples say about one layer."""

    name: str
    windows: list[WindowRates]
    """One per ``InsightsOptions.windows``, shortest first."""
    miss_ratio_baseline: float
    """The miss ratio the miss-rate detector compares the recent window with."""
    zipf_exponent: float | None
    """The fitted skew of the per-key accesses (in-process layers; ``None`` elsewhere or
    before enough traffic): about 0.6-0.8 for web and CDN traffic, 1 and more for
    heavily skewed traffic, where a small L1 catches most requests."""
    zipf_keys: int
    """The keys that fit used."""
    tracked_keys: int
    """Keys whose share of requests the key-spike detector follows now."""
    anomalies_reported: dict[str, int] = field(default_factory=dict)
    """Anomalies reported since the cache was created, by kind (``key_spike``,
    ``miss_rate_spike``; only the kinds this layer can report)."""
    size_estimates: dict[float, float] | None = None
    """An L1 built with ``estimate_sizes``: its ``size_estimates()``, the hit ratio it
    would have at each size factor (``None`` for other layers)."""

    def window(self, seconds: float) -> WindowRates:
        """The rates over the window of ``seconds``."""
        for rates in self.windows:
            if rates.seconds == seconds:
                return rates
        raise KeyError(seconds)


@dataclass(frozen=True)
class CacheInsights:
    """``cache.insights()``: one ``LayerInsights`` per layer, and the latest anomalies."""

    layers: list[LayerInsights]
    anomalies: list[Anomaly]
    """The most recent anomalies (``RECENT_ANOMALIES`` at most), oldest first."""
    samples: int
    """Samples taken so far."""

    def layer(self, name: str) -> LayerInsights:
        """The insights of the layer called ``name``."""
        for insights in self.layers:
            if insights.name == name:
                return insights
        raise KeyError(name)


def zipf_exponent(counts: np.ndarray) -> tuple[float | None, int]:
    """The exponent ``s`` of a zipf law ``count ~ rank^-s`` fitted to per-key access
    counts, and how many keys the fit used.

    A least-squares line through (log rank, log count) of the most accessed keys, at ranks
    spread evenly in log space (else the many keys of the tail outweigh the head). What it
    measures and its limits: the skew among the keys with enough accesses to be told
    apart (``SKEW_MIN_COUNT``, at most ``SKEW_RANKS``), i.e. the head of the distribution
    that a cache's hit ratio depends on; not the tail. Counts are per key as the layer saw
    them (an L1 of the keys it caches and those that keep missing), so a key evicted and
    stored again in the window counts only its latest stay, and ranking keys by their
    observed counts flattens the fit slightly where neighbouring ranks have similar counts.
    ``None`` with fewer than ``SKEW_MIN_KEYS`` such keys."""
    ranked = np.sort(counts[counts >= SKEW_MIN_COUNT])[::-1][:SKEW_RANKS]
    if len(ranked) < SKEW_MIN_KEYS:
        return None, len(ranked)
    ranks = np.unique(np.round(np.geomspace(1, len(ranked), 32)).astype(np.int64))
    slope, _ = np.polyfit(np.log(ranks), np.log(ranked[ranks - 1].astype(np.float64)), 1)
    return float(-slope), len(ranked)


class _LayerSampler:
    """One layer's samples: counters, the ring, its detectors, its skew."""

    def __init__(self, layer: Any, options: InsightsOptions) -> None:
        self.layer = layer
        self.name: str = getattr(layer, "name", type(layer).__name__)
        self.options = options
        self.spacing = max(options.interval, min(options.windows) / 10)
        self.ring: deque[tuple[float, tuple[int, ...]]] = deque(
            maxlen=math.ceil(max(options.windows) / self.spacing) + 2
        )
        self.last: tuple[float, tuple[int, ...]] | None = None
        self.misses = MissRateSpikes(self.name, options)
        counted = callable(getattr(layer, "access_counts", None))
        self.keys = KeySpikes(self.name, options) if counted else None
        kinds = (KEY_SPIKE, MISS_RATE_SPIKE) if counted else (MISS_RATE_SPIKE,)
        self.anomalies_reported = dict.fromkeys(kinds, 0)
        self.counts: Any = None
        self.skew_from: tuple[float, Any] | None = None
        self.skew: tuple[float | None, int] = (None, 0)
        self.provisional: tuple[Any, tuple[float | None, int]] | None = None

    def sample(self, now: float, wall: float) -> list[Anomaly]:
        stats = self.layer.stats()
        evicted = stats.evictions - stats.admission_losses
        counters = (stats.hits, stats.misses, evicted, stats.expirations)
        counts = self.layer.access_counts() if self.keys is not None else None
        last, self.last = self.last, (now, counters)
        if not self.ring or now - self.ring[-1][0] >= self.spacing:
            self.ring.append((now, counters))
        previous_counts, self.counts = self.counts, counts
        if last is None:
            self.skew_from = None if counts is None else (now, counts)
            return []
        if now <= last[0]:  # the clock did not move: nothing to measure a rate over
            return []
        seconds = now - last[0]
        hits, misses = (
            max(0, new - old) for new, old in zip(counters[:2], last[1][:2], strict=True)
        )
        found: list[Anomaly] = []
        spike = self.misses.observe(seconds, hits, misses, wall)
        if spike is not None:
            found.append(spike)
        if self.keys is not None and previous_counts is not None:
            slot_deltas, bucket_deltas = access_deltas(previous_counts, counts)
            top = top_accesses(counts, slot_deltas, bucket_deltas, int(self.options.tracked_keys))
            spikes = self.keys.observe(seconds, hits + misses, top, wall)
            found.extend(self._with_key(self.keys, spike) for spike in spikes)
            self._follow_skew(now, counts)
        for anomaly in found:
            self.anomalies_reported[anomaly.kind] += 1
        return found

    def _with_key(self, keys: KeySpikes, spike: Anomaly) -> Anomaly:
        """``spike`` with its key, read back from where it was counted."""
        key_hash = spike.key_hash if spike.key_hash is not None else 0
        kind, index = keys.locator_of(key_hash)
        read = self.layer.keys_at if kind == SLOT else self.layer.missed_keys_at
        return replace(spike, key=read([(index, key_hash)])[0])

    def _follow_skew(self, now: float, counts: Any) -> None:
        """Refit the skew once per ``skew_seconds``, to the accesses since the last fit."""
        if self.skew_from is None:
            self.skew_from = (now, counts)
        elif now - self.skew_from[0] >= self.options.skew_seconds:
            self.skew = self._fit(self.skew_from[1], counts)
            self.skew_from = (now, counts)

    def _fit(self, since: Any, counts: Any) -> tuple[float | None, int]:
        slot_deltas, bucket_deltas = access_deltas(since, counts)
        # Only the keys an L1 keeps are counted in full: the fit stays among the hottest
        # quarter of what it holds (a key it drops and stores again counts only its stay).
        held = int(np.count_nonzero(counts.slot_hashes))
        top = top_accesses(counts, slot_deltas, bucket_deltas, min(SKEW_RANKS, held // 4))
        return zipf_exponent(np.array([count for count, _ in top.values()], dtype=np.int64))

    def report(self) -> LayerInsights:
        windows = [self._rates(seconds) for seconds in sorted(self.options.windows)]
        skew = self.skew
        if skew[0] is None and self.skew_from is not None and self.counts is not None:
            # No full window yet: the fit so far, once per sample however often it is
            # asked (each exporter's scrape asks; a fit is a pass over the counts).
            if self.provisional is None or self.provisional[0] is not self.counts:
                self.provisional = (self.counts, self._fit(self.skew_from[1], self.counts))
            skew = self.provisional[1]
        return LayerInsights(
            name=self.name,
            windows=windows,
            miss_ratio_baseline=self.misses.baseline,
            zipf_exponent=skew[0],
            zipf_keys=skew[1],
            tracked_keys=0 if self.keys is None else len(self.keys),
            anomalies_reported=dict(self.anomalies_reported),
            size_estimates=size_estimates(self.layer),
        )

    def _rates(self, seconds: float) -> WindowRates:
        if self.last is None:
            return WindowRates(seconds, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None)
        now, counters = self.last
        start_at, start = self.ring[0]
        for at, sampled in reversed(self.ring):  # the newest sample a window ago or earlier
            if at <= now - seconds:
                start_at, start = at, sampled
                break
        covered = now - start_at
        hits, misses, evictions, expirations = (
            max(0, new - old) for new, old in zip(counters, start, strict=True)
        )
        per_second = 1 / covered if covered > 0 else 0.0
        requests = hits + misses
        return WindowRates(
            seconds=seconds,
            covered_seconds=covered,
            requests_per_second=requests * per_second,
            hits_per_second=hits * per_second,
            misses_per_second=misses * per_second,
            evictions_per_second=evictions * per_second,
            expirations_per_second=expirations * per_second,
            hit_ratio=hits / requests if requests else None,
        )


class Insights:
    """A cache's insights: ``sample()`` once per ``options.interval`` (off the request
    path), ``report()`` at any time, from any thread. ``clock``: the seconds the windows
    and baselines are measured in (injected by tests); ``wall_clock`` stamps anomalies;
    ``emit`` hands each anomaly to the cache's events too (``cache.subscribe``)."""

    def __init__(
        self,
        layers: Sequence[Any],
        options: InsightsOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        emit: Callable[[Anomaly], Any] | None = None,
    ) -> None:
        self.options = options if options is not None else InsightsOptions()
        self._emit = emit  # the cache's event hub (``core/events.py``), if any
        self._clock = clock
        self._wall_clock = wall_clock
        self._layers = [_LayerSampler(layer, self.options) for layer in layers]
        self._anomalies: deque[Anomaly] = deque(maxlen=RECENT_ANOMALIES)
        self._samples = 0
        self._lock = threading.Lock()  # sample() on the sampler's thread, report() anywhere
        self._warn = ThrottledWarning(self.options.log_interval, clock)
        register_after_fork(self)

    def _after_fork(self) -> None:
        # The parent's sampler may have held the lock at the fork: it is gone in the child.
        self._lock = threading.Lock()

    def sample(self) -> list[Anomaly]:
        """Sample every layer once; the anomalies found are delivered (log, callback) and
        returned."""
        with self._lock:
            now, wall = self._clock(), self._wall_clock()
            found = [anomaly for layer in self._layers for anomaly in layer.sample(now, wall)]
            self._samples += 1
            self._anomalies.extend(found)
        for anomaly in found:  # outside the lock: the callback may call insights()
            deliver(anomaly, self.options.on_anomaly, self._warn, self._emit)
        return found

    def report(self) -> CacheInsights:
        """The rates, skew and recent anomalies as sampled so far."""
        with self._lock:
            return CacheInsights(
                layers=[layer.report() for layer in self._layers],
                anomalies=list(self._anomalies),
                samples=self._samples,
            )
