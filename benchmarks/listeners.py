"""What a removal listener costs: an L1 hit (``cache.get`` of a key L1 holds, and
``layer.get``) with a listener attached against one without, in the same run, as the median
of per-round ratios (the acceptance bound: <= 1.05x). Also what it costs a ``set`` that
evicts (the removal path, where the listener's log is written, with the delivery thread
calling the listener meanwhile), for information.

    python benchmarks/listeners.py [--rounds 31] [--calls 100000]
    python benchmarks/listeners.py --instructions    # under valgrind: noise-free

Each timed round is noisy on a busy machine (an A/A control of two listener-less layers
shows the noise floor); ``--instructions`` counts the instructions of N hits instead
(callgrind, the difference between N and 0 hits in fresh processes), which the machine's
load does not change.

Each round times both variants, in alternating order, on the same keys; the listener is a
real one (it counts on the delivery thread). The compiled L1 unless ``--pure``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from multilayercache import MultilayerCache

KEYS = 1_000


def timed_hits(get: Callable[[Any], Any], calls: int) -> float:
    """Nanoseconds per ``get`` of keys the layer holds (1,000 keys, in turn)."""
    keys = [f"key:{n}" for n in range(KEYS)] * (calls // KEYS)
    start = time.perf_counter()
    for key in keys:
        get(key)
    return (time.perf_counter() - start) / len(keys) * 1e9


def timed_evicting_sets(layer: Any, calls: int, offset: int) -> float:
    """Nanoseconds per ``set`` of a new key into a full layer (each one evicts)."""
    keys = [f"new:{offset}:{n}" for n in range(calls)]
    start = time.perf_counter()
    for key in keys:
        layer.set(key, 1)
    return (time.perf_counter() - start) / len(keys) * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--pure", action="store_true", help="the pure-Python L1 twin")
    parser.add_argument("--instructions", action="store_true", help="count, under callgrind")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # TARGET VARIANT CALLS
    args = parser.parse_args(argv)
    module = "_layer_py" if args.pure else "layer"
    InMemoryLayer = importlib.import_module(f"multilayercache.layers.memory.{module}").InMemoryLayer
    if args.child:
        return hits_in_a_child(InMemoryLayer, *args.child)
    if args.instructions:
        return count_instructions(args.pure)
    heard = [0]

    def count(*removal: Any) -> None:
        heard[0] += 1

    def event_count(event: Any) -> None:
        heard[0] += 1

    plain, listened = InMemoryLayer(max_size=10_000), InMemoryLayer(max_size=10_000)
    listened.add_removal_listener(count)
    caches = {
        "without": MultilayerCache([InMemoryLayer(max_size=10_000)]),
        "with": MultilayerCache([InMemoryLayer(max_size=10_000)], on_event=event_count),
    }
    layers = {"without": plain, "with": listened}
    # The noise floor: two layers without a listener, timed as the pairs above.
    control = {"without": InMemoryLayer(max_size=10_000), "with": InMemoryLayer(max_size=10_000)}
    for target in (*caches.values(), *layers.values(), *control.values()):
        for n in range(KEYS):
            target.set(f"key:{n}", n)
        for _ in range(3):  # hot: in the protected region, as a real hot key
            for n in range(KEYS):
                target.get(f"key:{n}")
    small = {"without": InMemoryLayer(max_size=1_000), "with": InMemoryLayer(max_size=1_000)}
    small["with"].add_removal_listener(count)
    for layer in small.values():
        for n in range(1_000):
            layer.set(f"fill:{n}", n)

    ratios: dict[str, list[float]] = {
        "cache.get": [],
        "layer.get": [],
        "control (A/A)": [],
        "evicting set": [],
    }
    absolute: dict[str, list[tuple[float, float]]] = {name: [] for name in ratios}

    def record(name: str, timings: dict[str, float]) -> None:
        ratios[name].append(timings["with"] / timings["without"])
        absolute[name].append((timings["without"], timings["with"]))

    for round_number in range(args.rounds):  # hits: no removal, so no delivery runs
        order = ("without", "with") if round_number % 2 == 0 else ("with", "without")
        record(
            "cache.get", {variant: timed_hits(caches[variant].get, args.calls) for variant in order}
        )
        record(
            "layer.get", {variant: timed_hits(layers[variant].get, args.calls) for variant in order}
        )
        record(
            "control (A/A)",
            {variant: timed_hits(control[variant].get, args.calls) for variant in order},
        )
    for round_number in range(args.rounds):  # evicting sets: the delivery thread runs too
        order = ("without", "with") if round_number % 2 == 0 else ("with", "without")
        record(
            "evicting set",
            {
                variant: timed_evicting_sets(small[variant], args.calls // 10, round_number)
                for variant in order
            },
        )
    time.sleep(0.5)  # let the delivery threads catch up before counting
    print(f"L1: {InMemoryLayer.__module__}; {args.rounds} rounds of {args.calls:,} calls")
    for name, values in ratios.items():
        without = statistics.median(pair[0] for pair in absolute[name])
        with_listener = statistics.median(pair[1] for pair in absolute[name])
        print(
            f"{name:>14}: without {without:6.1f} ns, with a listener {with_listener:6.1f} ns; "
            f"median ratio {statistics.median(values):.3f}x "
            f"(rounds {min(values):.2f}-{max(values):.2f})"
        )
    print(f"removals heard: {heard[0]:,}; dropped: {small['with'].removal_stats().dropped:,}")
    return 0


def hits_in_a_child(InMemoryLayer: Any, target: str, variant: str, calls: str) -> int:
    """(Under callgrind) set up one target and run ``calls`` hits on it."""
    layer = InMemoryLayer(max_size=10_000)
    if target == "cache":
        cache = MultilayerCache([layer], on_event=print if variant == "with" else None)
        get = cache.get
    else:
        if variant == "with":
            layer.add_removal_listener(print)
        get = layer.get
    for n in range(KEYS):
        layer.set(f"key:{n}", n)
    for _ in range(3):
        for n in range(KEYS):
            get(f"key:{n}")
    keys = [f"key:{n}" for n in range(KEYS)] * (int(calls) // KEYS)
    for key in keys:
        get(key)
    return 0


def count_instructions(pure: bool) -> int:
    calls = 200_000
    per_hit: dict[tuple[str, str], float] = {}
    for target in ("cache", "layer"):
        for variant in ("without", "with"):
            counts = [_callgrind(target, variant, n, pure) for n in (0, calls)]
            per_hit[target, variant] = (counts[1] - counts[0]) / calls
    for target in ("cache", "layer"):
        without, with_listener = per_hit[target, "without"], per_hit[target, "with"]
        print(
            f"{target}.get: {without:.1f} instructions per L1 hit without a listener, "
            f"{with_listener:.1f} with: {with_listener / without:.3f}x"
        )
    return 0


def _callgrind(target: str, variant: str, calls: int, pure: bool) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--child",
            target,
            variant,
            str(calls),
        ] + (["--pure"] if pure else [])
        # One hash seed for every run: the same keys then land in the same buckets.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        found = re.search(r"Collected : (\d+)", result.stderr)
        assert found, result.stderr[-2000:]
        return int(found.group(1))


if __name__ == "__main__":
    raise SystemExit(main())
