"""Compiled modules against their pure-Python twins on random operation sequences: the same
results after every call, and the same internal arrays."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import math
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache.core.freshness import Lifetime
from multilayercache.layers.redis.codec import PackedWrite

from invariants import check_invariants
from support import COMPILED, PURE, TWINNED, FakeClock, pure_module, requires_compiled

pytestmark = requires_compiled
SETTINGS = settings(max_examples=150, deadline=None)

# A few hashes repeat often (so counters climb and collide), the rest are arbitrary.
HOT_HASHES = [0, 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15, 12345678901234567]
hashes = st.one_of(st.sampled_from(HOT_HASHES), st.integers(0, 2**64 - 1))


def same_arrays(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@SETTINGS
@given(
    capacity=st.integers(1, 300),
    ops=st.lists(st.tuples(st.sampled_from("iifr"), hashes), max_size=400),
)
def test_sketch(capacity, ops) -> None:
    pure, compiled = PURE.CountMinSketch(capacity), COMPILED.CountMinSketch(capacity)
    for op, key_hash in ops:
        if op == "i":
            assert pure.increment(key_hash) == compiled.increment(key_hash)
        elif op == "f":
            assert pure.frequency(key_hash) == compiled.frequency(key_hash)
        else:
            pure.reset(), compiled.reset()
        assert pure.additions == compiled.additions
        assert pure.needs_reset() == compiled.needs_reset()
    same_arrays(pure.table, compiled.table)
    assert pure.sample_size == compiled.sample_size


@SETTINGS
@given(
    capacity=st.integers(1, 300),
    ops=st.lists(st.tuples(st.sampled_from("ppmc"), hashes), max_size=400),
)
def test_doorkeeper(capacity, ops) -> None:
    pure, compiled = PURE.Doorkeeper(capacity), COMPILED.Doorkeeper(capacity)
    for op, key_hash in ops:
        if op == "p":
            assert pure.put(key_hash) == compiled.put(key_hash)
        elif op == "m":
            assert pure.might_contain(key_hash) == compiled.might_contain(key_hash)
        else:
            pure.clear(), compiled.clear()
    same_arrays(pure.bits, compiled.bits)


@SETTINGS
@given(
    capacity=st.integers(1, 100),
    ops=st.lists(st.tuples(st.sampled_from(["window", "main", "take"]), hashes), max_size=400),
)
def test_ghost_table(capacity, ops) -> None:
    pure, compiled = PURE.GhostTable(capacity), COMPILED.GhostTable(capacity)
    for op, key_hash in ops:
        if op == "take":
            assert pure.take(key_hash) == compiled.take(key_hash)
        else:
            region = 1 if op == "window" else 2
            pure.remember(key_hash, region), compiled.remember(key_hash, region)
    same_arrays(pure.tags, compiled.tags)
    same_arrays(pure.stamps, compiled.stamps)
    same_arrays(pure.last_uses, compiled.last_uses)
    assert pure.evictions == compiled.evictions


@SETTINGS
@given(
    capacity=st.integers(1, 100),
    ops=st.lists(
        st.tuples(st.sampled_from(["window", "main", "take"]), hashes, st.integers(0, 2**32 - 1)),
        max_size=400,
    ),
)
def test_ghost_table_last_uses(capacity, ops) -> None:
    pure, compiled = PURE.GhostTable(capacity), COMPILED.GhostTable(capacity)
    for op, key_hash, last_use in ops:
        if op == "take":
            assert pure.take(key_hash) == compiled.take(key_hash)
        else:
            region = 1 if op == "window" else 2
            pure.remember(key_hash, region, last_use)
            compiled.remember(key_hash, region, last_use)
    same_arrays(pure.last_uses, compiled.last_uses)
    same_arrays(pure.stamps, compiled.stamps)


@SETTINGS
@given(ops=st.lists(st.tuples(st.sampled_from("rrrrrrctlx"), st.integers(0, 40)), max_size=500))
def test_hot_key_table(ops) -> None:
    pure, compiled = PURE.HotKeyTable(8), COMPILED.HotKeyTable(8)
    for op, key in ops:
        key_hash = key * 0x9E3779B97F4A7C15 % 2**64
        if op == "r":
            pure.record(key_hash, key), compiled.record(key_hash, key)
        elif op == "c":
            assert pure.count_of(key_hash) == compiled.count_of(key_hash)
        elif op == "t":
            assert pure.top(5) == compiled.top(5)
        elif op == "l":
            for mine, theirs in zip(pure.columns(), compiled.columns(), strict=True):
                same_arrays(mine, theirs)
        else:
            pure.clear(), compiled.clear()
    same_arrays(pure.scores, compiled.scores)


SECOND = 1_000_000_000


@SETTINGS
@given(
    start=st.integers(0, 2**50),
    ops=st.lists(
        st.one_of(
            st.tuples(
                st.just("schedule"), st.integers(0, 30), st.integers(-SECOND, 10**6 * SECOND)
            ),
            st.tuples(st.just("deschedule"), st.integers(0, 30), st.just(0)),
            st.tuples(st.just("advance"), st.just(0), st.integers(0, 10**5 * SECOND)),
        ),
        max_size=200,
    ),
)
def test_timer_wheel(start, ops) -> None:
    pure, compiled = PURE.TimerWheel(start, 31), COMPILED.TimerWheel(start, 31)
    now = start
    for op, slot, amount in ops:
        if op == "schedule":
            pure.schedule(slot, now + amount), compiled.schedule(slot, now + amount)
        elif op == "deschedule":
            pure.deschedule(slot), compiled.deschedule(slot)
        else:
            now += amount
            expired = pure.advance(now)
            assert expired == compiled.advance(now) == len(pure.expired)
            assert pure.expired == compiled.expired
            # Nothing due stays scheduled, nothing not due expired.
            assert all(
                pure.deadline(s) > now for s in range(31) if pure.deadline(s) != (1 << 63) - 1
            )
        assert pure.scheduled == compiled.scheduled
        assert [pure.deadline(s) for s in range(31)] == [compiled.deadline(s) for s in range(31)]
    same_arrays(pure.links, compiled.links)


def policy_ops():
    return st.lists(
        st.tuples(
            st.sampled_from(
                ["insert", "insert", "hit", "hit", "access", "remove", "update", "resize"]
            ),
            st.integers(0, 2**64 - 1),
            st.integers(0, 12),
        ),
        max_size=300,
    )


@SETTINGS
@given(capacity=st.integers(1, 40), weighted=st.booleans(), ops=policy_ops())
def test_policy(capacity, weighted, ops) -> None:
    pure = PURE.WTinyLfuPolicy(capacity, weighted)
    compiled = COMPILED.WTinyLfuPolicy(capacity, weighted)
    live: list[int] = []
    free: list[int] = []
    next_slot = 0
    pool = HOT_HASHES + [h * 7919 for h in range(1, 30)]
    for op, raw, number in ops:
        key_hash = pool[raw % len(pool)] if raw % 3 else raw
        if op == "insert":
            if free:
                slot = free.pop()
            else:
                slot, next_slot = next_slot, next_slot + 1
                pure.grow(next_slot), compiled.grow(next_slot)
            weight = min(number, pure.capacity) if weighted else 1
            assert pure.on_insert(slot, key_hash, weight) == compiled.on_insert(
                slot, key_hash, weight
            )
            evicted = pure.evicted
            assert evicted == compiled.evicted
            assert pure.rejected == compiled.rejected
            assert set(pure.rejected) <= set(evicted)
            live.append(slot)
            for gone in evicted:
                live.remove(gone)
                free.append(gone)
        elif op == "access":
            assert pure.record_access(key_hash) == compiled.record_access(key_hash)
        elif op == "resize":
            # Shrink or grow (a grow past the sketch's sizing rebuilds it, counts carried).
            capacity = 1 + (raw >> 8) % 60
            assert pure.resize(capacity) == compiled.resize(capacity)
            evicted = pure.evicted
            assert evicted == compiled.evicted
            for gone in evicted:
                live.remove(gone)
                free.append(gone)
        elif not live:
            continue
        elif op == "hit":
            slot = live[number % len(live)]
            pure.on_hit(slot), compiled.on_hit(slot)
        elif op == "remove":
            slot = live.pop(number % len(live))
            pure.on_remove(slot), compiled.on_remove(slot)
            free.append(slot)
        else:
            slot = live[number % len(live)]
            weight = min(number, pure.capacity) if weighted else 1
            assert pure.on_update(slot, weight) == compiled.on_update(slot, weight)
            evicted = pure.evicted
            assert evicted == compiled.evicted
            assert pure.rejected == compiled.rejected
            assert set(pure.rejected) <= set(evicted)
            for gone in evicted:
                live.remove(gone)
                free.append(gone)
        assert pure.frequency(key_hash) == compiled.frequency(key_hash)
        for attribute in (
            "entries",
            "total_weight",
            "window_max",
            "protected_max",
            "evictions",
            "rejections",
            "random_state",
            "sized_for",
            "epoch",
            "clock",
            "window_target",
            "window_hits",
            "probation_hits",
            "misses_since_check",
            "held",
        ):
            assert getattr(pure, attribute) == getattr(compiled, attribute), attribute
        assert list(pure.region_weights) == list(compiled.region_weights)
        assert pure.capacity == compiled.capacity
        assert pure.total_weight <= pure.capacity
    same_arrays(pure.regions, compiled.regions)
    same_arrays(pure.links, compiled.links)
    same_arrays(pure.sketch.table, compiled.sketch.table)
    same_arrays(pure.doorkeeper.bits, compiled.doorkeeper.bits)
    same_arrays(pure.ghosts.tags, compiled.ghosts.tags)
    same_arrays(pure.ghosts.stamps, compiled.ghosts.stamps)
    same_arrays(pure.ghosts.last_uses, compiled.ghosts.last_uses)


LIFETIMES = [
    (1, 0, float("inf")),
    (2, 3, 1),
    (5, 5, 4),
    (float("inf"), 0, 2),
    (0.5, 10, float("inf")),
]
layer_op = st.one_of(
    st.tuples(
        st.sampled_from(
            ["get", "get", "set", "delete", "contains", "adjust", "len", "remaining"]
            + ["add", "touch", "incr"]
        ),
        st.integers(0, 60),
        st.sampled_from([None, 0, 0.5, 1, 3, 10, float("inf")]),
    ),
    st.tuples(
        st.sampled_from(["set_entry", "get_entry", "lookup", "lookup", "add_entry", "touch_entry"]),
        st.integers(0, 60),
        st.sampled_from(LIFETIMES),
    ),
    st.tuples(st.just("tick"), st.just(0), st.sampled_from([0.1, 0.5, 1, 2, 7, 30])),
    st.tuples(st.just("drop"), st.integers(0, 60), st.just(None)),
    st.tuples(st.just("resize"), st.integers(1, 60), st.just(None)),
)
layer_ops = st.lists(layer_op, max_size=300)
# Long runs with many lookups and sets, so that a few hashes get crowded (flooding.py).
crowding_ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["get", "set"]), st.integers(0, 60), st.sampled_from([None, 10])),
        layer_op,
    ),
    min_size=40,
    max_size=300,
)


@SETTINGS
@given(max_size=st.integers(1, 30), default_ttl=st.sampled_from([None, 2, 5]), ops=layer_ops)
def test_memory_layer(max_size, default_ttl, ops) -> None:
    clocks = FakeClock(), FakeClock()
    pure = PURE.InMemoryLayer(max_size=max_size, ttl=default_ttl, clock=clocks[0])
    compiled = COMPILED.InMemoryLayer(max_size=max_size, ttl=default_ttl, clock=clocks[1])
    run_layer_ops(pure, compiled, clocks, ops)


@SETTINGS
@given(max_weight=st.integers(1, 60), ops=layer_ops)
def test_weighted_memory_layer(max_weight, ops) -> None:
    clocks = FakeClock(), FakeClock()
    weigher = lambda key, value: key % 9  # noqa: E731
    pure = PURE.InMemoryLayer(max_weight=max_weight, weigher=weigher, clock=clocks[0])
    compiled = COMPILED.InMemoryLayer(max_weight=max_weight, weigher=weigher, clock=clocks[1])
    run_layer_ops(pure, compiled, clocks, ops)


@SETTINGS
@given(
    max_size=st.integers(1, 30),
    rate=st.sampled_from([1.0, 0.5, 0.2]),
    default_ttl=st.sampled_from([None, 2]),
    ops=layer_ops,
)
def test_memory_layer_estimating_sizes(max_size, rate, default_ttl, ops) -> None:
    # The sampling hook on: the same answers, the same samples, the same shadows.
    clocks = FakeClock(), FakeClock()
    pure, compiled = (
        twin.InMemoryLayer(
            max_size=max_size,
            ttl=default_ttl,
            clock=clock,
            estimate_sizes=(0.5, 2, 4),
            estimate_sample_rate=rate,
        )
        for twin, clock in zip((PURE, COMPILED), clocks, strict=True)
    )
    run_layer_ops(pure, compiled, clocks, ops)
    same_estimates(pure, compiled)


def same_estimates(pure, compiled) -> None:
    estimates = pure.size_estimates(), compiled.size_estimates()
    assert list(estimates[0]) == list(estimates[1])
    for factor, ratio in estimates[0].items():
        assert ratio == estimates[1][factor] or (
            math.isnan(ratio) and math.isnan(estimates[1][factor])
        )
    assert pure.size_estimator.sampled_reads == compiled.size_estimator.sampled_reads
    for shadows in zip(pure.size_estimator._shadows, compiled.size_estimator._shadows, strict=True):
        assert sorted(shadows[0].keys()) == sorted(shadows[1].keys())


def sharing_hashes(n: int) -> int:
    """Key ``n`` of 0..60 as one of ~30 ints sharing each of two hashes (``hash(k + i *
    (2**61 - 1)) == hash(k)``), so that the bound on keys per hash turns keys away."""
    return n % 2 + (n // 2) * sys.hash_info.modulus


@SETTINGS
@given(max_size=st.integers(1, 30), weighted=st.booleans(), ops=crowding_ops)
def test_memory_layer_with_keys_sharing_hashes(max_size, weighted, ops) -> None:
    # Both twins turn away the same keys (flooding.py) and count the same accesses.
    clocks = FakeClock(), FakeClock()
    sizes = (
        {"max_weight": 2 * max_size, "weigher": lambda key, value: key % 5}
        if weighted
        else {"max_size": max_size}
    )
    pure = PURE.InMemoryLayer(clock=clocks[0], **sizes)
    compiled = COMPILED.InMemoryLayer(clock=clocks[1], **sizes)
    shared = [(op, key if op == "resize" else sharing_hashes(key), ttl) for op, key, ttl in ops]
    run_layer_ops(pure, compiled, clocks, shared)


def same_outcome(pure_call, compiled_call, *args) -> bool:
    """Whether both calls return the same or raise the same kind of error."""
    outcomes = []
    for call in (pure_call, compiled_call):
        try:
            outcomes.append(call(*args))
        except (TypeError, OverflowError) as error:
            outcomes.append(type(error))
    return outcomes[0] == outcomes[1]


def run_layer_ops(pure, compiled, clocks, ops) -> None:
    version = 0
    for op, key, ttl in ops:
        version += 1
        if op == "tick":
            for clock in clocks:
                clock.advance(ttl)
        elif op == "get":
            assert pure.get(key, "miss") == compiled.get(key, "miss")
        elif op == "set":
            pure.set(key, (key, version), ttl=ttl)
            compiled.set(key, (key, version), ttl=ttl)
        elif op == "delete":
            assert pure.delete(key) == compiled.delete(key)
        elif op == "contains":
            assert (key in pure) == (key in compiled)
        elif op == "adjust":
            assert pure.adjust_ttl(key, ttl) == compiled.adjust_ttl(key, ttl)
        elif op == "remaining":
            assert pure.remaining_ttl(key) == compiled.remaining_ttl(key)
        elif op == "set_entry":
            lifetime = Lifetime(*ttl)
            pure.set_entry(key, (key, version), lifetime)
            compiled.set_entry(key, (key, version), lifetime)
        elif op == "get_entry":
            assert pure.get_entry(key) == compiled.get_entry(key)
        elif op == "add":
            assert pure.add(key, (key, version), ttl) == compiled.add(key, (key, version), ttl)
        elif op == "add_entry":
            lifetime = Lifetime(*ttl)
            value = (key, version)
            assert pure.add_entry(key, value, lifetime) == compiled.add_entry(key, value, lifetime)
        elif op == "touch":
            assert pure.touch(key, ttl) == compiled.touch(key, ttl)
        elif op == "touch_entry":
            lifetime = Lifetime(*ttl)
            assert pure.touch_entry(key, lifetime) == compiled.touch_entry(key, lifetime)
        elif op == "incr":
            assert same_outcome(pure.incr, compiled.incr, key, version % 5 - 2, ttl)
        elif op == "lookup":
            assert pure.lookup(key, "miss", "aside") == compiled.lookup(key, "miss", "aside")
        elif op == "drop":  # invalidate one key in five, dropped lazily (sweep.py)
            invalid = set(range(key % 5, 61, 5))
            pure.drop_later([invalid])
            compiled.drop_later([invalid])
        elif op == "resize":  # ``key`` is the new bound
            bound = "max_size" if pure.max_weight is None else "max_weight"
            pure.resize(**{bound: key}), compiled.resize(**{bound: key})
            assert len(pure) == len(compiled)
            assert bound == "max_weight" or len(pure) <= key  # (weights may be 0)
        else:
            assert len(pure) == len(compiled)
        assert pure.stats() == compiled.stats()
    check_invariants(pure)
    check_invariants(compiled)
    assert pure.get_top_keys(5) == compiled.get_top_keys(5)
    assert pure.snapshot(5).hot_keys == compiled.snapshot(5).hot_keys
    same_access_counts(pure, compiled)


@SETTINGS
@given(
    max_size=st.integers(1, 12),
    ops=st.lists(
        st.tuples(
            st.integers(0, 40),
            st.sampled_from(["none", "none", "other", "ttl", "delete", "drop"]),
            st.booleans(),  # the set's key: the one that missed, or an equal one built anew
        ),
        max_size=200,
    ),
)
def test_memory_layer_read_through(max_size, ops) -> None:
    """A read-through cache's writes: a miss, then a set of the key (the compiled layer
    inserts it straight away when nothing changed in between, ``_insert_missed``), and
    the same with another write, a TTL, a delete or pending drops in between: both twins
    decide alike."""
    clocks = FakeClock(), FakeClock()
    layers = (
        PURE.InMemoryLayer(max_size=max_size, clock=clocks[0]),
        COMPILED.InMemoryLayer(max_size=max_size, clock=clocks[1]),
    )
    for number, between, built in ops:
        key = number + 1000  # (beyond the small ints: a new object each time)
        written = int(str(key)) if built else key
        got = [layer.get(key) for layer in layers]
        assert got[0] == got[1]
        for layer in layers:
            if between == "other":
                layer.set(key + 1, number)
            elif between == "delete":
                layer.delete(key + 1)
            elif between == "drop":
                layer.drop_later([{key + 2}])
            layer.set(written, (key, between), ttl=10 if between == "ttl" else None)
        assert [layer.get(key) for layer in layers] in ([None, None], [(key, between)] * 2)
        assert layers[0].stats() == layers[1].stats()
    for layer in layers:
        check_invariants(layer)
    assert sorted(layers[0].keys()) == sorted(layers[1].keys())


def same_access_counts(pure, compiled) -> None:
    """What the insights sample (``access_counts``, and the keys read back by it) is the
    same in both twins."""
    counts = pure.access_counts(), compiled.access_counts()
    for field in counts[0]._fields:
        same_arrays(getattr(counts[0], field), getattr(counts[1], field))
    slots = [(slot, int(key_hash)) for slot, key_hash in enumerate(counts[0].slot_hashes)]
    slots += [(slot, int(key_hash) ^ 1) for slot, key_hash in slots[:3]]  # another key's hash
    assert pure.keys_at(slots) == compiled.keys_at(slots)
    buckets = [(bucket, int(key_hash)) for bucket, key_hash in enumerate(counts[0].missed_hashes)]
    assert pure.missed_keys_at(buckets) == compiled.missed_keys_at(buckets)


@SETTINGS
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["get", "get", "set", "delete"]), st.integers(0, 8)),
        max_size=60,
    )
)
def test_front_door(ops) -> None:
    # The manager's fast path: the first layer answers, ``below`` only on a miss.
    worlds = []
    for twin in (PURE, COMPILED):
        first: dict = {}
        below: dict = {5: "deep", 6: None}
        asked: list = []

        def ask_below(key, default, below=below, asked=asked):
            asked.append(key)
            return below.get(key, default)

        def load_below(
            key, loader, ttl, value_type, soft, hard, fleet, aside, tags=(), asked=asked
        ):
            asked.append(("load", key, ttl, aside))
            return loader(key)

        def set_below(key, value, ttl, tags, first=first, asked=asked):
            asked.append(("set", key, ttl, tags))
            first[key] = value

        missing, aside = object(), object()
        door = twin.FrontDoor(lambda key, default, first=first: first.get(key, default),
                              lambda key, default, aside, first=first: first.get(key, default),
                              ask_below, load_below, float, missing, aside, set_below)  # fmt: skip
        worlds.append((door, first, asked))
    for op, key in ops:
        results = []
        for door, first, asked in worlds:
            if op == "set":
                door.set(key, f"value {key}", ttl=key % 3 or None, tags=("t",) if key > 6 else ())
            elif op == "delete":
                first.pop(key, None)
            else:
                loaded = door.get_or_load(key, lambda k: f"loaded {k}", ttl=key or None)
                results.append((door.get(key, "default"), door.get(key), loaded, list(asked)))
        if results:
            assert results[0] == results[1]


class Refused(Exception):
    """What the test's failing loader raises."""


