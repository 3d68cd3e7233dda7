"""Removal listeners against an oracle, on random operation sequences (Hypothesis).

Every value the layer held leaves it exactly once (a final ``clear`` makes everything
leave), so the multiset of removals is what the oracle derives from the sequence and the
layer's own counters: each value written once (but those written already expired, which
never entered); ``expired`` as many as ``stats().expirations``, ``rejected`` as many as
``stats().rejections``, ``evicted`` plus ``rejected`` as many as ``stats().evictions``
plus the writes heavier than the whole layer (turned away), ``invalidated`` as
many as the deletes that found the key plus the entries ``clear`` found; a value reported
``replaced`` was written over by a later write of its key. And both twins report the very
same sequence.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from support import IMPLEMENTATIONS, FakeClock

WAIT = 10.0

keys = st.integers(0, 12)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, st.sampled_from([None, 0, 0.5, 1, 3, math.inf])),
        st.tuples(st.just("get"), keys, st.none()),
        st.tuples(st.just("delete"), keys, st.none()),
        st.tuples(st.just("touch"), keys, st.sampled_from([0, 1, 5])),
        st.tuples(st.just("advance"), st.none(), st.sampled_from([0.3, 1, 2])),
        st.tuples(st.just("clear"), st.none(), st.none()),
    ),
    max_size=60,
)


class Collect:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, Any, str]] = []
        self.done = threading.Condition()

    def __call__(self, key: Any, value: Any, cause: str) -> None:
        with self.done:
            self.seen.append((key, value, cause))
            self.done.notify_all()


def run(implementation: Any, bound: int, weighted: bool, script: list[tuple]) -> dict[str, Any]:
    """Play ``script`` on a fresh layer; what the oracle needs to judge it."""
    clock = FakeClock()
    heard = Collect()
    if weighted:
        layer = implementation.InMemoryLayer(
            max_weight=bound * 2, weigher=lambda key, value: 1 + key % 3, clock=clock
        )
    else:
        layer = implementation.InMemoryLayer(max_size=bound, clock=clock)
    layer.add_removal_listener(heard)
    written: list[tuple[int, tuple[int, int]]] = []  # (key, value) of each write that held
    every_set: list[tuple[int, tuple[int, int]]] = []  # and of every write, TTL 0 included
    oversized = 0  # writes turned away, heavier than the whole layer (reported rejected)
    invalidated = 0
    for number, (operation, key, argument) in enumerate(script):
        if operation == "set":
            value = (key, number)
            layer.set(key, value, ttl=argument)
            every_set.append((key, value))
            if weighted and 1 + key % 3 > bound * 2:
                oversized += 1
                written.append((key, value))
            elif argument != 0:
                written.append((key, value))
        elif operation == "get":
            layer.get(key)
        elif operation == "delete":
            invalidated += layer.delete(key)
        elif operation == "touch":
            layer.touch(key, ttl=argument)
        elif operation == "advance":
            clock.advance(argument)
        else:
            invalidated += len(layer)  # (reclaims what expired first)
            layer.clear()
    invalidated += len(layer)
    layer.clear()
    with heard.done:
        assert heard.done.wait_for(lambda: len(heard.seen) >= len(written), WAIT)
    return {
        "seen": list(heard.seen),
        "written": written,
        "every_set": every_set,
        "invalidated": invalidated,
        "oversized": oversized,
        "stats": layer.stats(),
        "dropped": layer.removal_stats().dropped,
    }


def check(outcome: dict[str, Any], script: list[tuple]) -> None:
    seen, stats = outcome["seen"], outcome["stats"]
    assert outcome["dropped"] == 0
    assert Counter((key, value) for key, value, _ in seen) == Counter(outcome["written"])
    causes = Counter(cause for _, _, cause in seen)
    assert causes["expired"] == stats.expirations
    assert causes["evicted"] + causes["rejected"] == stats.evictions + outcome["oversized"]
    assert causes["rejected"] == stats.rejections
    # A delete or clear of a held newcomer reports it rejected, not invalidated.
    assert causes["invalidated"] <= outcome["invalidated"]
    assert causes["invalidated"] + causes["rejected"] >= outcome["invalidated"]
    # Replaced: a later write of the key took its place (one with a TTL of 0 too: it
    # removes the old value, and never enters itself).
    last_write = {key: value for key, value in outcome["every_set"]}
    for key, value, cause in seen:
        if cause == "replaced":
            assert last_write[key] != value, f"{value} reported replaced, never written over"


@settings(max_examples=60, deadline=None)
@given(bound=st.integers(1, 8), weighted=st.booleans(), script=operations)
@example(bound=1, weighted=False, script=[("set", 0, None), ("set", 0, 0)])  # TTL 0 replaces
def test_removals_match_the_oracle_and_the_twins_agree(bound, weighted, script) -> None:
    outcomes = [run(implementation, bound, weighted, script) for implementation in IMPLEMENTATIONS]
    for outcome in outcomes:
        check(outcome, script)
    if len(outcomes) == 2:
        assert outcomes[0]["seen"] == outcomes[1]["seen"]
        assert outcomes[0]["stats"] == outcomes[1]["stats"]
