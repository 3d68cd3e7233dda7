"""Write plans: ``set`` / ``set_many`` (and its plan-free fast path), loaded values, and
``delete`` / ``delete_many`` / ``clear``, through write-through and write-behind layers.

Every write and delete goes slowest layer first, and bumps the keys' generations after
each slower layer and before the next faster one (``core/generations.py``): a reader that
read the old value below then cannot copy it up over the new one. A delete that does not
reach a layer marks the key for it (``core/unconfirmed.py``) before that bump, so that a
reader sees either the bump or the mark."""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Iterable, Mapping
from typing import Any

from ..adaptive import is_rule
from ..decorate import CallKey
from ..errors import LayerError, SerializationError
from ..freshness import Entry, Lifetime
from ..keys import unique
from ..state import CacheState
from ..tiers import Tier
from ..ttl import TTL, optional_ttl_seconds
from ..writepolicy import Op, QueueFull, WriteQueueClosed
from .steps import Call, Enqueue, Flush, Peek, Plan, typed


def write(
    state: CacheState,
    mapping: Mapping[Any, Any],
    ttl: TTL | None,
    value_type: Any = None,
    tags: tuple[str, ...] = (),
) -> Plan[None]:
    """``set`` / ``set_many``: write through every layer, slowest first, each capping
    ``ttl`` by its policy (and adding its stale window and refresh point). A failed write
    raises: the caller must know. Before it does, the faster layers (not written yet)
    drop the keys: the failed layer may hold the new value or still the old one (a
    timeout does not say whether the write landed), and a faster layer must not go on
    answering with the value the caller meant to replace.

    Concurrent writes of one key (``core/generations.py``): a write notes the keys'
    generations before the slowest layer, and before each faster one checks whether
    another write or delete of a key reached the slower layers meanwhile. Such a key is
    removed from the faster layers instead of written (which of the two writes landed last
    below cannot be told from here: a miss is safe, an older value is not); so is a key
    bumped again right after this write wrote a faster layer (invalidate after write)."""
    optional_ttl_seconds(ttl)
    if not mapping:
        return
    generations = state.generations
    slowest = state.tiers_slowest_first[0]
    seen: dict[Any, int] = {}
    if generations is not None:
        generations.note(mapping, seen)
    dropped: list[Any] = []  # overtaken by another write: removed from the faster layers
    for tier in state.tiers_slowest_first:
        if generations is not None and tier is not slowest:
            overtaken = generations.changed(seen)
            generations.bump_many(mapping)
            seen = {}
            generations.note(mapping, seen)  # this write's own tickets
            if overtaken:
                dropped += overtaken
                mapping = {key: value for key, value in mapping.items() if key not in dropped}
            if dropped:
                yield from forget_in(state, tier, dropped)
            if not mapping:
                continue
        lifetime = tier.lifetime_for(ttl, state.rng)
        if tags:
            lifetime = lifetime._replace(tags=tags)
        try:
            yield from store(state, tier, mapping, lifetime, value_type, quiet=False)
        except LayerError as error:
            state.note_write_error(tier, list(mapping), error)
            yield from forget(state, list(mapping), tier.depth)
            raise
        except BaseException as error:
            if not isinstance(error, Exception):  # cancelled while the write was on its way
                yield from forget(state, list(mapping), tier.depth)  # it may land, or not
            raise
        if generations is not None and tier is not slowest:
            later = generations.changed(seen)  # bumped again while this layer was written
            if later:
                dropped += later
                mapping = {key: value for key, value in mapping.items() if key not in dropped}
                yield from forget_in(state, tier, later)


def forget_in(state: CacheState, tier: Tier, keys: list[Any]) -> Plan[None]:
    """Drop ``keys`` from one faster layer, best effort (counted and logged)."""
    try:
        yield from remove(tier, keys, block=False)
    except (LayerError, QueueFull, WriteQueueClosed) as error:
        state.note_write_error(tier, keys, error)


