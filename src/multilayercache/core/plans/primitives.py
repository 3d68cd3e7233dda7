"""Plans of the cache primitives: ``add`` (set if absent), ``touch`` (a new TTL, the value
kept) and ``incr`` (an atomic counter; ``decr`` is ``incr`` of ``-delta``), through every
layer.

Who decides. ``add`` and ``incr`` read and write a key in one step, which only a layer can
do atomically (Redis runs a script; the in-process layer holds its lock, or the GIL). With
several layers, the slowest one that offers the operation decides: the shared layer, which
every instance asks, so that the answer holds across processes. The other layers follow:

* ``add``: the deciding layer stores the value only if it holds no fresh value of the key
  (none, or an expired or stale one: what ``get`` would miss). If it stored it, the slower
  layers are written as by ``set`` and the faster ones take the value; the answer is the
  deciding layer's, so of concurrent callers (threads, tasks, processes) exactly one gets
  True. A faster layer's copy does not count: the shared layer may have evicted the key,
  and a copy is never newer than it.
* ``incr``: the deciding layer computes the count (a missing key starts at 0, as Redis'
  ``INCRBY`` does; the counter keeps its TTL); slower layers get the new count written, and
  faster ones drop the key, since their copy is older (the next reads copy it up).
* ``touch``: every layer that offers it gives its fresh value the new TTL (each capped by
  its policy, as a write's); True if any layer held the key.

A write-behind layer cannot answer before its queue is sent: it is flushed first (what was
acknowledged before the call lands before it), then asked directly. A layer that a delete
of the key has not reached gets the delete again first (``core/unconfirmed.py``); if that
fails too, the operation raises. A layer that fails raises its ``LayerError``, as a write
does.
"""

from __future__ import annotations

from typing import Any

from ..errors import LayerError
from ..freshness import Lifetime
from ..state import CacheState
from ..tiers import Tier
from ..ttl import TTL, optional_ttl_seconds
from .steps import Call, Flush, Plan, typed
from .writes import remove, store


def add(state: CacheState, key: Any, value: Any, ttl: TTL | None, value_type: Any) -> Plan[bool]:
    """``add``: store the value unless the deciding layer holds a fresh one; True if it
    stored it (then every layer holds it)."""
    optional_ttl_seconds(ttl)
    decider = deciding_tier(state, "add")
    yield from prepare(state, decider, key)
    lifetime = lifetime_for(state, decider, ttl)
    if decider.has("add_entry"):
        call = Call(decider, "add_entry", typed(decider, (key, value, lifetime, 0.0), value_type))
    else:
        call = Call(decider, "add", typed(decider, (key, value, seconds(lifetime)), value_type))
    if not (yield call):
        return False
    state.confirm_deleted(decider, [key])
    written = {key: value}
    for tier in state.tiers_slowest_first:
        if tier.depth > decider.depth:
            yield from store(
                state, tier, written, lifetime_for(state, tier, ttl), value_type, False
            )
        elif tier.depth < decider.depth:
            if state.generations is not None:
                state.generations.bump(key)
            yield from store(state, tier, written, lifetime_for(state, tier, ttl), value_type, True)
    return True


def incr(state: CacheState, key: Any, delta: int, ttl: TTL | None) -> Plan[int]:
    """``incr`` / ``decr``: the deciding layer's new count of the key (``ttl``: a new
    counter's lifetime)."""
    checked_delta(delta)
    optional_ttl_seconds(ttl)
    decider = deciding_tier(state, "incr")
    yield from prepare(state, decider, key)
    lifetime = lifetime_for(state, decider, ttl)
    count: int
    if decider.has("incr_entry"):
        count = yield Call(decider, "incr_entry", (key, delta, lifetime))
    else:
        count = yield Call(decider, "incr", (key, delta, seconds(lifetime)))
    state.confirm_deleted(decider, [key])
    for tier in state.tiers_slowest_first:
        if tier.depth > decider.depth:
            lifetime = lifetime_for(state, tier, ttl)
            yield from store(state, tier, {key: count}, lifetime, None, False)
        elif tier.depth < decider.depth:
            if state.generations is not None:  # a read of the old count copies nothing up
                state.generations.bump(key)
            try:
                yield from remove(tier, [key])
            except LayerError as error:
                state.note_write_error(tier, [key], error)
    return count


def touch(state: CacheState, key: Any, ttl: TTL | None) -> Plan[bool]:
    """``touch``: a new TTL for the key's fresh value in every layer that offers it; True if
    any held one."""
    optional_ttl_seconds(ttl)
    touched = False
    for tier in state.tiers_slowest_first:
        if not (tier.has("touch_entry") or tier.has("touch")):
            continue
        yield from prepare(state, tier, key)
        lifetime = lifetime_for(state, tier, ttl)
        if tier.has("touch_entry"):
            found = yield Call(tier, "touch_entry", (key, lifetime))
        else:
            found = yield Call(tier, "touch", (key, seconds(lifetime)))
        touched = bool(found) or touched
    return touched


def deciding_tier(state: CacheState, operation: str) -> Tier:
    """The slowest layer that offers ``operation`` (see the module docstring)."""
    for tier in state.tiers_slowest_first:
        if tier.has(operation):
            return tier
    raise TypeError(f"no layer of this cache offers {operation}()")


def prepare(state: CacheState, tier: Tier, key: Any) -> Plan[None]:
    """Before asking ``tier`` to read and write ``key`` at once: its queued writes sent, and
    a delete of the key that has not reached it sent again (raising if it fails)."""
    if tier.queue is not None:
        yield Flush(tier)
    if state.unconfirmed and state.unconfirmed_in(tier, [key]):
        yield from remove(tier, [key])
        state.confirm_deleted(tier, [key])


def lifetime_for(state: CacheState, tier: Tier, ttl: TTL | None) -> Lifetime:
    """The lifetime ``tier``'s policy gives a write with ``ttl`` (noted, as a write's)."""
    return tier.lifetime_for(ttl, state.rng)


def seconds(lifetime: Lifetime) -> float:
    """A lifetime as one TTL, for layers that keep no freshness (as ``store`` does)."""
    return lifetime.ttl if lifetime.stale_ttl == 0 else lifetime.total


def checked_delta(delta: object) -> int:
    """The ``delta`` of ``incr`` / ``decr``: an int (not a bool)."""
    if type(delta) is not int:
        raise TypeError(f"delta must be an int, got {type(delta).__name__} {delta!r}")
    return delta


__all__ = ["add", "checked_delta", "incr", "touch"]
