"""Time-to-live values: what users may pass, and how they become seconds.

Shared by every layer and both twins of the in-memory layer, so that bad input gets the same
clear error everywhere.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TypeAlias

TTL: TypeAlias = "float | int | timedelta"
"""Seconds (``float`` or ``int``) or a ``timedelta``. ``math.inf`` means "never expires"."""

NANOSECONDS_PER_SECOND = 1_000_000_000
# Deadlines are int64 nanoseconds; anything further out than ~146 years counts as "never".
MAX_FINITE_TTL_SECONDS = float(1 << 62) / NANOSECONDS_PER_SECOND


def ttl_seconds(ttl: object, what: str = "ttl") -> float:
    """Validate a TTL and return it in seconds (``math.inf`` for no expiry).

    >>> ttl_seconds(timedelta(minutes=2))
    120.0
    """
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(
            f"{what} must be seconds (int or float) or a timedelta, got {type(ttl).__name__}"
        )
    else:
        seconds = float(ttl)
    if math.isnan(seconds):
        raise ValueError(f"{what} must not be NaN")
    if seconds < 0:
        raise ValueError(f"{what} must be >= 0 seconds, got {seconds!r}")
    if seconds >= MAX_FINITE_TTL_SECONDS:
        return math.inf
    return seconds


def optional_ttl_seconds(ttl: object, what: str = "ttl") -> float | None:
    """Like :func:`ttl_seconds`, but ``None`` passes through (meaning "use the default")."""
    return None if ttl is None else ttl_seconds(ttl, what)
