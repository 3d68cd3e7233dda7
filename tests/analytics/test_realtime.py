"""The acceptance figure in real time: real threads (or asyncio tasks) read a zipf workload
through L1 and a real Redis L2 while the sampler thread watches; one cold key jumps to 20%
of the traffic and ``on_anomaly`` hears of it within 2 s, after a steady stretch that
reported nothing."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InsightsOptions,
    LayerError,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.analytics.anomaly import KEY_SPIKE

from support import IMPLEMENTATIONS

STEADY_SECONDS = 4.0
OPTIONS = dict(warmup_seconds=2.0)  # the defaults otherwise (a shorter test)
THREADS = 4
BATCH = 50  # reads between short sleeps: a few thousand reads a second per thread


def streams(seed: int, n: int = 100_000, universe: int = 20_000) -> tuple[list[str], np.ndarray]:
    """A reader's keys (zipf(1) over ``universe`` keys), and which of its reads go to the
    cold key once the spike starts (20%). Made before the clock starts."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, universe + 1, dtype=np.float64) ** -1.0
    keys = [f"k{key}" for key in rng.choice(universe, n, p=weights / weights.sum()).tolist()]
    return keys, rng.random(n) < 0.2


class Heard:
    """What ``on_anomaly`` was told, and when (monotonic)."""

    def __init__(self) -> None:
        self.anomalies: list = []
        self.times: list[float] = []

    def __call__(self, anomaly) -> None:
        self.times.append(time.monotonic())
        self.anomalies.append(anomaly)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda impl: impl.name)
def test_threads_a_spike_is_reported_within_two_seconds(impl, redis_url, prefix) -> None:
    heard = Heard()
    cache = MultilayerCache(
        [impl.InMemoryLayer(max_size=2_000, name="l1"), RedisLayer(redis_url, prefix=prefix)],
        insights=InsightsOptions(**OPTIONS),
        on_anomaly=heard,
    )
    spike_from = [float("inf")]
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader(keys: list[str], cold: np.ndarray) -> None:
        try:
            for index, key in enumerate(keys):
                if stop.is_set():
                    return
                if cold[index] and time.monotonic() >= spike_from[0]:
                    key = "cold key"
                try:
                    cache.get_or_load(key, lambda k: str(k))
                except LayerError:  # a write to Redis timed out on a busy machine: not ours
                    pass
                if index % BATCH == 0:
                    time.sleep(0.01)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=reader, args=streams(seed)) for seed in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(STEADY_SECONDS)
        assert heard.anomalies == [], "steady traffic reported an anomaly"
        spike_from[0] = time.monotonic()
        deadline = spike_from[0] + 5
        while not heard.anomalies and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        cache.close()
    assert not errors
    assert heard.anomalies, "no anomaly within 5 s"
    first = heard.anomalies[0]
    assert (first.kind, first.key, first.layer) == (KEY_SPIKE, "cold key", "l1")
    assert heard.times[0] - spike_from[0] < 2.0
    report = cache.insights()
    assert report.anomalies[0] == first
    assert report.layer("l1").window(10).requests_per_second > 1_000
    assert not cache._sampler.running  # close() stopped it


def test_tasks_a_spike_is_reported_within_two_seconds(redis_url, prefix) -> None:
    heard = Heard()
    impl = IMPLEMENTATIONS[-1]
    reported: list = []
    prepared = [streams(seed) for seed in range(20)]

    async def main() -> float:
        cache = AsyncMultilayerCache(
            [
                impl.InMemoryLayer(max_size=2_000, name="l1"),
                AsyncRedisLayer(redis_url, prefix=prefix),
            ],
            insights=InsightsOptions(**OPTIONS, on_anomaly=heard),
        )
        spike_from = [float("inf")]

        async def load(key):
            return str(key)

        async def reader(keys: list[str], cold: np.ndarray) -> None:
            for index, key in enumerate(keys):
                if cold[index] and time.monotonic() >= spike_from[0]:
                    key = "cold key"
                try:
                    await cache.get_or_load(key, load)
                except LayerError:  # a write to Redis timed out on a busy machine: not ours
                    pass
                if index % BATCH == 0:
                    await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(reader(*stream)) for stream in prepared]
        try:
            await asyncio.sleep(STEADY_SECONDS)
            assert heard.anomalies == [], "steady traffic reported an anomaly"
            spike_from[0] = time.monotonic()
            deadline = spike_from[0] + 5
            while not heard.anomalies and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            reported.append(cache.insights())
            await cache.close()
        return spike_from[0]

    spike_from = asyncio.run(main())
    assert heard.anomalies, f"no anomaly within 5 s: {reported[0]}"
    first = heard.anomalies[0]
    assert (first.kind, first.key) == (KEY_SPIKE, "cold key")
    assert heard.times[0] - spike_from < 2.0
