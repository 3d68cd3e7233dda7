"""What the metric exporters cost an L1 hit: the same hits on a cache with both exporters
attached (a prometheus-client collector and OpenTelemetry instruments) and on one without,
measured side by side in one run.

    python benchmarks/exporters.py [--rounds 40] [--calls 100000]

Each row is a pair of identical caches, one attached, one bare. Each round times ``--calls``
hits (1,000 cached keys, in a Zipf order) on both, in alternating chunks of 1,000, and
keeps each side's median chunk (a burst of load from elsewhere falls on both alike, and a
chunk another process preempted does not count), then scrapes
through both exporters (untimed, so they stay live and read as a scraper would), then swaps
which of the two is attached: each object is measured as often attached as bare, so that
where its memory happens to lie does not pass for a cost of the exporters. A row prints the
median ns per hit of each side and the median of the per-round ratios attached / bare: the
bound is 1.05x. The exporters read ``stats()`` only when scraped, so a hit does the same
work with or without them. The managers have insights on (``insights=True``, both sides):
the exporters then read ``cache.insights()`` too, at the scrape.

Then the cost of a scrape itself: one manager with insights on and an L1 of ``--entries``
that estimates other sizes, after zipf traffic, scraped through both exporters, against
the same manager without insights: the median of 20 scrapes each (``scrape_cost``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from multilayercache import AsyncMultilayerCache, InMemoryLayer, InsightsOptions, MultilayerCache
from multilayercache.observability.otel import CacheInstruments
from multilayercache.observability.prometheus import CacheCollector
from multilayercache.tools.benchmarking import zipf_indices

KEYS = 1_000
CHUNK = 1_000
BOUND = 1.05


def interleaved_ns(
    bare: Callable[[Any], Any], attached: Callable[[Any], Any], order: list[Any]
) -> tuple[float, float]:
    """ns per call of each side over ``order``: timed in alternating chunks of ``CHUNK``
    calls, the median chunk of each side (a chunk that another process preempted does not
    count, and a burst of load from elsewhere falls on both sides alike)."""
    spent: tuple[list[float], list[float]] = ([], [])
    sides = (bare, attached)
    for index, start in enumerate(range(0, len(order), CHUNK)):
        chunk = order[start : start + CHUNK]
        for side in (0, 1) if index % 2 == 0 else (1, 0):
            function = sides[side]
            began = time.perf_counter()
            for argument in chunk:
                function(argument)
            spent[side].append((time.perf_counter() - began) / len(chunk) * 1e9)
    return statistics.median(spent[0]), statistics.median(spent[1])


def interleaved_await_ns(
    bare: Callable[[Any], Any], attached: Callable[[Any], Any], order: list[Any]
) -> tuple[float, float]:
    """``interleaved_ns`` of two coroutine functions, awaited in one task."""

    async def measure() -> tuple[float, float]:
        spent: tuple[list[float], list[float]] = ([], [])
        sides = (bare, attached)
        for index, start in enumerate(range(0, len(order), CHUNK)):
            chunk = order[start : start + CHUNK]
            for side in (0, 1) if index % 2 == 0 else (1, 0):
                function = sides[side]
                began = time.perf_counter()
                for argument in chunk:
                    await function(argument)
                spent[side].append((time.perf_counter() - began) / len(chunk) * 1e9)
        return statistics.median(spent[0]), statistics.median(spent[1])

    return asyncio.run(measure())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="rounds (medians over them)")
    parser.add_argument("--calls", type=int, default=100_000, help="hits timed per round")
    parser.add_argument("--entries", type=int, default=100_000, help="L1 of the scrape's cost")
    args = parser.parse_args()

    order = [int(i) for i in zipf_indices(args.calls, KEYS)]
    registry = CollectorRegistry()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    collector = CacheCollector()  # what register() and instrument() share per registry
    registry.register(collector)
    instruments = CacheInstruments(provider)
    pairs: dict[str, list[Any]] = {}

    def pair(name: str, make: Callable[[], Any]) -> list[Any]:
        """``[attached, bare]`` (swapped by ``swap``)."""
        pairs[name] = [make(), make()]
        collector.add(pairs[name][0], name)
        instruments.add(pairs[name][0], name)
        return pairs[name]

    def swap() -> None:
        for name, both in pairs.items():
            collector.remove(name)
            instruments.remove(name)
            both.reverse()
            collector.add(both[0], name)
            instruments.add(both[0], name)

    layers = pair("l1", lambda: InMemoryLayer(max_size=10 * KEYS))
    syncs = pair(
        "sync", lambda: MultilayerCache([InMemoryLayer(max_size=10 * KEYS)], insights=True)
    )
    asyncs = pair(
        "asyncio",
        lambda: AsyncMultilayerCache([InMemoryLayer(max_size=10 * KEYS)], insights=True),
    )
    for n in range(KEYS):  # every call below is a hit
        for cache in (*layers, *syncs):
            cache.set(n, n)
        for acache in asyncs:
            asyncio.run(acache.set(n, n))

    # Each row: (bare, attached) ns per hit of one round; the pairs are read at each
    # call, since ``swap`` turns them around.
    rows: dict[str, Callable[[], tuple[float, float]]] = {
        "InMemoryLayer.get hit": lambda: interleaved_ns(layers[1].get, layers[0].get, order),
        "MultilayerCache.get hit": lambda: interleaved_ns(syncs[1].get, syncs[0].get, order),
        "await AsyncMultilayerCache.get hit": lambda: interleaved_await_ns(
            asyncs[1].get, asyncs[0].get, order
        ),
    }
    bare_ns: dict[str, list[float]] = {name: [] for name in rows}
    attached_ns: dict[str, list[float]] = {name: [] for name in rows}
    ratios: dict[str, list[float]] = {name: [] for name in rows}
    scrape_ms: list[float] = []
    for _ in range(args.rounds):
        for name, measure in rows.items():
            bare, attached = measure()
            bare_ns[name].append(bare)
            attached_ns[name].append(attached)
            ratios[name].append(attached / bare)
        start = time.perf_counter()
        generate_latest(registry)
        reader.get_metrics_data()
        scrape_ms.append((time.perf_counter() - start) * 1e3)
        swap()
    provider.shutdown()

    print(
        f"{args.rounds} rounds of {args.calls:,} hits a side; median ns per hit, "
        "median per-round ratio"
    )
    print(f"{'':36}{'bare':>8}{'attached':>10}{'ratio':>8}")
    worst = 0.0
    for name in rows:
        ratio = statistics.median(ratios[name])
        worst = max(worst, ratio)
        print(
            f"{name:36}{statistics.median(bare_ns[name]):8.1f}"
            f"{statistics.median(attached_ns[name]):10.1f}{ratio:7.3f}x"
        )
    print(f"a scrape of 3 caches through both exporters: {statistics.median(scrape_ms):.2f} ms")
    print(f"bound: attached / bare <= {BOUND}x: {'met' if worst <= BOUND else 'NOT met'}")
    for state, milliseconds in scrape_cost(args.entries).items():
        print(
            f"a scrape of one cache ({args.entries:,} entries in L1) through both exporters, "
            f"insights {state}: {milliseconds:.2f} ms (median of 20)"
        )
    return 0 if worst <= BOUND else 1


def scrape_cost(entries: int) -> dict[str, float]:
    """Median ms of a scrape through both exporters of one cache: insights off; on, in the
    first minute (the zipf exponent is fitted so far, at the first scrape after each
    sample: a new sample before each scrape here, the worst case); on, once fitted (a skew
    window of 1 s, past). The L1 estimates other sizes when insights are on."""
    found = {}
    for state in ("off", "on, first minute", "on, skew fitted"):
        on = state != "off"
        l1 = InMemoryLayer(max_size=entries, estimate_sizes=(0.5, 2) if on else None)
        options = InsightsOptions(skew_seconds=1.0 if state.endswith("fitted") else 60.0)
        cache = MultilayerCache([l1], insights=options if on else None)
        for key in zipf_indices(3 * entries, 2 * entries, seed=11).tolist():
            if cache.get(key) is None:
                cache.set(key, key)
        time.sleep(1.5)  # samples (and, with a skew window of 1 s, a fit)
        registry = CollectorRegistry()
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        registry.register(CacheCollector(cache, "one"))
        CacheInstruments(provider).add(cache, "one")
        spent = []
        for _ in range(20):
            time.sleep(0.3)  # a sample in between (one every 0.25 s)
            start = time.perf_counter()
            generate_latest(registry)
            reader.get_metrics_data()
            spent.append((time.perf_counter() - start) * 1e3)
        provider.shutdown()
        cache.close()
        found[state] = statistics.median(spent)
    return found


if __name__ == "__main__":
    raise SystemExit(main())
