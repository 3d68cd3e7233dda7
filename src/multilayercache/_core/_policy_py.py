"""W-TinyLFU eviction policy with a ghost-guided adaptive window.

The reference (pure-Python) twin of ``policy.pyx``: same class, same decisions, same arrays.

The policy knows cache entries only as *slots* (small ints handed out by the layer), each
with a 64-bit key hash and a weight. It decides where an entry lives and which entries must
go; the layer owns keys, values and expiry.

Regions (W-TinyLFU, Einziger, Friedman & Manes, "TinyLFU: A Highly Efficient Cache Admission
Policy", ACM ToS 2017; the layout follows Caffeine):

    window     LRU        new entries land here: recency
    probation  LRU ┐ main frequency-filtered entries; a hit moves one to protected
    protected  LRU ┘      proven entries (65% of main); overflow falls back to probation

* A new entry enters the window. When the window is over its size, its least recent entry
  becomes a *candidate* for main. If main is full, the candidate is compared with main's
  *victim* (the least recent probation entry) by estimated frequency (``CountMinSketch`` +
  ``Doorkeeper``): the more frequent one stays, ties keep the victim. A losing candidate
  with frequency >= 6 still gets in with probability 1/128 (seeded PRNG), so an attacker
  who floods one hash cannot pin the victim forever.
* A hit in the window moves the entry to probation, as ARC moves a re-referenced entry from
  T1 to T2. Leaving the window on a hit frees window room for new keys; with a large window
  this evicts the already-re-used entries first, which is what recency traces such as
  corda-vault reward (19.8% vs LRU's 7.5% at 25 entries).
* Frequencies come from accesses: ``record_access`` runs on every lookup, hit or miss.

Adaptive window (our variant, in place of Caffeine's hill climber): evicted keys are
remembered in a ``GhostTable`` together with the region that evicted them. When a miss finds
its key among the ghosts evicted at most ``capacity / 2`` evictions ago, one region was
too small to keep it: a window ghost moves the boundary one entry toward the window, a main
ghost one entry toward main (the ARC rule, with unit steps). A window ghost is also admitted
straight into main at its next window exit (the S3-FIFO ghost rule), since it has proven it
comes back. Unlike sampling the hit rate, this needs no sample period, so it works at ten
entries as well as at a million, and it has no plateau to get stuck on. The window starts
empty: frequency-friendly traces then never pay to learn that.

Weights: with ``weighted=True`` every size above is a total weight; the window moves by the
mean entry weight per step. ``capacity`` is then the maximum total weight.

Lists are intrusive doubly linked lists over two int arrays: nodes 0, 1, 2 are the sentinels
of the window, probation and protected lists, node ``3 + slot`` is the entry in ``slot``.
A sentinel's ``next`` is its list's least recent entry and its ``prev`` the most recent.
"""

import numpy as np

from ._bits_py import MASK64
from ._doorkeeper_py import Doorkeeper
from ._ghost_py import MAIN, GhostTable
from ._ghost_py import WINDOW as WINDOW_GHOST
from ._sketch_py import CountMinSketch

WINDOW = 0
PROBATION = 1
PROTECTED = 2
NOT_CACHED = 3
HEADS = 3

PROTECTED_PERCENT = 65  # share of main; measured on the shared traces (Caffeine uses 80)
WARM_FREQUENCY = 6  # candidates this frequent may win admission by chance (hash flooding)
RANDOM_ADMIT_BITS = 7  # ... with probability 1 / 2**7
# Entries the frequency structures are sized for at first. Each growth starts them afresh,
# which costs hit ratio while a cache warms up (gli at 500 entries: 25.8% instead of 33.6%),
# so a size-bounded cache gets them at full size up to 2^20 entries (~19 MB); beyond that,
# and for weight-bounded caches, they grow with the number of entries.
INITIAL_SIZING = 1 << 20
WEIGHTED_INITIAL_SIZING = 1 << 10
DEFAULT_SEED = 0x2545F4914F6CDD1D
MAX_ENTRIES = (1 << 31) - 1  # slots are int32


