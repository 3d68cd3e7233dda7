"""A Redis that is not there from the start (a free port, nothing listening): the layer
is built without IO unless asked to verify, which names the URL; reads fall back to the
loader and L1 without an exception, and the breaker opens."""

from __future__ import annotations

import re

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.core.breaker import BreakerState
from multilayercache.core.errors import LayerUnavailableError
from multilayercache.tools.servers import free_port

from support import expected, l2_breaker

KEYS = [f"k{n}" for n in range(10)]


@pytest.fixture
def nowhere() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize("layer", [RedisLayer, AsyncRedisLayer])
def test_verify_says_which_url_cannot_be_reached(layer: type, nowhere: str) -> None:
    with pytest.raises(LayerUnavailableError, match=re.escape(nowhere)):
        layer(nowhere, verify=True)


def test_reads_fall_back_to_the_loader_and_l1(nowhere: str) -> None:
    calls: list[str] = []

    def load(key: str) -> str:
        calls.append(key)
        return expected(key)

    cache = MultilayerCache(
        [InMemoryLayer(max_size=100, name="l1"), RedisLayer(nowhere, name="l2")]
    )
    assert [cache.get_or_load(key, load) for key in KEYS] == [expected(key) for key in KEYS]
    assert [cache.get_or_load(key, load) for key in KEYS] == [expected(key) for key in KEYS]
    assert calls == KEYS  # the second round came from L1
    assert cache.get("absent", "default") == "default"
    breaker = l2_breaker(cache)
    assert breaker.state is BreakerState.OPEN and breaker.rejected > 0
    cache.close()


async def test_asyncio_reads_fall_back_to_the_loader_and_l1(nowhere: str) -> None:
    calls: list[str] = []

    async def load(key: str) -> str:
        calls.append(key)
        return expected(key)

    l2 = AsyncRedisLayer(nowhere, name="l2")
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=100, name="l1"), l2])
    assert [await cache.get_or_load(key, load) for key in KEYS] == [expected(k) for k in KEYS]
    assert [await cache.get_or_load(key, load) for key in KEYS] == [expected(k) for k in KEYS]
    assert calls == KEYS
    assert await cache.get("absent", "default") == "default"
    breaker = l2_breaker(cache)
    assert breaker.state is BreakerState.OPEN and breaker.rejected > 0
    await cache.close()