@SETTINGS
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["get", "set", "set ttl", "set tags", "load", "load ttl", "fail",
                             "cached", "delete", "invalidate", "ttl policy"]),
            st.integers(0, 5),
        ),
        max_size=50,
    ),
    fail_safe=st.booleans(),
)  # fmt: skip
def test_front_door_of_one_layer(ops, fail_safe) -> None:
    # A cache of one in-process layer: ``set`` and a miss of ``get_or_load`` skip the plans
    # in the front door; both twins answer, count and hold off failures alike.
    from multilayercache import InMemoryLayer, LoadOptions, MultilayerCache
    from multilayercache.sync import cache as sync_cache

    worlds = []
    for twin in (PURE, COMPILED):
        saved = sync_cache.FrontDoor
        sync_cache.FrontDoor = twin.FrontDoor
        try:
            options = LoadOptions(fail_safe=fail_safe, fail_safe_throttle=60)
            worlds.append(MultilayerCache([InMemoryLayer(max_size=50)], load_options=options))
        finally:
            sync_cache.FrontDoor = saved
    assert [type(cache._door) for cache in worlds] == [PURE.FrontDoor, COMPILED.FrontDoor]
    # A @cached function's miss skips the plans too; ``condition`` says what is cached.
    even = lambda value: value % 2 == 0  # noqa: E731
    halves = [cache.cached(condition=even)(lambda n: n // 2) for cache in worlds]

    def refuse(key):
        raise Refused(key)

    for op, key in ops:
        seen = []
        for cache in worlds:
            try:
                if op == "get":
                    seen.append(cache.get(key, "default"))
                elif op.startswith("set"):
                    ttl, tags = (30 if op == "set ttl" else None), (("t",) if "tags" in op else ())
                    seen.append(cache.set(key, f"set {key}", ttl=ttl, tags=tags))
                elif op.startswith("load"):
                    ttl = 60 if op == "load ttl" else None
                    seen.append(cache.get_or_load(key, lambda k: f"loaded {k}", ttl=ttl))
                elif op == "cached":
                    seen.append(halves[worlds.index(cache)](key))
                elif op == "fail":
                    seen.append(cache.get_or_load(key, refuse))
                elif op == "delete":
                    seen.append(cache.delete(key))
                elif op == "invalidate":
                    seen.append(cache.invalidate_tags("t"))
                else:
                    seen.append(cache.update_policy(0, ttl=key + 1).ttl)
            except Exception as error:
                seen.append((type(error), str(error)))
            left = cache.remaining_ttl(key)
            seen.append(left if left is None or left == math.inf else math.ceil(left))
        assert seen[:2] == seen[2:]
    stats = [dataclasses.replace(cache.stats(), load_latency=None) for cache in worlds]
    assert stats[0] == stats[1]


@SETTINGS
@given(
    window=st.integers(1, 8),
    durations=st.lists(st.floats(0, 10, allow_nan=False), max_size=30),
)
def test_recorder(window, durations) -> None:
    # Both recorders keep the last ``window`` durations, how many and their sum (added in
    # order), snapshot after snapshot.
    recorders = [PURE.Recorder(window), COMPILED.Recorder(window)]
    total = 0.0
    for done, seconds in enumerate(durations, start=1):
        total += seconds
        for recorder in recorders:
            recorder.record(seconds)
            assert recorder.snapshot() == (done, total, durations[:done][-window:])


def test_flight_records() -> None:
    # A call's waiters learn its outcome from ``done``, and from ``ended`` once they made
    # one; a lead says which gates' slots its waiters lend it.
    for twin in (PURE, COMPILED):
        top = twin.Lead(None)
        lead = twin.Lead(top)
        assert (lead.parent, top.parent, lead.lenders) == (top, None, [])
        lead.lenders.append(SimpleNamespace(gate="gate"))
        assert lead.lent_by("gate") and not lead.lent_by("other")
        call = twin.Call(lead)
        assert (call.done, call.ended, call.value, call.error, call.offered) == (
            False,
            None,
            None,
            None,
            None,
        )
        call.ended = threading.Event()
        error = Refused("no")
        call.finish("value", error)
        assert (call.done, call.ended.is_set(), call.value, call.error) == (
            True,
            True,
            "value",
            error,
        )


@SETTINGS
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["call", "call", "call", "set", "stale", "delete"]),
            st.integers(0, 6),
            st.booleans(),  # by keyword
        ),
        max_size=60,
    )
)
def test_async_cached_call(ops) -> None:
    # The asyncio decorator's fast path: a settled hit in the first layer is a coroutine
    # returning it; a miss, or a value held but stale (aside), is the load's coroutine.
    import asyncio

    from multilayercache.core.decorate import CallKeys

    def price(item: int, count: int = 1) -> None:
        pass

    keys = CallKeys(price, None)  # one token: the worlds' keys are alike
    loop = asyncio.new_event_loop()
    worlds = []
    for twin in (PURE, COMPILED):
        first: dict = {}
        asked: list = []
        missing, aside = object(), object()

        def lookup(key, default, stale, first=first):
            value = first.get(key, default)
            return stale if value == "stale" else value

        async def load(key, args, kwargs, stepped_aside, asked=asked):
            asked.append(("load", key.arguments, args, sorted(kwargs.items()), stepped_aside))
            return f"loaded {key.arguments}"

        call = twin.AsyncCachedCall(keys.of, lookup, load, missing, aside)
        worlds.append((call, first, asked))
    try:
        for op, item, by_keyword in ops:
            results = []
            for call, first, asked in worlds:
                key = keys.of((item,), {})
                if op == "set":
                    first[key] = f"value {item}"
                elif op == "stale":
                    first[key] = "stale"
                elif op == "delete":
                    first.pop(key, None)
                else:
                    coroutine = call(item, count=1) if by_keyword else call(item)
                    assert asyncio.iscoroutine(coroutine)
                    results.append((loop.run_until_complete(coroutine), list(asked)))
            if results:
                assert results[0] == results[1]
    finally:
        loop.close()


