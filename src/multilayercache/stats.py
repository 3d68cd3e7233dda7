"""What layers report about themselves: counters (``LayerStats``) and raw exports
(``LayerSnapshot``). Plain data, shared by every layer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LayerStats:
    """Counters of one layer since it was created (or since ``reset_stats``)."""

    name: str
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    """Entries removed to respect the size or weight bound (rejections included)."""
    expirations: int = 0
    """Entries removed because their TTL ran out."""
    rejections: int = 0
    """New entries that lost admission against main's victim (W-TinyLFU) and were dropped."""
    size: int = 0
    """Entries held now."""
    weight: int = 0
    """Total weight held now (equals ``size`` without a weigher)."""
    max_size: int | None = None
    max_weight: int | None = None
    window_weight: int = 0
    """Current window target of the adaptive W-TinyLFU policy (entries or weight)."""
    errors: int = 0
    """Operations that failed (remote layers)."""

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
