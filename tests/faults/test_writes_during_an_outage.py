"""``set`` and ``delete`` while L2 is down, on the sync and the asyncio manager.

What the caller is told: the write raises the failing layer's ``LayerError``, whose
message starts with the layer's name (``SET failed: ...`` or, once the breaker is open,
``circuit breaker open``). What L1 then holds: never the value being replaced, nor the one
that may not have been written; the key is gone from it, so that reads fall through to
the loader (or to L2 once it is back). L2 itself may or may not have the write: a timeout
does not say, and a timed-out SET can land after all (the last test)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.core.errors import LayerError
from multilayercache.tools.servers import RedisServer

from support import Blocking, expected, wait_until

REPLACED, NEW = "old value", "new value"


class Outage:
    """L1 + L2 caches of one kind (``sync`` or ``asyncio``) over ``server``, as blocking
    views (``support.Blocking``), so one spec drives both."""

    def __init__(self, kind: str, server: RedisServer, prefix: str) -> None:
        self.loop = asyncio.new_event_loop() if kind == "asyncio" else None
        self.l1 = InMemoryLayer(max_size=100, name="l1")
        if self.loop is None:
            self.cache = MultilayerCache(
                [self.l1, RedisLayer(server.url, prefix=prefix, name="l2")]
            )
        else:
            l2 = AsyncRedisLayer(server.url, prefix=prefix, name="l2")
            self.cache = Blocking(AsyncMultilayerCache([self.l1, l2]), self.loop)

    def loader(self) -> Any:
        if self.loop is None:
            return expected

        async def load(key: str) -> str:
            return expected(key)

        return load

    def close(self) -> None:
        try:
            self.cache.close()
        finally:
            if self.loop is not None:
                self.loop.close()


@pytest.fixture(params=["sync", "asyncio"])
def outage(
    request: pytest.FixtureRequest, doomed_server: RedisServer, prefix: str
) -> Iterator[Outage]:
    built = Outage(request.param, doomed_server, prefix)
    yield built
    built.close()


def test_a_failed_set_names_the_layer_and_l1_keeps_neither_value(
    outage: Outage, doomed_server: RedisServer
) -> None:
    cache, l1 = outage.cache, outage.l1
    cache.set("k", REPLACED)
    doomed_server.kill()
    with pytest.raises(LayerError, match=r"^l2: SET failed: "):
        cache.set("k", NEW)
    assert "k" not in l1
    assert cache.get_or_load("k", outage.loader()) == expected("k")  # the source of truth
    with pytest.raises(LayerError, match=r"^l2: "):  # set_many: the same, for every key
        cache.set_many({"k": NEW, "k2": NEW})
    assert "k" not in l1 and "k2" not in l1
    # Failures open the breaker; from then on a write fails at once, and says why.
    for _ in range(10):
        start = time.perf_counter()
        with pytest.raises(LayerError) as failed:
            cache.set("k", NEW)
        if "circuit breaker open" in str(failed.value):
            break
    assert str(failed.value).startswith("l2: circuit breaker open")
    assert time.perf_counter() - start < 0.1
    doomed_server.restart()

    def written() -> bool:
        try:
            cache.set("k", NEW)
        except LayerError:
            return False
        return True

    assert wait_until(written, 3) is not None  # once a probe finds the server back
    assert cache.get("k") == NEW and l1.get("k") == NEW


def test_a_failed_delete_names_the_layer_and_clears_l1(
    outage: Outage, doomed_server: RedisServer
) -> None:
    cache, l1 = outage.cache, outage.l1
    cache.set("k", REPLACED)
    doomed_server.kill()
    with pytest.raises(LayerError, match=r"^l2: DEL failed: "):
        cache.delete("k")
    assert "k" not in l1 and cache.get("k", "absent") == "absent"
    # (L2 may still hold the old value: a persisting server would serve it again once
    # back, as the caller was told the delete failed.)


@pytest.fixture
def stallable_server() -> Iterator[RedisServer]:
    with RedisServer.start("--enable-debug-command", "yes", use_env=False) as server:
        yield server


def stalls(url: str) -> bool:
    """Whether the server has stopped answering (within 50 ms) for now."""
    client = redis.Redis.from_url(url, socket_timeout=0.05)
    try:
        client.ping()
        return False
    except redis.TimeoutError:
        return True
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_timed_out_set_that_lands_later_is_not_contradicted_by_l1(
    kind: str, stallable_server: RedisServer, prefix: str
) -> None:
    outage = Outage(kind, stallable_server, prefix)
    cache = outage.cache
    cache.set("k", REPLACED)
    raw = redis.Redis.from_url(stallable_server.url)
    # The server stalls for 0.8 s, past the layer's 0.5 s read timeout, and then runs the
    # SET it had received meanwhile.
    stall = threading.Thread(target=raw.execute_command, args=("DEBUG", "SLEEP", "0.8"))
    stall.start()
    assert wait_until(lambda: stalls(stallable_server.url), 2) is not None
    with pytest.raises(LayerError, match=r"^l2: SET failed: Timeout"):
        cache.set("k", NEW)
    stall.join()
    l2 = RedisLayer(stallable_server.url, prefix=prefix)  # another instance's view of L2
    assert wait_until(lambda: l2.get("k") == NEW, 2) is not None  # it landed after all
    assert cache.get("k") == NEW  # and L1 does not answer with the value it replaced
    l2.close()
    raw.close()
    outage.close()
