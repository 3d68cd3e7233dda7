"""What the cache reports: each layer's counters (``LayerStats``), raw exports of the
in-memory layer (``LayerSnapshot``), and the manager's view of all its layers
(``CacheStats``). Plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .latency import Percentiles
from .writequeue import WriteQueueStats


@dataclass(frozen=True)
class LayerStats:
    """Counters of one layer since it was created."""

    name: str
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    """Entries removed to respect the size or weight bound (rejections included)."""
    expirations: int = 0
    """Entries removed because their TTL ran out."""
    rejections: int = 0
    """New entries that lost admission against main's victim (W-TinyLFU) and were dropped."""
    size: int | None = None
    """Entries held now (``None``: the layer cannot tell cheaply, e.g. a shared Redis)."""
    weight: int | None = None
    """Total weight held now (equals ``size`` without a weigher)."""
    max_size: int | None = None
    max_weight: int | None = None
    window_weight: int = 0
    """Current window target of the adaptive W-TinyLFU policy (entries or weight)."""
    errors: int = 0
    """Operations that failed (remote layers), and values read back but refused."""
    untrusted: dict[str, int] = field(default_factory=dict)
    """Values read back but refused (read as misses), by cause (``UNTRUSTED_CAUSES`` of
    ``core/errors.py``: ``corrupt``, ``limit``, ``wrong_key``, ``forged``, ...)."""
    puts: int = 0
    """Values written: sets, adds that stored, new counters, promotions and loaded values
    (in memory: whether or not the policy kept them; shared layers: writes that succeeded)."""
    admission_losses: int = 0
    """The ``rejections`` that entered the window and lost admission to main (also counted
    in ``evictions``); the other rejections (too large, crowded hash) never entered."""

    @property
    def requests(self) -> int:
        return self.hits + self.misses

    @property
    def hit_ratio(self) -> float:
        """hits / (hits + misses), 0.0 before the first request."""
        return self.hits / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hit_ratio"] = self.hit_ratio
        return data


@dataclass(frozen=True)
class HotKey:
    """One hot key in a snapshot: its hits and misses while it was tracked, and its
    estimated recent frequency."""

    key: Any
    hits: int
    misses: int
    frequency: int


@dataclass(frozen=True)
class LayerSnapshot:
    """A raw export of an in-memory layer's policy state, for dashboards and debugging."""

    stats: LayerStats
    sketch: np.ndarray
    """A copy of the count-min sketch table (``uint64`` words of 16 four-bit counters)."""
    sketch_additions: int
    sketch_sample_size: int
    hot_keys: list[HotKey] = field(default_factory=list)
    """The hottest keys seen lately (bounded: at most ``HOT_KEY_SLOTS`` tracked)."""
    window_max: int = 0
    protected_max: int = 0
    region_weights: tuple[int, int, int] = (0, 0, 0)
    """Weight held by the window, probation and protected regions."""


FLEET_COUNTERS = (
    "leases", "waits", "notified", "expired", "found_elsewhere", "taken_over", "lease_errors"
)  # fmt: skip
"""The keys of ``CacheStats.fleet_flight`` (counted as ``fleet_<name>``)."""