class WTinyLfuPolicy:
    """Decides admission and eviction for up to ``capacity`` entries (or total weight)."""

    def __init__(self, capacity: int, weighted: bool = False, seed: int = DEFAULT_SEED) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        if seed == 0:
            raise ValueError("seed must be non-zero (xorshift has a fixed point at 0)")
        self.capacity = capacity
        self.weighted = weighted
        self.entry_limit = MAX_ENTRIES if weighted else capacity
        self.sized_for = min(
            self.entry_limit, WEIGHTED_INITIAL_SIZING if weighted else INITIAL_SIZING
        )
        self.sketch = CountMinSketch(self.sized_for)
        self.doorkeeper = Doorkeeper(self.sized_for)
        self.ghosts = GhostTable(self.sized_for)
        self.random_state = seed & MASK64
        self._prev = [WINDOW, PROBATION, PROTECTED]
        self._next = [WINDOW, PROBATION, PROTECTED]
        self._region: list[int] = []
        self._readmit: list[int] = []
        self._hash: list[int] = []
        self._weight: list[int] = []
        self.region_weights = [0, 0, 0]
        self.entries = 0
        self.total_weight = 0
        self.window_target = 0
        self.window_max = 0
        self.protected_max = 0
        self._set_window(0)
        self.evictions = 0
        self.rejections = 0

    # ------------------------------------------------------------------ introspection
    @property
    def regions(self) -> np.ndarray:
        """A copy of the per-slot region codes (0 window, 1 probation, 2 protected, 3 free)."""
        return np.array(self._region, dtype=np.uint8)

    @property
    def links(self) -> np.ndarray:
        """A copy of the (prev, next) link arrays, shape (2, 3 + slots)."""
        return np.array([self._prev, self._next], dtype=np.int32)

    def region_of(self, slot: int) -> int:
        """The slot's region code."""
        return self._region[slot]

    def order(self, region: int) -> list[int]:
        """Slots of one region, least recent first (for tests and snapshots)."""
        slots = []
        node = self._next[region]
        while node != region:
            slots.append(node - HEADS)
            node = self._next[node]
        return slots

    # ------------------------------------------------------------------ frequency
    def record_access(self, key_hash: int) -> None:
        """Count one access to the key (hit or miss)."""
        if not self.doorkeeper.put(key_hash):
            return  # first sighting in this sample period: the doorkeeper absorbs it
        if self.sketch.increment(key_hash) and self.sketch.needs_reset():
            self.sketch.reset()
            self.doorkeeper.clear()

    def frequency(self, key_hash: int) -> int:
        """Estimated recent accesses of the key: sketch count, plus one if the doorkeeper
        has seen it."""
        return self.sketch.frequency(key_hash) + self.doorkeeper.might_contain(key_hash)

    def has_seen(self, key_hash: int) -> bool:
        """Whether the key was accessed before in this sample period (doorkeeper)."""
        return self.doorkeeper.might_contain(key_hash)

    # ------------------------------------------------------------------ slots
    def grow(self, slot_count: int) -> None:
        """Make room for slots ``0 .. slot_count - 1``."""
        missing = slot_count - len(self._region)
        if missing > 0:
            self._region.extend([NOT_CACHED] * missing)
            self._readmit.extend([0] * missing)
            self._hash.extend([0] * missing)
            self._weight.extend([0] * missing)
            self._prev.extend([-1] * missing)
            self._next.extend([-1] * missing)

    def on_hit(self, slot: int) -> None:
        """A lookup found the entry: update its recency and region."""
        region = self._region[slot]
        if region == PROTECTED:
            if self._prev[PROTECTED] != HEADS + slot:  # already most recent: nothing to do
                self._relink(slot, PROTECTED)
            return
        # window -> probation (like ARC's T1 -> T2), probation -> protected
        self._relink(slot, PROBATION if region == WINDOW else PROTECTED)
        self._demote_protected_overflow()

    def on_insert(self, slot: int, key_hash: int, weight: int) -> list[int]:
        """A new entry in ``slot``; returns the slots evicted to make room (maybe ``slot``)."""
        if not self.weighted:
            weight = 1
        self._ensure_sized(self.entries + 1)
        self._learn_from_ghost(slot, key_hash)
        self._region[slot] = WINDOW
        self._hash[slot] = key_hash
        self._weight[slot] = weight
        self._push_most_recent(WINDOW, HEADS + slot)
        self.region_weights[WINDOW] += weight
        self.total_weight += weight
        self.entries += 1
        return self._balance()

    def on_update(self, slot: int, weight: int) -> list[int]:
        """The entry's weight changed; returns the slots evicted to make room."""
        if not self.weighted:
            return self._balance()
        delta = weight - self._weight[slot]
        self._weight[slot] = weight
        self.region_weights[self._region[slot]] += delta
        self.total_weight += delta
        return self._balance()

    def on_remove(self, slot: int) -> None:
        """The layer dropped the entry (delete or expiry): forget it, leave no ghost."""
        self._unlink(HEADS + slot)
        self._forget(slot)

    # ------------------------------------------------------------------ adaptation
    def _ensure_sized(self, entries: int) -> None:
        if entries <= self.sized_for or self.sized_for >= self.entry_limit:
            return
        while entries > self.sized_for and self.sized_for < self.entry_limit:
            self.sized_for = min(2 * self.sized_for, self.entry_limit)
        self.sketch = CountMinSketch(self.sized_for)
        self.doorkeeper = Doorkeeper(self.sized_for)
        self.ghosts = GhostTable(self.sized_for)

    def _learn_from_ghost(self, slot: int, key_hash: int) -> None:
        region, age = self.ghosts.take(key_hash)
        recent = region != 0 and age < max(1, self._entry_capacity() // 2)
        self._readmit[slot] = 1 if recent and region == WINDOW_GHOST else 0
        if not recent:
            return
        step = self._step()
        if region == WINDOW_GHOST:
            self._set_window(self.window_target + step)
        else:
            self._set_window(self.window_target - step)

    def _entry_capacity(self) -> int:
        return self.sized_for if self.weighted else self.capacity

    def _step(self) -> int:
        if not self.weighted:
            return 1
        return max(1, self.total_weight // max(1, self.entries))

    def _set_window(self, target: int) -> None:
        self.window_target = max(0, min(self.capacity, target))
        self.window_max = self.window_target
        self.protected_max = (self.capacity - self.window_max) * PROTECTED_PERCENT // 100

    # ------------------------------------------------------------------ eviction
    def _balance(self) -> list[int]:
        evicted: list[int] = []
        # Window overflow: each least recent window entry competes for a place in main.
        while self.region_weights[WINDOW] > self.window_max:
            candidate = self._next[WINDOW] - HEADS
            if self._make_room_in_main(candidate, evicted):
                self._relink(candidate, PROBATION)
            else:
                self.rejections += 1
                self._evict(candidate, WINDOW_GHOST, evicted)
        # Over capacity without window overflow (the window is growing): main gives way.
        while self.total_weight > self.capacity:
            victim = self._main_victim()
            if victim >= 0:
                self._evict(victim, MAIN, evicted)
            else:
                self._evict(self._next[WINDOW] - HEADS, WINDOW_GHOST, evicted)
        self._demote_protected_overflow()
        return evicted

    def _make_room_in_main(self, candidate: int, evicted: list[int]) -> bool:
        """Evict main victims that the window's candidate beats until it fits; False if it
        loses to one (or main is empty)."""
        while self.total_weight > self.capacity:
            victim = self._main_victim()
            if victim < 0 or not self._prefer_candidate(candidate, victim):
                return False
            self._evict(victim, MAIN, evicted)
        return True

    def _main_victim(self) -> int:
        """Main's least recent entry (probation first), or -1 if main is empty."""
        for region in (PROBATION, PROTECTED):
            node = self._next[region]
            if node != region:
                return node - HEADS
        return -1

    def _prefer_candidate(self, candidate: int, victim: int) -> bool:
        if self._readmit[candidate]:
            return True
        candidate_frequency = self.frequency(self._hash[candidate])
        if candidate_frequency > self.frequency(self._hash[victim]):
            return True
        if candidate_frequency >= WARM_FREQUENCY:
            return self._next_random() >> (64 - RANDOM_ADMIT_BITS) == 0
        return False

    def _evict(self, slot: int, ghost_region: int, evicted: list[int]) -> None:
        self._unlink(HEADS + slot)
        self.ghosts.remember(self._hash[slot], ghost_region)
        self._forget(slot)
        self.evictions += 1
        evicted.append(slot)

    def _forget(self, slot: int) -> None:
        weight = self._weight[slot]
        self.region_weights[self._region[slot]] -= weight
        self.total_weight -= weight
        self.entries -= 1
        self._region[slot] = NOT_CACHED
        self._readmit[slot] = 0
        self._weight[slot] = 0

    def _demote_protected_overflow(self) -> None:
        while self.region_weights[PROTECTED] > self.protected_max:
            self._relink(self._next[PROTECTED] - HEADS, PROBATION)

    def _relink(self, slot: int, region: int) -> None:
        """Move the entry to the most recent end of ``region`` (maybe its own)."""
        node = HEADS + slot
        self._unlink(node)
        weight = self._weight[slot]
        self.region_weights[self._region[slot]] -= weight
        self.region_weights[region] += weight
        self._region[slot] = region
        self._push_most_recent(region, node)

    def _next_random(self) -> int:
        # xorshift64* (Vigna 2016): deterministic, so runs are reproducible.
        x = self.random_state
        x ^= x >> 12
        x ^= (x << 25) & MASK64
        x ^= x >> 27
        self.random_state = x
        return (x * 0x2545F4914F6CDD1D) & MASK64

    # ------------------------------------------------------------------ lists
    def _push_most_recent(self, head: int, node: int) -> None:
        last = self._prev[head]
        self._prev[node] = last
        self._next[node] = head
        self._next[last] = node
        self._prev[head] = node

    def _unlink(self, node: int) -> None:
        before, after = self._prev[node], self._next[node]
        self._next[before] = after
        self._prev[after] = before
