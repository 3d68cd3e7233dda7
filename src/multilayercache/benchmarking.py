"""Timing helpers shared by ``python -m multilayercache bench`` and ``benchmarks/``.

Speed is compared as ratios measured in one process, one after the other, with medians over
repeats, because the absolute numbers of a shared machine drift from run to run.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .layers.memory import InMemoryLayer


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


def hit_getters(keys: Sequence[Any]) -> dict[str, Callable[[Any], Any]]:
    """``get`` of ``dict``, ``InMemoryLayer`` and every installed peer, all holding ``keys``."""
    capacity = 2 * len(keys)
    getters: dict[str, Callable[[Any], Any]] = {}
    plain = {key: key for key in keys}
    getters["dict.get"] = plain.get
    ours = InMemoryLayer(max_size=capacity)
    for key in keys:
        ours.set(key, key)
    getters["multilayercache"] = ours.get
    for name, build in _PEERS.items():
        try:
            getters[name] = build(keys, capacity)
        except ImportError:
            continue
    return getters


def _cachebox(keys: Sequence[Any], capacity: int) -> Callable[[Any], Any]:
    import cachebox

    cache = cachebox.LRUCache(capacity)
    for key in keys:
        cache.insert(key, key)
    return cache.get


def _cachetools(keys: Sequence[Any], capacity: int) -> Callable[[Any], Any]:
    import cachetools

    cache = cachetools.LRUCache(capacity)
    for key in keys:
        cache[key] = key
    return cache.get


def _lru_dict(keys: Sequence[Any], capacity: int) -> Callable[[Any], Any]:
    import lru

    cache = lru.LRU(capacity)
    for key in keys:
        cache[key] = key
    return cache.get


def _theine(keys: Sequence[Any], capacity: int) -> Callable[[Any], Any]:
    import theine

    cache = theine.Cache(capacity)
    for key in keys:
        cache.set(key, key)
    return cache.get


def _moka(keys: Sequence[Any], capacity: int) -> Callable[[Any], Any]:
    import moka_py

    cache = moka_py.Moka(capacity)
    for key in keys:
        cache.set(key, key)
    return cache.get


_PEERS: dict[str, Callable[[Sequence[Any], int], Callable[[Any], Any]]] = {
    "cachebox LRU": _cachebox,
    "lru-dict": _lru_dict,
    "cachetools LRU": _cachetools,
    "theine": _theine,
    "moka-py": _moka,
}


def hit_latencies(entries: int = 10_000, probes: int = 1_000) -> dict[tuple[str, str, str], float]:
    """ns per ``get`` on a hit for each (distribution, key kind, library)."""
    results: dict[tuple[str, str, str], float] = {}
    rng = np.random.default_rng(11)
    for kind in ("int", "str"):
        keys: list[Any] = (
            list(range(entries)) if kind == "int" else [f"key:{i}" for i in range(entries)]
        )
        getters = hit_getters(keys)
        for distribution in ("zipf", "uniform"):
            if distribution == "zipf":
                indices = zipf_indices(probes, entries)
            else:
                indices = rng.integers(0, entries, probes)
            probe = [keys[i] for i in indices]
            for name, get in getters.items():
                results[(distribution, kind, name)] = ns_per_call(get, probe)
    return results


def hit_latency_table(entries: int = 10_000) -> str:
    """A printable table of :func:`hit_latencies` with ratios to ``dict.get``."""
    results = hit_latencies(entries)
    names = list(dict.fromkeys(name for (_, _, name) in results))
    lines = [
        f"get on a hit, {entries:,} entries, 1,000 probe keys; ns per call (ratio to dict.get)"
    ]
    lines.append(f"{'keys':<14}" + "".join(f"{name:>18}" for name in names))
    for distribution in ("zipf", "uniform"):
        for kind in ("int", "str"):
            base = results[(distribution, kind, "dict.get")]
            row = [results[(distribution, kind, name)] for name in names]
            cells = [f"{value:7.1f} ({value / base:4.2f}x)" for value in row]
            lines.append(f"{distribution + ' ' + kind:<14}" + "".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)
