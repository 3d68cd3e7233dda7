"""multilayercache against peer caches, measured side by side in one run.

    python benchmarks/compare_peers.py [--traces ../shared/traces] [--quick]
        [--only hits|zipf|memory|ratio ...] [--peers NAME ...]

Sections (each prints a table):

1. ``get`` on a hit: ns per call and ratio to ``dict.get`` (int and str keys; zipf and
   uniform choice of the hit keys among 10,000 cached ones).
2. Mixed zipf replay: capacity 10,000; 1,000,000 operations over 1,000,000 keys, s = 0.9;
   ``get``, and ``set`` on a miss. ns per operation, median of 7 rounds; ratios taken per
   round (the machine's swings cancel within a pair), their median and range.
3. Memory: RSS growth per entry while 500,000 entries go in (``get`` then ``set``, as a
   cache is used), keys made beforehand and one shared value, each library in a fresh
   process, so only the structure is counted.
4. Hit ratio on every row of the peer table in ``../shared/traces/README.md``: ours, and
   theine, moka-py and cachebox measured here with the same replay (``--quick`` skips the
   peers and prints the README's numbers instead).

Peers are imported when installed (``pip install -e '.[bench]'``); a missing one is skipped.
``--peers`` keeps sections 2 and 3 to the caches named (e.g. ``--peers multilayercache
"cachebox LRU"``: the issue's two rows, without the slow peers' minutes).
The machine has 2 shared cores: compare ratios within one run, not absolute numbers across
runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from reference_hit_ratios import REFERENCE_HIT_RATIOS

from multilayercache import _core
from multilayercache.tools.benchmarking import CacheUnderTest, hit_latency_table, installed
from multilayercache.tools.simulation import load_trace

ROWS = list(REFERENCE_HIT_RATIOS)
PEERS = ("multilayercache", "cachebox LRU", "cachetools LRU", "lru-dict", "theine", "moka-py")


# ----------------------------------------------------------------------------- 2. zipf mix
def zipf_operations(count: int, universe: int, exponent: float, seed: int = 3) -> list[int]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, universe + 1) ** exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(count))
    return rng.permutation(universe)[ranks].tolist()


def replay_seconds(cache: CacheUnderTest, operations: list[int]) -> tuple[float, int]:
    get, put = cache.lookup, cache.store
    hits = 0
    start = time.perf_counter()
    for key in operations:
        if get(key) is None:
            put(key, key)
        else:
            hits += 1
    return time.perf_counter() - start, hits


def zipf_mix_table(quick: bool, peers: tuple[str, ...] = PEERS) -> str:
    operations = zipf_operations(200_000 if quick else 1_000_000, 1_000_000, 0.9)
    factories = installed(peers)
    rounds = 3 if quick else 7
    times: dict[str, list[float]] = {name: [] for name in factories}
    ratios: dict[str, float] = {}
    entries = list(factories.items())
    for round_index in range(rounds):
        # Interleaved, so that drift hits everyone alike, and rotated, so that no cache
        # always runs first (right after another cache's garbage) or last.
        shift = round_index % len(entries)
        for name, make in entries[shift:] + entries[:shift]:
            seconds, hits = replay_seconds(make(10_000), operations)
            times[name].append(seconds)
            ratios[name] = hits / len(operations)
    ns = {name: statistics.median(values) / len(operations) * 1e9 for name, values in times.items()}

    def versus(name: str, base: str) -> list[float]:
        # Per round, so that the machine's swings (10-20% here) cancel within each pair.
        if base not in times:
            return [float("nan")]
        return sorted(mine / theirs for mine, theirs in zip(times[name], times[base], strict=True))

    lines = [
        f"mixed zipf replay: capacity 10,000; {len(operations):,} operations over 1,000,000 "
        f"keys, s = 0.9 (get; set on a miss); median of {rounds} rounds, ratios taken per "
        "round (median, and the range for multilayercache)"
    ]
    lines.append(
        f"{'cache':<18}{'ns/op':>9}{'vs cachebox':>13}{'vs cachetools':>15}{'hit ratio':>11}"
    )
    for name, value in ns.items():
        vs_box = statistics.median(versus(name, "cachebox LRU"))
        vs_tools = statistics.median(versus(name, "cachetools LRU"))
        lines.append(
            f"{name:<18}{value:9.1f}{vs_box:12.2f}x{vs_tools:14.2f}x{100 * ratios[name]:10.2f}%"
        )
    spread = versus("multilayercache", "cachebox LRU")
    lines.append(f"multilayercache vs cachebox per round: {spread[0]:.2f}x .. {spread[-1]:.2f}x")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- 3. memory
MEMORY_PROBE = r"""
import gc, json
from multilayercache.tools.benchmarking import CACHES
ENTRIES = 500_000
keys = {keys}
value = object()
gc.collect()

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

