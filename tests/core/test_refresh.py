"""The refresh queue decides what a short refresh budget refreshes: stale before early, hot
before cold, each key once, and one bulk call per group."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from multilayercache.core.refresh import RefreshJob, RefreshQueue

JOB = RefreshJob(lambda keys: None)


def test_stale_goes_first_then_the_hottest() -> None:
    queue = RefreshQueue()
    queue.push("early-hot", JOB, stale=False, frequency=15)
    queue.push("stale-cold", JOB, stale=True, frequency=1)
    queue.push("early-warm", JOB, stale=False, frequency=7)
    queue.push("stale-hot", JOB, stale=True, frequency=9)
    order = [queue.pop_batch(1)[0][0] for _ in range(4)]
    assert order == ["stale-hot", "stale-cold", "early-hot", "early-warm"]
    assert queue.pop_batch(1) == []


def test_a_key_is_queued_once() -> None:
    queue = RefreshQueue()
    assert queue.push("k", JOB, stale=False, frequency=1)
    assert not queue.push("k", JOB, stale=True, frequency=9)
    assert len(queue) == 1 and "k" in queue


def test_when_full_only_hotter_early_refreshes_get_in() -> None:
    queue = RefreshQueue(capacity=2)
    queue.push("a", JOB, stale=False, frequency=5)
    queue.push("b", JOB, stale=False, frequency=3)
    assert not queue.push("cold", JOB, stale=False, frequency=1)  # colder than all: dropped
    assert queue.push("hot", JOB, stale=False, frequency=9)  # displaces b, the coldest
    assert queue.push("stale", JOB, stale=True, frequency=0)  # stale beats any early one
    assert sorted(key for key in ("a", "b", "hot", "stale", "cold") if key in queue) == [
        "hot",
        "stale",
    ]
    assert queue.dropped == 3
    full_of_stale = RefreshQueue(capacity=1)
    full_of_stale.push("s", JOB, stale=True, frequency=0)
    assert not full_of_stale.push("t", JOB, stale=True, frequency=9)


def test_a_group_is_taken_as_one_batch() -> None:
    bulk = object()
    queue = RefreshQueue()
    grouped = RefreshJob(lambda keys: None, group=bulk)
    for index in range(5):
        queue.push(f"g{index}", grouped, stale=False, frequency=index)
    queue.push("alone", JOB, stale=False, frequency=2)
    batch = queue.pop_batch(3)
    assert [key for key, _ in batch] == ["g4", "g3", "g2"]
    rest = [queue.pop_batch(10) for _ in range(3)]
    assert [[key for key, _ in b] for b in rest] == [["alone"], ["g1", "g0"], []]


@given(
    st.lists(st.tuples(st.integers(0, 30), st.booleans(), st.integers(0, 15)), max_size=200),
    st.integers(1, 8),
)
def test_never_over_capacity_and_every_kept_key_comes_out_once(pushes, capacity) -> None:
    queue = RefreshQueue(capacity=capacity)
    for key, stale, frequency in pushes:
        queue.push(key, JOB, stale=stale, frequency=frequency)
        assert len(queue) <= capacity
    kept = {key for key in range(31) if key in queue}
    popped = []
    while batch := queue.pop_batch(1):
        popped += [key for key, _ in batch]
    assert sorted(popped) == sorted(kept) and len(queue) == 0
