"""What a user relies on from a manager, one spec for ``MultilayerCache`` and
``AsyncMultilayerCache`` (x the compiled and pure L1), over a real Redis server."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
import redis.cluster

from multilayercache import (
    LayerError,
    LayerPolicy,
    MultilayerCache,
    SerializationError,
    WriteBehind,
)

from support import command_calls


def test_write_through_read_and_delete(cache, layers) -> None:
    l1, l2 = layers
    cache.set("k", {"v": 1})
    assert l1.get("k") == {"v": 1} and l2.get("k") == {"v": 1}
    assert cache.get("k") == {"v": 1}
    assert cache.delete("k") is True
    assert l1.get("k") is None and l2.get("k") is None and cache.get("k", "dflt") == "dflt"
    assert cache.delete("k") is False


def test_promotion_waits_until_l1_has_seen_the_key(cache, layers) -> None:
    l1, l2 = layers
    l2.set("from-l2", "value")  # another instance wrote it
    assert cache.get("from-l2") == "value"
    assert "from-l2" not in l1  # first sighting: not admitted into L1
    assert cache.get("from-l2") == "value"
    assert l1.get("from-l2") == "value"  # seen before: promoted
    hits = l2.stats().hits
    assert cache.get("from-l2") == "value" and l2.stats().hits == hits  # now an L1 hit


@pytest.mark.parametrize(
    ("promote", "promoted_after_one_read"),
    [("always", True), ("never", False), (lambda key, layer: key.startswith("yes"), None)],
)
def test_promotion_rules(harness, layers, promote, promoted_after_one_read) -> None:
    l1, l2 = layers
    cache = harness.cache([l1, l2], [LayerPolicy(promote=promote), None])
    for key in ("yes-1", "no-1"):
        l2.set(key, key)
        cache.get(key)
    if promoted_after_one_read is None:
        assert "yes-1" in l1 and "no-1" not in l1
    else:
        assert ("yes-1" in l1) is promoted_after_one_read


def test_layered_ttls(harness, layers, raw_redis, prefix) -> None:
    l1, l2 = layers
    cache = harness.cache([l1, l2], [LayerPolicy(ttl=0.2), LayerPolicy(ttl=30, ttl_jitter=0.1)])
    cache.set("k", "v")
    assert 27_000 - 100 <= raw_redis.pttl(f"{prefix}k") <= 30_000
    cache.set("capped", "v", ttl=10)  # the call's TTL, capped per layer
    assert 9_000 - 100 <= raw_redis.pttl(f"{prefix}capped") <= 10_000
    time.sleep(0.3)
    assert "k" not in l1  # L1 forgot it ...
    assert cache.get("k") == "v"  # ... L2 still answers


def test_unencodable_value_is_written_nowhere(cache, layers) -> None:
    l1, l2 = layers
    cache.set("k", "old")
    with pytest.raises(SerializationError):
        cache.set("k", object())
    assert l1.get("k") == "old" and l2.get("k") == "old"


@pytest.mark.parametrize("write", ["through", "behind"])
def test_a_value_past_max_value_bytes_is_refused_as_no_read_would_take_it(
    harness, raw_redis, prefix, write
) -> None:
    # Written, it cost Redis its bytes while every read refused it ("limit"): each
    # instance missed and reloaded the key at every L1 miss.
    l1, l2 = harness.l1(), harness.l2(max_value_bytes=1_000)
    policy = LayerPolicy(write=WriteBehind()) if write == "behind" else None
    cache = harness.cache([l1, l2], [None, policy])
    cache.set("k", "old")
    with pytest.raises(SerializationError, match="max_value_bytes=1000"):
        cache.set("k", b"x" * 5_000)
    cache.flush()
    assert l1.get("k") == "old" and l2.get("k") == "old"
    assert raw_redis.strlen(f"{prefix}k") < 1_000
    # A loaded one is still returned, and kept in L1 (as any value Redis cannot take).
    big = harness.loader(lambda key: b"y" * 5_000)
    assert cache.get_or_load("loaded", big) == b"y" * 5_000
    assert l1.get("loaded") == b"y" * 5_000 and not raw_redis.exists(f"{prefix}loaded")


def slots_of(client: Any, redis_keys: list[str]) -> int:
    """How many MGETs read ``redis_keys``: one per hash slot on a cluster."""
    if isinstance(client, redis.cluster.RedisCluster):
        return len({client.keyslot(key) for key in redis_keys})
    return 1


def test_get_many_across_layers_in_one_round_trip(cache, layers, raw_redis) -> None:
    l1, l2 = layers
    l1.set("in-l1", 1)
    l2.set_many({"in-l2": 2, "also-l2": 3})
    before = command_calls(raw_redis, "mget")
    found = cache.get_many(["in-l1", "in-l2", "nowhere", "also-l2", "in-l1"])
    assert found == {"in-l1": 1, "in-l2": 2, "also-l2": 3}
    assert list(found) == ["in-l1", "in-l2", "also-l2"]
    # Only the keys L1 missed, at once: one MGET (one per hash slot on a cluster, sent in
    # one pipeline per node).
    missed = [f"{l2.prefix}{key}" for key in ("in-l2", "nowhere", "also-l2")]
    assert command_calls(raw_redis, "mget") == before + slots_of(raw_redis, missed)


def test_set_many_of_something_not_a_mapping_says_so(cache) -> None:
    with pytest.raises(TypeError, match="set_many takes a mapping of keys to values"):
        cache.set_many([("a", 1), ("b", 2)])
    assert cache.get_many(["a", "b"]) == {}


def test_set_many(cache, layers) -> None:
    l1, l2 = layers
    cache.set_many({f"k{i}": i for i in range(50)}, ttl=60)
    assert l2.get_many([f"k{i}" for i in range(50)]) == {f"k{i}": i for i in range(50)}
    assert l1.get("k3") == 3


def test_get_or_load_writes_through_and_loads_once(harness, cache, layers) -> None:
    l1, l2 = layers
    calls = []
    load = harness.loader(lambda key: calls.append(key) or f"loaded {key}")
    assert cache.get_or_load("k", load) == "loaded k"
    assert cache.get_or_load("k", load) == "loaded k"
    assert calls == ["k"] and l2.get("k") == "loaded k" and l1.get("k") == "loaded k"
    l2.set("only-in-l2", "from l2")
    assert cache.get_or_load("only-in-l2", load) == "from l2" and calls == ["k"]
    assert cache.stats().loader_calls == 1 and cache.in_flight == 0


def test_get_or_load_many_calls_the_bulk_loader_once(harness, cache, layers) -> None:
    l1, l2 = layers
    cache.set("cached", "c")
    calls = []

    def bulk(keys):
        calls.append(list(keys))
        return {key: key.upper() for key in keys if key != "unknown"}

    result = cache.get_or_load_many(["cached", "a", "b", "unknown", "a"], harness.loader(bulk))
    assert calls == [["a", "b", "unknown"]]
    assert result == {"cached": "c", "a": "A", "b": "B"}
    assert l2.get("a") == "A"  # loaded values are written through
    again = cache.get_or_load_many(["a", "b"], harness.loader(bulk))
    assert again == {"a": "A", "b": "B"} and len(calls) == 1
    with pytest.raises(TypeError, match="must return a mapping"):
        cache.get_or_load_many(["z"], harness.loader(lambda keys: [1]))


def test_loader_exception_reaches_the_caller_and_caches_nothing(harness, cache) -> None:
    def failing(key):
        raise ValueError("database down")

    with pytest.raises(ValueError, match="database down"):
        cache.get_or_load("k", harness.loader(failing))
    assert cache.in_flight == 0 and cache.get("k") is None
    assert cache.get_or_load("k", harness.loader(lambda key: "recovered")) == "recovered"


def test_construction_errors(harness, layers) -> None:
    l1, _ = layers
    with pytest.raises(ValueError, match="at least one layer"):
        harness.cache([])
    with pytest.raises(ValueError, match="policies"):
        harness.cache([l1], [LayerPolicy(), LayerPolicy()])
    with pytest.raises(TypeError, match="lacks"):
        harness.cache([object()])
    with pytest.raises(ValueError, match="ttl_jitter"):
        LayerPolicy(ttl_jitter=2)
    with pytest.raises(ValueError, match="ttl"):
        LayerPolicy(ttl=-1)


def test_an_asyncio_layer_is_refused_by_the_sync_manager(layers, redis_url) -> None:
    from multilayercache import AsyncRedisLayer

    l1, _ = layers
    with pytest.raises(TypeError, match="use AsyncMultilayerCache"):
        MultilayerCache([l1, AsyncRedisLayer(redis_url)])


def test_record_latency(harness, layers) -> None:
    cache = harness.cache(list(layers), record_latency=True)
    cache.set("k", 1)
    for _ in range(10):
        cache.get("k")
        cache.get("absent")
    latency = cache.stats().layer_latency
    assert latency["l1"].count == 20 and latency["l2"].count == 10  # reads only
    assert latency["l2"].p50 > latency["l1"].p50


def test_a_dead_l2_degrades_reads_and_fails_writes(harness, doomed_server, caplog) -> None:
    l1 = harness.l1(max_size=100)
    l2 = harness.l2(doomed_server.url, name="redis", socket_timeout=1, socket_connect_timeout=1)
    cache = harness.cache([l1, l2])
    cache.set("k", "v")
    doomed_server.kill()
    assert cache.get("k") == "v"  # L1 still answers
    assert cache.get("gone", "dflt") == "dflt"  # L2 read fails: a miss, not an exception
    assert cache.get_or_load("new", harness.loader(lambda key: "loaded")) == "loaded"
    with pytest.raises(LayerError, match="SET failed|circuit breaker open"):
        cache.set("k2", "v2")  # a write that did not happen must not look like it did
    stats = cache.stats()
    assert stats.read_errors["redis"] >= 2 and stats.write_errors["redis"] >= 1
    assert any("treated as a miss" in message for message in caplog.messages)
