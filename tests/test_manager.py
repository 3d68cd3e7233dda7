"""MultilayerCache over a real InMemoryLayer and a real Redis server."""

from __future__ import annotations

import threading
import time

import pytest

from multilayercache import (
    InMemoryLayer,
    LayerError,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    SerializationError,
)

from conftest import command_calls


@pytest.fixture
def layers(redis_url, prefix):
    l1 = InMemoryLayer(max_size=1_000, name="l1")
    l2 = RedisLayer(redis_url, prefix=prefix, name="l2")
    yield l1, l2
    l2.close()


@pytest.fixture
def cache(layers):
    return MultilayerCache(list(layers))


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
def test_promotion_rules(layers, promote, promoted_after_one_read) -> None:
    l1, l2 = layers
    cache = MultilayerCache([l1, l2], [LayerPolicy(promote=promote), None])
    for key in ("yes-1", "no-1"):
        l2.set(key, key)
        cache.get(key)
    if promoted_after_one_read is None:
        assert "yes-1" in l1 and "no-1" not in l1
    else:
        assert ("yes-1" in l1) is promoted_after_one_read


def test_layered_ttls(layers, raw_redis, prefix) -> None:
    l1, l2 = layers
    cache = MultilayerCache([l1, l2], [LayerPolicy(ttl=0.2), LayerPolicy(ttl=30, ttl_jitter=0.1)])
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


def test_get_many_across_layers_in_one_round_trip(cache, layers, raw_redis) -> None:
    l1, l2 = layers
    l1.set("in-l1", 1)
    l2.set_many({"in-l2": 2, "also-l2": 3})
    before = command_calls(raw_redis, "mget")
    found = cache.get_many(["in-l1", "in-l2", "nowhere", "also-l2", "in-l1"])
    assert found == {"in-l1": 1, "in-l2": 2, "also-l2": 3}
    assert list(found) == ["in-l1", "in-l2", "also-l2"]
    assert command_calls(raw_redis, "mget") == before + 1  # only the keys L1 missed, at once


def test_set_many(cache, layers) -> None:
    l1, l2 = layers
    cache.set_many({f"k{i}": i for i in range(50)}, ttl=60)
    assert l2.get_many([f"k{i}" for i in range(50)]) == {f"k{i}": i for i in range(50)}
    assert l1.get("k3") == 3


def test_get_or_load_many_calls_the_bulk_loader_once(cache, layers) -> None:
    l1, l2 = layers
    cache.set("cached", "c")
    calls = []

    def bulk(keys):
        calls.append(list(keys))
        return {key: key.upper() for key in keys if key != "unknown"}

    result = cache.get_or_load_many(["cached", "a", "b", "unknown", "a"], bulk)
    assert calls == [["a", "b", "unknown"]]
    assert result == {"cached": "c", "a": "A", "b": "B"}
    assert l2.get("a") == "A"  # loaded values are written through
    assert cache.get_or_load_many(["a", "b"], bulk) == {"a": "A", "b": "B"} and len(calls) == 1
    with pytest.raises(TypeError, match="must return a mapping"):
        cache.get_or_load_many(["z"], lambda keys: [1])


def test_64_threads_on_one_missing_key_call_the_loader_once(cache) -> None:
    calls = []
    barrier = threading.Barrier(64)
    results = []

    def loader(key):
        calls.append(key)
        time.sleep(0.2)
        return f"value of {key}"

    def worker():
        barrier.wait()
        results.append(cache.get_or_load("hot", loader))

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["hot"]
    assert results == ["value of hot"] * 64
    assert cache.in_flight == 0
    stats = cache.stats()
    assert stats.loader_calls == 1 and stats.coalesced_waits == 63
    assert stats.load_latency.p50 >= 0.2


def test_loader_exception_reaches_every_waiter(cache) -> None:
    barrier = threading.Barrier(16)
    errors = []
    calls = []

    def loader(key):
        calls.append(key)
        time.sleep(0.1)
        raise ValueError("database down")

    def worker():
        barrier.wait()
        try:
            cache.get_or_load("k", loader)
        except ValueError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and errors == ["database down"] * 16
    assert cache.in_flight == 0 and cache.get("k") is None  # nothing cached
    assert cache.get_or_load("k", lambda key: "recovered") == "recovered"


