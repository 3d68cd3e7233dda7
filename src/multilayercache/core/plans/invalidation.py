"""``invalidate_tags`` and ``invalidate_prefix``, written once (``core/tags.py`` has the
idea): one mark per tag or prefix in the shared layer, whatever the number of keys; the
in-process layers drop what they hold of it at once (``drop_marked``), here and, through
the backplane, in every other instance."""

from __future__ import annotations

import time
from typing import Any

from ..state import CacheState
from ..tags import Invalidations
from .steps import Call, Plan

BUMP_ALL_BEYOND = 256
"""Keys dropped at once beyond which every generation is bumped (``bump_all``: a fixed
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
    if tier is not None:
        yield Call(tier, "write_marks", (Invalidations.fields(tags, prefixes), at_ms))
    return at_ms


def drop_marked(
    state: CacheState, tags: tuple[str, ...], prefixes: tuple[str, ...], at_ms: int
) -> None:
    """Record the marks and drop from the in-process layers what they invalidate: the keys
    written there with one of ``tags``, and the keys that start with one of ``prefixes``.
    Generations are bumped first, so that a read copying an older value up meanwhile
    deletes its copy (``core/generations.py``). In-process layers are called directly:
    they do no IO (this also runs on the backplane's thread)."""
    invalidations = state.invalidations
    invalidations.mark(tags, prefixes, at_ms)
    tagged = invalidations.held_with(tags)
    drops: list[tuple[Any, list[Any]]] = []
    for tier in state.tiers:
        if not tier.in_process:
            continue
        keys = tagged
        held: list[Any] = []
        if prefixes or len(tagged) > len(tier.layer):  # listing what it holds costs less
            held = tier.layer.keys()
            if len(tagged) > len(held):
                wanted = set(tagged)
                keys = [key for key in held if key in wanted]
        if prefixes:
            keys = keys + [key for key in held if isinstance(key, str) and key.startswith(prefixes)]
        drops.append((tier, keys))
    generations = state.generations
    if generations is not None:
        if prefixes or sum(len(keys) for _, keys in drops) > BUMP_ALL_BEYOND:
            generations.bump_all()  # a read of any of them may be on its way: a fixed cost
        else:
            generations.bump_many(tagged)
    for tier, keys in drops:
        delete = tier.layer.delete
        for key in keys:
            delete(key)


__all__ = ["drop_marked", "invalidate"]
