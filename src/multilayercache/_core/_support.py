"""IO-free helpers shared by both twins of ``InMemoryLayer`` (not a twin itself).

Everything here runs off the hot path: argument checks with clear errors, deadline
arithmetic, and turning raw counters into ``LayerStats``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..stats import HotKey
from ..ttl import NANOSECONDS_PER_SECOND, ttl_seconds
from ._timerwheel_py import NO_DEADLINE

DEFAULT_MAX_SIZE = 10_000


def layer_bounds(max_size: object, max_weight: object, weigher: object) -> tuple[int, bool]:
    """Check the size arguments; return ``(capacity, weighted)``."""
    if max_weight is not None or weigher is not None:
        if max_size is not None:
            raise ValueError("give either max_size or max_weight (with a weigher), not both")
        if max_weight is None:
            raise ValueError("a weigher needs max_weight, the bound on the total weight")
        if weigher is None:
            raise ValueError("max_weight needs a weigher: a function (key, value) -> int")
        if not callable(weigher):
            raise TypeError(f"weigher must be callable, got {type(weigher).__name__}")
        return _positive_int(max_weight, "max_weight"), True
    if max_size is None:
        return DEFAULT_MAX_SIZE, False
    return _positive_int(max_size, "max_size"), False


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{what} must be > 0, got {value!r}")
    if value > (1 << 62):
        raise ValueError(f"{what} is too large: {value!r}")
    return value


def checked_weight(weight: object, key: Any) -> int:
    """Validate what the weigher returned for ``key``."""
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise TypeError(f"weigher must return an int, got {type(weight).__name__} for key {key!r}")
    if weight < 0:
        raise ValueError(f"weigher must return a weight >= 0, got {weight!r} for key {key!r}")
    return weight


def checked_clock(clock: object) -> Callable[[], float] | None:
    if clock is not None and not callable(clock):
        raise TypeError(f"clock must be a callable returning seconds, got {type(clock).__name__}")
    return clock  # type: ignore[return-value]


def default_ttl_seconds(ttl: object) -> float:
    """The layer default: ``None`` means entries never expire."""
    return math.inf if ttl is None else ttl_seconds(ttl, "ttl")


def seconds_to_ns(seconds: float) -> int:
    """Seconds (from an injected clock) to integer nanoseconds, as the compiled twin does:
    through a C double, truncated toward zero."""
    return int(float(seconds) * NANOSECONDS_PER_SECOND)


def deadline_after(now_ns: int, ttl: float) -> int:
    """The deadline ``ttl`` seconds after ``now_ns``, or ``NO_DEADLINE``."""
    if ttl == math.inf:
        return NO_DEADLINE
    return min(now_ns + int(ttl * NANOSECONDS_PER_SECOND), NO_DEADLINE - 1)


def unhashable_key(key: Any) -> TypeError:
    return TypeError(f"cache keys must be hashable, got unhashable {type(key).__name__!r}")


def rank_hot_keys(
    cached: list[tuple[Any, int, int]],
    missed: Any,
    frequency: Callable[[int], int],
    n: int,
) -> list[HotKey]:
    """The ``n`` hottest keys by estimated frequency, from the cached entries
    ``(key, key_hash, hits)`` and the keys that keep missing (a ``HotKeyTable``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"hot_keys must be an int >= 0, got {n!r}")
    found: dict[int, HotKey] = {}
    for key, key_hash, hits in cached:
        found[key_hash] = HotKey(key, hits, missed.count_of(key_hash), frequency(key_hash))
    for key, misses, key_hash in missed.top(n):
        if key_hash not in found:
            found[key_hash] = HotKey(key, 0, misses, frequency(key_hash))
    ranked = sorted(found.values(), key=lambda hot: (-hot.frequency, -(hot.hits + hot.misses)))
    return ranked[:n]
