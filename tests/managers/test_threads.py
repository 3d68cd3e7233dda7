"""``MultilayerCache`` under real threads: coalescing, and its compiled fast path."""

from __future__ import annotations

import threading
import time

import pytest

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer


@pytest.fixture
def sync_layers(redis_url, prefix):
    l1 = InMemoryLayer(max_size=1_000, name="l1")
    l2 = RedisLayer(redis_url, prefix=prefix, name="l2")
    yield l1, l2
    l2.close()


@pytest.fixture
def sync_cache(sync_layers):
    return MultilayerCache(list(sync_layers))


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
