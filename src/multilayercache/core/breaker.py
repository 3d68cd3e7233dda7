"""A circuit breaker per layer: a pure state machine over an injected clock.

When a layer's backend is down, every call to it costs a connect or read timeout before it
fails. The breaker notices a run of failures and then *opens*: calls are refused at once
(the manager skips the layer, L1 keeps serving) until a cool-down has passed. Then it is
*half-open*: a few probe calls go through; if they succeed it *closes* again, if one fails
it reopens for a longer cool-down.

::

    CLOSED --(failures >= N within W seconds [and failure rate >= R])--> OPEN
    OPEN   --(cool-down elapsed)----------------------------------------> HALF_OPEN
    HALF_OPEN --(M probe successes)--> CLOSED
    HALF_OPEN --(a probe fails)------> OPEN, with the cool-down multiplied (capped)

The protocol for one call::

    if not breaker.allow():            # refused: skip the layer, no IO at all
        ...
    try:
        result = backend_call()
    except TransientError:             # the backend is unwell: counts
        breaker.record_failure()
    except Exception:                  # bad input, a value that cannot be encoded: the
        breaker.release()              # backend is fine, so this must not count
        raise
    else:
        breaker.record_success()

After ``allow()`` returned True, report exactly one of ``record_success``,
``record_failure`` or ``release``. **The caller decides what is a failure**: only errors
that say the backend is unavailable (connection refused, timeouts) should be recorded as
failures; a serialization error or a bad argument says nothing about the backend and must
be released, or the breaker would open on bad data.

**Not thread-safe, on purpose**: the core knows nothing about threads. The sync side calls
it under a ``threading.Lock``; asyncio code calls it from one event loop (no await inside
a call, so no lock is needed there).

Why these defaults (``BreakerPolicy()``), and how they improve on FusionCache, whose
breaker opens on a single error for a fixed duration and has no half-open probe:

* **Open after 5 failures within 10 s.** One error is not an outage: a pooled connection
  the server closed, one slow reply. Opening on it (FusionCache) throws away L2 hits for a
  whole break duration on a blip. Five failures within 10 s is what a dead server produces
  within milliseconds under any real load (every call fails), yet background noise rarely
  reaches it. The window is counted in 10 buckets of 1 s (Hystrix's rolling window), so
  memory is constant whatever the call rate.
* **Optional failure rate** (``failure_rate=0.5``: also require that half the calls in the
  window failed), off by default. Turn it on for busy layers where a few errors per 10 s
  among thousands of successes are normal and must not open the breaker. Its *minimum
  number of calls* is the failure threshold itself: it takes ``failures`` failures to open
  anyway, so a rate is never judged on fewer calls than that.
* **A short cool-down: 0.5 s, doubling on each failed probe, capped at 1 s.** An open L2
  costs L2 hits (the loader gets the misses), so the breaker should notice a restarted
  server quickly: with the cap at 1 s, L2 hits resume at most about 1 s after the server is
  back (issue 9 asks for 2 s). A probe costs one call one timeout, so one probe per second
  per process to a dead server is negligible. For a remote or expensive backend, raise
  ``max_cooldown`` (e.g. 30 s).
* **One probe at a time, one success closes.** One probe is enough to find out, and a
  single success on a server that answered nothing before is strong evidence; a server
  that flaps reopens after ``failures`` more failures. ``probes`` / ``successes`` raise
  both for backends that come back slowly.
* **A lost probe is forgotten after 10 s** (``probe_timeout``): a probe whose outcome is
  never reported (a caller that forgot, or died) must not leave the breaker half-open and
  refusing everything forever.

Deterministic: given the same clock readings and calls it makes the same decisions.

**One breaker per cluster node** (``NodeBreakers``). On a Redis Cluster a dead node fails
the calls of its own slots only: one breaker for the whole layer would open on them and
refuse the keys of the healthy nodes too (every read of the cluster a miss, a loader storm,
for one node of three down). So a cluster layer has one breaker per node for the calls of
one key (their node is known before the call, from the client's slot map), and the layer's
breaker for the calls that span nodes (``get_many``, ``set_many``, ``clear``, write-behind
batches): those fail while any of their nodes is down, so their breaker opens and they are
refused (misses, a batch that waits) until the node is back, while the single-key calls of
the healthy nodes go on. Nodes are named as the client names them (``host:port``), and a
node's breaker is made on its first call: a failover's new primary starts closed.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

WINDOW_BUCKETS = 10
"""The failure window is counted in this many buckets (``window / 10`` seconds each)."""


class BreakerState(StrEnum):
    """Where a breaker is. The values are metric labels."""

    CLOSED = "closed"
    """Calls go through; failures are counted."""
    OPEN = "open"
    """Calls are refused until the cool-down ends."""
    HALF_OPEN = "half_open"
    """A limited number of probe calls go through to test the backend."""


@dataclass(frozen=True)
class BreakerPolicy:
    """When a ``CircuitBreaker`` opens and how it recovers (see the module docstring for
    why these defaults).

    failures:
        Failures within ``window`` seconds that open the breaker (at least 1).
    window:
        Seconds over which failures are counted (in ``WINDOW_BUCKETS`` buckets, so a
        failure counts for between ``0.9 * window`` and ``window`` seconds).
    failure_rate:
        ``None`` (default): the count alone opens. A fraction in (0, 1]: the failures must
        also be at least this share of the calls recorded in the window.
    cooldown:
        Seconds the breaker stays open before it lets a probe through.
    cooldown_growth:
        The cool-down is multiplied by this after each failed probe (1: fixed)...
    max_cooldown:
        ...up to this many seconds. It returns to ``cooldown`` once the breaker closes.
    probes:
        Probe calls allowed in flight at once while half-open.
    successes:
        Probe successes that close the breaker.
    probe_timeout:
        Seconds after which a probe whose outcome was never reported is written off, so
        that new probes may go (``math.inf``: never).

    >>> BreakerPolicy(failures=3, cooldown=2.0, max_cooldown=30.0).failures
    3
    """

    failures: int = 5
    window: float = 10.0
    failure_rate: float | None = None
    cooldown: float = 0.5
    cooldown_growth: float = 2.0
    max_cooldown: float = 1.0
    probes: int = 1
    successes: int = 1
    probe_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError(f"failures must be at least 1, got {self.failures}")
        if not 0 < self.window < math.inf:
            raise ValueError(f"window must be a positive number of seconds, got {self.window}")
        if self.failure_rate is not None and not 0 < self.failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1] or None, got {self.failure_rate}")
        if not 0 <= self.cooldown <= self.max_cooldown < math.inf:
            raise ValueError(
                f"need 0 <= cooldown <= max_cooldown < inf, got cooldown={self.cooldown}, "
                f"max_cooldown={self.max_cooldown}"
            )
        if self.cooldown_growth < 1:
            raise ValueError(f"cooldown_growth must be at least 1, got {self.cooldown_growth}")
        if self.probes < 1 or self.successes < 1:
            raise ValueError(
                f"probes and successes must be at least 1, got {self.probes}, {self.successes}"
            )
        if not self.probe_timeout > 0:
            raise ValueError(f"probe_timeout must be positive, got {self.probe_timeout}")


@dataclass(frozen=True)
class BreakerStats:
    """A breaker's counters, for ``stats()`` and metrics."""

    state: BreakerState
    opened: int
    """Times the breaker opened (from closed, or again after a failed probe)."""
    rejected: int
    """Calls refused by ``allow()`` (each one a call that did not wait on a dead backend)."""
    probe_in: float
    """Seconds until a probe may go (0 unless open)."""
    cooldown: float
    """The cool-down the breaker uses the next time it opens (or is using now)."""
    failures_in_window: int
    calls_in_window: int


