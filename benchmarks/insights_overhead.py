"""What the insights sampler costs the threads that serve: L1 hits per second through
``MultilayerCache.get`` with insights off and on, in alternating rounds of one run.

    python benchmarks/insights_overhead.py [--size 10000] [--threads 2] [--rounds 7]
                                           [--seconds 1.0] [--interval 0.25]

The sampler runs on its own thread and takes the GIL (and, for a moment, the layer) to copy
the layer's counters: the cost shows as fewer hits served by the other threads. Two caches
of ``--size`` entries, filled with every key, one with insights on; in each round
``--threads`` threads read random held keys of one for ``--seconds``, the caches
alternating. Printed: the median hits per second of each and their ratio (noisy on a shared
machine), and what one sample costs the thread that takes it (the cost that does not
depend on the noise: the share of a core the sampler takes from the others).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

from multilayercache import InMemoryLayer, InsightsOptions, MultilayerCache


def filled_cache(args: argparse.Namespace, insights: bool) -> MultilayerCache:
    options = InsightsOptions(interval=args.interval) if insights else None
    cache = MultilayerCache([InMemoryLayer(max_size=args.size)], insights=options)
    for key in range(args.size):
        cache.set(key, key)
    return cache


def hits_per_second(args: argparse.Namespace, cache: MultilayerCache, keys: list[int]) -> float:
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
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args()
    plain, sampled = filled_cache(args, insights=False), filled_cache(args, insights=True)
    keys = np.random.default_rng(1).integers(0, args.size, 10_000).tolist()
    off, on = [], []
    for _ in range(args.rounds):
        off.append(hits_per_second(args, plain, keys))
        on.append(hits_per_second(args, sampled, keys))
    insights = sampled._sampler.insights  # type: ignore[union-attr]
    taken = []
    for _ in range(50):  # what one sample costs, measured on this thread
        begun = time.perf_counter()
        insights.sample()
        taken.append(time.perf_counter() - begun)
    plain.close()
    sampled.close()
    print(f"L1 of {args.size}, {args.threads} threads, {args.rounds} rounds of "
          f"{args.seconds} s, sampling every {args.interval} s")  # fmt: skip
    print(f"insights off: {statistics.median(off):,.0f} hits/s (median)")
    print(f"insights on:  {statistics.median(on):,.0f} hits/s (median)")
    per_sample = statistics.median(taken)
    print(f"one sample: {per_sample * 1e3:.3f} ms (median of 50): "
          f"{per_sample / args.interval:.2%} of one core at this interval")  # fmt: skip
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    print(f"on / off: {statistics.median(ratios):.3f} (median of the rounds' ratios; "
          f"range {min(ratios):.3f}-{max(ratios):.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
