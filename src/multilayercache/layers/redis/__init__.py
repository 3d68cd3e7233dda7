"""The shared layer (L2): Redis through redis-py with hiredis, single server or cluster.

``codec.py`` is everything that does no IO (keys, expiry, values, counters), shared by
``RedisLayer`` (``sync.py``) and ``AsyncRedisLayer`` (``aio.py``); ``fastpath.py`` packs
reads with hiredis, in one place for both.
"""

from .aio import AsyncRedisLayer
from .sync import RedisLayer

__all__ = ["AsyncRedisLayer", "RedisLayer"]
