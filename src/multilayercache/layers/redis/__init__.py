"""The shared layer (L2): Redis through redis-py with hiredis, single server or cluster.

``codec.py`` is everything that does no IO (keys, expiry, values, counters), shared by
``RedisLayer`` (``sync.py``) and ``AsyncRedisLayer`` (``aio.py``); ``fastpath.py`` packs
reads with hiredis, in one place for both.
"""

try:
    import hiredis  # noqa: F401
    import redis  # noqa: F401
except ImportError as missing:  # the one place that says so, for every module below
    raise ImportError(
        f"multilayercache's Redis layers need redis and hiredis ({missing.name} is not "
        "installed): pip install 'multilayercache[redis]'"
    ) from missing

from .aio import AsyncRedisLayer
from .sync import RedisLayer

__all__ = ["AsyncRedisLayer", "RedisLayer"]
