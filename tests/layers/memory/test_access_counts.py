"""``access_counts`` / ``keys_at`` / ``missed_keys_at``: what the insights sample from an
InMemoryLayer (both twins). The counts must be the layer's per-key hits and misses, and a
key must be readable back from where it was counted."""

from __future__ import annotations

import numpy as np


def counted(layer) -> dict:
    """key -> hits counted in its slot, read back through ``keys_at``."""
    counts = layer.access_counts()
    held = [(slot, int(h)) for slot, h in enumerate(counts.slot_hashes) if counts.slot_hits[slot]]
    keys = layer.keys_at(held)
    return {key: int(counts.slot_hits[slot]) for key, (slot, _) in zip(keys, held, strict=True)}


def test_hits_per_cached_key(Layer) -> None:
    layer = Layer(max_size=100)
    for key in range(10):
        layer.set(key, key)
    for key in range(10):
        for _ in range(key):
            assert layer.get(key) == key
    assert counted(layer) == {key: key for key in range(1, 10)}
    counts = layer.access_counts()
    assert counts.slot_hits.sum() == layer.stats().hits == 45
    assert counts.slot_hits.dtype == np.int64 and counts.slot_hashes.dtype == np.uint64


def test_a_removed_key_is_no_longer_counted_nor_read_back(Layer) -> None:
    layer = Layer(max_size=100)
    layer.set("gone", 1)
    layer.get("gone")
    before = layer.access_counts()
    slot = int(np.flatnonzero(before.slot_hits)[0])
    key_hash = int(before.slot_hashes[slot])
    assert layer.keys_at([(slot, key_hash)]) == ["gone"]
    layer.delete("gone")
    after = layer.access_counts()
    assert after.slot_hits.sum() == 0
    assert layer.keys_at([(slot, key_hash)]) == [None]
    layer.set("new", 2)  # may reuse the slot: another hash, so not the old key
    assert layer.keys_at([(slot, key_hash), (10**6, key_hash), (-1, key_hash)]) == [None] * 3


def test_keys_that_keep_missing(Layer) -> None:
    layer = Layer(max_size=100)
    for _ in range(7):
        assert layer.get("absent") is None
    counts = layer.access_counts()
    bucket = int(np.argmax(counts.missed_counts))
    assert counts.missed_counts[bucket] == 7
    assert counts.missed_counts.sum() == 7 == layer.stats().misses
    assert layer.missed_keys_at([(bucket, int(counts.missed_hashes[bucket]))]) == ["absent"]
    assert layer.missed_keys_at([(bucket, int(counts.missed_hashes[bucket]) ^ 1)]) == [None]
    assert layer.missed_keys_at([(10**6, 0), (-1, 0)]) == [None, None]


def test_copies_not_views(Layer) -> None:
    layer = Layer(max_size=10)
    layer.set("a", 1)
    counts = layer.access_counts()
    layer.get("a")
    assert counts.slot_hits.sum() == 0 and layer.access_counts().slot_hits.sum() == 1
