"""One flight per key (issue 19), on {sync, asyncio} x {compiled, pure}: ``get_or_load``,
``get_or_load_many``, ``@cached`` and background refreshes of one key share one load,
whichever of them started it."""

from __future__ import annotations

import threading
import time
from collections import Counter

from multilayercache import LayerPolicy, LoadOptions

from support import together


class Loads:
    """A single and a bulk loader of either kind that count their calls per key and take
    ``delay`` seconds, so that every other caller arrives while they run."""

    def __init__(self, harness, delay: float = 0.2, leave_out: tuple = ()) -> None:
        self.calls: Counter = Counter()
        self.delay, self.leave_out = delay, leave_out
        self.is_async = harness.is_async
        self.lock = threading.Lock()

    def _count(self, what: str, keys) -> None:
        with self.lock:
            self.calls[what] += 1
            self.calls.update(keys)

    def single(self, key):
        self._count("single", [key])
        if self.is_async:
            return self._later(f"{key} by one")
        time.sleep(self.delay)
        return f"{key} by one"

    def bulk(self, keys):
        self._count("bulk", keys)
        found = {key: f"{key} by batch" for key in keys if key not in self.leave_out}
        if self.is_async:
            return self._later(found)
        time.sleep(self.delay)
        return found

    async def _later(self, value):
        import asyncio

        await asyncio.sleep(self.delay)
        return value


def test_20_callers_split_between_one_key_and_batches_make_one_load(harness) -> None:
    cache = harness.cache([harness.l1(), harness.l2()])
    for first in ("single", "batch"):  # whichever starts the flight, the others join it
        key = f"key started by {first}"
        loads = Loads(harness)
        one = lambda c, key=key, loads=loads: c.get_or_load(key, loads.single)  # noqa: E731
        many = lambda c, key=key, loads=loads: c.get_or_load_many([key], loads.bulk)  # noqa: E731
        calls = [one, many] * 10 if first == "single" else [many, one] * 10
        results = together(cache, *calls, stagger=0.002)
        assert loads.calls["single"] + loads.calls["bulk"] == 1, loads.calls
        # Every caller got the one load's value. Which load it was is the scheduler's: the
        # first call is 2 ms ahead, which a busy machine can swallow.
        expected = f"{key} by one" if loads.calls["single"] else f"{key} by batch"
        for result, _ in results:
            assert result in (expected, {key: expected}), result
    assert cache.in_flight == 0


def test_a_batch_waits_for_the_keys_single_callers_are_loading(harness) -> None:
    cache = harness.cache([harness.l1()])
    loads = Loads(harness)
    results = together(
        cache,
        lambda c: c.get_or_load("b", loads.single),
        lambda c: c.get_or_load_many(["a", "b", "c"], loads.bulk),
    )
    assert results[1][0] == {"a": "a by batch", "b": "b by one", "c": "c by batch"}
    assert loads.calls == Counter({"single": 1, "bulk": 1, "a": 1, "b": 1, "c": 1})


def test_a_key_a_batch_had_no_value_for_is_loaded_by_the_single_caller(harness) -> None:
    cache = harness.cache([harness.l1()])
    loads = Loads(harness, leave_out=("gone",))
    results = together(
        cache,
        lambda c: c.get_or_load_many(["gone", "here"], loads.bulk),
        lambda c: c.get_or_load("gone", loads.single),
    )
    assert results[0][0] == {"here": "here by batch"}
    assert results[1][0] == "gone by one"  # it waited for the batch, then loaded it itself
    assert loads.calls["single"] == 1 and loads.calls["bulk"] == 1


