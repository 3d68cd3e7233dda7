"""Rate limits and hot-key protection, as IO-free state (the waiting lives in
``multilayercache.sync.retry`` / ``multilayercache.aio.retry``).

* ``TokenBucket``: at most ``rate`` operations per second on average, ``burst`` at once,
  over an injected clock. ``RateLimit`` is how a user asks for one (``LayerPolicy
  (rate_limit=...)``, ``LoadOptions(max_loads_per_second=...)``), ``RateLimiter`` one
  bucket shared by a manager's threads or tasks, with what it refused or delayed.
* ``KeyThrottle``: a key whose load or refresh just failed is not tried again for
  ``throttle`` seconds, so one hot key whose loader fails cannot hammer the loader (or a
  layer) with every request. Bounded memory.
* ``LoadLimit``: the count of loads in flight against a maximum, so a miss storm cannot
  exhaust the loader: ``try_enter`` / ``leave``. ``LoadGate`` (sync and asyncio) waits
  for a free slot around it.

Not thread-safe, on purpose, like the rest of the core: callers serialize access (a
``threading.Lock`` on the sync side, one event loop under asyncio).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from .errors import (
    LoadGateTimeout,  # defined with the other errors; importable from here too
    LoadRateLimited,
)

_ROUNDING = 1e-9
"""Tokens short of a request that still let it pass: refilling from clock differences
(``1000.05 - 1000.0`` is ``0.04999...``) would otherwise leave 4.9999999 tokens where 5
are due."""


class TokenBucket:
    """A token bucket: holds up to ``burst`` tokens and gains ``rate`` per second; an
    operation that costs ``n`` tokens goes only if the bucket holds them. It starts full.
    Over any period of ``t`` seconds it grants at most ``burst + rate * t`` tokens.

    >>> now = [0.0]
    >>> bucket = TokenBucket(rate=10, burst=2, clock=lambda: now[0])
    >>> bucket.try_acquire(), bucket.try_acquire(), bucket.try_acquire()
    (True, True, False)
    >>> round(bucket.wait_time(), 3)                 # one token comes every 0.1 s
    0.1
    >>> now[0] += 0.1
    >>> bucket.try_acquire()
    True
    """

    __slots__ = ("rate", "burst", "clock", "_tokens", "_updated", "granted", "denied")

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not 0 < rate < math.inf:
            raise ValueError(f"rate must be a positive number per second, got {rate}")
        # Default: one second's worth, and at least one token so that n=1 can ever pass.
        burst = max(1.0, float(rate)) if burst is None else float(burst)
        if not 0 < burst < math.inf:
            raise ValueError(f"burst must be a positive number of tokens, got {burst}")
        self.rate = float(rate)
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._updated = clock()
        self.granted = 0
        """Operations let through."""
        self.denied = 0
        """Operations refused by ``try_acquire``."""

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now."""
        self._refill()
        return self._tokens

    def try_acquire(self, n: float = 1) -> bool:
        """Take ``n`` tokens if the bucket holds them (True), else take none (False).
        ``n`` larger than ``burst`` can never pass: ``ValueError``."""
        self._check(n)
        self._refill()
        if self._tokens >= n - _ROUNDING:
            self._tokens = max(0.0, self._tokens - n)
            self.granted += 1
            return True
        self.denied += 1
        return False

    def wait_time(self, n: float = 1) -> float:
        """Seconds until ``n`` tokens will be there (0: now). Nothing is reserved: another
        caller may take them first, so wait, then ``try_acquire`` again."""
        self._check(n)
        self._refill()
        missing = n - self._tokens
        return 0.0 if missing <= _ROUNDING else missing / self.rate

    def _check(self, n: float) -> None:
        if not 0 <= n <= self.burst:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self.burst}")

    def _refill(self) -> None:
        now = self.clock()
        elapsed = now - self._updated
        if elapsed > 0:  # a clock read twice in the same instant (or stepping back) adds none
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._updated = now


