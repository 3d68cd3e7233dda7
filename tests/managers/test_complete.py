"""The manager's full surface, on {sync, asyncio} x {compiled, pure} L1 over real Redis:
clear, delete_many, contains, remaining TTL, context managers, repr, and what a value that
cannot be encoded does."""

from __future__ import annotations

import logging
import math
import time

import pytest

from multilayercache import LayerPolicy, SerializationError


class Unencodable:
    """A value MessagePack cannot represent (an object of a class of its own)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unencodable)

    __hash__ = object.__hash__


def test_clear_empties_l1_and_only_this_prefix_in_l2(harness, cache, layers, raw_redis) -> None:
    l1, l2 = layers
    raw_redis.set("someone-else:k", b"theirs")
    cache.set_many({f"k{i}": i for i in range(1_200)})  # more than one SCAN batch
    cache.clear()
    assert len(l1) == 0 and l2.get_many(["k1", "k999"]) == {}
    assert raw_redis.get("someone-else:k") == b"theirs"
    raw_redis.delete("someone-else:k")


def test_clear_refuses_a_layer_without_prefix(harness, layers) -> None:
    l1, _ = layers
    cache = harness.cache([l1, harness.l2(prefix="")])
    with pytest.raises(ValueError, match="needs a key prefix"):
        cache.clear()


def test_delete_many(cache, layers) -> None:
    l1, l2 = layers
    cache.set_many({"a": 1, "b": 2, "c": 3})
    cache.delete_many(["a", "b", "nowhere"])
    assert cache.get_many(["a", "b", "c"]) == {"c": 3}
    assert "a" not in l1 and l2.get("b") is None


def test_contains_does_not_count_or_promote(harness, cache, layers) -> None:
    l1, l2 = layers
    l2.set("below", 1)
    hits, misses = l2.stats().hits, l2.stats().misses
    assert cache.contains("below") is True and cache.contains("nowhere") is False
    assert (l2.stats().hits, l2.stats().misses) == (hits, misses)
    assert "below" not in l1
    if not harness.is_async:
        assert "below" in cache._target and "nowhere" not in cache._target
    else:
        with pytest.raises(TypeError, match="await cache.contains"):
            "below" in cache._target  # noqa: B015


def test_remaining_ttl(harness, layers) -> None:
    l1, l2 = layers
    cache = harness.cache([l1, l2], [LayerPolicy(ttl=5), LayerPolicy(ttl=60)])
    cache.set("k", 1)
    assert 59 < cache.remaining_ttl("k") <= 60  # the longest-lived layer
    assert 4 < l1.remaining_ttl("k") <= 5
    assert cache.remaining_ttl("nowhere") is None
    cache.set("forever", 1, ttl=math.inf)
    forever = harness.cache([l1, l2], [None, LayerPolicy(ttl=math.inf)])
    forever.set("forever", 1, ttl=math.inf)
    assert forever.remaining_ttl("forever") == math.inf


def test_a_shared_layer_does_not_keep_keys_forever_by_default(harness, raw_redis, prefix) -> None:
    l2 = harness.l2()
    l2.set("k", 1)
    assert 3_599_000 <= raw_redis.pttl(f"{prefix}k") <= 3_600_000  # the documented hour
    l2.set("forever", 1, ttl=math.inf)
    assert raw_redis.pttl(f"{prefix}forever") == -1
    assert l2.stats().size is None  # Redis cannot tell this layer's size cheaply


def test_repr_shows_the_layers_and_hides_passwords(harness) -> None:
    l2 = harness.l2("redis://user:s3cret@127.0.0.1:1/0")
    cache = harness.cache([harness.l1(), l2])
    text = repr(cache)
    assert "InMemoryLayer(name='l1', max_size=1000, size=0)" in text
    assert "s3cret" not in text and "user:***@127.0.0.1:1/0" in text


def test_context_manager_closes_the_layers(harness, redis_url, raw_redis, prefix) -> None:
    import asyncio

    from multilayercache import AsyncMultilayerCache, AsyncRedisLayer, MultilayerCache, RedisLayer

    name = f"ctx-{prefix[:-1]}"

    def connected() -> int:
        return sum(1 for client in raw_redis.client_list() if client.get("name") == name)

    def disconnected() -> bool:
        # The server drops a closed client when it next reads its socket: give it a moment.
        deadline = time.monotonic() + 2.0
        while connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        return connected() == 0

    if harness.is_async:

        async def use() -> None:
            layer = AsyncRedisLayer(redis_url, prefix=prefix, client_name=name)
            async with AsyncMultilayerCache([layer]) as cache:
                await cache.set("k", 1)
                assert connected() == 1
            assert disconnected()

        asyncio.run(use())
    else:
        with MultilayerCache([RedisLayer(redis_url, prefix=prefix, client_name=name)]) as cache:
            cache.set("k", 1)
            assert connected() == 1
        assert disconnected()


def test_a_loaded_value_that_cannot_be_encoded_is_returned_and_kept_in_l1(
    harness, cache, layers, caplog
) -> None:
    l1, l2 = layers
    calls = []
    load = harness.loader(lambda key: calls.append(key) or Unencodable())
    with caplog.at_level(logging.WARNING, logger="multilayercache"):
        assert cache.get_or_load("k", load) == Unencodable()
        assert cache.get_or_load("k", load) == Unencodable()  # an L1 hit: not loaded again
        assert cache.get_or_load("other", load) == Unencodable()
    assert calls == ["k", "other"]
    assert "k" in l1 and l2.get("k") is None
    assert cache.stats().encode_errors["l2"] == 2
    warnings = [message for message in caplog.messages if "not cached in this layer" in message]
    assert len(warnings) == 1  # once per interval, not per value
    with pytest.raises(SerializationError):
        cache.set("k2", Unencodable())  # an explicit write still raises
    assert "k2" not in l1
