"""Read plans: ``get``, ``get_many``, ``contains``, ``remaining_ttl``, the search through
the layers that ``loading.py`` builds on, and promotion into the faster layers.

Two things guard what a read takes from below L1. A read notes each key's generation
(``core/generations.py``) before it reads a layer below the fastest, and copies a value up
only while that generation is unchanged: a write or delete of the key meanwhile wins. And
a layer that a delete of the key did not reach is not read for it: the delete is sent
again first (``core/unconfirmed.py``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import LayerError, is_transient
from ..freshness import Entry, Freshness, Lifetime
from ..keys import unique
from ..missing import MISSING
from ..state import CacheState
from ..tiers import Tier
from ..writepolicy import Op
from .steps import Call, Peek, Plan, typed
from .writes import remove, store, undo_if_overtaken


def get_entry(tier: Tier, key: Any, value_type: Any) -> Plan[Entry | None]:
    """One layer's entry for ``key`` (a layer without freshness: fresh while held; a
    write-behind layer: its queued write first)."""
    if tier.queue is not None:
        pending = yield Peek(tier, [key])
        if key in pending:
            return queued_entry(tier, key, pending[key], value_type)
    if tier.entries:
        entry: Entry | None = yield Call(tier, "get_entry", typed(tier, (key,), value_type))
        return entry
    value = yield Call(tier, "get", typed(tier, (key, MISSING), value_type))
    return None if value is MISSING else Entry(value, math.inf, math.inf)


def get_entries(tier: Tier, keys: list[Any], value_type: Any) -> Plan[dict[Any, Entry]]:
    """One layer's entries for ``keys``, in one call (a write-behind layer: the queued
    writes first, the layer for the other keys)."""
    queued: dict[Any, Entry] = {}
    if tier.queue is not None:
        pending = yield Peek(tier, keys)
        if pending:
            for key, write in pending.items():
                entry = queued_entry(tier, key, write, value_type)
                if entry is not None:
                    queued[key] = entry
            keys = [key for key in keys if key not in pending]
            if not keys:
                return queued
    entries: dict[Any, Entry]
    if tier.entries:
        entries = yield Call(tier, "get_entries", typed(tier, (keys,), value_type))
    else:
        hits = yield Call(tier, "get_many", typed(tier, (keys,), value_type))
        entries = {key: Entry(value, math.inf, math.inf) for key, value in hits.items()}
    if queued:
        entries.update(queued)
    return entries


def queued_entry(tier: Tier, key: Any, write: tuple[Op, Any], value_type: Any) -> Entry | None:
    """What a read of ``key`` finds in ``tier`` while ``write`` is queued for it: the
    value it carries (decoded as the layer would decode it), or nothing for a delete."""
    op, payload = write
    if op == "delete":
        return None
    entry: Entry | None = tier.layer.pending_entry(key, payload, value_type)
    return entry


def find_entry(
    state: CacheState,
    key: Any,
    value_type: Any,
    start: int = 0,
    settle_for_stale: bool = True,
    stop: int | None = None,
    unreachable: set[int] | None = None,
    seen: dict[Any, int] | None = None,
) -> Plan[tuple[Entry | None, int]]:
    """``(entry, depth)`` of the first layer from ``start`` (to ``stop``) that holds the
    key, or ``(None, -1)``. A fresh (or due) entry ends the search; a stale one ends it when
    ``settle_for_stale``, else the search goes on below for a fresh one and falls back to
    the stale one. A layer that fails counts as not holding the key; the depths of those
    that did not answer at all go into ``unreachable``. The key's generation goes into
    ``seen`` before a layer below the fastest is read (for ``promote``); a layer that a
    delete of the key did not reach is not read (see ``redeleted``), nor are entries older
    than a clear that did not reach their layer (``CacheState.cleared_away``)."""
    fallback: tuple[Entry | None, int] = (None, -1)
    generations = state.generations
    for tier in state.tiers[start:stop]:
        if seen is not None and generations is not None and tier.depth and key not in seen:
            seen[key] = generations.of(key)
        if state.unconfirmed and (yield from redeleted(state, tier, [key], unreachable)):
            continue
        try:
            entry = yield from get_entry(tier, key, value_type)
        except LayerError as error:
            state.note_read_error(tier, key, error)
            if unreachable is not None and is_transient(error):
                unreachable.add(tier.depth)
            continue
        if entry is None or (state.uncleared and state.cleared_away(tier, entry)):
            continue
        if entry.written_ms is not None and not state.invalidations.loaded:
            yield from load_marks(state)  # once: before the first entry of a shared layer
        if state.invalidations and state.invalidations.outdated(key, entry.written_ms, entry.tags):
            continue
        if settle_for_stale or entry.freshness is not Freshness.STALE:
            return entry, tier.depth
        if fallback[0] is None:
            fallback = (entry, tier.depth)
    return fallback


def read(
    state: CacheState, key: Any, default: Any, start: int = 0, value_type: Any = None
) -> Plan[Any]:
    """``get``: the fresh value from the fastest layer (from depth ``start``) that has one,
    copied up into the faster layers whose policy accepts it; ``default`` if none has."""
    seen: dict[Any, int] = {}
    entry, depth = yield from find_entry(state, key, value_type, start, False, seen=seen)
    if entry is None or entry.freshness is Freshness.STALE:
        return default
    if depth:
        yield from promote(state, {key: entry}, depth, value_type, seen)
    return entry.value


def direct_tier(state: CacheState, start: int) -> Tier | None:
    """The layer a one-key ``get`` from depth ``start`` reads without a plan, or ``None``
    when the read needs one. The common read below an in-process L1: one layer left (the
    shared L2), read at once (not write-behind, no rate limit, latency not recorded), no
    delete or clear waiting to reach it, its tag marks loaded and none set. The caller
    reads ``get_entry`` through the layer's breaker and retry policy (a failure: a counted
    miss, as ``find_entry`` counts it), then settles it as ``read`` does: a fresh entry is
    the value (copied up by ``promote_at_once``, or ``promote``), anything else a miss."""
    tiers = state.tiers
    if start != len(tiers) - 1 or state.record_latency or state.unconfirmed or state.uncleared:
        return None
    tier = tiers[start]
    if tier.queue is not None or tier.limiter is not None or not tier.entries:
        return None
    invalidations = state.invalidations
    if not invalidations.loaded or invalidations:
        return None
    return tier


def settle_direct_read(
    state: CacheState, tier: Tier, key: Any, entry: Entry | None, noted: int, default: Any
) -> tuple[Any, Plan[None] | None]:
    """What a read from ``direct_tier``'s layer answers, once the layer answered ``entry``
    (the key's generation was ``noted`` before it): the value, or ``default`` for a miss
    or a stale entry (``get`` does not serve those), and the copy into L1 still to run
    when ``promote_at_once`` could not make it (``None``: nothing to run)."""
    if entry is None or entry.fresh_for <= 0:
        return default, None
    if state.promotes and not promote_at_once(state, key, entry, noted):
        return entry.value, promote(state, {key: entry}, tier.depth, state.value_type, {key: noted})
    return entry.value, None


def promote_at_once(state: CacheState, key: Any, entry: Entry, noted: int) -> bool:
    """``promote`` of one fresh entry that ``direct_tier``'s layer answered, into the
    in-process layers above it, with plain calls; ``noted``: the key's generation before
    that read. False, having done nothing, when the copy needs the plan: an entry with
    tags, a layer that adapts its TTLs, a cache in a fleet (whose copies note their keys'
    shared texts), a layer above that is not in-process."""
    if entry.tags or state.adapts or state.call_texts is not None:
        return False
    depth = len(state.tiers) - 1
    above = state.tiers[:depth]
    if not all(tier.in_process and tier.entries and not tier.typed for tier in above):
        return False
    generations = state.generations
    copied: list[Tier] = []
    for tier in above:
        if not _accepted(tier, {key: entry}):
            continue
        if generations is not None and generations.of(key) != noted:
            break  # written or deleted since the read: nothing is copied
        lifetime = _shortest(tier.lifetime_for(None, state.rng), (entry,))
        try:
            tier.layer.set_entry(key, entry.value, lifetime, 0.0)
        except LayerError as error:  # a copy is best effort, as ``store`` makes it
            state.note_write_error(tier, [key], error)
            continue
        copied.append(tier)
    if copied and generations is not None and generations.of(key) != noted:
        for tier in copied:  # ``undo_if_overtaken``
            try:
                tier.layer.delete(key)
            except LayerError as error:
                state.note_write_error(tier, [key], error)
    return True


def direct_batch_tier(state: CacheState) -> Tier | None:
    """The layer a ``get_many`` reads below an in-process L1 without a plan, or ``None``
    when the batch needs one: the cache is that L1 (keeping freshness, untyped) over
    ``direct_tier``'s layer, which reads batches of fresh values (``get_fresh``). The
    caller reads the L1 with ``read_above``, then the layer below for the keys it left
    (``get_fresh``, through the layer's breaker and retry policy, with a dict for the
    entries to copy up when some layer takes copies; a failure: a counted miss of them
    all, as ``find_entries`` counts it), and settles the batch with
    ``settle_direct_many``: what ``read_many`` answers, and copies up."""
    first = state.tiers[0]
    if not first.in_process or not first.entries or first.typed:
        return None
    tier = direct_tier(state, 1)
    return tier if tier is not None and tier.reads_fresh else None


def read_above(state: CacheState, keys: Iterable[Any]) -> tuple[list[Any], Any, list[Any]]:
    """The start of ``direct_batch_tier``'s read: ``(wanted, above, asked)``, the keys
    without repeats in the order given, the L1's entries of them (fresh or stale), and the
    keys to ask below (those it holds no fresh entry of)."""
    wanted = unique(keys)
    above = state.tiers[0].layer.get_entries(wanted)
    if not above:  # the batch of keys that L1 does not hold
        return wanted, above, wanted
    asked = [key for key in wanted if key not in above or above[key].fresh_for <= 0]
    return wanted, above, asked


def noted_generations(state: CacheState, keys: list[Any]) -> dict[Any, int] | None:
    """The generations of ``keys`` before they are read below L1, for ``promote``; ``None``
    when no layer takes copies: then no entry is asked for either."""
    generations = state.generations
    if not state.promotes or generations is None:
        return None
    table, mask = generations.table, generations.mask
    return {key: table[hash(key) & mask] for key in keys}


def settle_direct_many(
    state: CacheState,
    tier: Tier,
    wanted: list[Any],
    above: Mapping[Any, Entry],
    below: dict[Any, Any],
    copies: Mapping[Any, Entry] | None,
    seen: Mapping[Any, int] | None,
) -> tuple[dict[Any, Any], Plan[None] | None]:
    """What ``read_many`` answers once ``direct_batch_tier``'s read is done (``above``: the
    L1's entries, ``below``: the fresh values of ``tier`` among the keys asked there in
    their order, and their entries in ``copies``; ``seen``: their generations before that
    read): the fresh values in the order of ``wanted``, and the copy into L1 still to run
    when ``promote_many_at_once`` could not make it (``None``: nothing to run)."""
    if not above:  # nothing in L1: every key was asked below, in this order
        hits = below
    else:
        hits = {}
        for key in wanted:
            entry = above.get(key)
            if entry is not None and entry.fresh_for > 0:
                hits[key] = entry.value
            elif key in below:
                hits[key] = below[key]
    if not copies or seen is None:
        return hits, None
    if promote_many_at_once(state, copies, seen):
        return hits, None
    return hits, promote(state, copies, tier.depth, state.value_type, seen)


def promote_many_at_once(
    state: CacheState, entries: Mapping[Any, Entry], seen: Mapping[Any, int]
) -> bool:
    """``promote`` of the fresh ``entries`` that ``direct_batch_tier``'s layer answered,
    into the in-process L1 above it, with plain calls (``seen``: the keys' generations
    before that read). False, having done nothing, when the copy needs the plan: an entry
    with tags, a layer that adapts its TTLs, a cache in a fleet (whose copies note their
    keys' shared texts). The batch is decided at once: the entries the promotion rule
    accepts (``_accepted``), less those whose key was written since."""
    if state.adapts or state.call_texts is not None:
        return False
    if any(entry.tags for entry in entries.values()):
        return False
    tier = state.tiers[0]
    accepted = _unmoved(state, _accepted(tier, entries), seen)
    if not accepted:
        return True
    values = {key: entry.value for key, entry in accepted.items()}
    lifetime = _shortest(tier.lifetime_for(None, state.rng), accepted.values())
    try:
        tier.layer.set_many_entries(values, lifetime, 0.0)
    except LayerError as error:  # a copy is best effort, as ``store`` makes it
        state.note_write_error(tier, list(values), error)
        return True
    generations = state.generations
    if generations is not None:  # ``undo_if_overtaken``
        for key in generations.moved(values, seen):
            try:
                tier.layer.delete(key)
            except LayerError as error:
                state.note_write_error(tier, [key], error)
    return True


def find_entries(
    state: CacheState,
    keys: list[Any],
    value_type: Any,
    start: int = 0,
    stop: int | None = None,
    settle_for_stale: bool = True,
    unreachable: set[int] | None = None,
    seen: dict[Any, int] | None = None,
) -> Plan[dict[Any, tuple[Entry, int]]]:
    """``find_entry`` for a batch: ``{key: (entry, depth)}`` for the keys some layer from
    ``start`` to ``stop`` holds; one batch call per layer, asking each only for the keys
    still unsettled (and noting their generations in ``seen`` first, below the fastest)."""
    found: dict[Any, tuple[Entry, int]] = {}
    remaining = keys
    generations = state.generations
    tiers = state.tiers[start:stop]
    for tier in tiers:
        if not remaining:
            break
        if seen is not None and generations is not None and tier.depth:
            generations.note(remaining, seen)
        asked = remaining
        if state.unconfirmed:
            redone = yield from redeleted(state, tier, remaining, unreachable)
            if redone:
                asked = [key for key in remaining if key not in redone]
                if not asked:
                    continue
        try:
            entries = yield from get_entries(tier, asked, value_type)
        except LayerError as error:
            state.note_read_error(tier, asked, error)
            if unreachable is not None and is_transient(error):
                unreachable.add(tier.depth)
            continue
        depth = tier.depth
        if state.uncleared:  # a clear that did not reach this layer: its older entries
            entries = {k: e for k, e in entries.items() if not state.cleared_away(tier, e)}
        if entries and not tier.in_process and not state.invalidations.loaded:
            yield from load_marks(state)  # once: before the first entries of a shared layer
        if state.invalidations:  # written before an invalidation of a tag or prefix
            outdated = state.invalidations.outdated
            entries = {k: e for k, e in entries.items() if not outdated(k, e.written_ms, e.tags)}
        for key, entry in entries.items():
            if entry.fresh_for > 0 or key not in found:  # fresh beats stale from above
                found[key] = (entry, depth)
        if tier is tiers[-1]:
            break  # nothing left to ask
        if settle_for_stale:
            remaining = [key for key in remaining if key not in found]
        else:  # a stale entry goes on looking below for a fresh one
            remaining = [
                key for key in remaining if key not in found or found[key][0].fresh_for <= 0
            ]
    return found


def read_many(
    state: CacheState, keys: Iterable[Any], value_type: Any = None
) -> Plan[dict[Any, Any]]:
    """``get_many``: the keys with a fresh value in any layer (one batch call per layer,
    each asked only for what the faster ones missed), in the order asked; values found
    below are copied up."""
    wanted = unique(keys)
    seen: dict[Any, int] = {}
    found = yield from find_entries(state, wanted, value_type, settle_for_stale=False, seen=seen)
    if found:
        yield from promote_found(state, found, value_type, seen)
    hits = {}
    for key in wanted:
        hit = found.get(key)
        if hit is not None and hit[0].fresh_for > 0:  # stale entries are not returned
            hits[key] = hit[0].value
    return hits


def promote_found(
    state: CacheState,
    found: Mapping[Any, tuple[Entry, int]],
    value_type: Any,
    seen: Mapping[Any, int],
) -> Plan[None]:
    """Copy every fresh entry found below L1 up, one batch per depth (``seen``: as for
    ``promote``)."""
    if not state.promotes:
        return
    by_depth: dict[int, dict[Any, Entry]] = {}
    for key, (entry, depth) in found.items():
        if depth and entry.fresh_for > 0:
            by_depth.setdefault(depth, {})[key] = entry
    for depth, entries in by_depth.items():
        yield from promote(state, entries, depth, value_type, seen)


def promote(
    state: CacheState,
    entries: Mapping[Any, Entry],
    depth: int,
    value_type: Any,
    seen: Mapping[Any, int],
) -> Plan[None]:
    """Copy entries found at ``depth`` into the faster layers that accept them, each for no
    longer than the entry is still fresh (and stale) below. A failed copy is counted and
    logged: the read itself succeeded.

    ``seen``: each key's generation, noted before the read that found it. A key written or
    deleted since is not copied, and a copy made while it was is deleted again (see
    ``core/generations.py`` for why this leaves no faster layer older than a slower one).

    A batch is decided at once: the keys each layer accepts, one look at the generations,
    one group (one lifetime, one batch call) unless the entries differ in step or tags."""
    copies: list[tuple[Tier, list[Any]]] = []
    for tier in state.tiers[:depth]:
        accepted = _unmoved(state, _accepted(tier, entries), seen)
        if not accepted:
            continue
        for (step, tags), group in _by_step(state, accepted).items():
            lifetime = tier.lifetime_for(None, state.rng)
            if step is not None:  # as long as this layer keeps the key at its step
                default = getattr(tier.layer, "default_ttl", None)
                lifetime = tier.policy.adapted(lifetime, step, default)
            lifetime = _shortest(lifetime, group.values())._replace(tags=tags)
            values = {key: entry.value for key, entry in group.items()}
            yield from store(state, tier, values, lifetime, value_type, quiet=True)
            copies.append((tier, list(values)))
    if copies:
        yield from undo_if_overtaken(state, copies, seen)


def _accepted(tier: Tier, entries: Mapping[Any, Entry]) -> Mapping[Any, Entry]:
    """The entries ``tier``'s promotion policy accepts (the default, ``seen_before``: the
    keys its frequency sketch has seen before, asked once per key without the policy's
    dispatch)."""
    rule = tier.policy.promote
    if rule == "never":
        return {}
    if rule == "always":
        return entries
    if rule == "seen_before":
        estimate = getattr(tier.layer, "get_frequency_estimate", None)
        if estimate is None:
            return entries
        return {key: entry for key, entry in entries.items() if estimate(key) >= 2}
    accepts, layer = tier.policy.accepts_promotion, tier.layer
    return {key: entry for key, entry in entries.items() if accepts(key, layer)}


def _unmoved(
    state: CacheState, entries: Mapping[Any, Entry], seen: Mapping[Any, int]
) -> Mapping[Any, Entry]:
    """``entries`` but those whose key was written or deleted since its generation was
    noted in ``seen``: their copies would be older than the slower layers."""
    generations = state.generations
    if not entries or generations is None:
        return entries
    moved = generations.moved(entries, seen)
    if not moved:
        return entries
    return {key: entry for key, entry in entries.items() if key not in moved}


def redeleted(
    state: CacheState, tier: Tier, keys: list[Any], unreachable: set[int] | None
) -> Plan[list[Any]]:
    """The keys of ``keys`` whose delete has not reached ``tier`` yet (see
    ``core/unconfirmed.py``): their delete is sent again, and a success confirms it.
    Either way ``tier`` is not read for them: they are deleted there now, or it may still
    hold the deleted value."""
    marked = state.unconfirmed_in(tier, keys)
    if not marked:
        return marked
    try:
        yield from remove(tier, marked, optional=True)  # a read does not wait for a token
    except LayerError as error:
        state.note_read_error(tier, marked, error)
        if unreachable is not None and is_transient(error):
            unreachable.add(tier.depth)
    else:
        state.confirm_deleted(tier, marked)
    return marked


def _by_step(
    state: CacheState, entries: Mapping[Any, Entry]
) -> Mapping[tuple[int | None, tuple[str, ...]], Mapping[Any, Entry]]:
    """``entries`` by their adaptive step (``None`` when no layer adapts) and tags: each
    group is copied with one lifetime."""
    adapts = state.adapts
    if not adapts and not any(entry.tags for entry in entries.values()):
        return {(None, ()): entries}  # the usual batch: one group
    groups: dict[tuple[int | None, tuple[str, ...]], dict[Any, Entry]] = {}
    for key, entry in entries.items():
        groups.setdefault((entry.step if adapts else None, entry.tags), {})[key] = entry
    return groups


def load_marks(state: CacheState) -> Plan[None]:
    """Read the shared layer's tag and prefix marks (``core/tags.py``): once, when it
    first answers with an entry, and again after a backplane gap. A layer that fails
    leaves them to the next read (its entries are served meanwhile: it just answered)."""
    tier = state.marks_tier
    if tier is None:
        state.invalidations.loaded = True  # no shared layer keeps marks: only this instance's
        return
    try:
        fields = yield Call(tier, "read_marks", (), True)
    except LayerError as error:
        state.note_read_error(tier, "(tag marks)", error)
        return
    state.invalidations.load(fields)


def _shortest(lifetime: Lifetime, entries: Iterable[Entry]) -> Lifetime:
    """``lifetime``, cut so that no copy outlives the entries it copies (each entry's
    ``lifetime_of``, folded in without building it)."""
    ttl, stale, refresh = lifetime.ttl, lifetime.stale_ttl, lifetime.refresh_after
    for entry in entries:
        fresh = entry.fresh_for if entry.fresh_for > 0.0 else 0.0
        if ttl is None or fresh < ttl:
            ttl = fresh
        left = entry.gone_in - fresh
        if left < stale:
            stale = left if left > 0.0 else 0.0
        if entry.refresh_in < refresh:
            refresh = entry.refresh_in if entry.refresh_in > 0.0 else 0.0
    return Lifetime(ttl, stale, refresh, lifetime.step)


def contains(state: CacheState, key: Any) -> Plan[bool]:
    """``contains``: whether any layer holds a live entry (not counted as a read, never
    promoted). A layer that fails counts as not holding it, as does one that a delete of
    it, or a clear, did not reach (telling what it holds from before the clear would take
    a read)."""
    for tier in state.tiers:
        if state.unconfirmed and (yield from redeleted(state, tier, [key], None)):
            continue
        if tier.depth in state.uncleared:
            continue
        try:
            if tier.queue is not None:
                pending = yield Peek(tier, [key])
                if key in pending:
                    if queued_entry(tier, key, pending[key], None) is not None:
                        return True
                    continue  # a queued delete: this layer no longer holds it
            if (yield Call(tier, tier.contains_method, (key,))):
                return True
        except LayerError as error:
            state.note_read_error(tier, key, error)
    return False


def remaining_ttl(state: CacheState, key: Any) -> Plan[float | None]:
    """``remaining_ttl``: the longest time any layer will still serve the key (seconds,
    ``math.inf`` for never), or ``None`` when no layer holds it."""
    longest: float | None = None
    for tier in state.tiers:
        if not tier.has("remaining_ttl") and tier.queue is None:
            continue
        if state.unconfirmed and (yield from redeleted(state, tier, [key], None)):
            continue
        try:
            pending = {} if tier.queue is None else (yield Peek(tier, [key]))
            if key in pending:
                entry = queued_entry(tier, key, pending[key], None)
                seconds = None if entry is None else entry.gone_in
            elif tier.has("remaining_ttl"):
                seconds = yield Call(tier, "remaining_ttl", (key,))
            else:
                continue
        except LayerError as error:
            state.note_read_error(tier, key, error)
            continue
        if seconds is not None and (longest is None or seconds > longest):
            longest = seconds
    return longest
