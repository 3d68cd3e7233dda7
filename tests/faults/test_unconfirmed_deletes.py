"""A write-through ``delete`` that could not reach L2 (its server killed) is not silently
undone once L2 is back: the caller gets the error, which says so, and this cache does not
serve (or copy up) L2's old copy of the key until a delete or set of it reaches L2. The
server persists its data (append-only, fsync always), so L2 does still hold the old value
after the restart: a server that lost it would prove nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

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
)
from multilayercache.tools.servers import RedisServer

from support import eventually, expected, wait_until

OLD, NEW = "old value", "new value"
ALWAYS = [LayerPolicy(promote="always"), None]  # any copy up would show at once
UNCONFIRMED = r"^l2: DEL failed: .*l2 may still hold 'k': this cache will not read it from l2"


@pytest.fixture
def persistent_server() -> Iterator[RedisServer]:
    """A server of this test's own, to kill and restart with its data."""
    with RedisServer.start("--appendonly", "yes", "--appendfsync", "always", use_env=False) as s:
        yield s


@pytest.fixture
def raw(persistent_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(persistent_server.url)
    yield client
    client.close()


def restart(server: RedisServer, raw: redis.Redis) -> None:
    """Restart the server and wait until it has read its data back (until then it answers
    every command with LOADING)."""
    server.restart()

    def loaded() -> bool:
        try:
            return bool(raw.ping())
        except redis.BusyLoadingError:
            return False

    assert wait_until(loaded, 5) is not None


def test_a_failed_delete_is_not_undone_when_l2_comes_back(
    persistent_server: RedisServer, raw: redis.Redis, prefix: str
) -> None:
    l1 = InMemoryLayer(max_size=100, name="l1")
    with MultilayerCache(
        [l1, RedisLayer(persistent_server.url, prefix=prefix, name="l2")], ALWAYS
    ) as cache:
        cache.set("k", OLD)
        cache.set("other", OLD)
        persistent_server.kill()
        with pytest.raises(LayerError, match=UNCONFIRMED):
            cache.delete("k")
        assert "k" not in l1 and cache.stats().unconfirmed_deletes == 1
        assert cache.get("k") is None  # L2 down: a miss
        restart(persistent_server, raw)
        assert raw.get(f"{prefix}k") is not None  # L2 holds the old value again
        # Every way of reading sees the delete; the first to reach L2 sends it again.
        assert wait_until(lambda: cache.get("other") == OLD, 3) is not None  # L2 answers
        assert cache.get("k") is None
        assert raw.get(f"{prefix}k") is None and cache.stats().unconfirmed_deletes == 0
        assert "k" not in l1 and "k" not in cache and cache.get_many(["k"]) == {}
        assert cache.get_or_load("k", expected) == expected("k")  # the source of truth


def test_every_read_path_skips_l2_for_a_key_whose_delete_missed_it(
    persistent_server: RedisServer, raw: redis.Redis, prefix: str
) -> None:
    l1 = InMemoryLayer(max_size=100, name="l1")
    l2 = RedisLayer(persistent_server.url, prefix=prefix, name="l2")
    with MultilayerCache([l1, l2], ALWAYS) as cache:
        cache.set_many({"a": OLD, "b": OLD, "c": OLD, "d": OLD})
        persistent_server.kill()
        with pytest.raises(LayerError, match=r"l2 may still hold these 4 keys"):
            cache.delete_many(["a", "b", "c", "d"])
        restart(persistent_server, raw)
        # Each read below sends the deletes it meets again, once L2 answers.
        assert wait_until(lambda: cache.get_many(["a"]) == {} and not raw.exists(f"{prefix}a"), 3)
        assert cache.remaining_ttl("b") is None and not raw.exists(f"{prefix}b")
        assert cache.get_or_load_many(["c"], lambda keys: {key: NEW for key in keys}) == {"c": NEW}
        assert raw.exists(f"{prefix}c")  # the loaded value replaced it
        assert cache.contains("d") is False and not raw.exists(f"{prefix}d")
        assert cache.stats().unconfirmed_deletes == 0


def test_a_set_that_reaches_l2_settles_a_failed_delete(
    persistent_server: RedisServer, raw: redis.Redis, prefix: str
) -> None:
    l1 = InMemoryLayer(max_size=100, name="l1")
    l2 = RedisLayer(persistent_server.url, prefix=prefix, name="l2")
    with MultilayerCache([l1, l2], ALWAYS) as cache:
        cache.set("k", OLD)
        persistent_server.kill()
        with pytest.raises(LayerError, match=UNCONFIRMED):
            cache.delete("k")
        restart(persistent_server, raw)

        def written() -> bool:
            try:
                cache.set("k", NEW)
            except LayerError:  # the breaker may need a probe first
                return False
            return True

        assert wait_until(written, 3) is not None
        assert cache.stats().unconfirmed_deletes == 0
        l1.delete("k")  # so that the next read goes to L2
        assert cache.get("k") == NEW and raw.exists(f"{prefix}k")


async def test_a_failed_delete_is_not_undone_when_l2_comes_back_tasks(
    persistent_server: RedisServer, raw: redis.Redis, prefix: str
) -> None:
    l1 = InMemoryLayer(max_size=100, name="l1")
    l2 = AsyncRedisLayer(persistent_server.url, prefix=prefix, name="l2")
    async with AsyncMultilayerCache([l1, l2], ALWAYS) as cache:
        await cache.set("k", OLD)
        await cache.set("other", OLD)
        await asyncio.to_thread(persistent_server.kill)
        with pytest.raises(LayerError, match=UNCONFIRMED):
            await cache.delete("k")
        assert await cache.get("k") is None
        await asyncio.to_thread(restart, persistent_server, raw)
        assert raw.get(f"{prefix}k") is not None

        async def l2_answers() -> bool:
            return await cache.get("other") == OLD

        for _ in range(300):  # the breaker lets a probe through within a second or so
            if await l2_answers():
                break
            await asyncio.sleep(0.01)
        assert await cache.get("k") is None
        assert await eventually(lambda: raw.get(f"{prefix}k") is None, 1) is not None
        assert "k" not in l1 and await cache.get_many(["k"]) == {}

        async def load(key: str) -> str:
            return expected(key)

        assert await cache.get_or_load("k", load) == expected("k")
        assert cache.stats().unconfirmed_deletes == 0


def test_a_loaded_value_that_reaches_l2_settles_a_failed_delete(
    persistent_server: RedisServer, raw: redis.Redis, prefix: str
) -> None:
    """L2 refuses the delete (an answer, not an outage: this user may not DEL) but takes
    writes. A read then skips L2 (its retried delete is refused again), loads, and writes
    the loaded value there: L2 no longer holds the deleted value, and the mark is settled."""
    raw.acl_setuser("nodel", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-del"])
    url = persistent_server.url.replace("redis://", "redis://nodel@")
    l1 = InMemoryLayer(max_size=100, name="l1")
    with MultilayerCache([l1, RedisLayer(url, prefix=prefix, name="l2")], ALWAYS) as cache:
        cache.set("k", OLD)
        refused = r"no permissions to run the 'del' command; l2 may still hold 'k'"
        with pytest.raises(LayerError, match=refused):
            cache.delete("k")
        assert cache.get_or_load("k", lambda key: NEW) == NEW  # not OLD from L2
        assert cache.stats().unconfirmed_deletes == 0
        l1.delete("k")
        assert cache.get("k") == NEW  # what L2 holds now
