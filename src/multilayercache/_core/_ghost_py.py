"""Ghost table: which keys were evicted recently, from which region, how long ago, and when
were they last used?

The reference (pure-Python) twin of ``ghost.pyx``.

Idea (the ghost lists of ARC, Megiddo & Modha 2003, and of S3-FIFO, Yang et al. 2023): a
cache that remembers the hashes of the keys it just evicted learns from its own mistakes.
When a missed key turns out to be a ghost, the cache knows it would have hit had the region
that evicted it been larger. The policy uses that to move the window/main boundary
toward the region that lost the key, and to give a returning window reject a second chance
at admission.

Only recent mistakes count: a ghost's *age* is the number of evictions from the same region
since it was evicted, and the policy ignores ghosts older than half the capacity.

A ghost also keeps the key's *last use*: the policy's clock (a count of misses) when the key
was last accessed before it was evicted. When the key comes back, ``now - last use`` is its
reuse distance (LIRS's inter-reference recency), which the policy compares with how long its
residents have gone unused.

Layout: a direct-mapped table with one bucket per cached entry (rounded up to a power of two).
A bucket holds a 32-bit tag (30 bits of the hash, 2 bits for the region), the region's
eviction count at the time of eviction and the last use (32 bits each, wrapping; ages and
reuse distances that matter are far below 2^31). A newer ghost simply overwrites an older
one in its bucket: forgetting a ghost only costs a hint.
"""

import numpy as np

from ._bits_py import MASK32, next_power_of_two

WINDOW = 1
MAIN = 2
_REGION_BITS = 3
_BUCKET_SHIFT = 20  # bucket index from hash bits 20.., tag from bits 32..: nearly independent


class GhostTable:
    """Recently evicted key hashes: ``remember`` on eviction, ``take`` on a miss."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        bucket_count = max(8, next_power_of_two(capacity))
        self._tags = [0] * bucket_count
        self._stamps = [0] * bucket_count
        self._last_uses = [0] * bucket_count
        self.bucket_mask = bucket_count - 1
        self.evictions = [0, 0, 0]  # per region, indexed by WINDOW / MAIN; wraps at 2^32

    @property
    def tags(self) -> np.ndarray:
        """A copy of the tag column (``uint32``; 0 = empty bucket)."""
        return np.array(self._tags, dtype=np.uint32)

    @property
    def stamps(self) -> np.ndarray:
        """A copy of the stamp column (``uint32`` eviction counts)."""
        return np.array(self._stamps, dtype=np.uint32)

    @property
    def last_uses(self) -> np.ndarray:
        """A copy of the last-use column (``uint32`` policy clock values)."""
        return np.array(self._last_uses, dtype=np.uint32)

    def remember(self, key_hash: int, region: int, last_use: int = 0) -> None:
        """Record that the key was just evicted from ``region`` (WINDOW or MAIN), having
        been used last at clock ``last_use``."""
        count = (self.evictions[region] + 1) & MASK32
        self.evictions[region] = count
        bucket = (key_hash >> _BUCKET_SHIFT) & self.bucket_mask
        self._tags[bucket] = ((key_hash >> 32) & ~_REGION_BITS & MASK32) | region
        self._stamps[bucket] = count
        self._last_uses[bucket] = last_use & MASK32

    def take(self, key_hash: int) -> tuple[int, int, int]:
        """``(region, age, last use)`` if the key is a ghost, else ``(0, 0, 0)``; the ghost
        is consumed."""
        bucket = (key_hash >> _BUCKET_SHIFT) & self.bucket_mask
        tag = self._tags[bucket]
        if tag == 0 or (tag & ~_REGION_BITS) != ((key_hash >> 32) & ~_REGION_BITS & MASK32):
            return 0, 0, 0
        region = tag & _REGION_BITS
        self._tags[bucket] = 0
        age = (self.evictions[region] - self._stamps[bucket]) & MASK32
        return region, age, self._last_uses[bucket]
