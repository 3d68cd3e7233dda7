"""Nothing read from a shared layer is trusted: every poisoned value, on every read path of
both managers, is a miss for its key alone, counted by cause, and the loader runs."""

from __future__ import annotations

import base64
import sys
import time
import types
from typing import Any

import msgspec
import pytest

from multilayercache import RedisLayer, SignedPickleSerializer
from multilayercache.core.entry import deltas, key_check, wrap_at
from multilayercache.core.freshness import Lifetime
from multilayercache.serializers.encrypted import Encryption

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(1, 33))).decode()


def enveloped(redis_key: str, payload: bytes) -> bytes:
    """``payload`` behind a valid envelope for ``redis_key``: only the payload is bad."""
    now = time.time_ns() // 1_000_000
    return wrap_at(now, deltas(Lifetime(600)), 0.0, key_check(redis_key), payload)


def poisons(prefix: str, raw_redis: Any, redis_url: str) -> dict[str, tuple[bytes, str]]:
    """Bytes to plant under a key (by the key's suffix) and the cause each is refused for."""
    honest = RedisLayer(redis_url, prefix=prefix)
    honest.set("donor", {"n": 1})
    donor = raw_redis.get(prefix + "donor")
    honest.close()
    fields = [3, 1, -1, -1, -1, 0.0, 0, []]
    return {
        "utf8": (b"\x01\xa2\xff\xfe", "corrupt"),  # invalid UTF-8 in a str
        "deep": (b"\x01" + b"\x91" * 100_000 + b"\xc0", "limit"),  # arrays 100,000 deep
        "bomb": (b"\x01\xdd" + (10_000_000).to_bytes(4, "big") + b"\x90" * 10_000_000, "limit"),
        "truncated": (b"\x01\xda\x10\x00abc", "corrupt"),
        "compact": (msgspec.msgpack.encode(fields) + b"\x01\x01", "corrupt"),  # not wrapped
        "copied": (donor, "wrong_key"),  # not wrapped: another key's whole value
        "newer": (donor[:1] + b"\x05" + donor[2:], "corrupt"),  # a format this version lacks
        "claims": (b"\x01\xdd\xff\xff\xff\xff\x90", "corrupt"),  # 2**32 - 1 items, 1 there
    }


def plant(raw_redis: Any, prefix: str, key: str, poison: bytes) -> None:
    """A serializer's bad bytes (tag 0x01) behind a valid envelope; anything else as is."""
    redis_key = prefix + key
    raw_redis.set(redis_key, enveloped(redis_key, poison) if poison[:1] == b"\x01" else poison)


@pytest.mark.parametrize("path", ["get", "get_or_load", "get_many", "get_or_load_many"])
def test_every_poisoned_value_is_a_counted_miss_on_every_read_path(
    harness, raw_redis, prefix, redis_url, path
) -> None:
    cache = harness.cache([harness.l1(), harness.l2()])
    loads: list[Any] = []

    def load(key: str) -> str:
        loads.append(key)
        return f"loaded {key}"

    def load_many(keys: list[str]) -> dict[str, str]:
        loads.extend(keys)
        return {key: f"loaded {key}" for key in keys}

    cache.set("good", "good value")
    expected: dict[str, int] = {}
    planted = poisons(prefix, raw_redis, redis_url)
    for name, (poison, cause) in planted.items():
        plant(raw_redis, prefix, name, poison)
        expected[cause] = expected.get(cause, 0) + 1
        if path == "get":
            assert cache.get(name, "missed") == "missed"
        elif path == "get_or_load":
            assert cache.get_or_load(name, harness.loader(load)) == f"loaded {name}"
        elif path == "get_many":
            assert cache.get_many([name, "good"]) == {"good": "good value"}
        else:
            found = cache.get_or_load_many([name, "good"], harness.loader(load_many))
            assert found == {name: f"loaded {name}", "good": "good value"}
    stats = cache.stats()
    assert stats.untrusted_reads["l2"] == expected
    assert stats.read_errors["l2"] == sum(expected.values())
    if path.startswith("get_or_load"):  # the loader ran for each poisoned key, once
        assert sorted(loads) == sorted(planted)


class Gone:
    """Pickled, then its module disappears, as a deploy that renames a class does."""


def test_a_signed_value_of_a_class_that_is_gone_is_a_counted_miss(
    harness, redis_url, prefix
) -> None:
    serializer = SignedPickleSerializer(key=b"k" * 32)
    cache = harness.cache([harness.l2(serializer=serializer)])
    module = types.ModuleType("deployed_then_renamed")
    cls = type("Thing", (), {"__module__": "deployed_then_renamed"})
    module.Thing = cls  # type: ignore[attr-defined]
    sys.modules["deployed_then_renamed"] = module
    try:
        cache.set("thing", cls())
        cache.set("plain", [1, 2])
    finally:
        del sys.modules["deployed_then_renamed"]
    assert cache.get("thing", "missed") == "missed"
    assert cache.get_or_load("thing", harness.loader(lambda key: "reloaded")) == "reloaded"
    assert cache.get_many(["thing2", "plain"]) == {"plain": [1, 2]}
    assert cache.stats().untrusted_reads["l2"] == {"unpickle": 2}  # get, then get_or_load