def forget(state: CacheState, keys: list[Any], stop: int) -> Plan[None]:
    """Drop ``keys`` from the layers faster than depth ``stop`` (after a write into it
    failed). Best effort: a layer that fails here too is counted and logged, and the
    write's own error is the one the caller gets."""
    if state.generations is not None:
        state.generations.bump_many(keys)  # the failed write may land: copy nothing older
    for tier in state.tiers[:stop]:
        try:
            yield from remove(tier, keys)
        except (LayerError, QueueFull, WriteQueueClosed) as error:
            state.note_write_error(tier, keys, error)


def remove(tier: Tier, keys: list[Any], block: bool = True, optional: bool = False) -> Plan[None]:
    """Delete ``keys`` from one layer: queued for a write-behind one (after its queued
    writes of them, in order; ``block``: waiting for room), else in one batch call when
    the layer has one (``optional``: not waited for under a rate limit, see ``Call``)."""
    if tier.queue is not None:
        yield from enqueue_deletes(tier, keys, block)
    elif len(keys) > 1 and tier.has("delete_many"):
        yield Call(tier, "delete_many", (keys,), optional)
    else:
        for key in keys:
            yield Call(tier, "delete", (key,), optional)


def write_at_once(
    state: CacheState,
    key: Any,
    value: Any,
    ttl: TTL | None,
    value_type: Any,
    put_now: Mapping[int, Callable[[Any, Op, Any, int], bool]],
) -> bool:
    """``set`` of one key without a plan, when no layer has to be waited for (every layer
    in-process or write-behind: ``state.writes_at_once``): ``write``'s decisions, slowest
    first, as plain calls. ``put_now[depth](key, op, payload, size)`` queues a write for
    the layer at ``depth`` if there is room now; when a queue has none, returns False
    before any faster layer is written, and the caller runs ``write``, which waits for
    room (a write already queued below is then queued again: the same value, coalesced).
    Concurrent writes of the key are handled as ``write`` handles them."""
    if state.call_texts is not None and type(key) is CallKey:
        return False  # its shared text is noted by ``store``: the plan's
    generations = state.generations
    if generations is not None:  # (read inline below: this loop is every write-behind set())
        table, tickets = generations.table, generations.tickets
        slot = hash(key) & generations.mask
        noted = table[slot]
    slowest = state.tiers_slowest_first[0]
    overtaken = False
    for tier in state.tiers_slowest_first:
        if generations is not None and tier is not slowest:
            overtaken = overtaken or table[slot] != noted
            table[slot] = noted = next(tickets)  # generations.bump(key)
            if overtaken:
                if not _remove_now(tier, key, put_now):
                    return False
                continue
        # Tier.lifetime_for's shortcut, inlined
        lifetime = tier.default_lifetime if ttl is None else None
        if lifetime is None:
            lifetime = tier.lifetime_for(ttl, state.rng)
        if tier.queue is not None:
            payload = tier.layer.encode_write(key, value, lifetime, 0.0, value_type)
            if not put_now[tier.depth](key, "set", payload, payload.size):
                return False
        else:
            tier.layer.set_entry(key, value, lifetime)
        if generations is not None and tier is not slowest and table[slot] != noted:
            overtaken = True  # bumped again while this layer was written
            if not _remove_now(tier, key, put_now):
                return False
    return True


def write_loaded_at_once(
    state: CacheState, key: Any, value: Any, ttl: TTL | None, load_seconds: float
) -> None:
    """``write_loaded`` of one key without a plan, into a cache of one in-process layer
    (``state.alone``) and for a plain TTL (not a function of the value, no adaptive TTL,
    no tags, no entry held before): one write, which no generation guards (one layer has
    nothing faster to keep in step)."""
    tier = state.alone
    assert tier is not None
    tier.layer.set_entry(key, value, tier.lifetime_for(ttl, state.rng), load_seconds)


def _remove_now(
    tier: Tier, key: Any, put_now: Mapping[int, Callable[[Any, Op, Any, int], bool]]
) -> bool:
    """Drop ``key`` from one layer with a plain call (queued for a write-behind one);
    False when its queue has no room now."""
    if tier.queue is None:
        tier.layer.delete(key)
        return True
    payload = tier.layer.encode_delete(key)
    return put_now[tier.depth](key, "delete", payload, payload.size)


