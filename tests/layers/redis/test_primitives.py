"""add, touch and incr of RedisLayer and AsyncRedisLayer: Lua scripts against real servers
(single and a 3-master cluster), keeping every value's envelope consistent."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import redis
import redis.cluster

from multilayercache import AsyncRedisLayer, RedisLayer, SignedPickleSerializer
from multilayercache.core.entry import NO_DEADLINE_MS, unwrap
from multilayercache.core.freshness import Lifetime


@pytest.fixture
def layer(redis_url, prefix):
    layer = RedisLayer(redis_url, prefix=prefix)
    yield layer
    layer.close()


def envelope(raw_redis, redis_key: str):
    return unwrap(raw_redis.get(redis_key))[0]


def test_add_stores_only_what_get_would_miss(layer, raw_redis, prefix) -> None:
    assert layer.add("k", {"v": 1}, ttl=30) is True
    assert layer.add("k", 2) is False and layer.get("k") == {"v": 1}
    assert 29_000 <= raw_redis.pttl(f"{prefix}k") <= 30_000
    layer.set_entry("stale", "old", Lifetime(0.05, 60))  # fresh 50 ms, then stale a minute
    time.sleep(0.1)
    assert layer.get("stale") is None and raw_redis.exists(f"{prefix}stale")
    assert layer.add("stale", "new") is True and layer.get("stale") == "new"
    assert (
        layer.add("forever", 1, ttl=math.inf) is True and raw_redis.pttl(f"{prefix}forever") == -1
    )
    assert layer.add("at-once", 1, ttl=0) is True and not raw_redis.exists(f"{prefix}at-once")
    raw_redis.set(f"{prefix}foreign", b"not an envelope")  # a get would miss it: absent
    assert layer.add("foreign", 1) is True and layer.get("foreign") == 1


def test_touch_rewrites_the_deadlines_not_the_value(layer, raw_redis, prefix) -> None:
    layer.set_entry("k", [1, 2], Lifetime(10, 20, 5))
    before = raw_redis.get(f"{prefix}k")
    written = envelope(raw_redis, f"{prefix}k").written_ms
    time.sleep(0.02)
    assert layer.touch_entry("k", Lifetime(100, 50, 80)) is True
    after = raw_redis.get(f"{prefix}k")
    header = unwrap(after)[0]
    assert after[38:] == before[38:] and header.written_ms == written  # value, load time
    now_ms = time.time() * 1000
    assert header.refresh_ms == pytest.approx(now_ms + 80_000, abs=200)
    assert header.stale_ms == pytest.approx(now_ms + 100_000, abs=200)
    assert header.gone_ms == pytest.approx(now_ms + 150_000, abs=200)
    assert 149_000 <= raw_redis.pttl(f"{prefix}k") <= 150_000
    entry = layer.get_entry("k")
    assert entry.value == [1, 2] and entry.fresh_for == pytest.approx(100, abs=0.2)
    assert layer.touch("k", math.inf) is True and raw_redis.pttl(f"{prefix}k") == -1
    assert envelope(raw_redis, f"{prefix}k").gone_ms == NO_DEADLINE_MS and layer.get("k") == [1, 2]
    assert layer.touch("absent", 5) is False and not raw_redis.exists(f"{prefix}absent")
    assert layer.touch("k", 0) is True and not raw_redis.exists(f"{prefix}k")


def test_touch_leaves_a_stale_value_alone(layer, raw_redis, prefix) -> None:
    layer.set_entry("stale", "old", Lifetime(0.05, 60))
    time.sleep(0.1)
    before = raw_redis.get(f"{prefix}stale")
    assert layer.touch("stale", 100) is False
    assert raw_redis.get(f"{prefix}stale") == before and layer.get("stale") is None


def test_incr_keeps_the_ttl_and_the_envelope(layer, raw_redis, prefix) -> None:
    assert layer.incr("n", ttl=30) == 1
    assert layer.incr("n", 41) == 42 and layer.decr("n", 2) == 40
    assert layer.get("n") == 40 and layer.get("n", value_type=int) == 40
    assert 29_000 <= raw_redis.pttl(f"{prefix}n") <= 30_000
    header = envelope(raw_redis, f"{prefix}n")
    assert header.stale_ms == header.gone_ms and header.gone_ms - time.time() * 1000 > 29_000
    assert layer.get_many(["n"]) == {"n": 40}  # the batch path decodes counters too
    layer.set("plain", 7)  # any integer value counts on
    assert layer.incr("plain", -10) == -3
    assert layer.incr("forever", ttl=math.inf) == 1 and raw_redis.pttl(f"{prefix}forever") == -1


@pytest.mark.parametrize(
    ("stored", "delta", "error"),
    [
        ("text", 1, TypeError),
        (1.5, 1, TypeError),
        (True, 1, TypeError),
        ([1], 1, TypeError),
        (1, 1.0, TypeError),
        (2**53 - 1, 1, OverflowError),
        (-(2**53) + 1, -1, OverflowError),
        (0, 2**53, OverflowError),
    ],
)
def test_incr_refuses_what_is_not_a_count(layer, raw_redis, prefix, stored, delta, error) -> None:
    layer.set("k", stored)
    before = raw_redis.get(f"{prefix}k")
    with pytest.raises(error):
        layer.incr("k", delta)
    assert raw_redis.get(f"{prefix}k") == before
    assert layer.stats().errors == 0  # the value's fault, not the layer's


def test_incr_needs_the_messagepack_serializer(redis_url, prefix) -> None:
    signed = RedisLayer(redis_url, prefix=prefix, serializer=SignedPickleSerializer(b"k" * 32))
    with pytest.raises(TypeError, match="MessagePack"):
        signed.incr("n")
    signed.close()


@pytest.mark.parametrize("algorithm", ["zlib", "zstd"])
def test_incr_counts_on_a_layer_that_compresses_large_values(redis_url, prefix, algorithm) -> None:
    layer = RedisLayer(redis_url, prefix=prefix, compression=algorithm)
    assert [layer.incr("n") for _ in range(3)] == [1, 2, 3]
    assert layer.get("n") == 3
    layer.close()


def test_scripts_are_loaded_again_after_a_flush(layer, raw_redis) -> None:
    assert layer.incr("n") == 1
    raw_redis.script_flush()
    assert layer.incr("n") == 2 and layer.add("a", 1) and layer.touch("a", 5)


def test_the_async_layer(redis_url, prefix, raw_redis) -> None:
    async def main() -> list:
        layer = AsyncRedisLayer(redis_url, prefix=prefix)
        try:
            return [
                await layer.add("k", 1, ttl=30),
                await layer.add("k", 2),
                await layer.incr("n", 5, ttl=30),
                await layer.decr("n"),
                await layer.touch("k", 60),
                await layer.touch("absent"),
                await layer.get("k"),
            ]
        finally:
            await layer.close()

    assert asyncio.run(main()) == [True, False, 5, 4, True, False, 1]
    assert 59_000 <= raw_redis.pttl(f"{prefix}k") <= 60_000


def test_on_a_cluster(redis_cluster, prefix) -> None:
    layer = RedisLayer(client=redis.cluster.RedisCluster.from_url(redis_cluster.url), prefix=prefix)
    keys = [f"key-{n}" for n in range(30)]  # spread over the three masters' slots
    assert all(layer.add(key, key, ttl=30) for key in keys)
    assert not any(layer.add(key, "again") for key in keys)
    assert [layer.incr(f"n-{key}", 2) for key in keys] == [2] * 30
    assert all(layer.touch(key, 60) for key in keys)
    assert all(50 < layer.remaining_ttl(key) <= 60 for key in keys)
    assert layer.get_many(keys) == {key: key for key in keys}
    layer.close()

    async def main() -> list[int]:
        aio = AsyncRedisLayer(redis_cluster.url, cluster=True, prefix=prefix)
        try:
            return [await aio.incr(f"n-{key}") for key in keys]
        finally:
            await aio.close()

    assert asyncio.run(main()) == [3] * 30
