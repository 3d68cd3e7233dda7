"""Measuring helpers for ``python -m multilayercache bench`` (and ``benchmarks/``): the peer
caches, timing, zipf keys. The hit-ratio tables of the development traces, and the bounds
the hit-ratio tests hold the policy to, live with the benchmarks
(``benchmarks/reference_hit_ratios.py``): they are not part of the library.

Speed is compared as ratios measured in one process, one after the other, with medians over
repeats, because the absolute numbers of a shared machine drift from run to run.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..layers.memory import InMemoryLayer


@dataclass(frozen=True)
class CacheUnderTest:
    """One cache, ready to measure: its own ``get`` (for timing, as users call it), and a
    ``lookup`` returning ``None`` on a miss and a ``store`` (for replays)."""

    native_get: Callable[[Any], Any]
    lookup: Callable[[Any], Any]
    store: Callable[[Any, Any], Any]


def _ours(capacity: int) -> CacheUnderTest:
    cache = InMemoryLayer(max_size=capacity)
    return CacheUnderTest(cache.get, cache.get, cache.set)


def _cachebox_lru(capacity: int) -> CacheUnderTest:
    import cachebox

    cache: cachebox.LRUCache[Any, Any] = cachebox.LRUCache(capacity)
    return CacheUnderTest(cache.get, cache.get, cache.insert)


def _cachebox_lfu(capacity: int) -> CacheUnderTest:
    import cachebox

    cache: cachebox.LFUCache[Any, Any] = cachebox.LFUCache(capacity)
    return CacheUnderTest(cache.get, cache.get, cache.insert)


def _cachetools_lru(capacity: int) -> CacheUnderTest:
    import cachetools

    cache: cachetools.LRUCache[Any, Any] = cachetools.LRUCache(capacity)
    return CacheUnderTest(cache.get, cache.get, cache.__setitem__)


def _lru_dict(capacity: int) -> CacheUnderTest:
    import lru

    cache = lru.LRU(capacity)
    return CacheUnderTest(cache.get, cache.get, cache.__setitem__)


def _theine(capacity: int) -> CacheUnderTest:
    import theine

    cache: Any = theine.Cache(capacity)

    def lookup(key: Any) -> Any:
        value, found = cache.get(key)  # theine 2 returns (value, found)
        return value if found else None

    return CacheUnderTest(cache.get, lookup, cache.set)


def _moka(capacity: int) -> CacheUnderTest:
    import moka_py

    cache: Any = moka_py.Moka(capacity)

    def store(key: Any, value: Any) -> None:
        # Run moka's pending maintenance after every set, as the shared README did, so that
        # it never holds more than ``capacity`` entries (left lazy it overshoots).
        cache.set(key, value)
        cache.run_pending_tasks()

    return CacheUnderTest(cache.get, cache.get, store)


CACHES: dict[str, Callable[[int], CacheUnderTest]] = {
    "multilayercache": _ours,
    "cachebox LRU": _cachebox_lru,
    "cachebox LFU": _cachebox_lfu,
    "lru-dict": _lru_dict,
    "cachetools LRU": _cachetools_lru,
    "theine": _theine,
    "moka-py": _moka,
}
"""Every cache we measure, by name: ``CACHES[name](capacity)``."""


def installed(names: Sequence[str]) -> dict[str, Callable[[int], CacheUnderTest]]:
    """The named caches whose library is installed."""
    found = {}
    for name in names:
        try:
            CACHES[name](10)
        except ImportError:
            continue
        found[name] = CACHES[name]
    return found


def zipf_indices(count: int, universe: int, exponent: float = 1.1, seed: int = 7) -> np.ndarray:
    """``count`` indices in ``[0, universe)`` drawn from a Zipf law (rank 0 hottest)."""
    rng = np.random.default_rng(seed)
    drawn: list[np.ndarray] = []
    have = 0
    while have < count:
        ranks = rng.zipf(exponent, 2 * count)
        ranks = ranks[ranks <= universe] - 1
        drawn.append(ranks)
        have += len(ranks)
    return np.concatenate(drawn)[:count]


def ns_per_call(
    function: Callable[[Any], Any], arguments: Sequence[Any], repeat: int = 15
) -> float:
    """Median over ``repeat`` runs of the time per call of ``function(argument)``, looping
    over ``arguments`` in a Python ``for`` loop (as a caller would), in nanoseconds."""
    number = max(1, 200_000 // max(1, len(arguments)))
    times = timeit.repeat(
        "for argument in arguments: function(argument)",
        globals={"function": function, "arguments": arguments},
        number=number,
        repeat=repeat,
    )
    return statistics.median(times) / (number * len(arguments)) * 1e9


HIT_LATENCY_CACHES = (
    "multilayercache",
    "cachebox LRU",
    "lru-dict",
    "cachetools LRU",
    "theine",
    "moka-py",
)


def skipped_peers(names: Sequence[str] = HIT_LATENCY_CACHES) -> list[str]:
    """The named caches that are left out because their library is not installed."""
    found = installed(names)
    return [name for name in names if name not in found]


def hit_getters(keys: Sequence[Any]) -> dict[str, Callable[[Any], Any]]:
    """``get`` of ``dict`` and of every installed cache, each holding ``keys``."""
    getters: dict[str, Callable[[Any], Any]] = {"dict.get": {key: key for key in keys}.get}
    for name, make in installed(HIT_LATENCY_CACHES).items():
        cache = make(2 * len(keys))
        for key in keys:
            cache.store(key, key)
        getters[name] = cache.native_get
    return getters


_DISTRIBUTIONS = ("zipf", "uniform")
_KEY_KINDS = ("int", "str")


def hit_latency_measurements() -> int:
    """How many measurements :func:`hit_latencies` makes (one per table cell), for a
    progress bar."""
    return len(_DISTRIBUTIONS) * len(_KEY_KINDS) * (1 + len(installed(HIT_LATENCY_CACHES)))


def hit_latencies(
    entries: int = 10_000,
    probes: int = 1_000,
    repeat: int = 15,
    progress: Callable[[int], object] | None = None,
) -> dict[tuple[str, str, str], float]:
    """ns per ``get`` on a hit for each (distribution, key kind, library); ``progress(1)``
    is called after each measurement, ``repeat`` is passed to :func:`ns_per_call`."""
    results: dict[tuple[str, str, str], float] = {}
    rng = np.random.default_rng(11)
    for kind in _KEY_KINDS:
        keys: list[Any] = (
            list(range(entries)) if kind == "int" else [f"key:{i}" for i in range(entries)]
        )
        getters = hit_getters(keys)
        for distribution in _DISTRIBUTIONS:
            if distribution == "zipf":
                indices = zipf_indices(probes, entries)
            else:
                indices = rng.integers(0, entries, probes)
            probe = [keys[i] for i in indices]
            for name, get in getters.items():
                results[(distribution, kind, name)] = ns_per_call(get, probe, repeat)
                if progress:
                    progress(1)
    return results


def hit_latency_table(
    entries: int = 10_000, repeat: int = 15, progress: Callable[[int], object] | None = None
) -> str:
    """A printable table of :func:`hit_latencies` with ratios to ``dict.get``."""
    results = hit_latencies(entries, repeat=repeat, progress=progress)
    names = list(dict.fromkeys(name for (_, _, name) in results))
    lines = [
        f"get on a hit, {entries:,} entries, 1,000 probe keys; ns per call (ratio to dict.get), "
        f"median of {repeat} runs"
    ]
    lines.append(f"{'keys':<14}" + "".join(f"{name:>18}" for name in names))
    for distribution in _DISTRIBUTIONS:
        for kind in _KEY_KINDS:
            base = results[(distribution, kind, "dict.get")]
            row = [results[(distribution, kind, name)] for name in names]
            cells = [f"{value:7.1f} ({value / base:4.2f}x)" for value in row]
            lines.append(f"{distribution + ' ' + kind:<14}" + "".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)
