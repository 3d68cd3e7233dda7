"""Insights under hostile conditions: a fork while the sampler samples, a callback that
hangs, a layer whose ``stats()`` raises. The cache keeps serving; the sampling goes on or
restarts; nothing hangs."""

from __future__ import annotations

import logging
import threading
import time

from multilayercache import InsightsOptions, MultilayerCache

from faults.forking import holding, in_child

FAST = InsightsOptions(interval=0.01, windows=(1.0,), recent_seconds=0.05)


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_forked_child_samples_on_its_own(Layer) -> None:
    # Forks at random moments of the parent's sampling (its lock may be held, its thread
    # is gone in the child): the child's insights() answers, and its own sampler runs.
    cache = MultilayerCache([Layer(max_size=100, name="l1")], insights=FAST)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            cache.set("k", 1)
            cache.get("k")

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        for _ in range(5):
            time.sleep(0.013)

            def child() -> bool:
                before = cache.insights().samples
                wait_for(lambda: cache.insights().samples > before + 3, timeout=3)
                return cache._sampler.running

            assert in_child(child)
    finally:
        stop.set()
        thread.join(5)
        cache.close()


def test_a_child_answers_though_the_parent_sampler_held_the_lock(Layer) -> None:
    cache = MultilayerCache([Layer(max_size=100, name="l1")], insights=FAST)
    try:
        holder, release = holding(cache._sampler.insights._lock)
        try:
            assert in_child(lambda: cache.insights().samples >= 0)
        finally:
            release.set()
            holder.join(5)
    finally:
        cache.close()


def test_a_hanging_callback_never_blocks_a_request(Layer) -> None:
    # The callback runs on the sampler's thread: a hung pager client stalls the sampling,
    # not the cache.
    entered, release = threading.Event(), threading.Event()

    def hangs(anomaly) -> None:
        entered.set()
        release.wait(10)

    options = InsightsOptions(
        interval=0.01, recent_seconds=0.05, warmup_seconds=0.1, min_requests=20, on_anomaly=hangs
    )
    cache = MultilayerCache([Layer(max_size=1_000, name="l1")], insights=options)
    try:
        for key in range(100):
            cache.set(key, key)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # steady hits, then only misses
            for key in range(100):
                cache.get(key)
            time.sleep(0.002)
        while not entered.is_set():
            for key in range(100):
                cache.get(("gone", key))
            time.sleep(0.002)
        start = time.monotonic()
        for key in range(10_000):
            cache.get(key % 100)
        assert time.monotonic() - start < 2.0
        assert cache.insights().samples > 0  # report() does not wait for the callback
    finally:
        release.set()
        cache.close()


class BrokenStats:
    """A layer whose stats() raises (a bug in a custom layer)."""

    name = "broken"
    in_process = True

    def __init__(self, Layer) -> None:
        self._layer = Layer(max_size=10)

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def stats(self):
        raise RuntimeError("stats broke")


def test_a_layer_whose_stats_raise_is_logged_and_the_sampler_goes_on(Layer, caplog) -> None:
    cache = MultilayerCache([Layer(max_size=10, name="l1")], insights=FAST)
    insights = cache._sampler.insights
    broken = BrokenStats(Layer)
    try:
        with caplog.at_level(logging.ERROR, "multilayercache"):
            insights._layers[0].layer = broken
            wait_for(lambda: any("sampling" in r.getMessage() for r in caplog.records))
            insights._layers[0].layer = cache.layers[0]
            samples = insights.report().samples
            wait_for(lambda: insights.report().samples > samples)
        assert cache._sampler.running
        cache.set("k", 1)
        assert cache.get("k") == 1
    finally:
        cache.close()
