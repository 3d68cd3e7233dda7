"""What the managers do, written once: each operation is a *plan*, a generator that decides
and yields the calls it needs, and the driver (sync or asyncio) performs them.

    def read(state, key, default):          # the plan: decisions only
        for tier in state.tiers:
            value = yield Call(tier, "get", (key, MISSING))
            ...

    # sync driver                            # asyncio driver
    reply = layer.get(*step.args)            reply = await layer.get(*step.args)
    step = plan.send(reply)                  step = plan.send(reply)

This is the sans-IO pattern of h11 and hyper-h2: the plans never block, sleep or await, so
``MultilayerCache`` and ``AsyncMultilayerCache`` run exactly the same decisions. A plan
receives the result of each step from ``send``; when a step fails, the driver throws the
exception into the plan at the ``yield``, where the plan decides (a failed read is a miss
in that layer, a failed write raises).

Steps:

* ``Call(tier, method, args)``: ``tier.layer.<method>(*args)`` (awaited for asyncio layers).
* ``Load(loader, argument)``: the user's loader, counted and timed by the driver.
* ``Flight(key, plan)``: run ``plan`` once for every caller that asks for ``key`` while it
  runs (request coalescing); each gets its result or its exception.
* ``FlightMany(keys, plan_for)``: the same per key, for a batch: the caller runs
  ``plan_for(keys nobody is loading yet)`` and waits for the others' loads of the rest.

Writes go slowest layer first: a value the shared layer cannot encode is then written
nowhere, and a faster layer never holds a value that the slower ones refused.

``value_type`` (the type values are read back as) goes to the layers that encode values
(``tier.typed``); in-process layers hold the objects themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable, Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias, TypeVar

from .errors import LayerError, SerializationError
from .keys import unique
from .missing import MISSING
from .state import CacheState
from .tiers import Tier
from .ttl import TTL, optional_ttl_seconds

T = TypeVar("T")


# Steps are named tuples: a plan makes one per layer call, and a tuple is the cheapest
# object to build (a frozen dataclass costs ~1 us more per step).
class Call(NamedTuple):
    """Perform ``tier.layer.<method>(*args)``; reply with its result."""

    tier: Tier
    method: str
    args: tuple[Any, ...]


READ_METHODS = frozenset({"get", "get_many"})
"""The calls whose duration a tier records with ``record_latency=True``."""


class Load(NamedTuple):
    """Call the user's ``loader(argument)`` (await it under asyncio); reply with its value."""

    loader: Callable[[Any], Any]
    argument: Any


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


Step: TypeAlias = "Call | Load | Flight | FlightMany"
Plan: TypeAlias = Generator[Step, Any, T]


def _typed(tier: Tier, args: tuple[Any, ...], value_type: Any) -> tuple[Any, ...]:
    """``args`` with ``value_type`` appended, for layers that decode by type."""
    return (*args, value_type) if value_type is not None and tier.typed else args


# ---------------------------------------------------------------------------- reads
def read(
    state: CacheState, key: Any, default: Any, start: int = 0, value_type: Any = None
) -> Plan[Any]:
    """``get``: the value from the fastest layer (from depth ``start``) that has it, copied
    up into the faster layers whose policy accepts it; ``default`` if none has it. A layer
    that fails counts as a miss there."""
    for tier in state.tiers[start:]:
        try:
            value = yield Call(tier, "get", _typed(tier, (key, MISSING), value_type))
        except LayerError as error:
            state.note_read_error(tier, key, error)
            continue
        if value is not MISSING:
            if tier.depth:
                yield from promote(state, {key: value}, tier.depth, value_type)
            return value
    return default


def read_many(
    state: CacheState,
    keys: Iterable[Any],
    start: int = 0,
    value_type: Any = None,
    stop: int | None = None,
) -> Plan[dict[Any, Any]]:
    """``get_many``: the keys found in any layer (from depth ``start`` to ``stop``; one
    batch call per layer, each asked only for what the faster ones missed), in the order
    asked."""
    wanted = unique(keys)
    found: dict[Any, Any] = {}
    remaining = wanted
    for tier in state.tiers[start:stop]:
        if not remaining:
            break
        try:
            hits = yield Call(tier, "get_many", _typed(tier, (remaining,), value_type))
        except LayerError as error:
            state.note_read_error(tier, remaining, error)
            continue
        if not hits:
            continue
        if tier.depth:
            yield from promote(state, hits, tier.depth, value_type)
        if not found and len(hits) == len(wanted):
            return hits  # one layer had everything (in the order asked)
        found.update(hits)
        remaining = [key for key in remaining if key not in hits]
    return {key: found[key] for key in wanted if key in found}


def promote(
    state: CacheState, hits: Mapping[Any, Any], depth: int, value_type: Any = None
) -> Plan[None]:
    """Copy values found at ``depth`` into the faster layers that accept them. A failed
    copy is counted and logged: the read itself succeeded."""
    for tier in state.tiers[:depth]:
        if tier.policy.promote == "never":
            continue
        accepts = tier.policy.accepts_promotion
        accepted = {key: value for key, value in hits.items() if accepts(key, tier.layer)}
        if accepted:
            yield from _store(state, tier, accepted, None, value_type, quiet=True)


