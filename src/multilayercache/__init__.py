"""multilayercache: a fast, smart, multi-layer cache for Python.

An in-process L1 with W-TinyLFU admission (compiled core) in front of a shared Redis L2,
coordinated by a manager::

    from multilayercache import InMemoryLayer, RedisLayer, MultilayerCache
    cache = MultilayerCache([InMemoryLayer(max_size=10_000), RedisLayer(url, prefix="app:")])

The Redis layers need the ``redis`` extra (``pip install 'multilayercache[redis]'``): they
are imported on first use, so that an L1-only cache runs without redis installed.
"""

import importlib.util
from typing import TYPE_CHECKING, Any

from .aio.cache import AsyncMultilayerCache
from .analytics.autoresize import AutoResize
from .analytics.insights import CacheInsights, LayerInsights, WindowRates
from .analytics.options import InsightsOptions
from .core.adaptive import AdaptiveTTL
from .core.backoff import RetryPolicy
from .core.breaker import BreakerPolicy
from .core.errors import (
    CacheError,
    LayerError,
    LayerRateLimited,
    LayerUnavailableError,
    LoadGateTimeout,
    LoadRateLimited,
    LoadTimeoutError,
    QueueFull,
    RecursiveLoadError,
    SerializationError,
    ThrottledLoadError,
    UntrustedDataError,
    WriteQueueClosed,
)
from .core.events import Anomaly
from .core.latency import Percentiles
from .core.loadcontext import LoadContext, with_context
from .core.missing import MISSING
from .core.options import LayerPolicy, LoadOptions
from .core.ratelimit import RateLimit, RateLimitStats
from .core.stats import CacheStats, HotKey, LayerSnapshot, LayerStats
from .core.writepolicy import WriteBehind, WriteThrough
from .core.writequeue import WriteQueueStats
from .deadletter import DeadLetter, read_dead_letters, replay, replay_into_redis
from .layers.memory import InMemoryLayer
from .layers.writer import AsyncWriterLayer, WriterLayer
from .serializers import Compressed, MsgpackSerializer, SignedPickleSerializer
from .sync.cache import MultilayerCache

__all__ = [
    "MISSING",
    "AdaptiveTTL",
    "Anomaly",
    "AsyncMultilayerCache",
    "AsyncRedisLayer",
    "AsyncWriterLayer",
    "AutoResize",
    "BreakerPolicy",
    "CacheError",
    "CacheInsights",
    "CacheStats",
    "Compressed",
    "DeadLetter",
    "HotKey",
    "InMemoryLayer",
    "InsightsOptions",
    "LayerError",
    "LayerInsights",
    "LayerPolicy",
    "LayerRateLimited",
    "LayerSnapshot",
    "LayerStats",
    "LayerUnavailableError",
    "LoadGateTimeout",
    "LoadContext",
    "LoadOptions",
    "LoadRateLimited",
    "LoadTimeoutError",
    "MsgpackSerializer",
    "MultilayerCache",
    "Percentiles",
    "QueueFull",
    "RateLimit",
    "RateLimitStats",
    "RecursiveLoadError",
    "RedisLayer",
    "RetryPolicy",
    "SerializationError",
    "SignedPickleSerializer",
    "ThrottledLoadError",
    "UntrustedDataError",
    "WindowRates",
    "WriteBehind",
    "WriteQueueClosed",
    "WriteQueueStats",
    "WriteThrough",
    "WriterLayer",
    "read_dead_letters",
    "replay",
    "replay_into_redis",
    "with_context",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .layers.redis import AsyncRedisLayer, RedisLayer

_NEED_REDIS = ("AsyncRedisLayer", "RedisLayer")


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):  # e.g. blocked in sys.modules
        return False


if not all(_installed(module) for module in ("redis", "hiredis")):
    # Without the redis extra, ``from multilayercache import *`` leaves them out rather
    # than fail; naming one still says which extra it needs.
    __all__ = [name for name in __all__ if name not in _NEED_REDIS]


def __getattr__(name: str) -> Any:
    """The Redis layers, imported on first use (``layers/redis`` says what it needs)."""
    if name in _NEED_REDIS:
        from .layers import redis

        return getattr(redis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
