"""Batches of keys, as the manager takes them (``@cached``'s keys: ``decorate.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def unique(keys: Iterable[Any]) -> list[Any]:
    """Keys in first-seen order, without repeats."""
    keys = list(keys)
    try:
        return list(dict.fromkeys(keys))
    except TypeError:
        for key in keys:
            single(key, None)
        raise


def single(key: Any, value: Any) -> dict[Any, Any]:
    """``{key: value}``, with the cache's own error for a key that cannot be one."""
    try:
        return {key: value}
    except TypeError:
        raise unhashable(key) from None


def unhashable(key: Any) -> TypeError:
    return TypeError(f"cache keys must be hashable, got unhashable {type(key).__name__!r}")
