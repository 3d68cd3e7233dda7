"""How ``get_or_load`` and ``get_or_load_many`` answer, written once for both managers (the
steps are those of ``plans/``).

A read that reaches the plans (the L1 fast path did not hold a settled fresh value) looks for
the key layer by layer (``find_entry``) and then:

* **fresh**: answers; a value found below is copied up.
* **due** (past its refresh point, or picked by XFetch): answers, and queues one
  background refresh: a hot key never misses.
* **stale**, with stale-while-revalidate: answers at once, and queues one background refresh.
* **stale** without it, or **missing**: loads, once for all concurrent callers of the key
  (``Flight``), the lookups below L1 included. If the loader fails or a timeout passes and a
  stale value is held, the stale value answers (fail-safe) and the key is not reloaded for
  ``fail_safe_throttle`` seconds. Without a stale value, callers within those seconds get
  the failure again instead of a loader call (``core/failures.py``), so a failing backend is
  not hammered either way. The caller that leads the flight runs the loader itself; the
  others stop waiting at their soft timeout (with a stale value: theirs, or one the leader
  found and offered) or their hard timeout, and the load still updates the cache when it
  ends.

A background refresh first asks the layers below the one that answered (another process may
have refreshed the shared layer), then the loader; if that fails, the stale value keeps
being served and the key is throttled. Refreshes wait in a ``RefreshQueue``, stale before
early and hot (by the L1's frequency sketch) before cold; batches of keys loaded with one
bulk loader are refreshed with one bulk call.

Each key's generation (``core/generations.py``) is noted before its lookups below L1 and
its load: values found below are copied up, and loaded values written, only if no write or
delete of the key through this manager came in between.

A reload knows the entry it replaces (``held``): a loader made by ``with_context`` is given
its value and may answer that it is unchanged, and adaptive TTLs move by whether it changed;
an unchanged entry is extended rather than rewritten (``plans/reloads.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from .adaptive import TtlRule, check_load_ttl, is_rule
from .errors import LayerError, LoadTimeoutError
from .events import Refresh as RefreshEvent
from .failures import replay, same_load
from .fleetflight import fleet_name, lead_or_wait, lead_or_wait_many
from .freshness import Entry, Freshness, xfetch_due
from .keys import unique
from .loadcontext import ContextualLoader, LoadContext, TaggedLoader
from .missing import MISSING
from .options import LoadOptions
from .plans import (
    Call,
    Flight,
    FlightMany,
    Load,
    Offer,
    Plan,
    Refresh,
    TimedOut,
    find_entries,
    find_entry,
    promote,
    promote_found,
    write_loaded,
    write_loaded_at_once,
)
from .ratelimit import LoadGateTimeout
from .refresh import RefreshJob
from .state import CacheState
from .tags import check_tags
from .ttl import TTL

Condition = Callable[[Any], bool] | None


# ---------------------------------------------------------------------------- one key
def may_load_at_once(state: CacheState) -> bool:
    """Whether a miss of ``get_or_load`` (one that asks for no timeouts, tags or fleet
    single flight of its own) may ever skip the plan: the cache is one in-process layer
    (``state.alone``: nothing below to look up) and nothing makes a load wait (timeouts, a
    load gate, a rate limit, one load across the fleet). Each load then asks
    ``loads_at_once``."""
    options = state.load_options
    return (
        state.alone is not None
        and options.soft_timeout is None
        and options.hard_timeout is None
        and options.max_concurrent_loads is None
        and state.load_rate is None
        and not options.fleet_single_flight
    )


def loads_at_once(state: CacheState, loader: Any, ttl: Any) -> bool:
    """Whether this load (in a cache that ``may_load_at_once``) needs no decision of the
    plan's: no adaptive TTL or TTL rule, a plain loader (not made by ``with_context`` or
    given tags), no key held off after a failure. Then it is: the loader called in the
    key's flight, and ``plans.write_loaded_at_once`` of its value, counted (and a failure
    held off) as by the plan."""
    return (
        not state.adapts
        and not state.throttle.failed_at
        and callable(loader)
        and type(loader) is not TaggedLoader
        and type(loader) is not ContextualLoader
        and not is_rule(ttl)
    )


def loaded_alone_failed(state: CacheState, key: Any, error: Exception, loader: Any) -> None:
    """A plan-free load (``loads_at_once``) raised ``error``: held off as the plan's load
    holds a failure off (fail-safe), before the caller gets it."""
    if state.load_options.fail_safe:
        state.load_failed(key, error, loader)


def keep_loaded_alone(
    state: CacheState, key: Any, value: Any, seconds: float, ttl: Any, condition: Condition
) -> None:
    """A plan-free load (``loads_at_once``) returned ``value`` after ``seconds``: the key is
    no longer held off, and the value is written (``plans.write_loaded_at_once``) if
    ``condition`` (a ``@cached`` function's) allows."""
    if state.throttle.failed_at:  # (a key whose load failed lately)
        state.load_succeeded(key)
    if condition is None or condition(value):
        write_loaded_at_once(state, key, value, ttl, seconds)


def load(
    state: CacheState,
    key: Any,
    loader: Callable[[Any], Any],
    ttl: TTL | TtlRule | None,
    value_type: Any = None,
    condition: Condition = None,
    options: LoadOptions | None = None,
    start: int = 0,
) -> Plan[Any]:
    """``get_or_load`` once the L1 fast path did not answer: from depth ``start`` (0 when
    L1 holds the key due or stale, 1 after an L1 miss); see the module docstring. The
    in-process layers are read at once; everything below them (lookups included) runs once
    for all concurrent callers of the key."""
    check_load_ttl(ttl)
    check_loader(loader)
    options = options or state.load_options
    local = state.local_depth
    stale: Entry | None = None
    stale_at = 0
    if start < local:
        seen: dict[Any, int] = {}
        entry, depth = yield from find_entry(state, key, value_type, start, True, local, seen=seen)
        if entry is not None:
            answered, value = yield from _serve(
                state, key, entry, depth, loader, ttl, value_type, condition, options, seen
            )
            if answered:
                return value
            stale, stale_at = entry, depth
    through = _load_now(
        state, key, loader, ttl, value_type, condition, options, stale, local, stale_at
    )
    reply = yield Flight(key, through, options.soft_timeout, options.hard_timeout, stale)
    if type(reply) is TimedOut:
        return _timed_out(state, key, reply, options)
    return reply


def _timed_out(state: CacheState, key: Any, reply: TimedOut, options: LoadOptions) -> Any:
    """A caller that stopped waiting for another caller's load of ``key``: the stale value,
    or ``LoadTimeoutError``."""
    state.count("hard_timeouts" if reply.hard else "soft_timeouts")
    if reply.stale is not None:
        state.count("stale_served")
        return reply.stale.value
    raise LoadTimeoutError(
        f"loading {key!r} took longer than the hard timeout of {options.hard_timeout} s; "
        "it goes on, and will be cached when it ends"
    )


def _serve(
    state: CacheState,
    key: Any,
    entry: Entry,
    depth: int,
    loader: Callable[[Any], Any],
    ttl: TTL | TtlRule | None,
    value_type: Any,
    condition: Condition,
    options: LoadOptions,
    seen: dict[Any, int],
) -> Plan[tuple[bool, Any]]:
    """Answer with a held entry if it may: fresh; due (and queue a refresh); stale with
    stale-while-revalidate (and queue a refresh). ``(False, None)``: it may not (stale,
    and the caller must wait for a load). ``seen``: the key's generation before the read
    that found the entry (see ``promote``)."""
    freshness = _freshness(state, entry, depth)
    stale = freshness is Freshness.STALE
    if stale and not options.stale_while_revalidate:
        return False, None
    if depth and not stale:
        yield from promote(state, {key: entry}, depth, value_type, seen)
    if freshness is not Freshness.FRESH:
        if stale:
            state.count("stale_served")

        def refresh_one(keys: list[Any]) -> Plan[Any]:
            return _refresh(state, keys[0], loader, ttl, value_type, condition, depth, entry)

        yield from _ask_refresh(state, key, RefreshJob(refresh_one), stale)
    return True, entry.value


def _load_now(
    state: CacheState,
    key: Any,
    loader: Callable[[Any], Any],
    ttl: TTL | TtlRule | None,
    value_type: Any,
    condition: Condition,
    options: LoadOptions,
    stale: Entry | None,
    start: int,
    stale_at: int = 0,
) -> Plan[Any]:
    """Inside the key's flight: the layers below the in-process ones, then the loader (with
    ``fleet_single_flight``, under the key's lease or not at all: ``fleetflight.py``).
    ``stale``: the entry an in-process layer holds (at depth ``stale_at``), if any."""
    swr = options.stale_while_revalidate
    unreachable: set[int] = set()  # not written back to: the caller waited on them once
    seen = _noted(state, [key])  # before the lookups below and the load
    entry, depth = yield from find_entry(
        state, key, value_type, start, swr, None, unreachable, seen
    )
    if entry is not None:
        answered, value = yield from _serve(
            state, key, entry, depth, loader, ttl, value_type, condition, options, seen
        )
        if answered:
            return value
        stale, stale_at = entry, depth
    if stale is not None:
        yield Offer(key, stale)  # for the callers waiting for this load with a soft timeout
    if options.fail_safe:
        held_off = state.held_off(key)
        if held_off is not None:  # it failed a moment ago: do not hammer the backend
            failure, retry_in = held_off
            if stale is not None:
                state.count("throttled_loads")
                state.count("stale_served")
                return stale.value
            if failure is not None and same_load(failure.loader, loader):
                state.count("throttled_loads")
                raise replay(failure, key, retry_in) from failure.error

    name = fleet_name(key) if options.fleet_single_flight else None
    if name is None:
        return (
            yield from _load_one(
                state,
                key,
                loader,
                ttl,
                value_type,
                condition,
                options,
                stale,
                stale_at,
                seen,
                unreachable,
            )  # fmt: skip
        )

    def load_here() -> Plan[Any]:
        return _load_one(
            state, key, loader, ttl, value_type, condition, options, stale, stale_at, seen,
            unreachable,
        )  # fmt: skip

    def read_below() -> Plan[tuple[bool, Any]]:
        """What the shared layers hold now (another instance may have loaded it)."""
        seen_now = _noted(state, [key])  # after the backplane bumped it: copied up
        entry, depth = yield from find_entry(
            state, key, value_type, start, swr, None, unreachable, seen_now
        )
        if entry is None:
            return False, None
        return (
            yield from _serve(
                state, key, entry, depth, loader, ttl, value_type, condition, options, seen_now
            )
        )

    wait_limit = _wait_limit(options, stale)
    return (
        yield from lead_or_wait(
            state, key, name, options.fleet_lease, wait_limit, stale, read_below, load_here
        )
    )


def _wait_limit(options: LoadOptions, stale: Entry | None) -> tuple[float, bool] | None:
    """How long a caller waits for another instance's load: ``(seconds, hard)``, its soft
    timeout with a stale value to answer with, else its hard timeout (``None``: none)."""
    if stale is not None and options.soft_timeout is not None:
        return options.soft_timeout, False
    if options.hard_timeout is not None:
        return options.hard_timeout, True
    return None


def _load_one(
    state: CacheState,
    key: Any,
    loader: Callable[[Any], Any],
    ttl: TTL | TtlRule | None,
    value_type: Any,
    condition: Condition,
    options: LoadOptions,
    stale: Entry | None,
    stale_at: int,
    seen: dict[Any, int],
    unreachable: set[int],
) -> Plan[Any]:
    """Call the loader and write its value (or serve ``stale`` when it fails, fail-safe)."""
    argument = _argument(loader, key, stale)
    try:
        reply = yield Load(loader, argument, options.hard_timeout)
    except Exception as error:
        if options.fail_safe and (stale is not None or not isinstance(error, LoadGateTimeout)):
            state.load_failed(key, error, loader)  # (no load slot free: not the key's fault)
        if stale is None or not options.fail_safe:
            raise
        state.note_load_failure(key, error, "served stale")
        state.count("fail_safe")
        state.count("stale_served")
        return stale.value
    state.load_succeeded(key)
    if condition is None or condition(reply.value):
        held = None if stale is None else (stale, stale_at)
        yield from _write_one(state, key, reply, argument, held, ttl, value_type, seen, unreachable)
    return reply.value


def _write_one(
    state: CacheState,
    key: Any,
    reply: Any,
    argument: Any,
    held: tuple[Entry, int] | None,
    ttl: TTL | TtlRule | None,
    value_type: Any,
    seen: dict[Any, int],
    unreachable: set[int] | None = None,
) -> Plan[None]:
    """Write the value a load of ``key`` returned (``reply``): with the TTL and verdict its
    ``LoadContext`` (``argument``) was given, and what it replaces (``held``, when that
    matters: a verdict, or an adaptive TTL)."""
    kept: tuple[Any, ...] = ()
    tags: tuple[str, ...] = ()
    if type(argument) is LoadContext:
        if argument.ttl is not None:
            ttl = argument.ttl
        if argument.said_unchanged and reply.value is argument.current:
            kept = (key,)
        tags = check_tags(argument.tags)
    replaced = {key: held} if held is not None and (kept or state.adapts) else None
    loaded = {key: reply.value}
    yield from write_loaded(
        state, loaded, ttl, value_type, seen, reply.seconds, unreachable or (), replaced, kept, tags
    )


def _argument(loader: Callable[[Any], Any], key: Any, held: Entry | None) -> Any:
    """What ``loader`` is called with: the key, or for a loader made by ``with_context``
    (or given ``tags=``) a ``LoadContext`` with the value held (``held``: due or stale)
    and the call's tags."""
    tags: tuple[str, ...] = ()
    if type(loader) is TaggedLoader:
        tags = loader.tags
    elif type(loader) is not ContextualLoader:
        return key
    context = LoadContext(key) if held is None else LoadContext(key, held.value, True)
    context.tags = tags
    return context


def _noted(state: CacheState, keys: list[Any]) -> dict[Any, int]:
    """The keys' generations now (empty with a single layer, which tracks none)."""
    seen: dict[Any, int] = {}
    if state.generations is not None:
        state.generations.note(keys, seen)
    return seen


def _refresh(
    state: CacheState,
    key: Any,
    loader: Callable[[Any], Any],
    ttl: TTL | TtlRule | None,
    value_type: Any,
    condition: Condition,
    depth: int,
    served: Entry | None = None,
) -> Plan[Any]:
    """A background refresh of a key that the layer at ``depth`` served due or stale
    (``served``). It runs in the key's flight, and answers the callers that join it: with
    the value, or ``MISSING`` if it failed (they then load for themselves, throttled as any
    load)."""
    state.count("refreshes")
    seen = _noted(state, [key])
    entry, found_at = yield from find_entry(state, key, value_type, depth + 1, seen=seen)
    if entry is not None and _freshness(state, entry, found_at) is Freshness.FRESH:
        yield from promote(state, {key: entry}, found_at, value_type, seen)  # refreshed elsewhere
        return entry.value
    held = (entry, found_at) if entry is not None else None
    if held is None and served is not None:
        held = (served, depth)
    argument = _argument(loader, key, None if held is None else held[0])
    try:
        reply = yield Load(loader, argument)
    except Exception as error:
        state.load_failed(key, error, loader)
        state.count("refresh_failures")
        state.note_load_failure(key, error, "refresh failed, stale value kept")
        state.events.emit(RefreshEvent(key, _trigger(served), False, _describe(error)))
        return MISSING
    state.load_succeeded(key)
    state.events.emit(RefreshEvent(key, _trigger(served), True))
    if condition is None or condition(reply.value):
        yield from _write_one(state, key, reply, argument, held, ttl, value_type, seen)
    return reply.value


def _trigger(served: Entry | None) -> Literal["early", "stale", "background"]:
    """Why a key is refreshed: its value served ``stale``, or due ``early``."""
    if served is None:
        return "background"
    return "stale" if served.fresh_for <= 0 else "early"


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _ask_refresh(state: CacheState, key: Any, job: RefreshJob, stale: bool) -> Plan[None]:
    """Queue a background refresh, unless the key failed lately (fail-safe throttle)."""
    item = yield from _refresh_item(state, key, stale)
    if item is not None:
        yield Refresh(job, (item,))


def _refresh_item(state: CacheState, key: Any, stale: bool) -> Plan[tuple[Any, bool, int] | None]:
    """What to queue for a refresh of ``key``: ``None`` while it failed lately."""
    if state.held_off(key) is not None:
        return None
    return key, stale, (yield from _frequency(state, key))


def _frequency(state: CacheState, key: Any) -> Plan[int]:
    """The L1's frequency estimate of ``key`` (0 without a frequency sketch)."""
    first = state.tiers[0]
    if not first.has("get_frequency_estimate"):
        return 0
    return int((yield Call(first, "get_frequency_estimate", (key,))))


def _freshness(state: CacheState, entry: Entry, depth: int) -> Freshness:
    """The entry's freshness, with the layer's XFetch early refresh applied."""
    freshness = entry.freshness
    beta = state.tiers[depth].policy.xfetch_beta
    if freshness is Freshness.FRESH and beta is not None and xfetch_due(entry, beta, state.rng):
        return Freshness.DUE
    return freshness


# ---------------------------------------------------------------------------- batches
def load_many(
    state: CacheState,
    keys: Iterable[Any],
    bulk_loader: Callable[[list[Any]], Any],
    ttl: TTL | TtlRule | None,
    start: int = 0,
    value_type: Any = None,
    options: LoadOptions | None = None,
) -> Plan[dict[Any, Any]]:
    """``get_or_load_many``: each key as ``load`` answers it; the keys no layer holds go to
    ``bulk_loader(missing)`` in one call, which returns a mapping (keys it leaves out stay
    missing, keys it was not asked for are ignored). The in-process layers above ``start``
    are read at once; from ``start`` down, each key is looked up and loaded once for all
    concurrent callers, whatever batches they came in. ``ttl`` may be a function of each
    value."""
    check_load_ttl(ttl)
    check_loader(bulk_loader)
    if type(bulk_loader) is ContextualLoader:
        raise TypeError(
            "with_context makes single-key loaders (get_or_load); a bulk loader is called "
            "with the missing keys alone"
        )
    options = options or state.load_options
    wanted = unique(keys)
    seen: dict[Any, int] = {}
    found = yield from find_entries(state, wanted, value_type, 0, start, True, seen=seen)
    answers, stale = yield from _answer(state, found, bulk_loader, ttl, value_type, options, seen)
    missing = [key for key in wanted if key not in answers]
    if missing:

        def plan_for(led: list[Any]) -> Plan[dict[Any, Any]]:
            return _load_many_now(state, led, bulk_loader, ttl, start, value_type, options, stale)

        flown = yield FlightMany(missing, plan_for, options.hard_timeout)
        answers.update(flown)
        late = [key for key, value in flown.items() if type(value) is TimedOut]
        if late:
            answers.update(_timed_out_many(state, late, flown, stale, options))
    return {key: answers[key] for key in wanted if key in answers}


def _timed_out_many(
    state: CacheState,
    late: list[Any],
    flown: dict[Any, Any],
    stale: dict[Any, Entry],
    options: LoadOptions,
) -> dict[Any, Any]:
    """The stale values of the ``late`` keys of a batch (those whose loads by other callers
    passed the hard timeout), or ``LoadTimeoutError`` if one has none."""
    state.count("hard_timeouts", len(late))
    held = {}
    for key in late:
        entry = flown[key].stale if flown[key].stale is not None else stale.get(key)
        if entry is None:
            raise LoadTimeoutError(
                f"loading {len(late)} of the keys ({key!r}, ...) took longer than the hard "
                f"timeout of {options.hard_timeout} s; they go on, and will be cached when "
                "they end"
            )
        held[key] = entry.value
    state.count("stale_served", len(held))
    return held


def _answer(
    state: CacheState,
    found: dict[Any, tuple[Entry, int]],
    bulk_loader: Callable[[list[Any]], Any],
    ttl: TTL | TtlRule | None,
    value_type: Any,
    options: LoadOptions,
    seen: dict[Any, int],
) -> Plan[tuple[dict[Any, Any], dict[Any, Entry]]]:
    """The values that answer now (fresh, due, and stale with stale-while-revalidate; due
    and stale ones queued for a refresh by the bulk loader), and the stale entries kept to
    fall back on. ``seen``: the keys' generations before the reads that found them."""
    answers: dict[Any, Any] = {}
    stale: dict[Any, Entry] = {}
    refreshes = []
    for key, (entry, depth) in found.items():
        freshness = _freshness(state, entry, depth)
        if freshness is Freshness.STALE and not options.stale_while_revalidate:
            stale[key] = entry
            continue
        answers[key] = entry.value
        if freshness is not Freshness.FRESH:
            if freshness is Freshness.STALE:
                state.count("stale_served")
            item = yield from _refresh_item(state, key, freshness is Freshness.STALE)
            if item is not None:
                refreshes.append(item)
    if refreshes:
        job = RefreshJob(_refresh_many_for(state, bulk_loader, ttl, value_type), bulk_loader)
        yield Refresh(job, tuple(refreshes))
    yield from promote_found(state, found, value_type, seen)
    return answers, stale


def _load_many_now(
    state: CacheState,
    keys: list[Any],
    bulk_loader: Callable[[list[Any]], Any],
    ttl: TTL | TtlRule | None,
    start: int,
    value_type: Any,
    options: LoadOptions,
    stale: dict[Any, Entry],
) -> Plan[dict[Any, Any]]:
    swr = options.stale_while_revalidate
    unreachable: set[int] = set()  # not written back to: the callers waited on them once
    seen = _noted(state, keys)  # before the lookups below and the load
    found = yield from find_entries(state, keys, value_type, start, None, swr, unreachable, seen)
    answers, more_stale = yield from _answer(
        state, found, bulk_loader, ttl, value_type, options, seen
    )
    stale = {**stale, **more_stale}
    missing = [key for key in keys if key not in answers]
    if not missing:
        return answers
    replayed = None  # a key held off without a stale value: its failure, raised at the end
    if options.fail_safe:
        missing, held_off = _held_off(state, missing, bulk_loader)
        for key, (failure, retry_in) in held_off.items():
            state.count("throttled_loads")
            if key in stale:
                answers[key] = stale[key].value
                state.count("stale_served")
            elif replayed is None:
                replayed = (key, failure, retry_in)
    loaded: dict[Any, Any] = {}
    if missing:
        if options.fleet_single_flight:
            loaded, served_stale = yield from _fleet_load_many(
                state, missing, bulk_loader, ttl, start, value_type, options, stale, found,
                seen, unreachable,
            )  # fmt: skip
        else:
            loaded, served_stale = yield from _bulk_load(
                state, missing, bulk_loader, ttl, value_type, options, stale, found, seen,
                unreachable,
            )  # fmt: skip
        if served_stale:  # the load failed: the stale values answer, fail-safe
            return {**answers, **loaded}
    if replayed is not None:  # the others are loaded and cached: a retry finds them
        key, failure, retry_in = replayed
        raise replay(failure, key, retry_in) from failure.error
    return {**answers, **loaded}


def _bulk_load(
    state: CacheState,
    missing: list[Any],
    bulk_loader: Callable[[list[Any]], Any],
    ttl: TTL | TtlRule | None,
    value_type: Any,
    options: LoadOptions,
    stale: dict[Any, Entry],
    found: dict[Any, tuple[Entry, int]],
    seen: dict[Any, int],
    unreachable: set[int],
) -> Plan[tuple[dict[Any, Any], bool]]:
    """Call the bulk loader for ``missing`` and write what it returned: ``(values,
    False)``; if it fails and ``stale`` holds some of the keys, ``(their stale values,
    True)`` (fail-safe), else its error."""
    for key in missing:
        if key in stale:  # for the callers waiting for these keys with a soft timeout
            yield Offer(key, stale[key])
    try:
        reply = yield Load(bulk_loader, missing, options.hard_timeout)
        loaded = loaded_for(missing, reply.value, bulk_loader)
    except Exception as error:
        if options.fail_safe and not isinstance(error, LoadGateTimeout):
            for key in missing:
                state.load_failed(key, error, bulk_loader)
        held = {key: stale[key].value for key in missing if key in stale}
        if not held or not options.fail_safe:
            raise
        state.note_load_failure(missing, error, "served stale")
        state.count("fail_safe")
        state.count("stale_served", len(held))
        return held, True
    for key in loaded:
        state.load_succeeded(key)
    if loaded:
        seconds = reply.seconds / len(missing)
        replaced: dict[Any, tuple[Entry, int]] | None = None
        if state.adapts:  # what each key replaces: below, else in-process (depth 0)
            replaced = {key: found.get(key) or (stale[key], 0) for key in loaded if key in stale}
        yield from write_loaded(
            state, loaded, ttl, value_type, seen, seconds, unreachable, replaced,
            tags=_tags_of(bulk_loader),
        )  # fmt: skip
    return loaded, False


def _fleet_load_many(
    state: CacheState,
    missing: list[Any],
    bulk_loader: Callable[[list[Any]], Any],
    ttl: TTL | TtlRule | None,
    start: int,
    value_type: Any,
    options: LoadOptions,
    stale: dict[Any, Entry],
    found: dict[Any, tuple[Entry, int]],
    seen: dict[Any, int],
    unreachable: set[int],
) -> Plan[tuple[dict[Any, Any], bool]]:
    """``_bulk_load`` with ``fleet_single_flight``: the keys whose leases this instance
    takes are loaded here in one bulk call, the others are waited for (see
    ``fleetflight.lead_or_wait_many``); a key still loading elsewhere at the hard timeout
    answers ``TimedOut`` (its stale value, or ``LoadTimeoutError``, see ``load_many``)."""
    swr = options.stale_while_revalidate
    served_stale = False

    def read_below(keys: list[Any]) -> Plan[dict[Any, Any]]:
        seen_now = _noted(state, keys)  # after the backplane bumped them: copied up
        now = yield from find_entries(
            state, keys, value_type, start, None, swr, unreachable, seen_now
        )
        answered, _ = yield from _answer(
            state, now, bulk_loader, ttl, value_type, options, seen_now
        )
        return answered

    def load_here(keys: list[Any]) -> Plan[dict[Any, Any]]:
        nonlocal served_stale
        values, failed = yield from _bulk_load(
            state, keys, bulk_loader, ttl, value_type, options, stale, found, seen, unreachable
        )
        served_stale = served_stale or failed
        return values

    names = {key: fleet_name(key) for key in missing}
    wait_limit = None if options.hard_timeout is None else (options.hard_timeout, True)
    answers, late = yield from lead_or_wait_many(
        state, missing, names, options.fleet_lease, wait_limit, read_below, load_here
    )
    for key in late:
        answers[key] = TimedOut(stale.get(key), True)
    return answers, served_stale


def _held_off(
    state: CacheState, keys: list[Any], bulk_loader: Callable[[list[Any]], Any]
) -> tuple[list[Any], dict[Any, Any]]:
    """``keys`` split into those to load now and those whose load by this bulk loader
    failed less than ``fail_safe_throttle`` ago (``{key: (failure, seconds left)}``)."""
    to_load: list[Any] = []
    held_off: dict[Any, Any] = {}
    for key in keys:
        held = state.held_off(key)
        if held is None or held[0] is None or not same_load(held[0].loader, bulk_loader):
            to_load.append(key)
        else:
            held_off[key] = held
    return to_load, held_off


def _refresh_many_for(
    state: CacheState,
    bulk_loader: Callable[[list[Any]], Any],
    ttl: TTL | TtlRule | None,
    value_type: Any,
) -> Callable[[list[Any]], Plan[dict[Any, Any]]]:
    def refresh(keys: list[Any]) -> Plan[dict[Any, Any]]:
        state.count("refreshes", len(keys))
        seen = _noted(state, keys)
        held: dict[Any, tuple[Entry, int]] | None = None
        if state.adapts:  # the entries replaced, with their steps: from the shared layers
            start = _steps_depth(state)
            held = yield from find_entries(state, keys, value_type, start, seen=seen)
        try:
            reply = yield Load(bulk_loader, keys)
            loaded = loaded_for(keys, reply.value, bulk_loader)
        except Exception as error:
            for key in keys:
                state.load_failed(key, error, bulk_loader)
            state.count("refresh_failures", len(keys))
            state.note_load_failure(keys, error, "refresh failed, stale values kept")
            if state.events.active:
                failed = _describe(error)
                for key in keys:
                    state.events.emit(RefreshEvent(key, "background", False, failed))
            return {}
        for key in loaded:
            state.load_succeeded(key)
            state.events.emit(RefreshEvent(key, "background", True))
        if loaded:
            seconds = reply.seconds / len(keys)
            yield from write_loaded(
                state, loaded, ttl, value_type, seen, seconds, (), held, tags=_tags_of(bulk_loader)
            )
        return loaded  # (for the callers that joined the flights of its keys)

    return refresh


def _steps_depth(state: CacheState) -> int:
    """The first layer that stores adaptive steps with its entries (0 if none does)."""
    for tier in state.tiers:
        if getattr(tier.layer, "stores_steps", False):
            return tier.depth
    return 0


# ---------------------------------------------------------------------------- checks
def _tags_of(bulk_loader: Any) -> tuple[str, ...]:
    """The tags a bulk loader's values are cached with (``get_or_load_many(tags=...)``)."""
    return bulk_loader.tags if type(bulk_loader) is TaggedLoader else ()


def check_loader(loader: Any) -> None:
    if not callable(loader):
        raise TypeError(f"the loader must be a function of the key(s), got {loader!r}")


def loaded_for(missing: list[Any], result: Any, loader: Callable[..., Any]) -> dict[Any, Any]:
    """What a bulk loader returned for the ``missing`` keys."""
    from collections.abc import Mapping

    if not isinstance(result, Mapping):
        raise TypeError(
            f"bulk loader {getattr(loader, '__qualname__', loader)!r} must return a mapping of "
            f"key -> value, got {type(result).__name__}"
        )
    return {key: result[key] for key in missing if key in result}


__all__ = ["LayerError", "check_loader", "load", "load_many", "loaded_for"]
