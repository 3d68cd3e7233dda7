"""How write-behind ends, measured: nothing acknowledged is lost, and what it costs.

    python benchmarks/shutdown.py [--queued 100000] [--kills 20] [--repeat 5]

1. **A tight writer**: one thread calling ``set()`` as fast as it can for 4 s into L1 +
   write-behind Redis: writes acknowledged and delivered per second, the deepest queue and
   the longest lag seen, with the defaults (two pipelines, ``max_lag=2``) and as before
   (one pipeline, no lag bound).
2. **SIGTERM with a backlog**: a service process (``tests/faults/writer_process.py``,
   sync and asyncio) writes until ``--queued`` writes are queued behind a stalled server
   (SIGSTOP), then gets SIGTERM as the server resumes: how it ended, how long it took, and
   acknowledged writes missing from Redis (must be 0).
3. **SIGKILL with a journal**: ``--kills`` runs (half sync, half asyncio), each SIGKILLed at a
   random moment while writing, then a restart on the same journal: acknowledged writes
   missing (must be 0).
4. **The journal's cost per set()**: median ns per ``set()`` on L1 + write-behind Redis,
   without a journal, with one, and with ``journal_fsync=True``, interleaved rounds.
5. **A persistence writer that hangs**: 1000 writes acknowledged, then ``close(timeout=1)``:
   how long it took, and writes delivered + dead-lettered against acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from multilayercache import (  # noqa: E402
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
    WriterLayer,
    read_dead_letters,
)
from multilayercache.tools.servers import RedisServer  # noqa: E402

from services import Service, lost_writes  # noqa: E402


def cache_on(url: str, prefix: str, **options: Any) -> MultilayerCache:
    l2 = RedisLayer(url, prefix=prefix)
    policy = LayerPolicy(write=WriteBehind(**options))
    return MultilayerCache([InMemoryLayer(max_size=1000), l2], [None, policy])


# ----------------------------------------------------------------------------- 1.
def tight_writer(url: str, label: str, **options: Any) -> str:
    cache = cache_on(url, f"tight-{label}:", **options)
    stop = threading.Event()
    written = [0]

    def write() -> None:
        index = 0
        while not stop.is_set():
            cache.set(f"k{index}", index)
            index += 1
        written[0] = index

    thread = threading.Thread(target=write)
    start = time.perf_counter()
    thread.start()
    deepest = longest = 0.0
    while time.perf_counter() - start < 4:
        time.sleep(0.05)
        stats = cache.stats().write_queues["redis"]
        deepest, longest = max(deepest, stats.depth), max(longest, stats.lag)
    stop.set()
    thread.join()
    seconds = time.perf_counter() - start
    delivered = cache.stats().write_queues["redis"].delivered
    cache.close()
    return (
        f"{label:<34} acknowledged {written[0] / seconds:>8,.0f}/s  delivered "
        f"{delivered / seconds:>8,.0f}/s  deepest queue {deepest:>8,.0f}  longest lag "
        f"{longest:5.2f} s"
    )


# ----------------------------------------------------------------------------- 2.
def sigterm_with_backlog(server: RedisServer, mode: str, queued: int, folder: Path) -> str:
    prefix = f"term-{mode}:"
    service = Service(
        server.url, prefix, folder, "--mode", mode, "--max-items", str(queued * 3),
        "--ready-after", "10000",
    )  # fmt: skip
    service.wait_for("ready")
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)  # the server stalls: the queue fills
    stalled_at = service.acknowledged()
    while service.acknowledged() - stalled_at < queued:
        time.sleep(0.01)
    backlog = service.acknowledged() - stalled_at
    start = time.perf_counter()
    service.process.send_signal(signal.SIGTERM)
    server.process.send_signal(signal.SIGCONT)
    status = service.end(60)
    took = time.perf_counter() - start
    last = service.acknowledged()
    lost = len(lost_writes(server.url, prefix, last))
    ended = "killed by SIGTERM" if status == -signal.SIGTERM else f"exit status {status}"
    return (
        f"{mode:<8} {backlog:>8,} writes queued at SIGTERM; {last + 1:>8,} acknowledged in "
        f"all; {ended} after {took:.2f} s; lost {lost}"
    )


# ----------------------------------------------------------------------------- 3.
def sigkill_with_journal(url: str, runs: int, folder: Path) -> str:
    rng = random.Random(1)
    journal = folder / "journal"
    lost_total = acknowledged = recovered = 0
    for run in range(runs):
        mode = "sync" if run % 2 == 0 else "asyncio"
        prefix = f"kill{run}:"
        service = Service(
            url, prefix, folder, "--mode", mode, "--journal", str(journal), "--ready-after", "1000"
        )
        service.wait_for("ready")
        time.sleep(rng.uniform(0, 1.0))
        service.process.send_signal(signal.SIGKILL)
        service.end()
        last = service.acknowledged()
        cache = cache_on(url, prefix, journal=journal)  # the restart
        recovered += cache.stats().write_queues["redis"].puts
        cache.flush(30)
        cache.close()
        acknowledged += last + 1
        lost_total += len(lost_writes(url, prefix, last))
    return (
        f"{runs} runs, SIGKILL at random moments: {acknowledged:,} writes acknowledged, "
        f"{recovered:,} recovered from journals at restart, lost {lost_total}"
    )


# ----------------------------------------------------------------------------- 4.
def journal_cost(url: str, repeat: int, folder: Path, calls: int = 20_000) -> list[str]:
    variants = {
        "no journal": {},
        "journal": {"journal": folder / "cost"},
        "journal, fsync": {"journal": folder / "cost-fsync", "journal_fsync": True},
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeat):
        for name, options in variants.items():
            cache = cache_on(url, f"cost{round_}-{len(samples[name])}:", **options)
            count = calls if "fsync" not in name else calls // 20
            start = time.perf_counter()
            for index in range(count):
                cache.set(f"k{index}", index)
            samples[name].append((time.perf_counter() - start) / count * 1e9)
            cache.close()
    base = statistics.median(samples["no journal"])
    return [
        f"{name:<15} {statistics.median(values):>9,.0f} ns per set()  "
        f"({statistics.median(values) / base:.2f}x; range {min(values):,.0f}-{max(values):,.0f})"
        for name, values in samples.items()
    ]


# ----------------------------------------------------------------------------- 5.
def hung_writer(folder: Path) -> str:
    released = threading.Event()

    def write(items: dict[Any, Any]) -> None:
        released.wait()

    dead = folder / "hung.jsonl"
    policy = LayerPolicy(write=WriteBehind(dead_letter=dead, max_delay=0.01))
    cache = MultilayerCache([InMemoryLayer(max_size=2000), WriterLayer(write)], [None, policy])
    for index in range(1000):
        cache.set(f"k{index}", index)
    start = time.perf_counter()
    cache.close(timeout=1)
    took = time.perf_counter() - start
    released.set()
    stats = cache.stats().write_queues["writer"]
    kept = {record.key for record in read_dead_letters(dead)}
    return (
        f"1000 writes acknowledged; close(timeout=1) returned after {took:.2f} s; delivered "
        f"{stats.delivered}, dead-lettered {stats.dead_lettered} ({len(kept)} keys in the file)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", type=int, default=100_000, help="backlog at SIGTERM (100000)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILL runs (20)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the cost figure (5)")
    args = parser.parse_args(argv)
    with RedisServer.start(use_env=False) as server, tempfile.TemporaryDirectory() as folder:
        print("1. a tight writer, 4 s")
        print("  ", tight_writer(server.url, "defaults (2 pipelines, max_lag=2)"))
        print("  ", tight_writer(server.url, "as before (1 pipeline, no lag bound)",
                                 concurrency=1, max_lag=None))  # fmt: skip
        print(f"2. SIGTERM with {args.queued:,} writes queued behind a stalled server")
        for mode in ("sync", "asyncio"):
            print("  ", sigterm_with_backlog(server, mode, args.queued, Path(folder)))
        print("3. SIGKILL with a journal")
        print("  ", sigkill_with_journal(server.url, args.kills, Path(folder)))
        print(f"4. the journal's cost per set() (median of {args.repeat} rounds)")
        for line in journal_cost(server.url, args.repeat, Path(folder)):
            print("  ", line)
        print("5. a persistence writer that hangs")
        print("  ", hung_writer(Path(folder)))
    asyncio.set_event_loop_policy(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
