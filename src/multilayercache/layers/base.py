"""What a layer is (the ``Layer`` and ``AsyncLayer`` protocols the managers check), and how a
manager treats each one (``LayerPolicy``).

A layer is a cache on its own: it decides its TTLs, admission and eviction. The managers
(``MultilayerCache``, ``AsyncMultilayerCache``) only coordinate layers, fastest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from ..core.errors import LayerError, LayerUnavailableError
from ..core.missing import MISSING
from ..core.options import LayerPolicy, PromotionRule
from ..core.stats import LayerStats
from ..core.tiers import LAYER_METHODS
from ..core.ttl import TTL


@runtime_checkable
class Layer(Protocol):
    """A synchronous layer. ``get_many`` returns the hits only."""

    name: str

    def get(self, key: Any, default: Any = None) -> Any: ...

    def set(self, key: Any, value: Any, ttl: TTL | None = None) -> None: ...

    def delete(self, key: Any) -> bool: ...

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]: ...

    def set_many(self, mapping: Mapping[Any, Any], ttl: TTL | None = None) -> None: ...

    def stats(self) -> LayerStats: ...


@runtime_checkable
class AsyncLayer(Protocol):
    """An asyncio layer: the same methods as ``Layer``, as coroutines (``stats`` is plain)."""

    name: str

    async def get(self, key: Any, default: Any = None) -> Any: ...

    async def set(self, key: Any, value: Any, ttl: TTL | None = None) -> None: ...

    async def delete(self, key: Any) -> bool: ...

    async def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]: ...

    async def set_many(self, mapping: Mapping[Any, Any], ttl: TTL | None = None) -> None: ...

    def stats(self) -> LayerStats: ...


@runtime_checkable
class AtomicLayer(Protocol):
    """What a layer offers for the managers' primitives (optional). Each reads and writes
    a key in one atomic step; the slowest layer of a cache that offers one decides it for
    the cache (see ``multilayercache.core.plans.primitives``). ``add_entry`` /
    ``touch_entry`` / ``incr_entry`` take a ``Lifetime`` instead of ``ttl`` and are used
    when present (both of this package's layers have them)."""

    def add(self, key: Any, value: Any, ttl: TTL | None = None) -> bool:
        """Store ``value`` unless the key holds a fresh one; True if stored."""
        ...

    def touch(self, key: Any, ttl: TTL | None = None) -> bool:
        """A new TTL for the key's fresh value, the value kept; False if none."""
        ...

    def incr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """Add ``delta`` to the key's counter (a missing key starts at 0, living
        ``ttl``); the new count."""
        ...


@runtime_checkable
class AsyncAtomicLayer(Protocol):
    """``AtomicLayer`` for asyncio layers: the same methods, as coroutines."""

    async def add(self, key: Any, value: Any, ttl: TTL | None = None) -> bool: ...

    async def touch(self, key: Any, ttl: TTL | None = None) -> bool: ...

    async def incr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int: ...


__all__ = [
    "LAYER_METHODS",
    "MISSING",
    "AsyncAtomicLayer",
    "AsyncLayer",
    "AtomicLayer",
    "Layer",
    "LayerError",
    "LayerPolicy",
    "LayerUnavailableError",
    "PromotionRule",
]
