"""Per-key access counts of an in-process layer: the one reader that insights (key spikes,
skew) and the fleet's global top-N share.

``InMemoryLayer.access_counts()`` copies out, in one short hold of the layer, what it counts
anyway: per slot the hash of the key it holds and that key's hits since it was stored, per
bucket of the table of keys that keep missing the hash of the key and its misses. Two
copies taken a while apart give every key's accesses in between (``access_deltas``), from
which ``top_accesses`` picks the most accessed, and the layer reads back only their keys
(``keys_at``, ``missed_keys_at``). ``RecentAccesses`` does the three steps for a caller
that wants keys and counts since its previous reading.

Why this reader: it counts what each key was accessed over the span, not since it was
stored (a count that outlived a restart of its key, or a key that was hot an hour ago,
does not pass for recent traffic); it ranks every held key by those accesses (not by the
sketch's 4-bit estimate, which saturates at 15 for every hot key); and it holds the
layer only for one copy of its slots (numpy; 12 bytes a slot kept per copy). A reading of
the 400 most accessed keys took 1.0 ms at 10,000 entries and 11 ms at 100,000 where the
Python pass over the entries it replaced (``hot_key_counts``, the layer held throughout)
took 10 ms and 55 ms, same machine, same traffic (``benchmarks/global_top.py
--read-cost``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SLOT = 0
"""A locator's kind: a cached entry's slot (its key read back by ``keys_at``)."""
BUCKET = 1
"""A locator's kind: a bucket of the missed keys (``missed_keys_at``)."""


def access_deltas(previous: Any, current: Any) -> tuple[np.ndarray, np.ndarray]:
    """Accesses per slot and per missed-keys bucket between two ``access_counts()``: a slot
    or bucket whose hash changed holds another key, counted from 0; so does one whose
    count went down (its key left and came back)."""
    return (
        _deltas(previous.slot_hashes, previous.slot_hits, current.slot_hashes, current.slot_hits),
        _deltas(
            previous.missed_hashes,
            previous.missed_counts,
            current.missed_hashes,
            current.missed_counts,
        ),
    )


def _deltas(
    old_hashes: np.ndarray, old_counts: np.ndarray, hashes: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    shared = min(len(old_hashes), len(hashes))
    before = np.zeros(len(hashes), dtype=np.int64)
    same = old_hashes[:shared] == hashes[:shared]
    before[:shared] = np.where(same, old_counts[:shared], 0)
    return np.where(counts >= before, counts - before, counts)


def top_accesses(
    current: Any, slot_deltas: np.ndarray, bucket_deltas: np.ndarray, n: int
) -> dict[int, tuple[int, tuple[int, int]]]:
    """The ``n`` most accessed keys, ``key_hash -> (accesses, locator)``, a key's hits and
    misses added up; ``locator`` is ``(SLOT, slot)`` or ``(BUCKET, bucket)``."""
    found: dict[int, tuple[int, tuple[int, int]]] = {}
    for kind, deltas, hashes in (
        (BUCKET, bucket_deltas, current.missed_hashes),
        (SLOT, slot_deltas, current.slot_hashes),  # last: a cached key is read back there
    ):
        for index in _largest(deltas, n):
            key_hash = int(hashes[index])
            earlier = found.get(key_hash, (0, None))[0]
            found[key_hash] = (earlier + int(deltas[index]), (kind, int(index)))
    if len(found) > n:
        found = dict(sorted(found.items(), key=lambda item: -item[1][0])[:n])
    return found


def _largest(values: np.ndarray, n: int) -> np.ndarray:
    """Indexes of the ``n`` largest positive values (any order)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if len(values) > n:
        values_at = np.argpartition(values, len(values) - n)[len(values) - n :]
    else:
        values_at = np.arange(len(values))
    return values_at[values[values_at] > 0]


def keys_of(layer: Any, top: dict[int, tuple[int, tuple[int, int]]]) -> list[tuple[Any, int]]:
    """``top`` (of ``top_accesses``) as ``(key, accesses)``, most accessed first, each key
    read back from where it was counted; a key no longer there (evicted since) is left
    out."""
    ranked = sorted(top.items(), key=lambda item: -item[1][0])
    wanted: dict[int, list[tuple[int, int]]] = {SLOT: [], BUCKET: []}
    for key_hash, (_, (kind, index)) in ranked:
        wanted[kind].append((index, key_hash))
    read = {
        SLOT: iter(layer.keys_at(wanted[SLOT]) if wanted[SLOT] else ()),
        BUCKET: iter(layer.missed_keys_at(wanted[BUCKET]) if wanted[BUCKET] else ()),
    }
    found = []
    for _, (count, (kind, _)) in ranked:
        key = next(read[kind])
        if key is not None:
            found.append((key, count))
    return found


class RecentAccesses:
    """The most accessed keys of ``layer`` (an in-process layer with ``access_counts()``)
    since the previous reading: ``read(n)``. The first reading is the baseline (nothing
    before it is counted) and returns ``[]``. Not thread-safe: one reader at a time."""

    def __init__(self, layer: Any) -> None:
        if not callable(getattr(layer, "access_counts", None)):
            raise TypeError(f"{layer!r} keeps no per-key counts (access_counts())")
        self.layer = layer
        self._previous: Any = None

    def read(self, n: int) -> list[tuple[Any, int]]:
        """``[(key, accesses), ...]``: the ``n`` keys accessed most since the previous
        reading, most first."""
        counts = self.layer.access_counts()
        previous, self._previous = self._previous, counts
        if previous is None:
            return []
        slot_deltas, bucket_deltas = access_deltas(previous, counts)
        return keys_of(self.layer, top_accesses(counts, slot_deltas, bucket_deltas, n))

    def restart(self) -> None:
        """Forget the baseline: the next reading is a new one (a forked child's counts)."""
        self._previous = None