def write_loaded(
    state: CacheState,
    mapping: Mapping[Any, Any],
    ttl: Any,
    value_type: Any,
    seen: Mapping[Any, int],
    load_seconds: float = 0.0,
    skip: Container[int] = (),
    held: Mapping[Any, tuple[Entry, int]] | None = None,
    kept: Collection[Any] = (),
    tags: tuple[str, ...] = (),
) -> Plan[None]:
    """Write loaded values (with ``tags``) through every layer, slowest first. A loaded
    value is returned even if caching it fails: count and log, do not raise; a value the
    shared layer cannot encode still goes into the in-process layer. The layers at the
    depths in ``skip`` are left out: those that did not answer the lookup before this
    load, which the caller would otherwise wait on a second time (a blackholed server:
    twice its timeout).

    ``ttl``: a TTL, or a function of each value (``core/adaptive.py``). ``held``: the entry
    each key had before the load, with its depth, and ``kept``: the keys whose loader said
    it is unchanged; with them (or an adaptive layer), ``plans/reloads.py`` decides each
    value's TTL and step, and extends unchanged entries instead of rewriting them.

    ``seen``: each key's generation, noted before the load began. A key written or deleted
    through this manager since is not written (that write is newer than what the loader
    read), checked before each layer; copies into faster layers made while it was are
    deleted again, as a promotion's are (``core/generations.py``). What this cannot stop:
    a loaded value landing in the slowest layer just after a set there that had not bumped
    the generation yet (the look-aside cache's stale set, which only a conditional write
    in that layer could)."""
    reload = None
    if held or kept or state.adapts or is_rule(ttl):
        from .reloads import Reload  # (it builds on this module)

        reload = Reload(state, mapping, ttl, value_type, held, kept, tags)
    written: list[tuple[Tier, list[Any]]] = []
    first = True
    for tier in state.tiers_slowest_first:
        if tier.depth in skip:
            continue
        mapping = current(state, dict(mapping), seen)
        if not mapping:
            break
        if reload is not None:
            yield from reload.write(state, tier, mapping, value_type, load_seconds)
        else:
            lifetime = tier.lifetime_for(ttl, state.rng)
            if tags:
                lifetime = lifetime._replace(tags=tags)
            yield from store(state, tier, mapping, lifetime, value_type, True, load_seconds)
        if not first:
            written.append((tier, list(mapping)))
        first = False
    if reload is not None:
        reload.finish(state)
    if written:
        yield from undo_if_overtaken(state, written, seen)


def current(state: CacheState, items: dict[Any, Any], seen: Mapping[Any, int]) -> dict[Any, Any]:
    """``items`` without the keys written or deleted since their generation was noted in
    ``seen`` (or never noted there)."""
    generations = state.generations
    if generations is None or not items:
        return items
    moved = generations.changed({key: seen.get(key, -1) for key in items})
    if not moved:
        return items
    return {key: value for key, value in items.items() if key not in moved}


def undo_if_overtaken(
    state: CacheState, copies: list[tuple[Tier, list[Any]]], seen: Mapping[Any, int]
) -> Plan[None]:
    """After copying keys into faster layers (``copies``: each layer and its keys): delete
    the copies of the keys written or deleted meanwhile, whose write may have landed
    before the copy. Best effort, as the copy was: a failure is counted and logged."""
    generations = state.generations
    if generations is None:
        return
    copied = {key for _, keys in copies for key in keys}
    moved = set(generations.changed({key: seen.get(key, -1) for key in copied}))
    if not moved:
        return
    for tier, keys in copies:
        overtaken = [key for key in keys if key in moved]
        if overtaken:
            try:
                yield from remove(tier, overtaken, block=False)
            except (LayerError, QueueFull, WriteQueueClosed) as error:
                state.note_write_error(tier, overtaken, error)


