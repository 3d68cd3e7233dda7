"""``cache.update_policy``: a layer's policy changed on a running cache, effective from the
next operation, all or nothing (sync and asyncio, each L1 twin)."""

from __future__ import annotations

import math

import pytest

from multilayercache import BreakerPolicy, LayerPolicy, RetryPolicy, WriteBehind


def test_a_new_ttl_applies_to_the_next_write_in_each_layer(harness) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [LayerPolicy(ttl=30), LayerPolicy(ttl=300)])
    cache.set("before", 1)
    policy = cache.update_policy(1, ttl=50)
    assert policy.ttl == 50 and cache.policies[1] is policy
    cache.update_policy(0, ttl=5)
    cache.set("after", 2)
    assert 4 < l1.remaining_ttl("after") <= 5 and 49 < l2.remaining_ttl("after") <= 50
    # What was written before keeps its lifetime.
    assert 29 < l1.remaining_ttl("before") <= 30 and 299 < l2.remaining_ttl("before") <= 300
    # A loaded value too, and a write with a longer TTL of its own is capped by the new one.
    assert cache.get_or_load("loaded", harness.loader(lambda key: "v")) == "v"
    cache.set("longer", 3, ttl=3600)
    for key in ("loaded", "longer"):
        assert 4 < l1.remaining_ttl(key) <= 5 and 49 < l2.remaining_ttl(key) <= 50


def test_an_l1_without_a_policy_ttl_gets_its_own_default_changed(harness) -> None:
    l1, l2 = harness.l1(ttl=60), harness.l2()
    cache = harness.cache([l1, l2])
    cache.update_policy(l1, ttl=7)  # the layer itself names it
    assert l1.default_ttl == 7 and cache.policies[0].ttl is None
    cache.set("a", 1)
    l1.set("direct", 1)  # the layer's own writes take it too
    assert 6 < l1.remaining_ttl("a") <= 7 and 6 < l1.remaining_ttl("direct") <= 7
    cache.set("longer", 1, ttl=100)  # still no cap: a longer TTL asked for is kept
    assert 99 < l1.remaining_ttl("longer") <= 100
    cache.update_policy("l1", ttl=math.inf)
    cache.set("b", 1)
    assert l1.remaining_ttl("b") == math.inf


def test_stale_ttl_and_refresh_ahead_apply_to_the_next_write(harness) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [LayerPolicy(ttl=10), LayerPolicy(ttl=10)])
    cache.update_policy(1, stale_ttl=100, refresh_ahead=0.5, refresh_jitter=0)
    cache.update_policy(0, stale_ttl=100)
    cache.set("k", 1)
    entry = l2.get_entry("k")
    assert 9 < entry.fresh_for <= 10 and 109 < entry.gone_in <= 110 and 4 < entry.refresh_in <= 5
    assert 109 < l1.get_entry("k").gone_in <= 110


@pytest.mark.parametrize(
    "changes, error, named",
    [
        ({"ttl": 10, "stale_ttl": -1}, ValueError, "stale_ttl"),
        ({"ttl": 10, "refresh_ahead": 2}, ValueError, "refresh_ahead"),
        ({"ttl": 10, "ttl_jitter": "x"}, TypeError, "ttl_jitter"),
        ({"ttl": 10, "tll": 5}, TypeError, "'tll'"),
        ({"ttl": 10, "breaker": 5}, TypeError, "breaker"),
        ({"ttl": 10, "retry": "twice"}, TypeError, "retry"),
        ({"ttl": 10, "write": WriteBehind()}, ValueError, "write"),
        ({"ttl": 10, "rate_limit": -3}, ValueError, "rate_limit"),
        ({"ttl": -10}, ValueError, "ttl"),
    ],
)
def test_a_bad_change_raises_naming_it_and_changes_nothing(harness, changes, error, named) -> None:
    l1, l2 = harness.l1(ttl=60), harness.l2()
    cache = harness.cache([l1, l2], [None, LayerPolicy(ttl=300)])
    before = cache.policies
    for layer in (0, 1):
        with pytest.raises(error, match=named):
            cache.update_policy(layer, **changes)
    assert cache.policies == before and l1.default_ttl == 60
    cache.set("k", 1)  # still as before
    assert 59 < l1.remaining_ttl("k") <= 60 and 299 < l2.remaining_ttl("k") <= 300


def test_a_layer_is_named_by_index_object_or_name(harness) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2])
    assert cache.update_policy("l2", ttl=1).ttl == 1
    assert cache.update_policy(l2._target, ttl=2).ttl == 2  # the layer, unwrapped
    assert cache.update_policy(1, ttl=3).ttl == 3
    for wrong, message in ((2, "no layer 2"), (-1, "no layer -1"), ("l3", "'l1', 'l2'")):
        with pytest.raises(ValueError, match=message):
            cache.update_policy(wrong, ttl=1)
    with pytest.raises(ValueError, match="not a layer of this cache"):
        cache.update_policy(object(), ttl=1)
    with pytest.raises(ValueError, match="in-process"):
        cache.update_policy(0, rate_limit=100)


def test_breaker_retry_and_rate_limit_are_replaced_and_keep_counting(harness) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2])
    for n in range(5):
        cache.set(f"k{n}", n)
    calls = breaker_calls(cache)
    assert calls >= 5
    cache.update_policy(1, breaker=BreakerPolicy(failures=10), retry=RetryPolicy(attempts=3))
    assert breaker_calls(cache) == calls  # the window goes on (each node's, on a cluster)
    l1.clear()  # every read below goes to L2
    cache.update_policy(1, rate_limit=1000)
    assert cache.get("k1") == 1
    counted = cache.stats().rate_limits["l2"].calls
    assert counted >= 1
    cache.update_policy(1, rate_limit=2000)  # a new limit: the count goes on
    assert cache.stats().rate_limits["l2"].calls == counted
    assert cache.get("k2") == 2 and cache.stats().rate_limits["l2"].calls > counted
    cache.update_policy(1, rate_limit=None, breaker=None, retry=None)
    assert "l2" not in cache.stats().rate_limits and "l2" not in cache.stats().breakers
    assert cache.get("k4") == 4
    cache.update_policy(1, breaker=BreakerPolicy())  # a breaker again: a fresh one
    assert cache.get("k0") == 0 and cache.stats().breakers["l2"].state == "closed"


def breaker_calls(cache) -> int:
    """Calls in the window of L2's breaker and, on a cluster, of its nodes' breakers."""
    stats = cache.stats()
    nodes = stats.node_breakers.get("l2", {}).values()
    return stats.breakers["l2"].calls_in_window + sum(node.calls_in_window for node in nodes)


def test_promotion_follows_the_new_rule(harness) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [LayerPolicy(promote="never"), None])
    cache.set("k", 1)
    l1.delete("k")
    assert cache.get("k") == 1 and cache.get("k") == 1 and "k" not in l1
    cache.update_policy(0, promote="always")
    assert cache.get("k") == 1 and "k" in l1
