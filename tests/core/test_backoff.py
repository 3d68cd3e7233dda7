"""The retry policy: full-jitter delays within their bounds and covering them, the budget
and the attempts respected, only transient errors retried, and the stated equivalence with
redis-py's ``FullJitterBackoff``."""

from __future__ import annotations

import doctest
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache.core import backoff as backoff_module
from multilayercache.core.backoff import TRANSIENT, RetryPolicy, RetryState, caused_by
from multilayercache.core.errors import LayerError, SerializationError

SETTINGS = settings(max_examples=150, deadline=None)
seconds = st.floats(0.0, 5.0, allow_nan=False)


def test_the_docstring_examples_run() -> None:
    assert doctest.testmod(backoff_module).failed == 0


def test_the_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base=0.01, cap=0.05)
    assert [policy.ceiling(n) for n in range(5)] == [0.01, 0.02, 0.04, 0.05, 0.05]
    assert policy.ceiling(10_000) == 0.05  # no overflow however many retries


@SETTINGS
@given(
    base=seconds,
    cap=seconds,
    attempts=st.integers(1, 30),
    seed=st.integers(0, 2**32),
)
def test_delays_stay_within_zero_and_the_ceiling(base, cap, attempts, seed) -> None:
    policy = RetryPolicy(attempts=attempts, base=base, cap=cap)
    delays = list(policy.delays(random.Random(seed)))
    assert len(delays) == attempts - 1
    for retry, delay in enumerate(delays):
        assert 0.0 <= delay <= min(cap, base * 2**retry) <= cap


def test_full_jitter_covers_the_whole_range() -> None:
    policy = RetryPolicy(base=1.0, cap=100.0)
    rng = random.Random(42)
    for retry in range(4):
        ceiling = policy.ceiling(retry)
        samples = [policy.delay(retry, rng) for _ in range(4_000)]
        # Uniform over [0, ceiling]: every tenth of the range is hit about 10% of the time.
        tenths = [0] * 10
        for sample in samples:
            tenths[min(9, int(sample / ceiling * 10))] += 1
        assert all(300 <= count <= 500 for count in tenths), tenths
        assert sum(samples) / len(samples) == pytest.approx(ceiling / 2, rel=0.05)


def test_the_same_seed_gives_the_same_delays() -> None:
    policy = RetryPolicy(attempts=10)
    assert list(policy.delays(random.Random(3))) == list(policy.delays(random.Random(3)))


def test_unlimited_attempts_make_endless_delays() -> None:
    delays = RetryPolicy(attempts=None, budget=1.0, cap=0.5).delays(random.Random(0))
    assert len([next(delays) for _ in range(1_000)]) == 1_000


@SETTINGS
@given(
    budget=st.floats(0.0, 2.0),
    durations=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=40),
    attempts=st.one_of(st.none(), st.integers(1, 40)),
    seed=st.integers(0, 2**32),
)
def test_no_retry_starts_past_the_budget(budget, durations, attempts, seed) -> None:
    # Simulated time: each try takes durations[i] seconds, then the state says how long
    # to wait. Every try starts within the budget, and the attempts are never exceeded.
    policy = RetryPolicy(attempts=attempts, base=0.05, cap=0.4, budget=budget)
    state = RetryState(policy, random.Random(seed))
    elapsed, tries = 0.0, 0
    for duration in durations:
        assert elapsed <= budget + 1e-9  # this try starts within the budget
        tries += 1
        elapsed += duration
        delay = state.next_delay(TimeoutError("slow"), elapsed)
        if delay is None:
            break
        assert 0 <= delay <= policy.cap
        elapsed += delay
    if attempts is not None:
        assert tries <= attempts
    assert state.retries == tries - (delay is None)


def test_the_budget_stops_retries_that_attempts_would_allow() -> None:
    state = RetryState(RetryPolicy(attempts=100, base=0.1, budget=0.5), random.Random(0))
    assert state.next_delay(TimeoutError(), elapsed=0.45) <= 0.05  # shortened to fit
    assert state.next_delay(TimeoutError(), elapsed=0.51) is None


def test_attempts_count_the_first_try() -> None:
    state = RetryState(RetryPolicy(attempts=1), random.Random(0))
    assert state.next_delay(TimeoutError(), 0.0) is None
    state = RetryState(RetryPolicy(attempts=3, budget=None), random.Random(0))
    assert [state.next_delay(TimeoutError(), 100.0) is None for _ in range(3)] == [
        False,
        False,
        True,
    ]


def test_only_transient_errors_are_retried() -> None:
    state = RetryState(RetryPolicy(attempts=10), random.Random(0))
    for error in (ValueError(), SerializationError("cannot encode"), KeyError("x")):
        assert state.next_delay(error, 0.0) is None
    assert state.retries == 0
    for error in (TimeoutError(), ConnectionRefusedError(), ConnectionResetError()):
        assert state.next_delay(error, 0.0) is not None


def wrapped(cause: BaseException) -> LayerError:
    try:
        try:
            raise cause
        except BaseException as error:
            raise LayerError("redis: GET failed") from error
    except LayerError as layer_error:
        return layer_error


class FakeRedisConnectionError(Exception):
    """Stands for redis.ConnectionError: not a subclass of the builtin one."""


def test_caused_by_looks_through_wrapping_layers() -> None:
    transient = caused_by(FakeRedisConnectionError)
    assert transient(wrapped(FakeRedisConnectionError("refused")))
    assert not transient(wrapped(ValueError("bad key")))
    assert not transient(LayerError("no cause"))
    assert TRANSIENT(wrapped(TimeoutError())) and not TRANSIENT(wrapped(ValueError()))


def test_caused_by_follows_implicit_context_and_survives_loops() -> None:
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError:
            raise LayerError("while handling it") from None
    except LayerError as error:
        suppressed = error
    # ``from None`` hides the context from tracebacks, but the error is still there.
    assert caused_by(TimeoutError)(suppressed)
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert not caused_by(TimeoutError)(first)


def test_the_policy_maps_onto_redis_py_full_jitter_backoff() -> None:
    # The module docstring says FullJitterBackoff(cap, base / 2) gives the same delays
    # (redis-py counts failures from 1); check it with the same random stream.
    from redis.backoff import FullJitterBackoff

    policy = RetryPolicy(attempts=8, base=0.02, cap=0.5)
    theirs = FullJitterBackoff(cap=policy.cap, base=policy.base / 2)
    random.seed(11)
    redis_delays = [theirs.compute(failures) for failures in range(1, 8)]
    ours = list(policy.delays(random.Random(11)))
    assert ours == pytest.approx(redis_delays)


@pytest.mark.parametrize(
    "policy",
    [
        {"attempts": 0},
        {"base": -1},
        {"cap": math.inf},
        {"budget": -0.1},
        {"attempts": None, "budget": None},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(policy) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**policy)


def test_retry_on_must_be_callable() -> None:
    with pytest.raises(TypeError):
        RetryPolicy(retry_on=(TimeoutError,))  # type: ignore[arg-type]