def test_settled_coroutines() -> None:
    # What an asyncio @cached hit returns: the compiled Settled (no frame) behaves as the pure
    # twin's native coroutine does, awaited, scheduled, cancelled, misused.
    import asyncio

    def scenario(settled):
        async def run() -> list:
            seen = [await settled(1), await asyncio.create_task(settled((1, 2)))]
            seen.append(await asyncio.gather(settled(StopIteration), settled(None)))
            seen.append(await asyncio.wait_for(settled([3]), 1))
            awaited = settled(5)
            await awaited
            task = asyncio.create_task(settled(6))
            task.cancel()
            for attempt in [
                lambda: awaited.send(None),  # reused
                lambda: task.result(),
                lambda: settled(7).send(1),  # a value into a coroutine just started
                lambda: settled(8).send(None),
                lambda: settled(9).throw(ValueError("thrown")),
            ]:
                await asyncio.sleep(0)
                try:
                    seen.append(("returned", attempt()))
                except (StopIteration, RuntimeError, TypeError, ValueError) as error:
                    seen.append((type(error).__name__, str(error), getattr(error, "value", 0)))
                except asyncio.CancelledError:
                    seen.append("cancelled")
            closed = settled(10)
            closed.close()
            seen.append((asyncio.iscoroutine(closed), inspect.isawaitable(closed)))
            return seen

        return asyncio.run(run())

    import gc
    import inspect
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the pure coroutine sent a value
        pure = scenario(PURE.settled)
        gc.collect()
    assert pure == scenario(COMPILED.settled)
    assert pure[:4] == [1, (1, 2), [StopIteration, None], [3]]


