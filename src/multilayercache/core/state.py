"""The IO-free state of one manager (``CacheState``): its tiers, the random source of TTL
jitter, its clock, the keys whose loads failed lately, the queue of background refreshes,
and what it counts; shared by the sync and asyncio managers and read by the plans."""

from __future__ import annotations

import random
import reprlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from .adaptive import StepMemory
from .errors import LayerRateLimited
from .events import BreakerTransition, EventHub
from .failures import FailedLoad
from .freshness import Entry
from .generations import KeyGenerations
from .latency import LatencyRecorder
from .log import ThrottledWarning
from .options import LayerPolicy, LoadOptions
from .ratelimit import KeyThrottle, RateLimiter
from .refresh import RefreshQueue
from .stats import FLEET_COUNTERS, CacheStats
from .tags import Invalidations
from .tiers import Tier, make_tiers
from .unconfirmed import UnconfirmedDeletes


class CacheState:
    """What a manager knows, apart from how it performs IO.

    ``lock`` guards the counters: the drivers pass a ``threading.Lock`` (the core itself
    knows nothing about threads).
    """

    def __init__(
        self,
        layers: Sequence[Any],
        policies: Sequence[LayerPolicy | None] | None,
        *,
        record_latency: bool,
        allow_async: bool,
        lock: AbstractContextManager[Any],
        value_type: Any = None,
        load_options: LoadOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tiers: list[Tier] = make_tiers(layers, policies, allow_async)
        self.local_depth = 1 if self.tiers[0].in_process else 0
        self.tiers_slowest_first = self.tiers[::-1]
        self.promotes = any(tier.policy.promote != "never" for tier in self.tiers[:-1])
        """Some layer takes copies of what is found below it."""
        self.writes_at_once = all(
            (tier.in_process and tier.entries) or tier.queue is not None for tier in self.tiers
        )
        """No layer has to be waited for to ``set`` a key (in-process ones, write-behind
        ones): ``plans.write_at_once`` may do it without a plan."""
        alone = self.tiers[0] if len(self.tiers) == 1 and self.writes_at_once else None
        self.alone: Tier | None = alone if alone is not None and alone.in_process else None
        """The cache's one layer when it has no other and it is in-process: a ``set`` with
        neither TTL nor tags is one call into it, and so is the write of a loaded value
        (``plans.write_loaded_at_once``)."""
        self.record_latency = record_latency
        self.value_type = value_type
        """What values are read back as from layers that encode them (``None``: their
        serializer's own data model)."""
        if load_options is not None and not isinstance(load_options, LoadOptions):
            raise TypeError(f"load_options must be a LoadOptions, got {load_options!r}")
        self.load_options = load_options or LoadOptions()
        self.clock = clock
        self.rng = random.Random()
        self.loads = LatencyRecorder()
        self.throttle = KeyThrottle(self.load_options.fail_safe_throttle)
        """Keys whose load or refresh failed lately: served stale (or, without a stale
        value, the failure again: ``core/failures.py``), not reloaded yet. Used under
        ``lock`` (``held_off``, ``load_failed``, ``load_succeeded``)."""
        self.generations = KeyGenerations() if len(self.tiers) > 1 else None
        """Per-key generations, so that no copy into a faster layer lands over a newer
        write or delete (``core/generations.py``); ``None`` with one layer, which has
        nothing faster to copy into."""
        self.unconfirmed = UnconfirmedDeletes()
        """Deletes that did not reach a layer: the key is not read from it until a delete
        or set of it does (``core/unconfirmed.py``). Used under ``lock``."""
        self._warn_unconfirmed = ThrottledWarning()
        self.uncleared: dict[int, tuple[int, float]] = {}
        """Layers a ``clear`` did not reach, by depth: when it was asked (epoch ms) and until
        when the layer may still hold what it was to remove (monotonic seconds). Their
        entries written before it are not read (``cleared_away``)."""
        sizes = [getattr(tier.layer, "max_size", None) for tier in self.tiers if tier.in_process]
        self.invalidations = Invalidations(4 * sum(size or 250_000 for size in sizes) or 1)
        """Tag and prefix invalidations, and the in-process keys per tag (``core/tags.py``)."""
        self.call_texts: dict[str, Any] | None = None
        """With a backplane: the shared text of each ``@cached`` call key written into an
        in-process layer, so that another instance's message (which names keys by their
        text) finds the call key here (``None``: no backplane)."""
        self.marks_tier = next((tier for tier in self.tiers if tier.has("read_marks")), None)
        """The shared layer that keeps the marks (the first that can), or ``None``."""
        self.refreshes = RefreshQueue()
        self.adapts = any(tier.policy.adaptive is not None for tier in self.tiers)
        """Some layer has an adaptive TTL: loaded values carry their step (``core/adaptive.py``)."""
        stores_steps = any(getattr(tier.layer, "stores_steps", False) for tier in self.tiers)
        self.steps = StepMemory() if self.adapts and not stores_steps else None
        """Where keys' steps live when no shared layer stores them with the entries. Used
        under ``lock`` (``step_of``, ``remember_steps``)."""
        self.counts: Counter[str] = Counter()
        rate = self.load_options.max_loads_per_second
        # LoadOptions' __post_init__ made any number a RateLimit.
        self.load_rate = None if rate is None else RateLimiter(rate, lock)  # type: ignore[arg-type]
        """The loader's rate limit (``LoadOptions.max_loads_per_second``), or ``None``."""
        self._lock = lock
        self._warn_loads = ThrottledWarning()
        for tier in self.tiers:
            tier.share_lock(lock)
        self.events = EventHub()
        """What the manager tells its listeners (``core/events.py``): ``events.emit``."""
        self._report_breakers()

    # ---------------------------------------------------------------- counting
    def count_load(self, seconds: float, failed: bool = False) -> None:
        """One loader call took ``seconds`` (``failed``: it raised)."""
        with self._lock:  # (the pure recorder's totals need it; see _core/_latency_py.py)
            self.loads.record(seconds)
            if failed:
                self.counts["loader_failures"] += 1

    def count(self, what: str, n: int = 1) -> None:
        """Add to one of the manager's counters (``stale_served``, ``refreshes``, ...)."""
        with self._lock:
            self.counts[what] += n

    def note_load_failure(self, key: Any, error: BaseException, outcome: str) -> None:
        """A load or refresh failed and the caller was spared the error (fail-safe)."""
        with self._lock:
            self.counts["load_failures"] += 1
        self._warn_loads("loading %r failed, %s: %r", key, outcome, error)

    def note_read_error(self, tier: Tier, key: Any, error: Exception) -> None:
        """A read failed: the tier counts as a miss for it."""
        if type(error) is LayerRateLimited:  # skipped, not failed: the limiter counted it
            return
        with self._lock:
            tier.read_errors += 1
        self._warn(tier, "read", key, "treated as a miss", error)

    def note_write_error(self, tier: Tier, key: Any, error: Exception) -> None:
        """A write the caller is not told about failed (a promotion, a loaded value)."""
        if type(error) is LayerRateLimited:  # not sent, not failed: the limiter counted it
            return
        with self._lock:
            tier.write_errors += 1
        self._warn(tier, "write", key, "not cached", error)

    def note_encode_error(self, tier: Tier, key: Any, error: Exception) -> None:
        """A loaded (or promoted) value this layer cannot encode: returned to the caller and
        cached in the layers that can hold it, not in this one."""
        with self._lock:
            tier.encode_errors += 1
        self._warn(tier, "write", key, "not cached in this layer", error)

    def _warn(self, tier: Tier, action: str, key: Any, outcome: str, error: Exception) -> None:
        errors = tier.read_errors + tier.write_errors + tier.encode_errors  # this one included
        message = "%s: %s of %s failed, %s (%d errors so far): %s"
        # reprlib: a batch's keys (or a long key) shortened, never 10,000 of them in a line
        tier.warn(message, tier.name, action, reprlib.repr(key), outcome, errors, error)

    # ---------------------------------------------------------------- failing loads
    def held_off(self, key: Any) -> tuple[FailedLoad | None, float] | None:
        """``None`` if ``key`` may be loaded now; else, while its last load failed less
        than ``fail_safe_throttle`` ago, that failure (``None`` if not known) and the
        seconds left until it may be loaded again."""
        now = self.clock()
        with self._lock:
            if self.throttle.allow(key, now):
                return None
            return self.throttle.reason(key), self.throttle.retry_in(key, now)

    def load_failed(self, key: Any, error: BaseException, loader: Any = None) -> None:
        """A load (or refresh) of ``key`` by ``loader`` raised ``error``: hold it off."""
        reason = None if loader is None else FailedLoad(error, loader)
        now = self.clock()
        with self._lock:
            self.throttle.failed(key, now, reason)

    def load_succeeded(self, key: Any) -> None:
        """A load of ``key`` succeeded: forget its last failure."""
        with self._lock:
            self.throttle.succeeded(key)

    # ---------------------------------------------------------------- adaptive TTL steps
    def step_of(self, key: Any) -> int:
        """``key``'s step in ``steps`` (0 if none is kept)."""
        if self.steps is None:
            return 0
        with self._lock:
            return self.steps.get(key)

    def remember_steps(self, steps: dict[Any, int]) -> None:
        """Keep the keys' new steps in ``steps`` (when no shared layer stores them)."""
        if self.steps is not None and steps:
            with self._lock:
                for key, step in steps.items():
                    self.steps.put(key, step)

    # ---------------------------------------------------------------- deletes that did not land
    def mark_unconfirmed(self, tier: Tier, keys: list[Any]) -> None:
        """A delete of ``keys`` could not reach ``tier``: do not read them from it until a
        delete or set of them does (see ``core/unconfirmed.py``)."""
        now, hold = self.clock(), tier.longest_hold
        dropped = []
        with self._lock:
            for key in keys:
                forgotten = self.unconfirmed.mark(key, tier.depth, now, hold)
                if forgotten is not None:
                    dropped.append(forgotten)
        if dropped:
            self._warn_unconfirmed(
                "%s: more than %d deletes wait to reach it; forgot the oldest (%r%s): the "
                "layer may serve it again (%d forgotten so far)",
                tier.name, self.unconfirmed.max_keys, dropped[0],
                f" and {len(dropped) - 1} more" if len(dropped) > 1 else "",
                self.unconfirmed.dropped,
            )  # fmt: skip

    def unconfirmed_in(self, tier: Tier, keys: list[Any]) -> list[Any]:
        """The keys of ``keys`` whose delete has not reached ``tier`` yet."""
        if not self.unconfirmed:  # the usual case, without taking the lock
            return []
        now, depth = self.clock(), tier.depth
        with self._lock:
            return [key for key in keys if self.unconfirmed.holds(key, depth, now)]

    def confirm_deleted(self, tier: Tier, keys: Any) -> None:
        """A delete or a set of ``keys`` reached ``tier``."""
        if not self.unconfirmed:
            return
        with self._lock:
            for key in keys:
                self.unconfirmed.confirm(key, tier.depth)

    def confirm_cleared(self, tier: Tier) -> None:
        """``tier`` was cleared: every delete waiting for it is done."""
        if self.unconfirmed or self.uncleared:
            with self._lock:
                self.unconfirmed.confirm_layer(tier.depth)
                self.uncleared.pop(tier.depth, None)

    # ---------------------------------------------------------------- clears that did not land
    def mark_uncleared(self, tier: Tier) -> None:
        """A ``clear`` could not reach ``tier``: what it holds from before now is not read
        (``cleared_away``) until a clear reaches it, or its longest TTL has passed."""
        asked_ms = time.time_ns() // 1_000_000
        with self._lock:
            self.uncleared[tier.depth] = (asked_ms, self.clock() + tier.longest_hold)

    def cleared_away(self, tier: Tier, entry: Entry) -> bool:
        """Whether ``entry``, read from ``tier``, predates a clear that did not reach it
        (an entry that does not say when it was written is taken as older)."""
        mark = self.uncleared.get(tier.depth)
        if mark is None:
            return False
        asked_ms, until = mark
        if self.clock() >= until:  # the layer dropped all of it by now
            with self._lock:
                self.uncleared.pop(tier.depth, None)
            return False
        return entry.written_ms is None or entry.written_ms <= asked_ms

    # ---------------------------------------------------------------- reporting
    def stats(self, coalesced_waits: int) -> CacheStats:
        """Every layer's stats and the manager's own counters."""
        layers = [tier.layer.stats() for tier in self.tiers]
        load_latency = self.loads.percentiles()  # (its count: every loader call)
        untrusted = {
            tier.name: dict(untrusted)
            for tier, stats in zip(self.tiers, layers, strict=True)
            if (untrusted := getattr(stats, "untrusted", None))
        }
        return CacheStats(
            layers=layers,
            loader_calls=load_latency.count,
            loader_failures=self.counts["loader_failures"],
            coalesced_waits=coalesced_waits,
            load_latency=load_latency,
            layer_latency=(
                {tier.name: tier.latency.percentiles() for tier in self.tiers}
                if self.record_latency
                else {}
            ),
            read_errors={
                tier.name: tier.read_errors + sum(untrusted.get(tier.name, {}).values())
                for tier in self.tiers
            },
            untrusted_reads=untrusted,
            write_errors={tier.name: tier.write_errors for tier in self.tiers},
            encode_errors={tier.name: tier.encode_errors for tier in self.tiers},
            stale_served=self.counts["stale_served"],
            fail_safe=self.counts["fail_safe"],
            load_failures=self.counts["load_failures"],
            refreshes=self.counts["refreshes"],
            refresh_failures=self.counts["refresh_failures"],
            refreshes_dropped=self.refreshes.dropped,
            refreshes_by_kind=dict(self.refreshes.taken),
            soft_timeouts=self.counts["soft_timeouts"],
            hard_timeouts=self.counts["hard_timeouts"],
            throttled_loads=self.counts["throttled_loads"],
            refreshes_unchanged=self.counts["refreshes_unchanged"],
            ttl_extended=self.counts["ttl_extended"],
            unconfirmed_deletes=len(self.unconfirmed),
            unconfirmed_deletes_dropped=self.unconfirmed.dropped,
            breakers={tier.name: tier.breaker.stats() for tier in self.tiers if tier.breaker},
            node_breakers={
                tier.name: tier.node_breakers.stats()
                for tier in self.tiers
                if tier.node_breakers is not None
            },
            rate_limits={
                tier.name: tier.limiter.stats() for tier in self.tiers if tier.limiter is not None
            },
            loads_delayed=0 if self.load_rate is None else self.load_rate.delayed,
            loads_rate_limited=0 if self.load_rate is None else self.load_rate.refused,
            write_queues={
                tier.name: tier.queue.stats(self.clock())
                for tier in self.tiers
                if tier.queue is not None
            },
            fleet_flight={name: self.counts[f"fleet_{name}"] for name in FLEET_COUNTERS},
        )

    # ---------------------------------------------------------------- after a fork
    def _report_breakers(self) -> None:
        """Every breaker's change of state becomes a ``BreakerTransition`` event."""
        emit = self.events.emit
        for tier in self.tiers:
            name = tier.name
            if tier.breaker is not None:
                tier.breaker.on_transition = lambda before, after, name=name: emit(
                    BreakerTransition(name, before.value, after.value)
                )
            if tier.node_breakers is not None:
                tier.node_breakers.on_transition = lambda node, before, after, name=name: emit(
                    BreakerTransition(name, before.value, after.value, node)
                )

    def after_fork(self, lock: AbstractContextManager[Any]) -> None:
        """In a forked child: guard the counters and breakers with ``lock`` (a thread of
        the parent may hold the old one), and forget what the parent's threads or tasks
        were doing (the refreshes they ran, the breaker probes they made)."""
        self._lock = lock
        if self.load_rate is not None:
            self.load_rate.share_lock(lock)
        for tier in self.tiers:
            tier.share_lock(lock)
            if tier.breaker is not None:
                tier.breaker.forget_probes()
            if tier.node_breakers is not None:
                tier.node_breakers.forget_probes()
        self.refreshes.clear()
