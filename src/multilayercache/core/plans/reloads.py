"""What a load writes beyond a plain write (``write_loaded``): each value's own TTL (``ttl=``
a function of it, or set by its loader), whether it changed since the entry it replaces,
its adaptive TTL step (``core/adaptive.py``), and extending unchanged entries in shared
layers instead of rewriting them.

"Unchanged" is known three ways: the loader said so (``context.unchanged()``, see
``core/loadcontext.py``); the value encodes to the bytes whose digest a shared layer stored
with the entry (format 2 of ``core/entry.py``: exact, whatever the value's type and ``==``,
and without reading the entry back); or, in a cache without a shared layer, ``==`` with the
value held. Otherwise it is not known (nothing held, or an entry without a digest), and the
key keeps its step.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from ..adaptive import next_step, ttl_of
from ..errors import LayerError
from ..freshness import Entry, Lifetime
from ..state import CacheState
from ..tiers import Tier
from ..ttl import TTL
from .steps import Call, Plan
from .writes import store

Held = Mapping[Any, tuple[Entry, int]]
"""The entry each key had before its load, and the depth of the layer it came from."""


class Reload:
    """The decisions about one batch of loaded values; ``write`` writes them into a layer."""

    def __init__(
        self,
        state: CacheState,
        mapping: Mapping[Any, Any],
        ttl: Any,
        value_type: Any,
        held: Held | None,
        kept: Collection[Any],
        tags: tuple[str, ...] = (),
    ) -> None:
        self.tags = tags
        self.requested: dict[Any, TTL | None] = {key: ttl_of(ttl, v) for key, v in mapping.items()}
        self.steps: dict[Any, int] = {}
        """Each key's new step (empty unless some layer adapts)."""
        self.extendable: dict[Any, tuple[Entry, int]] = {}
        """Unchanged keys whose held entry a shared layer may extend in place."""
        self.extended = 0
        held = held or {}
        unchanged = 0
        ranges: dict[Any, tuple[int, int]] = {}
        for key, value in mapping.items():
            entry, depth = held.get(key, (None, -1))
            same = True if key in kept else _same(state, key, value, entry, depth, value_type)
            if same:
                unchanged += 1
                if entry is not None and entry.written_ms is not None:
                    self.extendable[key] = (entry, depth)
            if state.adapts:
                step = _step_before(state, key, entry)
                if same is not None:
                    requested = self.requested[key]
                    if requested not in ranges:
                        ranges[requested] = _step_range(state, requested)
                    step = next_step(step, same, *ranges[requested])
                self.steps[key] = step
        if unchanged:
            state.count("refreshes_unchanged", unchanged)

    def write(
        self,
        state: CacheState,
        tier: Tier,
        mapping: Mapping[Any, Any],
        value_type: Any,
        load_seconds: float,
    ) -> Plan[None]:
        """Write ``mapping`` (the keys still current) into ``tier``: one batch per lifetime;
        an unchanged entry this layer holds is extended in place instead, when it can be."""
        groups: dict[tuple[Any, int | None], dict[Any, Any]] = {}
        for key, value in mapping.items():
            group = (self.requested[key], self.steps.get(key))
            groups.setdefault(group, {})[key] = value
        extends = tier.queue is None and not tier.in_process and tier.has("extend_entry")
        for (requested, step), items in groups.items():
            lifetime = tier.lifetime_for(requested, state.rng)
            if step is not None:
                lifetime = tier.policy.adapted(lifetime, step, _default_ttl(tier))
            if requested is not None or tier.policy.adaptive is not None:
                tier.note_lifetime(lifetime)
            if self.tags:
                lifetime = lifetime._replace(tags=self.tags)
            if extends:
                yield from self._extend(state, tier, items, lifetime)
            if items:
                yield from store(state, tier, items, lifetime, value_type, True, load_seconds)

    def _extend(
        self, state: CacheState, tier: Tier, items: dict[Any, Any], lifetime: Lifetime
    ) -> Plan[None]:
        """Extend the unchanged entries ``tier`` holds, and leave those another write
        replaced meanwhile (it is newer), removing both from ``items``; the rest (gone, or
        unable to store the step) stay in ``items``, to be written."""
        for key in list(items):
            entry, depth = self.extendable.get(key, (None, -1))
            if entry is None or depth != tier.depth:
                continue
            try:
                answer = yield Call(tier, "extend_entry", (key, lifetime, entry.written_ms), True)
            except LayerError as error:  # as a failed write of a loaded value: not raised
                state.note_write_error(tier, [key], error)
                answer = "failed"  # a write would fail as well
            if answer == "extended":
                self.extended += 1
            if answer != "write":
                del items[key]

    def finish(self, state: CacheState) -> None:
        """After the writes: count the extended entries, keep the steps (a cache without
        a shared layer to store them)."""
        if self.extended:
            state.count("ttl_extended", self.extended)
        state.remember_steps(self.steps)


def _same(
    state: CacheState, key: Any, value: Any, entry: Entry | None, depth: int, value_type: Any
) -> bool | None:
    """Whether ``value`` is the held ``entry``'s (``None``: not known)."""
    if entry is None:
        return None
    if entry.digest is not None and state.adapts:  # stored with its bytes' digest: compare
        try:
            return bool(state.tiers[depth].layer.digest_of(key, value, value_type) == entry.digest)
        except Exception:  # cannot be encoded there: a changed value, whatever it is
            return False
    if state.steps is not None:  # no shared layer: the value itself
        try:
            return bool(value == entry.value)
        except Exception:  # an __eq__ that raises, or an array's: not known to be equal
            return False
    return None


def _step_before(state: CacheState, key: Any, entry: Entry | None) -> int:
    if state.steps is not None:
        return state.step_of(key)
    return 0 if entry is None else entry.step


def _step_range(state: CacheState, requested: TTL | None) -> tuple[int, int]:
    """The steps that still change the TTL of some adaptive layer, for a write of
    ``requested``."""
    low = high = 0
    for tier in state.tiers:
        adaptive = tier.policy.adaptive
        if adaptive is None:
            continue
        base = tier.policy.base_ttl(requested, _default_ttl(tier))
        if base is not None:
            lowest, highest = adaptive.steps(base)
            low, high = min(low, lowest), max(high, highest)
    return low, high


def _default_ttl(tier: Tier) -> float | None:
    """The layer's own TTL for a write without one (``None`` if it does not say)."""
    default = getattr(tier.layer, "default_ttl", None)
    return float(default) if isinstance(default, (int, float)) else None


__all__ = ["Held", "Reload"]
