"""How close ``insights()``'s zipf exponent comes on synthetic zipf traffic.

    python benchmarks/zipf_fit.py [--exponents 0.8 1.0 1.2] [--keys 100000]
                                  [--sizes 10000 1000 200] [--rate 4000] [--seconds 70]

For each exponent and L1 size: ``--rate`` reads a second of keys drawn from a zipf law over
``--keys`` keys (ranks shuffled), read through an L1 (a miss stores the key) and sampled
every 0.25 s by ``Insights`` on a simulated clock (the same sampling as the sampler
thread's, so the run takes seconds); the fit covers the last ``skew_seconds`` (60 s).
Printed: the estimate, its error and the keys it used.
"""

from __future__ import annotations

import argparse

import numpy as np

from multilayercache import InMemoryLayer
from multilayercache.analytics.insights import Insights

TICK = 0.25


def estimate(exponent: float, size: int, args: argparse.Namespace) -> tuple[float | None, int]:
    now = [0.0]
    layer = InMemoryLayer(max_size=size, name="l1", clock=lambda: now[0])
    insights = Insights([layer], clock=lambda: now[0])
    rng = np.random.default_rng(7)
    weights = np.arange(1, args.keys + 1, dtype=np.float64) ** -exponent
    ranked = rng.permutation(args.keys)
    per_tick = int(args.rate * TICK)
    keys = ranked[
        rng.choice(args.keys, per_tick * int(args.seconds / TICK), p=weights / weights.sum())
    ]
    get, put = layer.get, layer.set
    insights.sample()
    for start in range(0, len(keys), per_tick):
        for key in keys[start : start + per_tick].tolist():
            if get(key) is None:
                put(key, key)
        now[0] += TICK
        insights.sample()
    report = insights.report().layer("l1")
    return report.zipf_exponent, report.zipf_keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exponents", type=float, nargs="+", default=[0.8, 1.0, 1.2])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000, 200])
    parser.add_argument("--rate", type=int, default=4_000)
    parser.add_argument("--seconds", type=float, default=70.0)
    args = parser.parse_args()
    print(f"zipf over {args.keys} keys, {args.rate} reads/s for {args.seconds:g} s")
    print("exponent  L1 size  estimate  error   keys fitted")
    for exponent in args.exponents:
        for size in args.sizes:
            found, keys = estimate(exponent, size, args)
            shown = "-" if found is None else f"{found:.3f}"
            error = "-" if found is None else f"{found - exponent:+.3f}"
            print(f"{exponent:8.2f}  {size:7d}  {shown:>8}  {error:>6}  {keys:5d}")


if __name__ == "__main__":
    main()
