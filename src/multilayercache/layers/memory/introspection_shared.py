"""What both twins of the layer's introspection (``introspection.pyx``,
``_introspection_py.py``) share: ``LayerStats`` from the layer's counters, the ranking of hot
keys in a ``LayerSnapshot``, and the layer's ``repr``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ...core.stats import HotKey, LayerSnapshot, LayerStats


def layer_stats(layer: Any, counters: tuple[int, ...]) -> LayerStats:
    """``LayerStats`` from ``(hits, misses, evictions, expirations, rejections, size,
    weight, window, puts, admission_losses)``, read together while the layer was
    consistent."""
    hits, misses, evictions, expirations, rejections, size, weight, window, puts, lost = counters
    return LayerStats(
        name=layer.name,
        hits=hits,
        misses=misses,
        evictions=evictions,
        expirations=expirations,
        rejections=rejections,
        size=size,
        weight=weight,
        max_size=layer.max_size,
        max_weight=layer.max_weight,
        window_weight=window,
        puts=puts,
        admission_losses=lost,
    )


def layer_repr(layer: Any) -> str:
    """``InMemoryLayer(name='l1', max_size=1000, size=12)``: what it is and holds."""
    bound = (
        f"max_size={layer.max_size}"
        if layer.max_size is not None
        else f"max_weight={layer.max_weight}"
    )
    return f"InMemoryLayer(name={layer.name!r}, {bound}, size={len(layer)})"


def layer_snapshot(
    stats: LayerStats,
    policy: Any,
    cached: list[tuple[Any, int, int]],
    missed: Any,
    hot_keys: int,
) -> LayerSnapshot:
    """A ``LayerSnapshot`` of ``policy``, with the ``hot_keys`` hottest keys among the
    ``cached`` entries ``(key, key_hash, hits)`` and the keys that keep missing."""
    return LayerSnapshot(
        stats=stats,
        sketch=policy.sketch.table,
        sketch_additions=policy.sketch.additions,
        sketch_sample_size=policy.sketch.sample_size,
        hot_keys=rank_hot_keys(cached, missed, policy.frequency, hot_keys),
        window_max=policy.window_max,
        protected_max=policy.protected_max,
        region_weights=tuple(policy.region_weights),
    )


def rank_hot_keys(
    cached: list[tuple[Any, int, int]],
    missed: Any,
    frequency: Callable[[int], int],
    n: int,
) -> list[HotKey]:
    """The ``n`` hottest keys by estimated frequency, from the cached entries
    ``(key, key_hash, hits)`` and the keys that keep missing (a ``HotKeyTable``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"hot_keys must be an int >= 0, got {n!r}")
    found: dict[int, HotKey] = {}
    for key, key_hash, hits in cached:
        found[key_hash] = HotKey(key, hits, missed.count_of(key_hash), frequency(key_hash))
    for key, misses, key_hash in missed.top(n):
        if key_hash not in found:
            found[key_hash] = HotKey(key, 0, misses, frequency(key_hash))
    ranked = sorted(found.values(), key=lambda hot: (-hot.frequency, -(hot.hits + hot.misses)))
    return ranked[:n]


class AccessCounts(NamedTuple):
    """What the layer counts per key anyway, copied out in one go for a sampler off the
    request path (``multilayercache.analytics``): per slot, the spread hash of the key it
    holds and its hits since it was stored (0 for an empty slot); per bucket of the table of
    keys that keep missing (``_core/hotkeys``), the hash of the key it tracks and its
    misses (0: none). A sampler takes the difference of two copies: a slot or bucket whose
    hash changed holds another key, counted from 0."""

    slot_hashes: np.ndarray
    """``uint64`` per slot."""
    slot_hits: np.ndarray
    """``int64`` per slot."""
    missed_hashes: np.ndarray
    """``uint64`` per bucket."""
    missed_counts: np.ndarray
    """``int64`` per bucket."""
