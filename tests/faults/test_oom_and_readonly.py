"""A server that answers but refuses writes: ``maxmemory`` reached under ``noeviction``
(every write gets an OOM error) and a read-only replica (``READONLY``).

The server is up: reads go on hitting it, and its breaker stays closed (an error the
server answered with says nothing about reaching it). What the caller sees: ``set`` raises
``LayerError`` naming the layer and the server's reason, at once (not retried: retrying
cannot help) and L1 drops the key; ``get_or_load`` returns the loaded value, not cached in
L2 (counted in ``write_errors``, logged). A write-behind write is retried within its
budget (the refusal is for now: memory frees as keys expire, a failover ends): delivered
once the server takes writes again, else dead-lettered with the server's reason, and
replaying the dead letter restores it: nothing acknowledged is lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerError,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    RetryPolicy,
    WriteBehind,
    read_dead_letters,
    replay_into_redis,
)
from multilayercache.core.breaker import BreakerState
from multilayercache.tools.servers import RedisServer

from support import l2_breaker, wait_until

OOM = r"^l2: (pipeline )?SET failed: .*maxmemory"
READONLY = r"^l2: (pipeline )?(SET|DEL) failed: .*read only replica"


@pytest.fixture
def full_server() -> Iterator[tuple[RedisServer, redis.Redis]]:
    """A server past its ``maxmemory`` (noeviction): it holds some keys, refuses writes.
    Lowering ``maxmemory`` below what is used is how a server fills up, without the
    flakiness of filling it to the byte."""
    with RedisServer.start("--maxmemory-policy", "noeviction", use_env=False) as server:
        raw = redis.Redis.from_url(server.url)
        yield server, raw
        raw.close()


def make_full(raw: redis.Redis) -> None:
    used = int(raw.info("memory")["used_memory"])
    raw.config_set("maxmemory", used // 2)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        raw.set("probe", "x")


def test_a_full_server_refuses_writes_clearly_and_keeps_serving_reads(
    full_server: tuple[RedisServer, redis.Redis], caplog: pytest.LogCaptureFixture
) -> None:
    server, raw = full_server
    l1 = InMemoryLayer(max_size=100, name="l1")
    cache = MultilayerCache([l1, RedisLayer(server.url, prefix="app:", name="l2")])
    cache.set("kept", "old")
    cache.set("doomed", "old")
    make_full(raw)
    for _ in range(10):  # more than the breaker's threshold: the breaker does not care
        start = time.monotonic()
        with pytest.raises(LayerError, match=OOM) as refused:
            cache.set("kept", "new")
        assert time.monotonic() - start < 0.2  # answered at once, not retried
        assert refused.value.transient is False
    assert l1.get("kept") is None  # dropped, as after any failed write
    assert cache.get("kept") == "old"  # L2 did not take the write, and still serves
    with caplog.at_level(logging.WARNING, "multilayercache"):
        assert cache.get_or_load("loaded", lambda key: "value") == "value"
    assert cache.stats().write_errors["l2"] >= 1 and "maxmemory" in caplog.text
    assert cache.delete("doomed") is True  # deleting frees memory: a full server allows it
    assert raw.exists("app:doomed") == 0
    assert l2_breaker(cache).state is BreakerState.CLOSED and l2_breaker(cache).opened == 0
    cache.close()


async def test_a_full_server_refuses_asyncio_writes_clearly(
    full_server: tuple[RedisServer, redis.Redis],
) -> None:
    server, raw = full_server
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=100, name="l1"), AsyncRedisLayer(server.url, name="l2")]
    )
    make_full(raw)
    with pytest.raises(LayerError, match=OOM):
        await cache.set("k", "v")

    async def load(key: str) -> str:
        return "loaded"

    assert await cache.get_or_load("other", load) == "loaded"
    assert cache.stats().write_errors["l2"] == 2  # the refused set and the loaded value
    assert l2_breaker(cache).state is BreakerState.CLOSED
    await cache.close()


def test_write_behind_into_a_full_server_is_delivered_once_memory_frees(
    full_server: tuple[RedisServer, redis.Redis], tmp_path: Path
) -> None:
    server, raw = full_server
    dead = tmp_path / "dead.jsonl"
    policy = LayerPolicy(write=WriteBehind(dead_letter=dead, max_delay=0.01))
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100), RedisLayer(server.url, prefix="wb:", name="l2")],
        [None, policy],
    )
    make_full(raw)
    acknowledged = {f"k{n}": n for n in range(20)}
    cache.set_many(acknowledged)
    assert not cache.flush(timeout=0.5)  # refused, and retried
    assert cache.stats().write_queues["l2"].retries > 0
    raw.config_set("maxmemory", 0)  # room again: an operator freed memory
    assert cache.flush(timeout=5)
    stats = cache.stats().write_queues["l2"]
    cache.close()
    assert stats.delivered == len(acknowledged) and stats.dead_lettered == 0
    reader = RedisLayer(server.url, prefix="wb:")
    assert reader.get_many(list(acknowledged)) == acknowledged
    reader.close()


def test_write_behind_into_a_server_full_for_good_dead_letters_and_replays_later(
    full_server: tuple[RedisServer, redis.Redis], tmp_path: Path
) -> None:
    server, raw = full_server
    dead = tmp_path / "dead.jsonl"
    budget = RetryPolicy(attempts=None, base=0.05, cap=0.1, budget=0.5)
    policy = LayerPolicy(write=WriteBehind(dead_letter=dead, max_delay=0.01, retry=budget))
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100), RedisLayer(server.url, prefix="wb:", name="l2")],
        [None, policy],
    )
    make_full(raw)
    acknowledged = {f"k{n}": n for n in range(20)}
    cache.set_many(acknowledged)
    start = time.monotonic()
    assert cache.flush(timeout=10)
    assert 0.4 < time.monotonic() - start < 3  # retried for its budget, then given up
    stats = cache.stats().write_queues["l2"]
    cache.close()
    assert stats.dead_lettered == len(acknowledged) and stats.delivered == 0
    records = list(read_dead_letters(dead))
    assert {record.key for record in records} == set(acknowledged)
    assert all("maxmemory" in record.error_message for record in records)
    raw.config_set("maxmemory", 0)
    report = replay_into_redis(dead, server.url, layer="l2")
    assert report.failed == 0
    reader = RedisLayer(server.url, prefix="wb:")
    assert reader.get_many(list(acknowledged)) == acknowledged
    reader.close()


@pytest.fixture
def replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and a read-only replica of it, in sync."""
    # No wait before a diskless full sync (5 s by default, for more replicas to join).
    with RedisServer.start("--repl-diskless-sync-delay", "0", use_env=False) as primary:
        with RedisServer.start(
            "--replicaof", "127.0.0.1", str(primary.port), use_env=False
        ) as copy:
            client = redis.Redis.from_url(copy.url)
            synced = wait_until(
                lambda: client.info("replication").get("master_link_status") == "up", 10
            )
            client.close()
            assert synced is not None, "the replica did not sync"
            yield primary, copy


