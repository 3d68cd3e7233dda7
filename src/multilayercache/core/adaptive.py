"""TTLs that depend on the value: computed from it, or adapted to how often it changes.

**Computed** (``ttl=`` a function on ``get_or_load``, ``get_or_load_many`` and ``@cached``,
or ``context.ttl`` set by a loader, see ``loadcontext.py``): the loaded value's TTL, capped
by each layer's policy as any requested TTL is.

**Adapted** (``LayerPolicy(adaptive=AdaptiveTTL(min=..., max=...))``): each key has a
*step*, a small signed integer, and a layer's TTL for it is its usual TTL times
``factor ** step``, kept between ``min`` and ``max`` (step 0 is exactly the usual TTL).
Every reload of a key that a layer still held moves its step:

* **unchanged** (the value encodes to the same bytes, or the loader said so): one step up,
  so a key that keeps not changing is reloaded less and less often, up to ``max``;
* **changed**: a key above its usual TTL drops back to it at once (a key that starts to
  change is not left stale for its long TTL twice), one at or below it goes one step down,
  so a key that changes at almost every reload settles near where half of its reloads see
  a change, down to ``min``.

A key reloaded with nothing held (a miss) keeps its step: nothing says whether it changed.

**Where the step lives.** In the envelope of the entry in each shared layer (one byte, with a
64-bit digest of the encoded value: format 2 in ``entry.py``), so every instance continues
from it and a reload can tell an unchanged value by its digest without reading it back. A
key that no layer holds any more starts again at step 0: keep entries past their TTL with
``stale_ttl`` (or refresh hot keys ahead with ``refresh_ahead``) so that their reload finds
them. A cache with no shared layer keeps steps in a ``StepMemory`` instead: at most 65,536
keys (about 100 bytes each), the least recently updated forgotten first, and tells an
unchanged value by ``==``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from .ttl import TTL, optional_ttl_seconds, ttl_seconds

TtlRule: TypeAlias = Callable[[Any], "TTL | None"]
"""``ttl=`` as a function of the loaded value: its TTL (``None``: the default)."""

MAX_STEPS = 100
"""Steps stay within +-100 (an int8 in the envelope)."""


@dataclass(frozen=True)
class AdaptiveTTL:
    """A layer's TTL that adapts per key to how often its value changes (see the module
    docstring): ``factor`` times longer at each reload that finds it unchanged, up to
    ``max``; back to the usual TTL, then shorter, as reloads find it changed, down to
    ``min``.

    >>> LayerPolicy(ttl=60, stale_ttl=600, adaptive=AdaptiveTTL(min=10, max=900))

    The worst staleness it can serve is ``max`` (as a fixed TTL of ``max`` would), but only
    keys that have not changed for a while get there.
    """

    min: TTL
    max: TTL
    factor: float = 2.0

    def __post_init__(self) -> None:
        low = ttl_seconds(self.min, "AdaptiveTTL min")
        high = ttl_seconds(self.max, "AdaptiveTTL max")
        if not 0 < low <= high < math.inf:
            raise ValueError(
                f"AdaptiveTTL needs 0 < min <= max < inf, got min={self.min!r}, max={self.max!r}"
            )
        factor = self.factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise TypeError(f"AdaptiveTTL factor must be a number > 1, got {factor!r}")
        if not 1 < factor < math.inf:
            raise ValueError(f"AdaptiveTTL factor must be > 1, got {factor!r}")
        if math.log(high / low) / math.log(factor) > MAX_STEPS:
            raise ValueError(
                f"AdaptiveTTL factor {factor!r} is too small for min={self.min!r} and "
                f"max={self.max!r}: it would take more than {MAX_STEPS} steps"
            )

    @property
    def min_seconds(self) -> float:
        return ttl_seconds(self.min)

    @property
    def max_seconds(self) -> float:
        return ttl_seconds(self.max)

    def scaled(self, ttl: float, step: int) -> float:
        """The TTL ``ttl`` at ``step``: ``ttl * factor ** step``, kept within ``min`` and
        ``max`` (never moved past ``ttl`` itself toward them: step 0 is ``ttl``)."""
        if step == 0 or ttl <= 0 or ttl == math.inf:
            return ttl
        seconds = ttl * self.factor ** max(-MAX_STEPS, min(step, MAX_STEPS))
        if step > 0:
            return min(seconds, max(self.max_seconds, ttl))
        return max(seconds, min(self.min_seconds, ttl))

    def steps(self, ttl: float) -> tuple[int, int]:
        """The steps that still change a TTL of ``ttl``: below the lowest it is ``min``,
        above the highest ``max``."""
        if ttl <= 0 or ttl == math.inf:
            return 0, 0
        low = -self._steps_between(self.min_seconds, ttl)
        high = self._steps_between(ttl, self.max_seconds)
        return max(low, -MAX_STEPS), min(high, MAX_STEPS)

    def _steps_between(self, shorter: float, longer: float) -> int:
        """How many steps take ``shorter`` to ``longer`` or past it."""
        if shorter >= longer:
            return 0
        return math.ceil(math.log(longer / shorter) / math.log(self.factor) - 1e-9)


def next_step(step: int, unchanged: bool, low: int, high: int) -> int:
    """A key's step after a reload found its value ``unchanged`` or not (see the module
    docstring), kept within ``low`` and ``high``."""
    step = step + 1 if unchanged else min(step - 1, 0)
    return max(low, min(step, high))


class StepMemory:
    """The steps of a cache's keys when no shared layer stores them: at most ``max_keys``
    keys with a step other than 0, the least recently updated forgotten first (it starts
    again at 0). Not thread-safe: ``CacheState`` calls it under its lock."""

    def __init__(self, max_keys: int = 65_536) -> None:
        self.max_keys = max_keys
        self._steps: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self._steps)

    def get(self, key: Any) -> int:
        return self._steps.get(key, 0)

    def put(self, key: Any, step: int) -> None:
        self._steps.pop(key, None)  # re-inserted last: the most recently updated
        if step:
            self._steps[key] = step
            while len(self._steps) > self.max_keys:
                del self._steps[next(iter(self._steps))]

    def clear(self) -> None:
        self._steps.clear()


def check_load_ttl(ttl: object) -> None:
    """Check ``ttl=`` of a load: seconds, a ``timedelta``, ``None`` or a function of the
    loaded value (``TtlRule``). (An L1 hit of ``get_or_load(..., ttl=...)`` runs it: as
    few calls as the plain TTL check it replaced.)"""
    if ttl is not None and not callable(ttl):
        ttl_seconds(ttl)


def is_rule(ttl: object) -> bool:
    """Whether ``ttl`` is a function of the value rather than a TTL."""
    return callable(ttl)


def ttl_of(ttl: TTL | TtlRule | None, value: Any) -> TTL | None:
    """The TTL requested for a loaded ``value``: ``ttl`` itself, or what the function
    ``ttl`` answers for it (checked: a bad answer raises, naming the function)."""
    if not callable(ttl):
        return ttl
    answer = ttl(value)
    name = getattr(ttl, "__qualname__", repr(ttl))
    optional_ttl_seconds(answer, f"the TTL that {name} returned")
    return answer


__all__ = [
    "AdaptiveTTL",
    "StepMemory",
    "TtlRule",
    "check_load_ttl",
    "is_rule",
    "next_step",
    "ttl_of",
]
