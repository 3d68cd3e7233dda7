"""Argument checks shared by both twins of ``InMemoryLayer``, with clear errors (off the hot
path: construction, weighers, bad keys)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ...core.ttl import ttl_seconds

DEFAULT_MAX_SIZE = 10_000
MAX_CAPACITY = 1 << 62


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


def resized_bound(max_size: object, max_weight: object, weighted: bool) -> int:
    """Check the arguments of ``resize``: the bound the layer was built with (``max_size``,
    or ``max_weight`` for a weigher's layer), a new value of it."""
    given, other = ("max_weight", "max_size") if weighted else ("max_size", "max_weight")
    new, wrong = (max_weight, max_size) if weighted else (max_size, max_weight)
    if wrong is not None:
        raise ValueError(f"this layer is bounded by {given}, not {other}: resize({given}=...)")
    if new is None:
        raise ValueError(f"resize needs the new {given}")
    return _positive_int(new, given)


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{what} must be > 0, got {value!r}")
    if value > MAX_CAPACITY:
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
    return clock


def default_ttl_seconds(ttl: object) -> float:
    """The layer default: ``None`` means entries never expire."""
    return math.inf if ttl is None else ttl_seconds(ttl, "ttl")


def checked_top_n(n: object, what: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{what} must be an int >= 0, got {n!r}")
    return n


def unhashable_key(key: Any) -> TypeError:
    return TypeError(f"cache keys must be hashable, got unhashable {type(key).__name__!r}")


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
"""A counter's range: what a shared layer's MessagePack (and the README's values) holds."""


def value_copier(copy: object) -> Callable[[Any], Any] | None:
    """``InMemoryLayer(copy=...)``: ``False`` (share the objects), ``True`` or
    ``"deepcopy"`` (``copy.deepcopy``), ``"pickle"`` (a pickle round trip, as Django's
    local-memory cache: about 3x faster than deepcopy on plain data, for picklable values
    only), or a function returning a copy of a value (a model's ``model_copy``, ...)."""
    if copy is False or copy is None:
        return None
    if copy is True or copy == "deepcopy":
        import copy as copying

        return copying.deepcopy
    if copy == "pickle":
        return _pickled_copy
    if callable(copy):
        return copy
    raise TypeError(
        f"copy must be a bool, 'deepcopy', 'pickle' or a function returning a copy, got {copy!r}"
    )


def _pickled_copy(value: Any) -> Any:
    import pickle

    return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))


def checked_delta(delta: object) -> int:
    """The ``delta`` of ``incr`` / ``decr``: an int (not a bool)."""
    if type(delta) is not int:
        raise TypeError(f"delta must be an int, got {type(delta).__name__} {delta!r}")
    return delta


def counted(value: object, delta: int, key: Any) -> int:
    """``value + delta`` for a counter: ``value`` must be an int (not a bool), the sum a
    64-bit one."""
    if type(value) is not int:
        raise TypeError(f"incr: the value of {key!r} is not an integer: {type(value).__name__}")
    count = value + delta
    if not INT64_MIN <= count <= INT64_MAX:
        raise OverflowError(f"incr: the counter {key!r} would leave the 64-bit range")
    return count
