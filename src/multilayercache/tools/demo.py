"""``python -m multilayercache demo``: L1 + L2 in front of a slow loader, measured.

Starts an embedded Redis-protocol server unless ``REDIS_URL`` is set, then runs a
read-heavy workload (zipf-distributed keys, a loader that takes a few milliseconds) from
several threads through ``MultilayerCache([InMemoryLayer, RedisLayer])``, and prints what
each layer did (with its circuit breaker's state), how many reads were answered with a
stale value and how many background refreshes ran, and how much faster it is than calling
the loader directly. The time the same reads would take without the cache is an estimate,
and the report says so: it is extrapolated from a short sample of direct loader calls, not
measured.

L1 keeps values fresh for only ``L1_TTL_SECONDS``, then stale for a minute: within a run
of a few seconds, hot keys are refreshed ahead of expiry and cooler ones are served stale
while a background refresh fetches them again from L2 (stale-while-revalidate).

L2 is written behind (``WriteBehind``): loaded values and the price updates that follow the
reads are acknowledged once L1 holds them and sent to Redis in batches by a background
thread; the report shows the queue and how long the final ``flush()`` took.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..core.breaker import BreakerStats
from ..core.latency import LatencyRecorder, Percentiles
from ..core.options import LayerPolicy
from ..core.writepolicy import WriteBehind
from ..layers.memory import InMemoryLayer
from ..layers.redis import RedisLayer
from ..sync.cache import MultilayerCache
from .servers import ServerUnavailableError

# Checking REDIS_URL: a wrong one must fail within seconds, not hang on a silent host.
PROBE_TIMEOUT_SECONDS = 2.0
# Short enough that a run of a few seconds shows values going stale and being refreshed.
L1_TTL_SECONDS = 2.0
L1_POLICY = LayerPolicy(ttl=L1_TTL_SECONDS, stale_ttl=60, refresh_ahead=0.75)
L2_POLICY = LayerPolicy(ttl=300, ttl_jitter=0.1, write=WriteBehind())
UPDATES_PER_THREAD = 2_000


@dataclass(frozen=True)
class DemoSettings:
    threads: int = 4
    requests: int = 60_000
    keys: int = 10_000
    l1_entries: int = 1_000
    loader_ms: float = 3.0
    zipf_exponent: float = 1.0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("threads", "requests", "keys", "l1_entries"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.requests < self.threads:
            # each thread reads requests // threads keys: fewer requests would read none
            raise ValueError(
                f"requests ({self.requests}) must be at least threads ({self.threads})"
            )
        if not self.loader_ms >= 0:  # also rejects nan
            raise ValueError(f"loader_ms must be >= 0, got {self.loader_ms}")


def run_demo(settings: DemoSettings) -> str:
    """Run the workload; return the report."""
    with ExitStack() as stack:
        url = os.environ.get("REDIS_URL")
        if url:
            check_reachable(url)
            source = f"server at REDIS_URL ({redacted(url)})"
        else:
            from .servers import RedisServer

            server = stack.enter_context(RedisServer.start(use_env=False))
            url, source = server.url, f"embedded server at {server.url}"
        prefix = f"multilayercache-demo:{os.getpid()}:"
        l1 = InMemoryLayer(max_size=settings.l1_entries, name="L1 memory")
        l2 = RedisLayer(url, prefix=prefix, ttl=300, name="L2 redis", verify=True)
        stack.callback(l2.close)
        stack.callback(_delete_demo_keys, l2)
        cache = MultilayerCache(
            [l1, l2],
            [L1_POLICY, L2_POLICY],
            record_latency=True,
            backplane=True,
        )
        stack.callback(cache.close)  # delivers the queued writes before the keys go
        direct = _time_loader_directly(settings)
        report = _run_workload(cache, settings)
        writes = _run_updates(cache, settings)
        fleet = _run_second_instance(cache, url, prefix, settings)
        return _format(settings, source, cache, direct, report, writes) + "\n" + fleet


def redacted(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, fit for a report or an error."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def check_reachable(url: str) -> None:
    """Ping ``url`` once, with short timeouts and no retries; raise
    ``ServerUnavailableError`` with a one-line reason if it is not a usable Redis URL."""
    shown = redacted(url)
    try:
        probe = redis.Redis.from_url(
            url,
            socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
            socket_timeout=PROBE_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as error:  # redis-py's complaint about the URL itself
        raise ServerUnavailableError(f"REDIS_URL ({shown}) is not a Redis URL: {error}") from None
    try:
        probe.ping()
    except redis.TimeoutError:
        raise ServerUnavailableError(
            f"cannot reach REDIS_URL ({shown}): no reply within {PROBE_TIMEOUT_SECONDS:g} s"
        ) from None
    except redis.RedisError as error:
        raise ServerUnavailableError(f"cannot reach REDIS_URL ({shown}): {error}") from None
    finally:
        probe.close()


def slow_loader(loader_seconds: float) -> Callable[[str], dict[str, Any]]:
    def load(key: str) -> dict[str, Any]:
        time.sleep(loader_seconds)  # a database query, a remote call ...
        return {"key": key, "price": len(key) * 1.25, "description": "x" * 200}

    return load


def _keys_for(settings: DemoSettings, seed: int, count: int) -> list[str]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, settings.keys + 1) ** settings.zipf_exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(count))
    return [f"product:{rank}" for rank in ranks]


def _time_loader_directly(settings: DemoSettings) -> Percentiles:
    # The same threads, each calling the loader directly for a short while.
    recorder = LatencyRecorder()
    load = slow_loader(settings.loader_ms / 1000)
    per_thread = max(10, 300 // settings.threads)
    stop = threading.Event()

    def work(seed: int) -> None:
        for key in _keys_for(settings, 10_000 + seed, per_thread):
            if stop.is_set():
                return
            start = time.perf_counter()
            load(key)
            recorder.record(time.perf_counter() - start)

    _run_threads(work, settings.threads, stop)
    return recorder.percentiles()


def _run_threads(work: Callable[[int], None], count: int, stop: threading.Event) -> None:
    """Run ``work(0)`` ... ``work(count - 1)`` on threads and wait for them. On Ctrl-C, set
    ``stop`` (``work`` polls it) and wait again: a thread left running would keep reading
    from a server that is being stopped, and delay the exit until it is done."""
    # Waits on an event per thread, not on Thread.join(): on Python 3.11 a join that Ctrl-C
    # interrupts marks its thread as finished although it still runs, so a second join
    # would not wait for it.
    finished = [threading.Event() for _ in range(count)]

    def run(index: int) -> None:
        try:
            work(index)
        finally:
            finished[index].set()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    try:
        for thread in threads:
            thread.start()
        for event in finished:
            event.wait()
    except BaseException:
        stop.set()
        for thread, event in zip(threads, finished, strict=True):
            if thread.ident is not None:  # it was started
                event.wait()
        raise
    for thread in threads:
        thread.join()


@dataclass(frozen=True)
class WorkloadReport:
    seconds: float
    latency: Percentiles
    mean_latency: float


def _run_workload(cache: MultilayerCache, settings: DemoSettings) -> WorkloadReport:
    load = slow_loader(settings.loader_ms / 1000)
    per_thread = settings.requests // settings.threads
    recorder = LatencyRecorder(window=settings.requests)
    total_latency = [0.0] * settings.threads
    bar = None
    try:
        from tqdm import tqdm  # an optional extra: progress is a nicety
    except ImportError:
        # mypy cannot let a name be a class or None; without the extra, no progress bar
        tqdm = None  # type: ignore[assignment, misc]
    if settings.progress and tqdm is not None:
        bar = tqdm(
            total=per_thread * settings.threads,
            unit="req",
            desc="reading through L1+L2",
            file=sys.stderr,
            leave=False,
        )

    stop = threading.Event()

    def work(index: int) -> None:
        keys = _keys_for(settings, index, per_thread)
        spent = 0.0
        for done, key in enumerate(keys, 1):
            start = time.perf_counter()
            cache.get_or_load(key, load)
            elapsed = time.perf_counter() - start
            spent += elapsed
            recorder.record(elapsed)
            if done % 250 == 0:
                if stop.is_set():  # polled this rarely, it costs the timed loop nothing
                    return
                if bar is not None:
                    bar.update(250)
        total_latency[index] = spent

    try:
        start = time.perf_counter()
        _run_threads(work, settings.threads, stop)
        seconds = time.perf_counter() - start
    finally:
        if bar is not None:
            bar.close()
    requests = per_thread * settings.threads
    return WorkloadReport(seconds, recorder.percentiles(), sum(total_latency) / requests)


@dataclass(frozen=True)
class WritesReport:
    sets: int
    latency: Percentiles
    flush_seconds: float


def _run_updates(cache: MultilayerCache, settings: DemoSettings) -> WritesReport:
    """Each thread updates hot products' prices with ``set`` (write-behind to L2), then
    one ``flush()`` waits until Redis has every update."""
    recorder = LatencyRecorder(window=UPDATES_PER_THREAD * settings.threads)
    stop = threading.Event()

    def work(index: int) -> None:
        for done, key in enumerate(_keys_for(settings, 20_000 + index, UPDATES_PER_THREAD), 1):
            value = {"key": key, "price": done * 0.01, "description": "x" * 200}
            start = time.perf_counter()
            cache.set(key, value)
            recorder.record(time.perf_counter() - start)
            if done % 250 == 0 and stop.is_set():
                return

    _run_threads(work, settings.threads, stop)
    start = time.perf_counter()
    cache.flush(timeout=30)
    return WritesReport(
        UPDATES_PER_THREAD * settings.threads, recorder.percentiles(), time.perf_counter() - start
    )


def _run_second_instance(
    cache: MultilayerCache, url: str, prefix: str, settings: DemoSettings
) -> str:
    """A second instance (its own L1, the same L2 and backplane) reads hot products into
    its L1; the first updates some of them: how soon the second stops serving the old
    price, and whether its L1 still serves the products that did not change."""
    second = MultilayerCache(
        [InMemoryLayer(max_size=settings.l1_entries), RedisLayer(url, prefix=prefix)],
        backplane=True,
    )
    try:
        keys = list(dict.fromkeys(_keys_for(settings, 30_000, 400)))[:100]
        cache.set_many({key: {"key": key, "price": 1.0} for key in keys})
        cache.flush(timeout=30)
        for _ in range(2):  # copied into the second's L1 from its second read
            for key in keys:
                second.get(key)
        changed, unchanged = keys[: len(keys) // 2], keys[len(keys) // 2 :]
        seen_after: list[float] = []
        for key in changed:
            cache.set(key, {"key": key, "price": 2.0})
            start = time.perf_counter()
            while second.get(key) != {"key": key, "price": 2.0}:
                if time.perf_counter() - start > 5:
                    break
                time.sleep(0.0002)
            seen_after.append(time.perf_counter() - start)
        hits = second.layers[0].stats().hits
        still = sum(1 for key in unchanged if second.get(key) == {"key": key, "price": 1.0})
        l1_hits = second.layers[0].stats().hits - hits
    finally:
        second.close()
    seen_after.sort()
    p50, slowest = _ms(seen_after[len(seen_after) // 2]).strip(), _ms(seen_after[-1]).strip()
    return (
        f"second instance (same L2, backplane): the first updated {len(changed)} products in "
        f"its L1; it served the new price after p50 {p50}, max {slowest} (L2 is "
        "write-behind: the price reaches Redis with its batch, then the backplane says so "
        f"again); of the {len(unchanged)} unchanged ones, {still} right, {l1_hits} from its L1"
    )


def _ms(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:7.1f} us"
    return f"{seconds * 1e3:7.2f} ms"


def _format(
    settings: DemoSettings,
    source: str,
    cache: MultilayerCache,
    direct: Percentiles,
    report: WorkloadReport,
    writes: WritesReport,
) -> str:
    stats = cache.stats()
    requests = (settings.requests // settings.threads) * settings.threads
    lines = [
        f"multilayercache demo: {requests:,} reads of {settings.keys:,} products (zipf "
        f"s={settings.zipf_exponent}) from {settings.threads} threads; loader takes "
        f"{settings.loader_ms:g} ms; L2 is the {source}",
        "",
        f"{'layer':<12}{'hits':>9}{'misses':>9}{'hit ratio':>11}{'p50':>12}{'p99':>12}  breaker",
    ]
    for layer in stats.layers:
        latency = stats.layer_latency[layer.name]
        lines.append(
            f"{layer.name:<12}{layer.hits:>9,}{layer.misses:>9,}"
            f"{100 * layer.hit_ratio:>10.1f}%{_ms(latency.p50):>12}{_ms(latency.p99):>12}"
            f"  {breaker_state(stats.breakers.get(layer.name))}"
        )
    load = stats.load_latency
    lines.append(
        f"{'loader':<12}{load.count:>9,} calls{'':>14}{_ms(load.p50):>12}{_ms(load.p99):>12}"
    )
    lines.append(
        f"{'end to end':<12}{requests:>9,} reads{'':>14}"
        f"{_ms(report.latency.p50):>12}{_ms(report.latency.p99):>12}"
    )
    lines.append(
        f"{'stale':<12}{stats.stale_served:>9,} reads answered at once with a stale value "
        "(refreshed in the background)"
    )
    lines.append(
        f"{'refreshes':<12}{stats.refreshes:>9,} run in the background (refresh-ahead and "
        f"stale-while-revalidate); {stats.refresh_failures:,} failed, "
        f"{stats.refreshes_dropped:,} dropped"
    )
    for name, queue in stats.write_queues.items():
        lines.append(
            f"{'writes':<12}{writes.sets:>9,} sets, write-behind to {name}: p50 "
            f"{_ms(writes.latency.p50).strip()}, p99 {_ms(writes.latency.p99).strip()}; "
            f"flush() took {_ms(writes.flush_seconds).strip()}"
        )
        lines.append(
            f"{'':<12}queue: {queue.puts:,} writes (loads and sets), {queue.coalesced:,} "
            f"coalesced, {queue.delivered:,} delivered in {queue.batches:,} batches, "
            f"{queue.retries:,} retries, {queue.dead_lettered:,} dead-lettered, "
            f"{queue.depth:,} queued now"
        )
    # Not measured: the workload is not run without the cache (it would take minutes).
    direct_seconds = requests * direct_mean(direct) / settings.threads
    lines += [
        "",
        f"coalesced waits: {stats.coalesced_waits:,}; L1 size {stats.layers[0].size:,} "
        f"of {settings.l1_entries:,}; errors: {sum(stats.read_errors.values())}",
        f"mean read: {report.mean_latency * 1000:.3f} ms through the cache vs "
        f"{direct_mean(direct) * 1000:.3f} ms calling the loader (median of a sample of "
        f"{direct.count:,} direct calls): {direct_mean(direct) / report.mean_latency:.1f}x "
        "faster per read",
        f"wall clock: {report.seconds:.2f} s through the cache vs an estimated "
        f"{direct_seconds:.2f} s without it (not run: {requests:,} reads x that median / "
        f"{settings.threads} threads): {direct_seconds / report.seconds:.1f}x estimated "
        "speed-up",
    ]
    return "\n".join(lines)


def breaker_state(breaker: BreakerStats | None) -> str:
    """A layer's breaker for the table: its state and how often it opened; ``-`` for a
    layer without one (in-process)."""
    if breaker is None:
        return "-"
    times = "once" if breaker.opened == 1 else f"{breaker.opened:,} times"
    return f"{breaker.state.value} (opened {times})"


def direct_mean(direct: Percentiles) -> float:
    # The direct loader calls are uniform (a sleep): p50 is a fair mean.
    return direct.p50


def _delete_demo_keys(layer: RedisLayer) -> None:
    try:
        keys = list(layer.client.scan_iter(match=f"{layer.prefix}*", count=1000))
        if keys:
            layer.client.unlink(*keys)
    except redis.RedisError:
        pass  # the server went away (or the run was interrupted): the keys expire anyway
