"""The steps a plan yields (see ``multilayercache.core.plans``): named tuples, the cheapest
objects to build, one per layer call."""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable
from typing import Any, NamedTuple, TypeAlias, TypeVar

from ..refresh import RefreshJob
from ..tiers import Tier
from ..writepolicy import Op

T = TypeVar("T")


# Steps are named tuples: a plan makes one per layer call, and a tuple is the cheapest
# object to build (a frozen dataclass costs ~1 us more per step).
class Call(NamedTuple):
    """Perform ``tier.layer.<method>(*args)``; reply with its result. ``optional``: a
    write the cache may leave out (a cache fill), which a rate-limited layer without a
    token skips rather than waits for (see ``Tier.take_token``)."""

    tier: Tier
    method: str
    args: tuple[Any, ...]
    optional: bool = False


READ_METHODS = frozenset({"get", "get_many", "get_entry", "get_entries"})
"""The calls whose duration a tier records with ``record_latency=True``."""


class Load(NamedTuple):
    """Call the user's ``loader(argument)`` (await it under asyncio), on a load slot if the
    cache limits loads (waiting for one at most ``slot_wait`` seconds, if that is shorter
    than ``LoadOptions.load_wait``); reply ``Loaded``. The loader runs in the caller's
    thread (or the flight's task): nothing stops it but its end."""

    loader: Callable[[Any], Any]
    argument: Any
    slot_wait: float | None = None


class Loaded(NamedTuple):
    value: Any
    seconds: float


class Flight(NamedTuple):
    """Run ``plan`` once for all concurrent callers of ``key``; reply with its result.

    A caller that waits for another's run stops waiting after ``soft_timeout`` if it has a
    stale entry to answer with (``fallback``, its own, or one the run offered), and after
    ``hard_timeout`` in any case: then the reply is ``TimedOut``."""

    key: Hashable
    plan: Plan[Any]
    soft_timeout: float | None = None
    hard_timeout: float | None = None
    fallback: Any = None


class FlightMany(NamedTuple):
    """Coalesce a batch per key: run ``plan_for(led)`` for the keys no other caller is
    loading (``led``), wait for the others (up to ``hard_timeout``); reply with ``{key:
    value}`` for every key that got a value, ``TimedOut`` for each key still loading when
    the timeout passed."""

    keys: list[Any]
    plan_for: Callable[[list[Any]], Plan[dict[Any, Any]]]
    hard_timeout: float | None = None


class TimedOut(NamedTuple):
    """The reply of a flight the caller stopped waiting for (the run goes on for the
    others, and caches its value when it ends): ``stale``, the stale entry to answer with
    (``None``: none); ``hard``: the hard timeout passed (else the soft one)."""

    stale: Any
    hard: bool


class Offer(NamedTuple):
    """Inside the flight of ``key``: let the callers waiting for it answer with the stale
    ``entry`` if they stop waiting (see ``Flight``); reply ``None``."""

    key: Hashable
    entry: Any


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


class Watch(NamedTuple):
    """One load across the fleet (``core/fleetflight.py``): wake the caller when a
    backplane message names one of ``names`` (or anything may have changed); reply a
    watcher for ``Wait`` and ``Unwatch``."""

    names: tuple[str, ...]


class Wait(NamedTuple):
    """Wait until ``watcher`` is woken or ``seconds`` pass; reply True if it was woken."""

    watcher: Any
    seconds: float


class Unwatch(NamedTuple):
    """Stop watching (reply ``None``)."""

    watcher: Any


class Announce(NamedTuple):
    """Tell the other instances that ``names`` have a value now (a backplane message);
    reply ``None`` at once."""

    names: tuple[str, ...]


Step: TypeAlias = (
    "Call | Load | Flight | FlightMany | Offer | Refresh | Enqueue | Peek | Flush"
    " | Watch | Wait | Unwatch | Announce"
)
Plan: TypeAlias = Generator[Step, Any, T]


def typed(tier: Tier, args: tuple[Any, ...], value_type: Any) -> tuple[Any, ...]:
    """``args`` with ``value_type`` appended, for layers that decode by type."""
    return (*args, value_type) if value_type is not None and tier.typed else args