def contains(state: CacheState, key: Any) -> Plan[bool]:
    """``contains``: whether any layer holds a live entry (not counted as a read, never
    promoted). A layer that fails counts as not holding it."""
    for tier in state.tiers:
        try:
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
        if not tier.has("remaining_ttl"):
            continue
        try:
            seconds = yield Call(tier, "remaining_ttl", (key,))
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
    ``ttl`` by its policy. A failed write raises: the caller must know."""
    optional_ttl_seconds(ttl)
    if not mapping:
        return
    for tier in reversed(state.tiers):
        yield from _store(state, tier, mapping, ttl, value_type, quiet=False)


def delete(state: CacheState, key: Any) -> Plan[bool]:
    """``delete``: remove the key from every layer; True if any had it. If a layer fails,
    the others are still cleared, then the first error is raised."""
    removed = False
    failure: LayerError | None = None
    for tier in state.tiers:
        try:
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
    for tier in state.tiers:
        try:
            if tier.has("delete_many"):
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
    one under its key prefix); the others are cleared before an error is raised."""
    failure: LayerError | None = None
    for tier in state.tiers:
        if not tier.has("clear"):
            continue
        try:
            yield Call(tier, "clear", ())
        except LayerError as error:
            state.note_write_error(tier, "(clear)", error)
            failure = failure or error
    if failure is not None:
        raise failure


def _store(
    state: CacheState,
    tier: Tier,
    mapping: Mapping[Any, Any],
    ttl: TTL | None,
    value_type: Any,
    quiet: bool,
) -> Plan[None]:
    """Write ``mapping`` into one tier: ``set`` for one item, ``set_many`` for more. With
    ``quiet`` (a promotion, a loaded value), a failure is counted and logged instead of
    raised, and a value the layer cannot encode is simply not cached there."""
    seconds = tier.policy.ttl_for(ttl, state.rng)
    if len(mapping) == 1:
        ((key, value),) = mapping.items()
        call = Call(tier, "set", _typed(tier, (key, value, seconds), value_type))
    else:
        call = Call(tier, "set_many", _typed(tier, (mapping, seconds), value_type))
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


# ---------------------------------------------------------------------------- loading
def load(
    state: CacheState,
    key: Any,
    loader: Callable[[Any], Any],
    ttl: TTL | None,
    start: int = 0,
    value_type: Any = None,
    condition: Callable[[Any], bool] | None = None,
) -> Plan[Any]:
    """``get_or_load`` after a miss in the layers above ``start``: the whole miss, lookups
    below included, runs once for concurrent callers of the key. A loaded value is cached
    unless ``condition(value)`` is false."""
    optional_ttl_seconds(ttl)
    check_loader(loader)
    through = _load_through(state, key, loader, ttl, start, value_type, condition)
    return (yield Flight(key, through))


def _load_through(
    state: CacheState,
    key: Any,
    loader: Callable[[Any], Any],
    ttl: TTL | None,
    start: int,
    value_type: Any,
    condition: Callable[[Any], bool] | None,
) -> Plan[Any]:
    value = yield from read(state, key, MISSING, start, value_type)
    if value is not MISSING:
        return value
    value = yield Load(loader, key)
    if condition is None or condition(value):
        yield from _write_loaded(state, {key: value}, ttl, value_type)
    return value


def load_many(
    state: CacheState,
    keys: Iterable[Any],
    bulk_loader: Callable[[list[Any]], Any],
    ttl: TTL | None,
    start: int = 0,
    value_type: Any = None,
) -> Plan[dict[Any, Any]]:
    """``get_or_load_many``: like ``read_many``; the keys every layer missed go to
    ``bulk_loader(missing)`` in one call, which returns a mapping (keys it leaves out stay
    missing, keys it was not asked for are ignored). From depth ``start`` down, each key is
    looked up and loaded once for all concurrent callers, whatever batches they came in; the
    in-process layers above ``start`` need no coalescing."""
    optional_ttl_seconds(ttl)
    check_loader(bulk_loader)
    wanted = unique(keys)
    found: dict[Any, Any] = {}
    if start:
        found = dict((yield from read_many(state, wanted, 0, value_type, stop=start)))
        if len(found) == len(wanted):
            return found
    missing = [key for key in wanted if key not in found]

    def plan_for(led: list[Any]) -> Plan[dict[Any, Any]]:
        return _load_many_through(state, led, bulk_loader, ttl, start, value_type)

    found.update((yield FlightMany(missing, plan_for)))
    return {key: found[key] for key in wanted if key in found}


def _load_many_through(
    state: CacheState,
    keys: list[Any],
    bulk_loader: Callable[[list[Any]], Any],
    ttl: TTL | None,
    start: int,
    value_type: Any,
) -> Plan[dict[Any, Any]]:
    found = yield from read_many(state, keys, start, value_type)
    missing = [key for key in keys if key not in found]
    if not missing:
        return found
    found = dict(found)
    loaded = loaded_for(missing, (yield Load(bulk_loader, missing)), bulk_loader)
    if loaded:
        yield from _write_loaded(state, loaded, ttl, value_type)
    found.update(loaded)
    return found


def _write_loaded(
    state: CacheState, mapping: Mapping[Any, Any], ttl: TTL | None, value_type: Any
) -> Plan[None]:
    # A loaded value is returned even if caching it fails: count and log, do not raise. A
    # value the shared layer cannot encode still goes into the in-process layer.
    for tier in reversed(state.tiers):
        yield from _store(state, tier, mapping, ttl, value_type, quiet=True)


def check_loader(loader: Any) -> None:
    if not callable(loader):
        raise TypeError(f"the loader must be a function of the key(s), got {loader!r}")


def loaded_for(missing: list[Any], result: Any, loader: Callable[..., Any]) -> dict[Any, Any]:
    """What a bulk loader returned for the ``missing`` keys."""
    if not isinstance(result, Mapping):
        raise TypeError(
            f"bulk loader {getattr(loader, '__qualname__', loader)!r} must return a mapping of "
            f"key -> value, got {type(result).__name__}"
        )
    return {key: result[key] for key in missing if key in result}