class KeyThrottle:
    """Per-key throttling of failed loads: after ``failed(key, now)``, ``allow(key, t)``
    is False until ``t >= now + throttle``. ``now`` is passed in (monotonic seconds) because
    a plan reads the clock once for a whole batch of keys.

    Memory: the keys that failed within the last ``throttle`` seconds, at most
    ``max_keys`` of them. They are kept in an ``OrderedDict`` in the order they failed,
    which is also the order in which they are allowed again: expired keys are dropped from
    the front as time passes (amortized O(1) per call), and when more than ``max_keys``
    keys fail within ``throttle`` seconds the oldest failure is forgotten first: that key
    is retried a little early, the mildest way to be wrong. Each key keeps the ``reason``
    given with its failure (the manager keeps the exception, to raise it again).

    >>> throttle = KeyThrottle(throttle=1.0)
    >>> throttle.allow("user:1", now=0.0)
    True
    >>> throttle.failed("user:1", now=0.0)
    >>> throttle.allow("user:1", now=0.5), throttle.retry_in("user:1", now=0.5)
    (False, 0.5)
    >>> throttle.allow("user:1", now=1.0)
    True
    """

    __slots__ = ("throttle", "max_keys", "failed_at", "_reasons", "throttled")

    def __init__(self, throttle: float, max_keys: int = 10_000) -> None:
        if not 0 <= throttle < math.inf:
            raise ValueError(f"throttle must be seconds >= 0, got {throttle}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.throttle = float(throttle)
        self.max_keys = max_keys
        self.failed_at: OrderedDict[Hashable, float] = OrderedDict()
        """When each key's last load failed, oldest first (empty: no key is held off)."""
        self._reasons: dict[Hashable, Any] = {}
        self.throttled = 0
        """Times ``allow`` said no."""

    def __len__(self) -> int:
        """Keys remembered (some may have expired since the last call)."""
        return len(self.failed_at)

    def allow(self, key: Hashable, now: float) -> bool:
        """May ``key`` be loaded (refreshed) now?"""
        if self.retry_in(key, now) > 0:
            self.throttled += 1
            return False
        return True

    def retry_in(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may be loaded again (0: now)."""
        self._expire(now)
        failed_at = self.failed_at.get(key)
        if failed_at is None:
            return 0.0
        # Checked per key, so a caller passing a slightly older ``now`` than the last one
        # (threads racing for the lock) only delays when an entry is dropped.
        return max(0.0, failed_at + self.throttle - now)

    def failed(self, key: Hashable, now: float, reason: Any = None) -> None:
        """A load (refresh) of ``key`` failed at ``now``: hold it off for ``throttle``.
        ``reason`` (the failure, say) is kept with it, for ``reason``."""
        self._expire(now)  # first, so that only a key still held off can be forgotten
        self.failed_at[key] = now
        self.failed_at.move_to_end(key)
        self._reasons[key] = reason
        if len(self.failed_at) > self.max_keys:
            forgotten, _ = self.failed_at.popitem(last=False)
            del self._reasons[forgotten]

    def reason(self, key: Hashable) -> Any:
        """What ``failed`` was told about the key's last failure (``None`` if nothing, or
        if the key is not held off)."""
        return self._reasons.get(key)

    def succeeded(self, key: Hashable) -> None:
        """A load of ``key`` succeeded: forget its failure."""
        self.failed_at.pop(key, None)
        self._reasons.pop(key, None)

    def _expire(self, now: float) -> None:
        entries = self.failed_at
        while entries:
            key, failed_at = next(iter(entries.items()))
            if failed_at + self.throttle > now:
                break
            del entries[key]
            del self._reasons[key]


class LoadLimit:
    """How many loads are in flight, against ``max_in_flight``: ``try_enter()`` takes a
    slot if one is free, ``leave()`` gives it back.

    >>> limit = LoadLimit(2)
    >>> limit.try_enter(), limit.try_enter(), limit.try_enter()
    (True, True, False)
    >>> limit.leave(); limit.try_enter()
    True
    """

    __slots__ = ("max_in_flight", "in_flight", "peak", "entered")

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.peak = 0
        """The most loads that were ever in flight at once."""
        self.entered = 0
        """Slots taken in all."""

    @property
    def full(self) -> bool:
        return self.in_flight >= self.max_in_flight

    def try_enter(self) -> bool:
        """Take a slot (True), or False if all ``max_in_flight`` are taken."""
        if self.in_flight >= self.max_in_flight:
            return False
        self.in_flight += 1
        self.entered += 1
        self.peak = max(self.peak, self.in_flight)
        return True

    def leave(self) -> None:
        """Give a slot back. Leaving more often than entering is a bug: ``RuntimeError``."""
        if self.in_flight <= 0:
            raise RuntimeError("LoadLimit.leave() without a matching try_enter()")
        self.in_flight -= 1

    def forget_in_flight(self) -> None:
        """Count no slot as taken: in a forked child, whose copy of the limit counts the
        slots of its parent's threads or tasks, which it does not have."""
        self.in_flight = 0


@dataclass(frozen=True)
class RateLimit:
    """A rate limit: ``rate`` calls per second on average, at most ``burst`` at once (a
    bucket of ``burst`` tokens that gains ``rate`` per second, full at the start).

    ``burst`` defaults to a tenth of a second's worth (at least 1): a limit of 1,000/s
    then lets at most 1,100 calls through in any one second, so the limit holds over short
    windows, not only on average. Give a larger ``burst`` to absorb spikes.

    >>> RateLimit(1000)
    RateLimit(rate=1000.0, burst=100.0)
    """

    rate: float
    burst: float | None = None

    def __post_init__(self) -> None:
        rate = _positive(self.rate, "rate")
        burst = max(1.0, rate / 10) if self.burst is None else _positive(self.burst, "burst")
        if burst < 1:
            raise ValueError(f"RateLimit burst must be at least 1 token, got {self.burst!r}")
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "burst", burst)

    @classmethod
    def of(cls, value: RateLimit | float | None, what: str) -> RateLimit | None:
        """``value`` as a ``RateLimit`` (a number is a rate with the default burst), or
        ``None``; a bad one raises naming ``what`` (the argument it was given as)."""
        if value is None or isinstance(value, RateLimit):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"{what} must be a number of calls per second or a RateLimit(rate, burst=...), "
                f"got {value!r}"
            )
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"{what} must be a positive finite number of calls per second, got {value!r}"
            ) from None


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"RateLimit {what} must be a number, got {value!r}")
    if not 0 < value < math.inf:  # (NaN fails this too)
        raise ValueError(f"RateLimit {what} must be a positive finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RateLimitStats:
    """What a layer's rate limit did (``stats().rate_limits[name]``), since the cache was
    created."""

    rate: float
    burst: float
    calls: int
    """Calls let through (each took a token)."""
    reads_skipped: int
    """Reads that found no token: not sent, a miss of this layer (the next layer or the
    loader answered)."""
    writes_skipped: int
    """Cache fills (a value copied up, a loaded value written back) that found no token:
    not written into this layer. Nothing the caller asked to write."""
    writes_delayed: int
    """Writes that waited for a token (``set``, ``delete``, a write-behind batch, ...)."""
    writes_refused: int
    """Writes that found no token within ``rate_limit_wait``: ``LayerRateLimited`` was
    raised, nothing was written."""


class RateLimiter:
    """One ``TokenBucket`` shared by a manager's threads (or tasks): every access under
    ``lock`` (the manager's, see ``share_lock``), and counts of what it let through,
    delayed, skipped or refused. The waiting is the drivers' (``sync.retry`` /
    ``aio.retry``: ``wait_for_token``).

    >>> now = [0.0]
    >>> limiter = RateLimiter(RateLimit(10, burst=1), clock=lambda: now[0])
    >>> limiter.try_take(), round(limiter.try_take(), 3)   # a token; then 0.1 s to wait
    (0.0, 0.1)
    """

    __slots__ = (
        "limit", "bucket", "_lock", "reads_skipped", "writes_skipped", "delayed", "refused",
    )  # fmt: skip

    def __init__(
        self,
        limit: RateLimit,
        lock: AbstractContextManager[Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.bucket = TokenBucket(limit.rate, limit.burst, clock)
        self._lock: AbstractContextManager[Any] = lock or nullcontext()
        self.reads_skipped = 0
        self.writes_skipped = 0
        self.delayed = 0
        """Calls that waited for their token."""
        self.refused = 0
        """Calls that found no token within their wait."""

    def share_lock(self, lock: AbstractContextManager[Any]) -> None:
        """Serialize access with ``lock`` (the manager's; a new one in a forked child)."""
        self._lock = lock

    def try_take(self) -> float:
        """Take a token: ``0.0`` if one was there, else the seconds until one may be
        (nothing is reserved: try again then; another caller may take it first)."""
        with self._lock:
            bucket = self.bucket
            if bucket.try_acquire():
                return 0.0
            # try_acquire counted a denial; a caller that waits and gets one later is
            # counted as delayed instead (``bucket.denied`` is not reported).
            return max(bucket.wait_time(), 1e-6)

    def count(self, what: str) -> None:
        """Count one call ``"delayed"``, ``"refused"``, ``"reads_skipped"`` or
        ``"writes_skipped"``."""
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def refuse_load(self, waited: float | None) -> LoadRateLimited:
        """The error for a load that got no token within ``waited`` seconds (counted)."""
        self.count("refused")
        within = f"within {waited:g} s" if waited else "at once"
        return LoadRateLimited(
            f"no load allowed {within}: at most {self.limit.rate:g} loads per second "
            "(LoadOptions.max_loads_per_second)"
        )

    def with_limit(self, limit: RateLimit) -> RateLimiter:
        """A limiter for ``limit`` that goes on from this one (``update_policy``; called
        under its lock): its counts, and the tokens its bucket holds now (at most the new
        burst), so that a change of limit hands out no fresh burst."""
        renewed = RateLimiter(limit, self._lock, self.bucket.clock)
        bucket = renewed.bucket
        bucket._tokens = min(self.bucket.tokens, bucket.burst)
        bucket.granted, bucket.denied = self.bucket.granted, self.bucket.denied
        for counter in ("reads_skipped", "writes_skipped", "delayed", "refused"):
            setattr(renewed, counter, getattr(self, counter))
        return renewed

    def stats(self) -> RateLimitStats:
        return RateLimitStats(
            rate=self.limit.rate,
            burst=float(self.limit.burst or 1),
            calls=self.bucket.granted,
            reads_skipped=self.reads_skipped,
            writes_skipped=self.writes_skipped,
            writes_delayed=self.delayed,
            writes_refused=self.refused,
        )


__all__ = [
    "KeyThrottle",
    "LoadGateTimeout",
    "LoadLimit",
    "RateLimit",
    "RateLimitStats",
    "RateLimiter",
    "TokenBucket",
]