def defined_constants(module) -> set[str]:
    """The public UPPER_CASE names a module assigns itself (not the ones it imports)."""
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id.isupper() and target.id[0] != "_":
                names.add(target.id)
    return names


def signature_cases():
    def plain(a, b=2, c="c"):
        pass

    def varargs(a, *rest, flag=False, **options):
        pass

    def method(self, item, count=1):
        pass

    return [plain, varargs, method]


class Keyed:
    """An instance that says which instances share results."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __cache_key__(self) -> tuple[str, int]:
        return ("keyed", self.number)


ARGUMENTS = st.one_of(
    st.integers(-5, 5),
    st.text(max_size=2),
    st.sampled_from([Keyed(1), Keyed(2), object(), int]),  # an instance, a class
)


@SETTINGS
@given(
    case=st.integers(0, 2),
    first=st.sampled_from(["as argument", "left out", "as instance"]),
    args=st.lists(ARGUMENTS, max_size=4),
    kwargs=st.dictionaries(
        st.sampled_from(["a", "b", "c", "flag", "item", "x", "self"]), ARGUMENTS, max_size=3
    ),
)
def test_call_keys(case, first, args, kwargs) -> None:
    # The compiled normaliser makes exactly the pure one's keys (and the same errors), the
    # instance of a method keyed by its __cache_key__() or by itself, or left out.
    from multilayercache.core import decorate

    function = signature_cases()[case]
    mode = {
        "as argument": decorate.FIRST_AS_ARGUMENT,
        "left out": decorate.FIRST_LEFT_OUT,
        "as instance": decorate.FIRST_AS_INSTANCE,
    }[first]
    keys = decorate.CallKeys(function, None, mode)
    token = decorate.FunctionToken(function, instance_first=mode == decorate.FIRST_AS_INSTANCE)
    outcomes = []
    for twin in (PURE, COMPILED):
        maker = twin.KeyMaker(token, *_layout(function), mode, keys.bind)
        try:
            key = maker.key(tuple(args), dict(kwargs))
        except TypeError as error:
            outcomes.append(("TypeError", str(error)))
            continue
        try:
            text = key.text
        except TypeError as error:  # an argument without a shared text (a plain object)
            text = str(error)
        outcomes.append((type(key).__name__, key.arguments, text))
    assert outcomes[0] == outcomes[1]
    if mode == decorate.FIRST_AS_ARGUMENT:  # the keyword fast path makes what bind makes
        try:
            bound = ("CallKey", keys.bind(tuple(args), dict(kwargs)))
        except TypeError as error:
            bound = ("TypeError", str(error))
        assert outcomes[0][:2] == bound  # (every argument drawn here is hashable)
    if outcomes[0][0] == "CallKey" and mode == decorate.FIRST_AS_INSTANCE:
        instance = keys.bind(tuple(args), dict(kwargs))[0]
        expected = instance.__cache_key__() if type(instance) is Keyed else instance
        assert outcomes[0][1][0] == expected


def _layout(function):
    import inspect

    parameters = list(inspect.signature(function).parameters.values())
    positional = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    defaults = tuple(p.default for p in positional if p.default is not p.empty)
    return tuple(p.name for p in positional), defaults, len(positional) == len(parameters)


BINDING_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["method", "class method"]),
        st.sampled_from(["through an instance", "through the class"]),
        st.sampled_from(["call", "invalidate", "cache_key"]),
        st.lists(st.integers(0, 3), max_size=2),
        st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 3), max_size=1),
    ),
    max_size=20,
)


@SETTINGS
@given(operations=BINDING_OPERATIONS)
def test_bindings(operations) -> None:
    # The compiled bindings (a method descriptor, called without __get__) pass the cached
    # function exactly what the pure ones pass, for calls, invalidate and cache_key.
    worlds = []
    for twin in (PURE, COMPILED):
        seen: list = []

        def recording(kind, seen=seen, twin=twin):
            # the manager's CachedCall (a DirectCall: called through C by the compiled
            # bindings), over a first layer that always misses
            def key_of(args, kwargs):
                return ("key", _named(args), sorted((kwargs or {}).items()))

            def load(key, args, kwargs, aside):
                seen.append((kind, "call", key))
                return len(seen)

            missing = object()
            call = twin.CachedCall(key_of, lambda *_: missing, load, missing, object())
            call.invalidate = lambda *args, **kwargs: seen.append(
                (kind, "invalidate", key_of(args, kwargs))
            )
            call.cache_key = lambda *args, **kwargs: key_of(args, kwargs)
            return call

        def plain_call(*args, seen=seen, **kwargs):  # not a DirectCall: the generic path
            seen.append(("plain", "call", _named(args), sorted(kwargs.items())))

        class Service:
            method = twin.CachedMethod(recording("method"))
            class_method = twin.CachedClassMethod(recording("class method"))
            plain = twin.CachedMethod(plain_call)

        worlds.append((Service, seen))
    instance_of = {id(Service): Service() for Service, _ in worlds}
    for kind, through, operation, args, kwargs in operations:
        results = []
        for Service, seen in worlds:
            owner = instance_of[id(Service)] if through == "through an instance" else Service
            name = "method" if kind == "method" else "class_method"
            passed = list(args)
            if kind == "method" and through == "through the class":
                passed.insert(0, instance_of[id(Service)])  # unbound: the instance first
            bound = getattr(owner, name)
            act = bound if operation == "call" else getattr(bound, operation)
            result = act(*passed, **kwargs)
            Service.plain.__get__(instance_of[id(Service)], Service)(*args, **kwargs)
            instance_of[id(Service)].plain(*args, **kwargs)
            results.append((result if isinstance(result, tuple) else _named([result]), seen[-3:]))
        assert results[0] == results[1]
        passed_first = (results[0][0] if operation == "cache_key" else seen[-3][2])[1][0]
        assert passed_first == ("instance" if kind == "method" else "class")


def _named(values):
    """Arguments with instances and classes of the twins' worlds named alike."""
    return tuple(
        "class" if isinstance(value, type) else "instance" if not isinstance(value, int) else value
        for value in values
    )


