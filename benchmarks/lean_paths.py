"""Every path of issue 24 (misses, sets, batches from L2, memory) beside its peers, in one run.

    python benchmarks/lean_paths.py [--repeat 7] [--quick] [--rows set miss ...]

Starts a throwaway Redis server (or uses ``REDIS_URL``) and prints one table. Each row is one
path: our figure, the reference it is a ratio of (the layer underneath, a raw redis-py call,
a plain ``async def``) and the peers' figures for the same path where they have it, each as
the median over ``--repeat`` rounds with its (min-max) across the rounds. Ratios are taken per
round (both sides measured seconds apart, so the machine's swings cancel within a pair), and
every row is measured once in each round, in a rotated order, so that noise hits all alike.
Within a round each figure is the best of 3 short runs: on a busy machine a run that was
preempted is noise, and nothing makes code run faster than it can (the zipf replay, one long
run, is measured once a round). Each row's first line is ours, judged PASS/FAIL against the
bound of the issue's table.

The memory row is measured once (a fresh process per library, 500,000 entries: RSS growth
does not swing like time does). ``--quick`` runs 2 rounds of one short run: a smoke test, not
figures. Peers that are not installed (``pip install -e '.[bench]'``) are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from compare_hits import awaited_ns, per_call_ns
from compare_redis import per_call
from set_cost import VALUE, timed_sets

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
    _core,
)
from multilayercache.core.freshness import Lifetime
from multilayercache.tools.benchmarking import CACHES, zipf_indices
from multilayercache.tools.servers import RedisServer

from compare_peers import bytes_per_entry, replay_seconds, zipf_operations

Figures = dict[str, float]
"""One round of one group: ns (bytes for memory) by figure key."""


@dataclass(frozen=True)
class Line:
    """One printed figure of a row, and the figure it is a ratio of (``None``: no ratio)."""

    key: str
    label: str
    reference: str | None = None


@dataclass(frozen=True)
class Row:
    """One path of the issue's table. ``lines[0]`` is ours and is judged: its ratio to its
    reference when ``on_ratio``, else its figure in ``unit``."""

    number: str
    title: str
    unit: str  # "ns", "us" or "B"
    bound: float
    on_ratio: bool
    lines: tuple[Line, ...]
    note: str = ""

    def judged(self, figures: dict[str, list[float]]) -> float | None:
        """The judged value (a ratio, or a figure in ``unit``); ``None`` when the reference
        of a ratio was not measured (a peer that is not installed)."""
        ours = self.lines[0]
        if not self.on_ratio:
            return statistics.median(figures[ours.key]) / UNITS[self.unit]
        assert ours.reference is not None
        if ours.reference not in figures:
            return None
        return statistics.median(ratios(figures[ours.key], figures[ours.reference]))


@dataclass
class Group:
    """Rows measured together: ``measure()`` is one run of all their figures (``once``:
    in the first round only; ``long``: one run is a round)."""

    name: str
    rows: list[Row]
    measure: Callable[[], Figures]
    once: bool = False
    long: bool = False
    slices: int = 1  # runs per best_of: a few ms each, a preemption spoils one alone

    def round(self, best_of: int) -> Figures:
        """Each figure's best of ``best_of`` runs (one run if the group is ``long``)."""
        runs = []
        for _ in range(1 if self.long else best_of * self.slices):
            gc.collect()  # the last run's caches (a manager is freed by the collector)
            runs.append(self.measure())
        return {key: min(run[key] for run in runs) for key in runs[0]}


@dataclass(frozen=True)
class Settings:
    """How much each round does (``--quick`` makes it small)."""

    sets: int  # keys per set / miss round
    redis_calls: int  # GETs per L2 measurement (MGETs: a fifth)
    raw_sets: int  # round trips per SET measurement
    awaits: int  # awaits per asyncio @cached measurement
    replay: int  # operations of the zipf replay
    memory_peers: bool  # memory also of the peers, and with str keys
    best_of: int  # runs of each figure in a round


