"""What ``estimate_sizes=`` costs an L1 operation: get hit, get miss and set, on a layer
with size estimates on against the same layer without, measured in the same run.

    python benchmarks/mrc_cost.py [--size 100000] [--flushes 2] [--repeat 21] [--rate R]

Both layers (``max_size=--size``, int keys) are filled first; each round then times a run
of operations of each kind on one and then the other (which goes first alternates): ``get``
of held keys (hits), ``get`` of keys never written (misses), ``set`` of new keys (each an
insert with an eviction). The sampled accesses' replays into the shadows are part of the
timed operations (they run on the access that fills the sample buffer:
``COMPILED_SAMPLE_BATCH`` events, ``SAMPLE_BATCH`` in the pure layer), so a run is
``--flushes`` buffers long (``flushes * batch / rate`` operations, or ``--ops``): a shorter
one would hold a replay in some rounds and none in others, and their median would be
either cost but not the average. Printed: the medians over ``--repeat`` rounds in ns per
operation, the median of the per-round ratios on / off (issue 22: at most 1.10) and their
spread (the lowest and highest round). Compare ratios between runs, not nanoseconds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from multilayercache import InMemoryLayer
from multilayercache.layers.memory.estimates import COMPILED_SAMPLE_BATCH, SAMPLE_BATCH

FACTORS = (0.5, 2, 4)


def timed(operation: Callable[[int], Any], keys: list[int]) -> float:
    """ns per call of ``operation`` on each key, in this thread's CPU time (the machine is
    shared: wall time would count the moments another process had the CPU)."""
    start = time.thread_time_ns()
    for key in keys:
        operation(key)
    return (time.thread_time_ns() - start) / len(keys)


def full_layer(size: int, estimating: bool, rate: float | None) -> Any:
    if estimating:
        layer = InMemoryLayer(max_size=size, estimate_sizes=FACTORS, estimate_sample_rate=rate)
    else:
        layer = InMemoryLayer(max_size=size)
    for key in range(size):
        layer.set(key, key)
    return layer


def one_round(
    layers: list[Any], size: int, ops: int, base: int, flip: bool
) -> dict[str, list[float]]:
    """ns per op of each kind, [off, on]; ``base`` keeps new keys new, ``flip`` times the
    layer with estimates first (alternate rounds: neither always runs on a warmer CPU)."""
    order = [1, 0] if flip else [0, 1]
    held = [(base + key) % size for key in range(ops)]
    absent = list(range(size + base, size + base + ops))
    new = list(range(size + base + ops, size + base + 2 * ops))
    kinds = {
        "get hit": lambda layer: timed(layer.get, held),
        "get miss": lambda layer: timed(layer.get, absent),
        "set": lambda layer: timed(lambda key, put=layer.set: put(key, key), new),
    }
    measured = {}
    for kind, run in kinds.items():
        times = [0.0, 0.0]
        for index in order:
            times[index] = run(layers[index])
        measured[kind] = times
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--flushes", type=int, default=2, help="sample buffers per run")
    parser.add_argument("--ops", type=int, default=None, help="operations per run")
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--rate", type=float, default=None, help="sampling rate (default auto)")
    args = parser.parse_args()
    probe = InMemoryLayer(
        max_size=args.size, estimate_sizes=FACTORS, estimate_sample_rate=args.rate
    )
    estimator = probe.size_estimator
    compiled = type(probe).__module__ == "multilayercache.layers.memory.layer"
    batch = COMPILED_SAMPLE_BATCH if compiled else SAMPLE_BATCH
    ops = args.ops or math.ceil(args.flushes * batch / estimator.rate)
    print(
        f"{type(probe).__module__}.InMemoryLayer(max_size={args.size}), estimate_sizes="
        f"{FACTORS}: rate {estimator.rate:.5f}, shadows {estimator.shadow_sizes}, "
        f"{ops} operations per run"
    )
    layers = [full_layer(args.size, False, args.rate), full_layer(args.size, True, args.rate)]
    rounds = [
        one_round(layers, args.size, ops, index * 2 * ops, index % 2 == 1)
        for index in range(args.repeat)
    ]
    print(
        f"{'operation':<10} {'off ns':>8} {'on ns':>8} {'on/off':>7} {'spread':>13}"
        f"  (medians of {args.repeat})"
    )
    for kind in rounds[0]:
        off = statistics.median(measured[kind][0] for measured in rounds)
        on = statistics.median(measured[kind][1] for measured in rounds)
        ratios = [measured[kind][1] / measured[kind][0] for measured in rounds]
        spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
        print(f"{kind:<10} {off:>8.1f} {on:>8.1f} {statistics.median(ratios):>7.3f} {spread:>13}")


if __name__ == "__main__":
    main()
