"""The circuit breaker as a state machine over a fake clock: unit tests of each transition,
and a Hypothesis state machine that checks the promises on random call sequences."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from multilayercache.core import breaker as breaker_module
from multilayercache.core.breaker import (
    WINDOW_BUCKETS,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
)

from support import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def make(clock: FakeClock, **policy) -> CircuitBreaker:
    return CircuitBreaker(BreakerPolicy(**policy), clock=clock)


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def test_the_docstring_examples_run() -> None:
    assert doctest.testmod(breaker_module).failed == 0


def test_defaults_open_on_5_failures_and_probe_after_half_a_second(clock) -> None:
    breaker = CircuitBreaker(clock=clock)
    fail(breaker, 4)
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN
    assert breaker.probe_in == pytest.approx(0.5)
    clock.advance(0.5)
    assert breaker.state is HALF_OPEN


def test_one_error_does_not_open_it(clock) -> None:
    # FusionCache opens on one error; a blip must not cost the layer.
    breaker = make(clock)
    fail(breaker)
    assert breaker.state is CLOSED and breaker.allow()


def test_open_refuses_every_call_and_counts_them(clock) -> None:
    breaker = make(clock, failures=2)
    fail(breaker, 2)
    assert [breaker.allow() for _ in range(100)] == [False] * 100
    stats = breaker.stats()
    assert stats.rejected == 100 and stats.opened == 1 and stats.state is OPEN


def test_failures_spread_wider_than_the_window_do_not_open(clock) -> None:
    breaker = make(clock, failures=3, window=10.0)
    for _ in range(20):
        fail(breaker)
        clock.advance(5.0)  # at most 2 failures in any 10 s
    assert breaker.state is CLOSED and breaker.opened == 0


def test_successes_do_not_hide_failures_without_a_rate(clock) -> None:
    breaker = make(clock, failures=3)
    for _ in range(2):
        fail(breaker)
        for _ in range(100):
            assert breaker.allow()
            breaker.record_success()
    fail(breaker)
    assert breaker.state is OPEN


def test_a_failure_rate_ignores_rare_errors_among_many_successes(clock) -> None:
    breaker = make(clock, failures=3, failure_rate=0.5)
    for _ in range(10):
        fail(breaker)
        for _ in range(5):
            assert breaker.allow()
            breaker.record_success()
        clock.advance(0.1)
    assert breaker.state is CLOSED
    assert breaker.stats().failures_in_window == 10


def test_a_failure_rate_still_opens_on_an_outage(clock) -> None:
    breaker = make(clock, failures=3, failure_rate=0.5)
    for _ in range(4):
        breaker.allow()
        breaker.record_success()
    fail(breaker, 3)
    assert breaker.state is CLOSED  # 3 of 7 failed
    fail(breaker)
    assert breaker.state is OPEN  # 4 of 8


def test_half_open_admits_only_the_configured_probes(clock) -> None:
    breaker = make(clock, failures=1, probes=2, successes=3)
    fail(breaker)
    clock.advance(0.5)
    assert [breaker.allow() for _ in range(5)] == [True, True, False, False, False]
    breaker.record_success()  # one probe back: one more may go
    assert [breaker.allow() for _ in range(3)] == [True, False, False]
    breaker.record_success()
    assert breaker.state is HALF_OPEN  # 2 of 3 successes
    breaker.record_success()
    assert breaker.state is CLOSED


def test_a_failed_probe_reopens_with_a_growing_capped_cooldown(clock) -> None:
    breaker = make(clock, failures=1, cooldown=0.5, cooldown_growth=2.0, max_cooldown=1.5)
    fail(breaker)
    cooldowns = []
    for _ in range(5):
        cooldowns.append(breaker.probe_in)
        clock.advance(breaker.probe_in)
        assert breaker.state is HALF_OPEN
        fail(breaker)  # the probe fails
    assert cooldowns == [0.5, 1.0, 1.5, 1.5, 1.5]
    assert breaker.opened == 6
    clock.advance(breaker.probe_in)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CLOSED
    fail(breaker)  # opens again, from the base cool-down
    assert breaker.probe_in == 0.5


def test_the_defaults_notice_a_restarted_server_within_a_second(clock) -> None:
    # Issue 9: Redis down 5 s, L2 hits back within 2 s of the restart. Probes fail until
    # the restart; the next probe after it is at most max_cooldown (1 s) later.
    breaker = CircuitBreaker(clock=clock)
    fail(breaker, 5)
    started = clock.now
    while clock.now - started < 5.0:
        clock.advance(breaker.probe_in)
        if clock.now - started < 5.0:
            fail(breaker)
    restarted = started + 5.0
    clock.now = max(clock.now, restarted)
    clock.advance(breaker.probe_in)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CLOSED
    assert clock.now - restarted <= 1.0


def test_errors_that_are_not_the_backends_fault_are_released_not_counted(clock) -> None:
    breaker = make(clock, failures=1)
    for _ in range(10):
        assert breaker.allow()
        breaker.release()  # e.g. a SerializationError
    assert breaker.state is CLOSED
    fail(breaker)
    clock.advance(0.5)
    assert breaker.allow() and not breaker.allow()
    breaker.release()  # the probe said nothing: its slot is free again, still half-open
    assert breaker.state is HALF_OPEN and breaker.allow()


def test_a_lost_probe_is_written_off_after_probe_timeout(clock) -> None:
    breaker = make(clock, failures=1, probe_timeout=3.0)
    fail(breaker)
    clock.advance(0.5)
    assert breaker.allow()  # this probe's outcome never comes
    clock.advance(2.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()


def test_late_outcomes_of_calls_allowed_before_it_opened_change_nothing(clock) -> None:
    breaker = make(clock, failures=2)
    assert breaker.allow() and breaker.allow() and breaker.allow()  # three calls go out
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is OPEN
    breaker.record_success()  # the third comes back late
    breaker.record_failure()
    assert breaker.state is OPEN and breaker.opened == 1
    assert breaker.probe_in == 0.5  # the cool-down is not extended
    clock.advance(0.5)
    breaker.record_success()  # half-open, but no probe out: not a probe's success
    assert breaker.state is HALF_OPEN


def test_closing_forgets_the_failures_before_it(clock) -> None:
    breaker = make(clock, failures=3)
    fail(breaker, 3)
    clock.advance(0.5)
    assert breaker.allow()
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state is CLOSED


def test_reset_closes(clock) -> None:
    breaker = make(clock, failures=1)
    fail(breaker)
    breaker.reset()
    assert breaker.state is CLOSED and breaker.allow() and breaker.opened == 1


def test_stats_and_repr(clock) -> None:
    breaker = make(clock, failures=3)
    fail(breaker, 2)
    assert breaker.allow()
    breaker.record_success()
    stats = breaker.stats()
    assert (stats.failures_in_window, stats.calls_in_window, stats.probe_in) == (2, 3, 0.0)
    assert stats.state == "closed"  # a str enum: a metric label as it is
    assert "closed" in repr(breaker)


@pytest.mark.parametrize(
    "policy",
    [
        {"failures": 0},
        {"window": 0},
        {"window": math.inf},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"cooldown": -1},
        {"cooldown": 2, "max_cooldown": 1},
        {"cooldown_growth": 0.5},
        {"probes": 0},
        {"successes": 0},
        {"probe_timeout": 0},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(policy) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**policy)


# ------------------------------------------------------------------ the state machine
class BreakerMachine(RuleBasedStateMachine):
    """Random calls, outcomes and clock steps against the promises:

    * it opens only when ``failures`` failures fell within the last ``window`` seconds,
      and it is open whenever that many fell within ``window - window/10`` (the bucket
      width);
    * open, it refuses everything until its cool-down has passed;
    * half-open, probes out (allowed minus reported) never exceed ``probes``;
    * it closes only on a success.
    """

    @initialize(
        failures=st.integers(1, 5),
        window=st.sampled_from([1.0, 5.0, 10.0]),
        cooldown=st.sampled_from([0.0, 0.5, 2.0]),
        growth=st.sampled_from([1.0, 2.0]),
        probes=st.integers(1, 3),
        successes=st.integers(1, 3),
    )
    def configure(self, failures, window, cooldown, growth, probes, successes) -> None:
        self.clock = FakeClock(0.0)
        self.policy = BreakerPolicy(
            failures=failures,
            window=window,
            cooldown=cooldown,
            cooldown_growth=growth,
            max_cooldown=max(cooldown, 3.0),
            probes=probes,
            successes=successes,
            probe_timeout=math.inf,  # lost probes are tested on their own
        )
        self.breaker = CircuitBreaker(self.policy, clock=self.clock)
        self.out = 0  # calls allowed, outcome not reported yet
        self.failure_times: list[float] = []  # failures recorded while closed, since closing
        self.open_until = 0.0
        self.probes_out = 0  # allowed in the current half-open spell minus outcomes in it
        self.last_state = CLOSED
        self.opens = 0

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0, 3.0]))
    def wait(self, seconds) -> None:
        self.clock.advance(seconds)
        self.observe()

    @rule()
    def call(self) -> None:
        state = self.breaker.state
        allowed = self.breaker.allow()
        if state is OPEN:
            assert not allowed
            assert self.clock.now < self.open_until
        if state is CLOSED:
            assert allowed
        if allowed:
            self.out += 1
            if state is HALF_OPEN:
                self.probes_out += 1
        self.observe()

    @precondition(lambda self: self.out)
    @rule(outcome=st.sampled_from(["success", "failure", "failure", "release"]))
    def report(self, outcome) -> None:
        self.out -= 1
        before = self.breaker.state
        if before is HALF_OPEN and self.probes_out:
            self.probes_out -= 1
        if outcome == "success":
            self.breaker.record_success()
        elif outcome == "failure":
            if before is CLOSED:
                self.failure_times.append(self.clock.now)
            self.breaker.record_failure()
        else:
            self.breaker.release()
        after = self.breaker.state
        if after is CLOSED and before is not CLOSED:
            assert outcome == "success" and before is HALF_OPEN
        if after is OPEN and before is CLOSED:
            # Opened: enough failures within the last window (never more than it back).
            recent = [t for t in self.failure_times if t > self.clock.now - self.policy.window]
            assert len(recent) >= self.policy.failures
        if before is CLOSED and after is CLOSED:
            # Still closed: no `failures` failures within window less one bucket.
            reach = self.policy.window - self.policy.window / WINDOW_BUCKETS
            recent = [t for t in self.failure_times if t >= self.clock.now - reach + 1e-9]
            assert len(recent) < self.policy.failures
        self.observe()

    def observe(self) -> None:
        state = self.breaker.state
        if self.breaker.opened != self.opens:  # it (re)opened: a new spell begins
            self.opens = self.breaker.opened
            self.open_until = self.clock.now + self.breaker.probe_in
            self.failure_times = []
            self.probes_out = 0
        if state is HALF_OPEN and self.last_state is OPEN:
            assert self.clock.now >= self.open_until
        if state is CLOSED and self.last_state is not CLOSED:
            self.failure_times = []
        self.last_state = state

    @invariant()
    def probes_stay_within_the_limit(self) -> None:
        if self.breaker.state is HALF_OPEN:
            assert self.probes_out <= self.policy.probes

    @invariant()
    def the_cooldown_stays_within_its_bounds(self) -> None:
        assert self.policy.cooldown <= self.breaker.stats().cooldown <= self.policy.max_cooldown
        assert 0 <= self.breaker.probe_in <= self.policy.max_cooldown


BreakerMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=50, deadline=None)
test_breaker_state_machine = BreakerMachine.TestCase


class ClusterShapedLayer:
    """What a tier needs of a cluster layer to keep a breaker per node: ``is_cluster`` and
    ``node_of`` (keys named ``node/...`` live on ``node``)."""

    is_cluster = True
    name = "l2"

    def node_of(self, key: str) -> str | None:
        return key.split("/")[0] if "/" in key else None

    def get(self, key: str) -> None: ...
    def set(self, key: str, value: object) -> None: ...
    def delete(self, key: str) -> None: ...
    def get_many(self, keys: list[str]) -> dict: ...
    def set_many(self, mapping: dict) -> None: ...
    def stats(self) -> None: ...


def test_a_cluster_tier_keeps_a_breaker_per_node_for_single_key_calls() -> None:
    from multilayercache.core.breaker import NodeBreakers
    from multilayercache.core.errors import LayerError, LayerUnavailableError
    from multilayercache.core.options import LayerPolicy
    from multilayercache.core.tiers import make_tiers

    [tier] = make_tiers(
        [ClusterShapedLayer()], [LayerPolicy(breaker=BreakerPolicy(failures=2))], False
    )
    assert isinstance(tier.node_breakers, NodeBreakers)
    dead = tier.breaker_for("get", ("a/k",))
    for _ in range(2):
        tier.admit(dead)
        tier.settle(LayerError("l2: a is down", transient=True), dead)
    with pytest.raises(LayerUnavailableError):
        tier.admit(tier.breaker_for("set_entry", ("a/other", "v")))
    healthy = tier.breaker_for("get", ("b/k",))
    tier.admit(healthy)  # node b's keys go on
    assert healthy is not dead and tier.breaker_for("get", ("b/k2",)) is healthy
    tier.admit(tier.breaker_for("get_many", (["a/k", "b/k"],)))  # spans nodes: the layer's
    assert tier.breaker_for("get", ("no-node",)) is tier.breaker  # not in the slot map yet
    assert set(tier.node_breakers.stats()) == {"a", "b"}
    assert tier.node_breakers.stats()["a"].opened == 1


def test_a_single_server_tier_has_one_breaker() -> None:
    from multilayercache.core.options import LayerPolicy
    from multilayercache.core.tiers import make_tiers

    layer = ClusterShapedLayer()
    layer.is_cluster = False  # type: ignore[misc]
    [tier] = make_tiers([layer], [LayerPolicy()], False)
    assert tier.node_breakers is None and tier.breaker_for("get", ("a/k",)) is tier.breaker
