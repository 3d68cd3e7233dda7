"""Command line: ``python -m multilayercache {simulate,bench} ...``.

python -m multilayercache simulate TRACE.npy --size 1000 --size 2000 [--compare] [--plot F.png]
python -m multilayercache bench
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from .. import _core
from .simulation import Progress, belady_hits, load_trace, lru_hits, replay


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m multilayercache", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="replay a trace and print the L1 hit ratio")
    simulate.add_argument("trace", help="a .npy array of uint64 keys, one per request")
    simulate.add_argument(
        "--size",
        type=_positive,
        action="append",
        required=True,
        help="cache size in entries (repeat for several)",
    )
    simulate.add_argument(
        "--compare",
        action="store_true",
        help="also replay LRU and the optimum (Belady MIN with bypass)",
    )
    simulate.add_argument("--plot", metavar="FILE.png", help="draw hit ratio against size")
    simulate.add_argument("--no-progress", action="store_true", help="no progress bar")
    simulate.set_defaults(run=_simulate)

    demo = commands.add_parser("demo", help="L1 + L2 in front of a slow loader, measured")
    demo.add_argument("--threads", type=_positive, default=4)
    demo.add_argument("--requests", type=_positive, default=60_000)
    demo.add_argument("--keys", type=_positive, default=10_000, help="distinct keys")
    demo.add_argument("--l1-entries", type=_positive, default=1_000)
    demo.add_argument("--loader-ms", type=float, default=3.0, help="loader latency")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(run=_demo)

    bench = commands.add_parser("bench", help="time get on a hit against dict.get and peers")
    bench.add_argument("--entries", type=_positive, default=10_000)
    bench.set_defaults(run=_bench)

    args = parser.parse_args(argv)
    return args.run(args)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


# ---------------------------------------------------------------------------- simulate
def _simulate(args: argparse.Namespace) -> int:
    try:
        trace = load_trace(args.trace)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sizes = sorted(set(args.size))
    policies: list[tuple[str, Callable[..., int]]] = [("multilayercache", replay)]
    if args.compare:
        policies += [("LRU", lru_hits), ("OPT", belady_hits)]
    n = len(trace)
    print(
        f"{args.trace}: {n:,} requests, {len(set(trace.tolist())):,} unique keys "
        f"({'compiled' if _core.COMPILED else 'pure-Python'} core)"
    )
    print(f"{'size':>10}" + "".join(f"{name:>17}" for name, _ in policies))
    results: dict[str, list[float]] = {name: [] for name, _ in policies}
    show = not args.no_progress and sys.stderr.isatty()
    for size in sizes:
        row = []
        for name, run in policies:
            with _progress(n, f"{name} @ {size}", show) as tick:
                ratio = 100.0 * run(trace, size, progress=tick) / n if n else 0.0
            results[name].append(ratio)
            row.append(f"{ratio:16.2f}%")
        print(f"{size:>10}" + "".join(row), flush=True)
    if args.plot:
        _plot(args.plot, args.trace, sizes, results)
    return 0


@contextmanager
def _progress(total: int, label: str, show: bool) -> Iterator[Progress | None]:
    if not show:
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety; the numbers do not depend on it
        yield None
        return
    with tqdm(total=total, desc=label, unit="req", unit_scale=True, leave=False) as bar:
        yield bar.update


def _plot(path: str, trace: str, sizes: list[int], results: dict[str, list[float]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install 'multilayercache[plot]'", file=sys.stderr)
        return
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, ratios in results.items():
        axes.plot(sizes, ratios, marker="o", label=name)
    axes.set_xscale("log")
    axes.set_xlabel("cache size (entries)")
    axes.set_ylabel("hit ratio (%)")
    axes.set_title(trace)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"plot written to {path}")


# ---------------------------------------------------------------------------- demo
def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, run_demo
    from .servers import ServerUnavailableError

    settings = DemoSettings(
        threads=args.threads,
        requests=args.requests,
        keys=args.keys,
        l1_entries=args.l1_entries,
        loader_ms=args.loader_ms,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    try:
        print(run_demo(settings))
    except ServerUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------------------- bench
def _bench(args: argparse.Namespace) -> int:
    from .benchmarking import hit_latency_table

    print(hit_latency_table(entries=args.entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