def store(
    state: CacheState,
    tier: Tier,
    mapping: Mapping[Any, Any],
    lifetime: Lifetime,
    value_type: Any,
    quiet: bool,
    load_seconds: float = 0.0,
) -> Plan[None]:
    """Write ``mapping`` into one tier (one call for one item or a batch). With ``quiet``
    (a promotion, a loaded value), a failure is counted and logged instead of raised, and a
    value the layer cannot encode is simply not cached there. A write-behind layer gets
    the writes encoded now and queued (``quiet`` ones only if there is room at once). A
    write that lands settles the deletes of its keys that had not reached the layer."""
    if tier.queue is not None:
        yield from enqueue_writes(state, tier, mapping, lifetime, value_type, quiet, load_seconds)
        return
    one = len(mapping) == 1
    if tier.entries:
        if one:
            ((key, value),) = mapping.items()
            args: tuple[Any, ...] = (key, value, lifetime, load_seconds)
        else:
            args = (mapping, lifetime, load_seconds)
        method = "set_entry" if one else "set_many_entries"
        call = Call(tier, method, typed(tier, args, value_type), quiet)
    else:
        seconds = lifetime.ttl if lifetime.stale_ttl == 0 else lifetime.total
        if one:
            ((key, value),) = mapping.items()
            call = Call(tier, "set", typed(tier, (key, value, seconds), value_type), quiet)
        else:
            call = Call(tier, "set_many", typed(tier, (mapping, seconds), value_type), quiet)
    try:
        yield call
    except LayerError as error:
        if not quiet:
            raise
        state.note_write_error(tier, list(mapping), error)
        return
    except SerializationError as error:
        if not quiet:
            raise
        if one:
            state.note_encode_error(tier, list(mapping), error)
            return
        # A batch call encodes all or nothing: store the values that can be, one by one.
        for key, value in mapping.items():
            yield from store(state, tier, {key: value}, lifetime, value_type, True, load_seconds)
        return
    if state.unconfirmed:  # the layer holds these values now, not the deleted ones
        state.confirm_deleted(tier, mapping)
    if state.call_texts is not None and tier.in_process:
        remember_call_texts(state, tier, mapping)
    if lifetime.tags and tier.in_process:  # dropped from it when a tag is invalidated
        if state.invalidations.remember(mapping, lifetime.tags):
            state.invalidations.keep_held(set(tier.layer.keys()))


def remember_call_texts(state: CacheState, tier: Tier, keys: Iterable[Any]) -> None:
    """Note the shared text of the ``@cached`` call keys among ``keys`` (see
    ``CacheState.call_texts``), forgetting those the layer no longer holds once there are
    more than four times its size."""
    texts = state.call_texts
    assert texts is not None
    for key in keys:
        if type(key) is CallKey:
            try:
                texts[key.text] = key
            except TypeError:  # arguments without a shared text: never in a shared layer
                pass
    if len(texts) > 4 * (getattr(tier.layer, "max_size", None) or 250_000):
        layer = tier.layer
        state.call_texts = {text: key for text, key in texts.items() if key in layer}


def enqueue_writes(
    state: CacheState,
    tier: Tier,
    mapping: Mapping[Any, Any],
    lifetime: Lifetime,
    value_type: Any,
    quiet: bool,
    load_seconds: float = 0.0,
) -> Plan[None]:
    """``store`` into a write-behind layer: encode every value first (one that cannot be
    raises, or with ``quiet`` is not cached there; nothing is queued for it), then queue."""
    encode = tier.layer.encode_write
    writes: list[tuple[Any, Op, Any, int]] = []
    for key, value in mapping.items():
        try:
            payload = encode(key, value, lifetime, load_seconds, value_type=value_type)
        except SerializationError as error:
            if not quiet:
                raise
            state.note_encode_error(tier, [key], error)
            continue
        writes.append((key, "set", payload, payload.size))
    if not writes:
        return
    try:
        yield Enqueue(tier, writes, block=not quiet)
    except (QueueFull, WriteQueueClosed) as error:
        if not quiet:
            raise
        state.note_write_error(tier, list(mapping), error)


def enqueue_deletes(tier: Tier, keys: list[Any], block: bool = True) -> Plan[None]:
    """Queue deletes of ``keys`` for a write-behind layer (after the writes queued before
    them: a key's writes are sent in order)."""
    encode = tier.layer.encode_delete
    writes: list[tuple[Any, Op, Any, int]] = []
    for key in keys:
        payload = encode(key)
        writes.append((key, "delete", payload, payload.size))
    yield Enqueue(tier, writes, block=block)