@dataclass(frozen=True)
class CacheStats:
    """What a manager reports: each layer's own counters, and its coordination."""

    layers: list[LayerStats]
    loader_calls: int
    """Calls of a loader (``get_or_load``, ``get_or_load_many``, ``@cached``)."""
    coalesced_waits: int
    """Callers that waited for another caller's load of the same key instead of loading."""
    load_latency: Percentiles
    """Loader durations (seconds), over the most recent loads."""
    layer_latency: dict[str, Percentiles]
    """Per-layer read latency (seconds); empty unless ``record_latency=True``."""
    read_errors: dict[str, int]
    """Failed reads per layer, treated as misses: calls that failed, and values read back
    but refused (``untrusted_reads``)."""
    write_errors: dict[str, int]
    """Failed writes per layer: counted always, and raised for ``set`` and ``delete``
    (promotions and loaded values are only counted)."""
    encode_errors: dict[str, int] = field(default_factory=dict)
    """Loaded values a layer could not encode (returned, and cached where they fit)."""
    loader_failures: int = 0
    """Loader calls that raised (the caller saw the error, or was spared it: see
    ``load_failures``); ``loader_calls - loader_failures`` succeeded."""
    stale_served: int = 0
    """Reads answered with a stale value (stale-while-revalidate, fail-safe, timeouts)."""
    fail_safe: int = 0
    """Failed loads whose callers got a stale value instead of the error."""
    load_failures: int = 0
    """Loads and refreshes that failed without the caller seeing the error."""
    refreshes: int = 0
    """Background refreshes run (refresh-ahead, stale-while-revalidate)."""
    refreshes_by_kind: dict[str, int] = field(default_factory=dict)
    """Background refreshes taken to run, by kind: ``stale`` (of keys served stale
    meanwhile) and ``early`` (of keys still fresh: refresh-ahead, XFetch). Their sum is
    ``refreshes`` but for a refresh that found its key's load running, and joined it."""
    refresh_failures: int = 0
    refreshes_dropped: int = 0
    """Refreshes not run for want of budget (see ``core/refresh.py``)."""
    soft_timeouts: int = 0
    hard_timeouts: int = 0
    throttled_loads: int = 0
    """Loads not run because the key's load failed less than ``fail_safe_throttle`` ago:
    the caller got the stale value, or without one that failure again."""
    refreshes_unchanged: int = 0
    """Loads and refreshes whose value was unchanged (the loader said so, or it encoded to
    the same bytes as the entry it replaces): kept, and its adaptive TTL made longer."""
    ttl_extended: int = 0
    """Entries of shared layers given a new lifetime without rewriting their value (an
    unchanged reload: deadlines rewritten in place and PEXPIRE, a few dozen bytes)."""
    unconfirmed_deletes: int = 0
    """Keys whose delete did not reach a layer, not read from it until one does."""
    unconfirmed_deletes_dropped: int = 0
    """Such keys forgotten to stay within the bound (the layer may serve them again)."""
    untrusted_reads: dict[str, dict[str, int]] = field(default_factory=dict)
    """Values a layer read back but refused (corrupt, forged, too large, written for
    another key, ...): per layer, by cause; each also counts in ``read_errors``."""
    breakers: dict[str, Any] = field(default_factory=dict)
    """Each IO layer's circuit breaker: state, times opened, calls rejected (on a cluster
    layer, the breaker of the calls that span nodes)."""
    node_breakers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each cluster layer's breakers of single-key calls, one per node (``host:port``)."""
    rate_limits: dict[str, Any] = field(default_factory=dict)
    """Each rate-limited layer's ``RateLimitStats`` (``LayerPolicy(rate_limit=...)``):
    calls let through, reads skipped, fills skipped, writes delayed and refused."""
    loads_delayed: int = 0
    """Loads that waited for their turn (``LoadOptions.max_loads_per_second``)."""
    loads_rate_limited: int = 0
    """Loads not run: no turn came within ``load_wait`` (the caller got its stale value,
    or ``LoadRateLimited``)."""
    write_queues: dict[str, WriteQueueStats] = field(default_factory=dict)
    """Each write-behind layer's queue (``WriteQueueStats``): depth, bytes, batches,
    retries, dead-lettered, coalesced, rejected."""
    fleet_flight: dict[str, int] = field(default_factory=dict)
    """One load across the fleet (``LoadOptions.fleet_single_flight``): leases taken
    (loads made for the fleet), waits for another instance's load, waits ended by its
    message (``notified``) or by its lease's end (``expired``), values found after a wait
    or just after taking a lease, leases taken after waiting for another's, and leases
    that could not be asked for or released (``lease_errors``: loaded here instead); see
    ``core/fleetflight.py``."""

    def layer(self, name: str) -> LayerStats:
        """The stats of the layer called ``name``."""
        for stats in self.layers:
            if stats.name == name:
                return stats
        raise KeyError(name)
