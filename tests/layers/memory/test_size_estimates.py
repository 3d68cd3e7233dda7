"""``InMemoryLayer(estimate_sizes=...)``: what a bigger or smaller L1 would hit, from shadow
caches fed the layer's sampled accesses (``analytics/mrc.py``). Both twins."""

from __future__ import annotations

import gc
import math
import random
import sys
import threading

import numpy as np
import pytest

from multilayercache._core._bits_py import spread
from multilayercache.analytics import mrc
from multilayercache.layers.memory.estimates import SAMPLE_BATCH
from multilayercache.tools.simulation import load_trace, replay

from support import COMPILED, requires_compiled, trace_path


def layers_alive(Layer: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is Layer)


def sampled(layer: object, key: object) -> bool:
    return spread(hash(key)) < layer.size_estimator.threshold


def test_off_by_default_the_layer_holds_no_estimator(Layer) -> None:
    before = layers_alive(Layer)
    layer = Layer(max_size=1000)
    assert layers_alive(Layer) == before + 1  # no shadow layers
    assert layer.size_estimator is None
    for key in range(3 * SAMPLE_BATCH):
        layer.set(key, key)
        layer.get(key)
    assert mrc.size_estimates(layer) is None
    with pytest.raises(RuntimeError, match="estimate_sizes"):
        layer.size_estimates()


def test_estimating_layer_builds_one_shadow_per_size(Layer) -> None:
    before = layers_alive(Layer)
    layer = Layer(max_size=100_000, estimate_sizes=[4, 0.5, 2, 2])
    assert layers_alive(Layer) == before + 5  # the layer, and shadows at 0.5, 1, 2 and 4
    estimator = layer.size_estimator
    assert estimator.factors == (0.5, 1.0, 2.0, 4.0)
    assert estimator.rate == 256 / 50_000  # 256 entries in the smallest shadow
    assert estimator.shadow_sizes == (256, 512, 1024, 2048)
    estimates = layer.size_estimates()
    assert list(estimates) == [0.5, 1.0, 2.0, 4.0]
    assert all(math.isnan(ratio) for ratio in estimates.values())  # nothing read yet


@pytest.mark.parametrize(
    ("max_size", "rate"),
    [(10_000_000, mrc.MIN_RATE), (100_000, 256 / 50_000), (1_000, mrc.MAX_AUTO_RATE)],
)
def test_the_automatic_rate_keeps_within_its_bounds(Layer, max_size, rate) -> None:
    assert Layer(max_size=max_size, estimate_sizes=(0.5, 2)).size_estimator.rate == rate


def test_a_given_rate_is_used(Layer) -> None:
    estimator = Layer(max_size=1000, estimate_sizes=(2,), estimate_sample_rate=1).size_estimator
    assert estimator.rate == 1.0
    assert estimator.shadow_sizes == (1000, 2000)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"estimate_sizes": "0.5"}, TypeError, "iterable of size factors"),
        ({"estimate_sizes": 2}, TypeError, "iterable of size factors"),
        ({"estimate_sizes": (0.5, "2")}, TypeError, "a size factor is a number"),
        ({"estimate_sizes": (True,)}, TypeError, "a size factor is a number"),
        ({"estimate_sizes": (0,)}, ValueError, "> 0 and finite"),
        ({"estimate_sizes": (-2,)}, ValueError, "> 0 and finite"),
        ({"estimate_sizes": (math.inf,)}, ValueError, "> 0 and finite"),
        ({"estimate_sizes": (math.nan,)}, ValueError, "> 0 and finite"),
        ({"estimate_sample_rate": 0.1}, ValueError, "needs estimate_sizes"),
        ({"estimate_sizes": (2,), "estimate_sample_rate": 0}, ValueError, r"in \(0, 1\]"),
        ({"estimate_sizes": (2,), "estimate_sample_rate": 1.5}, ValueError, r"in \(0, 1\]"),
        ({"estimate_sizes": (2,), "estimate_sample_rate": "1"}, TypeError, "a number"),
    ],
)
def test_bad_arguments_are_named(Layer, arguments, error, message) -> None:
    with pytest.raises(error, match=message):
        Layer(max_size=1000, **arguments)


def test_a_weighted_layer_cannot_estimate_sizes(Layer) -> None:
    with pytest.raises(ValueError, match="max_size"):
        Layer(max_weight=1000, weigher=lambda key, value: 1, estimate_sizes=(2,))


def test_every_read_of_a_sampled_key_is_sampled_and_no_other(Layer) -> None:
    layer = Layer(max_size=1000, estimate_sizes=(2,), estimate_sample_rate=0.25)
    keys = [f"key:{number}" for number in range(400)]
    chosen = [key for key in keys if sampled(layer, key)]
    assert 50 < len(chosen) < 150  # about a quarter
    for key in keys:
        layer.set(key, key)  # writes are not reads
    layer.size_estimates()
    assert layer.size_estimator.sampled_reads == 0
    for _ in range(3):
        for key in keys:
            layer.get(key)
            layer.get_entry(key)
            layer.lookup(key, None, None)
    layer.size_estimates()
    assert layer.size_estimator.sampled_reads == 9 * len(chosen)


