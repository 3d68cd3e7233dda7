"""RedisLayer and AsyncRedisLayer against real servers (single and a 3-master cluster)."""

from __future__ import annotations

import asyncio
import pickle
import time
from datetime import timedelta

import msgspec
import pytest
import redis
import redis.asyncio
import redis.cluster
from redis.cache import CacheConfig

from multilayercache import (
    AsyncRedisLayer,
    LayerError,
    LayerUnavailableError,
    RedisLayer,
    SerializationError,
    SignedPickleSerializer,
)
from multilayercache.tools.servers import free_port

from support import command_calls

VALUES = [None, True, 0, -(2**62), 3.5, "text", b"\x00bytes", [1, "a", None], {"k": [1, 2]}]
SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def make_layer():
    """Build RedisLayers that are closed when the test ends."""
    made = []

    def make(*args, **kwargs) -> RedisLayer:
        made.append(RedisLayer(*args, **kwargs))
        return made[-1]

    yield make
    for layer in made:
        layer.close()


@pytest.fixture
def layer(make_layer, redis_url, prefix):
    return make_layer(redis_url, prefix=prefix)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_round_trip(layer, value) -> None:
    layer.set("k", value)
    assert layer.get("k", "missing") == value
    assert layer.stats().hits == 1


def test_miss_default_delete(layer, raw_redis, prefix) -> None:
    assert layer.get("absent") is None and layer.get("absent", 7) == 7
    layer.set("k", 1)
    assert raw_redis.exists(f"{prefix}k") == 1  # the prefix is part of the Redis key
    assert layer.delete("k") is True and layer.delete("k") is False
    assert layer.stats().misses == 2


def test_ttl_and_jitter(make_layer, redis_url, prefix, raw_redis) -> None:
    layer = make_layer(redis_url, prefix=prefix, ttl=100, ttl_jitter=0.2)
    for i in range(50):
        layer.set(f"k{i}", i)
    ttls = [raw_redis.pttl(f"{prefix}k{i}") for i in range(50)]
    assert all(80_000 - 100 <= ttl <= 100_000 for ttl in ttls)  # jitter only shortens
    assert len(set(ttls)) > 10  # spread, not synchronized
    layer.set("short", 1, ttl=timedelta(milliseconds=150))
    layer.set("forever", 1, ttl=float("inf"))
    assert raw_redis.pttl(f"{prefix}forever") == -1
    time.sleep(0.3)
    assert layer.get("short") is None
    layer.set("k0", "x", ttl=0)  # ttl 0 removes
    assert raw_redis.exists(f"{prefix}k0") == 0


def test_bad_input_writes_nothing(layer, raw_redis, prefix) -> None:
    layer.set("k", "old")
    with pytest.raises(SerializationError, match="cannot encode a value of type 'object'"):
        layer.set("k", object())
    with pytest.raises(SerializationError):
        layer.set_many({"a": 1, "k": lambda: 0})
    assert layer.get("k") == "old" and raw_redis.exists(f"{prefix}a") == 0
    with pytest.raises(TypeError, match="keys must be str"):
        layer.set(42, "x")
    with pytest.raises(ValueError, match="ttl"):
        layer.set("k", 1, ttl=-1)
    assert layer.get("k") == "old"


def test_get_many_is_one_round_trip(layer, raw_redis) -> None:
    layer.set_many({f"k{i}": i for i in range(100)})
    mget_before = command_calls(raw_redis, "mget")
    get_before = command_calls(raw_redis, "get")
    found = layer.get_many([f"k{i}" for i in range(100)] + ["k5", "absent"])
    assert found == {f"k{i}": i for i in range(100)}
    assert command_calls(raw_redis, "mget") == mget_before + 1
    assert command_calls(raw_redis, "get") == get_before
    assert layer.get_many([]) == {}
    stats = layer.stats()  # every key read counts, a repeated one too
    assert (stats.hits, stats.misses) == (101, 1)


def test_reads_recover_from_killed_connections(make_layer, redis_url, prefix, raw_redis):
    # Reads drive pooled connections themselves: a connection the server dropped must be
    # disconnected and given back, never leaked (two connections at most here) or reused.
    layer = make_layer(redis_url, prefix=prefix, max_connections=2)
    items = {f"k{i}": i for i in range(50)}
    layer.set_many(items)
    for _ in range(10):
        raw_redis.client_kill_filter(_type="normal", skipme=True)
        try:
            layer.get_many(items)
        except LayerError:
            pass  # the dropped connection may surface once, if redis-py does not retry
        assert layer.get_many(items) == items
        raw_redis.client_kill_filter(_type="normal", skipme=True)
        try:
            layer.get("k1")
        except LayerError:
            pass
        assert layer.get("k1") == 1