class _RollingWindow:
    """Calls and failures over the last ``span`` seconds, in ``buckets`` fixed buckets.

    Bucket ``e`` holds what happened in ``[e * width, (e + 1) * width)``. At time ``now``
    the window is the current bucket and the ``buckets - 1`` before it: it reaches back
    between ``span - width`` and ``span`` seconds, never more.
    """

    __slots__ = ("width", "calls", "failures", "epoch", "total_calls", "total_failures")

    def __init__(self, span: float, buckets: int) -> None:
        self.width = span / buckets
        self.calls = [0] * buckets
        self.failures = [0] * buckets
        self.epoch: int | None = None  # the bucket number of the newest bucket
        self.total_calls = 0
        self.total_failures = 0

    def add(self, now: float, failed: bool) -> None:
        self._advance(now)
        assert self.epoch is not None
        slot = self.epoch % len(self.calls)
        self.calls[slot] += 1
        self.total_calls += 1
        if failed:
            self.failures[slot] += 1
            self.total_failures += 1

    def counts(self, now: float) -> tuple[int, int]:
        """``(calls, failures)`` within the window ending at ``now``."""
        self._advance(now)
        return self.total_calls, self.total_failures

    def copy(self) -> _RollingWindow:
        """Another window holding the same counts."""
        twin = _RollingWindow.__new__(_RollingWindow)
        twin.width, twin.epoch = self.width, self.epoch
        twin.calls, twin.failures = list(self.calls), list(self.failures)
        twin.total_calls, twin.total_failures = self.total_calls, self.total_failures
        return twin

    def clear(self) -> None:
        buckets = len(self.calls)
        self.calls = [0] * buckets
        self.failures = [0] * buckets
        self.total_calls = self.total_failures = 0

    def _advance(self, now: float) -> None:
        epoch = math.floor(now / self.width)
        if self.epoch is None:
            self.epoch = epoch
            return
        if epoch <= self.epoch:  # same bucket (or a clock that stepped back: keep counting)
            return
        buckets = len(self.calls)
        for step in range(1, min(epoch - self.epoch, buckets) + 1):
            slot = (self.epoch + step) % buckets  # a bucket that falls out of the window
            self.total_calls -= self.calls[slot]
            self.total_failures -= self.failures[slot]
            self.calls[slot] = self.failures[slot] = 0
        self.epoch = epoch


