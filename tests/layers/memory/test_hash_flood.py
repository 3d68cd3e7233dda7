"""Hash flooding (flooding.py), both twins: keys chosen to share one hash cannot flush the
hot set through admission, and a lookup of a flooded hash compares a bounded number of keys.

Ints ``k + i * (2**61 - 1)`` share ``hash(k)`` (64-bit CPython); a key type whose
``__hash__`` returns a constant does the same with strings (Python salts ``str`` hashes,
not a user's ``__hash__``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest

from multilayercache.layers.memory.flooding import MAX_KEYS_PER_HASH

from invariants import check_invariants

MODULUS = sys.hash_info.modulus  # 2**61 - 1
HOT = 1_000
FLOOD = 5_000


class ConstantHash(str):
    """A string key whose type hashes every instance alike; counts the comparisons made."""

    __slots__ = ()
    compared = 0

    def __hash__(self) -> int:
        return 42

    def __eq__(self, other: object) -> bool:
        ConstantHash.compared += 1
        return str.__eq__(self, other)


def int_flood(n: int) -> int:
    return 7 + (n + 1) * MODULUS


def distinct(n: int) -> int:
    return 2**62 + n  # a big int, as the flooded ones are, but with a hash of its own


FLOODS: dict[str, Callable[[int], Any]] = {
    "ints sharing one hash": int_flood,
    "strs sharing one hash": lambda n: ConstantHash(f"user:{n}"),
    "distinct hashes (control)": distinct,
}


def hot_layer(Layer: type) -> tuple[Any, list[int]]:
    """A full layer of 1,000 hot keys, each read three times (set on a miss)."""
    l1 = Layer(max_size=HOT)
    hot = list(range(1, HOT + 1))
    for _ in range(3):
        for key in hot:
            if l1.get(key) is None:
                l1.set(key, key)
    return l1, hot


@pytest.mark.parametrize("flood", FLOODS)
def test_one_off_keys_sharing_a_hash_do_not_flush_the_hot_set(Layer: type, flood: str) -> None:
    # Before the guard: 350 of the 1,000 hot keys evicted by either flood (control: 0).
    l1, hot = hot_layer(Layer)
    key_of = FLOODS[flood]
    for n in range(FLOOD):  # each one-off key read (a miss), then set, as a service does
        key = key_of(n)
        if l1.get(key) is None:
            l1.set(key, n)
    evicted = sum(key not in l1 for key in hot)
    assert evicted <= MAX_KEYS_PER_HASH  # (the acceptance bound is 5%: 50)
    check_invariants(l1)


def test_a_hash_holds_a_bounded_number_of_keys_and_the_rest_are_counted(
    Layer: type, caplog: pytest.LogCaptureFixture
) -> None:
    l1 = Layer(max_size=10_000)
    with caplog.at_level(logging.WARNING, logger="multilayercache"):
        for n in range(1_000):
            l1.set(int_flood(n), n)
    held = [n for n in range(1_000) if int_flood(n) in l1]
    assert held == list(range(MAX_KEYS_PER_HASH))  # the first ones stay, readable
    assert [l1.get(int_flood(n)) for n in held] == held
    assert l1.stats().rejections == 1_000 - MAX_KEYS_PER_HASH
    assert l1.stats().evictions == 0
    # Logged at a bounded rate: the 1st, 10th and 100th key turned away.
    warnings = [r.getMessage() for r in caplog.records if "hash flooding" in r.getMessage()]
    assert len(warnings) == 3 and all("type int" in message for message in warnings)
    # A key that leaves makes room for the next new one; an update of a held key is kept.
    assert l1.delete(int_flood(0))
    l1.set(int_flood(500), "in")
    l1.set(int_flood(1), "updated")
    assert l1.get(int_flood(500)) == "in" and l1.get(int_flood(1)) == "updated"
    assert l1.get(int_flood(501)) is None
    # Keys of other hashes are not affected; nor are ints sharing no hash with these.
    l1.set(8, "eight")
    assert l1.get(8) == "eight"
    check_invariants(l1)


def test_the_other_ways_in_follow_the_bound(Layer: type) -> None:
    """``add``, ``incr``, ``set_entry`` and ``get_or_load``-style ``get`` then ``set`` turn
    away a new key of a crowded hash alike: it answers as if admission had declined it."""
    from multilayercache.core.freshness import Lifetime

    l1 = Layer(max_size=100)
    for n in range(MAX_KEYS_PER_HASH):
        l1.set(int_flood(n), n)
    before = l1.stats().rejections
    assert l1.add(int_flood(100), "added") is True  # stored as far as the caller knows
    assert l1.incr(int_flood(101), 5) == 5  # a new counter, not kept
    assert l1.incr(int_flood(101), 5) == 5
    l1.set_entry(int_flood(102), "entry", Lifetime(10, 5, 10))
    assert l1.get(int_flood(103)) is None
    l1.set(int_flood(103), "after a miss")
    for n in range(100, 104):
        assert int_flood(n) not in l1
    assert l1.stats().rejections == before + 5
    check_invariants(l1)


def test_lookups_of_a_flooded_hash_compare_a_bounded_number_of_keys(Layer: type) -> None:
    # Structural, not timed: every key compared is one ``__eq__`` call, in both twins (the
    # compiled index and the pure twin's dict compare keys whose hashes are equal only).
    # Before the guard: every held key of the hash, here 2,000.
    l1 = Layer(max_size=10_000)
    for n in range(2_000):
        key = ConstantHash(f"user:{n}")
        if l1.get(key) is None:
            l1.set(key, n)
    comparisons = []
    for call in (
        lambda: l1.get(ConstantHash("user:2")),  # a hit: an equal key, not the same object
        lambda: l1.get(ConstantHash("user:1999")),  # a miss
        lambda: l1.set(ConstantHash("user:3000"), 1),  # a set turned away
        lambda: ConstantHash("user:1500") in l1,
        lambda: l1.delete(ConstantHash("user:1600")),
    ):
        ConstantHash.compared = 0
        call()
        comparisons.append(ConstantHash.compared)
    # The compiled index compares each held key of the hash once at most; the pure twin's
    # dict may compare one twice (its probe can come back to a bucket it passed).
    pure = Layer.__module__.endswith("_py")
    assert max(comparisons) <= (2 if pure else 1) * MAX_KEYS_PER_HASH, comparisons
    check_invariants(l1)


def test_lookups_beyond_the_bound_are_not_counted_as_popularity(Layer: type) -> None:
    """A miss on a crowded hash is a key that cannot get in: counting it would only make the
    keys holding the hash look popular, and win them admission over hot keys."""
    l1 = Layer(max_size=100)
    for n in range(MAX_KEYS_PER_HASH):
        l1.get(int_flood(n))
        l1.set(int_flood(n), n)
    held_estimate = l1.get_frequency_estimate(int_flood(0))
    for n in range(100, 1_100):
        assert l1.get(int_flood(n)) is None
    assert l1.get_frequency_estimate(int_flood(0)) == held_estimate
    assert l1.stats().misses == MAX_KEYS_PER_HASH + 1_000  # still counted as misses
    l1.get(int_flood(0))  # a hit on a held key counts as ever
    assert l1.get_frequency_estimate(int_flood(0)) == held_estimate + 1


@pytest.mark.parametrize("key, other", [(-1, -2), (5, 5 + MODULUS), (0, MODULUS)])
def test_honest_collisions_are_all_kept(Layer: type, key: int, other: int) -> None:
    # A few distinct keys that share a hash (ints -1 and -2 do) are stored as any others.
    assert hash(key) == hash(other)
    l1 = Layer(max_size=10)
    l1.set(key, "key")
    l1.set(other, "other")
    assert (l1.get(key), l1.get(other)) == ("key", "other")
    assert l1.stats().rejections == 0