def test_the_estimate_at_its_own_size_is_the_measured_hit_ratio(Layer) -> None:
    layer = Layer(max_size=200, estimate_sizes=(0.5, 2), estimate_sample_rate=0.5)
    rng = random.Random(7)
    popularity = [1 / (rank + 1) ** 0.8 for rank in range(2000)]  # Zipf-like
    for key in rng.choices(range(2000), weights=popularity, k=6000):
        if layer.get(key) is None:
            layer.set(key, key)
    stats = layer.stats()
    estimates = layer.size_estimates()
    assert estimates[1] == stats.hits / (stats.hits + stats.misses)
    assert estimates[0.5] < estimates[1] < estimates[2]  # skewed keys: more room, more hits


def test_estimates_follow_exact_replays_of_a_trace(Layer) -> None:
    # cpp (GNU C preprocessor, LIRS paper) at rate 1/2: every shadow is the layer at that
    # size on half of the keys; the pure twin replays it too in a few seconds.
    trace = load_trace(trace_path("cpp"))
    built = []

    def estimating(size: int) -> object:
        built.append(Layer(max_size=size, estimate_sizes=(0.5, 2), estimate_sample_rate=0.5))
        return built[-1]

    replay(trace, 200, layer_factory=estimating)
    estimates = built[0].size_estimates()
    for factor in (0.5, 1, 2):
        exact = replay(trace, int(200 * factor), layer_factory=lambda size: Layer(max_size=size))
        assert estimates[factor] == pytest.approx(exact / len(trace), abs=0.02), factor


@pytest.fixture
def frequent_thread_switches():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_threads_sampling_at_once_lose_no_read(Layer) -> None:
    # Rate 1: every read is sampled, so buffers fill and replay while other threads sample.
    layer = Layer(max_size=500, estimate_sizes=(0.5, 2), estimate_sample_rate=1)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                key = rng.randrange(2000)
                if layer.get(key) is None:
                    layer.set(key, key)
                layer.get_entry(rng.randrange(2000))
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors
    estimates = layer.size_estimates()
    stats = layer.stats()
    reads = stats.hits + stats.misses
    assert reads == 8 * 6000
    # A read sampled while another thread hands a full buffer over may go unsampled: rare.
    assert 0.99 * reads <= layer.size_estimator.sampled_reads <= reads
    assert all(0 <= ratio <= 1 for ratio in estimates.values())


def estimate_and_exact(Layer: type, name: str, size: int) -> tuple[dict, dict]:
    """An L1 of ``size`` with automatic sampling replays the trace; then exact replays."""
    trace = load_trace(trace_path(name))
    built = []

    def estimating(max_size: int) -> object:
        built.append(Layer(max_size=max_size, estimate_sizes=(0.5, 2, 4)))
        return built[-1]

    replay(trace, size, layer_factory=estimating)
    exact = {
        factor: replay(trace, round(size * factor), layer_factory=lambda n: Layer(max_size=n))
        / len(trace)
        for factor in (0.5, 2, 4)
    }
    return built[0].size_estimates(), exact


@requires_compiled
def test_estimates_within_two_points_on_oltp() -> None:
    # The database trace at 5000 entries: the automatic rate (1/64) leaves shadows of 39 to
    # 312 entries, yet the estimates stay within 2 points (issue 22's bound).
    estimates, exact = estimate_and_exact(COMPILED.InMemoryLayer, "oltp", 5000)
    for factor, ratio in exact.items():
        assert estimates[factor] == pytest.approx(ratio, abs=0.02), factor


@pytest.mark.slow
@requires_compiled
@pytest.mark.parametrize(("name", "size"), [("scarab-recs", 100_000), ("p3", 131_072)])
def test_estimates_within_two_points_on_large_traces(name, size) -> None:
    estimates, exact = estimate_and_exact(COMPILED.InMemoryLayer, name, size)
    for factor, ratio in exact.items():
        assert estimates[factor] == pytest.approx(ratio, abs=0.02), factor


@pytest.mark.parametrize(
    "arguments",
    [{"ttl": 60}, {"copy": True}, {"max_weight": 100, "weigher": lambda key, value: 1}],
    ids=["ttl", "copy", "weighted"],
)
def test_only_a_shadow_replays_sampled_events(Layer, arguments) -> None:
    # The replay takes the lean path of a shadow (no TTL, copy, weight, listener or pending
    # drop); another layer would be simulated wrongly, so it is refused.
    layer = Layer(**arguments)
    events = np.array([2, 4], dtype=np.uint64)
    with pytest.raises(RuntimeError, match="size-estimate shadows"):
        layer._replay_accesses(events, [None, None])
    layer = Layer(max_size=10)
    layer.add_removal_listener(lambda key, value, cause: None)
    with pytest.raises(RuntimeError, match="size-estimate shadows"):
        layer._replay_accesses(events, [None, None])
    with pytest.raises(ValueError, match="one item of keys per event"):
        Layer(max_size=10)._replay_accesses(events, [None])


def test_shadows_share_one_key_object_per_sampled_key(Layer) -> None:
    # Every shadow holds the sampled keys it admitted: one int each, not one per shadow.
    layer = Layer(max_size=1000, estimate_sizes=(0.5, 2), estimate_sample_rate=1)
    for key in range(400):
        layer.get(key)
        layer.set(key, key)
    layer.size_estimates()  # replays what is buffered
    held = [{key: key for key in shadow.keys()} for shadow in layer.size_estimator._shadows]
    common = held[0].keys() & held[1].keys() & held[2].keys()
    assert len(common) > 100
    assert all(held[0][key] is held[1][key] is held[2][key] for key in common)
