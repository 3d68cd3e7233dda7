"""``get_many`` and ``set_many`` of both twins of ``InMemoryLayer``: one ``get`` or ``set``
per key, with every argument checked before the first write."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...core.ttl import TTL, ttl_seconds

_MISSING = object()


def hits_among(get: Callable[[Any, Any], Any], keys: Iterable[Any]) -> dict[Any, Any]:
    """The values ``get`` finds among ``keys`` (hits only), each lookup counted."""
    found = {}
    for key in keys:
        value = get(key, _MISSING)
        if value is not _MISSING:
            found[key] = value
    return found


def set_each(
    set_one: Callable[[Any, Any, TTL | None], None],
    check_key: Callable[[Any], object],
    mapping: Mapping[Any, Any],
    ttl: TTL | None,
) -> None:
    """``set_one`` every item; the TTL and every key are checked first, so bad input
    writes nothing."""
    if ttl is not None:
        ttl_seconds(ttl)
    items = list(mapping.items())
    for key, _ in items:
        check_key(key)
    for key, value in items:
        set_one(key, value, ttl)
