"""The manager's overhead over the layers and over raw redis-py, measured in one run.

    python benchmarks/compare_redis.py [--repeat 9]

Starts a throwaway server (or uses ``REDIS_URL``) and prints, as medians of ``--repeat``
runs, interleaved so that machine noise hits every row alike:

* an L1 hit through ``MultilayerCache.get`` against ``InMemoryLayer.get``;
* an L2 hit through the manager (L1 misses: promotion off) against a raw redis-py ``GET`` of
  the same bytes, and against raw ``GET`` + decoding them as a user would;
* ``get_many`` of 100 keys (one ``MGET``) against a raw ``MGET`` of the same bytes (and
  + decoding);
* the same for ``AsyncMultilayerCache`` over ``redis.asyncio``.

Values: a small product record (dict with a nested list) and a 100-byte string.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import timeit
from collections.abc import Callable

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


def per_call(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def measure(rows: dict[str, Callable[[], object]], calls: int, repeat: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeat):
        for name, function in rows.items():
            samples[name].append(per_call(function, calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def l1_table(repeat: int) -> list[str]:
    keys = [f"key:{i}" for i in range(10_000)]
    l1 = InMemoryLayer(max_size=20_000)
    cache = MultilayerCache([l1])
    for key in keys:
        l1.set(key, key)
    probe = [keys[i] for i in zipf_indices(1000, 10_000)]
    results = {}
    for _ in range(repeat):
        for name, owner in (("InMemoryLayer.get", l1), ("MultilayerCache.get", cache)):
            seconds = timeit.timeit(
                "for key in probe: owner.get(key)",
                globals={"owner": owner, "probe": probe},
                number=100,
            )
            results.setdefault(name, []).append(seconds / (100 * len(probe)))
    layer, manager = (
        statistics.median(results[n]) for n in ("InMemoryLayer.get", "MultilayerCache.get")
    )
    return [
        f"L1 hit: InMemoryLayer.get {layer * 1e9:.1f} ns, MultilayerCache.get "
        f"{manager * 1e9:.1f} ns: {manager / layer:.2f}x (acceptance: <= 2x)"
    ]


def sync_table(url: str, repeat: int) -> list[str]:
    raw = redis.Redis.from_url(url)
    l1 = InMemoryLayer(max_size=1000)
    l2 = RedisLayer(url, prefix="bench:")
    cache = MultilayerCache([l1, l2], [LayerPolicy(promote="never"), None])
    lines = []
    for shape, value in VALUES.items():
        keys = [f"{shape}:{i}" for i in range(100)]
        l2.set_many({key: value for key in keys})
        raw_keys = [l2.redis_key(key) for key in keys]
        one = raw_keys[0]
        # What precedes the MessagePack value (the layer's envelope and serializer tag) is
        # skipped by offset, as a user who knows the format would: decoding only.
        skip = len(raw.get(one)) - len(msgspec.msgpack.encode(value))
        rows = {
            "raw GET": lambda: raw.get(one),
            "raw GET + decode": lambda: decode(raw.get(one)[skip:]),
            "manager get (L2 hit)": lambda: cache.get(keys[0]),
        }
        t = measure(rows, 2000, repeat)
        lines.append(
            f"sync  {shape:<6} GET: raw {t['raw GET'] * 1e6:6.1f} us, manager "
            f"{t['manager get (L2 hit)'] * 1e6:6.1f} us: "
            f"{t['manager get (L2 hit)'] / t['raw GET']:.3f}x raw "
            f"({t['manager get (L2 hit)'] / t['raw GET + decode']:.3f}x raw + decode)"
            "  (acceptance: <= 1.15x)"
        )
        rows = {
            "raw MGET": lambda: raw.mget(raw_keys),
            "raw MGET + decode": lambda: [decode(data[skip:]) for data in raw.mget(raw_keys)],
            "manager get_many": lambda: cache.get_many(keys),
        }
        t = measure(rows, 400, repeat)
        lines.append(
            f"sync  {shape:<6} get_many(100): raw MGET {t['raw MGET'] * 1e6:6.1f} us, "
            f"manager {t['manager get_many'] * 1e6:6.1f} us: "
            f"{t['manager get_many'] / t['raw MGET']:.3f}x raw "
            f"({t['manager get_many'] / t['raw MGET + decode']:.3f}x raw + decode)"
            "  (acceptance: <= 1.3x)"
        )
    raw.close()
    l2.close()
    return lines


async def async_table(url: str, repeat: int) -> list[str]:
    raw = redis.asyncio.Redis.from_url(url)
    l1 = InMemoryLayer(max_size=1000)
    l2 = AsyncRedisLayer(url, prefix="bench:")
    cache = AsyncMultilayerCache([l1, l2], [LayerPolicy(promote="never"), None])
    lines = []

    async def timed(coroutine_function, calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await coroutine_function()
        return (time.perf_counter() - start) / calls

    for shape, value in VALUES.items():
        keys = [f"{shape}:{i}" for i in range(100)]
        await l2.set_many({key: value for key in keys})
        raw_keys = [l2.redis_key(key) for key in keys]
        rows = {
            "raw GET": (lambda: raw.get(raw_keys[0]), 2000),
            "manager get": (lambda: cache.get(keys[0]), 2000),
            "raw MGET": (lambda: raw.mget(raw_keys), 400),
            "manager get_many": (lambda: cache.get_many(keys), 400),
        }
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(repeat):
            for name, (function, calls) in rows.items():
                samples[name].append(await timed(function, calls))
        t = {name: statistics.median(values) for name, values in samples.items()}
        lines.append(
            f"async {shape:<6} GET: raw {t['raw GET'] * 1e6:6.1f} us, manager "
            f"{t['manager get'] * 1e6:6.1f} us: {t['manager get'] / t['raw GET']:.3f}x"
        )
        lines.append(
            f"async {shape:<6} get_many(100): raw MGET {t['raw MGET'] * 1e6:6.1f} us, "
            f"manager {t['manager get_many'] * 1e6:6.1f} us: "
            f"{t['manager get_many'] / t['raw MGET']:.3f}x"
        )
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