def test_a_cached_function_and_get_or_load_of_its_key_share_a_load(harness) -> None:
    cache = harness.cache([harness.l1()])
    raw = cache._target
    loads = Loads(harness)

    @raw.cached(key="user:{user_id}")
    @harness.define
    def user(user_id: int) -> str:
        time.sleep(0.2) if not harness.is_async else None
        loads.calls["function"] += 1
        return f"user {user_id}"

    if harness.is_async:  # the body sleeps in the loop's thread: make the loader the slow one
        import asyncio

        async def load(key):
            loads.calls["loader"] += 1
            await asyncio.sleep(0.2)
            return f"user {key.split(':')[1]}"

        calls = [lambda c: c.get_or_load("user:7", load), lambda c: user(7)]
    else:

        def load(key):
            loads.calls["loader"] += 1
            time.sleep(0.2)
            return f"user {key.split(':')[1]}"

        calls = [lambda c: user(7), lambda c: c.get_or_load("user:7", load)]
    results = together(cache, *calls * 3)
    assert [value for value, _ in results] == ["user 7"] * 6
    assert loads.calls["function"] + loads.calls["loader"] == 1


def test_a_batch_joins_the_background_refresh_of_its_key(harness, clock) -> None:
    # Refresh-ahead queues a refresh of a hot key; the key then expires while the refresh
    # runs, and a batch that needs it waits for that refresh instead of loading it again.
    policy = LayerPolicy(ttl=10, refresh_ahead=0.5, refresh_jitter=0)
    options = LoadOptions(stale_while_revalidate=False)
    cache = harness.cache([harness.l1(clock=clock)], [policy], load_options=options)
    loads = Loads(harness, delay=0.3)
    assert cache.get_or_load("k", loads.single) == "k by one"
    clock.advance(6)  # past the refresh point: answered, and refreshed in the background
    results = together(
        cache,
        lambda c: c.get_or_load("k", loads.single),  # due: answered, and queues a refresh
        lambda c: (clock.advance(6), c.get_or_load_many(["k"], loads.bulk))[1],  # expired
        stagger=0.05,
    )
    assert results[0][0] == "k by one"
    assert results[1][0] == {"k": "k by one"}  # the refresh's value
    assert cache.wait_idle(5)
    assert loads.calls["single"] == 2 and loads.calls["bulk"] == 0


def test_a_caller_that_joins_a_refresh_gets_its_value(harness, clock) -> None:
    policy = LayerPolicy(ttl=10, refresh_ahead=0.5, refresh_jitter=0)
    options = LoadOptions(stale_while_revalidate=False)
    cache = harness.cache([harness.l1(clock=clock)], [policy], load_options=options)
    loads = Loads(harness, delay=0.3)
    assert cache.get_or_load("k", loads.single) == "k by one"
    clock.advance(6)
    results = together(
        cache,
        lambda c: c.get_or_load("k", loads.single),
        lambda c: (clock.advance(6), c.get_or_load("k", loads.single))[1],
        stagger=0.05,
    )
    assert [value for value, _ in results] == ["k by one", "k by one"]  # (was None)
    assert cache.wait_idle(5) and loads.calls["single"] == 2


def test_a_caller_that_joins_a_bulk_refresh_gets_its_keys_value(harness, clock) -> None:
    # A key loaded by get_or_load_many is refreshed by the bulk loader, alone in its batch
    # here: a single caller joining that refresh gets the key's value, not the batch's map.
    policy = LayerPolicy(ttl=10, refresh_ahead=0.5, refresh_jitter=0)
    options = LoadOptions(stale_while_revalidate=False)
    cache = harness.cache([harness.l1(clock=clock)], [policy], load_options=options)
    loads = Loads(harness, delay=0.3)
    assert cache.get_or_load_many(["k"], loads.bulk) == {"k": "k by batch"}
    clock.advance(6)  # past the refresh point
    results = together(
        cache,
        lambda c: c.get_or_load_many(["k"], loads.bulk),  # due: answered, bulk refresh queued
        lambda c: (clock.advance(6), c.get_or_load("k", loads.single))[1],  # joins it
        stagger=0.05,
    )
    assert results[0][0] == {"k": "k by batch"}
    assert results[1][0] == "k by batch"  # (was {"k": "k by batch"})
    assert cache.wait_idle(5) and loads.calls["bulk"] == 2 and loads.calls["single"] == 0
