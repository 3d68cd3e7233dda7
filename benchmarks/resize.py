"""How long ``InMemoryLayer.resize`` holds a running layer (the compiled one, by default).

    python benchmarks/resize.py [--repeat 5] [--pure]

Each round fills a layer with distinct keys, then times one ``resize``: a shrink of 100,000
entries to 10,000 (90,000 W-TinyLFU evictions), a grow of 10,000 to 100,000 and of 100,000
to 1,000,000 (each past what the frequency sketch was sized for: a larger one is built and
the residents' counts carried into it). Printed: the median, min and max over ``--repeat``
rounds, in milliseconds. Other threads wait for that long (the compiled layer owns itself
for the call, the pure one holds its lock).
"""

from __future__ import annotations

import argparse
import statistics
import time

from multilayercache.layers.memory import _layer_py, layer

CASES = (
    ("shrink 100,000 -> 10,000", 100_000, 10_000),
    ("grow 10,000 -> 100,000", 10_000, 100_000),
    ("grow 100,000 -> 1,000,000", 100_000, 1_000_000),
)


def one_resize(layer_class: type, filled: int, bound: int) -> float:
    """Seconds one ``resize(bound)`` of a layer holding ``filled`` entries takes."""
    cache = layer_class(max_size=filled)
    for key in range(filled):
        cache.set(key, key)
    start = time.perf_counter()
    cache.resize(bound)
    seconds = time.perf_counter() - start
    assert len(cache) == min(filled, bound)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds per case (default 5)")
    parser.add_argument("--pure", action="store_true", help="time the pure-Python twin")
    options = parser.parse_args()
    layer_class = _layer_py.InMemoryLayer if options.pure else layer.InMemoryLayer
    for name, filled, bound in CASES:
        times = [one_resize(layer_class, filled, bound) * 1000 for _ in range(options.repeat)]
        print(
            f"{name}: median {statistics.median(times):.1f} ms "
            f"(min {min(times):.1f}, max {max(times):.1f})"
        )


if __name__ == "__main__":
    main()
