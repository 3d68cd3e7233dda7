"""The hiredis fast path gives exactly redis-py's replies, on every kind of client, on the
newest redis-py (installed) and on the oldest this package supports (installed for the test
into a folder of its own, run in a subprocess)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap

import pytest
import redis
import redis.asyncio

from multilayercache.layers.redis import fastpath


def oldest_supported_redis() -> str:
    """The floor of the ``redis`` requirement in this package's metadata."""
    for requirement in importlib.metadata.requires("multilayercache") or []:
        match = re.match(r"redis(\[[^\]]*\])?\s*>=\s*([0-9.]+)", requirement)
        if match:
            version = match.group(2)
            return version if version.count(".") == 2 else f"{version}.0"
    raise AssertionError("no redis>= requirement in the package metadata")


@pytest.mark.parametrize("single_connection", [False, True], ids=["pooled", "single"])
def test_sync_reads_match_redis_py(redis_url, prefix, single_connection) -> None:
    client = redis.Redis.from_url(redis_url, single_connection_client=single_connection)
    client.set(f"{prefix}a", b"1")
    client.set(f"{prefix}b", b"\x00binary\xff")
    keys = [f"{prefix}a", f"{prefix}b", f"{prefix}missing"]
    assert fastpath.read(client, False, "GET", keys[0]) == client.get(keys[0]) == b"1"
    assert fastpath.read(client, False, "GET", keys[2]) is None
    assert fastpath.read(client, False, "MGET", *keys) == client.mget(keys)
    client.close()


@pytest.mark.parametrize("single_connection", [False, True], ids=["pooled", "single"])
async def test_async_reads_match_redis_py(redis_url, prefix, single_connection) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, single_connection_client=single_connection)
    await client.set(f"{prefix}a", b"1")
    keys = [f"{prefix}a", f"{prefix}missing"]
    assert await fastpath.read_async(client, False, "GET", keys[0]) == b"1"
    assert await fastpath.read_async(client, False, "MGET", *keys) == await client.mget(keys)
    await client.aclose()


WRITES = [("SET", "a", b"1", "PX", 60_000), ("SET", "b", b"\x00\xff"), ("DEL", "gone")]


def commands(prefix: str) -> list[tuple]:
    return [(name, prefix + key, *rest) for name, key, *rest in WRITES]


@pytest.mark.parametrize("single_connection", [False, True], ids=["pooled", "single"])
def test_sync_batch_writes_land_and_an_error_reply_raises_after_all(
    redis_url, prefix, single_connection
) -> None:
    client = redis.Redis.from_url(redis_url, single_connection_client=single_connection)
    client.set(f"{prefix}gone", b"x")
    fastpath.write(client, False, commands(prefix))
    assert client.mget([f"{prefix}a", f"{prefix}b", f"{prefix}gone"]) == [b"1", b"\x00\xff", None]
    assert 0 < client.pttl(f"{prefix}a") <= 60_000 and client.pttl(f"{prefix}b") == -1
    client.rpush(f"{prefix}list", b"x")  # INCR on a list: an error reply mid-batch
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        fastpath.write(client, False, [("INCR", f"{prefix}list"), ("SET", f"{prefix}after", b"2")])
    assert client.get(f"{prefix}after") == b"2"  # the rest of the batch ran
    assert client.ping()  # and the connection is still in step
    client.close()


@pytest.mark.parametrize("single_connection", [False, True], ids=["pooled", "single"])
async def test_async_batch_writes_land(redis_url, prefix, single_connection) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, single_connection_client=single_connection)
    await fastpath.write_async(client, False, commands(prefix))
    assert await client.mget([f"{prefix}a", f"{prefix}b"]) == [b"1", b"\x00\xff"]
    await client.rpush(f"{prefix}list", b"x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await fastpath.write_async(client, False, [("INCR", f"{prefix}list"), ("PING",)])
    assert await client.ping()
    await client.aclose()


SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    import redis, redis.asyncio
    assert redis.__version__ == sys.argv[1], (redis.__version__, sys.argv[1])
    from multilayercache import AsyncRedisLayer, RedisLayer
    from multilayercache.layers.redis import fastpath

    url, prefix = os.environ["TEST_REDIS_URL"], os.environ["TEST_PREFIX"]
    layer = RedisLayer(url, prefix=prefix, verify=True)
    layer.set_many({"a": [1, 2], "b": "two"})
    assert layer.get("a") == [1, 2] and layer.get("nope", "dflt") == "dflt"
    assert layer.get_many(["a", "b", "c"]) == {"a": [1, 2], "b": "two"}
    client = layer.client
    assert fastpath.read(client, False, "GET", prefix + "b") == client.get(prefix + "b")
    fastpath.write(client, False, [("SET", prefix + "w", b"1", "PX", 60000), ("DEL", prefix + "b")])
    assert client.get(prefix + "w") == b"1" and client.get(prefix + "b") is None
    layer.set("b", "two")
    # a write-behind batch: one script call
    layer.write_packed([layer.encode_write("wb", 5, layer.lifetime(60)), layer.encode_delete("a")])
    assert layer.get_many(["wb", "a"]) == {"wb": 5}
    layer.set("a", [1, 2])
    # a connection the server dropped is retried or reported, never left broken in the pool
    pooled = client.client_id()  # runs on the pooled connection the next read will take
    killer = redis.Redis.from_url(url)
    assert killer.client_kill_filter(_id=pooled) == 1
    killer.close()
    try:
        layer.get("a")
    except Exception:
        pass
    assert layer.get("a") == [1, 2]

    async def main():
        alayer = AsyncRedisLayer(url, prefix=prefix)
        assert await alayer.get("a") == [1, 2]
        assert await alayer.get_many(["a", "b", "c"]) == {"a": [1, 2], "b": "two"}
        await fastpath.write_async(alayer._bound(), False, [("SET", prefix + "x", b"2")])
        await alayer.write_packed([alayer.encode_write("awb", 6, alayer.lifetime(60))])
        assert await alayer.get("awb") == 6
        assert await alayer._bound().get(prefix + "x") == b"2"
        await alayer.close()

    asyncio.run(main())
    print("ok", redis.__version__)
    """
)


def test_fast_path_on_the_oldest_supported_redis_py(redis_url, prefix, tmp_path) -> None:
    version = oldest_supported_redis()
    target = tmp_path / "redis-py"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target",
         str(target), f"redis=={version}"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if install.returncode != 0:
        if "No matching distribution" in install.stderr or "Could not" in install.stderr:
            pytest.skip(f"cannot fetch redis=={version} here: {install.stderr.strip()[-200:]}")
        raise AssertionError(install.stderr)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]),
        TEST_REDIS_URL=redis_url,
        TEST_PREFIX=prefix,
    )
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, version],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok", version]
