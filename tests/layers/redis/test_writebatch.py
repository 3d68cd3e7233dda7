"""A write-behind batch to one server goes as one script call (``writebatch.py``): it lands
exactly as the same writes sent as commands would, sync and asyncio, in one command per
500 writes; an error reply leaves the connection in step and fails the batch; a server that
lost the script gets it again."""

from __future__ import annotations

import math
import time

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multilayercache import (
    AsyncRedisLayer,
    InMemoryLayer,
    LayerError,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
    read_dead_letters,
)
from multilayercache.core.freshness import Lifetime
from multilayercache.layers.redis import fastpath
from multilayercache.layers.redis.codec import PackedWrite, write_commands
from multilayercache.layers.redis.writebatch import SCRIPT_WRITES, script_batch

from support import command_calls

HOUR = Lifetime(3600.0)


def mixed_batch(layer: RedisLayer | AsyncRedisLayer) -> list[PackedWrite]:
    """Sets with and without a TTL, deletes, a set whose lifetime is over, keys beyond
    ASCII and values holding NUL bytes."""
    now = time.time()
    return [
        layer.encode_write("ttl", {"n": 1}, Lifetime(60.0)),
        layer.encode_write("forever", "kept", Lifetime(math.inf)),
        layer.encode_delete("deleted"),
        layer.encode_write("clé-ü-日本", b"\x00nul\x00", Lifetime(60.0)),
        layer.encode_write("over", "x", Lifetime(60.0))._replace(expires_at=now - 1),
        layer.encode_write("ttl2", [1, 2], Lifetime(0.5)),
    ]


def check_landed(raw: redis.Redis, layer: RedisLayer, prefix: str) -> None:
    assert layer.get_many(["ttl", "forever", "deleted", "clé-ü-日本", "over", "ttl2"]) == {
        "ttl": {"n": 1},
        "forever": "kept",
        "clé-ü-日本": b"\x00nul\x00",
        "ttl2": [1, 2],
    }
    assert 59_000 < raw.pttl(f"{prefix}ttl") <= 60_000
    assert 0 < raw.pttl(f"{prefix}clé-ü-日本") <= 60_000
    assert 0 < raw.pttl(f"{prefix}ttl2") <= 500
    assert raw.pttl(f"{prefix}forever") == -1
    assert raw.exists(f"{prefix}deleted", f"{prefix}over") == 0


def test_a_mixed_batch_lands_exactly_as_sent_in_one_command(redis_url, raw_redis, prefix) -> None:
    layer = RedisLayer(redis_url, prefix=prefix)
    raw_redis.set(f"{prefix}deleted", b"old")
    raw_redis.set(f"{prefix}over", b"old")
    scripts, sets = command_calls(raw_redis, "evalsha"), command_calls(raw_redis, "set")
    layer.write_packed(mixed_batch(layer))
    check_landed(raw_redis, layer, prefix)
    assert command_calls(raw_redis, "evalsha") == scripts + 1  # one command for the batch
    assert command_calls(raw_redis, "set") == sets + 4  # run by the script, not sent
    assert layer.stats().puts == 5  # the sets (the one already over included)
    layer.close()


async def test_an_asyncio_mixed_batch_lands_exactly_as_sent(redis_url, raw_redis, prefix) -> None:
    layer = AsyncRedisLayer(redis_url, prefix=prefix)
    raw_redis.set(f"{prefix}deleted", b"old")
    raw_redis.set(f"{prefix}over", b"old")
    scripts = command_calls(raw_redis, "evalsha")
    await layer.write_packed(mixed_batch(layer))
    reader = RedisLayer(redis_url, prefix=prefix)
    check_landed(raw_redis, reader, prefix)
    assert command_calls(raw_redis, "evalsha") == scripts + 1
    reader.close()
    await layer.close()


@pytest.mark.parametrize("single_connection", [False, True], ids=["pooled", "single"])
def test_a_long_batch_is_cut_into_calls_of_at_most_script_writes(
    redis_url, raw_redis, prefix, single_connection
) -> None:
    client = redis.Redis.from_url(redis_url, single_connection_client=single_connection)
    layer = RedisLayer(client=client, prefix=prefix)
    count = 2 * SCRIPT_WRITES + 7
    writes = [layer.encode_write(f"k{i}", i, HOUR) for i in range(count)]
    scripts = command_calls(raw_redis, "evalsha")
    layer.write_packed(writes)
    assert command_calls(raw_redis, "evalsha") == scripts + 3
    found = layer.get_many([f"k{i}" for i in range(count)])
    assert found == {f"k{i}": i for i in range(count)}
    client.close()


def test_writes_only_over_older_values_and_nul_keys_go_as_commands(
    redis_url, raw_redis, prefix
) -> None:
    layer = RedisLayer(redis_url, prefix=prefix)
    recovered = layer.recovered_write(layer.encode_write("a", "old", HOUR))
    assert script_batch([layer.encode_write("b", 1, HOUR), recovered]) is None
    nul = layer.encode_write("with\x00nul", 1, HOUR)
    assert script_batch([layer.encode_write("b", 1, HOUR), nul]) is None
    time.sleep(0.002)
    layer.set("a", "newer")
    layer.write_packed([layer.encode_write("b", 1, HOUR), recovered, nul])
    assert layer.get_many(["a", "b", "with\x00nul"]) == {"a": "newer", "b": 1, "with\x00nul": 1}
    layer.close()