def test_a_signed_value_copied_under_another_key_does_not_verify(
    harness, raw_redis, prefix
) -> None:
    """The signature covers the Redis key: fixing the envelope's key check is not enough."""
    cache = harness.cache([harness.l2(serializer=SignedPickleSerializer(key=b"k" * 32))])
    cache.set("mine", {"secret": 1})
    data = raw_redis.get(prefix + "mine")
    check = key_check(prefix + "theirs").to_bytes(4, "big")
    raw_redis.set(prefix + "theirs", data[:44] + check + data[48:])  # a rewritten key check
    assert cache.get("theirs") is None and cache.get("mine") == {"secret": 1}
    assert cache.stats().untrusted_reads["l2"] == {"forged": 1}


def test_encrypted_values_copied_tampered_or_under_a_retired_key_are_counted_misses(
    harness, raw_redis, prefix
) -> None:
    current = Encryption({"b": KEY_B, "a": KEY_A})
    cache = harness.cache([harness.l2(encryption=current)])
    cache.set("k", {"n": 1})
    cache.set("other", {"n": 2})
    data = raw_redis.get(prefix + "k")
    assert b'"n"' not in data and b"\xa1n" not in data  # nothing readable in Redis
    assert cache.get("k") == {"n": 1}

    tampered = bytearray(data)
    tampered[-1] ^= 1
    raw_redis.set(prefix + "tampered", enveloped_copy(bytes(tampered), prefix + "tampered"))
    raw_redis.set(prefix + "copied", enveloped_copy(data, prefix + "copied"))
    retired = harness.l2(encryption=Encryption({"old": KEY_A}), name="retired")
    retired.set("retired", {"n": 3})
    assert cache.get_many(["tampered", "copied", "retired", "other"]) == {"other": {"n": 2}}
    assert cache.stats().untrusted_reads["l2"] == {"forged": 2, "unknown_key_id": 1}


def enveloped_copy(data: bytes, redis_key: str) -> bytes:
    """``data`` with its envelope's key check rewritten for ``redis_key`` (what someone who
    can write to Redis can always do): only the ciphertext's associated data stops it."""
    return data[:44] + key_check(redis_key).to_bytes(4, "big") + data[48:]


def test_values_past_max_value_bytes_are_refused_before_decoding(harness, prefix) -> None:
    writer = harness.l2(name="writer")
    writer.set("big", "x" * 5_000)
    writer.set("small", "x" * 10)
    cache = harness.cache([harness.l2(max_value_bytes=1_000)])
    assert cache.get_many(["big", "small"]) == {"small": "x" * 10}
    assert cache.get("big") is None
    assert cache.stats().untrusted_reads["l2"] == {"limit": 2}
    with pytest.raises(ValueError, match="max_value_bytes"):
        harness.l2(max_value_bytes=0)


READ_THE_BOMB = """
import sys, time
from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

cache = MultilayerCache([InMemoryLayer(max_size=100), RedisLayer(sys.argv[1], prefix=sys.argv[2])])
cache.set("warm", 1)
cache.get("warm")  # connected, everything imported
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
before = status("VmRSS:")
start = time.perf_counter()
value = cache.get_or_load("bomb", lambda key: "loaded")
print(value, time.perf_counter() - start, status("VmHWM:") - before)
"""


def test_the_array_bomb_costs_at_most_3x_its_bytes_through_a_real_read(
    redis_url, raw_redis, prefix
):
    """The 10 MB bomb read through a manager from Redis: refused (the loader runs), and the
    reading process's peak memory grows by at most 3x the bytes read (the reply buffer and
    the bytes object: the payload is decoded in place)."""
    import subprocess
    import sys

    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to measure a process's peak memory")
    poison = b"\x01\xdd" + (10_000_000).to_bytes(4, "big") + b"\x90" * 10_000_000
    raw_redis.set(prefix + "bomb", enveloped(prefix + "bomb", poison))
    size = raw_redis.strlen(prefix + "bomb")
    ran = subprocess.run(
        [sys.executable, "-c", READ_THE_BOMB, redis_url, prefix],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    value, seconds, grown = ran.stdout.split()
    assert value == "loaded"
    assert int(grown) <= 3 * size, f"peak grew {int(grown) / size:.2f}x the bytes read"
    assert float(seconds) < 5.0  # the read of 10 MB itself, on a loaded machine
