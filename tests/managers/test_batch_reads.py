"""``get_many`` below an in-process L1 without the plan (``plans.direct_batch_tier``, the
drivers' ``read_many_at_once``) answers, counts and copies up exactly as the plan
(``plans.read_many``) does, on random batches over a real server and a real cluster: L1
holding keys fresh, stale or not at all; L2 holding honest values fresh, stale or tagged,
and forged, copied or garbage bytes; repeated keys; every promotion rule; typed reads."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multilayercache import LayerPolicy
from multilayercache.core import plans
from multilayercache.core.freshness import Lifetime

L1_STATES = ["absent", "fresh", "stale"]
L2_STATES = ["absent", "fresh", "stale", "tagged", "copied", "garbage", "truncated"]
KEYS = 6
examples = itertools.count()


def plant(harness: Any, raw_redis: Any, l1s: list[Any], l2: Any, layout: Any) -> None:
    """Write each key's state into both L1s (alike) and into L2."""
    stale = Lifetime(0.001, 600)
    for key, (in_l1, in_l2) in layout.items():
        value = int(key.rsplit("k", 1)[1])
        for l1 in l1s:
            if in_l1 != "absent":
                l1.set_entry(key, -value, stale if in_l1 == "stale" else Lifetime(600))
        redis_key = l2.redis_key(key)
        if in_l2 == "fresh":
            l2.set_entry(key, value, Lifetime(600))
        elif in_l2 == "stale":
            l2.set_entry(key, value, stale)
        elif in_l2 == "tagged":
            l2.set_entry(key, value, Lifetime(600, tags=("t",)))
        elif in_l2 in ("copied", "truncated"):
            l2.set_entry("donor", 99, Lifetime(600))
            honest = raw_redis.get(l2.redis_key("donor"))
            raw_redis.set(redis_key, honest if in_l2 == "copied" else honest[:-1])
        elif in_l2 == "garbage":
            raw_redis.set(redis_key, b"\x98\x03garbage")
    time.sleep(0.005)  # the stale ones are stale now


def counters(layer: Any) -> tuple[Any, ...]:
    stats = layer.stats()
    return stats.hits, stats.misses, stats.errors, dict(stats.untrusted or {})


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    states=st.lists(
        st.tuples(st.sampled_from(L1_STATES), st.sampled_from(L2_STATES)),
        min_size=KEYS,
        max_size=KEYS,
    ),
    asked=st.lists(st.integers(0, KEYS), max_size=12),
    promote=st.sampled_from(["seen_before", "always", "never"]),
    reads=st.integers(1, 2),
    value_type=st.sampled_from([None, int]),
)
def test_get_many_without_the_plan_is_the_plan(
    harness, raw_redis, states, asked, promote, reads, value_type
) -> None:
    example = next(examples)
    keys = [f"{example}:k{n}" for n in range(KEYS + 1)]  # the last one: never written
    layout = dict(zip(keys, states, strict=False))
    pair = []
    for _ in range(2):  # the same layers twice: one read without the plan, one with it
        l1, l2 = harness.l1(), harness.l2()
        policies = [LayerPolicy(promote=promote), None]
        cache = harness.cache([l1, l2], policies, value_type=value_type)
        pair.append((cache, l1, l2))
    plant(harness, raw_redis, [l1 for _, l1, _ in pair], pair[0][2], layout)
    wanted = [keys[n] for n in asked]
    answers = []
    for direct, (cache, l1, l2) in zip((True, False), pair, strict=True):
        manager = cache._target
        l2.set("warm", 0)
        cache.get("warm")  # the tag marks are loaded: the direct read may run from now on
        before = counters(l1), counters(l2)
        found = []
        for _ in range(reads):  # a second read: copies decided by what the first saw
            if direct:
                assert plans.direct_batch_tier(manager._state) is not None
                found.append(cache.get_many(wanted))
            else:
                plan = plans.read_many(manager._state, wanted, value_type)
                found.append(harness.call(manager._run, plan))
        held = {key: l1.get_entry(key) for key in keys}
        answers.append(
            (
                [list(each.items()) for each in found],
                {key: None if e is None else (e.value, e.fresh_for > 0) for key, e in held.items()},
                before,
                (counters(l1), counters(l2)),
            )
        )
    fast, planned = answers
    assert fast[0] == planned[0]  # the same values, in the same order
    assert fast[1] == planned[1]  # the same copies in L1
    assert fast[3][1] == planned[3][1]  # L2 counted alike (hits, misses, untrusted causes)
    assert fast[3][0][:2] == planned[3][0][:2]  # and L1 too
    for found in fast[0]:  # what a get_many promises, whichever path answers
        for key, value in found:
            in_l1, in_l2 = layout.get(key, ("absent", "absent"))
            assert value == (-1 if in_l1 == "fresh" else 1) * int(key.rsplit("k", 1)[1])
            assert in_l1 == "fresh" or in_l2 in ("fresh", "tagged")


def test_a_batch_below_l1_is_copied_up_for_no_longer_than_l2_keeps_it(harness, layers) -> None:
    l1, l2 = layers
    cache = harness.cache([l1, l2], [LayerPolicy(promote="always", ttl=600), None])
    cache.get("warm")
    l2.set_many({f"k{n}": n for n in range(20)}, ttl=30)
    l2.set("short", "s", ttl=2)
    cache.get("k0")  # the marks are loaded; k0 is in L1 now
    assert plans.direct_batch_tier(cache._target._state) is not None
    found = cache.get_many([f"k{n}" for n in range(20)] + ["short", "nowhere"])
    assert found == {**{f"k{n}": n for n in range(20)}, "short": "s"}
    assert all(l1.get(f"k{n}") == n for n in range(20)) and l1.get("short") == "s"
    # One lifetime for the batch: the shortest of what L2 still keeps.
    assert l1.get_entry("k5").fresh_for <= 2 and l1.get_entry("short").fresh_for <= 2


def test_a_batch_of_tagged_values_is_copied_up_by_the_plan_with_its_tags(harness, layers) -> None:
    l1, l2 = layers
    cache = harness.cache([l1, l2], [LayerPolicy(promote="always"), None])
    cache.get("warm")
    writer = harness.cache([harness.l1(), harness.l2()])
    writer.set_many({"a": 1, "b": 2}, tags=("group",))  # another instance wrote them
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
    assert l1.get("a") == 1 and l1.get("b") == 2
    cache.invalidate_tags("group")  # drops them from this L1: the copies kept their tags
    assert "a" not in l1 and "b" not in l1 and cache.get_many(["a", "b"]) == {}


@pytest.mark.single_server
def test_a_batch_below_l1_when_l2_is_down_is_a_counted_miss(harness, doomed_server) -> None:
    l1 = harness.l1()
    l2 = harness.l2(doomed_server.url)
    cache = harness.cache([l1, l2], [None, LayerPolicy(breaker=None, retry=None)])
    l1.set("local", 1)
    l2.set("remote", 2)
    cache.get("remote")  # the marks are loaded
    l1.delete("remote")
    doomed_server.kill()
    assert plans.direct_batch_tier(cache._target._state) is not None
    assert cache.get_many(["local", "remote"]) == {"local": 1}
    assert cache.stats().read_errors["l2"] == 1
