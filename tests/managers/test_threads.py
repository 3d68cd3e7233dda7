"""``MultilayerCache`` under real threads: coalescing, and its compiled fast paths."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer


def run_switching_at_every_step(threads: list[threading.Thread]) -> None:
    """Run ``threads`` to their end (a minute at most), switching between them after any
    step: every interleaving the GIL allows."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)


@pytest.fixture
def sync_layers(redis_url, prefix):
    l1 = InMemoryLayer(max_size=1_000, name="l1")
    l2 = RedisLayer(redis_url, prefix=prefix, name="l2")
    yield l1, l2
    l2.close()


@pytest.fixture(params=["l1 + l2", "l1 alone"])
def sync_cache(request, sync_layers):
    # L1 alone: a miss skips the plans (the front door's plan-free load), in the same flight
    return MultilayerCache(list(sync_layers) if request.param == "l1 + l2" else [sync_layers[0]])


def run_threads(count: int, work) -> None:
    barrier = threading.Barrier(count)

    def start() -> None:
        barrier.wait()
        work()

    threads = [threading.Thread(target=start) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_64_threads_on_one_missing_key_call_the_loader_once(sync_cache) -> None:
    calls = []
    results = []

    def loader(key):
        calls.append(key)
        time.sleep(0.2)
        return f"value of {key}"

    run_threads(64, lambda: results.append(sync_cache.get_or_load("hot", loader)))
    assert calls == ["hot"]
    assert results == ["value of hot"] * 64
    assert sync_cache.in_flight == 0
    stats = sync_cache.stats()
    assert stats.loader_calls == 1 and stats.coalesced_waits == 63
    assert stats.load_latency.p50 >= 0.2


def test_loader_exception_reaches_every_waiter(sync_cache) -> None:
    errors = []
    calls = []

    def loader(key):
        calls.append(key)
        time.sleep(0.1)
        raise ValueError("database down")

    def work() -> None:
        try:
            sync_cache.get_or_load("k", loader)
        except ValueError as error:
            errors.append(str(error))

    run_threads(16, work)
    assert len(calls) == 1 and errors == ["database down"] * 16
    assert sync_cache.in_flight == 0 and sync_cache.get("k") is None  # nothing cached


def test_compiled_front_door_and_reference_get_agree(sync_layers) -> None:
    l1, l2 = sync_layers
    cache = MultilayerCache([l1, l2])
    reference = MultilayerCache.get  # the readable Python version
    cache.set("both", 1)
    l2.set("below", 2)
    for key, expected in (("both", 1), ("below", 2), ("nowhere", "dflt")):
        assert cache.get(key, "dflt") == reference(cache, key, "dflt") == expected
    assert reference(cache, "below") == 2 and "below" in l1  # both promote
    assert cache.get("nowhere") is None and reference(cache, "nowhere") is None


def test_threads_mixing_plain_and_timed_loads_of_one_key_share_one_load(sync_layers) -> None:
    # L1 alone: a plain miss loads without a plan, one with a timeout through the plan;
    # both kinds of callers join whichever flight of the key started first.
    cache = MultilayerCache([sync_layers[0]])
    calls, results = [], []
    started = threading.Event()

    def loader(key):
        calls.append(key)
        started.set()
        time.sleep(0.2)
        return f"value of {key}"

    def work(index: int) -> None:
        if index % 2:
            results.append(cache.get_or_load("hot", loader, hard_timeout=5))
        else:
            results.append(cache.get_or_load("hot", loader))

    counter = iter(range(32))
    lock = threading.Lock()

    def next_work() -> None:
        with lock:
            index = next(counter)
        work(index)

    run_threads(32, next_work)
    assert calls == ["hot"] and results == ["value of hot"] * 32
    assert cache.stats().coalesced_waits == 31 and cache.in_flight == 0


def test_a_lone_layer_load_that_asks_for_its_own_key_fails_at_once(sync_layers) -> None:
    from multilayercache import RecursiveLoadError

    cache = MultilayerCache([sync_layers[0]])

    def loader(key):
        return cache.get_or_load(key, loader)

    start = time.monotonic()
    with pytest.raises(RecursiveLoadError):
        cache.get_or_load("self", loader)
    assert time.monotonic() - start < 1 and cache.in_flight == 0
    assert cache.get_or_load("self", lambda key: "fine") == "fine"  # the key is not stuck


def test_threads_storming_few_keys_of_a_lone_layer_get_their_values_and_counts(sync_layers) -> None:
    # The plan-free load takes no lock to start or end a key's flight (``SingleFlight.lead``
    # and ``end``), nor to count the load: waiters arriving as it ends must still wake,
    # with the value, and no count may be lost between it and the plans' loads.
    cache = MultilayerCache([InMemoryLayer(max_size=4)])  # 4 of 12 keys held: many misses
    wrong, done, calls = [], [], []

    def loader(key):
        calls.append(key)
        time.sleep(0.0001 * (hash(key) % 3))
        return f"value of {key}"

    def work() -> None:
        for index in range(1500):
            key = f"k{index % 12}"
            kwargs = {"hard_timeout": 5} if index % 7 == 0 else {}
            value = cache.get_or_load(key, loader, **kwargs)
            if value != f"value of {key}":
                wrong.append((key, value))
        done.append(True)

    run_switching_at_every_step([threading.Thread(target=work, daemon=True) for _ in range(8)])
    assert len(done) == 8, "a caller hung waiting for a flight that had ended"
    assert not wrong and cache.in_flight == 0
    stats = cache.stats()
    assert stats.loader_calls == stats.load_latency.count == len(calls)


def test_threads_loading_at_once_lose_no_count() -> None:
    # Misses of a lone layer count their loads without the state's lock (the compiled
    # recorder records in one step under the GIL); the plans' loads count under it. With
    # threads switching between any two steps, every load is still counted once.
    cache = MultilayerCache([InMemoryLayer(max_size=100_000)])
    calls = []

    def loader(key):
        calls.append(key)
        return key

    def work(thread: int) -> None:
        for index in range(3_000):
            kwargs = {"hard_timeout": 5} if index % 5 == 0 else {}  # the plan's load
            cache.get_or_load((thread, index), loader, **kwargs)

    run_switching_at_every_step(
        [threading.Thread(target=work, args=(n,), daemon=True) for n in range(6)]
    )
    stats = cache.stats()
    assert len(calls) == 18_000
    assert stats.loader_calls == stats.load_latency.count == 18_000
    assert stats.load_latency.total_seconds > 0