def test_a_read_only_replica_serves_reads_and_refuses_writes_clearly(
    replica: tuple[RedisServer, RedisServer], tmp_path: Path
) -> None:
    primary, copy = replica
    writer = RedisLayer(primary.url, prefix="app:")
    writer.set_many({"kept": "from the primary", "doomed": "from the primary"})
    l2 = RedisLayer(copy.url, prefix="app:", name="l2")
    assert wait_until(lambda: l2.get("doomed") is not None, 5) is not None  # replicated
    l1 = InMemoryLayer(max_size=100, name="l1")
    cache = MultilayerCache([l1, l2])
    assert cache.get("kept") == "from the primary"
    with pytest.raises(LayerError, match=READONLY) as refused:
        cache.set("kept", "new")
    assert refused.value.transient is False and l1.get("kept") is None
    assert cache.get("kept") == "from the primary"
    assert cache.get_or_load("loaded", lambda key: "value") == "value"
    assert cache.stats().write_errors["l2"] == 2  # the refused set and the loaded value
    with pytest.raises(LayerError, match=READONLY):
        cache.delete("doomed")
    # The replica still holds it, and this cache does not serve it: the delete was asked.
    assert l2.get("doomed") == "from the primary"
    assert cache.get("doomed") is None and l1.get("doomed") is None
    assert l2_breaker(cache).state is BreakerState.CLOSED
    cache.close()
    dead = tmp_path / "dead.jsonl"
    budget = RetryPolicy(attempts=None, base=0.05, cap=0.1, budget=0.5)  # a failover's window
    policy = LayerPolicy(write=WriteBehind(dead_letter=dead, max_delay=0.01, retry=budget))
    behind = MultilayerCache(
        [InMemoryLayer(max_size=100), RedisLayer(copy.url, prefix="app:", name="l2")],
        [None, policy],
    )
    behind.set("queued", "acknowledged")
    assert behind.flush(timeout=5)
    behind.close()
    (record,) = read_dead_letters(dead)
    assert record.key == "queued" and "read only replica" in record.error_message
    writer.close()
