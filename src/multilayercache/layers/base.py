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


__all__ = [
    "LAYER_METHODS",
    "MISSING",
    "AsyncLayer",
    "Layer",
    "LayerError",
    "LayerPolicy",
    "LayerUnavailableError",
    "PromotionRule",
]
