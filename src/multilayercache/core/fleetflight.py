"""One load per key across a fleet (``LoadOptions(fleet_single_flight=True)``), written once
for both managers: which instance loads a cold key, and how the others wait for its value.

Within a process, the key's flight already makes one caller the leader (``Flight``); only
that caller runs this plan, so a process asks for a key's lease once however many of its
threads or tasks want the key. Then, across processes:

1. It watches the key (``Watch``): from now on a backplane message naming the key wakes it.
   Watching comes first, so a message sent while it asks for the lease is not missed.
2. It asks for the key's lease in the shared layer (``take_lease``: ``SET NX PX`` in one
   script, which answers with the lease's time left when another instance holds it).
3. Taken: it looks below once more (another instance may have written the value between
   its read and its lease), loads, writes the value through the layers, releases the lease
   (compare and delete) and then announces the key on the backplane. Released before it
   is announced: a waiter that found the lease held is watching by then, so the message
   reaches it.
4. Held by another: it waits (``Wait``) for a message naming the key, or until that lease
   would end (its time left, plus ``EXPIRY_MARGIN``), then reads the shared layer. A value
   there answers; none (the loader died, failed or wrote nothing) and it asks for the lease
   again (2). So an instance killed mid-load holds the key for at most its lease, and the
   waiter that takes the lease over loads it.

Nothing polls: a waiter makes one lease request and one read per message or lease that
ends. Its own timeouts still bound it: it stops waiting at ``hard_timeout`` (at
``soft_timeout`` with a stale value) and answers as a caller that stopped waiting for a
load in its own process does (``TimedOut``).

Failures: a lease that cannot be asked for (the shared layer down, its breaker open, over
its rate limit) is not waited for: the instance loads by itself (fail open; counted as
``lease_errors``). A loader that raises releases the lease at once and announces the key:
the callers in the loader's process get the error (as within one process), and a waiter
elsewhere takes the lease and tries for itself, one instance at a time, since the failure
may be the loader's host's own (its network, its timeout). A value not written to the
shared layer (a ``condition`` that refused it, a value it cannot encode) is loaded again
the same way, one instance at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .log import ThrottledWarning
from .plans import Announce, Call, Plan, TimedOut, Unwatch, Wait, Watch
from .state import CacheState
from .tiers import Tier

EXPIRY_MARGIN = 0.05
"""Seconds a waiter waits past the end of another instance's lease before it looks again:
the server expires keys within a millisecond or so of their deadline."""


_warn = ThrottledWarning()  # a shared layer that keeps failing must not flood the log


# ---------------------------------------------------------------------------- decisions
def fleet_name(key: Any) -> str | None:
    """The name a key has across the fleet (what the shared layer stores it under, after
    its prefix); ``None`` for a key no shared layer stores (loaded by each instance)."""
    if type(key) is str:
        return key
    try:
        text = getattr(key, "text", None)  # a @cached call's key
    except TypeError:  # arguments without a text form
        return None
    return text if isinstance(text, str) else None


def lease_tier(state: CacheState) -> Tier | None:
    """The layer that holds the fleet's leases: the first shared one, if it can."""
    for tier in state.tiers:
        if not tier.in_process:
            return tier if tier.has("take_lease") else None
    return None


def check_fleet(state: CacheState, backplane: Any) -> None:
    """Refuse a fleet single flight the cache cannot run (``ValueError``, naming why)."""
    if backplane is None:
        raise ValueError(
            "fleet_single_flight needs the cache's backplane (backplane=True, a URL or a "
            "Backplane): the instances that wait for a load are woken by its messages"
        )
    tier = lease_tier(state)
    if tier is None:
        raise ValueError(
            "fleet_single_flight needs a shared layer that holds leases (a RedisLayer or "
            "an AsyncRedisLayer)"
        )
    if tier.queue is not None:
        raise ValueError(
            f"fleet_single_flight needs {tier.name} written through, not write-behind: the "
            "other instances read the loaded value from it as soon as they are told"
        )


def new_token() -> str:
    """A lease holder's id: only its holder releases a lease."""
    return os.urandom(12).hex()


def lead_or_wait(
    state: CacheState,
    key: Any,
    name: str,
    lease_seconds: float,
    wait_limit: tuple[float, bool] | None,
    stale: Any,
    read_below: Callable[[], Plan[tuple[bool, Any]]],
    load_here: Callable[[], Plan[Any]],
) -> Plan[Any]:
    """The value of ``key``: loaded here (``load_here``) under the key's lease, or read
    from the shared layer (``read_below``: ``(True, value)``, or ``(False, None)`` when it
    holds no value that may answer) once the instance holding the lease says it is there;
    see the module docstring. ``wait_limit``: ``(seconds, hard)``, how long the caller may
    wait for another instance (``None``: as long as leases last); past it the reply is
    ``TimedOut(stale, hard)``."""
    tier = lease_tier(state)
    assert tier is not None  # (check_fleet)
    token = new_token()
    lease_ms = int(lease_seconds * 1000)
    deadline = None if wait_limit is None else state.clock() + wait_limit[0]
    watcher = yield Watch((name,))
    waited = False
    try:
        while True:
            try:
                left_ms = yield Call(tier, "take_lease", (key, token, lease_ms), True)
            except Exception as error:  # down, breaker open, over its rate limit: load here
                state.count("fleet_lease_errors")
                _warn("fleet lease of %r not taken (%r): loading it here", key, error)
                return (yield from load_here())
            if left_ms == 0:
                state.count("fleet_leases")
                if waited:
                    state.count("fleet_taken_over")
                return (
                    yield from _load_leased(state, tier, key, name, token, read_below, load_here)
                )
            seconds = left_ms / 1000 + EXPIRY_MARGIN
            if deadline is not None:
                seconds = min(seconds, deadline - state.clock())
                if seconds <= 0:
                    assert wait_limit is not None
                    return TimedOut(stale, wait_limit[1])
            state.count("fleet_waits")
            waited = True
            woken = yield Wait(watcher, seconds)
            state.count("fleet_notified" if woken else "fleet_expired")
            answered, value = yield from read_below()
            if answered:
                state.count("fleet_found_elsewhere")
                return value
    finally:
        yield Unwatch(watcher)


