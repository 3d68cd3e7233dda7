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
