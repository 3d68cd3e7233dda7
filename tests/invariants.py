"""Structural invariants of an InMemoryLayer (either twin), checked after operations."""

from __future__ import annotations

from collections import Counter
from typing import Any

from multilayercache._core._bits_py import spread
from multilayercache.layers.memory.flooding import MAX_KEYS_PER_HASH

WINDOW, PROBATION, PROTECTED, NOT_CACHED, HELD = 0, 1, 2, 3, 4
NO_DEADLINE = (1 << 63) - 1


def check_invariants(layer: Any) -> None:
    inside = layer._internals()
    policy, wheel = inside["policy"], inside["wheel"]
    cached = inside["cached"]
    cached_slots = {slot for slot, _ in cached}
    free = inside["free"]

    # Slots: each one is cached xor free, and the index holds exactly the cached ones.
    assert len(free) == len(set(free)), "a slot is on the free list twice"
    assert not cached_slots & set(free), "a cached slot is also free"
    assert len(cached_slots) + len(free) == inside["slot_count"], "a slot leaked"
    # The held newcomer (a set that admission turned away, readable until the next write)
    # is indexed but in no list and no weight.
    held = {policy.held} if policy.held >= 0 else set()
    assert held <= cached_slots and all(policy.regions[slot] == HELD for slot in held)
    assert inside["indexed"] == len(cached_slots) == policy.entries + len(held)
    for slot, key in cached:
        assert inside["find"](key) == slot, f"key {key!r} does not lead to its slot {slot}"
    # Hash flooding: few keys share one hash (the pure twin counts them in ``sharing``).
    sharing = Counter(spread(hash(key)) for _, key in cached)
    assert max(sharing.values(), default=0) <= MAX_KEYS_PER_HASH, "a hash is crowded"
    if "sharing" in inside:
        assert inside["sharing"] == dict(sharing), "keys per hash miscounted"

    # Policy lists: each region's list is consistent both ways and holds its slots only.
    regions = policy.regions
    links = policy.links
    weights = [0, 0, 0]
    listed = set()
    for region in (WINDOW, PROBATION, PROTECTED):
        order = policy.order(region)
        previous = region
        for slot in order:
            node = 3 + slot
            assert regions[slot] == region, f"slot {slot} in list {region} says {regions[slot]}"
            assert links[0][node] == previous, f"broken prev link at slot {slot}"
            previous = node
            listed.add(slot)
        assert links[0][region] == previous, f"list {region} tail is wrong"
        weights[region] = len(order) if not policy.weighted else None
    assert listed == cached_slots - held, "policy lists and cached slots differ"
    for slot in range(inside["slot_count"]):
        if slot not in cached_slots:
            assert regions[slot] == NOT_CACHED, f"free slot {slot} has a region"
    if not policy.weighted:
        assert list(policy.region_weights) == weights, "region weights drifted"
        assert policy.total_weight == len(cached_slots) - len(held)
    else:
        assert sum(policy.region_weights) == policy.total_weight
    assert policy.total_weight <= policy.capacity, "over capacity"
    assert policy.region_weights[PROTECTED] <= policy.protected_max, "protected over its size"
    assert 0 <= policy.window_max <= policy.capacity

    # Timer wheel: scheduled slots are cached ones with a deadline.
    scheduled = [slot for slot in cached_slots if wheel.deadline(slot) != NO_DEADLINE]
    assert wheel.scheduled == len(scheduled), "timer wheel count drifted"
    for slot in free:
        assert wheel.deadline(slot) == NO_DEADLINE, f"free slot {slot} still scheduled"