def _load_leased(
    state: CacheState,
    tier: Tier,
    key: Any,
    name: str,
    token: str,
    read_below: Callable[[], Plan[tuple[bool, Any]]],
    load_here: Callable[[], Plan[Any]],
) -> Plan[Any]:
    """Holding the key's lease: look below once more, else load; release the lease, then
    announce the key if a load ran (its value, or its failure, which lets a waiter try)."""
    loaded = False
    try:
        answered, value = yield from read_below()
        if answered:
            state.count("fleet_found_elsewhere")
            return value
        loaded = True
        return (yield from load_here())
    finally:
        try:
            yield Call(tier, "release_lease", (key, token))
        except Exception as error:  # it ends by itself: waiters take over at its end
            state.count("fleet_lease_errors")
            _warn("fleet lease of %r not released (%r): it ends by itself", key, error)
        if loaded:
            yield Announce((name,))


def lead_or_wait_many(
    state: CacheState,
    keys: list[Any],
    names: dict[Any, str | None],
    lease_seconds: float,
    wait_limit: tuple[float, bool] | None,
    read_below: Callable[[list[Any]], Plan[dict[Any, Any]]],
    load_here: Callable[[list[Any]], Plan[dict[Any, Any]]],
) -> Plan[tuple[dict[Any, Any], list[Any]]]:
    """``lead_or_wait`` for a batch: ``({key: value}, keys still loading elsewhere when
    ``wait_limit`` passed)``. Each round takes every lease it can, loads those keys here in
    one bulk call (before waiting for any other instance: two instances each holding a key
    the other waits for never wait on each other), then waits for the first message or
    lease end among the rest. A key without a fleet name is loaded here at once."""
    tier = lease_tier(state)
    assert tier is not None  # (check_fleet)
    token = new_token()
    lease_ms = int(lease_seconds * 1000)
    deadline = None if wait_limit is None else state.clock() + wait_limit[0]
    named = tuple(name for name in names.values() if name is not None)
    watcher = yield Watch(named)
    answers: dict[Any, Any] = {}
    waited: set[Any] = set()
    pending = list(keys)
    try:
        while pending:
            leased, here, held = [], [], {}
            for key in pending:  # one script per key: a batch's keys may be on many nodes
                if names[key] is None:
                    here.append(key)
                    continue
                try:
                    left_ms = yield Call(tier, "take_lease", (key, token, lease_ms), True)
                except Exception as error:
                    state.count("fleet_lease_errors")
                    _warn("fleet lease of %r not taken (%r): loading it here", key, error)
                    here.append(key)
                    continue
                if left_ms:
                    held[key] = left_ms
                else:
                    leased.append(key)
            if leased:
                state.count("fleet_leases", len(leased))
                state.count("fleet_taken_over", sum(1 for key in leased if key in waited))
                answers.update((yield from _load_leased_many(
                    state, tier, leased, names, token, here, read_below, load_here
                )))  # fmt: skip
            elif here:
                answers.update((yield from load_here(here)))
            if not held:
                break
            seconds = min(held.values()) / 1000 + EXPIRY_MARGIN
            if deadline is not None:
                seconds = min(seconds, deadline - state.clock())
                if seconds <= 0:
                    return answers, list(held)
            state.count("fleet_waits")
            waited.update(held)
            woken = yield Wait(watcher, seconds)
            state.count("fleet_notified" if woken else "fleet_expired")
            found = yield from read_below(list(held))
            state.count("fleet_found_elsewhere", len(found))
            answers.update(found)
            pending = [key for key in held if key not in found]
    finally:
        yield Unwatch(watcher)
    return answers, []


def _load_leased_many(
    state: CacheState,
    tier: Tier,
    leased: list[Any],
    names: dict[Any, str | None],
    token: str,
    here: list[Any],
    read_below: Callable[[list[Any]], Plan[dict[Any, Any]]],
    load_here: Callable[[list[Any]], Plan[dict[Any, Any]]],
) -> Plan[dict[Any, Any]]:
    """``_load_leased`` for the ``leased`` keys of a batch, loaded in one bulk call with
    ``here`` (keys loaded without a lease)."""
    to_load: list[Any] = []
    try:
        found = yield from read_below(leased)
        state.count("fleet_found_elsewhere", len(found))
        to_load = [key for key in leased if key not in found]
        if to_load or here:
            found.update((yield from load_here(to_load + here)))
        return found
    finally:
        for key in leased:
            try:
                yield Call(tier, "release_lease", (key, token))
            except Exception as error:
                state.count("fleet_lease_errors")
                _warn("fleet lease of %r not released (%r): it ends by itself", key, error)
        loaded = tuple(names[key] for key in to_load)
        if loaded:
            # Only keys with a shared name take a lease: none of these names is None.
            yield Announce(loaded)  # type: ignore[arg-type]


__all__ = [
    "EXPIRY_MARGIN", "check_fleet", "fleet_name", "lead_or_wait", "lead_or_wait_many", "lease_tier",
    "new_token",
]  # fmt: skip
