"""Changing a running cache's layer policies (``update_policy``), IO-free and shared by both
managers: which layer a caller means, the changes checked whole before anything changes,
and what the manager derives from its policies.

What a user can rely on:

* All or nothing: an unknown field or a bad value raises, naming it, and no setting of any
  layer changed.
* From the next operation on: each setting is swapped in by one assignment of an object
  that no running operation mutates (``Tier.update``). An operation running during the
  call may use the old value of a setting it read before and the new one of another, each
  whole; every operation that starts after the call returns uses the new ones. Entries
  already held keep the lifetime they were written with: a new ``ttl`` applies to the next
  write (``touch`` or a reload gives an entry a new one).
* Breakers and rate limits go on from where they are (``CircuitBreaker.with_policy``,
  ``RateLimiter.with_limit``): a breaker open because the layer is down stays open until
  its cool-down ends, then probes under the new policy, and no counter goes backwards.
* An in-process layer whose manager policy has no ``ttl`` of its own (``LayerPolicy()``,
  the default: the layer's ``ttl=`` decides) gets its own default TTL changed instead
  (``InMemoryLayer.set_default_ttl``): the manager's TTL for it *is* the layer's, and
  adding a cap would also shorten every longer TTL asked of ``set``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from .adaptive import StepMemory
from .backoff import RetryPolicy
from .breaker import BreakerPolicy
from .options import LayerPolicy
from .state import CacheState
from .tiers import Tier
from .ttl import optional_ttl_seconds

POLICY_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(LayerPolicy))
"""What ``update_policy`` may change: every field of ``LayerPolicy`` (``write`` only to
the value it has: a write-behind queue is built with the cache)."""

_NOT_GIVEN = object()


def tier_of(state: CacheState, layer: Any) -> Tier:
    """The tier a caller means by ``layer``: its index (0: the fastest), the layer object,
    or its name (``layer.name``, as ``stats()`` shows it)."""
    tiers = state.tiers
    return tiers[layer_index([tier.layer for tier in tiers], [tier.name for tier in tiers], layer)]


def layer_index(layers: Sequence[Any], names: Sequence[str], layer: Any) -> int:
    """Where ``layer`` (an index, a layer object or a name) stands among a cache's
    ``layers``; ``ValueError`` naming the choices when it is none of them."""
    if isinstance(layer, int) and not isinstance(layer, bool):
        if not 0 <= layer < len(layers):
            raise ValueError(
                f"no layer {layer}: this cache has layers 0 to {len(layers) - 1} (0 is the fastest)"
            )
        return layer
    for index, candidate in enumerate(layers):
        if candidate is layer:
            return index
    if isinstance(layer, str):
        if layer in names:
            return list(names).index(layer)
        listed = ", ".join(repr(name) for name in names)
        raise ValueError(f"no layer named {layer!r}: this cache's layers are {listed}")
    raise ValueError(
        f"{layer!r} is not a layer of this cache: give its index, the layer or its name"
    )


def check_changes(changes: Mapping[str, Any]) -> None:
    """Unknown fields, and values ``LayerPolicy`` itself does not check (it trusts its
    constructor's caller with the breaker's and the retry's types)."""
    unknown = [name for name in changes if name not in POLICY_FIELDS]
    if unknown:
        raise TypeError(
            f"update_policy got unknown field(s) {', '.join(map(repr, unknown))}; "
            f"a LayerPolicy has {', '.join(POLICY_FIELDS)}"
        )
    for name, kind in (("breaker", BreakerPolicy), ("retry", RetryPolicy)):
        value = changes.get(name)
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind.__name__}(...) or None, got {value!r}")


def update_policy(state: CacheState, layer: Any, changes: Mapping[str, Any]) -> LayerPolicy:
    """Change fields of one layer's policy on a running cache (see the module docstring);
    the layer's policy now."""
    tier = tier_of(state, layer)
    check_changes(changes)
    changes = dict(changes)
    own_ttl: Any = _NOT_GIVEN
    if changes.get("ttl") is not None and tier.policy.ttl is None and tier.has("set_default_ttl"):
        own_ttl = changes.pop("ttl")
        optional_ttl_seconds(own_ttl, "ttl")  # checked before anything changes
    policy = tier.update(changes)
    if own_ttl is not _NOT_GIVEN:
        tier.layer.set_default_ttl(own_ttl)
        # How long the layer may now keep a value (its new default: maybe longer).
        tier.note_lifetime(policy.lifetime_for(None, state.rng, tier.layer.default_ttl))
    _derive(state)
    return policy


def _derive(state: CacheState) -> None:
    """What the manager derives from all its policies (``CacheState.__init__``), again."""
    state.promotes = any(tier.policy.promote != "never" for tier in state.tiers[:-1])
    adapts = any(tier.policy.adaptive is not None for tier in state.tiers)
    stores_steps = any(getattr(tier.layer, "stores_steps", False) for tier in state.tiers)
    if adapts and not stores_steps and state.steps is None:
        state.steps = StepMemory()  # before ``adapts``: a reader that sees it finds them
    state.adapts = adapts
    if not adapts:
        state.steps = None
