"""multilayercache: a fast, smart, multi-layer cache for Python.

An in-process L1 with W-TinyLFU admission (compiled core) in front of a shared Redis L2,
coordinated by a manager::

    from multilayercache import InMemoryLayer, RedisLayer, MultilayerCache
    cache = MultilayerCache([InMemoryLayer(max_size=10_000), RedisLayer(url, prefix="app:")])
"""

from .aio import AsyncMultilayerCache
from .latency import Percentiles
from .layering import CacheStats
from .layers.base import MISSING, LayerError, LayerPolicy, LayerUnavailableError
from .layers.memory import InMemoryLayer
from .layers.redis import AsyncRedisLayer, RedisLayer
from .manager import MultilayerCache
from .serializers import (
    MsgpackSerializer,
    SerializationError,
    SignedPickleSerializer,
    UntrustedDataError,
)
from .stats import HotKey, LayerSnapshot, LayerStats

__all__ = [
    "MISSING",
    "AsyncMultilayerCache",
    "AsyncRedisLayer",
    "CacheStats",
    "HotKey",
    "InMemoryLayer",
    "LayerError",
    "LayerPolicy",
    "LayerSnapshot",
    "LayerStats",
    "LayerUnavailableError",
    "MsgpackSerializer",
    "MultilayerCache",
    "Percentiles",
    "RedisLayer",
    "SerializationError",
    "SignedPickleSerializer",
    "UntrustedDataError",
]
__version__ = "0.1.0"
