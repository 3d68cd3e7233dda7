"""Adaptive TTL against fixed TTLs on a workload where 10% of keys change per minute: loads,
writes into Redis and the staleness served, in one run over a real server on a simulated
clock.

    python benchmarks/adaptive_ttl.py [--keys 1000] [--minutes 20] [--bound 300]
                                      [--reads 50] [--skew both]

A source of truth holds ``--keys`` keys, each a versioned value of ``--value-bytes``. Each
simulated minute ``--change-rate`` of them change on average (a Poisson process per key):
``uniform`` (every key alike: each changes every 10 minutes on average) or ``zipf`` (rates
by a Zipf law, s = 1: a few keys change every few seconds, most once in hours). The cache
(L1 with a 10 s TTL, then Redis) answers ``get_or_load`` for ``--reads`` keys per simulated
second, picked uniformly, one after the other; loads are waited for (no
stale-while-revalidate), and Redis keeps each entry ``--bound`` past its TTL in every
configuration, so a reload finds the entry it replaces.

The clock is simulated: the L1's is injected, and the time Redis entries are stamped and
judged with (their envelopes' deadlines) is this script's, so a run of many simulated
minutes takes seconds and every configuration sees the same reads and the same changes,
read for read. Redis itself is real: its own expiry (real time) is longer than any
envelope's here, which decides what is fresh, stale or gone, as in production.

A read's staleness is measured against the source: 0 for the current version, else the time
since the version it got was replaced. The first ``--bound`` simulated seconds warm the cache
and are not counted. Loads are loader calls; full loads those that fetched the value (a
conditional loader that answers "unchanged" only asked for its version); "unchanged" are
loads whose value had not changed (``stats().refreshes_unchanged``); SETs are full writes
into Redis (INFO commandstats); extends give an unchanged entry a new lifetime in place, a
few dozen bytes (``stats().ttl_extended``); KB is what the server received.

Configurations (``--bound`` B, the worst staleness allowed):
    fixed B              LayerPolicy(ttl=B): the same staleness bound as adaptive
    fixed B, conditional the same, with a loader made by with_context that answers
                         context.unchanged() when the source's version is the cached one
    fixed B/2, B/4, B/8  fresher, more loads
    adaptive             LayerPolicy(ttl=B/4, adaptive=AdaptiveTTL(min=B/10, max=B)): its
                         worst staleness is B as well, but only keys that did not change
                         for a while get there
    adaptive, conditional  the same, with the conditional loader
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

import multilayercache.layers.redis.codec as codec
from multilayercache import (
    AdaptiveTTL,
    InMemoryLayer,
    LayerPolicy,
    LoadContext,
    LoadOptions,
    MultilayerCache,
    RedisLayer,
    with_context,
)
from multilayercache.tools.servers import RedisServer

L1_TTL = 10.0


@dataclass(frozen=True)
class Config:
    name: str
    ttl: float
    adaptive: AdaptiveTTL | None = None
    conditional: bool = False


class Clock:
    """Simulated seconds: the L1's clock, and the time of Redis envelopes."""

    def __init__(self) -> None:
        self.start = time.time()
        self.now = self.start

    def __call__(self) -> float:
        return self.now

    def milliseconds(self) -> int:
        return int(self.now * 1000)


class Source:
    """The source of truth: a version per key, and when each version was replaced."""

    def __init__(self, keys: int, value_bytes: int) -> None:
        self.version = [0] * keys
        self.replaced_at: list[list[float]] = [[] for _ in range(keys)]
        self.padding = "x" * value_bytes
        self.loads = 0
        self.full_loads = 0

    def change(self, index: int, moment: float) -> None:
        self.replaced_at[index].append(moment)
        self.version[index] += 1

    def load(self, key: str) -> dict[str, Any]:
        self.loads += 1
        self.full_loads += 1
        return {"key": key, "version": self.version[int(key[1:])], "padding": self.padding}

    def revalidate(self, key: str, context: LoadContext[dict[str, Any]]) -> dict[str, Any]:
        """A conditional load: "changed since this version?" before the whole value."""
        held = context.current
        if context.has_current and held is not None:
            if held["version"] == self.version[int(key[1:])]:
                self.loads += 1
                return context.unchanged()
        return self.load(key)

    def staleness(self, index: int, version: int, moment: float) -> float:
        if version >= self.version[index]:
            return 0.0
        return moment - self.replaced_at[index][version]


def schedule(keys: int, minutes: float, rate: float, skew: str, seed: int) -> list[tuple]:
    """``(simulated second, key index)`` of every change, in order."""
    rng = random.Random(seed)
    weights = [1.0] * keys if skew == "uniform" else [1 / (rank + 1) for rank in range(keys)]
    rng.shuffle(weights)
    per_second = rate * keys / 60
    total = sum(weights)
    changes = []
    for index, weight in enumerate(weights):
        lam = per_second * weight / total
        moment = rng.expovariate(lam)
        while moment < minutes * 60:
            changes.append((moment, index))
            moment += rng.expovariate(lam)
    return sorted(changes)


def server_counts(client: redis.Redis) -> tuple[int, int]:
    """SETs run and bytes received by the server so far."""
    sets = int(client.info("commandstats").get("cmdstat_set", {}).get("calls", 0))
    return sets, int(client.info("stats")["total_net_input_bytes"])


