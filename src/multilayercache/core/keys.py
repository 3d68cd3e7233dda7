"""Batches of keys, as the manager takes them (``@cached``'s keys: ``decorate.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def unique(keys: Iterable[Any]) -> list[Any]:
    """Keys in first-seen order, without repeats."""
    try:
        return list(dict.fromkeys(keys))
    except TypeError:
        raise TypeError("cache keys must be hashable") from None
