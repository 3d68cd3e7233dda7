"""Eight real threads mixing every operation on one shared layer keep its invariants."""

from __future__ import annotations

import random
import sys
import threading

import pytest

from invariants import check_invariants

THREADS = 8
OPERATIONS = 4_000


class SlowKey:
    """A key whose __hash__ and __eq__ run Python code: threads can switch mid-lookup."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __hash__(self) -> int:
        return self.number % 17  # many collisions, so probes compare keys

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlowKey) and other.number == self.number


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.parametrize("weighted", [False, True])
def test_threads_mixing_all_operations(Layer, weighted) -> None:
    if weighted:
        cache = Layer(max_weight=150, weigher=lambda key, value: 1 + value[2] % 4)
    else:
        cache = Layer(max_size=60)
    errors: list[BaseException] = []
    gets = [0] * THREADS
    barrier = threading.Barrier(THREADS)

    def worker(thread: int) -> None:
        rng = random.Random(thread)
        try:
            barrier.wait()
            for step in range(OPERATIONS):
                number = rng.randrange(200)
                key = SlowKey(number) if number % 3 == 0 else number
                op = rng.random()
                if op < 0.45:
                    gets[thread] += 1
                    value = cache.get(key)
                    if value is not None:
                        assert value[0] == number, f"key {number} returned {value!r}"
                elif op < 0.75:
                    ttl = rng.choice([None, 0.0005, 0.005, 0.05, 5])
                    cache.set(key, (number, thread, step), ttl=ttl)
                elif op < 0.85:
                    cache.delete(key)
                elif op < 0.9:
                    cache.adjust_ttl(key, rng.choice([0.001, 1, None]))
                elif op < 0.95:
                    assert len(cache) <= 60 or weighted
                    _ = key in cache
                else:
                    cache.get_top_keys(3)
                    cache.snapshot(3)
                    cache.stats()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    stats = cache.stats()
    assert stats.hits + stats.misses == sum(gets)
    if weighted:
        assert stats.weight <= 150
    else:
        assert len(cache) <= 60
    check_invariants(cache)
