"""Cache layers: one module per kind."""

from .base import MISSING, AsyncLayer, Layer, LayerError, LayerPolicy, LayerUnavailableError
from .memory import InMemoryLayer
from .redis import AsyncRedisLayer, RedisLayer

__all__ = [
    "MISSING",
    "AsyncLayer",
    "AsyncRedisLayer",
    "InMemoryLayer",
    "Layer",
    "LayerError",
    "LayerPolicy",
    "LayerUnavailableError",
    "RedisLayer",
]
