"""How the manager treats each layer (``LayerPolicy``), how it loads (``LoadOptions``), and
TTL jitter."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .adaptive import AdaptiveTTL
from .backoff import RetryPolicy
from .breaker import BreakerPolicy
from .errors import is_transient
from .freshness import Lifetime, refresh_point
from .ratelimit import RateLimit
from .ttl import TTL, optional_ttl_seconds, ttl_seconds
from .writepolicy import WriteBehind, WritePolicy, WriteThrough

PromotionRule = Literal["seen_before", "always", "never"] | Callable[[Any, Any], bool]


@dataclass(frozen=True)
class LayerPolicy:
    """How the manager uses one layer.

    ttl:
        Upper bound on how long this layer keeps what the manager writes into it (``None``:
        the layer's own default). A ``ttl`` given to ``set``/``get_or_load`` applies too; the
        shorter wins. Typical: L1 short (seconds), L2 longer (minutes).
    ttl_jitter:
        Shorten each TTL by a random fraction up to this (``0.1``: between 90% and 100% of
        it), so that entries written together do not all expire together. Jitter never
        makes an entry outlive the TTL asked for.
    promote:
        Whether a value found in a slower layer is copied into this one. ``"seen_before"``
        (default): when this layer has seen the key before in its current frequency period
        (W-TinyLFU doorkeeper; layers without frequencies always accept). ``"always"``,
        ``"never"``, or ``callable(key, layer) -> bool``.
    stale_ttl:
        How long past ``ttl`` this layer keeps a value to serve it stale: at once while one
        background reload runs (stale-while-revalidate), or when the loader or a slower
        layer fails or is too slow (fail-safe). 0 (default): never stale.
    refresh_ahead:
        A fraction of ``ttl`` (``0.8``: at 80%) after which a hit refreshes the value in the
        background, so a hot key never misses; moved earlier by up to ``refresh_jitter`` of
        the TTL at random, so keys written together do not refresh together.
    xfetch_beta:
        Probabilistic early refresh (XFetch) of values read from this layer: the closer to
        expiry and the longer the value took to load, the likelier a read refreshes it
        early (``1.0`` is the paper's choice; ``None``: off).
    breaker:
        The circuit breaker of a layer that does IO (``None``: none): after repeated
        transient failures the layer is skipped at once, without a connect timeout per
        call, until a probe call succeeds (see ``core/breaker.py``). In-process layers have
        none.
    retry:
        How a transient failure of this layer is retried (``None``: not at all): by default
        once, within a quarter of a second, so that a dropped connection heals unseen while
        a dead server costs little before the breaker opens.
    write:
        When a write reaches this layer. ``WriteThrough()`` (default): before ``set()``
        returns. ``WriteBehind(...)``: ``set()`` returns once the faster layers hold the
        value (encoded for this layer already, so a value it cannot take still raises);
        a background worker sends it in batches, retries it while the layer is down, and
        hands what fails for good to a dead-letter file (see ``core/writequeue.py``).
        Reads see the queued value. Not for the first layer: nothing is faster.
    adaptive:
        ``AdaptiveTTL(min=..., max=...)``: this layer's TTL for each key adapts to how
        often its value changes: longer (up to ``max``) while reloads find it unchanged,
        back to ``ttl`` and shorter (down to ``min``) while they find it changed (see
        ``core/adaptive.py``). A key's step is kept with its entry in the shared layers:
        keep entries past their TTL (``stale_ttl``) so that a reload finds the entry it
        replaces. ``None`` (default): fixed.
    rate_limit:
        At most this many calls per second into the layer (a number, or ``RateLimit(rate,
        burst=...)``; the default burst is a tenth of a second's worth), so a miss storm or
        a hot loop cannot flood a shared server. Every call costs one token, a batch
        (``get_many``'s one ``MGET``, a write-behind pipeline) too: the limit counts round
        trips, as the server's command stats do, and batching is how more keys get
        through. Over the limit, a read skips the layer (a miss there, not an error: the
        next layer or the loader answers, and the loaded value is not written back into
        it), a cache fill (a copy up, a loaded value) is not written, and a write waits
        for a token up to ``rate_limit_wait`` seconds, then raises ``LayerRateLimited``
        (a write-behind layer queues it: its worker waits for tokens). Counted in
        ``stats().rate_limits``. Not for an in-process layer, which has nothing to
        protect. ``None`` (default): no limit, and nothing is paid for it.
    rate_limit_wait:
        How long a write waits for a token of ``rate_limit`` (seconds, default 1).
    """

    ttl: TTL | None = None
    ttl_jitter: float = 0.0
    promote: PromotionRule = "seen_before"
    stale_ttl: TTL = 0.0
    refresh_ahead: float | None = None
    refresh_jitter: float = 0.1
    xfetch_beta: float | None = None
    breaker: BreakerPolicy | None = BreakerPolicy()
    retry: RetryPolicy | None = RetryPolicy(
        attempts=2, base=0.01, cap=0.1, budget=0.25, retry_on=is_transient
    )
    write: WritePolicy = WriteThrough()
    adaptive: AdaptiveTTL | None = None
    rate_limit: RateLimit | float | None = None
    rate_limit_wait: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate_limit", RateLimit.of(self.rate_limit, "rate_limit"))
        _wait_seconds(self.rate_limit_wait, "rate_limit_wait", finite=True)
        optional_ttl_seconds(self.ttl, "LayerPolicy ttl")
        check_jitter(self.ttl_jitter)
        ttl_seconds(self.stale_ttl, "LayerPolicy stale_ttl")
        if self.refresh_ahead is not None and not 0 < _fraction(self.refresh_ahead) < 1:
            raise ValueError(
                f"refresh_ahead must be a fraction in (0, 1), got {self.refresh_ahead!r}"
            )
        check_jitter(self.refresh_jitter, "refresh_jitter")
        if self.xfetch_beta is not None and not _fraction(self.xfetch_beta) > 0:
            raise ValueError(f"xfetch_beta must be > 0, got {self.xfetch_beta!r}")
        if not callable(self.promote) and self.promote not in ("seen_before", "always", "never"):
            raise ValueError(
                f"promote must be 'seen_before', 'always', 'never' or a callable, "
                f"got {self.promote!r}"
            )
        if not isinstance(self.write, (WriteThrough, WriteBehind)):
            raise TypeError(f"write must be WriteThrough() or WriteBehind(...), got {self.write!r}")
        if self.adaptive is not None and not isinstance(self.adaptive, AdaptiveTTL):
            raise TypeError(
                f"adaptive must be an AdaptiveTTL(min=..., max=...) or None, got {self.adaptive!r}"
            )

    def ttl_for(self, requested: TTL | None, rng: random.Random) -> float | None:
        """The TTL (seconds) to give this layer for a write, or ``None`` for its default."""
        requested_seconds = optional_ttl_seconds(requested)
        cap = optional_ttl_seconds(self.ttl, "LayerPolicy ttl")
        if requested_seconds is None:
            seconds = cap
        elif cap is None:
            seconds = requested_seconds
        else:
            seconds = min(requested_seconds, cap)
        return jittered(seconds, self.ttl_jitter, rng)

    def lifetime_for(
        self, requested: TTL | None, rng: random.Random, default: float | None = None
    ) -> Lifetime:
        """The lifetime of a write into this layer: the requested TTL capped by this
        policy's (``default``, the layer's own, when neither is given; ``None``: the layer
        decides), jitter applied to it and to the stale window, and the refresh point."""
        ttl = self.ttl_for(requested, rng)
        if ttl is None:
            ttl = default
        if ttl is None:
            # A ttl of None, outside Lifetime's type: the layer applies its own default.
            return Lifetime(None, 0.0, math.inf)  # type: ignore[arg-type]
        stale = jittered(ttl_seconds(self.stale_ttl), self.ttl_jitter, rng) or 0.0
        refresh = refresh_point(ttl, self.refresh_ahead, self.refresh_jitter, rng)
        return Lifetime(ttl, stale, refresh)

    def adapted(self, lifetime: Lifetime, step: int, default: float | None = None) -> Lifetime:
        """``lifetime`` (``default``: its TTL when the layer decides it) at adaptive
        ``step``: the TTL scaled by ``adaptive``, the refresh point moved with it, the step
        kept for the shared layers to store."""
        ttl = default if lifetime.ttl is None else lifetime.ttl
        if self.adaptive is None or not step or ttl is None:
            return lifetime._replace(step=step)
        scaled = self.adaptive.scaled(ttl, step)
        refresh = lifetime.refresh_after
        if refresh != math.inf and ttl > 0:
            refresh *= scaled / ttl
        return Lifetime(scaled, lifetime.stale_ttl, refresh, step)

    def base_ttl(self, requested: TTL | None, default: float | None = None) -> float | None:
        """The TTL of a write of ``requested`` before jitter and adaptation (``default``:
        the layer's own when neither is given)."""
        requested_seconds = optional_ttl_seconds(requested)
        cap = optional_ttl_seconds(self.ttl, "LayerPolicy ttl")
        if requested_seconds is None:
            return default if cap is None else cap
        return requested_seconds if cap is None else min(requested_seconds, cap)

    def accepts_promotion(self, key: Any, layer: Any) -> bool:
        """Whether a value found below may be copied into ``layer``."""
        if self.promote == "always":
            return True
        if self.promote == "never":
            return False
        if callable(self.promote):
            return bool(self.promote(key, layer))
        estimate = getattr(layer, "get_frequency_estimate", None)
        # A key seen once is in the doorkeeper only (estimate 1); seen before means >= 2.
        return estimate is None or estimate(key) >= 2


def check_jitter(jitter: object, what: str = "ttl_jitter") -> float:
    """Validate a jitter fraction (``0 <= jitter < 1``)."""
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
        raise TypeError(f"{what} must be a fraction between 0 and 1, got {jitter!r}")
    if not 0 <= jitter < 1:
        raise ValueError(f"{what} must be in [0, 1), got {jitter!r}")
    return float(jitter)


def _wait_seconds(value: object, what: str, finite: bool) -> None:
    """Check a wait: seconds >= 0 (``math.inf``: forever, unless ``finite``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    if not 0 <= value <= math.inf or (finite and value == math.inf):  # (NaN fails too)
        bound = "finite seconds" if finite else "seconds"
        raise ValueError(f"{what} must be {bound} >= 0, got {value!r}")


def _fraction(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class LoadOptions:
    """How ``get_or_load`` (and ``@cached``) behave around stale values, failures and slow
    loaders; per cache, and per call for the timeouts.

    stale_while_revalidate:
        A stale value is returned at once and one background reload refreshes it (per key,
        across threads and tasks). Off: callers wait for the reload, and get the stale
        value only if it fails or is too slow.
    fail_safe:
        When the loader (or a slower layer) fails, a stale value is returned instead of the
        error; the key is then not reloaded for ``fail_safe_throttle`` seconds (its stale
        value is served meanwhile), so a failing backend is not hammered. A caller without
        a stale value gets the error, and so do the callers of the key with the same loader
        within those seconds, without a loader call: a copy of the loader's exception,
        raised from it (``stats().throttled_loads``; see ``core/failures.py``).
    soft_timeout:
        Seconds a caller waits for another caller's load of its key when a stale value could
        answer instead: past it, the stale value is returned and the load goes on, updating
        the cache when it ends.
    hard_timeout:
        Seconds after which a caller gives up waiting for another caller's load
        (``LoadTimeoutError``, or the stale value when there is one), and the most it waits
        for a load slot; the load still updates the cache if it ends later. No thread is
        started per load: in threads, the caller that runs the loader returns when it does
        (under asyncio the load is a task, and every caller stops at its timeouts).
    max_concurrent_loads:
        At most this many independent loads at once across all keys (``None``: no limit),
        so a miss storm cannot exhaust the loader's backend; each key has only one anyway
        (coalescing), and a failing key is throttled. Callers beyond it wait up to
        ``load_wait`` seconds for a slot, then fail (``LoadGateTimeout``) or, with a stale
        value, get that. Loads nested in a load (a loader calling the cache) run on its
        slot (``core/nesting.py``).
    max_loads_per_second:
        At most this many loader calls per second (a number, or ``RateLimit(rate,
        burst=...)``), for a backend that must not see more (``None``: no limit). A bulk
        load is one call, as is a refresh. A caller over the limit waits for its turn up to
        ``load_wait`` seconds (or its ``hard_timeout`` if shorter), then gets its stale
        value with ``fail_safe``, or ``LoadRateLimited`` (a ``LoadGateTimeout``). Counted
        in ``stats().loads_delayed`` and ``stats().loads_rate_limited``.
    load_wait:
        Seconds a load waits for a slot (``max_concurrent_loads``) and for its turn
        (``max_loads_per_second``), in all; ``None``: as long as it takes.
    fleet_single_flight:
        One load per key across every instance sharing the shared layer, not one per
        process: the first instance to take the key's lease in Redis loads it, the others
        wait until its backplane says the value is there, then read it from the shared
        layer (``core/fleetflight.py``). Needs the cache's backplane (``backplane=``) and
        a write-through shared layer. Per call: ``get_or_load(...,
        fleet_single_flight=True)``, ``get_or_load_many``, ``@cached`` alike.
    fleet_lease:
        Seconds a fleet lease lasts: an instance that dies while loading holds the key for
        at most this long, then another takes over. Make it longer than a load takes: a
        load still running when its lease ends may be repeated by another instance.
    """

    stale_while_revalidate: bool = True
    fail_safe: bool = True
    fail_safe_throttle: float = 10.0
    soft_timeout: float | None = None
    hard_timeout: float | None = None
    max_concurrent_loads: int | None = None
    load_wait: float | None = 10.0
    max_loads_per_second: RateLimit | float | None = None
    fleet_single_flight: bool = False
    fleet_lease: float = 10.0

    def __post_init__(self) -> None:
        if type(self.fleet_single_flight) is not bool:
            raise TypeError(
                f"fleet_single_flight must be True or False, got {self.fleet_single_flight!r}"
            )
        _wait_seconds(self.fleet_lease, "fleet_lease", finite=True)
        if not self.fleet_lease >= 0.01:
            raise ValueError(f"fleet_lease must be at least 0.01 seconds, got {self.fleet_lease!r}")
        ttl_seconds(self.fail_safe_throttle, "fail_safe_throttle")
        rate = RateLimit.of(self.max_loads_per_second, "max_loads_per_second")
        object.__setattr__(self, "max_loads_per_second", rate)
        if self.load_wait is not None:
            _wait_seconds(self.load_wait, "load_wait", finite=False)
        limit = self.max_concurrent_loads
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValueError(f"max_concurrent_loads must be an int >= 1 or None, got {limit!r}")
        for name in ("soft_timeout", "hard_timeout"):
            value = getattr(self, name)
            if value is not None and not _fraction(value) > 0:
                raise ValueError(f"{name} must be > 0 seconds or None, got {value!r}")
        if self.soft_timeout and self.hard_timeout and self.hard_timeout < self.soft_timeout:
            raise ValueError("hard_timeout must not be shorter than soft_timeout")


def jittered(seconds: float | None, jitter: float, rng: random.Random) -> float | None:
    """``seconds`` shortened by a random fraction up to ``jitter`` (never lengthened;
    unchanged when 0, inf or None)."""
    if seconds is None or seconds in (0.0, math.inf) or not jitter:
        return seconds
    return seconds * (1 - jitter * rng.random())
