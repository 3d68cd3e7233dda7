"""Compression of large values in a shared layer, measured: bytes saved, and what a read and a
write cost, for 1 KB, 10 KB and 100 KB values, without compression, with zlib and with zstd.

    python benchmarks/compression.py [--repeat 7]

The values are product documents (ids, prices, names and descriptions drawn from a small
vocabulary), the kind of JSON-like data services cache; random bytes would not compress and
one repeated character would flatter every algorithm. Reads and writes go to a local Valkey
(loopback) through ``RedisLayer.get`` / ``set``: the medians of ``--repeat`` rounds of
interleaved variants, so that the ratios come from the same moments of this noisy machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import redis

from multilayercache import RedisLayer
from multilayercache.tools.servers import RedisServer

WORDS = (
    "red blue green small large cotton steel wooden classic modern premium light heavy "
    "portable compact wireless organic recycled waterproof vintage ergonomic deluxe basic"
).split()
VARIANTS = {"none": None, "zlib": "zlib", "zstd": "zstd"}


def document(size: int, rng: random.Random) -> dict[str, Any]:
    """A catalogue page of about ``size`` bytes of MessagePack."""
    items = []
    while len(str(items)) < size * 1.3:
        items.append(
            {
                "id": rng.randrange(10**6),
                "name": " ".join(rng.choices(WORDS, k=3)),
                "price": round(rng.uniform(1, 500), 2),
                "stock": rng.randrange(1000),
                "description": " ".join(rng.choices(WORDS, k=rng.randrange(5, 20))),
            }
        )
    return {"page": 1, "items": items}


def timed(action: Any, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds (7)")
    args = parser.parse_args(argv)
    rng = random.Random(3)
    with RedisServer.start(use_env=False) as server:
        raw = redis.Redis.from_url(server.url)
        layers = {
            name: RedisLayer(server.url, prefix=f"{name}:", compression=algorithm)
            for name, algorithm in VARIANTS.items()
        }
        print(f"{'value':>7} {'variant':>7} {'stored':>9} {'saved':>6} {'read us':>9} "
              f"{'(x none)':>8} {'write us':>9} {'(x none)':>8}")  # fmt: skip
        for size in (1_000, 10_000, 100_000):
            value = document(size, rng)
            calls = max(20, 20_000_000 // (size * 50))
            reads: dict[str, list[float]] = {name: [] for name in layers}
            writes: dict[str, list[float]] = {name: [] for name in layers}
            for _ in range(args.repeat):
                for name, layer in layers.items():
                    writes[name].append(timed(lambda layer=layer: layer.set("doc", value), calls))
                    reads[name].append(timed(lambda layer=layer: layer.get("doc"), calls))
            plain = len(raw.get("none:doc"))
            read_base = statistics.median(reads["none"])
            write_base = statistics.median(writes["none"])
            for name in layers:
                stored = len(raw.get(f"{name}:doc"))
                read, write = statistics.median(reads[name]), statistics.median(writes[name])
                print(
                    f"{size // 1000:>5} KB {name:>7} {stored:>9,} {1 - stored / plain:>6.0%} "
                    f"{read:>9.1f} {read / read_base:>7.2f}x {write:>9.1f} "
                    f"{write / write_base:>7.2f}x"
                )
        for layer in layers.values():
            layer.close()
        raw.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
