"""Deletes that did not reach a layer (``core/unconfirmed.py``): how long a mark lasts, the
bound on how many are kept, and what is counted and logged when one is dropped."""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache import InMemoryLayer, LayerPolicy, RedisLayer
from multilayercache.core.freshness import Lifetime
from multilayercache.core.state import CacheState
from multilayercache.core.unconfirmed import UnconfirmedDeletes

from support import FakeClock


def test_a_mark_holds_until_its_deadline_or_a_confirmation() -> None:
    marks = UnconfirmedDeletes()
    marks.mark("a", 1, now=0.0, hold=10.0)
    marks.mark("b", 1, now=0.0, hold=10.0)
    assert marks.holds("a", 1, 9.9) and not marks.holds("a", 2, 0.0)  # per layer
    marks.confirm("a", 1)
    assert not marks.holds("a", 1, 1.0) and marks.holds("b", 1, 1.0)
    assert not marks.holds("b", 1, 10.0) and len(marks) == 0  # past its deadline: gone


def test_clearing_a_layer_confirms_its_marks_only() -> None:
    marks = UnconfirmedDeletes()
    for key in "abc":
        marks.mark(key, 1, 0.0, 60.0)
    marks.mark("a", 2, 0.0, 60.0)
    marks.confirm_layer(1)
    assert len(marks) == 1 and marks.holds("a", 2, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.floats(0, 5), st.sampled_from(["mark", "confirm"])),
        max_size=60,
    ),
    st.integers(1, 8),
)
def test_marks_never_exceed_the_bound_and_the_oldest_goes_first(
    operations: list[tuple[int, float, str]], bound: int
) -> None:
    marks = UnconfirmedDeletes(max_keys=bound)
    model: dict[int, float] = {}  # key -> deadline, oldest mark first
    now = 0.0
    dropped = 0
    for key, step, action in operations:
        now += step
        model = {k: until for k, until in model.items() if until > now}
        if action == "confirm":
            marks.confirm(key, 1)
            model.pop(key, None)
            continue
        model.pop(key, None)
        model[key] = now + 3.0
        forgotten = marks.mark(key, 1, now, 3.0)
        if len(model) > bound:
            oldest = next(iter(model))
            assert forgotten == oldest
            del model[oldest]
            dropped += 1
        else:
            assert forgotten is None
        assert len(marks) <= bound
        assert {k for k in range(21) if marks.holds(k, 1, now)} == set(model)
    assert marks.dropped == dropped


def test_a_layer_holds_values_for_its_cap_or_its_default_plus_the_stale_window() -> None:
    redis_layer = RedisLayer("redis://127.0.0.1:1/0", ttl=600)  # never connected here
    state = CacheState(
        [InMemoryLayer(max_size=10), redis_layer, RedisLayer("redis://127.0.0.1:1/0")],
        [None, LayerPolicy(stale_ttl=60), LayerPolicy(ttl=30, stale_ttl=5)],
        record_latency=False,
        allow_async=False,
        lock=nullcontext(),
    )
    _, l2, l3 = state.tiers
    assert l2.longest_hold == 660  # the layer's own default TTL + the stale window
    assert l3.longest_hold == 35  # the policy's cap wins over the layer's default
    l2.note_lifetime(Lifetime(7200.0, 60.0))  # a set() with a longer TTL of its own
    assert l2.longest_hold == 7260
    l2.note_lifetime(Lifetime(10.0, 0.0))
    assert l2.longest_hold == 7260
    bare = CacheState(
        [InMemoryLayer(max_size=10), InMemoryLayer(max_size=10, ttl=math.inf)],
        None,
        record_latency=False,
        allow_async=False,
        lock=nullcontext(),
    )
    assert bare.tiers[1].longest_hold == math.inf


def test_a_mark_dropped_for_room_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    state = CacheState(
        [InMemoryLayer(max_size=10), RedisLayer("redis://127.0.0.1:1/0", name="l2")],
        None,
        record_latency=False,
        allow_async=False,
        lock=nullcontext(),
        clock=clock,
    )
    state.unconfirmed = UnconfirmedDeletes(max_keys=2)
    l2 = state.tiers[1]
    with caplog.at_level(logging.WARNING, logger="multilayercache"):
        state.mark_unconfirmed(l2, ["a", "b"])
        state.mark_unconfirmed(l2, ["c"])
    assert state.unconfirmed_in(l2, ["a", "b", "c"]) == ["b", "c"]
    assert state.stats(0).unconfirmed_deletes == 2
    assert state.stats(0).unconfirmed_deletes_dropped == 1
    assert "l2: more than 2 deletes wait to reach it; forgot the oldest ('a')" in caplog.text
    clock.advance(l2.longest_hold)  # Redis has dropped the values by now
    assert state.unconfirmed_in(l2, ["b", "c"]) == []
