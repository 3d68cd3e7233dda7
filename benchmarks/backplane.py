"""The backplane, measured: how soon a change by one instance (``set``, ``delete`` or
``invalidate_tags``, in turn) reaches the L1 of two others (separate processes, sync and
asyncio managers); what an L1 hit costs with a backplane and tags against one without
(same run); and what an invalidation costs for 10 and 100,000 keys.

    python benchmarks/backplane.py [--updates 1000]

A (this process) changes keys one at a time that B and C (processes of their own) hold in
L1; each reader times the seconds from the return of A's call until its own ``get`` no
longer returns the old value (a local Valkey on loopback; the 2 cores shared by all).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer
from multilayercache.tools.fleet import run_readers
from multilayercache.tools.servers import RedisServer


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def hit_ns(cache: MultilayerCache, calls: int = 300_000) -> float:
    get = cache.get
    start = time.perf_counter()
    for _ in range(calls):
        get("hot")
    return (time.perf_counter() - start) / calls * 1e9


def settle(cache: MultilayerCache) -> None:
    """Before timing an invalidation: the announcements of the sets before it sent (and
    their echoes read back by this instance's own reader), their garbage collected (as
    ``timeit`` does): what is timed is the invalidation alone."""
    cache.backplane.flush()
    time.sleep(0.2)
    gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=1_000, help="updates (1000)")
    parser.add_argument("--repeat", type=int, default=7, help="rounds of the hit timing (7)")
    args = parser.parse_args(argv)
    with RedisServer.start(use_env=False) as server:
        for kind in ("sync", "asyncio"):
            latencies = run_readers(server.url, f"{kind}:", kind, readers=2, updates=args.updates)
            print(
                f"{kind:>7} readers: {len(latencies)} updates seen, p50 "
                f"{percentile(latencies, 0.5) * 1000:.2f} ms, p99 "
                f"{percentile(latencies, 0.99) * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms"
            )
        caches = {
            "without": MultilayerCache(
                [InMemoryLayer(max_size=1_000), RedisLayer(server.url, prefix="h1:")]
            ),
            "backplane, tags": MultilayerCache(
                [InMemoryLayer(max_size=1_000), RedisLayer(server.url, prefix="h2:")],
                backplane=True,
            ),
        }
        rounds: dict[str, list[float]] = {name: [] for name in caches}
        caches["without"].set("hot", {"n": 1})
        caches["backplane, tags"].set("hot", {"n": 1}, tags=("product:1", "catalog"))
        caches["backplane, tags"].invalidate_tags("other")  # marks are known and checked
        for _ in range(args.repeat):
            for name, cache in caches.items():
                rounds[name].append(hit_ns(cache))
        ratios = [
            tags / plain
            for plain, tags in zip(rounds["without"], rounds["backplane, tags"], strict=True)
        ]
        print(
            f"L1 hit: {statistics.median(rounds['without']):.0f} ns without, "
            f"{statistics.median(rounds['backplane, tags']):.0f} ns with backplane and tags: "
            f"{statistics.median(ratios):.2f}x (median of per-round ratios)"
        )
        tagged = caches["backplane, tags"]
        for count in (10, 100_000):
            tags_ms, prefix_ms = [], []
            for round_ in range(args.repeat):
                tag = f"tag-{count}-{round_}"
                for start in range(0, count, 10_000):
                    end = min(count, start + 10_000)
                    tagged.set_many({f"{tag}:{n}": n for n in range(start, end)}, tags=tag)
                settle(tagged)
                began = time.perf_counter()
                tagged.invalidate_tags(tag)
                tags_ms.append((time.perf_counter() - began) * 1000)
                other = f"prefix-{count}-{round_}"  # keys of their own, under one prefix
                for start in range(0, count, 10_000):
                    end = min(count, start + 10_000)
                    tagged.set_many({f"{other}:{n}": n for n in range(start, end)})
                settle(tagged)
                began = time.perf_counter()
                tagged.invalidate_prefix(f"{other}:")
                prefix_ms.append((time.perf_counter() - began) * 1000)
            print(
                f"{count:>7,} keys: invalidate_tags {statistics.median(tags_ms):.2f} ms, "
                f"invalidate_prefix {statistics.median(prefix_ms):.2f} ms (medians of "
                f"{args.repeat}; this L1 holds at most 1,000 of them)"
            )
        for cache in caches.values():
            cache.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
