"""``InMemoryLayer.resize``: a running layer shrinks by its policy's evictions and grows to
hold more, keeping its invariants and its frequencies (each twin)."""

from __future__ import annotations

import random
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invariants import check_invariants
from support import IMPLEMENTATIONS

twins = pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda impl: impl.name)

operations = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["set", "set", "get", "get", "delete"]), st.integers(0, 80)),
        st.tuples(st.just("resize"), st.integers(1, 50)),
    ),
    max_size=250,
)


def held_now(layer) -> set:
    """The keys the layer holds, but the newcomer held past admission (``_policy_py.py``,
    section 6: already counted as evicted, readable until the next write)."""
    inside = layer._internals()
    held_slot = inside["policy"].held
    return {key for slot, key in inside["cached"] if slot != held_slot}


@twins
@settings(max_examples=120, deadline=None)
@given(max_size=st.integers(1, 50), ops=operations)
def test_resize_keeps_the_bound_and_evicts_only_by_counted_evictions(impl, max_size, ops) -> None:
    layer = impl.InMemoryLayer(max_size=max_size)
    for op, number in ops:
        if op == "set":
            layer.set(number, number)
        elif op == "get":
            assert layer.get(number) in (None, number)
        elif op == "delete":
            layer.delete(number)
        else:
            before, evictions, size = held_now(layer), layer.stats().evictions, len(layer)
            layer.resize(number)
            after = held_now(layer)
            assert layer.max_size == number and len(layer) <= number
            assert after <= before  # a resize adds nothing
            # Every entry that went is a counted eviction (no clock: nothing expired).
            assert layer.stats().evictions - evictions == size - len(layer) == len(before - after)
            if number >= size:
                assert after == before  # growing (or room enough) evicts nothing
            check_invariants(layer)
        assert len(layer) <= layer.max_size
    check_invariants(layer)


@twins
@settings(max_examples=60, deadline=None)
@given(
    max_weight=st.integers(1, 80),
    ops=st.lists(st.tuples(st.sampled_from(["set", "set", "resize"]), st.integers(0, 60))),
)
def test_a_weighted_layer_resizes_its_total_weight(impl, max_weight, ops) -> None:
    layer = impl.InMemoryLayer(max_weight=max_weight, weigher=lambda key, value: key % 7)
    for op, number in ops:
        if op == "set":
            layer.set(number, number)
        else:
            layer.resize(max_weight=number + 1)
            assert layer.max_weight == number + 1 and layer.stats().weight <= number + 1
        check_invariants(layer)


@twins
def test_growing_keeps_the_residents_frequencies_and_then_fills_up(impl) -> None:
    layer = impl.InMemoryLayer(max_size=64)
    for _ in range(4):
        for key in range(64):
            layer.set(key, key) if key not in layer else layer.get(key)
    resident = sorted(held_now(layer))
    estimates = {key: layer.get_frequency_estimate(key) for key in resident}
    assert min(estimates.values()) >= 3
    sized_for = layer._internals()["policy"].sized_for
    layer.resize(5_000)  # past what the sketch was sized for: rebuilt, counts carried
    assert layer._internals()["policy"].sized_for > sized_for
    assert {key: layer.get_frequency_estimate(key) for key in resident} == estimates
    for key in range(1_000, 7_000):
        layer.set(key, key)
    assert len(layer) == 5_000
    check_invariants(layer)


@twins
def test_a_shrink_to_a_quarter_resizes_the_sketch_a_smaller_one_keeps_it(impl) -> None:
    layer = impl.InMemoryLayer(max_size=1_000)
    for _ in range(3):
        for key in range(100):
            layer.get(key) if key in layer else layer.set(key, key)
    policy = layer._internals()["policy"]
    estimates = {key: layer.get_frequency_estimate(key) for key in range(100)}
    layer.resize(300)  # kept: exact counts, and its aging period within 4x of the size
    assert layer._internals()["policy"].sized_for == 1_000
    assert {key: layer.get_frequency_estimate(key) for key in range(100)} == estimates
    layer.resize(250)  # a quarter: rebuilt as a layer of 250 would have it (it ages as one)
    policy = layer._internals()["policy"]
    assert policy.sized_for == 250 and policy.sketch.sample_size == 2_500
    assert all(layer.get_frequency_estimate(key) >= estimates[key] for key in range(100))
    check_invariants(layer)


@twins
def test_shrinking_keeps_the_frequent_keys(impl) -> None:
    # W-TinyLFU victims, not the most recent writes: the hot keys stay.
    layer = impl.InMemoryLayer(max_size=200)
    for _ in range(5):
        for key in range(20):
            layer.get(key) if key in layer else layer.set(key, key)
    for key in range(100, 280):  # colder keys, written after the hot ones
        layer.set(key, key)
    hot = [key for key in range(20) if key in layer]
    assert len(hot) == 20
    layer.resize(30)
    assert len(layer) <= 30 and all(key in layer for key in hot)
    check_invariants(layer)


@twins
def test_expired_entries_go_first(impl, clock) -> None:
    layer = impl.InMemoryLayer(max_size=10, clock=clock)
    for key in range(5):
        layer.set(key, key, ttl=1)
    for key in range(5, 10):
        layer.set(key, key)
    clock.advance(2)
    layer.resize(5)
    stats = layer.stats()
    assert (stats.expirations, stats.evictions) == (5, 0)
    assert sorted(held_now(layer)) == [5, 6, 7, 8, 9]


@twins
@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"max_size": 0}, ValueError, "max_size must be > 0"),
        ({"max_size": -5}, ValueError, "max_size must be > 0"),
        ({"max_size": 2**70}, ValueError, "max_size is too large"),
        ({"max_size": "10"}, TypeError, "max_size must be an int"),
        ({"max_size": 10.0}, TypeError, "max_size must be an int"),
        ({"max_weight": 10}, ValueError, "bounded by max_size"),
        ({}, ValueError, "needs the new max_size"),
    ],
)
def test_a_bad_size_raises_naming_it_and_changes_nothing(impl, arguments, error, message) -> None:
    layer = impl.InMemoryLayer(max_size=10)
    for key in range(10):
        layer.set(key, key)
    with pytest.raises(error, match=message):
        layer.resize(**arguments)
    assert layer.max_size == 10 and len(layer) == 10
    weighted = impl.InMemoryLayer(max_weight=10, weigher=lambda key, value: 1)
    with pytest.raises(ValueError, match="bounded by max_weight"):
        weighted.resize(5)
    assert weighted.max_weight == 10


@twins
def test_eight_threads_see_the_bound_hold_after_each_resize(impl) -> None:
    layer = impl.InMemoryLayer(max_size=400)
    stop = threading.Event()
    errors: list[BaseException] = []

    def traffic(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                key = int(rng.paretovariate(1.2)) % 2_000
                if rng.random() < 0.5:
                    assert layer.get(key) in (None, key)
                elif rng.random() < 0.9:
                    layer.set(key, key, ttl=rng.choice([None, 0.01, 5]))
                else:
                    layer.delete(key)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    threads = [threading.Thread(target=traffic, args=(seed,)) for seed in range(8)]
    try:
        for thread in threads:
            thread.start()
        rng = random.Random(0)
        for _ in range(30):
            bound = rng.choice([5, 50, 200, 400, 1_000])
            layer.resize(bound)
            for _ in range(20):  # from the moment it returns, the bound holds
                assert len(layer) <= bound
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(interval)
    assert not errors, errors[0]
    check_invariants(layer)
