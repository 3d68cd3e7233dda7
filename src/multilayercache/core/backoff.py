"""Retry with exponential backoff and full jitter: the policy, and the IO-free state of one
call's retries. The waiting is done by ``multilayercache.sync.retry`` (``time.sleep``) and
``multilayercache.aio.retry`` (``await asyncio.sleep``).

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015): the delay
before retry ``n`` (0 for the first retry) is

    delay = rng.uniform(0, min(cap, base * 2 ** n))

Spreading each delay over the whole range, rather than sleeping ``base * 2 ** n`` plus a
little noise, is what keeps many clients that failed together from retrying together: the
blog measured it to do the least total work of the schemes it compared.

One policy serves the Redis layers, the loaders and (later) the write-behind queue; each
passes its own ``retry_on`` predicate, because only the caller knows which errors are
transient. ``caused_by(*types)`` builds one that also looks through ``raise ... from``
chains, since the layers wrap redis-py's errors in ``LayerError``::

    RetryPolicy(retry_on=caused_by(redis.ConnectionError, redis.TimeoutError))

(built in the Redis layer: the core never imports redis.) Errors that are not transient
(bad input, serialization) are never retried, and must not count as breaker failures
either (see ``multilayercache.core.breaker``).

How this relates to redis-py's ``redis.backoff`` / ``redis.retry``. redis-py retries
inside the client, per connection: ``Retry(backoff, retries, supported_errors)``
reconnects and resends on ``ConnectionError`` / ``TimeoutError``. Its
``FullJitterBackoff(cap, base)`` is this formula with the failure count starting at 1, so
``FullJitterBackoff(cap=policy.cap, base=policy.base / 2)`` with
``Retry(..., retries=policy.attempts - 1)`` gives the same delays, drawn from the global
``random`` and with no time budget. That fits connection-level retries of the Redis
layers, and they may use it instead of the drivers' retries; but never both, or the tries
multiply. Note that redis-py 8's default client already retries **10 times** with up to
1 s delays (``ExponentialWithJitterBackoff(base=0.01, cap=1)``): against a refused
loopback port one ``GET`` of such a client took 3.8 s to fail (measured), and a breaker
cannot count a failure before it ends. So a layer that retries itself (or relies on its
breaker) should give its client ``Retry(NoBackoff(), 0)``.
This module adds what redis-py's lacks and the loaders and the write-behind queue need: a
total time budget, an injected ``random.Random`` (reproducible tests), and a predicate.

Why the defaults (``RetryPolicy()``): a cache's calls must be fast, and the breaker, not
the retry loop, handles outages.

* ``attempts=3``: one retry covers the commonest transient error (a pooled connection the
  server closed), a second a brief blip; more would only keep the caller waiting.
* ``base=0.01``: a reconnect to a server on the same network takes about a millisecond, so
  the first retry waits 0-10 ms, the second 0-20 ms.
* ``cap=1.0``: reached only by policies with many attempts (a write-behind queue).
* ``budget=1.0``: no retry starts more than 1 s after the first try, whatever the calls'
  own timeouts: a caller never waits for three timeouts in a row.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Predicate = Callable[[BaseException], bool]


def caused_by(*types: type[BaseException]) -> Predicate:
    """A ``retry_on`` predicate: is the error, or any error in its ``__cause__`` /
    ``__context__`` chain, one of ``types``?

    >>> transient = caused_by(ConnectionError, TimeoutError)
    >>> try:
    ...     try:
    ...         raise ConnectionRefusedError("refused")
    ...     except OSError as error:
    ...         raise RuntimeError("layer failed") from error
    ... except RuntimeError as wrapped:
    ...     transient(wrapped), transient(ValueError("bad input"))
    (True, False)
    """

    def matches(error: BaseException) -> bool:
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:  # chains can loop
            if isinstance(current, types):
                return True
            seen.add(id(current))
            current = current.__cause__ or current.__context__
        return False

    return matches


TRANSIENT: Predicate = caused_by(ConnectionError, TimeoutError)
"""The default ``retry_on``: Python's own ``ConnectionError`` / ``TimeoutError`` (socket
errors) anywhere in the chain. redis-py's errors of the same names are not subclasses of
these: the Redis layers pass ``caused_by(redis.ConnectionError, redis.TimeoutError)``."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a call that failed with a transient error.

    attempts:
        Tries in all, the first included (1: never retry; ``None``: until the budget).
    base, cap:
        Seconds: retry ``n`` (from 0) waits ``uniform(0, min(cap, base * 2 ** n))``.
    budget:
        Seconds after the first try began past which no retry starts (``None``: no
        limit). A delay is shortened so as not to end past it. The whole call can still
        last ``budget`` plus one try.
    retry_on:
        ``retry_on(error) -> bool``: whether an error is transient (worth retrying).

    >>> policy = RetryPolicy(attempts=4, base=0.1, cap=0.3)
    >>> [round(policy.ceiling(n), 3) for n in range(3)]
    [0.1, 0.2, 0.3]
    >>> delays = list(policy.delays(random.Random(7)))
    >>> len(delays), all(0 <= d <= policy.ceiling(n) for n, d in enumerate(delays))
    (3, True)
    """

    attempts: int | None = 3
    base: float = 0.01
    cap: float = 1.0
    budget: float | None = 1.0
    retry_on: Predicate = field(default=TRANSIENT, compare=False)

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1 or None, got {self.attempts}")
        if not 0 <= self.base < math.inf or not 0 <= self.cap < math.inf:
            raise ValueError(f"base and cap must be seconds >= 0, got {self.base}, {self.cap}")
        if self.budget is not None and not self.budget >= 0:
            raise ValueError(f"budget must be seconds >= 0 or None, got {self.budget}")
        if self.attempts is None and self.budget is None:
            raise ValueError("give attempts or a budget (or both): retrying has to stop")
        if not callable(self.retry_on):
            raise TypeError(f"retry_on must be a predicate on errors, got {self.retry_on!r}")

    def ceiling(self, retry: int) -> float:
        """The longest delay before retry ``retry`` (0 for the first retry)."""
        # 2.0 ** 1024 overflows; past 2 ** 1023 any base has long reached any cap.
        return min(self.cap, self.base * 2.0 ** min(retry, 1023))

    def delay(self, retry: int, rng: random.Random, remaining: float = math.inf) -> float:
        """A full-jitter delay before retry ``retry``, at most ``remaining`` seconds."""
        return rng.uniform(0.0, min(self.ceiling(retry), max(0.0, remaining)))

    def delays(self, rng: random.Random) -> Iterator[float]:
        """The delays before each retry, ignoring the budget (``attempts - 1`` of them;
        endless with ``attempts=None``): for a queue that schedules retries rather than
        sleeping through them."""
        retry = 0
        while self.attempts is None or retry < self.attempts - 1:
            yield self.delay(retry, rng)
            retry += 1


class RetryState:
    """The retries of one call: after each failed try, ``next_delay(error, elapsed)``
    says how long to wait before the next try, or ``None`` to give up and raise.

    >>> state = RetryState(RetryPolicy(attempts=3), random.Random(1))
    >>> state.next_delay(ValueError("bad input"), 0.0) is None   # not transient
    True
    >>> state = RetryState(RetryPolicy(attempts=3), random.Random(1))
    >>> [state.next_delay(TimeoutError(), 0.0) is None for _ in range(3)]
    [False, False, True]
    >>> state.retries
    2
    """

    __slots__ = ("policy", "rng", "retries")

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng
        self.retries = 0
        """Retries granted so far (tries made = retries + 1)."""

    def next_delay(self, error: BaseException, elapsed: float) -> float | None:
        """A try failed with ``error``, ``elapsed`` seconds after the first try began:
        seconds to wait before the next try, or ``None`` when the error is not transient,
        the attempts are used up or the budget is spent."""
        policy = self.policy
        if policy.attempts is not None and self.retries + 1 >= policy.attempts:
            return None
        remaining = math.inf if policy.budget is None else policy.budget - elapsed
        if remaining < 0 or not policy.retry_on(error):
            return None
        delay = policy.delay(self.retries, self.rng, remaining)
        self.retries += 1
        return delay


__all__ = ["TRANSIENT", "Predicate", "RetryPolicy", "RetryState", "caused_by"]
