"""Helpers the tests import (fixtures live in conftest.py): the twin table, a fake clock,
trace paths, server-side command counts, and ``Blocking``, which lets one behaviour spec
drive the sync and the asyncio classes alike."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import redis
import redis.cluster

TRACES = Path(
    os.environ.get("MULTILAYERCACHE_TRACES", Path(__file__).parents[2] / "shared" / "traces")
)
BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def benchmarks_module(name: str) -> ModuleType:
    """A module of benchmarks/ (not a package: its scripts import each other by name)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    "CachedCall": "multilayercache.sync.frontdoor",
    "AsyncCachedCall": "multilayercache.aio.frontdoor",
    "settled": "multilayercache.aio.frontdoor",
    "CallKey": "multilayercache._core.callkey",
    "KeyMaker": "multilayercache._core.callkey",
    "DirectCall": "multilayercache._core.binding",
    "KeyedCall": "multilayercache._core.binding",
    "CachedMethod": "multilayercache._core.binding",
    "CachedClassMethod": "multilayercache._core.binding",
    "BoundCall": "multilayercache._core.binding",
    "count_objects": "multilayercache._core.msgpack_bounds",
    "read_batch": "multilayercache._core.envelope_batch",
    "read_fresh": "multilayercache._core.envelope_batch",
    "read_one": "multilayercache._core.envelope_batch",
    "Lead": "multilayercache._core.flight",
    "Call": "multilayercache._core.flight",
    "Recorder": "multilayercache._core.latency",
    "WriteEncoder": "multilayercache._core.envelope_write",
    "pack_writes": "multilayercache._core.write_batch",
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


class FakeClock:
    """An injectable monotonic clock (seconds) that tests move by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def trace_path(name: str) -> Path:
    path = TRACES / f"{name}.npy"
    if not path.exists():
        missing_trace(f"trace {path} not found (../shared/traces beside the checkout)")
    return path


def missing_trace(message: str) -> None:
    """Skip a test whose trace is not here; fail it where the traces must be there (CI's
    trace job sets ``MULTILAYERCACHE_REQUIRE_TRACES=1``: a skip would hide that it ran
    nothing)."""
    if os.environ.get("MULTILAYERCACHE_REQUIRE_TRACES", "") not in ("", "0"):
        pytest.fail(f"{message}, and MULTILAYERCACHE_REQUIRE_TRACES is set")
    pytest.skip(message)


def command_calls(client: Any, command: str) -> int:
    """How many times the server (every primary of a cluster) has run ``command`` (INFO
    commandstats)."""
    name = f"cmdstat_{command.lower()}"
    if isinstance(client, redis.cluster.RedisCluster):
        every = client.info("commandstats", target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        return sum(int(stats.get(name, {}).get("calls", 0)) for stats in every.values())
    return int(client.info("commandstats").get(name, {}).get("calls", 0))


class Blocking:
    """A view of ``target`` whose coroutine methods run to completion on ``loop``, so that
    one behaviour spec drives ``AsyncMultilayerCache`` (or ``AsyncRedisLayer``) exactly as
    it drives the sync class. Plain attributes and sync methods pass through."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if self._loop is None or not callable(attribute):
            return attribute
        loop = self._loop

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            return loop.run_until_complete(result) if inspect.isawaitable(result) else result

        return call

    def __contains__(self, key: Any) -> bool:
        return key in self._target

    def __repr__(self) -> str:
        return f"Blocking({self._target!r})"


# ----------------------------------------------------------------------------- fault tests
RESUME_SECONDS = 2.0
"""Issue 9: L2 hits resume within this long after its server is back."""


def wait_until(condition: Callable[[], bool], timeout: float) -> float | None:
    """Poll ``condition`` until it holds: the seconds that took, or ``None`` past
    ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.005)
    return time.monotonic() - start


async def eventually(condition: Callable[[], bool], timeout: float) -> float | None:
    """``wait_until`` for asyncio tests: polls without blocking the event loop."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            return None
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def l2_breaker(cache: Any) -> Any:
    """The ``BreakerStats`` of the cache's layer named ``l2``."""
    return cache.stats().breakers["l2"]


def expected(key: str) -> str:
    """What the fault tests' loaders return for ``key``: the source of truth."""
    return f"value of {key}"


def together(
    cache: Blocking, *calls: Callable[[Any], Any], stagger: float = 0.02
) -> list[tuple[Any, float]]:
    """Run ``call(raw_cache)`` for each call at once, the n-th started ``n * stagger`` seconds
    after the first: threads for a sync cache, tasks on its loop for an asyncio one (whose
    calls return awaitables). Each call's result (or the exception it raised) and how long
    it took, in order."""
    raw, loop = cache._target, cache._loop

    def timed_call(call: Callable[[], Any]) -> tuple[Any, float]:
        start = time.perf_counter()
        try:
            result = call()
        except Exception as error:
            result = error
        return result, time.perf_counter() - start

    if loop is None:
        import threading

        results: list[tuple[Any, float]] = [(None, 0.0)] * len(calls)

        def run(n: int, call: Callable[[Any], Any]) -> None:
            time.sleep(n * stagger)
            results[n] = timed_call(lambda: call(raw))

        threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        return results

    async def run_task(n: int, call: Callable[[Any], Any]) -> tuple[Any, float]:
        await asyncio.sleep(n * stagger)
        start = time.perf_counter()
        try:
            result = await call(raw)
        except Exception as error:
            result = error
        return result, time.perf_counter() - start

    async def run_all() -> list[tuple[Any, float]]:
        return list(await asyncio.gather(*(run_task(n, call) for n, call in enumerate(calls))))

    return loop.run_until_complete(run_all())
