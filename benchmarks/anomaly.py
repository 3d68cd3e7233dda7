"""Anomaly detection in real time: minutes of steady zipf traffic must report nothing, then
one cold key jumping to 20% of the traffic must be reported within 2 s.

    python benchmarks/anomaly.py [--minutes 10] [--rate 4000] [--threads 4]
                                 [--exponent 1.0] [--keys 100000] [--size 10000] [--no-redis]

``--threads`` threads read ``get_or_load`` at ``--rate`` reads a second in all (paced in
batches), keys drawn from a zipf(``--exponent``) law over ``--keys`` keys, through an L1 of
``--size`` entries and a real Redis L2 (a throwaway server; ``--no-redis``: L1 only). The
cache runs with the default ``InsightsOptions`` and an ``on_anomaly`` that records. After
``--minutes`` of steady traffic, 20% of every thread's reads go to one key never read
before. Printed: the anomalies of the steady part (should be none), the delay from the
switch to the first report, the insights at the end (rates, zipf fit), and what sampling
cost (time per sample on the sampler's thread).
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from typing import Any

import numpy as np

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer
from multilayercache.analytics.insights import Insights
from multilayercache.tools.servers import RedisServer

BATCH = 100  # reads between pauses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=4_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--exponent", type=float, default=1.0)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        layers: list[Any] = [InMemoryLayer(max_size=args.size, name="l1")]
        if not args.no_redis:
            server = stack.enter_context(RedisServer.start())
            layers.append(RedisLayer(server.url, prefix="anomaly:", name="l2"))
        run(args, layers)


def run(args: argparse.Namespace, layers: list[Any]) -> None:
    heard: list[tuple[float, Any]] = []
    cache = MultilayerCache(layers, on_anomaly=lambda a: heard.append((time.monotonic(), a)))
    sample_seconds = time_samples(cache._sampler.insights)
    weights = np.arange(1, args.keys + 1, dtype=np.float64) ** -args.exponent
    weights /= weights.sum()
    spike_from = [float("inf")]
    stop = threading.Event()
    reads = [0] * args.threads
    per_thread = args.rate / args.threads

    def reader(n: int) -> None:
        rng = np.random.default_rng(n)
        started = time.monotonic()
        while not stop.is_set():
            spiking = time.monotonic() >= spike_from[0]
            keys = [f"k{key}" for key in rng.choice(args.keys, BATCH, p=weights).tolist()]
            if spiking:
                keys = ["cold key" if rng.random() < 0.2 else key for key in keys]
            for key in keys:
                cache.get_or_load(key, str)
            reads[n] += BATCH
            ahead = started + reads[n] / per_thread - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    threads = [threading.Thread(target=reader, args=(n,), daemon=True) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    steady = args.minutes * 60
    start = time.monotonic()
    time.sleep(steady)
    steady_reports = list(heard)
    spike_from[0] = time.monotonic()
    while time.monotonic() < spike_from[0] + 5 and len(heard) == len(steady_reports):
        time.sleep(0.005)
    stop.set()
    for thread in threads:
        thread.join(5)
    report = cache.insights()
    cache.close()

    print(f"steady: {steady:.0f} s, {sum(reads) / (time.monotonic() - start):.0f} reads/s "
          f"over {args.threads} threads, zipf({args.exponent}) over {args.keys} keys, "
          f"L1 {args.size}{'' if args.no_redis else ' + Redis L2'}")  # fmt: skip
    print(f"anomalies reported on steady traffic: {len(steady_reports)}")
    for _, anomaly in steady_reports[:10]:
        print(f"  {anomaly}")
    spike_reports = heard[len(steady_reports) :]
    if spike_reports:
        at, anomaly = spike_reports[0]
        print(f"spike reported after {at - spike_from[0]:.3f} s: {anomaly}")
    else:
        print("spike NOT reported within 5 s")
    for layer in report.layers:
        rates = layer.window(60)
        ratio = "-" if rates.hit_ratio is None else f"{rates.hit_ratio:.3f}"
        print(f"{layer.name}: last 60 s {rates.requests_per_second:.0f} req/s, hit ratio "
              f"{ratio}, {rates.evictions_per_second:.0f} evictions/s; zipf exponent "
              f"{layer.zipf_exponent} over {layer.zipf_keys} keys")  # fmt: skip
    times = np.array(sample_seconds) * 1e3
    print(f"samples: {len(times)}, ms per sample: median {np.median(times):.3f}, "
          f"p99 {np.percentile(times, 99):.3f}, max {times.max():.3f}")  # fmt: skip


def time_samples(insights: Insights) -> list[float]:
    """Record how long each of ``insights``' samples takes."""
    taken: list[float] = []
    sample = insights.sample

    def timed() -> Any:
        begun = time.perf_counter()
        try:
            return sample()
        finally:
            taken.append(time.perf_counter() - begun)

    insights.sample = timed  # type: ignore[method-assign]
    return taken


if __name__ == "__main__":
    main()
