"""What the managers do, written once: each operation is a *plan*, a generator that decides
and yields the calls it needs, and the driver (sync or asyncio) performs them.

    def read(state, key, default):          # the plan: decisions only
        for tier in state.tiers:
            entry = yield Call(tier, "get_entry", (key,))
            ...

    # sync driver                            # asyncio driver
    reply = layer.get_entry(*step.args)      reply = await layer.get_entry(*step.args)
    step = plan.send(reply)                  step = plan.send(reply)

This is the sans-IO pattern of h11 and hyper-h2: the plans never block, sleep or await, so
``MultilayerCache`` and ``AsyncMultilayerCache`` run exactly the same decisions. A plan
receives the result of each step from ``send``; when a step fails, the driver throws the
exception into the plan at the ``yield``, where the plan decides (a failed read is a miss
in that layer, a failed write raises).

Steps (the loading ones are used by ``loading.py``):

* ``Call(tier, method, args)``: ``tier.layer.<method>(*args)`` (awaited for asyncio layers).
* ``Load(loader, argument, soft_timeout, hard_timeout)``: the user's loader, counted and
  timed; the reply is ``Loaded(value, seconds)``, or ``Pending(handle, hard)`` when a
  timeout passed first (the load goes on).
* ``Await(handle)``: the rest of a pending load; the reply is its ``Loaded``.
* ``Flight(key, plan)``: run ``plan`` once for every caller that asks for ``key`` while it
  runs (request coalescing); each gets its result or its exception.
* ``FlightMany(keys, plan_for)``: the same per key, for a batch: the caller runs
  ``plan_for(keys nobody is loading yet)`` and waits for the others' loads of the rest.
* ``Refresh(job, items)``: queue background refreshes of ``(key, stale, frequency)`` items
  (at most one per key; see ``refresh.py``) together; the reply is ``None`` at once.
* ``Enqueue(tier, writes, block)``, ``Peek(tier, keys)``, ``Flush(tier)``: a write-behind
  layer's queue (``tier.queue``, see ``writequeue.py``): put encoded writes into it (waiting
  for room, or not), read the queued writes of some keys, wait until it is delivered. The
  driver makes these calls under the queue's lock and wakes its worker.

A write-behind layer is written by encoding the value at once (so a value it cannot take
raises in ``set()``) and queueing it; it is read by asking its queue first: a queued value
answers as the layer will once it is sent, a queued delete as a miss.

Layers that keep freshness (``tier.entries``: both of this package's layers) are read with
``get_entry`` and written with ``set_entry``, so that a value copied up into a faster layer
never outlives its freshness below, and stale values stay available to ``loading.py``.
Writes go slowest layer first: a value the shared layer cannot encode is then written
nowhere, and a faster layer never holds a value that the slower ones refused.

``value_type`` (the type values are read back as) goes to the layers that encode values
(``tier.typed``); in-process layers hold the objects themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Generator, Hashable, Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias, TypeVar

from .errors import LayerError, SerializationError, is_unreachable
from .freshness import Entry, Freshness, Lifetime, lifetime_of
from .keys import unique
from .missing import MISSING
from .refresh import RefreshJob
from .state import CacheState
from .tiers import Tier
from .ttl import TTL, optional_ttl_seconds
from .writepolicy import Op, QueueFull, WriteQueueClosed

T = TypeVar("T")


# Steps are named tuples: a plan makes one per layer call, and a tuple is the cheapest
# object to build (a frozen dataclass costs ~1 us more per step).
class Call(NamedTuple):
    """Perform ``tier.layer.<method>(*args)``; reply with its result."""

    tier: Tier
    method: str
    args: tuple[Any, ...]


READ_METHODS = frozenset({"get", "get_many", "get_entry", "get_entries"})
"""The calls whose duration a tier records with ``record_latency=True``."""


class Load(NamedTuple):
    """Call the user's ``loader(argument)`` (await it under asyncio); reply ``Loaded``, or
    ``Pending`` once ``soft_timeout`` or ``hard_timeout`` (seconds, ``None``: none) passed."""

    loader: Callable[[Any], Any]
    argument: Any
    soft_timeout: float | None = None
    hard_timeout: float | None = None


class Loaded(NamedTuple):
    value: Any
    seconds: float


class Pending(NamedTuple):
    """A load still running when a timeout passed; ``hard``: the hard one."""

    handle: Any
    hard: bool


class Await(NamedTuple):
    """Wait for a pending load to end; reply with its ``Loaded``."""

    handle: Any


class Flight(NamedTuple):
    """Run ``plan`` once for all concurrent callers of ``key``; reply with its result."""

    key: Hashable
    plan: Plan[Any]


class FlightMany(NamedTuple):
    """Coalesce a batch per key: run ``plan_for(led)`` for the keys no other caller is
    loading (``led``), wait for the others; reply with ``{key: value}`` for every key that
    got a value."""

    keys: list[Any]
    plan_for: Callable[[list[Any]], Plan[dict[Any, Any]]]


class Refresh(NamedTuple):
    """Queue background refreshes by ``job`` of the ``(key, stale, frequency)`` items (see
    ``refresh.py``), all at once so that a bulk refresh finds them together; reply
    ``None``."""

    job: RefreshJob
    items: tuple[tuple[Any, bool, int], ...]


class Enqueue(NamedTuple):
    """Put ``writes`` (``(key, op, payload, size)``) into ``tier``'s write-behind queue; with
    ``block``, wait for room as the queue's policy says. Reply ``None``, or raise
    ``QueueFull`` (nothing of the write that did not fit was queued)."""

    tier: Tier
    writes: list[tuple[Any, Op, Any, int]]
    block: bool


class Peek(NamedTuple):
    """The writes of ``keys`` still queued for ``tier``: reply ``{key: (op, payload)}``."""

    tier: Tier
    keys: list[Any]


class Flush(NamedTuple):
    """Wait until every write queued for ``tier`` so far is delivered or dead-lettered."""

    tier: Tier


Step: TypeAlias = "Call | Load | Await | Flight | FlightMany | Refresh | Enqueue | Peek | Flush"
Plan: TypeAlias = Generator[Step, Any, T]


def typed(tier: Tier, args: tuple[Any, ...], value_type: Any) -> tuple[Any, ...]:
    """``args`` with ``value_type`` appended, for layers that decode by type."""
    return (*args, value_type) if value_type is not None and tier.typed else args


# ---------------------------------------------------------------------------- reads
def get_entry(tier: Tier, key: Any, value_type: Any) -> Plan[Entry | None]:
    """One layer's entry for ``key`` (a layer without freshness: fresh while held; a
    write-behind layer: its queued write first)."""
    if tier.queue is not None:
        pending = yield Peek(tier, [key])
        if key in pending:
            return queued_entry(tier, key, pending[key], value_type)
    if tier.entries:
        return (yield Call(tier, "get_entry", typed(tier, (key,), value_type)))
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
    return tier.layer.pending_entry(key, payload, value_type)  # type: ignore[no-any-return]


def find_entry(
    state: CacheState,
    key: Any,
    value_type: Any,
    start: int = 0,
    settle_for_stale: bool = True,
    stop: int | None = None,
    unreachable: set[int] | None = None,
) -> Plan[tuple[Entry | None, int]]:
    """``(entry, depth)`` of the first layer from ``start`` (to ``stop``) that holds the
    key, or ``(None, -1)``. A fresh (or due) entry ends the search; a stale one ends it when
    ``settle_for_stale``, else the search goes on below for a fresh one and falls back to
    the stale one. A layer that fails counts as not holding the key; the depths of those
    that did not answer at all go into ``unreachable``."""
    fallback: tuple[Entry | None, int] = (None, -1)
    for tier in state.tiers[start:stop]:
        try:
            entry = yield from get_entry(tier, key, value_type)
        except LayerError as error:
            state.note_read_error(tier, key, error)
            if unreachable is not None and is_unreachable(error):
                unreachable.add(tier.depth)
            continue
        if entry is None:
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
    entry, depth = yield from find_entry(state, key, value_type, start, settle_for_stale=False)
    if entry is None or entry.freshness is Freshness.STALE:
        return default
    if depth:
        yield from promote(state, {key: entry}, depth, value_type)
    return entry.value


def find_entries(
    state: CacheState,
    keys: list[Any],
    value_type: Any,
    start: int = 0,
    stop: int | None = None,
    settle_for_stale: bool = True,
    unreachable: set[int] | None = None,
) -> Plan[dict[Any, tuple[Entry, int]]]:
    """``find_entry`` for a batch: ``{key: (entry, depth)}`` for the keys some layer from
    ``start`` to ``stop`` holds; one batch call per layer, asking each only for the keys
    still unsettled."""
    found: dict[Any, tuple[Entry, int]] = {}
    remaining = keys
    for tier in state.tiers[start:stop]:
        if not remaining:
            break
        try:
            entries = yield from get_entries(tier, remaining, value_type)
        except LayerError as error:
            state.note_read_error(tier, remaining, error)
            if unreachable is not None and is_unreachable(error):
                unreachable.add(tier.depth)
            continue
        depth = tier.depth
        for key, entry in entries.items():
            if entry.fresh_for > 0 or key not in found:  # fresh beats stale from above
                found[key] = (entry, depth)
        if settle_for_stale:
            remaining = [key for key in remaining if key not in found]
        else:  # a stale entry goes on looking below for a fresh one
            remaining = [
                key for key in remaining if key not in found or found[key][0].fresh_for <= 0
            ]
    return found


def read_many(state: CacheState, keys: Iterable[Any], value_type: Any = None) -> Plan[dict]:
    """``get_many``: the keys with a fresh value in any layer (one batch call per layer,
    each asked only for what the faster ones missed), in the order asked; values found
    below are copied up."""
    wanted = unique(keys)
    found = yield from find_entries(state, wanted, value_type, settle_for_stale=False)
    if found:
        yield from promote_found(state, found, value_type)
    hits = {}
    for key in wanted:
        hit = found.get(key)
        if hit is not None and hit[0].fresh_for > 0:  # stale entries are not returned
            hits[key] = hit[0].value
    return hits


def promote_found(
    state: CacheState, found: Mapping[Any, tuple[Entry, int]], value_type: Any
) -> Plan[None]:
    """Copy every fresh entry found below L1 up, one batch per depth."""
    if not state.promotes:
        return
    by_depth: dict[int, dict[Any, Entry]] = {}
    for key, (entry, depth) in found.items():
        if depth and entry.fresh_for > 0:
            by_depth.setdefault(depth, {})[key] = entry
    for depth, entries in by_depth.items():
        yield from promote(state, entries, depth, value_type)


def promote(
    state: CacheState, entries: Mapping[Any, Entry], depth: int, value_type: Any = None
) -> Plan[None]:
    """Copy entries found at ``depth`` into the faster layers that accept them, each for no
    longer than the entry is still fresh (and stale) below. A failed copy is counted and
    logged: the read itself succeeded."""
    for tier in state.tiers[:depth]:
        if tier.policy.promote == "never":
            continue
        accepts = tier.policy.accepts_promotion
        accepted = {key: entry for key, entry in entries.items() if accepts(key, tier.layer)}
        if not accepted:
            continue
        lifetime = _shortest(tier.policy.lifetime_for(None, state.rng), accepted.values())
        values = {key: entry.value for key, entry in accepted.items()}
        yield from store(state, tier, values, lifetime, value_type, quiet=True)


def _shortest(lifetime: Lifetime, entries: Iterable[Entry]) -> Lifetime:
    """``lifetime``, cut so that no copy outlives the entries it copies."""
    ttl, stale, refresh = lifetime
    for entry in entries:
        left = lifetime_of(entry)
        ttl = left.ttl if ttl is None else min(ttl, left.ttl)
        stale = min(stale, left.stale_ttl)
        refresh = min(refresh, left.refresh_after)
    return Lifetime(ttl, stale, refresh)


def contains(state: CacheState, key: Any) -> Plan[bool]:
    """``contains``: whether any layer holds a live entry (not counted as a read, never
    promoted). A layer that fails counts as not holding it."""
    for tier in state.tiers:
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


# ---------------------------------------------------------------------------- writes
def write(
    state: CacheState, mapping: Mapping[Any, Any], ttl: TTL | None, value_type: Any = None
) -> Plan[None]:
    """``set`` / ``set_many``: write through every layer, slowest first, each capping
    ``ttl`` by its policy (and adding its stale window and refresh point). A failed write
    raises: the caller must know. Before it does, the faster layers (not written yet)
    drop the keys: the failed layer may hold the new value or still the old one (a
    timeout does not say whether the write landed), and a faster layer must not go on
    answering with the value the caller meant to replace."""
    optional_ttl_seconds(ttl)
    if not mapping:
        return
    for tier in reversed(state.tiers):
        lifetime = tier.policy.lifetime_for(ttl, state.rng)
        try:
            yield from store(state, tier, mapping, lifetime, value_type, quiet=False)
        except LayerError as error:
            state.note_write_error(tier, list(mapping), error)
            yield from forget(state, list(mapping), tier.depth)
            raise


def forget(state: CacheState, keys: list[Any], stop: int) -> Plan[None]:
    """Drop ``keys`` from the layers faster than depth ``stop`` (after a write into it
    failed). Best effort: a layer that fails here too is counted and logged, and the
    write's own error is the one the caller gets."""
    for tier in state.tiers[:stop]:
        try:
            if tier.queue is not None:  # after its queued writes of the keys, in order
                yield from enqueue_deletes(tier, keys)
            elif len(keys) > 1 and tier.has("delete_many"):
                yield Call(tier, "delete_many", (keys,))
            else:
                for key in keys:
                    yield Call(tier, "delete", (key,))
        except (LayerError, QueueFull, WriteQueueClosed) as error:
            state.note_write_error(tier, keys, error)


