"""What awaiting an asyncio ``@cached`` hit costs against a trivial coroutine, as ratios of
one run (issue 24: bound <= 2.0x), for three call shapes, and the sync hits beside them.

    python benchmarks/async_cached.py [--rounds 9] [--calls 50000]

Each round measures every row once, interleaved, and takes the ratio of each cached row to
its baseline in that round; the median ratio of the rounds is printed with their spread
(lowest-highest). Every call is an L1 hit (all keys cached first), awaited in one task as a
handler awaits them:

* function: ``await f(k)`` of ``@acache.cached() async def f(x: int) -> int`` against
  ``await g(k)`` of ``async def g(k): return d.get(k)``;
* method: ``await obj.m(k)`` of a cached ``async def`` method against the same plain method;
* kwargs: ``await f2(k, b=1)`` of a cached 2-argument function against ``await g2(k, b=1)``;
* sync: ``@cache.cached`` hit and ``MultilayerCache.get`` hit, in ns per call (these must
  not get slower: compare two runs of this script).

``async_cached_ratios()`` returns the figures, for a caller that prints its own table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from multilayercache import AsyncMultilayerCache, InMemoryLayer, MultilayerCache

KEYS = 1_000

Measure = Callable[[], float]


def _awaiting(call: Callable[[int], Awaitable[Any]], keys: list[int]) -> Measure:
    """ns per ``await call(k)``, over ``keys``, in one task of a fresh loop."""

    async def loop() -> float:
        start = time.perf_counter()
        for k in keys:
            await call(k)
        return (time.perf_counter() - start) / len(keys) * 1e9

    return lambda: asyncio.run(loop())


def _calling(call: Callable[[int], Any], keys: list[int]) -> Measure:
    def measure() -> float:
        start = time.perf_counter()
        for k in keys:
            call(k)
        return (time.perf_counter() - start) / len(keys) * 1e9

    return measure


def _rows(calls: int) -> dict[str, Measure]:
    acache = AsyncMultilayerCache([InMemoryLayer(max_size=10 * KEYS)])
    cache = MultilayerCache([InMemoryLayer(max_size=10 * KEYS)])
    d = {k: k for k in range(KEYS)}

    @acache.cached()
    async def f(x: int) -> int:
        return x

    @acache.cached()
    async def f2(x: int, b: int = 0) -> int:
        return x + b

    async def g(k: int) -> int | None:
        return d.get(k)

    async def g2(k: int, b: int = 0) -> int | None:
        return d.get(k)

    class Cached:
        @acache.cached()
        async def m(self, x: int) -> int:
            return x

    class Plain:
        async def m(self, k: int) -> int | None:
            return d.get(k)

    @cache.cached()
    def s(x: int) -> int:
        return x

    cached_obj, plain_obj = Cached(), Plain()

    async def warm() -> None:
        for k in range(KEYS):
            await f(k), await f2(k, b=1), await cached_obj.m(k)

    asyncio.run(warm())
    for k in range(KEYS):
        s(k), cache.set(k, k)
    keys = [k % KEYS for k in range(calls)]
    # obj.m(k) and f2(k, b=1) as a caller writes them: the lambda is in both rows alike
    return {
        "g(k)": _awaiting(g, keys),
        "f(k)": _awaiting(f, keys),
        "plain.m(k)": _awaiting(lambda k: plain_obj.m(k), keys),
        "cached.m(k)": _awaiting(lambda k: cached_obj.m(k), keys),
        "g2(k, b=1)": _awaiting(lambda k: g2(k, b=1), keys),
        "f2(k, b=1)": _awaiting(lambda k: f2(k, b=1), keys),
        "sync @cached": _calling(s, keys),
        "sync get": _calling(cache.get, keys),
    }


RATIOS = {
    "function": ("f(k)", "g(k)"),
    "method": ("cached.m(k)", "plain.m(k)"),
    "kwargs": ("f2(k, b=1)", "g2(k, b=1)"),
}


def async_cached_ratios(rounds: int = 9, calls: int = 50_000) -> dict[str, Any]:
    """``{"ratios": {shape: (median, lowest, highest)}, "ns": {row: median ns}}`` over
    ``rounds`` interleaved rounds."""
    rows = _rows(calls)
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, measure in rows.items():
            samples[name].append(measure())
    ratios = {}
    for shape, (cached, base) in RATIOS.items():
        each = [c / b for c, b in zip(samples[cached], samples[base], strict=True)]
        ratios[shape] = (statistics.median(each), min(each), max(each))
    return {
        "ratios": ratios,
        "ns": {name: statistics.median(values) for name, values in samples.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median)")
    parser.add_argument("--calls", type=int, default=50_000, help="calls per row and round")
    args = parser.parse_args()
    figures = async_cached_ratios(args.rounds, args.calls)
    print(f"L1 hits, {KEYS:,} keys; median of {args.rounds} rounds of {args.calls:,} calls")
    for name, ns in figures["ns"].items():
        print(f"  {name:<14} {ns:7.1f} ns")
    for shape, (median, low, high) in figures["ratios"].items():
        verdict = "met" if median <= 2.0 else "NOT met"
        cached, base = RATIOS[shape]
        print(
            f"  {shape:<8} {cached} / {base}: {median:.2f}x ({low:.2f}-{high:.2f})"
            f"  bound <= 2.0x: {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