TWINNED_MODULES = sorted({(module, pure_module(module)) for module in TWINNED.values()})


@pytest.mark.parametrize(("compiled", "pure"), TWINNED_MODULES, ids=lambda name: name)
def test_twins_define_the_same_constants(compiled, pure) -> None:
    # Constants are written once per twin; they must agree (regions, "never expires", ...).
    compiled_module, pure_twin = importlib.import_module(compiled), importlib.import_module(pure)
    for name in sorted(defined_constants(pure_twin)):
        assert hasattr(compiled_module, name), f"{compiled} does not define {name}"
        assert getattr(compiled_module, name) == getattr(pure_twin, name), name


# Replayed keys (``event >> 1``): small ints, ints Python hashes modulo 2**61 - 1 (their
# hash is another key's: 5, 5 + M, 5 + 2M and 5 + 3M share one), and the largest.
MODULUS = 2**61 - 1
replayed_keys = st.one_of(
    st.integers(0, 40),
    st.sampled_from([5 + MODULUS, 5 + 2 * MODULUS, 5 + 3 * MODULUS, MODULUS - 1, MODULUS]),
    st.sampled_from([MODULUS + 1, 2**62, 2**63 - 1]),
)
replayed_batches = st.lists(
    st.lists(st.tuples(replayed_keys, st.booleans()), max_size=60), min_size=1, max_size=4
)


