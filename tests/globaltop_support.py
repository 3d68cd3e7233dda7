"""Global top-N across real processes, for the test and the benchmark: several instance
processes (spawned), each reading its own zipf-distributed keys (its own exponent and key
range; the ranges overlap) through its own cache, publishing with ``fleet_info``; then
``global_top_keys(n)``, asked from this process, against the exact counts of the union of
their traffic."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer
from multilayercache.layers.redis.fleetinfo import FleetInfo


@dataclass(frozen=True)
class Traffic:
    """One instance's reads: key ``offset + p(rank)`` where ``rank`` is zipf(``exponent``)
    over ``keys`` ranks and ``p`` a permutation of its own (its hottest keys lie anywhere in
    its range)."""

    exponent: float
    keys: int
    offset: int
    speed: float = 1.0
    """Its reads per second, as a multiple of the run's ``reads_per_second``."""


FLEET = (
    Traffic(1.0, 2_000, 0, speed=1.0),
    Traffic(0.8, 2_000, 1_000, speed=2.0),
    Traffic(1.2, 1_000, 1_500, speed=0.5),
)
"""Three instances: different exponents, key ranges (overlapping: keys 1,000 to 2,999) and
speeds."""


@dataclass
class Outcome:
    estimated: list[tuple[str, int]]
    """``global_top_keys(n)``."""
    exact: dict[str, int]
    """Reads of every key, all instances together."""
    reads: list[int]
    """Reads per instance."""

    def recall(self, n: int) -> float:
        """The share of the estimated top ``n`` that belongs to the exact top ``n`` (a key
        tied with the exact ``n``-th counts as belonging)."""
        counts = sorted(self.exact.values(), reverse=True)
        threshold = counts[n - 1] if len(counts) >= n else 0
        hits = sum(1 for key, _ in self.estimated[:n] if self.exact.get(key, 0) >= threshold)
        return hits / n


def run_fleet(
    url: str,
    prefix: str,
    seed: int,
    n: int = 10,
    seconds: float = 4.0,
    period: float = 0.5,
    fleet: tuple[Traffic, ...] = FLEET,
    reads_per_second: float = 50_000,
) -> Outcome:
    """Run the instances of ``fleet`` for ``seconds`` each (publishing every ``period``,
    each reading at most ``reads_per_second``),
    then ask ``global_top_keys(n)`` from a cache of this process that publishes nothing."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(len(fleet) + 1)
    done = context.Barrier(len(fleet) + 1)
    asked = context.Event()
    results: Any = context.Queue()
    processes = [
        context.Process(
            target=_instance,
            args=(
                url,
                prefix,
                traffic,
                seed * 100 + index,
                seconds,
                period,
                reads_per_second * traffic.speed,
            ),
            kwargs={"ready": ready, "done": done, "asked": asked, "results": results},
        )
        for index, traffic in enumerate(fleet)
    ]
    for process in processes:
        process.start()
    reader = MultilayerCache([RedisLayer(url, prefix=prefix)])
    try:
        ready.wait(timeout=60)
        done.wait(timeout=60 + seconds)
        estimated = reader.global_top_keys(n)
        asked.set()
        exact: dict[str, int] = {}
        reads = []
        for _ in processes:
            counts = results.get(timeout=30)
            reads.append(sum(counts.values()))
            for key, count in counts.items():
                exact[key] = exact.get(key, 0) + count
    finally:
        asked.set()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        reader.close()
    return Outcome(estimated, exact, reads)


def _instance(
    url: str,
    prefix: str,
    traffic: Traffic,
    seed: int,
    seconds: float,
    period: float,
    reads_per_second: float,
    *,
    ready: Any,
    done: Any,
    asked: Any,
    results: Any,
) -> None:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, traffic.keys + 1) ** traffic.exponent
    ranks = rng.choice(
        traffic.keys, size=int(seconds * reads_per_second) + 1_000, p=weights / weights.sum()
    )
    names = [f"item:{traffic.offset + key}" for key in rng.permutation(traffic.keys)]
    # Warm, as a service is after its first minutes: every key in both layers (writes are
    # not reads: L1 counts none of them), so that the run measures steady traffic rather
    # than a loaded machine's cold misses.
    l1, l2 = InMemoryLayer(max_size=4_096), RedisLayer(url, prefix=prefix)
    l2.set_many({name: name for name in names})
    for name in names:
        l1.set(name, name)
    ready.wait(timeout=60)
    # Made after the barrier: every instance's rates start when its traffic does.
    cache = MultilayerCache([l1, l2], fleet_info=FleetInfo(period_seconds=period))
    get_or_load = cache.get_or_load

    def load(key: str) -> str:
        return key

    # Paced: every instance reads at the same steady rate (a loaded machine would otherwise
    # give one of them most of the CPU, and the others too few reads to matter).
    reads = 0
    start = time.monotonic()
    stop = start + seconds
    while time.monotonic() < stop and reads < len(ranks):
        for rank in ranks[reads : reads + 1_000].tolist():
            get_or_load(names[rank], load)
        reads += 1_000
        ahead = start + reads / reads_per_second - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    assert cache.fleet_info is not None
    cache.fleet_info.publish_now()  # the rates up to the last read
    counts = np.bincount(ranks[:reads], minlength=traffic.keys)
    results.put({names[rank]: int(count) for rank, count in enumerate(counts) if count})
    done.wait(timeout=60)
    asked.wait(timeout=60)  # published until the question was asked
    cache.close()
