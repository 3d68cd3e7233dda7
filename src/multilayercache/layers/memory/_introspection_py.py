"""What ``InMemoryLayer`` reports about itself (pure-Python twin of ``introspection.pyx``): a key's
remaining TTL and frequency, the top keys, stats, snapshots, and the structures behind it for
tests. The layer's methods of the same names call these; each holds the layer's lock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._core._policy_py import NOT_CACHED
from ...core.stats import LayerSnapshot, LayerStats
from .arguments import checked_top_n
from .introspection_shared import AccessCounts, layer_snapshot, layer_stats

if TYPE_CHECKING:
    from ._layer_py import InMemoryLayer


def remaining_ttl(layer: InMemoryLayer, key: Any) -> float | None:
    """``InMemoryLayer.remaining_ttl``: seconds the entry stays fresh, or None."""
    layer._spread_hash(key)
    now_ns = layer._now_ns()
    with layer._lock:
        slot = layer._slots.get(key, -1)
        if slot < 0 or layer._is_expired(slot, now_ns):
            return None
        return layer._entry(slot, now_ns).fresh_for


def frequency_estimate(layer: InMemoryLayer, key: Any) -> int:
    """``InMemoryLayer.get_frequency_estimate``: estimated recent accesses (0..16)."""
    key_hash = layer._spread_hash(key)
    with layer._lock:
        return layer._policy.frequency(key_hash)


def top_keys(layer: InMemoryLayer, n: int) -> list[tuple[Any, int]]:
    """``InMemoryLayer.get_top_keys``: the ``n`` hottest live keys with their estimates."""
    checked_top_n(n)
    with layer._lock:
        now_ns = layer._now_ns()
        ranked = [
            (layer._keys[slot], layer._policy.frequency(layer._policy._hash[slot]))
            for slot in cached_slots(layer)
            if not layer._is_expired(slot, now_ns)
        ]
    ranked.sort(key=lambda pair: -pair[1])
    return ranked[:n]


def stats(layer: InMemoryLayer) -> LayerStats:
    """``InMemoryLayer.stats``: the counters, read together."""
    with layer._lock:
        policy = layer._policy
        counters = (
            layer._hits,
            layer._misses,
            policy.evictions,
            layer._expirations,
            policy.rejections + layer._oversized + layer._crowded,
            policy.entries,
            policy.total_weight,
            policy.window_max,
            layer._puts,
            policy.rejections,
        )
    return layer_stats(layer, counters)


def snapshot(layer: InMemoryLayer, hot_keys: int) -> LayerSnapshot:
    """``InMemoryLayer.snapshot``: sketch table copy, hot keys' hits and misses, counters."""
    counted = stats(layer)
    with layer._lock:
        cached = [
            (layer._keys[slot], layer._policy._hash[slot], layer._slot_hits[slot])
            for slot in cached_slots(layer)
        ]
        return layer_snapshot(counted, layer._policy, cached, layer._missed, hot_keys)


def access_counts(layer: InMemoryLayer) -> AccessCounts:
    """``InMemoryLayer.access_counts``: per-slot hashes and hits, per-bucket missed keys.
    Whole lists are copied under the lock (fast), the empty slots masked out after it."""
    with layer._lock:
        slot_count = len(layer._keys)
        policy, missed = layer._policy, layer._missed
        regions = np.array(policy._region[:slot_count], dtype=np.uint8)
        slot_hashes = np.array(policy._hash[:slot_count], dtype=np.uint64)
        slot_hits = np.array(layer._slot_hits[:slot_count], dtype=np.int64)
        missed_hashes, missed_counts, missed_scores = missed.columns()
    cached = regions != NOT_CACHED
    return AccessCounts(
        np.where(cached, slot_hashes, 0).astype(np.uint64),
        np.where(cached, slot_hits, 0),
        missed_hashes,
        np.where(missed_scores > 0, missed_counts, 0),
    )


def keys_at(layer: InMemoryLayer, slots: Sequence[tuple[int, int]]) -> list[Any]:
    """``InMemoryLayer.keys_at``: the key held in each ``(slot, key_hash)``, or ``None``
    if the slot holds no key of that hash now."""
    with layer._lock:
        policy = layer._policy
        return [
            layer._keys[slot]
            if 0 <= slot < len(layer._keys)
            and policy.region_of(slot) != NOT_CACHED
            and policy._hash[slot] == key_hash
            else None
            for slot, key_hash in slots
        ]


def missed_keys_at(layer: InMemoryLayer, buckets: Sequence[tuple[int, int]]) -> list[Any]:
    """``InMemoryLayer.missed_keys_at``: the key that the missed-keys table tracks in each
    ``(bucket, key_hash)``, or ``None`` (another key, or one seen only once)."""
    with layer._lock:
        missed = layer._missed
        return [
            missed._keys[bucket]
            if 0 <= bucket <= missed.bucket_mask
            and missed._scores[bucket]
            and missed._hashes[bucket] == key_hash
            and missed._counts[bucket] > 1
            else None
            for bucket, key_hash in buckets
        ]


def internals(layer: InMemoryLayer) -> dict[str, Any]:
    """For tests: the structures behind the layer (see tests/invariants.py)."""
    return {
        "policy": layer._policy,
        "wheel": layer._wheel,
        "cached": [(slot, layer._keys[slot]) for slot in cached_slots(layer)],
        "free": list(layer._free),
        "slot_count": len(layer._keys),
        "indexed": len(layer._slots),
        "sharing": dict(layer._sharing),
        "find": lambda key: layer._slots.get(key, -1),
    }


def held_keys(layer: InMemoryLayer) -> list[Any]:
    """The keys the layer holds now (expired ones not yet reclaimed included)."""
    return [layer._keys[slot] for slot in cached_slots(layer)]


def cached_slots(layer: InMemoryLayer) -> list[int]:
    """The slots that hold an entry, in slot order."""
    return [slot for slot in range(len(layer._keys)) if layer._policy.region_of(slot) != NOT_CACHED]