@SETTINGS
@given(max_size=st.integers(1, 12), batches=replayed_batches)
def test_memory_layer_replaying_sampled_events(max_size, batches) -> None:
    # The compiled shadows' lean replay against the pure twin's, which is ``get`` and ``set``:
    # the same hits, counters and held keys, batch after batch.
    pure, compiled = (twin.InMemoryLayer(max_size=max_size) for twin in (PURE, COMPILED))
    for batch in batches:
        events = np.array([key << 1 | write for key, write in batch], dtype=np.uint64)
        hits = [layer._replay_accesses(events, [None] * len(events)) for layer in (pure, compiled)]
        assert hits[0] == hits[1]
        assert pure.stats() == compiled.stats()
        assert sorted(pure.keys()) == sorted(compiled.keys())
    check_invariants(compiled)


def test_same_estimates_on_a_trace() -> None:
    # Long enough that sample buffers fill and replay many times over.
    from multilayercache.tools.simulation import load_trace, replay

    from support import trace_path

    trace = load_trace(trace_path("multi2"))
    layers = [
        twin.InMemoryLayer(max_size=600, estimate_sizes=(0.5, 2, 4), estimate_sample_rate=0.3)
        for twin in (PURE, COMPILED)
    ]
    for layer in layers:
        replay(trace, 600, layer_factory=lambda size, layer=layer: layer)
    same_estimates(*layers)


