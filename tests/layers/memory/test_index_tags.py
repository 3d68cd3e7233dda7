"""The compiled layer's index tags (index.pxd) never confuse two keys (both twins).

A bucket holds a slot tagged with the key's top hash bits, and a probe skips buckets whose
tag differs. These tests choose keys by their *spread* hash (the layer's own mixing,
inverted here), so that they share a home bucket and differ only in the tag, share a tag and
a home bucket and differ in the middle bits, or collide in all 64 bits, and check every
operation against a dict while the table grows, shrinks by deletes and is probed through
long runs. (The layer holds at most ``MAX_KEYS_PER_HASH`` keys of one full hash: the model
turns the others away too.)
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multilayercache._core._bits_py import MASK64, spread
from multilayercache.layers.memory.flooding import MAX_KEYS_PER_HASH

from invariants import check_invariants


def _unshift(value: int, shift: int) -> int:
    """The inverse of ``value ^ (value >> shift)`` on 64 bits."""
    result = value
    for _ in range(64 // shift):
        result = value ^ (result >> shift)
    return result & MASK64


def unspread(wanted: int) -> int:
    """The 64-bit Python hash whose spread hash is ``wanted`` (splitmix64's finalizer undone)."""
    z = _unshift(wanted, 31)
    z = (z * pow(0x94D049BB133111EB, -1, 1 << 64)) & MASK64
    z = _unshift(z, 27)
    z = (z * pow(0xBF58476D1CE4E5B9, -1, 1 << 64)) & MASK64
    return _unshift(z, 30)


class Key:
    """A key with a chosen spread hash; equal by name only."""

    def __init__(self, name: str, spread_hash: int) -> None:
        raw = unspread(spread_hash)
        assert spread(raw) == spread_hash
        self.name = name
        self._hash = raw - (1 << 64) if raw >= 1 << 63 else raw

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.name == self.name

    def __repr__(self) -> str:
        return f"Key({self.name!r})"


HOME = 0x2A5  # the low bits every key shares: one home bucket at any table size < 2**10


def spread_hash(family: str, n: int) -> int:
    if family == "tag":  # same home bucket, different top bits (the tag)
        return (n + 1) << 44 | HOME
    if family == "middle":  # same home bucket and tag, different middle bits
        return 0x5A5 << 52 | (n + 1) << 12 | HOME
    return 0x1234_5678_9ABC_DEF0  # "same": every key's spread hash is equal


def test_unspread_inverts_spread() -> None:
    for value in (0, 1, HOME, MASK64, 0x8000_0000_0000_0000, 0x1234_5678_9ABC_DEF0):
        assert spread(unspread(value)) == value


# The Layer fixture is a class, the same for every example: nothing to reset.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["set", "set", "get", "delete"]),
            st.sampled_from(["tag", "middle", "same"]),
            st.integers(0, 40),
        ),
        max_size=300,
    )
)
def test_keys_that_share_buckets_tags_or_hashes_stay_distinct(Layer, ops) -> None:
    # Never full: every set is kept, but for keys of one hash beyond MAX_KEYS_PER_HASH.
    cache = Layer(max_size=1000)
    model: dict[str, int] = {}
    keys = {}
    for step, (op, family, n) in enumerate(ops):
        name = f"{family}{n}"
        key = Key(name, spread_hash(family, n))  # a new, equal object every time
        keys[name] = key
        if op == "set":
            cache.set(key, step)
            sharing = sum(held.startswith(family) for held in model)
            if name in model or family != "same" or sharing < MAX_KEYS_PER_HASH:
                model[name] = step  # (a new key beyond the bound is not stored: flooding.py)
        elif op == "get":
            assert cache.get(key) == model.get(name)
        else:
            assert cache.delete(key) == (name in model)
            model.pop(name, None)
    for name, key in keys.items():
        assert cache.get(key) == model.get(name)
    assert len(cache) == len(model)
    check_invariants(cache)
