"""``invalidate_tags`` and ``invalidate_prefix``, written once (``core/tags.py`` has the
idea): one mark per tag or prefix in the shared layer, whatever the number of keys; the
in-process layers drop what they hold of it (``drop_marked``), here and, through the
backplane, in every other instance."""

from __future__ import annotations

import time

from ..state import CacheState
from ..tags import Invalidations
from .steps import Call, Plan

BUMP_ALL_BEYOND = 256
"""Tagged keys beyond which every generation is bumped (``bump_all``: a fixed
cost) rather than each key's."""


def invalidate(state: CacheState, tags: tuple[str, ...], prefixes: tuple[str, ...]) -> Plan[int]:
    """Mark ``tags`` and ``prefixes`` invalidated now: in this instance first (so that it
    misses them as soon as this returns), then in the shared layer (one write). Returns the
    epoch ms of the mark, for the backplane. A shared layer that fails raises its
    ``LayerError`` after this instance honoured the mark (other instances then learn it
    only from the backplane)."""
    at_ms = time.time_ns() // 1_000_000
    drop_marked(state, tags, prefixes, at_ms)
    tier = state.marks_tier
    if tier is not None and (tags or prefixes):  # (none: HSET of nothing is an error)
        yield Call(tier, "write_marks", (Invalidations.fields(tags, prefixes), at_ms))
    return at_ms


def until_past(at_ms: int) -> float:
    """Seconds until the epoch clock is past the millisecond ``at_ms`` (at most 1 ms: a
    clock set back is not waited for). An entry stores when it was written to the
    millisecond, and one written in the mark's own millisecond counts as older than the
    mark: a write that follows an invalidation must wait for the next millisecond, or
    every other instance would treat it as invalidated."""
    left_ns = (at_ms + 1) * 1_000_000 - time.time_ns()
    return min(left_ns, 1_000_000) / 1e9 if left_ns > 0 else 0.0


def drop_marked(
    state: CacheState, tags: tuple[str, ...], prefixes: tuple[str, ...], at_ms: int
) -> None:
    """Record the marks and drop from the in-process layers what they invalidate: the keys
    written there with one of ``tags``, and the keys that start with one of ``prefixes``.
    An ``InMemoryLayer`` drops them lazily (``drop_later``: each operation checks its own
    key and sweeps a few slots, so this costs the same for 10 keys or all it holds);
    another in-process layer drops them here. Generations are bumped first, so that a
    read copying an older value up meanwhile deletes its copy (``core/generations.py``).
    In-process layers are called directly: they do no IO (this also runs on the
    backplane's thread)."""
    invalidations = state.invalidations
    invalidations.mark(tags, prefixes, at_ms)
    tagged = invalidations.held_with(tags)
    tagged_count = sum(len(keys) for keys in tagged)
    generations = state.generations
    if generations is not None:
        if prefixes or tagged_count > BUMP_ALL_BEYOND:
            generations.bump_all()  # a read of any of them may be on its way: a fixed cost
        else:
            generations.bump_many([key for keys in tagged for key in keys])
    for tier in state.tiers:
        if not tier.in_process or not (tagged_count or prefixes):
            continue
        layer = tier.layer
        drop_later = getattr(layer, "drop_later", None)
        if drop_later is not None:
            drop_later(tagged, prefixes)
            continue
        if prefixes or tagged_count > len(layer):  # listing what it holds costs less
            held = layer.keys()
            keys = [key for keys in tagged for key in keys.intersection(held)]
            if prefixes:
                keys += [key for key in held if isinstance(key, str) and key.startswith(prefixes)]
        else:
            keys = [key for keys in tagged for key in keys]
        for key in keys:
            layer.delete(key)


__all__ = ["drop_marked", "invalidate"]
