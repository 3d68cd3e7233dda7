"""Command line of multilayercache: replay traces, run the demo, time a hit against peers.

Every mistake a user can make (a bad flag, a file that is not a trace, an unreachable
server, a plot that could not be written) ends in one line on stderr and exit status 2;
Ctrl-C ends in one line and status 130. A traceback means a bug in multilayercache.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, _core
from ..core.errors import CacheError
from ..layers.memory.arguments import MAX_CAPACITY
from .simulation import Progress, belady_hits, load_trace, lru_hits, replay

EXIT_ERROR = 2  # what argparse uses for bad flags; ours match it
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

EXAMPLES = """\
examples:
  {prog} simulate trace.npy --size 1000 --size 10000 --compare
  {prog} demo --threads 8 --loader-ms 5
  {prog} bench --entries 100000
  {prog} reencrypt redis://127.0.0.1:6379/0 --prefix app:
  {prog} top --redis redis://127.0.0.1:6379/0 --prefix app:
  {prog} inspect --redis redis://127.0.0.1:6379/0 --prefix app: --out fleet.json
"""


class CliError(Exception):
    """A mistake of the user's: printed as ``PROG: error: MESSAGE``, exit status 2."""


class _HelpFormatter(argparse.HelpFormatter):
    """Ends every flag's help with its default (unless the help text already states it in
    words, or the flag is required)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or action.required
            or action.default is argparse.SUPPRESS
            or "(default" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


class _TopHelpFormatter(_HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Also keeps the line breaks of the examples below the top-level help."""


