"""The managers' primitives (add, touch, incr / decr) and reading your own writes, one spec
for MultilayerCache and AsyncMultilayerCache (x the compiled and pure L1), over a real
Redis server."""

from __future__ import annotations

import math
import time

import pytest

from multilayercache import LayerError, LayerPolicy, WriteBehind


def test_a_set_is_readable_at_once_on_a_full_l1_of_frequent_keys(harness) -> None:
    for layers in ([harness.l1(max_size=1_000)], [harness.l1(max_size=1_000), harness.l2()]):
        cache = harness.cache(layers)
        l1 = layers[0]
        for _ in range(10):
            for key in range(1_000):
                if l1.get(key) is None:
                    l1.set(key, key)
        found = 0
        for n in range(50):
            cache.set(f"new:{n}", n)
            found += cache.get(f"new:{n}") == n and f"new:{n}" in l1
        assert found == 50


def test_add_is_decided_by_the_shared_layer(harness, cache, layers, raw_redis, prefix) -> None:
    l1, l2 = layers
    assert cache.add("k", {"v": 1}, ttl=30) is True
    assert l1.get("k") == {"v": 1} and l2.get("k") == {"v": 1}
    assert 29_000 <= raw_redis.pttl(f"{prefix}k") <= 30_000
    assert cache.add("k", 2) is False and cache.get("k") == {"v": 1}
    l2.set("elsewhere", "theirs")  # another instance added it: L1 does not know it
    assert cache.add("elsewhere", "mine") is False
    assert cache.get("elsewhere") == "theirs" and l1.get("elsewhere") is None
    l1.set("only-in-l1", "old copy")  # Redis evicted it: it is absent for the cache
    assert cache.add("only-in-l1", "new") is True and l1.get("only-in-l1") == "new"


def test_incr_counts_in_the_shared_layer_and_drops_l1_copies(cache, layers, raw_redis, prefix):
    l1, l2 = layers
    assert cache.incr("n", ttl=30) == 1
    assert cache.get("n") == 1 and cache.get("n") == 1 and l1.get("n") == 1  # copied up
    assert cache.incr("n", 9) == 10 and cache.decr("n", 3) == 7
    assert l1.get("n") is None and cache.get("n") == 7  # L1's older copy was dropped
    assert 29_000 <= raw_redis.pttl(f"{prefix}n") <= 30_000
    cache.set("text", "abc")
    with pytest.raises(TypeError):
        cache.incr("text")
    with pytest.raises(TypeError, match="delta"):
        cache.incr("n", 1.5)
    assert cache.get("text") == "abc" and cache.get("n") == 7


def test_touch_every_layer(harness, raw_redis, prefix) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [LayerPolicy(ttl=5), LayerPolicy(ttl=600)])
    cache.set("k", [1])
    assert cache.touch("k", 60) is True
    assert l1.remaining_ttl("k") == pytest.approx(5, abs=0.1)  # capped by L1's policy
    assert 59_000 <= raw_redis.pttl(f"{prefix}k") <= 60_000
    assert cache.touch("k", 3_600) is True
    assert 599_000 <= raw_redis.pttl(f"{prefix}k") <= 600_000  # capped by L2's
    assert cache.get("k") == [1]
    assert cache.touch("absent", 10) is False
    l2.set("l2-only", 1)
    assert cache.touch("l2-only", 10) is True and 9_000 <= raw_redis.pttl(f"{prefix}l2-only")
    assert cache.touch("k", 0) is True and cache.get("k") is None


def test_l1_alone_decides(harness) -> None:
    l1 = harness.l1()
    cache = harness.cache([l1])
    assert cache.add("k", 1) is True and cache.add("k", 2) is False
    assert cache.incr("n") == 1 and cache.incr("n", 2) == 3 and l1.get("n") == 3
    assert cache.touch("k", 10) is True and l1.remaining_ttl("k") == pytest.approx(10, abs=0.1)
    assert cache.touch("absent") is False


def test_l1_copies_through_the_manager(harness) -> None:
    cache = harness.cache([harness.l1(copy=True), harness.l2()])
    value = {"tags": ["a"]}
    cache.set("k", value)
    value["tags"].append("changed")
    cache.get("k")["tags"].append("changed too")
    assert cache.get("k") == {"tags": ["a"]}


def test_a_write_behind_layer_is_flushed_before_it_decides(harness, raw_redis, prefix) -> None:
    l1, l2 = harness.l1(), harness.l2()
    cache = harness.cache([l1, l2], [None, LayerPolicy(write=WriteBehind(max_delay=30))])
    cache.set("k", "queued")
    assert cache.add("k", "second") is False  # the queued set landed first
    cache.set("n", 5)
    assert cache.incr("n") == 6 and raw_redis.exists(f"{prefix}n")
    assert cache.touch("n", 60) is True and 59_000 <= raw_redis.pttl(f"{prefix}n")


def test_a_layer_that_fails_raises(harness, doomed_server) -> None:
    l1 = harness.l1()
    cache = harness.cache([l1, harness.l2(doomed_server.url)], [None, LayerPolicy(breaker=None)])
    cache.set("k", 1)
    doomed_server.stop()
    for call in (lambda: cache.add("a", 1), lambda: cache.incr("n"), lambda: cache.touch("k")):
        started = time.monotonic()
        with pytest.raises(LayerError):
            call()
        assert time.monotonic() - started < 2
    assert l1.get("a") is None  # nothing was added anywhere


def test_bad_ttls_are_refused(cache) -> None:
    for call in (
        lambda: cache.add("k", 1, ttl=-1),
        lambda: cache.touch("k", ttl=math.nan),
        lambda: cache.incr("k", ttl=-5),
    ):
        with pytest.raises(ValueError):
            call()
    assert cache.get("k") is None