@pytest.mark.parametrize(
    "options",
    [{"single_connection_client": True}, {"protocol": 3, "cache_config": CacheConfig()}],
    ids=["single connection", "client-side cache"],
)
def test_reads_through_any_client_setup(make_layer, redis_url, prefix, raw_redis, options):
    client = redis.Redis.from_url(redis_url, **options)
    try:
        client.ping()
    except (redis.RedisError, AttributeError) as error:
        # Client-side caching needs Redis >= 7.4 (not Valkey) and, before redis-py 6, the
        # pure-Python parser.
        client.close()
        pytest.skip(f"this server or redis-py refuses {sorted(options)}: {error}")
    layer = make_layer(client=client, prefix=prefix)
    layer.set_many({"a": 1, "b": 2})
    assert layer.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    other = RedisLayer(redis_url, prefix=prefix)
    other.set("a", 5)  # another instance writes
    other.close()
    assert layer.get_many(["a", "b"]) == {"a": 5, "b": 2}
    assert layer.get("a") == 5 and layer.get("c", "none") == "none"


def test_forged_pickle_is_refused(make_layer, redis_url, prefix, raw_redis, tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    layer = make_layer(redis_url, prefix=prefix, serializer=SignedPickleSerializer(SECRET))
    layer.set("good", {1, 2, 3})  # signed pickle round-trips arbitrary objects
    assert layer.get("good") == {1, 2, 3}
    payload = pickle.dumps(Exploit())
    forged = [
        payload,  # raw pickle
        b"\x02" + b"\x00" * 32 + payload,  # right tag, wrong signature
        SignedPickleSerializer(b"another key of sixteen+ bytes").dumps({"x": 1})[:33] + payload,
    ]
    for i, data in enumerate(forged):
        raw_redis.set(f"{prefix}evil{i}", data)
        assert layer.get(f"evil{i}", "refused") == "refused"
    assert layer.get_many([f"evil{i}" for i in range(3)]) == {}
    assert not marker.exists(), "a forged pickle was executed"
    assert layer.stats().errors == 6
    # The default serializer never unpickles anything.
    default = make_layer(redis_url, prefix=prefix)
    assert default.get("evil0", "refused") == "refused" and not marker.exists()
    assert default.get("good", "refused") == "refused"


def test_signing_key_is_required() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        SignedPickleSerializer(b"short")


def test_verify_reports_an_unreachable_server() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(LayerUnavailableError, match="cannot reach"):
        RedisLayer(url, verify=True, socket_connect_timeout=1)
    RedisLayer(url)  # without verify, construction does no IO


def test_construction_errors(redis_url) -> None:
    with pytest.raises(ValueError, match="either a url or a client"):
        RedisLayer()
    with pytest.raises(ValueError, match="either a url or a client"):
        RedisLayer(redis_url, client=redis.Redis())
    with pytest.raises(TypeError, match="use AsyncRedisLayer"):
        RedisLayer(client=redis.asyncio.Redis())
    with pytest.raises(ValueError, match="ttl_jitter"):
        RedisLayer(redis_url, ttl_jitter=1.5)


def test_existing_client(make_layer, redis_url, prefix) -> None:
    layer = make_layer(client=redis.Redis.from_url(redis_url), prefix=prefix)
    layer.set("k", [1])
    assert layer.get("k") == [1]


def test_cluster_multi_key_operations(redis_cluster, prefix) -> None:
    layer = RedisLayer(client=redis.cluster.RedisCluster.from_url(redis_cluster.url), prefix=prefix)
    assert layer.is_cluster
    items = {f"user:{i}": {"id": i} for i in range(300)}  # spread over many hash slots
    layer.set_many(items, ttl=60)
    assert layer.get_many(list(items) + ["absent"]) == items
    assert layer.get("user:7") == {"id": 7}
    assert layer.delete("user:7") and layer.get("user:7") is None
    nodes = {layer.client.keyslot(f"{prefix}{key}") for key in items}
    assert len(nodes) > 100
    layer.close()


def test_cluster_clear_delete_many_and_ttl(redis_cluster, prefix) -> None:
    layer = RedisLayer(redis_cluster.url, cluster=True, prefix=prefix)
    other = RedisLayer(redis_cluster.url, cluster=True, prefix=f"other-{prefix}")
    items = {f"k{i}": i for i in range(700)}  # every node, more than one SCAN batch
    layer.set_many(items, ttl=60)
    other.set("kept", 1)
    assert 59 < layer.remaining_ttl("k1") <= 60 and layer.contains("k1")
    assert layer.delete_many(["k1", "k2", "absent"]) == 2
    assert layer.clear() == len(items) - 2
    assert layer.get_many(list(items)) == {} and other.get("kept") == 1
    other.clear()
    layer.close(), other.close()


async def test_async_cluster_clear(redis_cluster, prefix) -> None:
    layer = AsyncRedisLayer(redis_cluster.url, cluster=True, prefix=prefix)
    await layer.set_many({f"k{i}": i for i in range(300)})
    assert await layer.delete_many(["k0"]) == 1
    assert await layer.clear() == 299
    assert await layer.get_many([f"k{i}" for i in range(300)]) == {}
    await layer.close()


def test_cluster_write_behind_batches_span_every_node(redis_cluster, prefix) -> None:
    from multilayercache import InMemoryLayer, LayerPolicy, MultilayerCache, WriteBehind

    layer = RedisLayer(redis_cluster.url, cluster=True, prefix=prefix)
    cache = MultilayerCache(
        [InMemoryLayer(max_size=1000), layer], [None, LayerPolicy(write=WriteBehind())]
    )
    items = {f"k{i}": i for i in range(600)}  # more than a batch, over every node
    for key, value in items.items():
        cache.set(key, value)
    cache.delete("k0")
    assert cache.flush(timeout=10)
    assert layer.get_many(list(items)) == {key: v for key, v in items.items() if key != "k0"}
    cache.close()


async def test_async_cluster_write_behind(redis_cluster, prefix) -> None:
    from multilayercache import AsyncMultilayerCache, InMemoryLayer, LayerPolicy, WriteBehind

    layer = AsyncRedisLayer(redis_cluster.url, cluster=True, prefix=prefix)
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=1000), layer], [None, LayerPolicy(write=WriteBehind())]
    )
    await cache.set_many({f"k{i}": i for i in range(300)})
    assert await cache.flush(timeout=10)
    assert await layer.get_many([f"k{i}" for i in range(300)]) == {f"k{i}": i for i in range(300)}
    await cache.close()