before = rss()
cache = CACHES[{name!r}](ENTRIES)
get, put = cache.lookup, cache.store
for key in keys:
    get(key)
    put(key, value)
gc.collect()
print(json.dumps((rss() - before) / ENTRIES))
"""


MEMORY_KEYS = {"int": "list(range(ENTRIES))", "str": "[f'key:{i}' for i in range(ENTRIES)]"}


def bytes_per_entry(name: str, keys: str) -> float | None:
    """RSS growth per entry of ``CACHES[name]`` holding 500,000 ``keys`` (a kind of
    ``MEMORY_KEYS``), measured in a fresh process; ``None`` if that process failed."""
    code = MEMORY_PROBE.format(keys=MEMORY_KEYS[keys], name=name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def memory_table(peers: tuple[str, ...] = PEERS) -> str:
    lines = [
        "memory: RSS growth per entry for 500,000 entries (get then set; keys made "
        "beforehand; one shared value)"
    ]
    lines.append(f"{'cache':<18}{'int keys':>12}{'str keys':>12}")
    for name in installed(peers):
        cells = []
        for keys in MEMORY_KEYS:
            size = bytes_per_entry(name, keys)
            cells.append("error" if size is None else f"{size:9.1f} B")
        lines.append(f"{name:<18}{cells[0]:>12}{cells[1]:>12}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- 4. hit ratio
def hit_ratio_table(traces: Path, quick: bool) -> str:
    names = ["multilayercache"]
    if not quick:
        names += ["theine", "moka-py", "cachebox LRU", "cachebox LFU"]
    columns = installed(names)
    lines = [
        f"hit ratio (%) on the shared traces ({'compiled' if _core.COMPILED else 'pure'} core)"
    ]
    header = f"{'trace':<12}{'size':>8}" + "".join(f"{name:>17}" for name in columns)
    header += f"{'README theine':>15}{'README moka':>13}{'best of all':>13}{'ok':>5}"
    lines.append(header)
    total = best_total = 0.0
    loaded: dict[str, list[int]] = {}
    for name, size in ROWS:
        if name not in loaded:
            loaded[name] = load_trace(traces / f"{name}.npy").tolist()
        keys = loaded[name]
        row = []
        for column, make in columns.items():
            cache = make(size)
            get, put = cache.lookup, cache.store
            hits = 0
            for key in keys:
                if get(key) is None:
                    put(key, True)
                else:
                    hits += 1
            ratio = 100 * hits / len(keys)
            row.append(ratio)
            if column == "multilayercache":
                ours_ratio = ratio
        theine, moka_ratio, best = REFERENCE_HIT_RATIOS[(name, size)]
        ok = round(ours_ratio, 2) >= max(theine, moka_ratio)
        total += ours_ratio
        best_total += best
        lines.append(
            f"{name:<12}{size:>8}"
            + "".join(f"{r:16.2f} " for r in row)
            + f"{theine:15.2f}{moka_ratio:13.2f}{best:13.2f}{'yes' if ok else 'NO':>5}"
        )
    lines.append(
        f"mean of ours {total / len(ROWS):.3f}; mean of 'best of every policy' "
        f"{best_total / len(ROWS):.3f}; difference {(total - best_total) / len(ROWS):+.3f}"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--traces", type=Path, default=Path(__file__).parents[2] / "shared" / "traces"
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs; no peer hit ratios")
    parser.add_argument("--only", choices=["hits", "zipf", "memory", "ratio"], action="append")
    parser.add_argument(
        "--peers", nargs="+", choices=PEERS, default=PEERS, help="caches of sections 2 and 3"
    )
    args = parser.parse_args()
    peers = tuple(args.peers)
    sections = args.only or ["hits", "zipf", "memory", "ratio"]
    print(
        f"python {sys.version.split()[0]}, multilayercache core: "
        f"{'compiled' if _core.COMPILED else 'pure Python'}\n"
    )
    if "hits" in sections:
        print(hit_latency_table(), "\n", flush=True)
    if "zipf" in sections:
        print(zipf_mix_table(args.quick, peers), "\n", flush=True)
    if "memory" in sections:
        print(memory_table(peers), "\n", flush=True)
    if "ratio" in sections:
        print(hit_ratio_table(args.traces, args.quick), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
