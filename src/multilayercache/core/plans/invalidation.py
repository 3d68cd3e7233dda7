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
    keys: list[Any] = invalidations.held_with(tags)
    local = [tier for tier in state.tiers if tier.in_process]
    if prefixes:
        for tier in local:
            keys.extend(
                key
                for key in tier.layer.keys()
                if isinstance(key, str) and key.startswith(prefixes)
            )
    generations = state.generations
    if generations is not None:
        if prefixes:
            generations.bump_all()  # a read of any key of the prefix may be on its way
        else:
            generations.bump_many(keys)
    for tier in local:
        for key in keys:
            tier.layer.delete(key)


__all__ = ["drop_marked", "invalidate"]
