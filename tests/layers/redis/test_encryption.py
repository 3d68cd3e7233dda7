"""A Redis layer with ``encryption=``: only ciphertext in Redis, every read path opens it,
rotation and ``reencrypt`` (sync and asyncio), and the adaptive TTL's digest still tells an
unchanged value."""

from __future__ import annotations

import asyncio
import base64

import pytest

from multilayercache import AsyncRedisLayer, RedisLayer
from multilayercache.core.entry import unwrap
from multilayercache.core.freshness import Lifetime
from multilayercache.serializers.encrypted import Encryption

OLD, NEW = bytes(range(32)), bytes(range(7, 39))


def key_id(raw_redis, redis_key: str) -> bytes:
    payload = unwrap(raw_redis.get(redis_key))[1]
    return bytes(payload[2 : 2 + payload[1]])


def test_values_are_sealed_and_every_read_path_opens_them(redis_url, prefix, raw_redis) -> None:
    layer = RedisLayer(redis_url, prefix=prefix, encryption=Encryption({"k": OLD}))
    layer.set_many({"a": {"secret": "alpha"}, "b": [1, 2]})
    layer.set_entry("c", "gamma", Lifetime(60, 10, 30, 1))  # format 4, with a digest
    assert b"alpha" not in raw_redis.get(prefix + "a") and key_id(raw_redis, prefix + "a") == b"k"
    assert layer.get("a") == {"secret": "alpha"}
    assert layer.get_many(["a", "b", "c", "x"]) == {
        "a": {"secret": "alpha"},
        "b": [1, 2],
        "c": "gamma",
    }
    entry = layer.get_entry("c")
    assert entry.value == "gamma" and entry.digest == layer.digest_of("c", "gamma")
    assert layer.digest_of("c", "changed") != entry.digest
    assert layer.stats().untrusted == {}
    layer.close()


def test_rotation_then_reencrypt_moves_every_value_to_the_active_key(
    redis_url, prefix, raw_redis
) -> None:
    before = RedisLayer(redis_url, prefix=prefix, encryption=Encryption({"old": OLD}))
    before.set_many({f"k{i}": i for i in range(1_200)}, ttl=600)  # more than a SCAN batch
    rotated = RedisLayer(redis_url, prefix=prefix, encryption=Encryption({"new": NEW, "old": OLD}))
    assert rotated.get("k7") == 7  # old keys still open
    rotated.set("fresh", "written under new")
    assert rotated.reencrypt() == 1_200 and rotated.reencrypt() == 0
    assert {key_id(raw_redis, f"{prefix}k{i}") for i in range(1_200)} == {b"new"}
    assert 590_000 < raw_redis.pttl(prefix + "k7") <= 600_000  # the expiry is kept
    only_new = RedisLayer(redis_url, prefix=prefix, encryption=Encryption({"new": NEW}))
    assert only_new.get_many([f"k{i}" for i in range(1_200)]) == {f"k{i}": i for i in range(1_200)}
    for layer in (before, rotated, only_new):
        layer.close()


def test_reencrypt_never_undoes_a_newer_write(redis_url, prefix, raw_redis) -> None:
    RedisLayer(redis_url, prefix=prefix, encryption=Encryption({"old": OLD})).set("k", "v1")
    rotated = RedisLayer(redis_url, prefix=prefix, encryption=Encryption({"new": NEW, "old": OLD}))
    call = rotated._resealed(prefix + "k", raw_redis.get(prefix + "k"))  # read ...
    rotated.set("k", "v2")  # ... a newer write lands ...
    assert call is not None and rotated._script(call) == 0  # ... and is kept
    assert rotated.get("k") == "v2"
    rotated.close()


def test_reencrypt_needs_encryption(redis_url, prefix, raw_redis) -> None:
    plain = RedisLayer(redis_url, prefix=prefix)
    plain.set("k", 1)
    with pytest.raises(ValueError, match="encryption"):
        plain.reencrypt()
    plain.close()


def test_the_asyncio_layer_encrypts_and_reencrypts(redis_url, prefix, raw_redis) -> None:
    async def scenario() -> None:
        old = AsyncRedisLayer(redis_url, prefix=prefix, encryption=Encryption({"old": OLD}))
        await old.set_many({"a": 1, "b": 2})
        rotated = AsyncRedisLayer(
            redis_url, prefix=prefix, encryption=Encryption({"new": NEW, "old": OLD})
        )
        assert await rotated.get_many(["a", "b"]) == {"a": 1, "b": 2}
        assert await rotated.reencrypt() == 2
        assert key_id(raw_redis, prefix + "a") == b"new" and await rotated.get("a") == 1
        await old.close()
        await rotated.close()

    asyncio.run(scenario())


def test_the_reencrypt_command(redis_url, prefix, raw_redis, monkeypatch, capsys) -> None:
    from multilayercache.tools.cli import main

    RedisLayer(redis_url, prefix=prefix, encryption=Encryption({"old": OLD})).set("k", 1)
    ring = f"new={base64.b64encode(NEW).decode()},old={base64.b64encode(OLD).decode()}"
    monkeypatch.setenv("MULTILAYERCACHE_KEYS", ring)
    assert main(["reencrypt", redis_url, "--prefix", prefix]) == 0
    assert "1 value(s) rewritten under key 'new'" in capsys.readouterr().out
    assert key_id(raw_redis, prefix + "k") == b"new"
    monkeypatch.setenv("MULTILAYERCACHE_KEYS", "")
    assert main(["reencrypt", redis_url, "--prefix", prefix]) == 2
    assert "holds no keys" in capsys.readouterr().err
