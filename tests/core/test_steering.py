"""What a policy change does to the state machines it replaces: a breaker and a rate limit
go on from where they were (``update_policy``), over an injected clock."""

from __future__ import annotations

from multilayercache.core.breaker import BreakerPolicy, BreakerState, CircuitBreaker, NodeBreakers
from multilayercache.core.ratelimit import RateLimit, RateLimiter

from support import FakeClock


def opened(policy: BreakerPolicy, clock: FakeClock) -> CircuitBreaker:
    breaker = CircuitBreaker(policy, clock)
    while breaker.state is BreakerState.CLOSED:
        assert breaker.allow()
        breaker.record_failure()
    return breaker


def test_an_open_breaker_stays_open_until_its_cooldown_ends_then_probes_by_the_new_policy():
    clock = FakeClock()
    breaker = opened(BreakerPolicy(failures=2, cooldown=1.0, max_cooldown=4.0), clock)
    assert not breaker.allow()  # counted as rejected
    clock.advance(0.5)
    renewed = breaker.with_policy(BreakerPolicy(failures=10, cooldown=2.0, max_cooldown=8.0))
    # The layer is still known to be down: the new policy does not let a call through now.
    assert renewed.state is BreakerState.OPEN and not renewed.allow()
    assert renewed.probe_in == 0.5
    assert (renewed.opened, renewed.rejected) == (1, 2)  # counters go on, never back
    clock.advance(0.5)
    assert renewed.allow()  # the probe
    renewed.record_failure()  # fails: open again, for a cool-down grown within the new bounds
    assert renewed.state is BreakerState.OPEN and renewed.probe_in == 4.0
    assert renewed.opened == 2


def test_a_shorter_max_cooldown_cuts_the_open_time():
    clock = FakeClock()
    breaker = opened(BreakerPolicy(failures=1, cooldown=30.0, max_cooldown=30.0), clock)
    renewed = breaker.with_policy(BreakerPolicy(failures=1, cooldown=0.5, max_cooldown=1.0))
    assert renewed.probe_in == 1.0
    clock.advance(1.0)
    assert renewed.state is BreakerState.HALF_OPEN and renewed.allow()
    renewed.record_success()
    assert renewed.state is BreakerState.CLOSED


def test_a_closed_breaker_keeps_its_failures_when_the_window_is_as_long():
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(failures=5), clock)
    for _ in range(3):
        breaker.allow()
        breaker.record_failure()
    kept = breaker.with_policy(BreakerPolicy(failures=4))
    assert kept.stats().failures_in_window == 3
    kept.allow()
    kept.record_failure()  # the 4th failure within the window: open
    assert kept.state is BreakerState.OPEN
    fresh = breaker.with_policy(BreakerPolicy(failures=4, window=30.0))
    assert fresh.stats().failures_in_window == 0 and fresh.state is BreakerState.CLOSED
    assert breaker.stats().failures_in_window == 3  # the old one is left as it was


def test_a_half_open_breaker_lets_a_new_probe_go():
    clock = FakeClock()
    breaker = opened(BreakerPolicy(failures=1), clock)
    clock.advance(0.5)
    assert breaker.allow()  # a probe out on the old breaker
    renewed = breaker.with_policy(BreakerPolicy(failures=3))
    assert renewed.state is BreakerState.HALF_OPEN and renewed.allow()


def test_node_breakers_each_go_on():
    clock = FakeClock()
    breakers = NodeBreakers(BreakerPolicy(failures=1), clock)
    breakers.of("a").allow()
    breakers.of("a").record_failure()
    breakers.of("b").allow()
    renewed = breakers.with_policy(BreakerPolicy(failures=3))
    assert renewed.of("a").state is BreakerState.OPEN
    assert renewed.of("b").state is BreakerState.CLOSED
    assert renewed.of("a").policy.failures == 3


def test_a_new_rate_limit_hands_out_no_fresh_burst_and_keeps_its_counts():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(10, burst=5), clock=clock)
    for _ in range(5):
        assert limiter.try_take() == 0.0
    assert limiter.try_take() > 0
    limiter.count("reads_skipped")
    renewed = limiter.with_limit(RateLimit(100, burst=50))
    assert renewed.try_take() > 0  # the bucket was empty: still empty
    clock.advance(0.1)  # 10 tokens at the new rate
    granted = sum(renewed.try_take() == 0.0 for _ in range(20))
    assert granted == 10
    stats = renewed.stats()
    assert (stats.rate, stats.burst, stats.calls, stats.reads_skipped) == (100, 50, 15, 1)


def test_a_smaller_burst_caps_the_tokens_held():
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(10, burst=10), clock=clock)
    renewed = limiter.with_limit(RateLimit(10, burst=2))
    assert [renewed.try_take() == 0.0 for _ in range(3)] == [True, True, False]
