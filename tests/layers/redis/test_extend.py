"""Entries of loaded values in Redis: format 2 (adaptive step, value digest) read by every
path, and extended in place without rewriting the value (``extend_entry``), on a real
server, a cluster, and asyncio."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import redis.cluster

from multilayercache import AsyncRedisLayer, RedisLayer
from multilayercache.core.entry import digest, unwrap
from multilayercache.core.freshness import Lifetime
from multilayercache.layers.redis import codec

from support import command_calls

BIG = {"blob": "x" * 100_000}


@pytest.fixture
def layer(redis_url, prefix):
    layer = RedisLayer(redis_url, prefix=prefix)
    yield layer
    layer.close()


def stored(raw_redis, prefix, key):
    envelope, payload = unwrap(raw_redis.get(prefix + key))
    return envelope, bytes(payload)


def test_a_stepped_write_is_format_4_and_reads_back_everywhere(layer, raw_redis, prefix) -> None:
    items = {f"k{i}": {"n": i} for i in range(5)}
    layer.set_many_entries(items, Lifetime(30, 10, 24, -3))
    layer.set_entry("plain", 1, Lifetime(30))  # no step: format 1, as before
    envelope, payload = stored(raw_redis, prefix, "k1")
    assert envelope.step == -3 and envelope.digest == digest(payload)
    assert stored(raw_redis, prefix, "plain")[0].step is None
    one = layer.get_entry("k1")
    many = layer.get_entries([*items, "plain"])  # the batch fast path: one msgspec call
    assert (one.value, one.step, one.digest) == ({"n": 1}, -3, envelope.digest)
    assert one.written_ms == envelope.written_ms
    for key, value in items.items():
        assert many[key].value == value and many[key].step == -3
        assert many[key].digest == layer.get_entry(key).digest
        assert 23 < many[key].refresh_in <= 24 and 29 < many[key].fresh_for <= 30
    assert many["plain"].step == 0 and many["plain"].digest is None
    values = [raw_redis.get(prefix + key) for key in [*items, "plain"]]
    keys = [*items, "plain"]
    at_once, leftovers = codec._envelopes.read_batch(
        keys, [prefix + key for key in keys], values, layer._common_decode, 0, *layer._bounds
    )
    assert not leftovers and at_once["k1"].step == -3  # the one-pass path took them all
    assert layer.get_many(items) == items
    assert layer.digest_of("k1", {"n": 1}) == envelope.digest != layer.digest_of("k1", {"n": 2})


def test_an_entry_is_extended_without_its_value_crossing_the_network(
    layer, raw_redis, prefix
) -> None:
    layer.set_entry("big", BIG, Lifetime(1, 0.5, 0.8, 0))
    before, payload = stored(raw_redis, prefix, "big")
    traffic = raw_redis.info("stats")["total_net_input_bytes"]
    assert layer.extend_entry("big", Lifetime(100, 50, 80, 2), before.written_ms) == "extended"
    sent = raw_redis.info("stats")["total_net_input_bytes"] - traffic
    after, same_payload = stored(raw_redis, prefix, "big")
    assert same_payload == payload and after.written_ms == before.written_ms
    assert after.step == 2 and after.digest == before.digest
    assert 99_000 < after.stale_ms - before.written_ms < 101_000
    assert 149_000 < raw_redis.pttl(prefix + "big") <= 150_000
    assert sent < 2_000  # the script's arguments (and INFO itself), not 100 KB
    entry = layer.get_entry("big")
    assert entry.value == BIG and 99 < entry.fresh_for <= 100 and 79 < entry.refresh_in <= 80


def test_an_entry_rewritten_gone_or_without_room_for_a_step_is_not_extended(
    layer, raw_redis, prefix
) -> None:
    layer.set_entry("k", "old", Lifetime(30, 0, math.inf, 1))
    read = layer.get_entry("k")
    time.sleep(0.002)  # (writes are told apart by their millisecond)
    layer.set_entry("k", "new", Lifetime(30, 0, math.inf, 1))  # another write meanwhile
    assert layer.extend_entry("k", Lifetime(500), read.written_ms) == "overtaken"
    assert layer.get_entry("k").value == "new" and raw_redis.pttl(prefix + "k") <= 30_000
    assert layer.extend_entry("absent", Lifetime(500), read.written_ms) == "write"
    assert not raw_redis.exists(prefix + "absent")  # SETRANGE never creates a key
    layer.set_entry("v1", "plain", Lifetime(30))  # format 1: a step needs a rewrite
    written = layer.get_entry("v1").written_ms
    assert layer.extend_entry("v1", Lifetime(60, 0, math.inf, 1), written) == "write"
    assert layer.extend_entry("v1", Lifetime(60), written) == "extended"  # format 1: no step
    assert 59_000 < raw_redis.pttl(prefix + "v1") <= 60_000
    assert layer.extend_entry("v1", Lifetime(math.inf), written) == "extended"
    assert raw_redis.pttl(prefix + "v1") == -1 and layer.get_entry("v1").fresh_for == math.inf
    raw_redis.set(prefix + "legacy", b"\x01\xa1v")  # written before envelopes
    assert layer.extend_entry("legacy", Lifetime(60), written) == "write"
    assert layer.extend_entry("v1", Lifetime(0), written) == "write"  # nothing left to keep


def test_a_server_that_lost_its_scripts_is_sent_the_script(layer, raw_redis) -> None:
    layer.set_entry("k", 1, Lifetime(30))
    written = layer.get_entry("k").written_ms
    raw_redis.script_flush()
    evals = command_calls(raw_redis, "eval")
    assert layer.extend_entry("k", Lifetime(60), written) == "extended"
    assert command_calls(raw_redis, "eval") == evals + 1
    assert layer.extend_entry("k", Lifetime(90), written) == "extended"  # the server has it
    assert command_calls(raw_redis, "eval") == evals + 1


def test_asyncio_extends_the_same_way(redis_url, raw_redis, prefix) -> None:
    async def scenario() -> None:
        layer = AsyncRedisLayer(redis_url, prefix=prefix)
        await layer.set_entry("k", BIG, Lifetime(1, 0, math.inf, 0))
        entry = await layer.get_entry("k")
        lifetime = Lifetime(40, 0, math.inf, 1)
        assert await layer.extend_entry("k", lifetime, entry.written_ms) == "extended"
        assert await layer.extend_entry("gone", lifetime, entry.written_ms) == "write"
        again = (await layer.get_entries(["k"]))["k"]
        assert again.value == BIG and again.step == 1 and 39 < again.fresh_for <= 40
        await layer.close()

    asyncio.run(scenario())
    assert 39_000 < raw_redis.pttl(prefix + "k") <= 40_000


def test_a_cluster_extends_on_the_key_s_node(redis_cluster, prefix) -> None:
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    layer = RedisLayer(client=client, prefix=prefix)
    for n in range(20):  # keys on every node
        layer.set_entry(f"k{n}", n, Lifetime(5, 0, math.inf, 0))
        written = layer.get_entry(f"k{n}").written_ms
        assert layer.extend_entry(f"k{n}", Lifetime(50, 0, math.inf, 3), written) == "extended"
    entries = layer.get_entries([f"k{n}" for n in range(20)])
    assert all(entry.step == 3 and entry.fresh_for > 45 for entry in entries.values())
    layer.close()


def test_a_replay_compares_against_format_2_entries_too(layer, raw_redis, prefix, tmp_path):
    from multilayercache.deadletter.into_redis import COMPARE_AND_WRITE

    layer.set_entry("k", "live", Lifetime(30, 0, math.inf, 2))
    written = layer.get_entry("k").written_ms
    script = raw_redis.register_script(COMPARE_AND_WRITE)
    older = script(keys=[prefix + "k"], args=[written - 1, "set", b"\x01\xa1x", 1000, ""])
    newer = script(keys=[prefix + "k"], args=[written + 1, "set", b"\x01\xa1y", 1000, ""])
    assert (older, newer) == (b"older", b"replayed")


def test_forged_format_2_headers_are_misses_not_misreadings(layer, raw_redis, prefix) -> None:
    import msgspec

    layer.set_entry("good", "v", Lifetime(30, 0, math.inf, 1))
    good = raw_redis.get(prefix + "good")
    payload = good[-len(msgspec.msgpack.encode("v")) - 1 :]  # the serializer's tag and value
    forged = {  # every field but one as it should be
        "step as text": msgspec.msgpack.encode([2, 0, -1, -1, -1, 0.0, "up", 0, []]),
        "digest as text": msgspec.msgpack.encode([2, 0, -1, -1, -1, 0.0, 1, "d", []]),
        "nine fields, version 1": msgspec.msgpack.encode([1, 0, -1, -1, -1, 0.0, 1, 0, []]),
    }
    for name, header in forged.items():
        raw_redis.set(f"{prefix}{name}", header + payload)
    errors = layer.stats().errors
    found = layer.get_entries(["good", *forged])  # the batch path, then the general one
    assert list(found) == ["good"] and found["good"].step == 1
    assert layer.stats().errors == errors + len(forged)
    assert all(layer.get_entry(name) is None for name in forged)