def test_a_server_that_lost_the_script_gets_it_again(doomed_server) -> None:
    raw = redis.Redis.from_url(doomed_server.url)
    layer = RedisLayer(doomed_server.url)
    layer.write_packed([layer.encode_write("first", 1, HOUR)])  # a server new to it
    raw.script_flush()
    layer.write_packed([layer.encode_write("second", 2, HOUR)])
    assert layer.get_many(["first", "second"]) == {"first": 1, "second": 2}
    assert command_calls(raw, "eval") == 2  # loaded, each time, by the batch itself
    layer.close()
    raw.close()


async def test_an_asyncio_server_that_lost_the_script_gets_it_again(doomed_server) -> None:
    raw = redis.Redis.from_url(doomed_server.url)
    layer = AsyncRedisLayer(doomed_server.url)
    await layer.write_packed([layer.encode_write("first", 1, HOUR)])
    raw.script_flush()
    await layer.write_packed([layer.encode_write("second", 2, HOUR)])
    assert await layer.get_many(["first", "second"]) == {"first": 1, "second": 2}
    assert command_calls(raw, "eval") == 2
    await layer.close()
    raw.close()


@pytest.fixture
def restricted(doomed_server):
    """A client of a user that may write keys under "ok:" only: a write of any other key
    gets an error reply (NOPERM) in the middle of a batch."""
    admin = redis.Redis.from_url(doomed_server.url)
    admin.acl_setuser(
        "writer", enabled=True, passwords=["+secret"], keys=["ok:*"], categories=["+@all"]
    )
    client = redis.Redis(port=doomed_server.port, username="writer", password="secret")
    yield admin, client
    client.close()
    admin.close()


def test_an_error_reply_mid_batch_raises_and_leaves_the_connection_in_step(restricted) -> None:
    admin, client = restricted
    layer = RedisLayer(client=client, max_connections=None)
    writes = [layer.encode_write(key, key, HOUR) for key in ("ok:1", "refused", "ok:2")]
    with pytest.raises(LayerError, match="pipeline SET failed: .*(NOPERM|No permissions)"):
        layer.write_packed(writes)
    assert admin.get("ok:1") is not None and admin.exists("refused") == 0
    connections = client.connection_pool._created_connections
    assert client.ping()  # the pooled connection is still in step...
    layer.write_packed([layer.encode_write("ok:3", 3, HOUR)])
    assert layer.get("ok:3") == 3
    assert client.connection_pool._created_connections == connections  # ...and reused


def test_a_batch_refused_mid_way_is_dead_lettered_by_the_write_behind_queue(
    restricted, tmp_path
) -> None:
    admin, client = restricted
    dead = tmp_path / "dead.jsonl"
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100), RedisLayer(client=client, name="l2")],
        [None, LayerPolicy(write=WriteBehind(dead_letter=dead, max_delay=0.01))],
    )
    cache.set_many({"ok:1": 1, "refused": 2, "ok:2": 3})
    assert cache.flush(timeout=5)
    stats = cache.stats().write_queues["l2"]
    cache.set("ok:after", 4)  # the next batch goes on the same connections
    assert cache.flush(timeout=5)
    cache.close()
    assert stats.dead_lettered == 3 and stats.delivered == 0  # not retried: it cannot pass
    assert {record.key for record in read_dead_letters(dead)} == {"ok:1", "refused", "ok:2"}
    assert admin.exists("ok:after") == 1


async def test_an_asyncio_error_reply_mid_batch_raises_and_the_layer_goes_on(
    restricted, doomed_server
) -> None:
    client = redis.asyncio.Redis(port=doomed_server.port, username="writer", password="secret")
    layer = AsyncRedisLayer(client=client)
    writes = [layer.encode_write(key, key, HOUR) for key in ("ok:1", "refused", "ok:2")]
    with pytest.raises(LayerError, match="NOPERM|No permissions"):
        await layer.write_packed(writes)
    await layer.write_packed([layer.encode_write("ok:3", 3, HOUR)])
    assert await layer.get("ok:3") == 3
    await client.aclose()


@pytest.fixture
def scriptless(doomed_server):
    """The port of a server, and a user of it whose ACL denies scripts (``-@scripting``)."""
    admin = redis.Redis.from_url(doomed_server.url)
    admin.acl_setuser(
        "scriptless",
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        categories=["+@all", "-@scripting"],
    )
    yield admin, doomed_server.port
    admin.close()


