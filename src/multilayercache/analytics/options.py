"""``InsightsOptions``: how often a cache's insights are sampled and what counts as an
anomaly. Plain data, checked when built."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from .autoresize import AutoResize

if TYPE_CHECKING:
    from ..core.events import Anomaly


@dataclass(frozen=True)
class InsightsOptions:
    """What ``MultilayerCache(..., insights=InsightsOptions(...))`` samples and reports.

    >>> cache = MultilayerCache([l1, l2], insights=InsightsOptions(on_anomaly=alert))

    The defaults report a key that jumps from its usual share of accesses to 5% or more
    and 4x its usual share within about a second, and a layer whose miss ratio rises 25
    points above its usual level; they stay silent on steady traffic (see ``anomaly.py``).
    """

    on_anomaly: Callable[[Anomaly], Any] | None = None
    """Called with each ``Anomaly``, on the sampler's thread (keep it short; what it
    raises is logged). Anomalies are logged (``multilayercache`` logger, rate-limited)
    whether or not it is set."""
    interval: float = 0.25
    """Seconds between samples of the layers' counters."""
    windows: tuple[float, ...] = (10.0, 60.0, 300.0)
    """The sliding windows (seconds) of the rates that ``insights()`` reports."""
    recent_seconds: float = 1.0
    """The recent window an anomaly is judged on."""
    baseline_seconds: float = 60.0
    """Time constant of the baselines (an exponentially weighted mean of the samples
    older than the recent window)."""
    warmup_seconds: float = 5.0
    """Baseline history needed before anything is reported."""
    min_requests: int = 200
    """Requests a layer must serve in the recent window for it to be judged."""
    key_share: float = 0.05
    """A key spikes at this share of a layer's recent requests or more ..."""
    key_factor: float = 4.0
    """... and at this many times its baseline share or more."""
    miss_rate_increase: float = 0.25
    """A layer's miss ratio spikes this far (absolute) above its baseline or more."""
    surprise: float = 20.0
    """How unlikely a spike must be under the baseline: the Chernoff bound of its count
    is at most ``exp(-surprise)`` (2e-9 at 20), so that random bursts of a steady
    workload, sampled four times a second for years, are not reported."""
    tracked_keys: int = 64
    """Keys whose baselines are followed per layer (the most accessed of each sample)."""
    skew_seconds: float = 60.0
    """Window of the per-key counts that the zipf exponent is fitted to."""
    log_interval: float = 10.0
    """Anomalies are logged at most once per this many seconds (the others are counted
    in the next message)."""
    auto_resize: AutoResize | None = None
    """An opt-in rule that grows or shrinks an in-process layer from its size estimates,
    within bounds (``analytics/autoresize.py``); off by default."""

    def __post_init__(self) -> None:
        if isinstance(self.windows, (list, tuple)):  # kept as a tuple: the options are frozen
            object.__setattr__(self, "windows", tuple(self.windows))
        if self.on_anomaly is not None and not callable(self.on_anomaly):
            raise TypeError(f"on_anomaly must be callable, got {self.on_anomaly!r}")
        for option in fields(self):
            value = getattr(self, option.name)
            if option.name in ("on_anomaly", "windows", "auto_resize"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"InsightsOptions.{option.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"InsightsOptions.{option.name} must be finite and > 0, got {value!r}"
                )
        if self.auto_resize is not None and not isinstance(self.auto_resize, AutoResize):
            raise TypeError(
                f"InsightsOptions.auto_resize must be an AutoResize, got {self.auto_resize!r}"
            )
        if (
            not isinstance(self.windows, tuple)
            or not self.windows
            or any(
                isinstance(window, bool)
                or not isinstance(window, (int, float))
                or not math.isfinite(window)
                or window <= 0
                for window in self.windows
            )
        ):
            raise ValueError(
                f"InsightsOptions.windows must be positive seconds, got {self.windows!r}"
            )
        if not 0 < self.key_share <= 1 or not 0 < self.miss_rate_increase <= 1:
            raise ValueError("InsightsOptions.key_share and miss_rate_increase must be in (0, 1]")
        if self.recent_seconds < self.interval:
            raise ValueError(
                "InsightsOptions.recent_seconds must be at least one interval "
                f"({self.recent_seconds!r} < {self.interval!r})"
            )
        if (
            int(self.tracked_keys) != self.tracked_keys
            or int(self.min_requests) != self.min_requests
        ):
            raise ValueError("InsightsOptions.tracked_keys and min_requests must be whole numbers")

    @property
    def recent_samples(self) -> int:
        """Samples in the recent window."""
        return max(1, round(self.recent_seconds / self.interval))