def write_at_once(
    state: CacheState,
    key: Any,
    value: Any,
    ttl: TTL | None,
    value_type: Any,
    put_now: Callable[[Tier, Any, Op, Any, int], bool],
) -> bool:
    """``set`` of one key without a plan, when no layer has to be waited for (every layer
    in-process or write-behind: ``state.writes_at_once``): ``write``'s decisions, slowest
    first, as plain calls. ``put_now(tier, key, op, payload, size)`` queues a write if
    there is room now; when a queue has none, returns False before any faster layer is
    written, and the caller runs ``write``, which waits for room (a write already queued
    below is then queued again: the same value, coalesced)."""
    for tier in state.tiers_slowest_first:
        lifetime = tier.default_lifetime
        if ttl is not None or lifetime is None:
            lifetime = tier.policy.lifetime_for(ttl, state.rng)
        if tier.queue is not None:
            payload = tier.layer.encode_write(key, value, lifetime, 0.0, value_type=value_type)
            if not put_now(tier, key, "set", payload, payload.size):
                return False
        else:
            tier.layer.set_entry(key, value, lifetime)
    return True


def write_loaded(
    state: CacheState,
    mapping: Mapping[Any, Any],
    ttl: TTL | None,
    value_type: Any,
    load_seconds: float = 0.0,
    skip: Container[int] = (),
) -> Plan[None]:
    """Write loaded values through every layer, slowest first. A loaded value is returned
    even if caching it fails: count and log, do not raise; a value the shared layer cannot
    encode still goes into the in-process layer. The layers at the depths in ``skip`` are
    left out: those that did not answer the lookup before this load, which the caller
    would otherwise wait on a second time (a blackholed server: twice its timeout)."""
    for tier in reversed(state.tiers):
        if tier.depth in skip:
            continue
        lifetime = tier.policy.lifetime_for(ttl, state.rng)
        yield from store(state, tier, mapping, lifetime, value_type, True, load_seconds)


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
    the writes encoded now and queued (``quiet`` ones only if there is room at once)."""
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
        call = Call(tier, "set_entry" if one else "set_many_entries", typed(tier, args, value_type))
    else:
        seconds = lifetime.ttl if lifetime.stale_ttl == 0 else lifetime.total
        if one:
            ((key, value),) = mapping.items()
            call = Call(tier, "set", typed(tier, (key, value, seconds), value_type))
        else:
            call = Call(tier, "set_many", typed(tier, (mapping, seconds), value_type))
    try:
        yield call
    except LayerError as error:
        if not quiet:
            raise
        state.note_write_error(tier, list(mapping), error)
    except SerializationError as error:
        if not quiet:
            raise
        state.note_encode_error(tier, list(mapping), error)


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
    writes = []
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


def enqueue_deletes(tier: Tier, keys: list[Any]) -> Plan[None]:
    """Queue deletes of ``keys`` for a write-behind layer (after the writes queued before
    them: a key's writes are sent in order)."""
    encode = tier.layer.encode_delete
    writes = []
    for key in keys:
        payload = encode(key)
        writes.append((key, "delete", payload, payload.size))
    yield Enqueue(tier, writes, block=True)


def delete(state: CacheState, key: Any) -> Plan[bool]:
    """``delete``: remove the key from every layer; True if any had it. If a layer fails,
    the others are still cleared, then the first error is raised. A write-behind layer gets
    the delete queued (it counts as having had the key only if a write of it was queued)."""
    removed = False
    failure: LayerError | None = None
    for tier in reversed(state.tiers):
        try:
            if tier.queue is not None:
                pending = yield Peek(tier, [key])
                removed = removed or (key in pending and pending[key][0] == "set")
                yield from enqueue_deletes(tier, [key])
                continue
            removed = (yield Call(tier, "delete", (key,))) or removed
        except LayerError as error:
            state.note_write_error(tier, key, error)
            failure = failure or error
    if failure is not None:
        raise failure
    return removed


def delete_many(state: CacheState, keys: Iterable[Any]) -> Plan[None]:
    """``delete_many``: remove every key from every layer (one batch call per layer that
    has one); like ``delete``, the other layers are cleared before an error is raised."""
    wanted = unique(keys)
    failure: LayerError | None = None
    for tier in reversed(state.tiers):
        try:
            if tier.queue is not None:
                yield from enqueue_deletes(tier, wanted)
            elif tier.has("delete_many"):
                yield Call(tier, "delete_many", (wanted,))
            else:
                for key in wanted:
                    yield Call(tier, "delete", (key,))
        except LayerError as error:
            state.note_write_error(tier, wanted, error)
            failure = failure or error
    if failure is not None:
        raise failure


def clear(state: CacheState) -> Plan[None]:
    """``clear``: empty every layer that can be emptied (the in-process one, and a shared
    one under its key prefix); the others are cleared before an error is raised. A
    write-behind layer's queue is flushed first, so that no write queued before the clear
    lands after it."""
    failure: LayerError | None = None
    for tier in state.tiers:
        if not tier.has("clear"):
            continue
        try:
            if tier.queue is not None:
                yield Flush(tier)
            yield Call(tier, "clear", ())
        except LayerError as error:
            state.note_write_error(tier, "(clear)", error)
            failure = failure or error
    if failure is not None:
        raise failure
