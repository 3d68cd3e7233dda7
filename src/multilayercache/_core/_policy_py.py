"""W-TinyLFU eviction policy with a ghost-guided adaptive window and reuse-distance ties.

The reference (pure-Python) twin of ``policy.pyx``: same class, same decisions, same arrays.
The measurements behind each choice below (ablations on the 45-row trace table, what each
constant costs and buys) are in ``docs/policy.md``.

The policy knows cache entries only as *slots* (small ints handed out by the layer), each
with a 64-bit key hash and a weight. It decides where an entry lives and which entries must
go; the layer owns keys, values and expiry.

Regions (W-TinyLFU, Einziger, Friedman & Manes, "TinyLFU: A Highly Efficient Cache Admission
Policy", ACM ToS 2017; the layout follows Caffeine):

    window     LRU        new entries land here: recency
    probation  LRU ┐ main frequency-filtered entries; a hit moves one to protected
    protected  LRU ┘      proven entries (65% of main); overflow falls back to probation

A new entry enters the window. When the window is over its size, its least recent entry
becomes a *candidate* for main. If main is full, the candidate is compared with main's
*victim* (the least recent probation entry) and one of the two is evicted. Frequencies come
from accesses: ``record_access`` runs on every lookup, hit or miss (``CountMinSketch`` with a
``Doorkeeper``, both aged after every ``10 * capacity`` counted accesses).

Frequency alone suits database pages; recency suits keys reused soon or never; and a loop
longer than the cache is best served by keeping a fixed subset of it. Sections 1-3 are what
lets one policy follow all three, 4 what it costs, 5 its known limits, 6 and 7 how it keeps
a layer's promises (read your own writes, resizing).

1. Admission: frequency first, reuse distance on a close call and for proven keys
---------------------------------------------------------------------------------
The policy keeps a *clock* that counts misses (inserts). Every entry remembers its *last
use* (the clock when it was inserted, refreshed by window and probation hits), and every
ghost (see 2.) remembers the last use of the key it stands for. When a ghost's key comes
back, ``clock - last use`` is its *reuse distance*, LIRS's inter-reference recency (Jiang &
Zhang, "LIRS", SIGMETRICS 2002); a key never seen, or forgotten, has none. A resident's
*idle time* is ``clock - last use``. The candidate meets the victim:

* a proven key (frequency above ``RECENCY_FREQUENCY``) that came back sooner than the victim
  has been idle is admitted, whatever the frequencies: the sketch ages slowly, so the
  victim's higher count may be history;
* a clearly more frequent candidate (by two or more) is admitted;
* a less frequent one is rejected;
* otherwise the estimates are within one count (a tie in substance: the candidate's count
  includes the access that brought it in), and reuse distance decides, as in LIRS: the
  candidate is admitted only if it came back sooner than the victim has been idle. In a loop
  the candidate's distance is the loop length, longer than any resident's idle time, so the
  cache keeps a fixed subset instead of replacing a resident on every miss;
* a candidate with frequency >= 6 that lost still gets in with probability 1/128 (seeded
  PRNG, as Caffeine does), so an attacker who floods one hash cannot pin the victim.

2. The window size: ghosts, filtered by frequency and recency
-------------------------------------------------------------
Evicted keys are remembered in a ``GhostTable`` with the region that evicted them. A miss on
a ghost evicted at most ``capacity / 2`` evictions ago is a *recent* ghost: that region was
too small to keep it. ARC (Megiddo & Modha, FAST 2003) moves its boundary one entry toward
the region whose ghost came back; so does this policy, with two filters on window ghosts:

* Main ghost back: the window shrinks by one entry.
* Window ghost back: the window grows by one entry, but only if its frequency is at most 2
  (a recency key, ARC's B1 hit: a more frequent key that lost admission is main's business)
  and its reuse distance is shorter than the idle time of main's victim (the entry the
  window takes from main is that victim: the trade must favour the more recent of the two).
* A recent window ghost is also *readmitted*: at its next window exit it is admitted if its
  reuse distance beats the victim's idle time, whatever the frequencies (S3-FIFO's ghost
  rule, Yang et al., SOSP 2023, tempered by LIRS's test).
* Density brake: every ``capacity / 4`` misses the policy compares hits per entry in the
  window with hits per entry in probation (the part of main a bigger window takes away); if
  the window is the less productive one, it shrinks by an eighth.

The window starts empty and the ghost rule grows it where recency pays. Unlike sampling the
hit rate (Caffeine's hill climber), the ghost rule needs no sample period, so it works at
ten entries as well as at a million, and has no plateau to get stuck on.

3. A window hit: LRU while the window is small, ARC's T1 -> T2 once it is large
-------------------------------------------------------------------------------
While the window is at most half the cache it is an admission buffer and a hit refreshes
the entry inside it (LRU, as in Caffeine). Once the ghosts have grown it past half, the
workload is recency-driven and a window hit moves the entry to probation instead, as ARC
moves a re-referenced T1 entry to T2: that frees window room for new keys.

4. What a hit costs
-------------------
A hit on a protected entry (the hot keys) only moves it to the front of its list: no clock
tick, no stamp, no counter. A hit in the window or probation, which moves the entry between
lists anyway, also stamps its last use and counts a hit for the density brake. Protected
entries keep the last use of their promotion. A miss costs a few more comparisons (the
ghost's filters, the O(1) density check every ``capacity / 4`` misses).

Main's victim's frequency is read from the sketch once per victim and sample period, not at
every admission: most candidates lose, and while they do the victim stays the same. A victim
that is hit or evicted is unlinked, which forgets the reading; other keys' increments on
counters it shares only ever raise an estimate, so a stale reading is at most a count-min
collision low.

5. Known limits
---------------
The sketch ages at one fixed pace; the proven-key rule of 1. only works around stale counts
when the candidate is frequent itself. Some constants (the density period and shrink) are
fitted on few traces. ``docs/policy.md`` lists the rows where the policy is furthest from the
best known one.

6. Read your own writes: the held newcomer
------------------------------------------
A key just written is readable from the cache until the next new key is written, even when
admission turns it away: with an empty window a new entry is the admission candidate at
once, and a frequent main would otherwise drive every new key out inside its own ``set()``.
So a newcomer that loses admission is *held*: evicted for every count (its ghost,
``evictions``, ``rejections``, its place in no list and no weight), but its slot is handed to
the layer only at the next insert (or weighted update) of another key, and a hit on it
changes nothing. The cost: one entry (its weight) beyond ``capacity`` while it is held, not
counted in ``entries``.

7. Resizing a running cache
---------------------------
``resize(capacity)`` sets a new bound and makes the cache fit it as a write would: the held
newcomer goes, then (``_balance``) window entries over the window's size compete with
main's victims for a place, and main gives way while the total is over capacity. Every
entry that goes is an eviction, with its ghost. The window keeps its share of the cache
(``window_target`` scaled by new / old capacity), and protected its 65% of main. A cache
that grows past what its frequency structures are sized for (``sized_for``: its capacity up
to ``2^20`` entries, see ``INITIAL_SIZING``) gets them rebuilt at the new size, the resident
keys keeping their counts (sketch estimate and doorkeeper bit, recounted into the new
tables); ghosts cannot be rehashed (a table keeps 30 bits of each hash) and start afresh. A
cache shrunk a little keeps its tables (exact counts, no rebuild on a grow back); one shrunk
to a quarter of its sizing or less (``RESIZE_SHRINK_FACTOR``) is rebuilt at its new size,
since the sketch ages after ``10 * sized_for`` accesses and would age too slowly. Weight-
bounded caches size their tables by entries, so a new ``max_weight`` leaves them as they are.

Weights: with ``weighted=True`` every size above is a total weight; the window moves by the
mean entry weight per step. ``capacity`` is then the maximum total weight.

Lists are intrusive doubly linked lists over two int arrays: nodes 0, 1, 2 are the sentinels
of the window, probation and protected lists, node ``3 + slot`` is the entry in ``slot``.
A sentinel's ``next`` is its list's least recent entry and its ``prev`` the most recent.
The clock and every last use are 32-bit and wrap; distances are taken modulo 2^32, so they
are exact up to 2^32 misses, far beyond any reuse distance that decides anything.
"""