def test_cached_decorator(cache) -> None:
    calls = []

    @cache.cached(ttl=60)
    def user(user_id, *, detail=False):
        calls.append((user_id, detail))
        return {"id": user_id, "detail": detail}

    assert user(1) == user(1) == {"id": 1, "detail": False}
    assert user(1, detail=True)["detail"] is True
    assert calls == [(1, False), (1, True)]
    assert user.cache_key(1) == f"{__name__}.test_cached_decorator.<locals>.user:[[1],[]]"
    assert user.invalidate(1) is True
    user(1)
    assert len(calls) == 3
    assert user.__name__ == "user"

    @cache.cached(key=lambda item: f"item:{item.id}")
    def describe(item):
        return f"item {item.id}"

    class Item:
        id = 5

    assert describe(Item()) == "item 5" and cache.get("item:5") == "item 5"

    @cache.cached()
    def takes_objects(item):
        return 1

    with pytest.raises(TypeError, match="pass key="):
        takes_objects(Item())

    with pytest.raises(TypeError, match="coroutine function"):

        @cache.cached()
        async def not_here():
            return 1


def test_tags_are_reserved(cache) -> None:
    with pytest.raises(NotImplementedError, match="tags are reserved"):
        cache.set("k", 1, tags=["users"])
    assert cache.get("k") is None


def test_construction_errors(layers) -> None:
    l1, _ = layers
    with pytest.raises(ValueError, match="at least one layer"):
        MultilayerCache([])
    with pytest.raises(ValueError, match="policies"):
        MultilayerCache([l1], [LayerPolicy(), LayerPolicy()])
    with pytest.raises(TypeError, match="lacks"):
        MultilayerCache([object()])
    from multilayercache import AsyncRedisLayer

    with pytest.raises(TypeError, match="use AsyncMultilayerCache"):
        MultilayerCache([l1, AsyncRedisLayer("redis://127.0.0.1:1/0")])
    with pytest.raises(ValueError, match="ttl_jitter"):
        LayerPolicy(ttl_jitter=2)
    with pytest.raises(ValueError, match="ttl"):
        LayerPolicy(ttl=-1)


def test_record_latency(layers) -> None:
    cache = MultilayerCache(list(layers), record_latency=True)
    cache.set("k", 1)
    for _ in range(10):
        cache.get("k")
        cache.get("absent")
    latency = cache.stats().layer_latency
    assert latency["l1"].count == 20 and latency["l2"].count == 10
    assert latency["l2"].p50 > latency["l1"].p50


def test_a_dead_l2_degrades_reads_and_fails_writes(doomed_server, prefix, caplog) -> None:
    l1 = InMemoryLayer(max_size=100)
    l2 = RedisLayer(doomed_server.url, prefix=prefix, socket_timeout=1, socket_connect_timeout=1)
    cache = MultilayerCache([l1, l2])
    cache.set("k", "v")
    doomed_server.kill()
    assert cache.get("k") == "v"  # L1 still answers
    assert cache.get("gone", "dflt") == "dflt"  # L2 read fails: a miss, not an exception
    assert cache.get_or_load("new", lambda key: "loaded") == "loaded"
    with pytest.raises(LayerError, match="SET failed"):
        cache.set("k2", "v2")  # a write that did not happen must not look like it did
    stats = cache.stats()
    assert stats.read_errors["redis"] >= 2 and stats.write_errors["redis"] >= 1
    assert any("treated as a miss" in message for message in caplog.messages)
    l2.close()


def test_compiled_front_door_and_reference_get_agree(layers) -> None:
    l1, l2 = layers
    cache = MultilayerCache([l1, l2])
    reference = MultilayerCache.get  # the readable Python version
    cache.set("both", 1)
    l2.set("below", 2)
    for key, expected in (("both", 1), ("below", 2), ("nowhere", "dflt")):
        assert cache.get(key, "dflt") == reference(cache, key, "dflt") == expected
    assert reference(cache, "below") == 2 and "below" in l1  # both promote
    assert cache.get("nowhere") is None and reference(cache, "nowhere") is None
