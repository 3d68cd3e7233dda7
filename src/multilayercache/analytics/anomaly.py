"""Anomalies: sudden access spikes, decided from periodic samples of counters the cache
keeps anyway (no work is added to a request; ``sampler.py`` samples off the request path).

Two detectors, each a small state machine fed one sample at a time; a sample carries the
seconds it covers, so tests drive them on an injected clock:

* ``KeySpikes``: a key whose share of a layer's recent requests jumps far above its
  baseline share (one cold key suddenly 20% of the traffic: a bot, a viral item, a retry
  storm on one id). Fed the most accessed keys of each sample (``tracked_keys`` of them);
  a key seen for the first time has a baseline of about 0.
* ``MissRateSpikes``: a layer's miss ratio far above its baseline (an invalidation storm,
  a lost L2, a deploy that changed the keys).

Recent and baseline never overlap: the last ``recent_seconds`` of samples are the recent
window; a sample leaving it is folded into the baseline, an exponentially weighted mean of
requests and of counts (their ratio is the baseline share or miss ratio; no bias at the
start, since both means start at zero together).

A spike must be large (share >= ``key_share`` and >= ``key_factor`` x baseline; miss ratio
>= baseline + ``miss_rate_increase``) and surprising: seeing ``k`` events where the
baseline expects ``mu`` has probability at most ``exp(-(k ln(k/mu) - k + mu))`` (the
Chernoff bound of a Poisson count), which must be below ``exp(-surprise)``. The first
condition is what a user cares about; the second keeps the random bursts of a steady
workload and the small counts of a quiet one from being reported. Each spike is reported
once, then again only after it has calmed down (below half its thresholds).

Memory: per layer, at most ``tracked_keys`` keys, each with ``recent_samples`` counts.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..core.events import KEY_SPIKE, MISS_RATE_SPIKE, Anomaly
from ..core.log import ThrottledWarning
from .options import InsightsOptions

log = logging.getLogger("multilayercache")


def deliver(
    anomaly: Anomaly,
    on_anomaly: Callable[[Anomaly], Any] | None,
    warn: ThrottledWarning,
    emit: Callable[[Anomaly], Any] | None = None,
) -> None:
    """Hand ``anomaly`` to the log (``warn``: rate-limited), to the cache's events
    (``emit``: queued, never blocks) and to ``on_anomaly``; what the callback raises is
    logged, never raised (it runs on the sampler's thread). The one place an anomaly
    leaves the analytics."""
    warn("multilayercache: %s: %s", anomaly.kind, anomaly)
    if emit is not None:
        emit(anomaly)
    if on_anomaly is None:
        return
    try:
        on_anomaly(anomaly)
    except Exception:  # the user's callback must not stop the sampling
        log.exception("multilayercache: on_anomaly raised for %s", anomaly)


def log_tail_bound(count: float, expected: float) -> float:
    """``-ln`` of the Chernoff bound of ``P(X >= count)`` for a Poisson count ``X`` of mean
    ``expected`` (0 when ``count <= expected``): how surprising ``count`` is."""
    expected = max(expected, 1.0)  # at least one event is always plausible
    if count <= expected:
        return 0.0
    return count * math.log(count / expected) - count + expected


class _Window:
    """A layer's recent samples of one counter pair (events, requests), and the baseline
    of the samples that left them."""

    __slots__ = (
        "recent", "mean_events", "mean_requests", "baseline_seconds", "baseline_requests",
        "alerted",
    )  # fmt: skip

    def __init__(self, samples: int) -> None:
        self.recent: deque[tuple[float, int, int]] = deque(maxlen=samples)
        self.mean_events = 0.0
        self.mean_requests = 0.0
        self.baseline_seconds = 0.0
        self.baseline_requests = 0
        self.alerted = False

    def push(self, seconds: float, events: int, requests: int, time_constant: float) -> None:
        if len(self.recent) == self.recent.maxlen:
            old_seconds, old_events, old_requests = self.recent[0]
            # Means per second, so that samples of uneven length weigh by their length.
            keep = math.exp(-old_seconds / time_constant)
            self.mean_events = keep * self.mean_events + (1 - keep) * old_events / old_seconds
            self.mean_requests = keep * self.mean_requests + (1 - keep) * old_requests / old_seconds
            self.baseline_seconds += old_seconds
            self.baseline_requests += old_requests
        self.recent.append((seconds, events, requests))

    def judged(self, options: InsightsOptions, requests: int) -> bool:
        """Whether there is enough to judge by: ``requests`` in the recent window, and a
        baseline of ``warmup_seconds`` with as many requests (a layer that served nothing
        yet has no usual miss ratio)."""
        return (
            requests >= options.min_requests
            and self.baseline_seconds >= options.warmup_seconds
            and self.baseline_requests >= options.min_requests
        )

    @property
    def baseline(self) -> float:
        """Events per request before the recent window (0 before any)."""
        return self.mean_events / self.mean_requests if self.mean_requests > 0 else 0.0

    def totals(self) -> tuple[float, int, int]:
        """Seconds, events and requests of the recent window."""
        return (
            sum(sample[0] for sample in self.recent),
            sum(sample[1] for sample in self.recent),
            sum(sample[2] for sample in self.recent),
        )


class MissRateSpikes:
    """A layer's miss ratio far above its baseline (see the module docstring)."""

    def __init__(self, layer: str, options: InsightsOptions) -> None:
        self.layer = layer
        self.options = options
        self._window = _Window(options.recent_samples)

    @property
    def baseline(self) -> float:
        """The miss ratio before the recent window."""
        return self._window.baseline

    def observe(self, seconds: float, hits: int, misses: int, at: float) -> Anomaly | None:
        """One sample (``hits`` and ``misses`` in the last ``seconds``): the spike it
        reveals, if any."""
        options, window = self.options, self._window
        window.push(seconds, misses, hits + misses, options.baseline_seconds)
        span, missed, requests = window.totals()
        if not window.judged(options, requests):
            return None
        ratio, baseline = missed / requests, window.baseline
        threshold = baseline + options.miss_rate_increase
        if window.alerted:
            window.alerted = ratio >= baseline + options.miss_rate_increase / 2
            return None
        if ratio < threshold or log_tail_bound(missed, requests * baseline) < options.surprise:
            return None
        window.alerted = True
        return Anomaly(MISS_RATE_SPIKE, self.layer, ratio, baseline, requests, span, at)


class _TrackedKey:
    __slots__ = ("window", "locator")

    def __init__(self, samples: int, locator: Any) -> None:
        self.window = _Window(samples)
        self.locator = locator


class KeySpikes:
    """A key whose share of a layer's requests jumps far above its baseline (see the
    module docstring). Follows at most ``tracked_keys`` keys, by their spread hash."""

    def __init__(self, layer: str, options: InsightsOptions) -> None:
        self.layer = layer
        self.options = options
        self._tracked: dict[int, _TrackedKey] = {}
        self._requests = _Window(options.recent_samples)

    def __len__(self) -> int:
        return len(self._tracked)

    def observe(
        self, seconds: float, requests: int, counts: Mapping[int, tuple[int, Any]], at: float
    ) -> list[Anomaly]:
        """One sample: the layer's ``requests`` in the last ``seconds``, and ``counts``,
        ``key_hash -> (accesses, locator)`` of the most accessed keys in it (``locator``
        tells the caller where to read the key back). Returns the spikes it reveals, with
        ``key_hash`` set and ``key`` left to the caller (its locator: ``locator_of``)."""
        options = self.options
        samples, time_constant = options.recent_samples, options.baseline_seconds
        if len(counts) > options.tracked_keys:  # the bound holds whatever the caller passes
            ranked = sorted(counts.items(), key=lambda item: -item[1][0])
            counts = dict(ranked[: int(options.tracked_keys)])
        self._requests.push(seconds, 0, requests, time_constant)
        admitted = self._admit(counts)
        for key_hash, (count, locator) in counts.items():
            tracked = self._tracked.get(key_hash)
            if tracked is None:
                if key_hash not in admitted:
                    continue
                tracked = self._tracked[key_hash] = _TrackedKey(samples, locator)
                # Unseen until now: its share was about 0 for as long as the layer's.
                for old in list(self._requests.recent)[:-1]:
                    tracked.window.push(old[0], 0, old[2], time_constant)
                tracked.window.mean_requests = self._requests.mean_requests
                tracked.window.baseline_seconds = self._requests.baseline_seconds
                tracked.window.baseline_requests = self._requests.baseline_requests
            tracked.locator = locator
            tracked.window.push(seconds, count, requests, time_constant)
        for key_hash, tracked in self._tracked.items():
            if key_hash not in counts:
                tracked.window.push(seconds, 0, requests, time_constant)
        return [
            spike
            for key_hash, tracked in self._tracked.items()
            if (spike := self._judge(key_hash, tracked.window, at)) is not None
        ]

    def locator_of(self, key_hash: int) -> Any:
        """Where the key of ``key_hash`` was last counted (what ``observe`` was given)."""
        tracked = self._tracked.get(key_hash)
        return None if tracked is None else tracked.locator

    def _judge(self, key_hash: int, window: _Window, at: float) -> Anomaly | None:
        options = self.options
        span, count, requests = window.totals()
        if not window.judged(options, requests):
            return None
        share, baseline = count / requests, window.baseline
        threshold = max(options.key_share, options.key_factor * baseline)
        if window.alerted:
            window.alerted = share >= threshold / 2
            return None
        if share < threshold or log_tail_bound(count, requests * baseline) < options.surprise:
            return None
        window.alerted = True
        return Anomaly(
            KEY_SPIKE, self.layer, share, baseline, requests, span, at, key_hash=key_hash
        )

    def _admit(self, counts: Mapping[int, tuple[int, Any]]) -> set[int]:
        """The keys of this sample that are not tracked yet and get tracked: while there is
        room, the most accessed; then each only in place of a tracked key that this sample
        does not count and that usually sees fewer accesses a sample than it has now (the
        many keys seen once must not push out a hot key that had a quiet sample)."""
        newcomers = sorted(
            ((count, key_hash) for key_hash, (count, _) in counts.items()
             if key_hash not in self._tracked),
            reverse=True,
        )  # fmt: skip
        room = int(self.options.tracked_keys) - len(self._tracked)
        admitted = {key_hash for _, key_hash in newcomers[: max(room, 0)]}
        idle = sorted(
            (tracked.window.alerted, self._usual_count(tracked.window), key_hash)
            for key_hash, tracked in self._tracked.items()
            if key_hash not in counts
        )
        for (count, key_hash), (alerted, usual, weakest) in zip(
            newcomers[max(room, 0) :], idle, strict=False
        ):
            if alerted or count <= usual:
                break  # newcomers fall and the tracked keys rise: no later pair qualifies
            del self._tracked[weakest]
            admitted.add(key_hash)
        return admitted

    def _usual_count(self, window: _Window) -> float:
        """A tracked key's accesses in a usual sample: by its baseline, or by its recent
        samples while it has no baseline yet."""
        recent = sum(sample[1] for sample in window.recent) / max(1, len(window.recent))
        return max(window.mean_events * self.options.interval, recent)