UNITS = {"ns": 1.0, "us": 1_000.0, "B": 1.0}
KEYS = 1_000  # distinct keys behind the hit rows


def ratios(mine: list[float], theirs: list[float]) -> list[float]:
    return [a / b for a, b in zip(mine, theirs, strict=True)]


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ----------------------------------------------------------------------------- 1. set
def set_group(settings: Settings) -> Group:
    keys = [f"set:{i}" for i in range(settings.sets)]
    size = settings.sets

    def stores() -> dict[str, Callable[[Any, Any], Any]]:
        # Fresh caches each round: the first pass stores new keys, the second overwrites.
        found: dict[str, Callable[[Any, Any], Any]] = {
            "layer": InMemoryLayer(max_size=size).set,
            "ours": MultilayerCache([InMemoryLayer(max_size=size)]).set,
        }
        if has("theine"):
            found["theine"] = CACHES["theine"](size).store
        if has("cachebox"):
            found["cachebox"] = CACHES["cachebox LRU"](size).store
        if has("cachetools"):
            found["cachetools"] = CACHES["cachetools LRU"](size).store
        return found

    def measure() -> Figures:
        timed_sets(InMemoryLayer(max_size=size).set, keys)  # untimed: keys back in the caches
        figures = {}
        for name, store in stores().items():
            figures[f"new.{name}"] = timed_sets(store, keys)
            figures[f"over.{name}"] = timed_sets(store, keys)
        return figures

    rows = []
    for number, kind, title in (("1a", "new", "new keys"), ("1b", "over", "overwrites")):
        layer = f"{kind}.layer"
        lines = [
            Line(f"{kind}.ours", "MultilayerCache([L1]).set", layer),
            Line(layer, "InMemoryLayer.set"),
        ]
        lines += [
            Line(f"{kind}.{peer}", label, layer)
            for peer, label, module in (
                ("theine", "theine Cache.set", "theine"),
                ("cachebox", "cachebox LRUCache.insert", "cachebox"),
                ("cachetools", "cachetools LRUCache[k] = v", "cachetools"),
            )
            if has(module)
        ]
        rows.append(Row(number, f"set, L1 only, {title}", "ns", 500, False, tuple(lines)))
    return Group("set", rows, measure)


# ----------------------------------------------------------------------------- 2. write-behind
def write_behind_group(
    settings: Settings, url: str, runner: asyncio.Runner, stack: ExitStack
) -> Group:
    keys = [f"wb:{i}" for i in range(settings.sets)]
    few = keys[: settings.raw_sets]
    raw = stack.enter_context(redis.Redis.from_url(url))
    peers = stack.enter_context(AsyncPeers(url, runner))
    payload = b"x" * 60  # about the size of VALUE once encoded

    def async_sets(store: Callable[[Any, Any], Any], value: Any) -> float:
        return runner.run(awaited_ns(lambda key: store(key, value), few))

    def floor_sets(shared: RedisLayer) -> float:
        """ns per key of what any write-behind set holds the GIL for before it queues:
        the L1 write and the encoding of the value for Redis (no queue, no sender)."""
        memory = InMemoryLayer(max_size=len(keys))
        lifetime = Lifetime(3600.0)  # the L2 default: the same encoding path as the set's

        def store(key: Any, value: Any) -> None:
            memory.set_entry(key, value, lifetime)
            shared.encode_write(key, value, lifetime)

        return timed_sets(store, keys)

    def measure() -> Figures:
        shared = RedisLayer(url, prefix="lean-wb:")
        cache = MultilayerCache(
            [InMemoryLayer(max_size=len(keys)), shared], [None, LayerPolicy(write=WriteBehind())]
        )
        try:
            figures = {"ours": timed_sets(cache.set, keys, cache.flush)}
            figures["floor"] = floor_sets(shared)
        finally:
            cache.close()
        figures["raw"] = timed_sets(raw.set, few, value=payload)
        figures["raw async"] = async_sets(peers.raw.set, payload)
        if peers.cashews is not None:
            figures["cashews"] = async_sets(peers.cashews.set, VALUE)
        if peers.aiocache is not None:
            figures["aiocache"] = async_sets(peers.aiocache.set, VALUE)
        return figures

    lines = [
        Line("ours", "set, L1 + L2 write-behind", "raw"),
        Line("floor", "its floor: L1 set_entry + L2 encode_write", "raw"),
        Line("raw", "raw redis-py SET (a round trip)"),
        Line("raw async", "raw redis.asyncio SET"),
    ]
    lines += peers.lines("set (waits for Redis)", "raw async")
    note = (
        "flush() untimed after each round; the floor is what a set does before it queues "
        "(the sender's CPU per write comes on top: benchmarks/sender_cpu.py); cashews and "
        "aiocache have no write-behind: their set waits for Redis, shown for reference"
    )
    row = Row("2", "set with write-behind to L2", "us", 1.5, False, tuple(lines), note)
    return Group("write_behind", [row], measure)


