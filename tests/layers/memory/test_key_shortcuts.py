"""The shortcuts the compiled layer takes with keys keep Python's key semantics (both twins).

The compiled layer compares exact ints hashed to their own value by hash alone, and a miss
remembers its key so that the set that follows skips hashing and probing. These tests pick
the keys and interleavings where such shortcuts could go wrong.
"""

from __future__ import annotations

import gc
import sys

import pytest

from multilayercache._core._bits_py import MASK64, spread

from invariants import check_invariants

MODULUS = sys.hash_info.modulus  # 2**61 - 1 on 64-bit CPython


class Key:
    """A key equal by ``identity`` (hashed as it is), that calls ``on_release`` when freed."""

    def __init__(self, identity: object, on_release=None) -> None:
        self.identity, self.on_release = identity, on_release

    def __hash__(self) -> int:
        return hash(self.identity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.identity == self.identity

    def __del__(self) -> None:
        if self.on_release:
            self.on_release()


@pytest.mark.parametrize(
    "key, colliding",
    [
        (5, MODULUS + 5),  # same hash, different ints
        (-2, -1),  # hash(-1) == hash(-2) == -2
        (0, MODULUS),  # hash(MODULUS) == 0
        (MODULUS - 1, 2 * MODULUS - 1),
        (-(MODULUS - 1), -(2 * MODULUS - 1)),
        (2**62, 2**62 + MODULUS),  # neither hashes to itself
    ],
)
def test_ints_with_equal_hashes_stay_distinct(Layer, key, colliding) -> None:
    assert hash(key) == hash(colliding) and key != colliding
    cache = Layer(max_size=10)
    cache.set(key, "key")
    assert cache.get(colliding) is None
    cache.set(colliding, "colliding")
    assert cache.get(int(str(key))) == "key"  # an equal but distinct int object
    assert cache.get(int(str(colliding))) == "colliding"
    assert len(cache) == 2
    check_invariants(cache)


def test_equal_keys_of_other_types_find_an_int_entry(Layer) -> None:
    cache = Layer(max_size=10)
    cache.set(7, "seven")
    assert cache.get(7.0) == cache.get(True + 6) == "seven"
    cache.set(1, "one")
    assert cache.get(True) == "one"
    cache.set(2.0, "two")  # a float entry, found by an int
    assert cache.get(2) == "two"

    class Seven(int):  # a subclass: compared by its own __eq__
        pass

    assert cache.get(Seven(7)) == "seven"
    check_invariants(cache)


def test_a_set_after_a_miss_sees_an_equal_key_written_between(Layer) -> None:
    cache = Layer(max_size=10)
    missed = int("123456")
    assert cache.get(missed) is None
    cache.set(int("123456"), "between")  # an equal key, another object
    cache.set(missed, "after")  # must overwrite, not add a second entry
    assert len(cache) == 1
    assert cache.get(123456) == "after"
    check_invariants(cache)


def test_a_set_after_a_miss_sees_a_delete_and_clear_between(Layer) -> None:
    cache = Layer(max_size=10)
    cache.set("other", 1)
    key = "k" + str(1)
    assert cache.get(key) is None
    cache.delete("other")
    cache.set(key, "a")
    assert cache.get(key) == "a" and len(cache) == 1
    assert cache.get("missing") is None
    cache.clear()
    cache.set("missing", "b")
    assert cache.get("missing") == "b" and len(cache) == 1
    check_invariants(cache)


def test_a_finalizer_that_writes_between_a_miss_and_its_set(Layer) -> None:
    # Dropping the previously missed key runs its __del__, which writes an equal key: the
    # set that follows must still find that entry.
    cache = Layer(max_size=10)

    first = Key("first", on_release=lambda: cache.set(Key("second"), "from __del__"))
    assert cache.get(first) is None
    del first
    second = Key("second")
    # The compiled layer drops its hold on ``first`` (its last missed key) here, after the
    # lookup; nothing else holds it, so in the pure layer __del__ has already run.
    assert cache.get(second) in (None, "from __del__")
    gc.collect()
    cache.set(second, "set")
    assert cache.get(Key("second")) == "set"
    assert len(cache) == 1
    check_invariants(cache)


def test_a_finalizer_that_looks_up_between_a_miss_and_its_set(Layer) -> None:
    # The compiled layer also remembers where a miss's probe stopped, and the set that
    # follows puts the key there. Here the probe of ``b``'s last miss is followed, before
    # the miss is remembered, by ``a``'s release from the hot-key table, whose __del__
    # looks up ``c``: another probe, stopping in another bucket. ``b`` must still go where
    # its own probe stopped, or it is lost.
    cache = Layer(max_size=100)

    def spread_of(number: int) -> int:  # the layer's hash of ``Key(number)``
        return spread(hash(number) & MASK64)

    # ``b`` shares ``a``'s hot-key bucket (the low 8 bits of the spread hash); ``c`` has
    # another home bucket than ``b`` in the first, 16-bucket index (the low 4 bits).
    a_number = 1
    b_number = next(n for n in range(2, 100_000) if spread_of(n) % 256 == spread_of(1) % 256)
    c_number = next(n for n in range(2, 100) if spread_of(n) % 16 != spread_of(1) % 16)
    looked_up = []
    a = Key(a_number, on_release=lambda: looked_up.append(cache.get(Key(c_number))))
    assert cache.get(a) is None and cache.get(a) is None  # the table now keeps ``a``
    del a
    for _ in range(3):  # dock ``a``'s score to nothing, then take its bucket
        assert cache.get(Key(b_number)) is None
    b = Key(b_number)
    assert cache.get(b) is None  # its second miss there: the table keeps ``b``, drops ``a``
    gc.collect()
    assert looked_up == [None]
    cache.set(b, "b")
    assert cache.get(Key(b_number)) == "b"
    cache.set(Key(c_number), "c")
    assert cache.get(Key(c_number)) == "c" and cache.get(Key(b_number)) == "b"
    check_invariants(cache)


def test_a_lookup_while_a_set_after_a_miss_prepares(Layer) -> None:
    # With drops pending, a write asks the drop rules about its key first (Python code: the
    # key's __hash__), before it takes the layer; here that __hash__ looks up ``c``, a miss
    # whose probe stops in another bucket and which writes nothing (the index version holds).
    # The set of ``b`` must still put it where its own probe stopped, or it is lost.
    cache = Layer(max_size=1_000)
    for number in range(200):  # slots enough that the drops stay pending (sweep.py)
        cache.set(number, number)
    cache.drop_later([{"nothing cached"}])

    def spread_of(number: int) -> int:  # the layer's hash of ``Key(number)``
        return spread(hash(number) & MASK64)

    mask = 1023  # the index's: 2**10 buckets for 200-odd entries at load <= 1/4
    b_number = 1_000_003
    c_number = next(
        n for n in range(2_000_000, 2_100_000) if spread_of(n) & mask != spread_of(b_number) & mask
    )
    looked_up = []

    class LookingKey(Key):
        armed = False

        def __hash__(self) -> int:
            if LookingKey.armed:
                LookingKey.armed = False
                looked_up.append(cache.get(Key(c_number)))
            return hash(self.identity)

    b = LookingKey(b_number)
    assert cache.get(b) is None
    LookingKey.armed = True
    cache.set(b, "b")
    assert looked_up == [None]
    assert cache.get(Key(b_number)) == "b"
    check_invariants(cache)


def test_a_stale_entry_is_overwritten_not_duplicated(Layer, clock) -> None:
    from multilayercache.core.freshness import Lifetime

    cache = Layer(max_size=10, clock=clock)
    cache.set_entry("k", "old", Lifetime(ttl=1, stale_ttl=10))
    clock.advance(2)
    assert cache.get("k") is None  # stale: a miss for ``get``, but the entry is held
    cache.set("k", "new")
    assert cache.get("k") == "new" and len(cache) == 1
    check_invariants(cache)