import numpy as np

from ._bits_py import MASK32, MASK64
from ._doorkeeper_py import Doorkeeper
from ._ghost_py import MAIN, GhostTable
from ._ghost_py import WINDOW as WINDOW_GHOST
from ._sketch_py import CountMinSketch

WINDOW = 0
PROBATION = 1
PROTECTED = 2
NOT_CACHED = 3
HEADS = 3
HELD = 4  # the newest insert, turned away by admission, readable until the next (section 6)

# Share of main; measured on the shared traces (Caffeine uses 80). Re-measured with this
# policy: 50% -0.06 on the 45-row mean, 80% +0.04 but scarab-recs and p3 below their bounds.
PROTECTED_PERCENT = 65
WARM_FREQUENCY = 6  # candidates this frequent may win admission by chance (hash flooding)
RANDOM_ADMIT_BITS = 7  # ... with probability 1 / 2**7
# Frequencies this close are a close call (the candidate's count includes the access that
# brought it in); reuse distance decides. 0 would be a plain tie rule (loop at 250: 17.3%).
CLOSE_CALL = 1
# A returning window ghost this infrequent was seen once before: a recency key (ARC's B1).
# A candidate more frequent than this is a proven key, admitted whenever it came back sooner
# than the victim has been idle (section 1; 1 or 3 there: see its figures). As the window's
# filter, measured before that rule: 1 lets too few grow the window (45-row mean -1.7;
# corda-vault at 25: 12.7%, oltp at 1000: 35.5%); 3 lets some frequent keys grow it (mean
# -0.05; 2_pools at 100 and p3 at 131072 fall below their bounds).
RECENCY_FREQUENCY = 2
# A key with no known previous use: its reuse distance beats nobody's idle time.
UNKNOWN_REUSE = MASK32
# The density brake runs every capacity / DENSITY_PERIOD misses and shrinks the window by
# 1 / 2**DENSITY_SHRINK_SHIFT. Measured (45-row mean minus the best-of-every-policy mean):
# period capacity/2 -0.02, /4 -0.00, /8 +0.00; shrink 1/4 +0.01, 1/8 -0.00, 1/16 -0.03.
# Neither is sensitive; only /4 with 1/8 keeps orm-night at 1000 and p3 at 131072 inside
# their bounds, so that choice is fitted to within a few tenths of a point on those rows.
DENSITY_PERIOD = 4
DENSITY_SHRINK_SHIFT = 3
# Entries the frequency structures are sized for at first. Each growth starts them afresh,
# which costs hit ratio while a cache warms up (gli at 500 entries: 25.8% instead of 33.6%),
# so a size-bounded cache gets them at full size up to 2^20 entries (~19 MB); beyond that,
# and for weight-bounded caches, they grow with the number of entries.
INITIAL_SIZING = 1 << 20
WEIGHTED_INITIAL_SIZING = 1 << 10
# ``resize`` rebuilds the frequency structures of a cache shrunk to a quarter of what they
# are sized for, or less (section 7).
RESIZE_SHRINK_FACTOR = 4
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
        self._last_use: list[int] = []  # clock of the entry's last use (see 4.)
        self._reuse: list[int] = []  # reuse distance seen when the key was inserted
        self.region_weights = [0, 0, 0]
        self.entries = 0
        self.total_weight = 0
        self.clock = 0  # misses so far, modulo 2^32
        self.window_target = 0
        self.window_max = 0
        self.protected_max = 0
        self._set_window(0)
        self.window_hits = 0  # hits in the window since the last density check
        self.probation_hits = 0  # ... in probation
        self.misses_since_check = 0
        self.evictions = 0
        self.epoch = 1  # bumped whenever frequencies age or are rebuilt
        self.evicted: list[int] = []  # the slots the last on_insert / on_update evicted
        self.rejected: list[int] = []  # those of them that admission turned away
        self.held = -1  # the held newcomer's slot, or -1 (section 6)
        self.rejections = 0
        self._victim_node = -1  # main's victim whose frequency is remembered (section 4)
        self._victim_epoch = 0
        self._victim_estimate = 0

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
    def record_access(self, key_hash: int) -> bool:
        """Count one access to the key (hit or miss). Returns True when the key is
        *saturated* (in the doorkeeper, its sketch count at its maximum): until the next
        aging (``epoch``), recording it again changes nothing, so the compiled layer skips
        it for keys it knows are saturated."""
        if not self.doorkeeper.put(key_hash):
            return False  # first sighting in this sample period: the doorkeeper absorbs it
        if not self.sketch.increment(key_hash):
            return True
        if self.sketch.needs_reset():
            self.sketch.reset()
            self.doorkeeper.clear()
            self.epoch += 1
        return False

    def frequency(self, key_hash: int) -> int:
        """Estimated recent accesses of the key: sketch count, plus one if the doorkeeper
        has seen it."""
        return self.sketch.frequency(key_hash) + self.doorkeeper.might_contain(key_hash)

    # ------------------------------------------------------------------ slots
    def grow(self, slot_count: int) -> None:
        """Make room for slots ``0 .. slot_count - 1``. Each list is grown to the count by
        itself: a grow interrupted halfway (a signal handler's exception) is completed by
        the next one."""
        for column, fill in (
            (self._region, NOT_CACHED), (self._readmit, 0), (self._hash, 0), (self._weight, 0),
            (self._last_use, 0), (self._reuse, 0),
        ):  # fmt: skip
            column.extend([fill] * (slot_count - len(column)))
        for links in (self._prev, self._next):  # (nodes: the list heads first)
            links.extend([-1] * (HEADS + slot_count - len(links)))

    def on_hit(self, slot: int) -> None:
        """A lookup found the entry: update its recency and region."""
        region = self._region[slot]
        if region == PROTECTED:
            if self._prev[PROTECTED] != HEADS + slot:  # already most recent: nothing to do
                self._relink(slot, PROTECTED)
            return
        if region == HELD:
            return  # already evicted (section 6)
        self._last_use[slot] = self.clock
        if region == WINDOW:
            self.window_hits += 1
            if self.window_target <= self.capacity // 2:
                self._relink(slot, WINDOW)  # a small window is plain LRU (see 3.)
                return
            self._relink(slot, PROBATION)  # a large one hands re-used entries to main
        else:
            self.probation_hits += 1
            self._relink(slot, PROTECTED)
        self._demote_protected_overflow()

    def on_insert(self, slot: int, key_hash: int, weight: int) -> int:
        """A new entry in ``slot``; returns how many slots were evicted to make room (maybe
        ``slot`` itself): they are ``evicted``."""
        if not self.weighted:
            weight = 1
        self._ensure_sized(self.entries + 1)
        self.clock = (self.clock + 1) & MASK32
        self._learn_from_ghost(slot, key_hash)
        self._last_use[slot] = self.clock
        self._check_density()
        self._region[slot] = WINDOW
        self._hash[slot] = key_hash
        self._weight[slot] = weight
        self._push_most_recent(WINDOW, HEADS + slot)
        self.region_weights[WINDOW] += weight
        self.total_weight += weight
        self.entries += 1
        return self._balance(slot)

    def on_update(self, slot: int, weight: int) -> int:
        """The entry's value was replaced (its weight may have changed); returns how many
        slots were evicted to make room. A weighted entry moves to the most recent end of
        its region first, so that the room it needs is taken from others."""
        region = self._region[slot]
        if not self.weighted or region == HELD:
            self.evicted = []
            self.rejected = []
            return 0
        delta = weight - self._weight[slot]
        self._weight[slot] = weight
        self.region_weights[region] += delta
        self.total_weight += delta
        self._relink(slot, region)
        return self._balance(slot)

    def on_remove(self, slot: int) -> None:
        """The layer dropped the entry (delete or expiry): forget it, leave no ghost."""
        if self._region[slot] == HELD:  # evicted already: only its slot was kept
            self._region[slot] = NOT_CACHED
            self.held = -1
            return
        self._unlink(HEADS + slot)
        self._forget(slot)

    # ------------------------------------------------------------------ resizing
    def resize(self, capacity: int) -> int:
        """A new ``capacity`` (entries, or total weight), on a running cache; returns how
        many slots were evicted to fit (they are ``evicted``). See section 7."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        old = self.capacity
        self.capacity = capacity
        if not self.weighted:
            self.entry_limit = capacity
            wanted = min(capacity, INITIAL_SIZING)
            if wanted > self.sized_for or RESIZE_SHRINK_FACTOR * wanted <= self.sized_for:
                self._rebuild_frequency(wanted)
        self._set_window(self.window_target * capacity // old)
        return self._balance(-1)

    def _rebuild_frequency(self, sized_for: int) -> None:
        """Frequency structures sized for ``sized_for`` entries, carrying over what the
        resident keys had: their sketch counts and doorkeeper bits (section 7)."""
        sketch, doorkeeper = CountMinSketch(sized_for), Doorkeeper(sized_for)
        for slot, region in enumerate(self._region):
            if region >= NOT_CACHED:  # free, or the held newcomer (evicted already)
                continue
            key_hash = self._hash[slot]
            if self.doorkeeper.might_contain(key_hash):
                doorkeeper.put(key_hash)
            for _ in range(self.sketch.frequency(key_hash)):
                sketch.increment(key_hash)
        self.sized_for = sized_for
        self.sketch, self.doorkeeper = sketch, doorkeeper
        self.ghosts = GhostTable(sized_for)
        self.epoch += 1

    # ------------------------------------------------------------------ adaptation
    def _ensure_sized(self, entries: int) -> None:
        if entries <= self.sized_for or self.sized_for >= self.entry_limit:
            return
        while entries > self.sized_for and self.sized_for < self.entry_limit:
            self.sized_for = min(2 * self.sized_for, self.entry_limit)
        self.sketch = CountMinSketch(self.sized_for)
        self.doorkeeper = Doorkeeper(self.sized_for)
        self.ghosts = GhostTable(self.sized_for)
        self.epoch += 1

    def _idle_time(self, slot: int) -> int:
        """Misses since the entry's last use."""
        return (self.clock - self._last_use[slot]) & MASK32

    def _learn_from_ghost(self, slot: int, key_hash: int) -> None:
        """The key missed: if it is a ghost, note its reuse distance, and let the region that
        evicted it too early grow (section 2 of the module docstring)."""
        region, age, last_use = self.ghosts.take(key_hash)
        self._reuse[slot] = (self.clock - last_use) & MASK32 if region else UNKNOWN_REUSE
        recent = region != 0 and age < max(1, self._entry_capacity() // 2)
        self._readmit[slot] = 1 if recent and region == WINDOW_GHOST else 0
        if not recent:
            return
        if region == MAIN:
            self._set_window(self.window_target - self._step())
            return
        if self.frequency(key_hash) > RECENCY_FREQUENCY:
            return  # a frequent key that lost admission: main's business
        victim = self._main_victim()
        if victim >= 0 and self._reuse[slot] >= self._idle_time(victim):
            return  # main's victim was used more recently: not worth its slot
        self._set_window(self.window_target + self._step())

    def _check_density(self) -> None:
        """Every capacity / DENSITY_PERIOD misses: shrink a window that catches fewer hits
        per entry than probation (section 2)."""
        self.misses_since_check += 1
        if DENSITY_PERIOD * self.misses_since_check < self._entry_capacity():
            return
        window, probation = self.region_weights[WINDOW], self.region_weights[PROBATION]
        # Compared in floats, exactly as the compiled twin does in C doubles (hit counts
        # times weights may exceed 64 bits there); exact for any unweighted cache.
        if window > 0 and float(self.window_hits) * probation < float(self.probation_hits) * window:
            shrink = max(self._step(), self.window_target >> DENSITY_SHRINK_SHIFT)
            self._set_window(self.window_target - shrink)
        self.window_hits = self.probation_hits = self.misses_since_check = 0

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
    def _balance(self, written: int) -> int:
        """Make room after a write of ``written`` (a slot): the slot held since the last
        write goes, and ``written``, if admission turns it away, is held (section 6)."""
        self.evicted = evicted = []
        self.rejected = rejected = []  # (the layer reports them as rejected, not evicted)
        if self.held >= 0:
            self._region[self.held] = NOT_CACHED
            evicted.append(self.held)
            rejected.append(self.held)
            self.held = -1
        # Window overflow: each least recent window entry competes for a place in main.
        while self.region_weights[WINDOW] > self.window_max:
            candidate = self._next[WINDOW] - HEADS
            if self._make_room_in_main(candidate, evicted):
                self._relink(candidate, PROBATION)
            else:
                self.rejections += 1
                self._evict(candidate, WINDOW_GHOST, evicted)
                if candidate == written:
                    evicted.pop()  # its slot stays, readable, until the next write
                    self._region[candidate] = HELD
                    self.held = candidate
                else:
                    rejected.append(candidate)
        # Over capacity without window overflow (the window is growing): main gives way.
        while self.total_weight > self.capacity:
            victim = self._main_victim()
            if victim >= 0:
                self._evict(victim, MAIN, evicted)
            else:
                self._evict(self._next[WINDOW] - HEADS, WINDOW_GHOST, evicted)
        self._demote_protected_overflow()
        return len(evicted)

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
        """Section 1 of the module docstring."""
        sooner = self._reuse[candidate] < self._idle_time(victim)
        if self._readmit[candidate] and sooner:
            return True
        candidate_frequency = self.frequency(self._hash[candidate])
        if sooner and candidate_frequency > RECENCY_FREQUENCY:
            return True  # a proven key, due sooner than the victim: recency decides
        victim_frequency = self._victim_frequency(victim)
        if victim_frequency <= candidate_frequency <= victim_frequency + CLOSE_CALL:
            return sooner
        if candidate_frequency > victim_frequency:
            return True
        if candidate_frequency >= WARM_FREQUENCY:
            return self._next_random() >> (64 - RANDOM_ADMIT_BITS) == 0
        return False

    def _victim_frequency(self, victim: int) -> int:
        """Main's victim's frequency, read once per victim and sample period (section 4)."""
        node = HEADS + victim
        if node != self._victim_node or self._victim_epoch != self.epoch:
            self._victim_estimate = self.frequency(self._hash[victim])
            # Only a probation victim is remembered: whatever moves it (a hit, an eviction)
            # unlinks it, which forgets it; a protected one is moved in place by hits.
            self._victim_node = node if self._region[victim] == PROBATION else -1
            self._victim_epoch = self.epoch
        return self._victim_estimate

    def _evict(self, slot: int, ghost_region: int, evicted: list[int]) -> None:
        self._unlink(HEADS + slot)
        self.ghosts.remember(self._hash[slot], ghost_region, self._last_use[slot])
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
        if node == self._victim_node:
            self._victim_node = -1  # it moves: its remembered frequency goes with it
        before, after = self._prev[node], self._next[node]
        self._next[before] = after
        self._prev[after] = before