class CircuitBreaker:
    """Closed / open / half-open over ``clock`` (monotonic seconds); see the module
    docstring for the protocol and the defaults. Callers serialize access (a lock on the
    sync side).

    >>> now = [0.0]
    >>> breaker = CircuitBreaker(BreakerPolicy(failures=2), clock=lambda: now[0])
    >>> breaker.allow(); breaker.record_failure(); breaker.allow(); breaker.record_failure()
    True
    True
    >>> breaker.state, breaker.allow()            # open: refused at once
    (<BreakerState.OPEN: 'open'>, False)
    >>> now[0] += 0.5                              # the cool-down has passed
    >>> breaker.allow(), breaker.allow()          # one probe goes, the next waits for it
    (True, False)
    >>> breaker.record_success(); breaker.state   # the probe succeeded: closed again
    <BreakerState.CLOSED: 'closed'>
    """

    def __init__(
        self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self._state = BreakerState.CLOSED
        self._window = _RollingWindow(self.policy.window, WINDOW_BUCKETS)
        self._cooldown = self.policy.cooldown
        self._open_until = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._last_probe_at = 0.0
        self.opened = 0
        self.rejected = 0
        self.on_transition: Callable[[BreakerState, BreakerState], None] | None = None
        """Told ``(from, to)`` at every change of state (the manager's events); called
        where the change is made, so it must be quick and must not raise."""

    # ---------------------------------------------------------------- the protocol
    def allow(self) -> bool:
        """May a call go to the backend now? Closed: yes. Open: no (counted in
        ``rejected``). Half-open: yes if a probe slot is free, which this call then holds
        until its outcome is reported."""
        now = self.clock()
        state = self._current_state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes_in_flight < self.policy.probes:
            self._probes_in_flight += 1
            self._last_probe_at = now
            return True
        self.rejected += 1
        return False

    def record_success(self) -> None:
        """An allowed call succeeded."""
        now = self.clock()
        state = self._current_state(now)
        if state is BreakerState.CLOSED:
            self._window.add(now, failed=False)
        elif state is BreakerState.HALF_OPEN and self._probes_in_flight:
            self._probes_in_flight -= 1
            self._probe_successes += 1
            if self._probe_successes >= self.policy.successes:
                self._close()
        # Open (or half-open with no probe out): the outcome of a call allowed before the
        # breaker opened. It says nothing about now, so it changes nothing.

    def record_failure(self) -> None:
        """An allowed call failed *because the backend is unavailable* (not for bad input:
        see ``release``)."""
        now = self.clock()
        state = self._current_state(now)
        if state is BreakerState.CLOSED:
            self._window.add(now, failed=True)
            calls, failures = self._window.counts(now)
            rate = self.policy.failure_rate
            if failures >= self.policy.failures and (rate is None or failures >= rate * calls):
                self._open(now)
        elif state is BreakerState.HALF_OPEN and self._probes_in_flight:
            self._cooldown = min(
                self.policy.max_cooldown, self._cooldown * self.policy.cooldown_growth
            )
            self._open(now)

    def release(self) -> None:
        """An allowed call ended in a way that says nothing about the backend (a
        serialization error, a bad argument, a cancelled call): give back its probe slot
        without counting it."""
        if self._current_state(self.clock()) is BreakerState.HALF_OPEN and self._probes_in_flight:
            self._probes_in_flight -= 1

    # ---------------------------------------------------------------- reading it
    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose cool-down has passed reads half-open)."""
        return self._current_state(self.clock())

    @property
    def probe_in(self) -> float:
        """Seconds until ``allow()`` may let a probe through (0 unless open)."""
        return self._probe_in(self.clock())

    def stats(self) -> BreakerStats:
        """The counters and the state now."""
        now = self.clock()
        calls, failures = self._window.counts(now)
        return BreakerStats(
            state=self._current_state(now),
            opened=self.opened,
            rejected=self.rejected,
            probe_in=self._probe_in(now),
            cooldown=self._cooldown,
            failures_in_window=failures,
            calls_in_window=calls,
        )

    def reset(self) -> None:
        """Close the breaker and forget the failures (an operator's override; counters
        are kept)."""
        self._close()

    def forget_probes(self) -> None:
        """Let new probes go: the ones in flight will never report (a forked child's copy
        of the breaker, whose probes were its parent's calls)."""
        self._probes_in_flight = 0

    def with_policy(self, policy: BreakerPolicy) -> CircuitBreaker:
        """A breaker with ``policy`` that goes on from where this one is, for a policy
        changed on a running cache (``update_policy``). It keeps the counters (``opened``,
        ``rejected``: metrics never go backwards). Open, it stays open until the current
        cool-down ends (sooner if the new ``max_cooldown`` is shorter), then probes as the
        new policy says: a layer known to be down is not hammered because its policy
        changed. Half-open, it lets new probes go (the outcome of a probe already out is
        reported to this breaker, and lost). Closed, it keeps the failures of its window
        when the window is as long, else counts afresh. Its later cool-downs grow from the
        current one, within the new bounds."""
        now = self.clock()
        state = self._current_state(now)
        renewed = CircuitBreaker(policy, self.clock)
        renewed.opened, renewed.rejected = self.opened, self.rejected
        if state is BreakerState.CLOSED:
            if policy.window == self.policy.window:
                renewed._window = self._window.copy()
            return renewed
        renewed._state = state
        renewed._cooldown = min(max(self._cooldown, policy.cooldown), policy.max_cooldown)
        if state is BreakerState.OPEN:
            renewed._open_until = min(self._open_until, now + policy.max_cooldown)
        return renewed

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state.value}, opened {self.opened} times>"

    # ---------------------------------------------------------------- transitions
    def _current_state(self, now: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now >= self._open_until:
            self._move_to(BreakerState.HALF_OPEN)
            self._probes_in_flight = self._probe_successes = 0
        elif (
            self._state is BreakerState.HALF_OPEN
            and self._probes_in_flight
            and now - self._last_probe_at >= self.policy.probe_timeout
        ):
            self._probes_in_flight = 0  # lost probes: let new ones go
        return self._state

    def _probe_in(self, now: float) -> float:
        if self._current_state(now) is not BreakerState.OPEN:
            return 0.0
        # Capped by the cool-down it opened with: (now + c) - now can round to just above c.
        return min(self._cooldown, self._open_until - now)

    def _move_to(self, state: BreakerState) -> None:
        before, self._state = self._state, state
        if before is not state and self.on_transition is not None:
            self.on_transition(before, state)

    def _open(self, now: float) -> None:
        self._move_to(BreakerState.OPEN)
        self._open_until = now + self._cooldown
        self._window.clear()
        self.opened += 1

    def _close(self) -> None:
        self._move_to(BreakerState.CLOSED)
        self._cooldown = self.policy.cooldown
        self._window.clear()
        self._probes_in_flight = self._probe_successes = 0


class NodeBreakers:
    """A ``CircuitBreaker`` per node of a cluster, each made on the node's first call, all
    with the same policy and clock (see "One breaker per cluster node" above). Callers
    serialize access, as for a single breaker.

    >>> now = [0.0]
    >>> breakers = NodeBreakers(BreakerPolicy(failures=1), clock=lambda: now[0])
    >>> dead = breakers.of("10.0.0.1:6379")
    >>> dead.allow(); dead.record_failure()
    True
    >>> breakers.of("10.0.0.1:6379").allow(), breakers.of("10.0.0.2:6379").allow()
    (False, True)
    """

    def __init__(
        self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self._by_node: dict[str, CircuitBreaker] = {}
        self.on_transition: Callable[[str, BreakerState, BreakerState], None] | None = None
        """Told ``(node, from, to)`` at every change of a node breaker's state."""

    def of(self, node: str) -> CircuitBreaker:
        """The breaker of ``node`` (made closed on its first call)."""
        breaker = self._by_node.get(node)
        if breaker is None:
            breaker = self._by_node[node] = CircuitBreaker(self.policy, self.clock)
            if self.on_transition is not None:
                breaker.on_transition = functools.partial(self.on_transition, node)
        return breaker

    def stats(self) -> dict[str, BreakerStats]:
        """Each node's breaker, by node name."""
        return {node: breaker.stats() for node, breaker in self._by_node.items()}

    def with_policy(self, policy: BreakerPolicy) -> NodeBreakers:
        """``CircuitBreaker.with_policy`` for every node."""
        renewed = NodeBreakers(policy, self.clock)
        renewed._by_node = {node: b.with_policy(policy) for node, b in self._by_node.items()}
        return renewed

    def forget_probes(self) -> None:
        """``CircuitBreaker.forget_probes`` for every node (in a forked child)."""
        for breaker in self._by_node.values():
            breaker.forget_probes()

    def __len__(self) -> int:
        return len(self._by_node)


__all__ = [
    "WINDOW_BUCKETS",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "NodeBreakers",
]