def test_cluster_from_url(redis_cluster, prefix) -> None:
    layer = RedisLayer(redis_cluster.url, cluster=True, prefix=prefix)
    layer.set_many({f"k{i}": i for i in range(20)})
    assert layer.get_many([f"k{i}" for i in range(20)]) == {f"k{i}": i for i in range(20)}
    layer.close()


# ----------------------------------------------------------------------------- asyncio
async def test_async_layer(redis_url, prefix, raw_redis) -> None:
    layer = AsyncRedisLayer(redis_url, prefix=prefix, ttl=30)
    await layer.verify()
    for value in VALUES:
        await layer.set("k", value)
        assert await layer.get("k", "missing") == value
    await layer.set_many({f"k{i}": i for i in range(50)})
    before = command_calls(raw_redis, "mget")
    assert await layer.get_many([f"k{i}" for i in range(50)]) == {f"k{i}": i for i in range(50)}
    assert command_calls(raw_redis, "mget") == before + 1
    assert await layer.delete("k1") and not await layer.delete("k1")
    with pytest.raises(SerializationError):
        await layer.set("k2", object())
    assert await layer.get("k2") == 2
    await layer.close()


async def test_async_get_many_survives_cancellation_and_a_killed_connection(
    redis_url, prefix, raw_redis
) -> None:
    # get_many drives pooled connections itself: a task cancelled between sending MGET and
    # reading the reply must not leave that reply on a connection for the next reader.
    layer = AsyncRedisLayer(redis_url, prefix=prefix, max_connections=4)
    evens = {f"a{i}": i for i in range(50)}
    odds = {f"b{i}": -i for i in range(50)}
    await layer.set_many(evens | odds)

    async def read(items: dict) -> None:
        assert await layer.get_many(items) == items

    for round_ in range(30):
        tasks = [asyncio.create_task(read(odds if i % 2 else evens)) for i in range(8)]
        await asyncio.sleep(0.0001 * round_)
        for task in tasks[::2]:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            assert outcome is None or isinstance(outcome, asyncio.CancelledError), outcome
    raw_redis.client_kill_filter(_type="normal", skipme=True)
    try:
        await read(evens)
    except LayerError:
        pass  # the dropped connection may surface once: redis-py's asyncio client does not retry
    await read(evens)
    await read(odds)
    await layer.close()


