"""How fresh a cached value is, and how long each layer keeps it.

A value has three moments after it is written (FusionCache calls the last two logical and
physical expiry; Caffeine calls the first ``refreshAfterWrite``):

    written ── refresh due ── stale ─────────── gone
      |  fresh, quiet |  fresh, due |   stale     |
                      ^ refresh_after  ^ ttl       ^ ttl + stale_ttl

* **fresh**: served as is. Past ``refresh_after`` (a fraction of the TTL, jittered so that
  keys written together do not refresh together) a hit still serves it, and starts one
  background refresh: a hot key then never misses.
* **stale**: past the TTL. ``get`` no longer returns it, but ``get_or_load`` may: at once
  while one background reload runs (stale-while-revalidate), or when the loader or a
  slower layer fails or is too slow (fail-safe), up to ``ttl + stale_ttl``.
* **gone**: the layer has dropped it.

``Entry`` is what a layer reports for a key it holds; ``Lifetime`` is what the manager asks a
layer to keep a value for, computed per layer from its ``LayerPolicy``.
"""

from __future__ import annotations

import enum
import math
import random
from typing import Any, NamedTuple


class Freshness(enum.IntEnum):
    FRESH = 0
    """Served as is."""
    DUE = 1
    """Still fresh, but a refresh is due: serve it and refresh it in the background."""
    STALE = 2
    """Past its TTL: served only by stale-while-revalidate or fail-safe."""


class Entry(NamedTuple):
    """A layer's answer for a key it holds. Times are seconds from now."""

    value: Any
    fresh_for: float
    """Freshness left (``<= 0``: stale; ``math.inf``: never goes stale)."""
    gone_in: float
    """Until the layer drops it (``>= fresh_for``)."""
    refresh_in: float = math.inf
    """Until a refresh is due (``<= 0``: due now)."""
    load_seconds: float = 0.0
    """How long loading it took (probabilistic early refresh weighs it); 0 if unknown."""
    step: int = 0
    """Its adaptive TTL step (``core/adaptive.py``), as a shared layer stored it; 0 if none."""
    written_ms: int | None = None
    """When a shared layer's copy was written (epoch ms): which write it is, so that it is
    extended only if no other write replaced it meanwhile; ``None`` in-process."""
    digest: int | None = None
    """A 64-bit digest of the encoded value, stored with adaptive entries: an unchanged
    reload encodes to the same one; ``None`` if not stored."""
    tags: tuple[str, ...] = ()
    """The tags it was written with, as a shared layer stored them (``core/tags.py``)."""

    @property
    def freshness(self) -> Freshness:
        if self.fresh_for <= 0:
            return Freshness.STALE
        if self.refresh_in <= 0:
            return Freshness.DUE
        return Freshness.FRESH


class Lifetime(NamedTuple):
    """How long a layer keeps one write: ``ttl`` fresh, then ``stale_ttl`` more as stale;
    a refresh is due ``refresh_after`` seconds in (``math.inf``: never). ``step``: the
    adaptive TTL step of a loaded value, for the shared layers to store with it (``None``:
    a plain write, stored as before); ``tags``: the write's tags."""

    ttl: float
    stale_ttl: float = 0.0
    refresh_after: float = math.inf
    step: int | None = None
    tags: tuple[str, ...] = ()
    """Tags of the write (``core/tags.py``): shared layers store them with the value."""

    @property
    def total(self) -> float:
        """Until the value is gone."""
        return self.ttl + self.stale_ttl


def lifetime_of(entry: Entry) -> Lifetime:
    """The lifetime left to an entry, to copy it into a faster layer without letting the
    copy outlive the original."""
    fresh = max(0.0, entry.fresh_for)
    return Lifetime(fresh, max(0.0, entry.gone_in - fresh), max(0.0, entry.refresh_in))


def refresh_point(ttl: float, fraction: float | None, jitter: float, rng: random.Random) -> float:
    """When a value written with ``ttl`` becomes due for a refresh: ``fraction`` of the TTL,
    moved back by a random share up to ``jitter`` of it (never past the TTL)."""
    if fraction is None or ttl in (0.0, math.inf):
        return math.inf
    point = ttl * fraction
    if jitter:
        point -= ttl * jitter * rng.random()
    return max(0.0, min(point, ttl))


def xfetch_due(entry: Entry, beta: float, rng: random.Random) -> bool:
    """Probabilistic early expiration (Vattani, Chierichetti & Lowenstein, "Optimal
    Probabilistic Cache Stampede Prevention", VLDB 2015): refresh now with a probability
    that rises as expiry nears, faster for values that take long to load, so that one
    reader refreshes a little early instead of many at expiry. ``beta`` > 1 refreshes
    earlier, < 1 later."""
    if entry.fresh_for == math.inf or entry.load_seconds <= 0 or beta <= 0:
        return False
    return -entry.load_seconds * beta * math.log(1.0 - rng.random()) >= entry.fresh_for