def delete(state: CacheState, key: Any) -> Plan[bool]:
    """``delete``: remove the key from every layer; True if any had it. If a layer fails,
    the others are still cleared, then the first error is raised; the key is not read from
    the failed layer until a delete or set of it reaches it (``unconfirmed``). A
    write-behind layer gets the delete queued (it counts as having had the key only if a
    write of it was queued)."""
    removed = False
    failure: LayerError | None = None
    generations = state.generations
    slowest = state.tiers_slowest_first[0]
    for tier in state.tiers_slowest_first:
        if generations is not None and tier is not slowest:
            generations.bump(key)
        try:
            if tier.queue is not None:
                pending = yield Peek(tier, [key])
                removed = removed or (key in pending and pending[key][0] == "set")
                yield from enqueue_deletes(tier, [key])
                continue
            removed = (yield Call(tier, "delete", (key,))) or removed
        except LayerError as error:
            state.note_write_error(tier, key, error)
            failure = failure or unconfirmed(state, tier, [key], error)
            continue
        except BaseException as error:
            if not isinstance(error, Exception):  # cancelled: the delete may land, or not
                yield from forget(state, [key], tier.depth)
            raise
        if state.unconfirmed:
            state.confirm_deleted(tier, [key])
    if failure is not None:
        raise failure
    return removed


def delete_many(state: CacheState, keys: Iterable[Any]) -> Plan[None]:
    """``delete_many``: remove every key from every layer (one batch call per layer that
    has one); like ``delete``, the other layers are cleared before an error is raised, and
    the keys are not read from the failed layer until a delete or set of them reaches it."""
    wanted = unique(keys)
    failure: LayerError | None = None
    generations = state.generations
    slowest = state.tiers_slowest_first[0]
    for tier in state.tiers_slowest_first:
        if generations is not None and tier is not slowest:
            generations.bump_many(wanted)
        try:
            yield from remove(tier, wanted)
        except LayerError as error:
            state.note_write_error(tier, wanted, error)
            failure = failure or unconfirmed(state, tier, wanted, error)
            continue
        if state.unconfirmed:
            state.confirm_deleted(tier, wanted)
    if failure is not None:
        raise failure


def unconfirmed(state: CacheState, tier: Tier, keys: list[Any], error: LayerError) -> LayerError:
    """A delete of ``keys`` did not reach ``tier``: mark them (before the generation bump
    that follows, see the module docstring) and say so in ``error``'s message."""
    if tier.in_process:
        return error
    state.mark_unconfirmed(tier, keys)
    what = repr(keys[0]) if len(keys) == 1 else f"these {len(keys)} keys"
    note = (
        f"; {tier.name} may still hold {what}: this cache will not read "
        f"{'it' if len(keys) == 1 else 'them'} from {tier.name} until a delete or set "
        f"reaches it (each read sends the delete again first)"
    )
    message = error.args[0] if error.args else ""
    error.args = (f"{message}{note}", *error.args[1:])
    return error


def clear(state: CacheState) -> Plan[None]:
    """``clear``: empty every layer that can be emptied (the in-process one, and a shared
    one under its key prefix), slowest first; the others are cleared before an error is
    raised. A write-behind layer's queue is flushed first, so that no write queued before
    the clear lands after it. Every key's generation is bumped before each faster layer is
    cleared: a read that found a value below before the clear does not copy it up."""
    failure: LayerError | None = None
    cleared_one = False
    for tier in state.tiers_slowest_first:
        if not tier.has("clear"):
            continue
        if cleared_one and state.generations is not None:
            state.generations.bump_all()
        cleared_one = True
        try:
            if tier.queue is not None:
                yield Flush(tier)
            yield Call(tier, "clear", ())
        except LayerError as error:
            state.note_write_error(tier, "(clear)", error)
            state.mark_uncleared(tier)
            failure = failure or error
            continue
        state.confirm_cleared(tier)
    if failure is not None:
        raise failure
