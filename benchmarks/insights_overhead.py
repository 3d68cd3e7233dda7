"""What the insights sampler costs the threads that serve: L1 hits per second through
``MultilayerCache.get`` with insights off and on, in alternating rounds of one run.

    python benchmarks/insights_overhead.py [--size 10000] [--threads 2] [--rounds 7]
                                           [--seconds 1.0] [--interval 0.25]

The sampler runs on its own thread and takes the GIL (and, for a moment, the layer) to copy
the layer's counters: the cost shows as fewer hits served by the other threads. Each round
builds a cache of ``--size`` entries filled with every key, then ``--threads`` threads read
random held keys for ``--seconds``; rounds alternate off / on. Printed: the median hits per
second of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

from multilayercache import InMemoryLayer, InsightsOptions, MultilayerCache


def hits_per_second(args: argparse.Namespace, insights: bool) -> float:
    options = InsightsOptions(interval=args.interval) if insights else None
    cache = MultilayerCache([InMemoryLayer(max_size=args.size)], insights=options)
    for key in range(args.size):
        cache.set(key, key)
    keys = np.random.default_rng(1).integers(0, args.size, 100_000).tolist()
    counts = [0] * args.threads
    stop = threading.Event()

    def reader(n: int) -> None:
        get = cache.get
        while not stop.is_set():
            for key in keys:
                get(key)
            counts[n] += len(keys)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(args.threads)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    cache.close()
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args()
    off, on = [], []
    for _ in range(args.rounds):
        off.append(hits_per_second(args, insights=False))
        on.append(hits_per_second(args, insights=True))
    print(f"L1 of {args.size}, {args.threads} threads, {args.rounds} rounds of "
          f"{args.seconds} s, sampling every {args.interval} s")  # fmt: skip
    print(f"insights off: {statistics.median(off):,.0f} hits/s (median)")
    print(f"insights on:  {statistics.median(on):,.0f} hits/s (median)")
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    print(f"on / off: {statistics.median(ratios):.3f} (median of the rounds' ratios; "
          f"range {min(ratios):.3f}-{max(ratios):.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
