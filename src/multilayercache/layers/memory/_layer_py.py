"""``InMemoryLayer``: the in-process L1 cache (pure-Python twin of ``layer.pyx``).

The compiled twin is what ``multilayercache.InMemoryLayer`` normally is; this one is the
readable reference, the fallback where the extension is not built, and the test oracle.
Both make the same decisions for the same calls.

How the pieces fit:

* ``_slots`` maps each key to a *slot*, a small int; per-slot lists hold keys and values.
  Freed slots are reused (last freed, first reused).
* ``WTinyLfuPolicy`` decides which slots stay (admission, eviction, adaptive window).
* ``TimerWheel`` holds per-slot deadlines and finds expired slots without a scan.
* ``_slot_hits`` counts hits per cached entry, and a ``HotKeyTable`` counts the misses of
  the keys that miss most; ``snapshot()`` ranks both by estimated frequency.
* Freshness (``multilayercache.core.freshness``): the wheel holds when an entry is *gone*;
  an entry written with a stale window or a refresh point also has the deadlines of
  ``FreshnessDeadlines``. ``get`` serves fresh values only; ``get_entry`` reports any
  held value with its freshness (the manager's stale-while-revalidate and fail-safe use
  it); ``lookup`` is the manager's fast path: fresh and no refresh due, else it steps
  aside without counting, and the manager asks ``get_entry``.

* Read your own writes: a new key that admission turns away stays readable until the next
  new key is written (the policy's *held* slot: in no list, its slot released at that
  write; ``_policy_py.py``, section 6).
* ``add``, ``touch`` and ``incr`` read and write a key under the lock, in one step: atomic
  between threads (the managers let the shared layer decide them when there is one).
* ``copy=``: values are copied on the way in (before the lock) and on the way out (after
  it), so no caller can mutate what is cached.
* ``estimate_sizes=``: each counted read and each write of a *sampled* key (its spread
  hash below ``_sample_below``, 0 when off: one compare) is buffered, and the buffer is
  replayed into shadow layers of other sizes (``analytics/mrc.py``) by the access that
  fills it, after the lock; ``size_estimates()`` reads them.
* Hash flooding (``flooding.py``): at most ``MAX_KEYS_PER_HASH`` held keys share one hash
  (``_sharing`` counts them); a new key beyond that is not stored, and a lookup that misses
  on such a hash is not counted as an access.

Concurrency: every public method holds one re-entrant lock, so the layer is safe to share
between threads (also on free-threaded builds). The compiled twin relies on the GIL instead.

Forks: a thread of the parent may hold the lock halfway through an update, leaving lists
that disagree. So ``fork()`` first takes the lock (``_hold_for_fork``), and the child gets
a consistent copy and lets go of it. A holder that does not let go in time is stuck in
user code (a key's ``__eq__``, an injected clock, a value's finalizer): the child then
cannot trust the structures and starts this layer empty, with a lock of its own.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import numpy as np

from ..._core._bits_py import spread
from ..._core._hotkeys_py import HotKeyTable
from ..._core._policy_py import NOT_CACHED, WTinyLfuPolicy
from ..._core._timerwheel_py import NO_DEADLINE, TimerWheel
from ..._forking import register_after_fork
from ...core.events import EventStats
from ...core.freshness import Entry, Freshness, Lifetime
from ...core.stats import LayerSnapshot, LayerStats
from ...core.ttl import TTL, ttl_seconds
from ._freshness_py import FreshnessDeadlines
from ._introspection_py import (
    access_counts,
    cached_slots,
    frequency_estimate,
    held_keys,
    internals,
    keys_at,
    missed_keys_at,
    remaining_ttl,
    snapshot,
    stats,
    top_keys,
)
from .arguments import (
    checked_clock,
    checked_delta,
    checked_weight,
    counted,
    default_ttl_seconds,
    layer_bounds,
    resized_bound,
    unhashable_key,
    value_copier,
)
from .batch import hits_among, set_each
from .deadlines import deadline_after, seconds_left, seconds_to_ns
from .estimates import (
    SAMPLE_BATCH,
    WRITE,
    checked_estimator,
    restarted_estimator,
    sampled_event,
    size_estimator,
)
from .flooding import MAX_KEYS_PER_HASH, warn_crowded
from .introspection_shared import AccessCounts, layer_repr
from .removals import (
    BATCH,
    DEFAULT_REMOVAL_BUFFER,
    RemovalDelivery,
    checked_buffer_size,
    checked_listener,
)
from .sweep import SWEEP_STEP, PendingDrop

# Removal causes, as codes (indexes into ``core.events.REMOVAL_CAUSES``; removals.pxd)
EVICTED, EXPIRED, REPLACED, INVALIDATED, REJECTED = range(5)

# A cached entry's hit count saturates here (the compiled twin keeps it in 31 bits).
MAX_SLOT_HITS = (1 << 31) - 1

log = logging.getLogger("multilayercache")


class InMemoryLayer:
    """An in-process cache: W-TinyLFU admission, per-entry TTL, bounded by size or weight.

    >>> l1 = InMemoryLayer(max_size=10_000, ttl=60)
    >>> l1.set("user:1", {"name": "Ada"})
    >>> l1.get("user:1")
    {'name': 'Ada'}
    """

    in_process = True
    """Never waits on IO: a manager calls it directly, outside its plans."""

    def __init__(
        self,
        max_size: int | None = None,
        *,
        max_weight: int | None = None,
        weigher: Callable[[Any, Any], int] | None = None,
        ttl: TTL | None = None,
        clock: Callable[[], float] | None = None,
        name: str = "memory",
        copy: bool | Callable[[Any], Any] = False,
        estimate_sizes: Iterable[float] | None = None,
        estimate_sample_rate: float | None = None,
        removal_listener: Callable[[Any, Any, str], Any] | None = None,
        removal_buffer: int = DEFAULT_REMOVAL_BUFFER,
    ) -> None:
        capacity, weighted = layer_bounds(max_size, max_weight, weigher)
        self._removal_capacity = checked_buffer_size(removal_buffer)
        if removal_listener is not None:
            checked_listener(removal_listener)
        self._copy = value_copier(copy)
        self.name = name
        self.max_size = None if weighted else capacity
        self.max_weight = capacity if weighted else None
        self.default_ttl = default_ttl_seconds(ttl)
        self._weigher = weigher
        self._clock = checked_clock(clock)
        self._start_empty()
        self._lock = threading.RLock()
        self._held_for_fork = False
        self._hits = self._misses = self._expirations = 0
        self._oversized = 0
        self._crowded = 0  # new keys turned away: their hash was crowded (flooding.py)
        self._puts = 0  # values written (kept or not): ``LayerStats.puts``
        self.size_estimator = size_estimator(
            self, capacity, weighted, estimate_sizes, estimate_sample_rate
        )
        """The shadows behind ``size_estimates()`` (``analytics/mrc.py``), or None."""
        self._sample_below = 0 if self.size_estimator is None else self.size_estimator.threshold
        self._samples: list[int] = []
        # Removals waiting for delivery, (key, value, cause code), or None: no listener, and
        # the removal paths record nothing (removals.py).
        self._removal_log: list[tuple[Any, Any, int]] | None = None
        self._removals_dropped = 0
        self._delivery: RemovalDelivery | None = None
        register_after_fork(self)
        if removal_listener is not None:
            self.add_removal_listener(removal_listener)

    def _start_empty(self) -> None:
        """The structures of an empty layer, frequency history included."""
        weighted = self.max_weight is not None
        bound = self.max_weight if weighted else self.max_size
        # One of the two is set (layer_bounds): mypy cannot tie which to ``weighted``.
        self._policy = WTinyLfuPolicy(cast(int, bound), weighted)
        self._wheel = TimerWheel(self._now_ns())
        self._fresh = FreshnessDeadlines()
        self._missed = HotKeyTable()
        self._slots: dict[Any, int] = {}
        self._sharing: dict[int, int] = {}  # spread hash -> keys held with it
        self._keys: list[Any] = []
        self._values: list[Any] = []
        self._slot_hits: list[int] = []
        self._free: list[int] = []
        self._pending: PendingDrop | None = None  # invalidations not yet swept (drop_later)
        self._sweep_at = 0  # the next slot the sweep looks at

    # ------------------------------------------------------------------ reads
    def get(self, key: Any, default: Any = None) -> Any:
        """The cached value while it is fresh, or ``default`` (a miss, or an entry that is
        gone or stale)."""
        return self._read(key, default, Freshness.DUE, None)

    def lookup(self, key: Any, missing: Any, aside: Any) -> Any:
        """The managers' fast path: the value while it is fresh and no refresh is due,
        ``missing`` on a miss (counted), or ``aside`` when the key is held but due or stale
        (nothing counted: the manager then asks ``get_entry``)."""
        return self._read(key, missing, Freshness.FRESH, aside)

    def get_entry(self, key: Any) -> Entry | None:
        """The held value with its freshness (stale ones too), or ``None``; counted as a
        hit or a miss."""
        key_hash = self._spread_hash(key)
        self._settle(key)
        with self._lock:
            slot = self._live_slot(key)
            self._record_access(key_hash, slot)
            if slot < 0:
                self._count_miss(key_hash, key)
                entry = None
            else:
                self._count_hit(slot)
                entry = self._entry(slot, self._now_ns())
        if key_hash < self._sample_below:
            self._sample(sampled_event(key_hash, False))
        if entry is None:
            return None
        if self._copy is not None:
            entry = entry._replace(value=self._copy(entry.value))
        return entry

    def get_entries(self, keys: Iterable[Any]) -> dict[Any, Entry]:
        """``get_entry`` of every key, the ones held only."""
        found = {}
        for key in keys:
            entry = self.get_entry(key)
            if entry is not None:
                found[key] = entry
        return found

    def _read(self, key: Any, default: Any, accept: Freshness, aside: Any) -> Any:
        # ``aside`` is None for ``get``: a stale entry then reads as a miss.
        key_hash = self._spread_hash(key)
        if self._pending is not None:
            self._settle(key)
        with self._lock:
            slot = held = self._live_slot(key)
            if slot >= 0 and self._fresh.count and self._freshness(slot) > accept:
                if aside is not None:
                    return aside
                slot = -1  # stale: ``get`` no longer serves it
            self._record_access(key_hash, held)
            if slot < 0:
                self._count_miss(key_hash, key)
                value = default
            else:
                self._count_hit(slot)
                value = self._values[slot]
        if key_hash < self._sample_below:
            self._sample(sampled_event(key_hash, False))
        if slot < 0:
            return default
        return value if self._copy is None else self._copy(value)

    def _record_access(self, key_hash: int, slot: int) -> None:
        """Count a lookup of the key (held in ``slot``, or -1), hit or miss; but not one of a
        key that cannot get in (its hash is crowded): it would only be credited to the keys
        that hold the hash (``flooding.py``)."""
        if slot >= 0 or self._sharing.get(key_hash, 0) < MAX_KEYS_PER_HASH:
            self._policy.record_access(key_hash)

    def _live_slot(self, key: Any) -> int:
        """The key's slot, or -1; an entry found gone is removed first."""
        slot = self._slots.get(key, -1)
        if slot >= 0 and self._is_expired(slot):
            self._remove(slot, EXPIRED)
            return -1
        return slot

    def _freshness(self, slot: int, now_ns: int | None = None) -> Freshness:
        now_ns = self._now_ns() if now_ns is None else now_ns
        fresh_until = self._fresh.fresh_until(slot)
        if fresh_until != NO_DEADLINE and fresh_until <= now_ns:
            return Freshness.STALE
        refresh_at = self._fresh.refresh_at(slot)
        if refresh_at != NO_DEADLINE and refresh_at <= now_ns:
            return Freshness.DUE
        return Freshness.FRESH

    def _entry(self, slot: int, now_ns: int) -> Entry:
        gone = self._wheel.deadline(slot)
        fresh_until = self._fresh.fresh_until(slot)
        return Entry(
            self._values[slot],
            fresh_for=seconds_left(gone if fresh_until == NO_DEADLINE else fresh_until, now_ns),
            gone_in=seconds_left(gone, now_ns),
            refresh_in=seconds_left(self._fresh.refresh_at(slot), now_ns),
        )

    def _count_hit(self, slot: int) -> None:
        self._hits += 1
        self._slot_hits[slot] = min(self._slot_hits[slot] + 1, MAX_SLOT_HITS)
        self._policy.on_hit(slot)

    def _count_miss(self, key_hash: int, key: Any) -> None:
        self._misses += 1
        self._missed.record(key_hash, key)

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The cached values among ``keys`` (hits only), each lookup counted as a ``get``."""
        return hits_among(self.get, keys)

    def __contains__(self, key: Any) -> bool:
        """Whether a live entry exists (does not count as an access)."""
        self._spread_hash(key)
        self._settle(key)
        with self._lock:
            slot = self._slots.get(key, -1)
            return slot >= 0 and not self._is_expired(slot)

    def __len__(self) -> int:
        """Live entries (expired ones are reclaimed first)."""
        with self._lock:
            self._finish_drops()
            self._reclaim_expired()
            return self._policy.entries

    # ------------------------------------------------------------------ writes
    def set(self, key: Any, value: Any, ttl: TTL | None = None) -> None:
        """Store ``value`` (``ttl``: seconds or timedelta, ``None`` = the layer default,
        ``math.inf`` = never expires). The policy may decline to keep a new entry."""
        seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        self._store(key, value, seconds, 0.0, seconds)

    def set_entry(
        self, key: Any, value: Any, lifetime: Lifetime, load_seconds: float = 0.0
    ) -> None:
        """Store ``value`` for ``lifetime``: fresh for ``ttl`` seconds, then stale (served
        only by the managers' stale-while-revalidate and fail-safe) for ``stale_ttl``
        more; a refresh is due after ``refresh_after``."""
        self._store(key, value, *self._lifetime_seconds(lifetime))

    def set_many_entries(
        self, mapping: Mapping[Any, Any], lifetime: Lifetime, load_seconds: float = 0.0
    ) -> None:
        """``set_entry`` every item (the keys and the lifetime are checked first, the
        lifetime once: a promotion of a batch)."""
        for key in mapping:
            self._spread_hash(key)
        seconds = self._lifetime_seconds(lifetime)
        for key, value in mapping.items():
            self._store(key, value, *seconds)

    def _store(
        self,
        key: Any,
        value: Any,
        ttl: float,
        stale: float,
        refresh: float,
        only_if_absent: bool = False,
    ) -> bool:
        """Store the value for its lifetime; with ``only_if_absent``, only if the key holds
        no fresh value. True if it was stored."""
        key_hash = self._spread_hash(key)
        if self._copy is not None:
            value = self._copy(value)
        weight = self._weight_of(key, value)
        now_ns = self._now_ns()
        deadlines = self._deadlines(now_ns, ttl, stale, refresh)
        pending = self._settle(key)
        with self._lock:
            self._reclaim_expired(now_ns)
            if only_if_absent and self._holds_fresh(self._slots.get(key, -1), now_ns):
                return False
            crowded = self._store_locked(key, value, key_hash, weight, now_ns, *deadlines)
        if pending is not None:
            pending.rescue(key)  # written after the invalidations: they do not apply to it
        if key_hash < self._sample_below:
            self._sample(sampled_event(key_hash, True))
        if crowded:
            warn_crowded(self.name, key, self._crowded)
        return True

    def _weight_of(self, key: Any, value: Any) -> int:
        if self._weigher is None:
            return 1
        return checked_weight(self._weigher(key, value), key)

    @staticmethod
    def _deadlines(now_ns: int, ttl: float, stale: float, refresh: float) -> tuple[int, int, int]:
        """When an entry written at ``now_ns`` is gone, stops being fresh (``NO_DEADLINE``:
        when it is gone) and is due for a refresh."""
        deadline = deadline_after(now_ns, ttl + stale)
        fresh_until = deadline_after(now_ns, ttl) if stale else NO_DEADLINE
        refresh_at = deadline_after(now_ns, refresh) if refresh < ttl else NO_DEADLINE
        return deadline, fresh_until, refresh_at

    def _holds_fresh(self, slot: int, now_ns: int) -> bool:
        """Whether ``slot`` (maybe -1) holds a value ``get`` would return (due ones too)."""
        if slot < 0 or self._is_expired(slot, now_ns):
            return False
        return not self._fresh.count or self._freshness(slot, now_ns) is not Freshness.STALE

    def _store_locked(
        self,
        key: Any,
        value: Any,
        key_hash: int,
        weight: int,
        now_ns: int,
        deadline: int,
        fresh_until: int,
        refresh_at: int,
    ) -> bool:
        """Store the value; True if the key was turned away because its hash is crowded."""
        self._puts += 1
        slot = self._slots.get(key, -1)
        if deadline <= now_ns or weight > self._policy.capacity:
            # Already expired, or can never fit: the old value must not survive the write.
            if slot >= 0:
                self._remove(slot, REPLACED)
            if weight > self._policy.capacity:
                self._oversized += 1  # a rejection: the value is turned away
                if self._removal_log is not None:
                    self._record_removal(key, value, REJECTED)
            return False
        if slot >= 0:
            if self._removal_log is not None:
                self._record_removal(key, self._values[slot], REPLACED)
            self._values[slot] = value
            self._wheel.schedule(slot, deadline)
            self._fresh.assign(slot, fresh_until, refresh_at)
            if self._policy.weighted:
                self._policy.on_update(slot, weight)
                self._drop_evicted(self._policy.evicted)
            return False
        if self._sharing.get(key_hash, 0) >= MAX_KEYS_PER_HASH:
            self._crowded += 1  # a rejection: the value is turned away
            if self._removal_log is not None:
                self._record_removal(key, value, REJECTED)
            return True
        slot = self._allocate_slot(key, value, key_hash)
        self._wheel.schedule(slot, deadline)
        self._fresh.assign(slot, fresh_until, refresh_at)
        self._policy.on_insert(slot, key_hash, weight)
        self._drop_evicted(self._policy.evicted)
        return False

    def set_many(self, mapping: Mapping[Any, Any], ttl: TTL | None = None) -> None:
        """``set`` every item. The TTL and every key are checked first, so bad input writes
        nothing."""
        set_each(self.set, self._spread_hash, mapping, ttl)

    def add(self, key: Any, value: Any, ttl: TTL | None = None) -> bool:
        """Store ``value`` only if the key holds no fresh value (none, or an expired or
        stale one: what ``get`` misses); True if it was stored. Atomic between threads."""
        seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        return self._store(key, value, seconds, 0.0, seconds, only_if_absent=True)

    def add_entry(
        self, key: Any, value: Any, lifetime: Lifetime, load_seconds: float = 0.0
    ) -> bool:
        """``add`` for ``lifetime`` (see ``set_entry``)."""
        return self._store(key, value, *self._lifetime_seconds(lifetime), only_if_absent=True)

    def touch(self, key: Any, ttl: TTL | None = None) -> bool:
        """Give the key's fresh value a new TTL from now (``None``: the layer default; ``0``
        removes it), without rewriting it; False if it holds none (stale ones neither)."""
        seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        return self.touch_entry(key, Lifetime(seconds, 0.0, seconds))

    def touch_entry(self, key: Any, lifetime: Lifetime) -> bool:
        """``touch`` with a whole ``lifetime``: fresh for ``ttl``, stale for ``stale_ttl``
        more, a refresh due after ``refresh_after`` (see ``set_entry``)."""
        self._spread_hash(key)
        now_ns = self._now_ns()
        deadline, fresh_until, refresh_at = self._deadlines(
            now_ns, *self._lifetime_seconds(lifetime)
        )
        self._settle(key)
        with self._lock:
            slot = self._slots.get(key, -1)
            if not self._holds_fresh(slot, now_ns):
                return False
            if deadline <= now_ns:
                self._remove(slot, EXPIRED)
                return True
            self._wheel.schedule(slot, deadline)
            self._fresh.assign(slot, fresh_until, refresh_at)
            return True

    def incr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """Add ``delta`` to the key's counter and return the new count, atomically between
        threads; the counter keeps its TTL (and, in a weighted layer, its weight). A key
        holding no fresh value starts at 0, living ``ttl`` (``None``: the layer default).
        Raises ``TypeError`` if the value is not an int, ``OverflowError`` past 64 bits."""
        seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        return self.incr_entry(key, delta, Lifetime(seconds, 0.0, seconds))

    def incr_entry(self, key: Any, delta: int, lifetime: Lifetime) -> int:
        """``incr``; ``lifetime`` is a new counter's."""
        key_hash = self._spread_hash(key)
        checked_delta(delta)
        weight = self._weight_of(key, delta)  # a new counter's (Python code: before the lock)
        now_ns = self._now_ns()
        deadlines = self._deadlines(now_ns, *self._lifetime_seconds(lifetime))
        pending = self._settle(key)
        with self._lock:
            self._reclaim_expired(now_ns)
            slot = self._slots.get(key, -1)
            if self._holds_fresh(slot, now_ns):
                count = counted(self._values[slot], delta, key)
                if self._removal_log is not None:
                    self._record_removal(key, self._values[slot], REPLACED)
                self._values[slot] = count
                return count
            counted(0, delta, key)
            crowded = self._store_locked(key, delta, key_hash, weight, now_ns, *deadlines)
        if pending is not None:
            pending.rescue(key)
        if crowded:
            warn_crowded(self.name, key, self._crowded)
        return delta

    def decr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """``incr`` by ``-delta``."""
        return self.incr(key, -checked_delta(delta), ttl)

    def _lifetime_seconds(self, lifetime: Lifetime) -> tuple[float, float, float]:
        """``(ttl, stale, refresh)`` seconds of a lifetime (``ttl=None``: the default)."""
        ttl = self.default_ttl if lifetime.ttl is None else ttl_seconds(lifetime.ttl)
        stale = ttl_seconds(lifetime.stale_ttl, "stale_ttl")
        refresh = ttl_seconds(lifetime.refresh_after, "refresh_after")
        return ttl, stale, refresh

    def delete(self, key: Any) -> bool:
        """Remove the entry; True if a live one was there."""
        self._spread_hash(key)
        self._settle(key)
        with self._lock:
            slot = self._slots.get(key, -1)
            if slot < 0:
                return False
            live = not self._is_expired(slot)
            self._remove(slot, INVALIDATED if live else EXPIRED)
            return live

    def adjust_ttl(self, key: Any, ttl: TTL | None) -> bool:
        """Give a live entry a new TTL, counted from now (``None`` = the layer default).
        Returns False if there is no live entry."""
        self._spread_hash(key)
        seconds = self.default_ttl if ttl is None else ttl_seconds(ttl)
        now_ns = self._now_ns()
        self._settle(key)
        with self._lock:
            slot = self._slots.get(key, -1)
            if slot < 0 or self._is_expired(slot, now_ns):
                return False
            deadline = deadline_after(now_ns, seconds)
            if deadline <= now_ns:
                self._remove(slot, EXPIRED)
            else:
                self._wheel.schedule(slot, deadline)
                self._fresh.forget(slot)  # a new TTL: fresh until it is gone
            return True

    def clear(self) -> None:
        """Remove every entry (frequency history is kept). Entries found gone count as
        expirations (as ``delete`` counts them)."""
        with self._lock:
            now_ns = self._now_ns() if self._wheel.scheduled else 0
            for slot in cached_slots(self):
                self._remove(slot, EXPIRED if self._is_expired(slot, now_ns) else INVALIDATED)
            self._pending = None

    def set_default_ttl(self, ttl: TTL | None) -> None:
        """The layer's own TTL (``ttl=`` of the constructor: ``None``, never expire) for
        the writes without one, from the next write on; entries held keep theirs."""
        self.default_ttl = default_ttl_seconds(ttl)

    def resize(self, max_size: int | None = None, *, max_weight: int | None = None) -> None:
        """A new bound for a running layer: ``max_size`` entries (or ``max_weight``, for a
        layer built with a weigher). Shrinking evicts what the policy would (expired
        entries first, then W-TinyLFU's victims, counted as evictions) until the layer
        fits; when it returns, ``len()`` is within the new bound. Growing lets it hold more
        from the next write on. Frequencies are kept (``_policy_py.py``, section 7). Size
        estimates (``estimate_sizes``) start again, for the new size.

        >>> l1 = InMemoryLayer(max_size=10_000)
        >>> l1.resize(50_000)
        >>> l1.max_size
        50000
        """
        capacity = resized_bound(max_size, max_weight, self.max_weight is not None)
        with self._lock:
            self._reclaim_expired()
            self._policy.resize(capacity)
            self._drop_evicted(self._policy.evicted)
            if self.max_weight is None:
                self.max_size = capacity
            else:
                self.max_weight = capacity
            if self.size_estimator is not None:  # its shadows were sized for the old bound
                self.size_estimator = restarted_estimator(
                    self, capacity, self._hits, self._hits + self._misses
                )
                self._sample_below = self.size_estimator.threshold
                self._samples = []

    # ------------------------------------------------------------------ introspection
    def remaining_ttl(self, key: Any) -> float | None:
        """Seconds the entry stays fresh (``math.inf``: never expires; ``0.0``: stale, still
        held for the managers' fail-safe), or ``None`` when there is none. Does not count
        as an access."""
        self._settle(key)
        return remaining_ttl(self, key)

    def __repr__(self) -> str:
        return layer_repr(self)

    def get_frequency_estimate(self, key: Any) -> int:
        """Estimated recent accesses of ``key`` (0..16), cached or not."""
        return frequency_estimate(self, key)

    def get_top_keys(self, n: int = 10) -> list[tuple[Any, int]]:
        """The ``n`` cached keys with the highest estimated frequency, hottest first."""
        return top_keys(self, n)

    def stats(self) -> LayerStats:
        """Counters since creation: hits, misses, evictions, expirations, rejections, ..."""
        return stats(self)

    def snapshot(self, hot_keys: int = 32) -> LayerSnapshot:
        """A raw export: sketch table copy, the hottest keys' hits and misses, counters."""
        return snapshot(self, hot_keys)

    def access_counts(self) -> AccessCounts:
        """Per-key counts the layer keeps anyway (hits per cached entry, misses of the keys
        that miss most), copied in one short hold of the lock: what ``cache.insights()``,
        anomaly detection and the fleet's global top-N sample (``analytics/accesses.py``),
        off the request path."""
        return access_counts(self)

    def keys_at(self, slots: list[tuple[int, int]]) -> list[Any]:
        """The keys behind ``(slot, key_hash)`` pairs of ``access_counts`` (``None``: the
        slot holds another key by now)."""
        return keys_at(self, slots)

    def missed_keys_at(self, buckets: list[tuple[int, int]]) -> list[Any]:
        """The keys behind ``(bucket, key_hash)`` pairs of ``access_counts``' missed keys."""
        return missed_keys_at(self, buckets)

    def keys(self) -> list[Any]:
        """A list of the keys held now, pending ``drop_later`` invalidations swept first
        (a copy: O(size); for tools and tests, not for the request path)."""
        with self._lock:
            self._finish_drops()
            return held_keys(self)

    # ------------------------------------------------------------------ lazy drops
    def drop_later(self, keysets: Iterable[Any], prefixes: Iterable[str] = ()) -> None:
        """Invalidate the entries whose key is in one of ``keysets`` (containers of keys)
        or starts with one of ``prefixes``, at a cost that does not grow with their number:
        from now on each operation checks its own key, and removes the invalid entries of
        a few slots, until all are gone (``sweep.py``)."""
        with self._lock:
            if self._pending is None:
                self._pending = PendingDrop()
            self._pending.add(keysets, prefixes)
            self._sweep_at = 0  # the new rules apply to every slot
            self._sweep(SWEEP_STEP)  # a small layer is done at once

    def _settle(self, key: Any) -> PendingDrop | None:
        """With invalidations pending: sweep a few slots, and remove ``key``'s entry if it
        is invalid. Returns them (a write rescues its key once stored), else None."""
        pending = self._pending
        if pending is None:
            return None
        with self._lock:
            self._sweep(SWEEP_STEP)
            slot = self._slots.get(key, -1)
            if slot >= 0 and pending.covers(key):  # (one found gone counts as expired)
                self._remove(slot, EXPIRED if self._is_expired(slot) else INVALIDATED)
        return pending

    def _sweep(self, step: int) -> None:
        """Remove the invalid entries of the next ``step`` slots; past the last slot the
        pending invalidations are done."""
        pending, start = self._pending, self._sweep_at
        if pending is None:
            return
        end = min(start + step, len(self._keys))
        for slot in range(start, end):
            if self._policy.region_of(slot) != NOT_CACHED and pending.covers(self._keys[slot]):
                self._remove(slot, EXPIRED if self._is_expired(slot) else INVALIDATED)
        self._sweep_at = end
        if end >= len(self._keys):
            self._pending = None

    def _finish_drops(self) -> None:
        self._sweep(len(self._keys))

    def size_estimates(self) -> dict[float, float]:
        """The hit ratio (0..1) this layer would have had since it was built at each size
        factor of ``estimate_sizes``, and at 1 (its own size: the ratio it measured), from
        sampled shadow caches (``analytics/mrc.py``); ``nan`` before any sampled read.
        ``RuntimeError`` if it was built without ``estimate_sizes``.

        >>> l1 = InMemoryLayer(max_size=100_000, estimate_sizes=(0.5, 2, 4))
        >>> sorted(l1.size_estimates())
        [0.5, 1.0, 2.0, 4.0]
        """
        estimator = checked_estimator(self)
        self._flush_samples()
        return estimator.estimates(self._hits, self._hits + self._misses)

    def _sample(self, event: int) -> None:
        self._samples.append(event)
        if len(self._samples) >= SAMPLE_BATCH:
            self._flush_samples()

    def _flush_samples(self) -> None:
        # Outside the lock: the replay takes a while, and only touches the shadows.
        events, self._samples = self._samples, []
        if events and self.size_estimator is not None:  # events: only with an estimator
            self.size_estimator.replay(np.array(events, dtype=np.uint64))

    def _replay_accesses(self, events: np.ndarray, keys: list[int | None]) -> int:
        """For the shadows of ``analytics/mrc.py``: replay sampled events (bit 0 set: a
        write) with each event's other bits as an int key, a read that misses followed by a
        write of ``True`` (as a read-through cache does); the number of reads that hit.
        ``keys``: one item per event, None until a shadow builds that event's key, which
        then serves the other shadows (one int object per event, not per shadow).

        This is the definition; the compiled twin takes a lean path to the same decisions,
        for shadows only (no TTL, weigher, copy, removal listener or pending drop), and
        raises ``RuntimeError`` for another layer."""
        if (
            self.default_ttl != math.inf
            or self._weigher is not None
            or self.max_weight is not None
            or self._copy is not None
            or self._removal_log is not None
            or self._pending is not None
        ):
            raise RuntimeError(
                f"InMemoryLayer {self.name!r}: _replay_accesses is for size-estimate "
                "shadows (no TTL, weigher, copy, removal listener or pending drop)"
            )
        if len(keys) != len(events):
            raise ValueError("_replay_accesses: one item of keys per event")
        missing = object()
        hits = 0
        for index, event in enumerate(events.tolist()):
            key = keys[index]
            if key is None:
                key = keys[index] = event >> 1
            if event & WRITE:
                self.set(key, True)
            elif self.get(key, missing) is missing:
                self.set(key, True)
            else:
                hits += 1
        return hits

    def _internals(self) -> dict[str, Any]:
        """For tests: the structures behind the layer (see tests/invariants.py)."""
        return internals(self)

    # ------------------------------------------------------------------ forks
    def _hold_for_fork(self, deadline: float) -> None:
        # In the parent, just before fork(): wait for a thread inside an update to finish.
        wait = max(0.0, deadline - time.monotonic())
        self._held_for_fork = self._lock.acquire(timeout=wait)

    def _end_fork_hold(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()

    def _after_fork(self) -> None:
        if self._held_for_fork:  # the copy is consistent; the forking thread holds the lock
            self._end_fork_hold()
            return
        self._lock = threading.RLock()
        self._start_empty()
        log.warning(
            "%s: a thread of the parent process was inside this InMemoryLayer when it forked "
            "(stuck in a key's __eq__ or __hash__, the clock, or a finalizer); the child "
            "starts the layer empty",
            self.name,
        )

    # ------------------------------------------------------------------ internals
    def _now_ns(self) -> int:
        if self._clock is not None:
            return seconds_to_ns(self._clock())
        return time.monotonic_ns()

    @staticmethod
    def _spread_hash(key: Any) -> int:
        try:
            return spread(hash(key))
        except TypeError:
            raise unhashable_key(key) from None

    def _is_expired(self, slot: int, now_ns: int | None = None) -> bool:
        deadline = self._wheel.deadline(slot)
        if deadline == NO_DEADLINE:
            return False
        return deadline <= (self._now_ns() if now_ns is None else now_ns)

    def _allocate_slot(self, key: Any, value: Any, key_hash: int) -> int:
        if self._free:
            slot = self._free.pop()
            self._keys[slot] = key
            self._values[slot] = value
            self._slot_hits[slot] = 0
        else:
            # The per-slot arrays grow first, the slot is taken last: a signal handler's
            # exception may interrupt this anywhere, and the next new slot completes or
            # undoes what an interrupted one left (the lists past ``_slot_hits``).
            slot = len(self._slot_hits)
            self._policy.grow(slot + 1)
            self._wheel.grow(slot + 1)
            self._fresh.grow(slot + 1)
            del self._keys[slot:], self._values[slot:]
            self._keys.append(key)
            self._values.append(value)
            self._slot_hits.append(0)
        self._slots[key] = slot
        self._sharing[key_hash] = self._sharing.get(key_hash, 0) + 1
        return slot

    def _release_slot(self, slot: int, cause: int) -> None:
        if self._removal_log is not None:
            self._record_removal(self._keys[slot], self._values[slot], cause)
        self._fresh.forget(slot)
        del self._slots[self._keys[slot]]
        key_hash = self._policy._hash[slot]
        if self._sharing[key_hash] == 1:
            del self._sharing[key_hash]
        else:
            self._sharing[key_hash] -= 1
        self._keys[slot] = None
        self._values[slot] = None
        self._free.append(slot)

    def _remove(self, slot: int, cause: int) -> None:
        """Drop the entry in ``slot`` (a delete, an expiry, a write that cannot stay). A held
        newcomer (``_policy_py.py``, section 6) was counted as evicted and rejected by
        admission already: whatever removes it now, it is reported as rejected."""
        if slot == self._policy.held:
            cause = REJECTED
        elif cause == EXPIRED:
            self._expirations += 1
        self._policy.on_remove(slot)
        self._wheel.deschedule(slot)
        self._release_slot(slot, cause)

    def _drop_evicted(self, evicted: list[int]) -> None:
        rejected = self._policy.rejected
        for slot in evicted:
            self._wheel.deschedule(slot)
            self._release_slot(slot, REJECTED if slot in rejected else EVICTED)

    def _reclaim_expired(self, now_ns: int | None = None) -> None:
        if not self._wheel.scheduled:
            return
        self._wheel.advance(self._now_ns() if now_ns is None else now_ns)
        for slot in self._wheel.expired:
            self._remove_expired(slot)

    def _remove_expired(self, slot: int) -> None:
        """``_remove(slot, EXPIRED)`` for a slot the wheel has descheduled already."""
        cause = REJECTED if slot == self._policy.held else EXPIRED
        if cause == EXPIRED:
            self._expirations += 1
        self._policy.on_remove(slot)
        self._release_slot(slot, cause)

    # ------------------------------------------------------------------ removal listeners
    def add_removal_listener(self, listener: Callable[[Any, Any, str], Any]) -> Callable[[], None]:
        """Call ``listener(key, value, cause)`` on a thread of its own for every entry that
        leaves the layer from now on (see ``removals.py``); returns a function that removes
        it again.

        >>> l1 = InMemoryLayer(max_size=100, removal_listener=print)
        """
        checked_listener(listener)
        with self._lock:
            if self._delivery is None:
                self._delivery = RemovalDelivery(self)
            if self._removal_log is None:
                self._removal_log = []
            self._delivery.add(listener)

        def remove() -> None:
            with self._lock:
                delivery = self._delivery
                if delivery is not None and not delivery.remove(listener):
                    self._removal_log = None  # nobody listens: record nothing more
                    delivery.wake()  # (what was recorded is taken and dropped)

        return remove

    def removal_stats(self) -> EventStats:
        """Removals delivered to the listeners, dropped (the log was full), that made a
        listener raise, and waiting now (``core.events.EventStats``)."""
        with self._lock:
            pending = len(self._removal_log or ())
            dropped = self._removals_dropped
        if self._delivery is None:
            return EventStats(0, dropped, 0, pending)
        return self._delivery.stats(dropped, pending)

    def _record_removal(self, key: Any, value: Any, cause: int) -> None:
        """(Under the lock, a listener attached) keep what leaves for delivery."""
        removals = self._removal_log
        assert removals is not None and self._delivery is not None
        if len(removals) >= self._removal_capacity:
            self._removals_dropped += 1
            return
        removals.append((key, value, cause))
        if len(removals) == 1:
            self._delivery.wake()

    def _take_removals(self) -> list[tuple[Any, Any, int]]:
        """For the delivery thread: the oldest recorded removals (up to ``BATCH``)."""
        with self._lock:
            removals = self._removal_log
            if not removals:
                return []
            taken = removals[:BATCH]
            del removals[:BATCH]
            return taken
