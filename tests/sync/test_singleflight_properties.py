"""One flight per key, whatever the mix of single calls and batches (Hypothesis), for the
thread ``SingleFlight`` and the asyncio ``AsyncSingleFlight`` alike: a key is never loaded
twice at once, a single caller always gets a value (a batch's, or a load of its own when the
batch had none), a batch gets every key its loads had a value for, and nothing stays in
flight. Real threads and tasks; the loads take random short times so that they overlap."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache.aio.singleflight import AsyncSingleFlight
from multilayercache.sync.singleflight import SingleFlight

KEYS = st.sampled_from("abcde")
REQUESTS = st.lists(
    st.one_of(
        st.tuples(st.just("one"), KEYS),
        st.tuples(st.just("many"), st.lists(KEYS, min_size=1, max_size=4, unique=True)),
    ),
    min_size=2,
    max_size=12,
)
OMITTED = st.sets(KEYS, max_size=2)  # keys the bulk loader has no value for


class Loads:
    """Counts the loads of each key running at once, and the most there ever were."""

    def __init__(self, omitted: set[str], seed: int) -> None:
        self.omitted = omitted
        self.running: Counter[str] = Counter()
        self.most = 0
        self.lock = threading.Lock()
        self.rng = random.Random(seed)

    def begin(self, keys: list[str]) -> float:
        with self.lock:
            self.running.update(keys)
            self.most = max(self.most, *self.running.values())
            return self.rng.random() * 0.003

    def end(self, keys: list[str]) -> None:
        with self.lock:
            self.running.subtract(keys)

    def one(self, key: str) -> str:
        return f"{key} by one"

    def many(self, keys: list[str]) -> dict[str, str]:
        return {key: f"{key} by batch" for key in keys if key not in self.omitted}


def check(requests, results, omitted: set[str], loads: Loads) -> None:
    assert loads.most == 1, "a key was loaded twice at once"
    for (kind, keys), result in zip(requests, results, strict=True):
        if kind == "one":
            assert result in (f"{keys} by one", f"{keys} by batch"), result
        else:
            assert set(result) >= set(keys) - omitted, (keys, result)
            for key, value in result.items():
                assert value in (f"{key} by one", f"{key} by batch")


@settings(max_examples=40, deadline=None)
@given(requests=REQUESTS, omitted=OMITTED, seed=st.integers(0, 1000))
def test_threads_share_one_flight_per_key(requests, omitted, seed) -> None:
    flight = SingleFlight()
    loads = Loads(omitted, seed)
    results: list[object] = [None] * len(requests)

    def one(key: str) -> str:
        time.sleep(loads.begin([key]))
        try:
            return loads.one(key)
        finally:
            loads.end([key])

    def many(keys: list[str]) -> dict[str, str]:
        time.sleep(loads.begin(keys))
        try:
            return loads.many(keys)
        finally:
            loads.end(keys)

    barrier = threading.Barrier(len(requests))

    def call(n: int, kind: str, keys) -> None:
        barrier.wait()
        if kind == "one":
            results[n] = flight.do(keys, lambda: one(keys))
        else:
            results[n] = flight.do_many(keys, many)

    threads = [
        threading.Thread(target=call, args=(n, *request)) for n, request in enumerate(requests)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    check(requests, results, omitted, loads)
    assert len(flight) == 0


@settings(max_examples=40, deadline=None)
@given(requests=REQUESTS, omitted=OMITTED, seed=st.integers(0, 1000))
def test_tasks_share_one_flight_per_key(requests, omitted, seed) -> None:
    loads = Loads(omitted, seed)

    async def one(key: str) -> str:
        await asyncio.sleep(loads.begin([key]))
        try:
            return loads.one(key)
        finally:
            loads.end([key])

    async def many(keys: list[str]) -> dict[str, str]:
        await asyncio.sleep(loads.begin(keys))
        try:
            return loads.many(keys)
        finally:
            loads.end(keys)

    async def run() -> tuple[list[object], int]:
        flight = AsyncSingleFlight()

        async def call(n: int, kind: str, keys) -> object:
            await asyncio.sleep(loads.rng.random() * 0.002)
            if kind == "one":
                return await flight.do(keys, lambda: one(keys))
            return await flight.do_many(keys, many)

        results = await asyncio.gather(*(call(n, *r) for n, r in enumerate(requests)))
        await asyncio.sleep(0)  # finished flights are forgotten on the next tick
        return list(results), len(flight)

    results, in_flight = asyncio.run(run())
    check(requests, results, omitted, loads)
    assert in_flight == 0