@pytest.mark.parametrize("name,sizes", [("gli", [500, 1000, 1500]), ("corda-vault", [10, 25, 50])])
def test_same_hits_on_traces(name, sizes) -> None:
    from multilayercache.tools.simulation import load_trace, replay

    from support import trace_path

    trace = load_trace(trace_path(name))
    for size in sizes:
        pure_hits = replay(trace, size, layer_factory=lambda n: PURE.InMemoryLayer(max_size=n))
        compiled_hits = replay(
            trace, size, layer_factory=lambda n: COMPILED.InMemoryLayer(max_size=n)
        )
        assert pure_hits == compiled_hits


# Encoded write-behind writes (``PackedWrite``): sets with a deadline, with a lifetime but
# no deadline, with neither; deletes; now and then one only over older values, or a key
# holding NUL; keys beyond ASCII, values holding NUL bytes.
packed_writes = st.lists(
    st.builds(
        lambda key, data, milliseconds, deadline, newer: PackedWrite(
            key, data, milliseconds, deadline if data is not None else None, 0, newer
        ),
        st.text(max_size=6),
        st.one_of(st.none(), st.binary(max_size=20)),
        st.one_of(st.none(), st.integers(0, 10**9)),
        st.one_of(st.none(), st.floats(0, 2e9)),
        st.sampled_from([False] * 19 + [True]),
    ),
    max_size=40,
)


@SETTINGS
@given(writes=packed_writes, now=st.floats(0, 2e9))
def test_write_batch_packing(writes, now) -> None:
    assert COMPILED.pack_writes(writes, now) == PURE.pack_writes(writes, now)