class AsyncPeers:
    """redis.asyncio, cashews and aiocache clients of one server, on one event loop."""

    def __init__(self, url: str, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.raw = redis.asyncio.Redis.from_url(url)
        self.cashews: Any = None
        self.aiocache: Any = None
        if has("cashews"):
            import cashews

            self.cashews = cashews.Cache()
            self.cashews.setup(url)
        if has("aiocache"):
            import aiocache

            address = redis.Redis.from_url(url).connection_pool.connection_kwargs
            self.aiocache = aiocache.RedisCache(
                endpoint=address["host"], port=address["port"], namespace="lean-aiocache"
            )

    @property
    def missing(self) -> set[str]:
        """The peers that are not installed."""
        return {name for name in ("cashews", "aiocache") if getattr(self, name) is None}

    def lines(self, what: str, reference: str) -> list[Line]:
        found = []
        if self.cashews is not None:
            found.append(Line("cashews", f"cashews {what}", reference))
        if self.aiocache is not None:
            found.append(Line("aiocache", f"aiocache {what}", reference))
        return found

    def __enter__(self) -> AsyncPeers:
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            await self.raw.aclose()
            if self.cashews is not None:
                await self.cashews.close()
            if self.aiocache is not None:
                await self.aiocache.close()

        self.runner.run(close())


# ----------------------------------------------------------------------------- 3. get_or_load miss
def load(key: Any) -> Any:
    """A loader that returns at once."""
    return key


def misses_ns(fetch: Callable[[Any, Callable[[Any], Any]], Any], keys: list[Any]) -> float:
    """ns per ``fetch(key, load)`` over ``keys``."""
    start = time.perf_counter()
    for key in keys:
        fetch(key, load)
    return (time.perf_counter() - start) / len(keys) * 1e9


def get_then_set(
    lookup: Callable[[Any], Any], store: Callable[[Any, Any], Any]
) -> Callable[[Any, Callable[[Any], Any]], Any]:
    """Cache-aside as a user writes it around a layer without a loading call."""

    def fetch(key: Any, loader: Callable[[Any], Any]) -> Any:
        value = lookup(key)
        if value is None:
            value = loader(key)
            store(key, value)
        return value

    return fetch


def miss_group(settings: Settings) -> Group:
    keys = [f"miss:{i}" for i in range(settings.sets)]
    size = settings.sets

    def fetchers() -> dict[str, Callable[[Any, Callable[[Any], Any]], Any]]:
        layer = InMemoryLayer(max_size=size)
        found = {
            "layer": get_then_set(layer.get, layer.set),
            "ours": MultilayerCache([InMemoryLayer(max_size=size)]).get_or_load,
        }
        if has("theine"):
            import theine

            cache = CACHES["theine"](size)
            found["theine"] = get_then_set(cache.lookup, cache.store)
            memoized = theine.Memoize(size, None)(load)
            found["theine Memoize"] = lambda key, loader: memoized(key)
        if has("cachebox"):
            import cachebox

            box: Any = cachebox.LRUCache(size)
            found["cachebox"] = lambda key, loader: box.setdefault_with(key, lambda: loader(key))
            boxed = cachebox.cached(cachebox.LRUCache(size))(load)
            found["cachebox cached"] = lambda key, loader: boxed(key)
        return found

    def measure() -> Figures:
        layer = InMemoryLayer(max_size=size)
        misses_ns(get_then_set(layer.get, layer.set), keys)  # untimed: keys back in the caches
        alone = per_call_ns(load, keys)
        return {name: misses_ns(fetch, keys) - alone for name, fetch in fetchers().items()}

    lines = [
        Line("ours", "get_or_load", "layer"),
        Line("layer", "InMemoryLayer get, then set"),
        Line("theine", "theine get, then set", "layer"),
        Line("theine Memoize", "theine @Memoize miss", "layer"),
        Line("cachebox", "cachebox setdefault_with", "layer"),
        Line("cachebox cached", "cachebox @cached miss", "layer"),
    ]
    present = {"theine": has("theine"), "cachebox": has("cachebox")}
    lines = [line for line in lines if present.get(line.key.split()[0], True)]
    note = "overhead over the loader: the loader called alone, same round, subtracted"
    row = Row(
        "3",
        "get_or_load miss, L1 only, loader returns at once",
        "us",
        1.5,
        False,
        tuple(lines),
        note,
    )
    return Group("miss", [row], measure)


# ----------------------------------------------------------------------------- 4-5. L2 reads
def l2_groups(
    settings: Settings, url: str, runner: asyncio.Runner, stack: ExitStack
) -> list[Group]:
    keys = [f"l2:{i}" for i in range(100)]
    raw = stack.enter_context(redis.Redis.from_url(url))
    l2 = RedisLayer(url, prefix="lean-l2:")
    stack.callback(l2.close)
    cache = MultilayerCache(
        [InMemoryLayer(max_size=1000), l2], [LayerPolicy(promote="never"), None]
    )
    stack.callback(cache.close)
    al2 = AsyncRedisLayer(url, prefix="lean-l2:")
    acache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=1000), al2], [LayerPolicy(promote="never"), None]
    )
    peers = stack.enter_context(AsyncPeers(url, runner))
    stack.callback(lambda: runner.run(acache.close()))
    l2.set_many({key: VALUE for key in keys})
    raw_keys = [l2.redis_key(key) for key in keys]

    async def fill() -> None:
        for key in keys:
            if peers.cashews is not None:
                await peers.cashews.set(key, VALUE)
            if peers.aiocache is not None:
                await peers.aiocache.set(key, VALUE)

    runner.run(fill())
    one, raw_one = keys[0], raw_keys[0]

    def reads(
        sync: dict[str, Callable[[], Any]], awaited: dict[str, Callable[[], Any]], calls: int
    ) -> Callable[[], Figures]:
        """One round: ``calls`` calls of each (sync, then awaited on the one event loop)."""
        awaited = {name: call for name, call in awaited.items() if name not in peers.missing}

        def measure() -> Figures:
            figures = {name: per_call(call, calls) * 1e9 for name, call in sync.items()}
            for name, call in awaited.items():
                figures[name] = runner.run(awaited_ns(lambda _: call(), list(range(calls))))
            return figures

        return measure

    measure_get = reads(
        {"sync raw": lambda: raw.get(raw_one), "sync ours": lambda: cache.get(one)},
        {
            "async raw": lambda: peers.raw.get(raw_one),
            "async ours": lambda: acache.get(one),
            "cashews": lambda: peers.cashews.get(one),
            "aiocache": lambda: peers.aiocache.get(one),
        },
        settings.redis_calls,
    )
    measure_many = reads(
        {"sync raw": lambda: raw.mget(raw_keys), "sync ours": lambda: cache.get_many(keys)},
        {
            "async raw": lambda: peers.raw.mget(raw_keys),
            "async ours": lambda: acache.get_many(keys),
            "cashews": lambda: peers.cashews.get_many(*keys),
            "aiocache": lambda: peers.aiocache.multi_get(keys),
        },
        settings.redis_calls // 5,
    )

    def rows(number: str, what: str, raw_call: str, bound: float) -> list[Row]:
        sync = Row(
            f"{number}a",
            f"{what} from L2 (L1 in front misses), sync",
            "us",
            bound,
            True,
            (
                Line("sync ours", "MultilayerCache", "sync raw"),
                Line("sync raw", f"raw redis-py {raw_call} of the same bytes"),
            ),
        )
        lines = (
            Line("async ours", "AsyncMultilayerCache", "async raw"),
            Line("async raw", f"raw redis.asyncio {raw_call}"),
            *peers.lines(what, "async raw"),
        )
        return [sync, Row(f"{number}b", f"{what} from L2, asyncio", "us", bound, True, lines)]

    return [
        Group("l2_get", rows("4", "get", "GET", 1.1), measure_get),
        Group("l2_get_many", rows("5", "get_many(100)", "MGET", 1.3), measure_many),
    ]


