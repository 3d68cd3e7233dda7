"""pytest-benchmark guards for InMemoryLayer (and dict baselines to read ratios against).

    pytest benchmarks --benchmark-enable --benchmark-columns=median,ops --benchmark-sort=name

Each benchmark calls the operation over a batch of 1,000 keys, so the median is per batch;
compare rows of one run (ours against the ``dict`` baseline of the same keys).
"""

from __future__ import annotations

import pytest

from multilayercache import InMemoryLayer
from multilayercache.tools.benchmarking import zipf_indices

ENTRIES = 10_000
BATCH = 1_000


def int_keys() -> list[int]:
    return list(range(ENTRIES))


def str_keys() -> list[str]:
    return [f"key:{i}" for i in range(ENTRIES)]


@pytest.fixture(params=["int", "str"])
def keys(request) -> list:
    return int_keys() if request.param == "int" else str_keys()


def loop(get, probes):
    def run():
        for key in probes:
            get(key)

    return run


def test_get_hit(benchmark, keys) -> None:
    cache = InMemoryLayer(max_size=2 * ENTRIES)
    for key in keys:
        cache.set(key, key)
    probes = [keys[i] for i in zipf_indices(BATCH, ENTRIES)]
    assert all(cache.get(key) == key for key in probes)
    benchmark(loop(cache.get, probes))


def test_dict_get_baseline(benchmark, keys) -> None:
    plain = {key: key for key in keys}
    probes = [keys[i] for i in zipf_indices(BATCH, ENTRIES)]
    benchmark(loop(plain.get, probes))


def test_get_miss(benchmark, keys) -> None:
    cache = InMemoryLayer(max_size=2 * ENTRIES)
    for key in keys[: ENTRIES // 2]:
        cache.set(key, key)
    probes = keys[ENTRIES // 2 : ENTRIES // 2 + BATCH]
    assert all(cache.get(key) is None for key in probes)
    benchmark(loop(cache.get, probes))


def test_set_with_eviction(benchmark) -> None:
    cache = InMemoryLayer(max_size=1_000)
    counter = iter(range(10**9))

    def run():
        start = next(counter) * BATCH
        for key in range(start, start + BATCH):
            cache.set(key, key)

    benchmark(run)
    assert len(cache) == 1_000 and cache.stats().evictions > 0


def test_mixed_zipf_replay(benchmark) -> None:
    # get; set on a miss. Capacity 10k, keys from a zipf law (s = 0.9) over 1M keys.
    from compare_peers import zipf_operations

    operations = zipf_operations(100_000, 1_000_000, 0.9)
    cache = InMemoryLayer(max_size=10_000)
    get, put = cache.get, cache.set

    def run():
        for key in operations:
            if get(key) is None:
                put(key, key)

    benchmark.pedantic(run, rounds=5, iterations=1)
