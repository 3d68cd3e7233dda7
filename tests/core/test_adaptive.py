"""Adaptive TTLs without IO: the ladder of TTLs a step gives, how reloads move a step, the
bounded memory of steps, TTLs computed from values, and bad input."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multilayercache import AdaptiveTTL, LayerPolicy
from multilayercache.core.adaptive import (
    MAX_STEPS,
    StepMemory,
    check_load_ttl,
    next_step,
    ttl_of,
)
from multilayercache.core.freshness import Lifetime

durations = st.floats(0.01, 1e5, allow_nan=False)
factors = st.floats(1.1, 8.0)


@st.composite
def adaptive_ttls(draw: st.DrawFn) -> AdaptiveTTL:
    low = draw(durations)
    high = draw(st.floats(low, low * 1000))
    return AdaptiveTTL(min=low, max=high, factor=draw(factors))


@given(adaptive=adaptive_ttls(), ttl=durations, step=st.integers(-MAX_STEPS, MAX_STEPS))
def test_a_step_moves_the_ttl_toward_min_or_max_and_never_past_them(adaptive, ttl, step):
    scaled = adaptive.scaled(ttl, step)
    assert adaptive.scaled(ttl, 0) == ttl
    if step > 0:
        assert ttl <= scaled <= max(adaptive.max_seconds, ttl)
    if step < 0:
        assert min(adaptive.min_seconds, ttl) <= scaled <= ttl
    assert adaptive.scaled(ttl, step) <= adaptive.scaled(ttl, step + 1)  # one more, longer


@given(adaptive=adaptive_ttls(), ttl=durations)
def test_the_step_range_ends_where_the_ttl_stops_changing(adaptive, ttl):
    low, high = adaptive.steps(ttl)
    assert -MAX_STEPS <= low <= 0 <= high <= MAX_STEPS
    if 0 < high < MAX_STEPS:  # (a TTL far outside min..max may need more steps)
        assert adaptive.scaled(ttl, high) == max(adaptive.max_seconds, ttl)
        assert adaptive.scaled(ttl, high - 1) < adaptive.max_seconds
    if -MAX_STEPS < low < 0:
        assert adaptive.scaled(ttl, low) == min(adaptive.min_seconds, ttl)
        assert adaptive.scaled(ttl, low + 1) > adaptive.min_seconds


def test_a_key_that_keeps_not_changing_climbs_to_max_and_falls_back_on_a_change() -> None:
    adaptive = AdaptiveTTL(min=15, max=960)
    low, high = adaptive.steps(60)
    assert (low, high) == (-2, 4)
    ttls, step = [], 0
    for unchanged in [True] * 6 + [False, False, False, False, True]:
        step = next_step(step, unchanged, low, high)
        ttls.append(adaptive.scaled(60, step))
    assert ttls == [120, 240, 480, 960, 960, 960, 60, 30, 15, 15, 30]


@given(
    low=st.integers(-MAX_STEPS, 0),
    high=st.integers(0, MAX_STEPS),
    where=st.floats(0, 1),
    unchanged=st.booleans(),
)
def test_a_step_stays_in_range_and_moves_the_right_way(low, high, where, unchanged):
    step = round(low + (high - low) * where)
    after = next_step(step, unchanged, low, high)
    assert low <= after <= high
    if unchanged:  # one step up (unless at the top)
        assert after == min(step + 1, high)
    elif step > 0:  # from above the usual TTL: back to it at once
        assert after == 0
    else:  # at or below it: one step down (unless at the bottom)
        assert after == max(step - 1, low)


def test_adapted_lifetimes_move_the_refresh_point_with_the_ttl() -> None:
    policy = LayerPolicy(ttl=100, stale_ttl=50, adaptive=AdaptiveTTL(min=10, max=400))
    lifetime = Lifetime(100, 50, 80)
    assert policy.adapted(lifetime, 2) == Lifetime(400, 50, 320, 2)
    assert policy.adapted(lifetime, -1) == Lifetime(50, 50, 40, -1)
    assert policy.adapted(lifetime, 0) == Lifetime(100, 50, 80, 0)
    assert LayerPolicy(ttl=100).adapted(lifetime, 3) == Lifetime(100, 50, 80, 3)  # fixed
    layer_decides = Lifetime(None, 0.0, math.inf)  # type: ignore[arg-type]
    assert policy.adapted(layer_decides, 1, default=60.0).ttl == 120


def test_step_memory_is_bounded_and_forgets_the_least_recently_updated() -> None:
    memory = StepMemory(max_keys=3)
    for key in "abcd":
        memory.put(key, 1)
    assert len(memory) == 3 and memory.get("a") == 0 and memory.get("d") == 1
    memory.put("b", 2)  # updated: now the most recent
    memory.put("e", -1)
    assert memory.get("c") == 0 and memory.get("b") == 2 and memory.get("e") == -1
    memory.put("b", 0)  # step 0 is the default: nothing to keep
    assert len(memory) == 2 and memory.get("b") == 0


def test_a_ttl_may_be_a_function_of_the_value() -> None:
    check_load_ttl(lambda value: 60)
    check_load_ttl(timedelta(seconds=5))
    assert ttl_of(lambda user: 60 if user["active"] else 3600, {"active": False}) == 3600
    assert ttl_of(30, "anything") == 30

    def negative(value: object) -> float:
        return -1

    with pytest.raises(ValueError, match="negative"):
        ttl_of(negative, "v")
    with pytest.raises(TypeError, match="returned"):
        ttl_of(lambda value: "soon", "v")
    with pytest.raises(TypeError):
        check_load_ttl("60")


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"min": 0, "max": 10}, ValueError, "0 < min"),
        ({"min": 10, "max": 5}, ValueError, "min <= max"),
        ({"min": 1, "max": math.inf}, ValueError, "max < inf"),
        ({"min": 1, "max": 10, "factor": 1}, ValueError, "factor must be > 1"),
        ({"min": 1, "max": 10, "factor": "2"}, TypeError, "factor"),
        ({"min": 1, "max": 1e9, "factor": 1.01}, ValueError, "too small"),
        ({"min": -1, "max": 10}, ValueError, ">= 0"),
    ],
)
def test_bad_adaptive_ttls_are_refused(arguments, error, match) -> None:
    with pytest.raises(error, match=match):
        AdaptiveTTL(**arguments)


def test_a_policy_refuses_anything_but_an_adaptive_ttl() -> None:
    with pytest.raises(TypeError, match="AdaptiveTTL"):
        LayerPolicy(adaptive=(10, 100))  # type: ignore[arg-type]
