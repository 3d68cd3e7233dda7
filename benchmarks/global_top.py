"""Global top-N across three instance processes: recall of ``global_top_keys(n)`` against
the exact counts of the union of their traffic, over several seeds.

    python benchmarks/global_top.py                      # 5 seeds, top 10, 4 s each
    python benchmarks/global_top.py --seeds 10 --n 20 --seconds 6
    python benchmarks/global_top.py --hit-cost           # an L1 hit with fleet_info on / off
    python benchmarks/global_top.py --read-cost          # one reading of L1's per-key counts

Each instance (a spawned process, ``tests/globaltop_support.py``) reads zipf-distributed
keys (exponents 1.0, 0.8 and 1.2; key ranges 0-1999, 1000-2999 and 1500-2499, overlapping)
at 1, 2 and 0.5 times ``--rate`` reads per second through ``InMemoryLayer`` +
``RedisLayer``, publishing with ``fleet_info`` every ``--period`` seconds. Then a cache of
this process that publishes nothing asks ``global_top_keys(n)``. Recall: the share of its
keys that are in the exact top ``n`` (ties with the ``n``-th count included). For the three
hottest, the estimated accesses per minute are printed beside the exact ones (count /
seconds x 60).

``--hit-cost``: the cost of an L1 hit (``cache.get`` of a key L1 holds, 10,000 entries) in
caches publishing every 5 s and every 0.5 s, against one that does not publish, in the same
run: the median ratio over 7 rounds (the best of 3 timings each).

``--read-cost``: what one publish spends reading L1's per-key counts
(``analytics/accesses.py``: copy the counts, the accesses since the previous copy, the 400
most accessed and their keys), on L1s of 10,000 and 100,000 entries after zipf traffic: the
median of 15 readings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer  # noqa: E402
from multilayercache.analytics.accesses import RecentAccesses  # noqa: E402
from multilayercache.layers.redis.fleetinfo import CANDIDATES, FleetInfo  # noqa: E402
from multilayercache.tools.benchmarking import zipf_indices  # noqa: E402
from multilayercache.tools.servers import RedisServer  # noqa: E402

from globaltop_support import run_fleet  # noqa: E402


def hit_cost() -> None:
    with RedisServer.start() as server:

        def make(info: FleetInfo | None) -> MultilayerCache:
            l1 = InMemoryLayer(max_size=10_000)
            cache = MultilayerCache([l1, RedisLayer(server.url, prefix="hit:")], fleet_info=info)
            for i in range(10_000):
                l1.set(f"k{i}", i)
            return cache

        caches = {
            "off": make(None),
            "every 5 s": make(FleetInfo(period_seconds=5)),
            "every 0.5 s": make(FleetInfo(period_seconds=0.5)),
        }
        keys = [f"k{i}" for i in range(0, 10_000, 7)]

        def nanoseconds(cache: MultilayerCache) -> float:
            get = cache.get
            best = min(timeit.repeat(lambda: [get(key) for key in keys], number=200, repeat=3))
            return best / (200 * len(keys)) * 1e9

        ratios: dict[str, list[float]] = {name: [] for name in caches if name != "off"}
        for _ in range(7):
            times = {name: nanoseconds(cache) for name, cache in caches.items()}
            for name in ratios:
                ratios[name].append(times[name] / times["off"])
        print(f"L1 hit without fleet_info (last round): {times['off']:.1f} ns")
        for name, values in ratios.items():
            print(f"fleet_info publishing {name}: {statistics.median(values):.3f}x (median of 7)")
        for cache in caches.values():
            cache.close()


def read_cost() -> None:
    for size in (10_000, 100_000):
        l1 = InMemoryLayer(max_size=size)
        for i in range(size):
            l1.set(i, i)
        reader = RecentAccesses(l1)
        reader.read(CANDIDATES)
        order = zipf_indices(3 * size, size).tolist()
        spent = []
        for round_ in range(15):
            for key in order[round_ * size // 5 : (round_ + 1) * size // 5]:
                l1.get(key)
            start = time.perf_counter()
            reader.read(CANDIDATES)
            spent.append((time.perf_counter() - start) * 1e3)
        print(
            f"L1 of {size:,} entries: one reading of its {CANDIDATES} most accessed keys "
            f"{statistics.median(spent):.2f} ms (median of 15)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--period", type=float, default=0.5)
    parser.add_argument("--rate", type=float, default=40_000, help="reads per second (base)")
    parser.add_argument("--hit-cost", action="store_true", help="time an L1 hit instead")
    parser.add_argument("--read-cost", action="store_true", help="time a reading of L1's counts")
    args = parser.parse_args()
    if args.hit_cost:
        hit_cost()
        return
    if args.read_cost:
        read_cost()
        return
    recalls = []
    with RedisServer.start() as server:
        for seed in range(1, args.seeds + 1):
            outcome = run_fleet(
                server.url,
                f"bench-top-{seed}:",
                seed,
                n=args.n,
                seconds=args.seconds,
                period=args.period,
                reads_per_second=args.rate,
            )
            recall = outcome.recall(args.n)
            recalls.append(recall)
            exact_rank = sorted(outcome.exact, key=lambda key: -outcome.exact[key])
            estimated_keys = [key for key, _ in outcome.estimated]
            print(
                f"seed {seed}: recall@{args.n} = {recall:.2f}   reads per instance "
                f"{sorted(outcome.reads)}   exact top: {exact_rank[: args.n]}"
            )
            print(f"         estimated top: {estimated_keys}")
            threshold = outcome.exact[exact_rank[args.n - 1]]
            for key in estimated_keys:
                read = outcome.exact.get(key, 0)
                if read < threshold:
                    print(
                        f"         {key} is not in the exact top: read {read:,} times, "
                        f"the exact {args.n}th {threshold:,}"
                    )
            rows = [
                f"{key}: {per_minute:,}/min estimated, "
                f"{outcome.exact.get(key, 0) / args.seconds * 60:,.0f}/min exact"
                for key, per_minute in outcome.estimated[:3]
            ]
            print("         " + "; ".join(rows))
    print(
        f"recall@{args.n} over {len(recalls)} seeds: min {min(recalls):.2f}, "
        f"median {statistics.median(recalls):.2f}, mean {statistics.fmean(recalls):.2f}"
    )


if __name__ == "__main__":
    main()