def program_name(argv0: str | None = None) -> str:
    """The name the user typed: ``multilayercache`` for the console script, ``python -m
    multilayercache`` for ``-m`` (then ``sys.argv[0]`` is the path of ``__main__.py``)."""
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    if not name or name in ("__main__.py", "cli.py", "-m", "-c"):
        return "python -m multilayercache"
    return name.removesuffix(".exe")  # the Windows console-script launcher


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of every subcommand (``prog`` is shown in usage and error lines)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n")[0],
        epilog=EXAMPLES.format(prog=prog),
        formatter_class=_TopHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"multilayercache {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, formatter_class=_HelpFormatter
        )

    simulate = command(
        "simulate",
        "replay a trace and print the L1 hit ratio",
        "Replay a trace through a fresh InMemoryLayer per size (a get per request, a set on "
        "a miss) and print the hit ratio: hits / requests.",
    )
    simulate.add_argument(
        "trace",
        help="a .npy array of integer keys (one per request), or a .npz archive whose "
        "array 'keys' holds them",
    )
    simulate.add_argument(
        "--size",
        type=_count(maximum=MAX_CAPACITY),
        action="append",
        required=True,
        metavar="N",
        help="cache size in entries; repeat for several sizes (required)",
    )
    simulate.add_argument(
        "--compare",
        action="store_true",
        help="also replay LRU and the optimum, Belady's MIN with bypass "
        "(default: multilayercache only)",
    )
    simulate.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw hit ratio against size into this image; needs matplotlib "
        "(default: no plot)",
    )
    simulate.add_argument(
        "--no-progress",
        action="store_true",
        help="never draw a progress bar (default: a bar on stderr when it is a terminal "
        "and tqdm is installed)",
    )
    simulate.set_defaults(run=_simulate)

    demo = command(
        "demo",
        "L1 + L2 in front of a slow loader, measured",
        "Read zipf-distributed keys from several threads through an in-process L1 and a "
        "Redis L2 in front of a slow loader, and print what each layer did. L2 is the "
        "server at REDIS_URL if that is set, else an embedded server started for the run.",
    )
    demo.add_argument(
        "--threads", type=_count(maximum=256), default=4, metavar="N", help="reader threads"
    )
    demo.add_argument(
        "--requests",
        type=_count(),
        default=60_000,
        metavar="N",
        help="reads in all, split evenly between the threads (rounded down to a multiple "
        "of --threads; at least one per thread)",
    )
    demo.add_argument(
        "--keys", type=_count(), default=10_000, metavar="N", help="distinct keys (products)"
    )
    demo.add_argument(
        "--l1-entries",
        type=_count(maximum=MAX_CAPACITY),
        default=1_000,
        metavar="N",
        help="L1 capacity in entries",
    )
    demo.add_argument(
        "--loader-ms",
        type=_milliseconds(maximum=10_000.0),
        default=3.0,
        metavar="MS",
        help="how long one call of the loader takes, in milliseconds (0 to 10000)",
    )
    demo.add_argument(
        "--no-progress",
        action="store_true",
        help="never draw a progress bar (default: a bar on stderr when it is a terminal "
        "and tqdm is installed)",
    )
    demo.set_defaults(run=_demo)

    bench = command(
        "bench",
        "time get on a hit against dict.get and peers",
        "Time get on a hit, in nanoseconds per call, for dict.get, multilayercache and every "
        "installed peer library (pip install 'multilayercache[bench]' for all of them).",
    )
    bench.add_argument(
        "--entries", type=_count(), default=10_000, metavar="N", help="entries in each cache"
    )
    bench.add_argument(
        "--repeat",
        type=_count(),
        default=15,
        metavar="N",
        help="timing runs per measurement; the median is reported",
    )
    bench.add_argument(
        "--no-progress",
        action="store_true",
        help="never draw a progress bar (default: a bar on stderr when it is a terminal "
        "and tqdm is installed)",
    )
    bench.set_defaults(run=_bench)

    reencrypt = command(
        "reencrypt",
        "rewrite a layer's values under its active encryption key",
        "Rewrite every value under PREFIX that is sealed under an older key with the active "
        "one (the first of the ring in the environment variable), each only if unchanged "
        "since it was read, keeping its expiry; after it, the old key can be dropped.",
    )
    reencrypt.add_argument("url", help="the Redis server, e.g. redis://127.0.0.1:6379/0")
    reencrypt.add_argument("--prefix", required=True, help="the layer's key prefix")
    reencrypt.add_argument(
        "--keys-from",
        default="MULTILAYERCACHE_KEYS",
        metavar="VARIABLE",
        help="the environment variable holding the ring: id=base64key,... (active first)",
    )
    reencrypt.set_defaults(run=_reencrypt)

    top = command(
        "top",
        "a live view of a fleet: hottest keys, hit ratios, breakers, queues",
        "Show what the instances of a fleet publish (caches made with fleet_info=True): the "
        "hottest keys across the fleet, and each instance's hit ratio per layer, breaker "
        "states and write-behind queue depths, refreshing until Ctrl-C. Needs rich: "
        "pip install 'multilayercache[top]'.",
    )
    top.add_argument("--redis", required=True, metavar="URL", help="the shared layer's server")
    top.add_argument("--prefix", default="", help="the shared layer's key prefix")
    top.add_argument(
        "--keys", type=_count(maximum=1_000), default=20, metavar="N", help="hottest keys shown"
    )
    top.add_argument(
        "--interval",
        type=_seconds(minimum=0.1),
        default=2.0,
        metavar="SECONDS",
        help="seconds between refreshes",
    )
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.set_defaults(run=_top)

    inspect = command(
        "inspect",
        "dump what a fleet published to a JSON file",
        "Write what every live instance of a fleet published (hot keys with their rates, "
        "per-layer stats, breakers, queues) and the fleet's hottest keys to a JSON file. "
        "For a cache in your own process, multilayercache.tools.inspection.dump(cache, "
        "path) writes each L1's snapshot (sketch, hot keys' hits and misses) instead.",
    )
    inspect.add_argument("--redis", required=True, metavar="URL", help="the shared layer's server")
    inspect.add_argument("--prefix", default="", help="the shared layer's key prefix")
    inspect.add_argument(
        "--out", required=True, metavar="FILE", help="the JSON file to write ('-': stdout)"
    )
    inspect.add_argument(
        "--keys", type=_count(maximum=10_000), default=100, metavar="N", help="hottest keys listed"
    )
    inspect.set_defaults(run=_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    prog = program_name()
    args = build_parser(prog).parse_args(argv)  # bad flags: usage + one line, exit 2
    try:
        status: int = args.run(args)  # the subcommand's function (set_defaults(run=...))
        return status
    except CliError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``... | head``): stop quietly. Point stdout at devnull so
        # that the interpreter's final flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _count(maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number > 0 (and <= ``maximum``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    return parse


