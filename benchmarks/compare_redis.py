"""The manager's overhead over the layers and over raw redis-py, measured in one run.

    python benchmarks/compare_redis.py [--repeat 9]

Starts a throwaway server (or uses ``REDIS_URL``) and prints, for each row, the median of
``--repeat`` rounds and the spread (min-max) of the per-round ratio; the rows of a table are
interleaved within each round, so that machine noise hits them alike:

* an L1 hit through ``MultilayerCache.get`` against ``InMemoryLayer.get``;
* an L2 hit through the manager against a raw redis-py ``GET`` of the same bytes: L1 in
  front misses, with promotion off (``promote="never"``), and with the default promotion
  (``seen_before``: each hit is copied into L1, which the row empties again before each
  read; emptying it alone is ~0.1 us of ~50-150);
* ``get_many`` of 100 keys (one ``MGET``) against a raw ``MGET`` of the same 100 keys, with
  the same two promotion policies (the default one's row deletes the 100 keys from L1 before
  each call, ~4 us);
* the same for ``AsyncMultilayerCache`` over ``redis.asyncio``, beside the peers with a
  Redis backend, each with its defaults, against the same raw ``GET`` and ``MGET``: cashews
  (``get``, ``get_many``; pickle) and aiocache (``RedisCache.get``, ``multi_get``; JSON). A
  peer that is not installed is left out.

Values: a small product record (dict with a nested list) and a 100-byte string.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

import msgspec
import redis
import redis.asyncio

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.tools.benchmarking import zipf_indices
from multilayercache.tools.servers import RedisServer

VALUES = {
    "record": {"id": 1, "name": "product", "price": 9.99, "tags": ["a", "b"]},
    "string": "x" * 100,
}
decode = msgspec.msgpack.Decoder().decode
GET_CALLS, MGET_CALLS = 2000, 400


def per_call(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def summary(samples: dict[str, list[float]], row: str, base: str) -> str:
    """``row`` against ``base``: their medians, and the ratio's median and spread (min-max)
    over the rounds (each round measured both)."""
    ratios = [a / b for a, b in zip(samples[row], samples[base], strict=True)]
    return (
        f"{statistics.median(samples[row]) * 1e6:7.1f} us: {statistics.median(ratios):.3f}x "
        f"({min(ratios):.3f}-{max(ratios):.3f})"
    )


def l1_table(repeat: int) -> list[str]:
    keys = [f"key:{i}" for i in range(10_000)]
    l1 = InMemoryLayer(max_size=20_000)
    cache = MultilayerCache([l1])
    for key in keys:
        l1.set(key, key)
    probe = [keys[i] for i in zipf_indices(1000, 10_000)]
    samples: dict[str, list[float]] = {"layer": [], "manager": []}
    for _ in range(repeat):
        for name, owner in (("layer", l1), ("manager", cache)):
            seconds = timeit.timeit(
                "for key in probe: owner.get(key)",
                globals={"owner": owner, "probe": probe},
                number=100,
            )
            samples[name].append(seconds / (100 * len(probe)))
    ratios = [m / layer for m, layer in zip(samples["manager"], samples["layer"], strict=True)]
    return [
        f"L1 hit: InMemoryLayer.get {statistics.median(samples['layer']) * 1e9:.1f} ns, "
        f"MultilayerCache.get {statistics.median(samples['manager']) * 1e9:.1f} ns: "
        f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
        "(acceptance: <= 2x)"
    ]


def sync_table(url: str, repeat: int) -> list[str]:
    raw = redis.Redis.from_url(url)
    l2 = RedisLayer(url, prefix="bench:")
    l1_never, l1_default = InMemoryLayer(max_size=1000), InMemoryLayer(max_size=1000)
    never = MultilayerCache([l1_never, l2], [LayerPolicy(promote="never"), None])
    promoting = MultilayerCache([l1_default, l2])
    lines = []
    for shape, value in VALUES.items():
        keys = [f"{shape}:{i}" for i in range(100)]
        l2.set_many({key: value for key in keys})
        raw_keys = [l2.redis_key(key) for key in keys]
        one, first = raw_keys[0], keys[0]
        # What precedes the MessagePack value (the layer's envelope and serializer tag) is
        # skipped by offset, as a user who knows the format would: decoding only.
        skip = len(raw.get(one)) - len(msgspec.msgpack.encode(value))

        def promoted_get(first: str = first) -> Any:
            l1_default.delete(first)
            return promoting.get(first)

        def promoted_many(keys: list[str] = keys) -> Any:
            for key in keys:
                l1_default.delete(key)
            return promoting.get_many(keys)

        rows: dict[str, tuple[Callable[[], object], int]] = {
            "raw GET": (lambda: raw.get(one), GET_CALLS),
            "raw GET + decode": (lambda: decode(raw.get(one)[skip:]), GET_CALLS),
            "get, never": (lambda: never.get(first), GET_CALLS),
            "get, default": (promoted_get, GET_CALLS),
            "raw MGET": (lambda: raw.mget(raw_keys), MGET_CALLS),
            "raw MGET + decode": (
                lambda: [decode(data[skip:]) for data in raw.mget(raw_keys)],
                MGET_CALLS,
            ),
            "get_many, never": (lambda: never.get_many(keys), MGET_CALLS),
            "get_many, default": (promoted_many, MGET_CALLS),
        }
        promoted_get(), promoted_get()  # seen before: promoted from now on
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(repeat):
            for name, (function, calls) in rows.items():
                samples[name].append(per_call(function, calls))
        lines += [
            f"sync  {shape:<6} GET: raw {statistics.median(samples['raw GET']) * 1e6:6.1f} us; "
            "manager (acceptance: <= 1.1x)",
            f"    promote never   {summary(samples, 'get, never', 'raw GET')}   "
            f"vs raw + decode {summary(samples, 'get, never', 'raw GET + decode')}",
            f"    promote default {summary(samples, 'get, default', 'raw GET')}",
            f"sync  {shape:<6} get_many(100): raw MGET "
            f"{statistics.median(samples['raw MGET']) * 1e6:6.1f} us; manager "
            "(acceptance: <= 1.3x)",
            f"    promote never   {summary(samples, 'get_many, never', 'raw MGET')}   "
            f"vs raw + decode {summary(samples, 'get_many, never', 'raw MGET + decode')}",
            f"    promote default {summary(samples, 'get_many, default', 'raw MGET')}",
        ]
    raw.close()
    l2.close()
    return lines


async def peers(url: str, shape: str) -> dict[str, tuple[Any, Any]]:
    """``{name: (get(key), get_many(keys))}`` coroutine functions of each installed peer,
    over ``shape``'s 100 keys (written first), with the peer's defaults."""
    keys = [f"peer:{shape}:{i}" for i in range(100)]
    value = VALUES[shape]
    found: dict[str, tuple[Any, Any]] = {}
    try:
        from cashews import Cache
    except ImportError:
        pass
    else:
        cashews = Cache()
        cashews.setup(url, client_side=False)
        for key in keys:
            await cashews.set(key, value, expire=3600)
        found["cashews"] = (lambda: cashews.get(keys[0]), lambda: cashews.get_many(*keys))
    try:
        from aiocache import RedisCache
    except ImportError:
        pass
    else:
        where = urlparse(url)
        aiocache = RedisCache(endpoint=where.hostname, port=where.port, namespace="aiocache")
        await aiocache.multi_set([(key, value) for key in keys], ttl=3600)
        found["aiocache"] = (lambda: aiocache.get(keys[0]), lambda: aiocache.multi_get(keys))
    return found


async def async_table(url: str, repeat: int) -> list[str]:
    raw = redis.asyncio.Redis.from_url(url)
    l2 = AsyncRedisLayer(url, prefix="bench:")
    l1_never, l1_default = InMemoryLayer(max_size=1000), InMemoryLayer(max_size=1000)
    never = AsyncMultilayerCache([l1_never, l2], [LayerPolicy(promote="never"), None])
    promoting = AsyncMultilayerCache([l1_default, l2])
    lines = []

    async def timed(function: Callable[[], Awaitable[object]], calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await function()
        return (time.perf_counter() - start) / calls

    for shape, value in VALUES.items():
        keys = [f"{shape}:{i}" for i in range(100)]
        await l2.set_many({key: value for key in keys})
        raw_keys = [l2.redis_key(key) for key in keys]
        first = keys[0]

        def promoted_get(first: str = first) -> Awaitable[object]:
            l1_default.delete(first)
            return promoting.get(first)

        def promoted_many(keys: list[str] = keys) -> Awaitable[object]:
            for key in keys:
                l1_default.delete(key)
            return promoting.get_many(keys)

        rows: dict[str, tuple[Callable[[], Awaitable[object]], int]] = {
            "raw GET": (lambda: raw.get(raw_keys[0]), GET_CALLS),
            "get, never": (lambda: never.get(first), GET_CALLS),
            "get, default": (promoted_get, GET_CALLS),
            "raw MGET": (lambda: raw.mget(raw_keys), MGET_CALLS),
            "get_many, never": (lambda: never.get_many(keys), MGET_CALLS),
            "get_many, default": (promoted_many, MGET_CALLS),
        }
        others = await peers(url, shape)
        for name, (get, get_many) in others.items():
            rows[f"{name} get"] = (get, GET_CALLS)
            rows[f"{name} get_many"] = (get_many, MGET_CALLS)
        await promoted_get(), await promoted_get()
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(repeat):
            for name, (function, calls) in rows.items():
                samples[name].append(await timed(function, calls))
        lines += [
            f"async {shape:<6} GET: raw {statistics.median(samples['raw GET']) * 1e6:6.1f} us; "
            "manager (acceptance: <= 1.1x)",
            f"    promote never   {summary(samples, 'get, never', 'raw GET')}",
            f"    promote default {summary(samples, 'get, default', 'raw GET')}",
        ]
        lines += [f"    {name:<15} {summary(samples, f'{name} get', 'raw GET')}" for name in others]
        lines += [
            f"async {shape:<6} get_many(100): raw MGET "
            f"{statistics.median(samples['raw MGET']) * 1e6:6.1f} us; manager "
            "(acceptance: <= 1.3x)",
            f"    promote never   {summary(samples, 'get_many, never', 'raw MGET')}",
            f"    promote default {summary(samples, 'get_many, default', 'raw MGET')}",
        ]
        lines += [
            f"    {name:<15} {summary(samples, f'{name} get_many', 'raw MGET')}" for name in others
        ]
    await raw.aclose()
    await l2.close()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    print("\n".join(l1_table(args.repeat)))
    with RedisServer.start() as server:
        print("\n".join(sync_table(server.url, args.repeat)))
        print("\n".join(asyncio.run(async_table(server.url, args.repeat))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
