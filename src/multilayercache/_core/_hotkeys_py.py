"""Hot-key table: the most frequent keys of an event stream, with counts, in bounded memory.

The reference (pure-Python) twin of ``hotkeys.pyx``. ``InMemoryLayer`` feeds it its misses
(hits are counted per cached bucket instead, which is cheaper on the hit path), so that a
snapshot can show which hot keys keep missing.

Idea (the "Frequent" algorithm of Misra & Gries 1982, one counter per bucket, as in the
heavy-hitter tables of network switches): a direct-mapped table of ``bucket_count`` keys.
A key that maps to its own bucket adds to its count. A different key *wears down* the
resident's score by one, and takes the bucket over once the score is zero. A key that is a
large share of its bucket's traffic therefore stays, and one-off keys never displace it.
Memory is fixed and a record is one array probe.

``count`` starts when the key takes its bucket: exact for a key that stays, a lower bound
otherwise.

A key takes its bucket by its hash alone; the key object itself is stored at its second
event. Most keys of a long tail are seen once, and storing each of them would release the
object they replace, a key from long ago whose reference count sits on a cold cache line:
on a mixed zipf replay that one touch was 3.4% of all perf samples, the miss path's largest
single stall. ``top`` therefore lists keys seen at least twice while holding their bucket
(a key seen once is not hot).
"""

from typing import Any

import numpy as np

HOT_KEY_BUCKETS = 256
MAX_COUNT = 0xFFFFFFFF  # counters saturate like the compiled uint32 ones


class HotKeyTable:
    """Counts events per key for the most frequent keys: ``record``, ``count_of``, ``top``."""

    def __init__(self, bucket_count: int = HOT_KEY_BUCKETS) -> None:
        if bucket_count < 1 or bucket_count & (bucket_count - 1):
            raise ValueError(f"bucket_count must be a power of two, got {bucket_count!r}")
        self.bucket_mask = bucket_count - 1
        self._keys: list[Any] = [None] * bucket_count
        self._hashes = [0] * bucket_count
        self._scores = [0] * bucket_count
        self._counts = [0] * bucket_count

    @property
    def scores(self) -> np.ndarray:
        """A copy of the per-bucket scores (``uint32``)."""
        return np.array(self._scores, dtype=np.uint32)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of every bucket's ``(key_hash, count, score)`` (``uint64``, ``int64``,
        ``uint32`` arrays): what a snapshot reads, under the layer's lock."""
        return (
            np.array(self._hashes, dtype=np.uint64),
            np.array(self._counts, dtype=np.int64),
            np.array(self._scores, dtype=np.uint32),
        )

    def record(self, key_hash: int, key: Any) -> None:
        """Count one event for ``key`` (whose spread hash is ``key_hash``)."""
        bucket = key_hash & self.bucket_mask
        if self._scores[bucket] and self._hashes[bucket] == key_hash:
            second = self._counts[bucket] == 1
            self._scores[bucket] = min(self._scores[bucket] + 1, MAX_COUNT)
            self._counts[bucket] = min(self._counts[bucket] + 1, MAX_COUNT)
            if second:
                # Its second event: now worth keeping. Last, as releasing the key it
                # replaces may run Python code.
                self._keys[bucket] = key
        elif self._scores[bucket]:
            self._scores[bucket] -= 1
        else:
            self._hashes[bucket] = key_hash
            self._scores[bucket] = 1
            self._counts[bucket] = 1

    def count_of(self, key_hash: int) -> int:
        """Events counted for the key, or 0 if it is not tracked."""
        bucket = key_hash & self.bucket_mask
        if self._scores[bucket] and self._hashes[bucket] == key_hash:
            return self._counts[bucket]
        return 0

    def top(self, n: int) -> list[tuple[Any, int, int]]:
        """Up to ``n`` tracked keys seen twice or more, as ``(key, count, key_hash)``,
        highest score first."""
        occupied = [
            bucket
            for bucket, score in enumerate(self._scores)
            if score and self._counts[bucket] > 1
        ]
        occupied.sort(key=lambda bucket: -self._scores[bucket])
        return [
            (self._keys[bucket], self._counts[bucket], self._hashes[bucket])
            for bucket in occupied[:n]
        ]

    def clear(self) -> None:
        """Forget every tracked key."""
        for column in (self._scores, self._counts, self._hashes):
            column[:] = [0] * len(column)
        self._keys[:] = [None] * len(self._keys)