def _milliseconds(maximum: float) -> Callable[[str], float]:
    """An argparse type: a duration in milliseconds, 0 to ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not 0 <= value <= maximum:  # also rejects nan
            raise argparse.ArgumentTypeError(f"must be between 0 and {maximum:g}, got {text}")
        return value

    return parse


def _seconds(minimum: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds, at least ``minimum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not minimum <= value < 86_400:  # also rejects nan
            raise argparse.ArgumentTypeError(f"must be between {minimum:g} and 86400, got {text}")
        return value

    return parse


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


@contextmanager
def _progress(total: int, label: str, show: bool, unit: str = "req") -> Iterator[Progress | None]:
    if not show:
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety; the numbers do not depend on it
        yield None
        return
    with tqdm(total=total, desc=label, unit=unit, unit_scale=unit == "req", leave=False) as bar:
        yield bar.update


# ---------------------------------------------------------------------------- simulate
def _simulate(args: argparse.Namespace) -> int:
    # Everything that can fail is checked before the replay, which can take minutes.
    plot = _plot_target(args.plot) if args.plot else None
    try:
        trace = load_trace(args.trace)
    except OSError as error:
        raise CliError(f"cannot read {args.trace}: {error.strerror or error}") from None
    except ValueError as error:
        raise CliError(str(error)) from None
    n = len(trace)
    if n == 0:
        raise CliError(f"{args.trace}: the trace is empty (no requests)")
    sizes = sorted(set(args.size))
    policies: list[tuple[str, Callable[..., int]]] = [("multilayercache", replay)]
    if args.compare:
        policies += [("LRU", lru_hits), ("OPT", belady_hits)]
    print(
        f"{args.trace}: {n:,} requests, {len(np.unique(trace)):,} unique keys "
        f"({'compiled' if _core.COMPILED else 'pure-Python'} core)"
    )
    print(f"{'size':>10}" + "".join(f"{name:>17}" for name, _ in policies), flush=True)
    results: dict[str, list[float]] = {name: [] for name, _ in policies}
    for size in sizes:
        row = []
        for name, run in policies:
            with _progress(n, f"{name} @ {size}", _show_progress(args)) as tick:
                ratio = 100.0 * run(trace, size, progress=tick) / n
            results[name].append(ratio)
            row.append(f"{ratio:16.2f}%")
        print(f"{size:>10}" + "".join(row), flush=True)
    if plot is not None:
        _plot(plot, args.trace, sizes, results)
        print(f"plot written to {plot}")
    return 0


def _plot_target(path: str) -> Path:
    """Check that ``--plot path`` can be written (matplotlib installed, the folder there
    and writable, a format matplotlib knows) and return it."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install 'multilayercache[plot]'") from None
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise CliError(f"--plot {path}: is a folder; give a file name, e.g. {target / 'hits.png'}")
    if not folder.is_dir():
        raise CliError(f"--plot {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"--plot {path}: cannot write into folder {folder}")
    formats = FigureCanvasAgg.get_supported_filetypes()
    if target.suffix.lstrip(".").lower() not in formats:
        # Without a known extension matplotlib would write another file (it adds .png)
        # or fail after the replay.
        known = ", ".join(f".{name}" for name in sorted(formats))
        raise CliError(f"--plot {path}: the file name must end in an image format: {known}")
    return target


def _plot(path: Path, trace: str, sizes: list[int], results: dict[str, list[float]]) -> None:
    import matplotlib.pyplot as plt

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
    try:
        figure.savefig(path, dpi=120)
    except (OSError, ValueError) as error:  # checked up front, but the disk can still fill up
        raise CliError(f"could not write the plot {path}: {error}") from None
    finally:
        plt.close(figure)


# ---------------------------------------------------------------------------- demo
def _demo(args: argparse.Namespace) -> int:
    from ..core.errors import LayerUnavailableError
    from .demo import DemoSettings, run_demo
    from .servers import ServerUnavailableError

    if args.requests < args.threads:
        raise CliError(
            f"--requests {args.requests} is fewer than --threads {args.threads}: "
            "every thread needs at least one request"
        )
    settings = DemoSettings(
        threads=args.threads,
        requests=args.requests,
        keys=args.keys,
        l1_entries=args.l1_entries,
        loader_ms=args.loader_ms,
        progress=_show_progress(args),
    )
    try:
        report = run_demo(settings)
    except (ServerUnavailableError, LayerUnavailableError) as error:
        raise CliError(str(error)) from None
    print(report)
    return 0


# ---------------------------------------------------------------------------- bench
def _reencrypt(args: argparse.Namespace) -> int:
    from ..layers.redis.sync import RedisLayer
    from ..serializers.encrypted import Encryption

    try:
        encryption = Encryption.from_environment(args.keys_from)
    except (ValueError, ImportError) as error:
        raise CliError(str(error)) from None
    layer = RedisLayer(args.url, prefix=args.prefix, encryption=encryption)
    try:
        rewritten = layer.reencrypt()
    except (ValueError, CacheError) as error:
        raise CliError(str(error)) from None
    finally:
        layer.close()
    print(f"{rewritten} value(s) rewritten under key {encryption.active_id!r}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .benchmarking import hit_latency_measurements, hit_latency_table, skipped_peers

    skipped = skipped_peers()
    if skipped:  # said first: the table takes a while, and it is shorter than expected
        print(
            f"skipped (not installed): {', '.join(skipped)}; "
            "pip install 'multilayercache[bench]' to include them",
            flush=True,
        )
    show = _show_progress(args)
    with _progress(hit_latency_measurements(), "timing get", show, "timing") as tick:
        table = hit_latency_table(args.entries, repeat=args.repeat, progress=tick)
    print(table)
    return 0


# ---------------------------------------------------------------------------- the fleet
def _fleet_client(url: str) -> Any:
    from redis.exceptions import RedisError

    from ..layers.redis.fleetinfo import connect

    try:
        client = connect(url)
        client.ping()
    except (RedisError, ValueError) as error:
        raise CliError(f"cannot reach {url}: {error}") from None
    return client


def _top(args: argparse.Namespace) -> int:
    try:
        from rich.console import Console
    except ImportError:
        raise CliError("top needs rich: pip install 'multilayercache[top]'") from None
    from .top import run

    try:
        client = _fleet_client(args.redis)
        try:
            run(client, args.prefix, args.keys, args.interval, args.once, Console())
        finally:
            client.close()
    except CacheError as error:
        raise CliError(str(error)) from None
    except KeyboardInterrupt:  # Ctrl-C is how a live view is left: not an error
        if args.once:
            raise
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    from .inspection import fleet_snapshot, write_json

    client = _fleet_client(args.redis)
    try:
        snapshot = fleet_snapshot(client, args.prefix, args.keys)
    except CacheError as error:
        raise CliError(str(error)) from None
    finally:
        client.close()
    if args.out == "-":
        print(json.dumps(snapshot, indent=1))
        return 0
    try:
        written = write_json(snapshot, args.out)
    except OSError as error:
        raise CliError(f"cannot write {args.out}: {error.strerror or error}") from None
    print(f"{len(snapshot['instances'])} instance(s) written to {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