def run(config: Config, skew: str, changes: list[tuple], url: str, options: Any) -> dict:
    clock = Clock()
    codec._now_ms = clock.milliseconds  # the envelopes' time: simulated
    source = Source(options.keys, options.value_bytes)
    # Counts, not latencies, are measured: a generous timeout keeps a busy machine's slow
    # answer from turning into a failed write (and a load more) that would blur them.
    # One prefix for all (emptied after each run): keys of one length, so equal bytes.
    l2 = RedisLayer(url, prefix="adaptive-bench:", socket_timeout=5)
    cache = MultilayerCache(
        [InMemoryLayer(max_size=2 * options.keys, clock=clock), l2],
        [
            LayerPolicy(ttl=L1_TTL),
            LayerPolicy(ttl=config.ttl, stale_ttl=options.bound, adaptive=config.adaptive),
        ],
        load_options=LoadOptions(stale_while_revalidate=False),
    )
    client = redis.Redis.from_url(url)
    loader: Callable[[str], Any] = (
        with_context(source.revalidate) if config.conditional else source.load
    )
    rng = random.Random(options.seed)
    keys = [f"k{n}" for n in range(options.keys)]
    reads = int(options.minutes * 60 * options.reads)
    warm = int(options.bound * options.reads)  # reads in the warm-up
    pending = iter(changes)
    change = next(pending, None)
    staleness = []
    for n in range(reads):
        moment = n / options.reads
        clock.now = clock.start + moment
        while change is not None and change[0] <= moment:
            source.change(change[1], change[0])
            change = next(pending, None)
        if n == warm:
            baseline = (source.loads, source.full_loads, *server_counts(client), cache.stats())
        key = rng.choice(keys)
        value = cache.get_or_load(key, loader)
        if n >= warm:
            staleness.append(source.staleness(int(key[1:]), value["version"], moment))
    loads, full_loads, sets, received, stats = baseline
    sets_after, received_after = server_counts(client)
    after = cache.stats()
    minutes = (reads - warm) / options.reads / 60
    staleness.sort()
    result = {
        "loads": (source.loads - loads) / minutes,
        "full": (source.full_loads - full_loads) / minutes,
        "unchanged": (after.refreshes_unchanged - stats.refreshes_unchanged) / minutes,
        "sets": (sets_after - sets) / minutes,
        "extends": (after.ttl_extended - stats.ttl_extended) / minutes,
        "kb": (received_after - received) / 1024 / minutes,
        "stale_share": sum(1 for value in staleness if value > 0) / len(staleness),
        "mean": statistics.fmean(staleness),
        "p99": staleness[int(0.99 * (len(staleness) - 1))],
        "worst": staleness[-1],
    }
    l2.clear()
    l2.close()
    client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=20, help="simulated minutes per run")
    parser.add_argument("--bound", type=float, default=300, help="worst staleness allowed, s")
    parser.add_argument("--reads", type=float, default=50, help="reads per simulated second")
    parser.add_argument("--change-rate", type=float, default=0.10, help="share of keys per min")
    parser.add_argument("--value-bytes", type=int, default=1000)
    parser.add_argument("--skew", choices=["uniform", "zipf", "both"], default="both")
    parser.add_argument("--seed", type=int, default=19)
    options = parser.parse_args()
    bound = options.bound
    configs = [
        Config(f"fixed {bound:g} s", bound),
        Config(f"fixed {bound:g} s, conditional", bound, conditional=True),
        Config(f"fixed {bound / 2:g} s", bound / 2),
        Config(f"fixed {bound / 4:g} s", bound / 4),
        Config(f"fixed {bound / 8:g} s", bound / 8),
    ]
    adaptive = AdaptiveTTL(min=bound / 10, max=bound)
    name = f"adaptive {bound / 10:g}-{bound:g} s from {bound / 4:g}"
    configs.append(Config(name, bound / 4, adaptive))
    configs.append(Config(f"{name}, conditional", bound / 4, adaptive, conditional=True))
    skews = ["uniform", "zipf"] if options.skew == "both" else [options.skew]
    print(
        f"{options.keys} keys, {options.change_rate:.0%} change per minute, "
        f"{options.reads:g} reads/s (keys uniform), {options.value_bytes} B values, L1 TTL "
        f"{L1_TTL:g} s; {options.minutes:g} simulated minutes per run, the first {bound:g} s "
        "not counted; counts per simulated minute, staleness in seconds"
    )
    with RedisServer.start() as server:
        for skew in skews:
            changes = schedule(
                options.keys, options.minutes, options.change_rate, skew, options.seed
            )
            counted = sum(1 for moment, _ in changes if moment >= bound)
            changed_keys = len({index for _, index in changes})
            print(
                f"\n{skew}: {counted / (options.minutes - bound / 60):.0f} changes per "
                f"minute, {changed_keys} of {options.keys} keys changed at least once"
            )
            print(
                "| config | loads | full loads | unchanged | SETs | extends | KB to Redis "
                "| stale reads | mean staleness | p99 | worst |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for config in configs:
                r = run(config, skew, changes, server.url, options)
                print(
                    f"| {config.name} | {r['loads']:.0f} | {r['full']:.0f} | {r['unchanged']:.0f} "
                    f"| {r['sets']:.0f} | {r['extends']:.0f} | {r['kb']:.0f} "
                    f"| {r['stale_share']:.2%} | {r['mean']:.2f} | {r['p99']:.0f} "
                    f"| {r['worst']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