def test_a_server_that_refuses_scripts_gets_the_batches_as_commands(scriptless, caplog) -> None:
    admin, port = scriptless
    client = redis.Redis(port=port, username="scriptless", password="secret")
    layer = RedisLayer(client=client, name="l2")
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100), layer],
        [None, LayerPolicy(write=WriteBehind(max_delay=0.01))],
    )
    cache.set_many({f"k{n}": n for n in range(20)})
    assert cache.flush(timeout=5)
    cache.set("after", "it")
    assert cache.flush(timeout=5)
    stats = cache.stats().write_queues["l2"]
    cache.close()
    assert stats.delivered == 21 and stats.dead_lettered == 0
    assert [layer.get(f"k{n}") for n in range(20)] == list(range(20))
    assert layer.get("after") == "it" and admin.pttl("k3") > 0
    assert layer.refuses_scripts
    assert sum("refuses scripts" in record.message for record in caplog.records) == 1
    client.close()


async def test_an_asyncio_layer_of_a_server_that_refuses_scripts_sends_commands(
    scriptless,
) -> None:
    admin, port = scriptless
    client = redis.asyncio.Redis(port=port, username="scriptless", password="secret")
    layer = AsyncRedisLayer(client=client)
    await layer.write_packed(mixed_batch(layer))
    await layer.write_packed([layer.encode_write("second", 2, HOUR)])
    assert layer.refuses_scripts
    assert await layer.get_many(["ttl", "forever", "over", "second"]) == {
        "ttl": {"n": 1},
        "forever": "kept",
        "second": 2,
    }
    assert 59_000 < admin.pttl("ttl") <= 60_000
    await client.aclose()


def test_an_error_of_a_write_inside_the_script_is_not_a_refusal(restricted) -> None:
    # A key the user may not write fails the script, which still runs: no fallback.
    admin, client = restricted
    layer = RedisLayer(client=client, max_connections=None)
    with pytest.raises(LayerError):
        layer.write_packed([layer.encode_write("refused", 1, HOUR)])
    assert not layer.refuses_scripts


# Batches of writes, each: (key, kind, seconds left) with kind one of set / set without TTL
# / delete; seconds left <= 0: a set whose lifetime is over when it is sent.
batches = st.lists(
    st.tuples(
        st.text(
            st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
            min_size=1,
            max_size=8,
        ),
        st.sampled_from(["set", "forever", "delete"]),
        st.sampled_from([-1.0, 30.0, 3600.0]),
        st.binary(max_size=40),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda write: write[0],
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=batches)
def test_the_script_writes_what_the_commands_write(batch, redis_url, raw_redis, prefix) -> None:
    """Property: the same batch through the script (under one prefix) and as plain
    commands (under another) leaves the same values and (within 50 ms) the same expiries."""
    now = time.time()
    run = f"{prefix}{time.monotonic_ns()}:"

    def writes_under(space: str) -> list[PackedWrite]:
        made = []
        for key, kind, seconds, data in batch:
            if kind == "delete":
                made.append(PackedWrite(space + key, None, 0, None, 0))
            elif kind == "forever":
                made.append(PackedWrite(space + key, data, None, None, 0))
            else:
                made.append(PackedWrite(space + key, data, 1000, now + seconds, 0))
        return made

    for space in ("script:", "commands:"):
        raw_redis.mset({run + space + key: b"before" for key, *_ in batch})
    scripted = script_batch(writes_under(run + "script:"))
    assert scripted is not None
    for arguments in scripted.calls:
        raw_redis.execute_command("EVAL", _text(), 0, *arguments)
    fastpath.write(raw_redis, False, write_commands(writes_under(run + "commands:"), False, False))
    for key, *_ in batch:
        by_script, by_commands = run + "script:" + key, run + "commands:" + key
        assert raw_redis.get(by_script) == raw_redis.get(by_commands)
        assert abs(raw_redis.pttl(by_script) - raw_redis.pttl(by_commands)) <= 50


def _text() -> str:
    from multilayercache.layers.redis.writebatch import WRITE_BATCH

    return WRITE_BATCH.text


def test_a_refused_command_of_a_batch_does_not_quote_the_value_it_carried(
    redis_cluster, tmp_path
) -> None:
    # A batch to a cluster goes as a pipeline, and redis-py names a pipeline's failed command
    # by its text, the stored bytes included: a value (a token, an e-mail) went on into the
    # LayerError, the logs and the dead-letter records.
    for node in redis_cluster.nodes:
        admin = redis.Redis.from_url(node.url)
        admin.acl_setuser(
            "limited", enabled=True, passwords=["+secret"], keys=["quoted:ok*"],
            categories=["+@all"],
        )  # fmt: skip
        admin.close()
    url = redis_cluster.url.replace("redis://", "redis://limited:secret@")
    dead = tmp_path / "dead.jsonl"
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100), RedisLayer(url, cluster=True, prefix="quoted:", name="l2")],
        [None, LayerPolicy(write=WriteBehind(dead_letter=dead, max_delay=0.01))],
    )
    cache.set_many({"ok": "PRIVATE-1", "refused": "PRIVATE-2"})
    assert cache.flush(timeout=5)
    cache.close()
    messages = [record.error_message for record in read_dead_letters(dead)]
    assert messages and all("permission" in message.lower() for message in messages), messages
    assert not any("PRIVATE" in message for message in messages), messages
