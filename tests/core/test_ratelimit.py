"""Token bucket, per-key throttle and load limit over a fake clock: unit tests and
Hypothesis properties (the bucket never grants more than ``burst + rate * t``; the
throttle holds a failed key off exactly ``throttle`` seconds, within ``max_keys``)."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache.core import ratelimit as ratelimit_module
from multilayercache.core.ratelimit import KeyThrottle, LoadGateTimeout, LoadLimit, TokenBucket

from support import FakeClock

SETTINGS = settings(max_examples=150, deadline=None)


def test_the_docstring_examples_run() -> None:
    assert doctest.testmod(ratelimit_module).failed == 0


# ------------------------------------------------------------------ token bucket
def test_a_bucket_starts_full_and_refills_at_its_rate(clock) -> None:
    bucket = TokenBucket(rate=100, burst=10, clock=clock)
    assert sum(bucket.try_acquire() for _ in range(50)) == 10
    assert bucket.wait_time() == pytest.approx(0.01)
    clock.advance(0.05)
    assert sum(bucket.try_acquire() for _ in range(50)) == 5
    clock.advance(60)
    assert bucket.tokens == 10  # never more than the burst
    assert (bucket.granted, bucket.denied) == (15, 85)


def test_a_bucket_takes_several_tokens_or_none(clock) -> None:
    bucket = TokenBucket(rate=1, burst=5, clock=clock)
    assert bucket.try_acquire(3)
    assert not bucket.try_acquire(3)
    assert bucket.tokens == 2  # the refused request took nothing
    assert bucket.wait_time(3) == pytest.approx(1.0)
    assert bucket.wait_time(2) == 0.0


def test_a_request_larger_than_the_burst_can_never_pass(clock) -> None:
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    with pytest.raises(ValueError, match="cannot take 6 tokens"):
        bucket.try_acquire(6)
    with pytest.raises(ValueError):
        bucket.wait_time(6)


def test_the_default_burst_is_a_seconds_worth_and_at_least_one(clock) -> None:
    assert TokenBucket(rate=50, clock=clock).burst == 50
    assert TokenBucket(rate=0.2, clock=clock).burst == 1


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (float("inf"), 1), (1, 0)])
def test_a_bucket_that_makes_no_sense_is_refused(rate, burst) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)


@SETTINGS
@given(
    rate=st.floats(0.1, 1_000),
    burst=st.floats(1, 100),
    steps=st.lists(
        st.tuples(st.floats(0, 2.0), st.integers(1, 3), st.floats(0.0, 1.0)), max_size=200
    ),
)
def test_a_bucket_never_grants_more_than_burst_plus_rate_times_elapsed(rate, burst, steps) -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=rate, burst=burst, clock=clock)
    granted = 0.0
    for seconds, requests, size in steps:
        clock.advance(seconds)
        n = size * burst
        for _ in range(requests):
            if bucket.try_acquire(n):
                granted += n
        assert granted <= burst + rate * clock.now + 1e-6 * (1 + granted)
        assert 0 <= bucket.tokens <= burst
        # wait_time is honest: after waiting it, the tokens are there.
        wait = bucket.wait_time(n)
        if wait:
            clock.advance(wait * (1 + 1e-9) + 1e-12)
            assert bucket.tokens >= n * (1 - 1e-9)


# ------------------------------------------------------------------ key throttle
def test_a_failed_key_is_held_off_for_the_throttle_then_allowed() -> None:
    throttle = KeyThrottle(throttle=2.0)
    throttle.failed("hot", now=10.0)
    assert not throttle.allow("hot", 10.0)
    assert not throttle.allow("hot", 11.99)
    assert throttle.allow("other", 11.0)  # only that key
    assert throttle.allow("hot", 12.0)
    assert throttle.throttled == 2


def test_a_new_failure_restarts_the_throttle() -> None:
    throttle = KeyThrottle(throttle=1.0)
    throttle.failed("k", now=0.0)
    throttle.failed("k", now=0.8)
    assert not throttle.allow("k", 1.5)
    assert throttle.retry_in("k", 1.5) == pytest.approx(0.3)


def test_a_success_forgets_the_failure() -> None:
    throttle = KeyThrottle(throttle=60.0)
    throttle.failed("k", now=0.0)
    throttle.succeeded("k")
    throttle.succeeded("never failed")
    assert throttle.allow("k", 0.1) and len(throttle) == 0


def test_expired_failures_are_dropped_as_time_passes() -> None:
    throttle = KeyThrottle(throttle=1.0)
    for i in range(1_000):
        throttle.failed(i, now=i * 0.01)  # 1,000 keys over 10 s
    assert len(throttle) <= 101  # only the last second's are kept
    throttle.allow("anything", now=100.0)
    assert len(throttle) == 0


def test_memory_is_bounded_by_forgetting_the_oldest_failure_first() -> None:
    throttle = KeyThrottle(throttle=60.0, max_keys=3)
    for i, key in enumerate("abcd"):
        throttle.failed(key, now=float(i))
    assert len(throttle) == 3
    assert throttle.allow("a", 4.0)  # the oldest was forgotten: retried early
    assert not any(throttle.allow(key, 4.0) for key in "bcd")


@settings(max_examples=60, deadline=None)
@given(
    throttle_seconds=st.sampled_from([0.0, 0.5, 1.0, 5.0]),
    max_keys=st.integers(1, 8),
    ops=st.lists(
        st.tuples(st.sampled_from(["fail", "allow", "succeed"]), st.integers(0, 10)),
        max_size=120,
    ),
    steps=st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0]), min_size=120, max_size=120),
)
def test_the_throttle_agrees_with_a_plain_model(throttle_seconds, max_keys, ops, steps) -> None:
    # The model: every failure's time, unbounded. The throttle may forget a key to bound
    # its memory, but only ever errs on the side of allowing, and only for a key that was
    # among more than max_keys held at once since it failed.
    throttle = KeyThrottle(throttle_seconds, max_keys=max_keys)
    failed_at: dict[int, float] = {}
    crowded: dict[int, bool] = {}
    now = 0.0
    for (op, key), step in zip(ops, steps, strict=False):
        now += step
        held = {k for k, t in failed_at.items() if now < t + throttle_seconds}
        if op == "fail":
            throttle.failed(key, now)
            failed_at[key] = now
            crowded[key] = False
            held.add(key)
            if len(held) > max_keys:
                crowded.update(dict.fromkeys(held, True))
        elif op == "succeed":
            throttle.succeeded(key)
            failed_at.pop(key, None)
        elif throttle.allow(key, now):
            assert key not in held or crowded[key]
        else:
            assert key in held
            assert throttle.retry_in(key, now) == pytest.approx(
                failed_at[key] + throttle_seconds - now
            )
        assert len(throttle) <= max_keys


def test_a_throttle_that_makes_no_sense_is_refused() -> None:
    with pytest.raises(ValueError):
        KeyThrottle(throttle=-1)
    with pytest.raises(ValueError):
        KeyThrottle(throttle=1, max_keys=0)


# ------------------------------------------------------------------ load limit
def test_a_load_limit_counts_slots() -> None:
    limit = LoadLimit(3)
    assert [limit.try_enter() for _ in range(5)] == [True, True, True, False, False]
    assert limit.full and limit.in_flight == 3 and limit.peak == 3
    limit.leave()
    assert not limit.full and limit.try_enter()
    assert limit.entered == 4


def test_leaving_more_than_entering_is_a_bug() -> None:
    limit = LoadLimit(1)
    with pytest.raises(RuntimeError, match="without a matching try_enter"):
        limit.leave()


@SETTINGS
@given(max_in_flight=st.integers(1, 5), ops=st.lists(st.booleans(), max_size=100))
def test_a_load_limit_never_exceeds_its_maximum(max_in_flight, ops) -> None:
    limit = LoadLimit(max_in_flight)
    held = 0
    for enter in ops:
        if enter:
            entered = limit.try_enter()
            assert entered == (held < max_in_flight)
            held += entered
        elif held:
            limit.leave()
            held -= 1
        assert limit.in_flight == held <= max_in_flight
        assert limit.peak <= max_in_flight


def test_a_load_limit_of_zero_is_refused() -> None:
    with pytest.raises(ValueError):
        LoadLimit(0)


def test_the_gate_timeout_says_what_was_full() -> None:
    limit = LoadLimit(4)
    while limit.try_enter():
        pass
    error = LoadGateTimeout.for_limit(limit, 0.25)
    assert isinstance(error, TimeoutError)
    assert str(error) == "no load slot came free within 0.25 s (4 of 4 loads in flight)"
    assert "at once" in str(LoadGateTimeout.for_limit(limit, 0))