async def test_async_get_many_with_a_single_connection_client(redis_url, prefix) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, single_connection_client=True)
    layer = AsyncRedisLayer(client=client, prefix=prefix)
    await layer.set_many({"a": 1, "b": 2})
    assert await layer.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    await layer.close()


async def test_async_layer_many_tasks_share_a_bounded_pool(redis_url, prefix) -> None:
    layer = AsyncRedisLayer(redis_url, prefix=prefix, max_connections=8)
    await layer.set("k", "v")
    results = await asyncio.gather(*[layer.get("k") for _ in range(1000)])
    assert results == ["v"] * 1000 and layer.stats().errors == 0
    await layer.close()


async def test_async_verify_and_cluster(redis_cluster, prefix) -> None:
    unreachable = AsyncRedisLayer(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    with pytest.raises(LayerUnavailableError):
        await unreachable.verify()
    await unreachable.close()
    layer = AsyncRedisLayer(redis_cluster.url, cluster=True, prefix=prefix)
    items = {f"user:{i}": i for i in range(200)}
    await layer.set_many(items)
    assert await layer.get_many(list(items)) == items
    assert await layer.get("user:7") == 7 and await layer.get("absent") is None
    await layer.close()
    with pytest.raises(TypeError, match="use RedisLayer"):
        AsyncRedisLayer(client=redis.Redis())


# ----------------------------------------------------------------------------- freshness
def test_entries_carry_their_freshness(redis_url, prefix, raw_redis) -> None:
    from multilayercache.core.freshness import Freshness, Lifetime

    layer = RedisLayer(redis_url, prefix=prefix)
    layer.set_entry("k", {"v": 1}, Lifetime(ttl=0.2, stale_ttl=30, refresh_after=0.1), 0.05)
    entry = layer.get_entry("k")
    assert entry.freshness is Freshness.FRESH and entry.load_seconds == pytest.approx(0.05)
    assert 30_000 < raw_redis.pttl(f"{prefix}k") <= 30_200  # Redis keeps it past the TTL
    time.sleep(0.25)
    assert layer.get("k", "dflt") == "dflt"  # stale: get no longer serves it ...
    stale = layer.get_entry("k")
    assert stale.freshness is Freshness.STALE and stale.value == {"v": 1}  # ... get_entry does
    assert layer.get_many(["k"]) == {} and layer.get_entries(["k"])["k"].value == {"v": 1}
    layer.close()


def test_values_of_older_formats_are_counted_misses(redis_url, prefix, raw_redis) -> None:
    layer = RedisLayer(redis_url, prefix=prefix)
    raw_redis.set(f"{prefix}old", layer.serializer.dumps([1, 2]))  # the 0.1.0 format
    format_1 = b"\x97\x01\xd3" + bytes(8) + (b"\xd3" + b"\xff" * 8) * 3 + b"\xca" + bytes(4)
    raw_redis.set(f"{prefix}format-1", format_1 + b"\x90" + layer.serializer.dumps(3))
    assert layer.get("old") is None and layer.get("format-1") is None
    layer.set("new", 3)
    assert layer.get_many(["old", "format-1", "new"]) == {"new": 3}
    assert layer.stats().untrusted == {"corrupt": 4}
    layer.close()


def test_a_batch_read_decodes_exactly_as_reads_one_by_one(redis_url, prefix, raw_redis) -> None:
    # get_entries decodes a batch of enveloped values in one msgspec call and one loop;
    # anything unusual (old format, a forged header, a missing key) takes the general path.
    from multilayercache.core.freshness import Lifetime

    layer = RedisLayer(redis_url, prefix=prefix)
    lifetimes = [Lifetime(30, 5, 20), Lifetime(float("inf")), Lifetime(0.5, 0, float("inf"))]
    for index, lifetime in enumerate(lifetimes):
        layer.set_entry(f"k{index}", {"n": index}, lifetime, 0.25)
    keys = [f"k{index}" for index in range(len(lifetimes))]

    def same(batch: dict, keys: list[str]) -> None:
        for key in keys:
            one = layer.get_entry(key)
            assert (batch[key].value, batch[key].load_seconds) == (one.value, one.load_seconds)
            for field in ("fresh_for", "gone_in", "refresh_in"):
                assert getattr(batch[key], field) == pytest.approx(getattr(one, field), abs=0.05)

    same(layer.get_entries(keys), keys)
    raw_redis.set(f"{prefix}old", layer.serializer.dumps([1]))  # no envelope: general path
    from multilayercache.core.entry import HEADER_SIZE, key_check

    k0 = raw_redis.get(f"{prefix}k0")
    tag_and_value = k0[HEADER_SIZE:]
    forged = b"\x98\x03" + b"\xa1x" * 6 + b"\x90" + tag_and_value  # deadlines are text
    raw_redis.set(f"{prefix}forged", forged)
    # The same numbers, as MessagePack would write them compactly: not the fixed layout.
    fields = [3, 1, -1, -1, -1, 0.0, key_check(f"{prefix}compact"), []]
    raw_redis.set(f"{prefix}compact", msgspec.msgpack.encode(fields) + tag_and_value)
    raw_redis.set(f"{prefix}copy", k0)  # k0's value, copied under another key
    unusual = ["forged", "compact", "copy", "old"]
    for batch_keys in ([*keys, "forged"], [*keys, *unusual, "absent"], ["copy"], ["compact"]):
        batch = layer.get_entries(batch_keys)
        same(batch, [key for key in keys if key in batch_keys])
        for key in unusual:
            assert key not in batch and layer.get_entry(key) is None
    assert layer.get_many(["copy", "k0"]) == {"k0": {"n": 0}}
    assert layer.stats().untrusted["wrong_key"] >= 4
    layer.close()


def late_batch(layer: RedisLayer | AsyncRedisLayer) -> list:
    """Writes made now, to be sent after newer ones: a set of "old" and "gone", a delete of
    "kept"."""
    from multilayercache.core.freshness import Lifetime

    lifetime = Lifetime(60.0)
    return [
        layer.encode_write("old", "stale", lifetime),
        layer.encode_write("gone", "stale", lifetime),
        layer.encode_delete("kept"),
        layer.encode_write("fresh", "from the late batch", lifetime),
    ]


def test_a_late_batch_lands_only_over_older_values(make_layer, redis_url, prefix) -> None:
    layer = make_layer(redis_url, prefix=prefix)
    writes = late_batch(layer)
    time.sleep(0.01)  # what another process writes after them
    layer.set("old", "newer")
    layer.set("kept", "newer")
    layer.write_packed(writes, late=True)
    assert layer.get_many(["old", "gone", "kept", "fresh"]) == {
        "old": "newer",  # a newer value stays
        "gone": "stale",  # nothing was there: written
        "kept": "newer",  # the older delete does not remove a newer value
        "fresh": "from the late batch",
    }
    layer.write_packed(writes)  # not late: plain SET / DEL, as sent in order
    assert layer.get_many(["old", "kept"]) == {"old": "stale"}


@pytest.mark.parametrize("cluster", [False, True], ids=["server", "cluster"])
async def test_an_asyncio_late_batch_lands_only_over_older_values(
    cluster, redis_url, redis_cluster, prefix
) -> None:
    url = redis_cluster.url if cluster else redis_url
    layer = AsyncRedisLayer(url, cluster=cluster, prefix=prefix)
    writes = late_batch(layer)
    await asyncio.sleep(0.01)
    await layer.set("old", "newer")
    await layer.set("kept", "newer")
    await layer.write_packed(writes, late=True)
    assert await layer.get_many(["old", "gone", "kept", "fresh"]) == {
        "old": "newer",
        "gone": "stale",
        "kept": "newer",
        "fresh": "from the late batch",
    }
    await layer.close()


async def test_an_asyncio_clear_waits_its_turn_with_the_other_commands(redis_url, prefix) -> None:
    # The layer lets at most max_connections commands run at once, and its pool has no
    # more connections than that: clear()'s SCAN calls must queue at that gate too.
    layer = AsyncRedisLayer(redis_url, prefix=prefix, max_connections=2)
    await layer.set_many({f"k{i}": i for i in range(1200)})

    async def reads() -> None:
        for _ in range(20):
            await asyncio.gather(*(layer.get(f"k{i}") for i in range(10)))

    cleared, _ = await asyncio.gather(layer.clear(), reads())
    assert cleared == 1200 and layer.stats().errors == 0
    await layer.close()
