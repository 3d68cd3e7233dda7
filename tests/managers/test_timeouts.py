"""Soft and hard timeouts, on {sync, asyncio} x {compiled, pure}: a caller waiting for
another caller's load of its key stops waiting at its timeout (with a stale value, its own
or one the load found in a slower layer, at the soft one; with ``LoadTimeoutError`` at the
hard one), while the load goes on and is cached when it ends. No thread is started per load:
in threads the caller that leads the flight runs the loader and returns its value however
long it takes; under asyncio the flight is a task, so that caller stops waiting too."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from multilayercache import LayerPolicy, LoadGateTimeout, LoadOptions, LoadTimeoutError

from support import together

STALE = [LayerPolicy(ttl=10, stale_ttl=100)]


class Source:
    """A loader of either kind that counts its calls, takes ``delay`` seconds and notes the
    thread it ran in."""

    def __init__(self, harness, delay: float = 0.0) -> None:
        self.delay, self.calls, self.threads = delay, 0, []
        self.is_async = harness.is_async

    def __call__(self, key):
        return self.awaited(key) if self.is_async else self.blocking(key)

    def blocking(self, key):
        self.calls += 1
        self.threads.append(threading.current_thread())
        time.sleep(self.delay)
        return f"{key} v{self.calls}"

    async def awaited(self, key):
        self.calls += 1
        await asyncio.sleep(self.delay)
        return f"{key} v{self.calls}"


def stale_cache(harness, clock, **options):
    """A cache whose L1 holds "k" stale ("k old"), which callers may not be served at once."""
    load_options = LoadOptions(stale_while_revalidate=False, **options)
    cache = harness.cache([harness.l1(clock=clock)], STALE, load_options=load_options)
    cache.set("k", "k old")
    clock.advance(20)
    return cache


def test_a_waiter_gets_the_stale_value_at_its_soft_timeout(harness, clock) -> None:
    cache = stale_cache(harness, clock, soft_timeout=0.05)
    slow = Source(harness, delay=0.4)
    (first, first_seconds), (second, second_seconds) = together(
        cache, lambda c: c.get_or_load("k", slow), lambda c: c.get_or_load("k", slow)
    )
    assert second == "k old" and second_seconds < 0.3  # the soft timeout, not the load
    if harness.is_async:  # the flight is a task: its first caller stops waiting too
        assert first == "k old" and first_seconds < 0.3
    else:  # the first caller runs the load itself, and returns its value
        assert first == "k v1" and first_seconds >= 0.4
    assert cache.wait_idle(5)
    assert cache.get("k") == "k v1" and slow.calls == 1
    assert cache.stats().soft_timeouts == (2 if harness.is_async else 1)


def test_a_waiter_gets_the_stale_value_the_load_found_in_a_slower_layer(harness) -> None:
    # L1 forgets the key; L2 keeps it stale. Only the flight's leader looks in L2: it hands
    # the stale value to the callers waiting for it.
    policies = [LayerPolicy(ttl=0.1), LayerPolicy(ttl=0.1, stale_ttl=60)]
    options = LoadOptions(stale_while_revalidate=False, soft_timeout=0.1)
    cache = harness.cache([harness.l1(), harness.l2()], policies, load_options=options)
    cache.set("k", "k old")
    time.sleep(0.2)
    slow = Source(harness, delay=0.6)
    results = together(
        cache, lambda c: c.get_or_load("k", slow), lambda c: c.get_or_load("k", slow)
    )
    (second, second_seconds) = results[1]
    assert second == "k old" and second_seconds < 0.45
    assert cache.wait_idle(5) and slow.calls == 1
    assert cache.get("k") == "k v1"


def test_without_a_stale_value_the_soft_timeout_does_not_apply(harness) -> None:
    options = LoadOptions(soft_timeout=0.05)
    cache = harness.cache([harness.l1()], load_options=options)
    slow = Source(harness, delay=0.2)
    results = together(
        cache, lambda c: c.get_or_load("k", slow), lambda c: c.get_or_load("k", slow)
    )
    assert [value for value, _ in results] == ["k v1", "k v1"]
    assert cache.stats().soft_timeouts == 0


def test_a_waiter_gives_up_at_its_hard_timeout_and_the_value_is_cached_later(harness) -> None:
    cache = harness.cache([harness.l1()])
    slow = Source(harness, delay=0.4)
    (first, _), (second, second_seconds) = together(
        cache,
        lambda c: c.get_or_load("k", slow),
        lambda c: c.get_or_load("k", slow, hard_timeout=0.05),
    )
    assert first == "k v1"
    assert isinstance(second, LoadTimeoutError) and "hard timeout" in str(second)
    assert isinstance(second, TimeoutError)
    assert second_seconds < 0.3
    assert cache.wait_idle(5)
    assert cache.get("k") == "k v1" and cache.stats().hard_timeouts == 1 and slow.calls == 1


def test_a_hard_timeout_with_a_stale_value_answers_with_it(harness, clock) -> None:
    cache = stale_cache(harness, clock, hard_timeout=0.05)
    slow = Source(harness, delay=0.4)
    (_, _), (second, second_seconds) = together(
        cache, lambda c: c.get_or_load("k", slow), lambda c: c.get_or_load("k", slow)
    )
    assert second == "k old" and second_seconds < 0.3
    assert cache.wait_idle(5) and cache.get("k") == "k v1"


def test_a_batch_waiting_for_a_slow_load_of_one_of_its_keys_gives_up_at_the_hard_timeout(
    harness,
) -> None:
    options = LoadOptions(hard_timeout=0.05)
    cache = harness.cache([harness.l1()], load_options=options)
    slow = Source(harness, delay=0.4)
    bulk = harness.loader(lambda keys: {key: f"{key} bulk" for key in keys})
    results = together(
        cache,
        lambda c: c.get_or_load("slow", slow, hard_timeout=5),
        lambda c: c.get_or_load_many(["other", "slow"], bulk),
    )
    batch, seconds = results[1]
    assert isinstance(batch, LoadTimeoutError) and seconds < 0.3
    assert cache.get("other") == "other bulk"  # its own keys were loaded and cached
    assert cache.wait_idle(5) and cache.get("slow") == "slow v1"


def test_a_timeout_bounds_the_wait_for_a_load_slot(harness) -> None:
    options = LoadOptions(max_concurrent_loads=1, load_wait=10)
    cache = harness.cache([harness.l1()], load_options=options)
    slow = Source(harness, delay=0.4)
    quick = Source(harness)
    results = together(
        cache,
        lambda c: c.get_or_load("held", slow),
        lambda c: c.get_or_load("other", quick, hard_timeout=0.05),
    )
    error, seconds = results[1]
    # (LoadTimeoutError under asyncio when the caller stops waiting for the flight's task
    # before that task stops waiting for a slot: both at the same timeout)
    assert isinstance(error, LoadGateTimeout if not harness.is_async else TimeoutError)
    assert seconds < 0.3  # not load_wait
    assert quick.calls == 0


@pytest.mark.parametrize("kind", ["sync"])
def test_in_threads_the_load_runs_in_the_callers_thread_whatever_the_timeouts(harness) -> None:
    options = LoadOptions(soft_timeout=0.01, hard_timeout=0.02)
    cache = harness.cache([harness.l1()], load_options=options)
    slow = Source(harness, delay=0.1)
    before = threading.active_count()
    assert cache.get_or_load("k", slow) == "k v1"  # its own load: not abandoned
    assert slow.threads == [threading.current_thread()]
    assert threading.active_count() == before
    assert cache.stats().hard_timeouts == 0


@pytest.mark.parametrize("kind", ["asyncio"])
def test_under_asyncio_the_first_caller_stops_waiting_too(harness) -> None:
    cache = harness.cache([harness.l1()])
    slow = Source(harness, delay=0.3)
    start = time.perf_counter()
    with pytest.raises(LoadTimeoutError):
        cache.get_or_load("k", slow, hard_timeout=0.05)
    assert time.perf_counter() - start < 0.25
    assert cache.wait_idle(5)  # the flight's task went on, and cached its value
    assert cache.get("k") == "k v1" and cache.stats().hard_timeouts == 1
