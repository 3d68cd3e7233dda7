"""Deadline arithmetic of the pure twin (the compiled twin inlines ``clock.pxd``): integer
nanoseconds, truncated as a C double conversion truncates, so both twins agree."""

from __future__ import annotations

import math

from ..._core._timerwheel_py import NO_DEADLINE
from ...core.ttl import NANOSECONDS_PER_SECOND


def seconds_to_ns(seconds: float) -> int:
    """Seconds (from an injected clock) to integer nanoseconds, through a C double,
    truncated toward zero."""
    return int(float(seconds) * NANOSECONDS_PER_SECOND)


def deadline_after(now_ns: int, ttl: float) -> int:
    """The deadline ``ttl`` seconds after ``now_ns``, or ``NO_DEADLINE``."""
    if ttl == math.inf:
        return NO_DEADLINE
    return min(now_ns + int(ttl * NANOSECONDS_PER_SECOND), NO_DEADLINE - 1)


def seconds_left(deadline_ns: int, now_ns: int) -> float:
    """Seconds from ``now_ns`` to ``deadline_ns`` (``math.inf`` for ``NO_DEADLINE``)."""
    if deadline_ns == NO_DEADLINE:
        return math.inf
    return max(0.0, (deadline_ns - now_ns) / NANOSECONDS_PER_SECOND)
