"""A cache that has done a scripted workload (``metrics_support.run_workload``), for the
exporters' tests: an L1 (each twin) over a real Redis L2 written behind, driven sync or
asyncio. Every kind of counter the metrics read moves: hits and misses in both layers,
puts, evictions for size, expiries, admission rejections, loads that succeed and one that
fails, a value Redis holds that the L2 refuses (untrusted), write-behind batches."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InsightsOptions,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
)

from metrics_support import INSIGHT_OPTIONS, run_insights_workload, run_workload
from support import Blocking


@pytest.fixture(params=["sync", "asyncio"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def worked(
    kind: str, impl: SimpleNamespace, redis_url: str, prefix: str, raw_redis: Any
) -> Iterator[Any]:
    """The manager (the real one, not a blocking view) after ``run_workload``."""
    loop = asyncio.new_event_loop() if kind == "asyncio" else None
    l1 = impl.InMemoryLayer(max_size=20, name="l1")
    policies = [None, LayerPolicy(write=WriteBehind(max_delay=0.01))]
    if loop is None:
        raw = MultilayerCache([l1, RedisLayer(redis_url, prefix=prefix, name="l2")], policies)
    else:
        l2 = AsyncRedisLayer(redis_url, prefix=prefix, name="l2")
        raw = AsyncMultilayerCache([l1, l2], policies)
    cache = Blocking(raw, loop)
    try:
        run_workload(cache, loop is not None, raw_redis, prefix)
        yield raw
    finally:
        cache.close(timeout=2)
        if loop is not None:
            loop.close()


@pytest.fixture
def insightful(kind: str, impl: SimpleNamespace, redis_url: str, prefix: str) -> Iterator[Any]:
    """A manager with insights on (and an L1 that estimates other sizes) after
    ``run_insights_workload``, its sampler then stopped: ``insights()`` holds still, so
    what an exporter reads can be compared with it."""
    loop = asyncio.new_event_loop() if kind == "asyncio" else None
    l1 = impl.InMemoryLayer(
        max_size=200, name="l1", estimate_sizes=(0.5, 2), estimate_sample_rate=1.0
    )
    options = InsightsOptions(**INSIGHT_OPTIONS)
    if loop is None:
        raw: Any = MultilayerCache(
            [l1, RedisLayer(redis_url, prefix=prefix, name="l2")], insights=options
        )
    else:
        l2 = AsyncRedisLayer(redis_url, prefix=prefix, name="l2")
        raw = AsyncMultilayerCache([l1, l2], insights=options)
    cache = Blocking(raw, loop)
    try:
        run_insights_workload(cache, loop is not None, raw.insights)
        raw._sampler.stop(timeout=2)
        yield raw
    finally:
        cache.close(timeout=2)
        if loop is not None:
            loop.close()