# ----------------------------------------------------------------------------- 6. asyncio @cached
def async_cached_group(settings: Settings, runner: asyncio.Runner) -> Group:
    order = [int(i) for i in zipf_indices(settings.awaits // 5, KEYS)]
    plain = {n: n for n in range(KEYS)}
    acache = AsyncMultilayerCache([InMemoryLayer(max_size=10 * KEYS)])

    async def trivial(n: int) -> int | None:
        return plain.get(n)

    async def body(n: int) -> int:
        return n

    functions: dict[str, Callable[[int], Any]] = {
        "reference": trivial,
        "ours": acache.cached()(body),
    }
    if has("cashews"):
        import cashews

        memory = cashews.Cache()
        memory.setup("mem://")
        functions["cashews"] = memory.cache(ttl="1h")(body)
    if has("aiocache"):
        import aiocache

        functions["aiocache"] = aiocache.cached()(body)
    if has("theine"):
        import theine

        functions["theine"] = theine.Memoize(10 * KEYS, None)(body)

    async def warm() -> None:
        for function in functions.values():
            for n in range(KEYS):
                await function(n)

    runner.run(warm())

    def measure() -> Figures:
        runner.run(awaited_ns(functions["ours"], order))  # untimed: back in the CPU's caches
        return {
            name: runner.run(awaited_ns(function, order)) for name, function in functions.items()
        }

    labels = {
        "ours": "await @AsyncMultilayerCache.cached hit",
        "reference": "await async def returning dict.get",
        "cashews": "cashews @cache (mem://) hit",
        "aiocache": "aiocache @cached (memory) hit",
        "theine": "theine @Memoize async hit",
    }
    lines = tuple(
        Line(name, labels[name], None if name == "reference" else "reference")
        for name in ("ours", "reference", *[n for n in functions if n not in ("ours", "reference")])
    )
    row = Row("6", "asyncio @cached hit (L1)", "ns", 2.0, True, lines)
    return Group("async_cached", [row], measure, slices=5)


# ----------------------------------------------------------------------------- control: L1 hit
def l1_hit_group(calls: int) -> Group:
    keys = [f"key:{i}" for i in range(10_000)]
    layer = InMemoryLayer(max_size=20_000)
    cache = MultilayerCache([layer])
    for key in keys:
        layer.set(key, key)
    probe = [keys[i] for i in zipf_indices(calls, 10_000)]

    def measure() -> Figures:
        per_call_ns(layer.get, probe)  # untimed: the entries back in the CPU's caches
        return {"layer": per_call_ns(layer.get, probe), "ours": per_call_ns(cache.get, probe)}

    lines = (Line("ours", "MultilayerCache.get", "layer"), Line("layer", "InMemoryLayer.get"))
    note = "control: no hit path may get slower (README: 1.46-1.51x)"
    row = Row("0", "L1 hit (control)", "ns", 2.0, True, lines, note)
    return Group("l1_hit", [row], measure, slices=10)


# ----------------------------------------------------------------------------- 7. memory
def memory_group(settings: Settings) -> Group:
    measured = [("ours", "multilayercache", "int")]
    if settings.memory_peers:
        measured += [
            ("cachebox", "cachebox LRU", "int"),
            ("ours str", "multilayercache", "str"),
            ("cachebox str", "cachebox LRU", "str"),
            ("theine", "theine", "int"),
        ]
    installed = [
        entry for entry in measured if entry[1] == "multilayercache" or has(entry[1].split()[0])
    ]

    def measure() -> Figures:
        figures = {}
        for key, name, keys in installed:
            size = bytes_per_entry(name, keys)
            figures[key] = float("nan") if size is None else size
        return figures

    labels = {
        "ours": ("InMemoryLayer, int keys", "cachebox"),
        "cachebox": ("cachebox LRUCache, int keys", None),
        "ours str": ("InMemoryLayer, str keys", "cachebox str"),
        "cachebox str": ("cachebox LRUCache, str keys", None),
        "theine": ("theine Cache, int keys", "cachebox"),
    }
    lines = tuple(Line(key, *labels[key]) for key, _, _ in installed)
    note = "RSS growth per entry, 500,000 entries, a fresh process each, measured once"
    row = Row("7", "L1 memory per entry", "B", 90, False, lines, note)
    return Group("memory", [row], measure, once=True, long=True)


# ----------------------------------------------------------------------------- 8. replay
def replay_group(settings: Settings) -> Group:
    operations = zipf_operations(settings.replay, 1_000_000, 0.9)
    names = {"ours": "multilayercache", "cachebox": "cachebox LRU", "theine": "theine"}
    names = {key: name for key, name in names.items() if key == "ours" or has(key)}

    def measure() -> Figures:
        return {
            key: replay_seconds(CACHES[name](10_000), operations)[0] / len(operations) * 1e9
            for key, name in names.items()
        }

    lines = [Line("ours", "InMemoryLayer", "cachebox"), Line("cachebox", "cachebox LRUCache")]
    if "theine" in names:
        lines.append(Line("theine", "theine Cache", "cachebox"))
    note = (
        f"capacity 10,000; {len(operations):,} operations over 1,000,000 keys, s = 0.9 "
        "(get; set on a miss); ns per operation"
    )
    row = Row("8", "mixed zipf replay vs cachebox", "ns", 1.2, True, tuple(lines), note)
    return Group("replay", [row], measure, long=True)


# ----------------------------------------------------------------------------- the table
GROUPS = (
    "l1_hit",
    "set",
    "write_behind",
    "miss",
    "l2_get",
    "l2_get_many",
    "async_cached",
    "memory",
    "replay",
)


def build(
    names: list[str], settings: Settings, url: str, runner: asyncio.Runner, stack: ExitStack
) -> list[Group]:
    groups: list[Group] = []
    if "l1_hit" in names:
        groups.append(l1_hit_group(settings.awaits))
    if "set" in names:
        groups.append(set_group(settings))
    if "write_behind" in names:
        groups.append(write_behind_group(settings, url, runner, stack))
    if "miss" in names:
        groups.append(miss_group(settings))
    if "l2_get" in names or "l2_get_many" in names:
        groups += [g for g in l2_groups(settings, url, runner, stack) if g.name in names]
    if "async_cached" in names:
        groups.append(async_cached_group(settings, runner))
    if "memory" in names:
        groups.append(memory_group(settings))
    if "replay" in names:
        groups.append(replay_group(settings))
    return groups


def run_rounds(groups: list[Group], repeat: int, best_of: int) -> dict[str, dict[str, list[float]]]:
    """Each group's figures over ``repeat`` rounds, all groups measured in every round,
    rotated so that no group always runs first (right after another's garbage) or last."""
    samples: dict[str, dict[str, list[float]]] = {group.name: {} for group in groups}
    for round_index in range(repeat):
        shift = round_index % len(groups)
        for group in groups[shift:] + groups[:shift]:
            if group.once and round_index:
                continue
            for key, value in group.round(best_of).items():
                samples[group.name].setdefault(key, []).append(value)
        print(f"round {round_index + 1}/{repeat} done", file=sys.stderr, flush=True)
    return samples


def spread(values: list[float], scale: float, digits: int) -> str:
    median = statistics.median(values) / scale
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return (
        f"{median:.{digits}f} ({min(values) / scale:.{digits}f}-{max(values) / scale:.{digits}f})"
    )


def table(groups: list[Group], samples: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = []
    failed = []
    for group in groups:
        figures = samples[group.name]
        for row in group.rows:
            value = row.judged(figures)
            unit = "x" if row.on_ratio else f" {row.unit}"
            bound = f"{row.bound:g}{unit}"
            if value is None:
                lines.append(f"{row.number:<3} {row.title}: not measured (bound <= {bound})  SKIP")
            else:
                shown = f"{value:.0f}" if unit == " ns" else f"{value:.2f}"
                # judged as shown: "1.30x (bound <= 1.3x)" passes, whatever digits follow
                verdict = "PASS" if float(shown) <= row.bound else "FAIL"
                if verdict == "FAIL":
                    failed.append(row.number)
                lines.append(
                    f"{row.number:<3} {row.title}: {shown}{unit} (bound <= {bound})  {verdict}"
                )
            if row.note:
                lines.append(f"      note: {row.note}")
            scale = UNITS[row.unit]
            digits = 2 if row.unit == "us" else (1 if row.unit == "B" else 0)
            for line in row.lines:
                if line.key not in figures:
                    continue  # a peer that is not installed
                figure = spread(figures[line.key], scale, digits)
                text = f"      {line.label:<42} {figure + ' ' + row.unit:>24}"
                if line.reference in figures:
                    ratio = spread(ratios(figures[line.key], figures[line.reference]), 1, 2)
                    reference = next(r.label for r in row.lines if r.key == line.reference)
                    text += f"   {ratio + 'x':>18} {reference}"
                lines.append(text)
            lines.append("")
    lines.append(
        f"{len(failed)} row(s) out of bound: {', '.join(failed)}"
        if failed
        else "every row in bound"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=None, help="rounds (default 7; quick 2)")
    parser.add_argument("--quick", action="store_true", help="few rounds of few operations")
    parser.add_argument("--rows", nargs="+", choices=GROUPS, default=list(GROUPS))
    args = parser.parse_args()
    repeat = args.repeat or (2 if args.quick else 7)
    if args.quick:
        settings = Settings(1_000, 100, 20, 1_000, 30_000, False, 1)
    else:
        settings = Settings(10_000, 1_000, 300, 10_000, 1_000_000, True, 3)
    started = time.perf_counter()
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer.start())
        runner = stack.enter_context(asyncio.Runner())
        groups = build(args.rows, settings, server.url, runner, stack)
        samples = run_rounds(groups, repeat, settings.best_of)
    print(
        f"lean paths (issue 24): python {sys.version.split()[0]}, "
        f"{'compiled' if _core.COMPILED else 'pure Python'} core, loopback Redis; "
        f"medians of {repeat} rounds (min-max), ratios per round{'; --quick' if args.quick else ''}"
    )
    print()
    print("\n".join(table(groups, samples)))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
