"""Read latency through an L2 outage: Redis SIGKILLed under load, restarted on its port.

    python benchmarks/outage.py                          # threads, then asyncio tasks (~30 s)
    python benchmarks/outage.py --mode sync --outage-seconds 5

8 threads (``--mode sync``, reading back to back), or 200 asyncio tasks (``--mode
asyncio``, each pausing a random ~20 ms between reads, as requests arrive), call
``get_or_load`` on zipf-distributed keys through ``InMemoryLayer`` (L1) + ``RedisLayer`` /
``AsyncRedisLayer`` (L2), with a loader that takes about 1 ms. Redis (a throwaway server
with an append-only file, as in production, so that it comes back with its data) is
killed with SIGKILL for 5 s and restarted on the same port. Printed per phase: p50 / p99 /
max read latency of all reads, and of L1 hits alone (a read counts as one when L1 held the
key just before it; an eviction in between can misfile a few); and how late a 1 ms sleep
wakes up meanwhile (the wait for the GIL or the event loop, which no cache can avoid):

* before: the server up (after an unrecorded warm-up);
* outage, breaker closed: from the kill until L2's circuit breaker first opens;
* outage, breaker open: from then until the server is back (its probes included);
* after: from the restart on.

A read is counted in the phase in which it began. Then: the exceptions callers saw, how
long the breaker took to open, the time from the restart to the first L2 hit, and issue
9's acceptance: 0 exceptions, L1 hits at their normal latency (p50 within 2x of before),
p99 <= 5 ms once the breaker is open, L2 hits within 2 s of the restart. The exit status
is 1 when one of them fails.

Without a pause, 200 tasks keep the event loop saturated (``--task-think-ms 0``): every
read then waits its turn behind the others, before the outage as much as during it, and
p99 measures that queue, not the cache.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.tools.servers import RedisServer

WARM_UP, BEFORE, CLOSED, OPEN, AFTER = range(5)
PHASES = ("warm-up", "before", "outage, breaker closed", "outage, breaker open", "after")
REPORTED = (BEFORE, CLOSED, OPEN, AFTER)

OPEN_P99_SECONDS = 0.005  # issue 9: p99 once the breaker is open
RESUME_SECONDS = 2.0  # issue 9: L2 hits again this soon after the restart
L1_SLOWDOWN = 2.0  # "normal latency": L1 hits' p50 during the outage within 2x of before
POLL_SECONDS = 0.001  # how often the conductor looks at the breaker and L2's hits
LAG_PROBE_SECONDS = 0.001
STREAM = 200_000  # keys drawn per run; workers read it from different offsets
PREFIX = "outage-bench:"
PERSIST = ("--appendonly", "yes", "--appendfsync", "everysec")


@dataclass(frozen=True)
class Settings:
    threads: int = 8
    tasks: int = 200
    keys: int = 10_000
    l1_entries: int = 1_000
    loader_ms: float = 1.0
    zipf: float = 1.0
    warm_up: float = 1.0
    before: float = 3.0
    outage: float = 5.0
    after: float = 3.0
    thread_think_ms: float = 0.0
    task_think_ms: float = 20.0


class Samples:
    """One worker's read latencies (seconds), per phase, L1 hits apart; arrays of doubles,
    so that a few million reads cost tens of megabytes, not hundreds."""

    def __init__(self) -> None:
        self.latencies = [(array("d"), array("d")) for _ in PHASES]  # (others, L1 hits)
        self.exceptions = 0
        self.first_exception: BaseException | None = None

    def failed(self, error: BaseException) -> None:
        self.exceptions += 1
        self.first_exception = self.first_exception or error


@dataclass
class Timeline:
    """What the conductor did, and when (``time.perf_counter``); ``phase`` is read by the
    workers at the start of each read."""

    phase: int = WARM_UP
    killed: float = 0.0
    opened: float | None = None
    restarted: float = 0.0
    first_l2_hit: float | None = None
    starts: dict[int, float] = field(default_factory=dict)
    """When each phase began (the end: ``len(PHASES)``)."""

    def seconds_in(self, phase: int) -> float:
        """How long ``phase`` lasted (0 if it never began)."""
        if phase not in self.starts:
            return 0.0
        later = [start for other, start in self.starts.items() if other > phase]
        return min(later) - self.starts[phase]


class LagProbe:
    """How late a 1 ms sleep wakes up, per phase: the time any reader of this process
    waits for the GIL (threads) or for the event loop (tasks), whatever the cache does."""

    def __init__(self) -> None:
        self.lags = [array("d") for _ in PHASES]

    def record(self, phase: int, asked: float, slept: float) -> None:
        self.lags[phase].append(max(0.0, slept - asked))

    def run_in_thread(self, timeline: Timeline) -> None:
        while (phase := timeline.phase) < len(PHASES):
            start = time.perf_counter()
            time.sleep(LAG_PROBE_SECONDS)
            self.record(phase, LAG_PROBE_SECONDS, time.perf_counter() - start)

    async def run_in_task(self, timeline: Timeline) -> None:
        while (phase := timeline.phase) < len(PHASES):
            start = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            self.record(phase, LAG_PROBE_SECONDS, time.perf_counter() - start)


@dataclass
class Run:
    mode: str
    workers: int
    samples: list[Samples]
    timeline: Timeline
    lag: LagProbe

    def latencies(self, phase: int, l1_hits: bool | None = None) -> np.ndarray:
        """The read latencies of ``phase``: all, only L1 hits, or only the others."""
        parts = [
            sample.latencies[phase][kind]
            for sample in self.samples
            for kind in (0, 1)
            if l1_hits is None or kind == l1_hits
        ]
        return np.concatenate([np.frombuffer(part, dtype=np.float64) for part in parts])

    @property
    def exceptions(self) -> int:
        return sum(sample.exceptions for sample in self.samples)


def key_stream(settings: Settings) -> list[str]:
    """``STREAM`` keys drawn from a bounded Zipf law (rank r has weight 1 / r ** s, any
    s > 0, unlike numpy's unbounded sampler which needs s > 1)."""
    keys = [f"product:{rank}" for rank in range(settings.keys)]
    weights = 1.0 / np.arange(1, settings.keys + 1) ** settings.zipf
    cdf = np.cumsum(weights) / weights.sum()
    ranks = np.searchsorted(cdf, np.random.default_rng(9).random(STREAM))
    return [keys[min(rank, settings.keys - 1)] for rank in ranks]


def value_of(key: str) -> dict[str, Any]:
    return {"key": key, "price": len(key) * 1.25, "description": "x" * 100}


def policies() -> list[LayerPolicy]:
    return [LayerPolicy(ttl=60), LayerPolicy(ttl=600)]


def start_server(settings: Settings) -> RedisServer:
    """A persistent server holding every key already, as a shared L2 that has been up."""
    server = RedisServer.start(*PERSIST, use_env=False)
    prefill = RedisLayer(server.url, prefix=PREFIX)
    keys = [f"product:{rank}" for rank in range(settings.keys)]
    prefill.set_many({key: value_of(key) for key in keys}, ttl=600)
    prefill.client.bgrewriteaof()  # the restart then reads one compact file
    prefill.close()
    return server


def offsets(workers: int) -> Iterator[int]:
    return (worker * (STREAM // workers) for worker in range(workers))


# ---------------------------------------------------------------------------- conductor
class Sleep(NamedTuple):
    seconds: float


class Block(NamedTuple):
    """A blocking call (kill, restart): off the event loop for tasks."""

    function: Callable[[], object]


class Poll(NamedTuple):
    """Wait until ``ready()`` or ``deadline`` (``time.perf_counter``)."""

    ready: Callable[[], bool]
    deadline: float


Step = Sleep | Block | Poll


class Conductor:
    """Moves through the phases: kills the server, notes when the breaker opens, restarts
    it, notes the first L2 hit after that. Its steps are performed by the mode's driver
    (``conduct_in_thread`` or ``conduct_in_task``), so that one script serves both."""

    def __init__(self, settings: Settings, server: RedisServer, cache: Any, l2: Any) -> None:
        self.settings, self.server, self.cache, self.l2 = settings, server, cache, l2
        self.timeline = Timeline()

    def steps(self) -> Iterator[Step]:
        settings, timeline = self.settings, self.timeline
        yield Sleep(settings.warm_up)
        self._enter(BEFORE)
        yield Sleep(settings.before)
        timeline.killed = time.perf_counter()
        yield Block(self.server.kill)
        self._enter(CLOSED)
        deadline = timeline.killed + settings.outage
        yield Poll(self._breaker_opened, deadline)
        if self._breaker_opened():
            timeline.opened = time.perf_counter()
            self._enter(OPEN)
        yield Sleep(max(0.0, deadline - time.perf_counter()))
        hits = self.l2.stats().hits
        yield Block(self.server.restart)
        timeline.restarted = time.perf_counter()
        self._enter(AFTER)
        finish = timeline.restarted + settings.after
        yield Poll(lambda: self.l2.stats().hits > hits, finish)
        if self.l2.stats().hits > hits:
            timeline.first_l2_hit = time.perf_counter()
        yield Sleep(max(0.0, finish - time.perf_counter()))
        self._enter(len(PHASES))  # the end

    def _breaker_opened(self) -> bool:
        return bool(self.cache.stats().breakers["l2"].opened)

    def _enter(self, phase: int) -> None:
        self.timeline.starts[phase] = time.perf_counter()
        self.timeline.phase = phase


def conduct_in_thread(conductor: Conductor) -> None:
    for step in conductor.steps():
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
        elif isinstance(step, Block):
            step.function()
        else:
            while not step.ready() and time.perf_counter() < step.deadline:
                time.sleep(POLL_SECONDS)


async def conduct_in_task(conductor: Conductor) -> None:
    for step in conductor.steps():
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, Block):
            await asyncio.to_thread(step.function)
        else:
            while not step.ready() and time.perf_counter() < step.deadline:
                await asyncio.sleep(POLL_SECONDS)


# ---------------------------------------------------------------------------- threads
def run_threads(settings: Settings) -> Run:
    stream = key_stream(settings)
    with start_server(settings) as server:
        l1 = InMemoryLayer(max_size=settings.l1_entries, name="l1")
        l2 = RedisLayer(server.url, prefix=PREFIX, name="l2")
        cache = MultilayerCache([l1, l2], policies())
        conductor = Conductor(settings, server, cache, l2)
        timeline = conductor.timeline
        loader_seconds = settings.loader_ms / 1000

        def load(key: str) -> dict[str, Any]:
            time.sleep(loader_seconds)  # a database query
            return value_of(key)

        samples = [Samples() for _ in range(settings.threads)]
        think = settings.thread_think_ms / 1000

        def work(sample: Samples, offset: int) -> None:
            latencies, position = sample.latencies, offset
            get_or_load, perf_counter = cache.get_or_load, time.perf_counter
            while (phase := timeline.phase) < len(PHASES):
                key = stream[position % STREAM]
                position += 1
                held = key in l1
                start = perf_counter()
                try:
                    get_or_load(key, load)
                except Exception as error:
                    sample.failed(error)
                latencies[phase][held].append(perf_counter() - start)
                if think:
                    time.sleep(think)

        lag = LagProbe()
        threads = [
            threading.Thread(target=work, args=(sample, offset))
            for sample, offset in zip(samples, offsets(settings.threads), strict=True)
        ]
        threads.append(threading.Thread(target=lag.run_in_thread, args=(timeline,)))
        for thread in threads:
            thread.start()
        try:
            conduct_in_thread(conductor)
        finally:
            timeline.phase = len(PHASES)
            for thread in threads:
                thread.join()
            cache.close()
    return Run("sync", settings.threads, samples, timeline, lag)


# ---------------------------------------------------------------------------- tasks
def run_tasks(settings: Settings) -> Run:
    stream = key_stream(settings)
    with start_server(settings) as server:
        return asyncio.run(_run_tasks(settings, server, stream))


async def _run_tasks(settings: Settings, server: RedisServer, stream: list[str]) -> Run:
    l1 = InMemoryLayer(max_size=settings.l1_entries, name="l1")
    l2 = AsyncRedisLayer(server.url, prefix=PREFIX, name="l2")
    cache = AsyncMultilayerCache([l1, l2], policies())
    conductor = Conductor(settings, server, cache, l2)
    timeline = conductor.timeline
    loader_seconds = settings.loader_ms / 1000

    async def load(key: str) -> dict[str, Any]:
        await asyncio.sleep(loader_seconds)
        return value_of(key)

    samples = [Samples() for _ in range(settings.tasks)]
    think = 1000 / settings.task_think_ms if settings.task_think_ms else 0.0  # a rate, 1/s

    async def work(sample: Samples, offset: int) -> None:
        pause = random.Random(offset).expovariate if think else lambda _: 0.0
        latencies, position = sample.latencies, offset
        get_or_load, perf_counter = cache.get_or_load, time.perf_counter
        while (phase := timeline.phase) < len(PHASES):
            key = stream[position % STREAM]
            position += 1
            held = key in l1
            start = perf_counter()
            try:
                await get_or_load(key, load)
            except Exception as error:
                sample.failed(error)
            latencies[phase][held].append(perf_counter() - start)
            # Other work, for a random time: requests arrive at random (Poisson), not in
            # lockstep bursts of every task at once. (And an L1 hit alone never yields.)
            await asyncio.sleep(pause(think))

    lag = LagProbe()
    tasks = [
        asyncio.create_task(work(sample, offset))
        for sample, offset in zip(samples, offsets(settings.tasks), strict=True)
    ]
    tasks.append(asyncio.create_task(lag.run_in_task(timeline)))
    try:
        await conduct_in_task(conductor)
    finally:
        timeline.phase = len(PHASES)
        await asyncio.gather(*tasks)
        await cache.close()
    return Run("asyncio", settings.tasks, samples, timeline, lag)


# ---------------------------------------------------------------------------- report
def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def _figures(latencies: np.ndarray) -> str:
    if not len(latencies):
        return f"{0:>10,}{'-':>10}{'-':>10}{'-':>10}"
    p50, p99 = np.percentile(latencies, [50, 99])
    return f"{len(latencies):>10,}{_us(p50):>10}{_us(p99):>10}{_us(latencies.max()):>10}"


def report(run: Run, settings: Settings) -> tuple[str, bool]:
    """The table and the verdicts; whether every acceptance criterion holds."""
    timeline = run.timeline
    if run.mode == "sync":
        who = f"{run.workers} threads"
        think = settings.thread_think_ms
    else:
        who = f"{run.workers} asyncio tasks"
        think = settings.task_think_ms
    pausing = f", each pausing ~{think:g} ms between reads" if think else ", no pause between reads"
    lines = [
        f"{run.mode}: {who}{pausing}; get_or_load over {settings.keys:,} zipf keys "
        f"(s={settings.zipf:g}), L1 {settings.l1_entries:,} entries, loader "
        f"{settings.loader_ms:g} ms; Redis SIGKILLed for {settings.outage:g} s, then restarted",
        f"{'latency in microseconds':<34}{'all reads':^40}|{'L1 hits':^40}|{'wake-up lag':^20}",
        f"{'phase':<34}"
        + f"{'reads':>10}{'p50':>10}{'p99':>10}{'max':>10}|" * 2
        + f"{'p50':>10}{'p99':>10}",
    ]
    for phase in REPORTED:
        name = f"{PHASES[phase]} ({timeline.seconds_in(phase):.3f} s)"
        lag = np.frombuffer(run.lag.lags[phase], dtype=np.float64)
        lag_figures = (
            f"{_us(np.percentile(lag, 50)):>10}{_us(np.percentile(lag, 99)):>10}"
            if len(lag)
            else f"{'-':>10}{'-':>10}"
        )
        lines.append(
            f"{name:<34}{_figures(run.latencies(phase))}|"
            f"{_figures(run.latencies(phase, l1_hits=True))}|{lag_figures}"
        )
    first = next((s.first_exception for s in run.samples if s.first_exception), None)
    lines.append(f"exceptions: {run.exceptions}" + (f" (first: {first!r})" if first else ""))
    opened = timeline.opened - timeline.killed if timeline.opened else None
    resumed = timeline.first_l2_hit - timeline.restarted if timeline.first_l2_hit else None
    lines.append(
        "breaker opened "
        + (f"{opened * 1e3:.1f} ms after the kill" if opened is not None else "never")
        + "; first L2 hit "
        + (f"{resumed:.3f} s after the restart" if resumed is not None else "never")
    )
    open_p99 = _p99(run.latencies(OPEN))
    l1_before = _p50(run.latencies(BEFORE, l1_hits=True))
    l1_outage = _p50(run.latencies(OPEN, l1_hits=True))
    verdicts = [
        ("0 exceptions", run.exceptions == 0),
        (
            f"L1 hits at normal latency (p50 {l1_outage * 1e6:.1f} us with the breaker open "
            f"vs {l1_before * 1e6:.1f} us before, within {L1_SLOWDOWN:g}x)",
            l1_outage <= L1_SLOWDOWN * l1_before,
        ),
        (
            f"p99 <= {OPEN_P99_SECONDS * 1e3:g} ms once the breaker is open "
            f"({open_p99 * 1e3:.3f} ms)",
            open_p99 <= OPEN_P99_SECONDS,
        ),
        (
            f"L2 hits within {RESUME_SECONDS:g} s of the restart",
            resumed is not None and resumed <= RESUME_SECONDS,
        ),
    ]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {what}" for what, ok in verdicts]
    return "\n".join(line.rstrip() for line in lines), all(ok for _, ok in verdicts)


def _p50(latencies: np.ndarray) -> float:
    return float(np.percentile(latencies, 50)) if len(latencies) else float("nan")


def _p99(latencies: np.ndarray) -> float:
    return float(np.percentile(latencies, 99)) if len(latencies) else float("inf")


# ---------------------------------------------------------------------------- command line
def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, the description as written."""


def arguments(argv: list[str] | None) -> tuple[str, Settings]:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 2)[2],  # what runs and what is printed
        formatter_class=HelpFormatter,
    )
    add = parser.add_argument
    add("--mode", choices=("both", "sync", "asyncio"), default="both", help="which to run")
    add("--threads", type=positive(int), default=defaults.threads, help="sync readers")
    add("--tasks", type=positive(int), default=defaults.tasks, help="asyncio readers")
    add("--keys", type=positive(int), default=defaults.keys, help="distinct keys read")
    add("--l1-entries", type=positive(int), default=defaults.l1_entries, help="L1 size")
    add("--loader-ms", type=positive(float), default=defaults.loader_ms, help="loader time")
    add("--zipf", type=positive(float), default=defaults.zipf, help="zipf exponent of keys")
    add("--warm-up-seconds", type=positive(float), default=defaults.warm_up, help="unrecorded")
    add("--before-seconds", type=positive(float), default=defaults.before, help="server up")
    add("--outage-seconds", type=positive(float), default=defaults.outage, help="server down")
    add("--after-seconds", type=positive(float), default=defaults.after, help="after restart")
    add(
        "--thread-think-ms",
        type=float,
        default=defaults.thread_think_ms,
        help="pause between a thread's reads",
    )
    add(
        "--task-think-ms",
        type=float,
        default=defaults.task_think_ms,
        help="pause between a task's reads (0 saturates the event loop: queueing, not the cache)",
    )
    args = parser.parse_args(argv)
    settings = Settings(
        threads=args.threads,
        tasks=args.tasks,
        keys=args.keys,
        l1_entries=args.l1_entries,
        loader_ms=args.loader_ms,
        zipf=args.zipf,
        warm_up=args.warm_up_seconds,
        before=args.before_seconds,
        outage=args.outage_seconds,
        after=args.after_seconds,
        thread_think_ms=args.thread_think_ms,
        task_think_ms=args.task_think_ms,
    )
    return args.mode, settings


def main(argv: list[str] | None = None) -> int:
    mode, settings = arguments(argv)
    # The layer's warnings ("read of ... failed, treated as a miss") are what an outage
    # looks like: expected here, and counted in the table instead.
    logging.getLogger("multilayercache").setLevel(logging.ERROR)
    runners = {"sync": run_threads, "asyncio": run_tasks}
    passed = True
    for name in ("sync", "asyncio") if mode == "both" else (mode,):
        table, ok = report(runners[name](settings), settings)
        print(table + "\n", flush=True)
        passed = passed and ok
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
