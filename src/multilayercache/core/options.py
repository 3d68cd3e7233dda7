"""How the manager treats each layer (``LayerPolicy``), and TTL jitter."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .ttl import TTL, optional_ttl_seconds

PromotionRule = Literal["seen_before", "always", "never"] | Callable[[Any, Any], bool]


@dataclass(frozen=True)
class LayerPolicy:
    """How the manager uses one layer.

    ttl:
        Upper bound on how long this layer keeps what the manager writes into it (``None``:
        the layer's own default). A ``ttl`` given to ``set``/``get_or_load`` applies too; the
        shorter wins. Typical: L1 short (seconds), L2 longer (minutes).
    ttl_jitter:
        Shorten each TTL by a random fraction up to this (``0.1``: between 90% and 100% of
        it), so that entries written together do not all expire together. Jitter never
        makes an entry outlive the TTL asked for.
    promote:
        Whether a value found in a slower layer is copied into this one. ``"seen_before"``
        (default): when this layer has seen the key before in its current frequency period
        (W-TinyLFU doorkeeper; layers without frequencies always accept). ``"always"``,
        ``"never"``, or ``callable(key, layer) -> bool``.
    """

    ttl: TTL | None = None
    ttl_jitter: float = 0.0
    promote: PromotionRule = "seen_before"

    def __post_init__(self) -> None:
        optional_ttl_seconds(self.ttl, "LayerPolicy ttl")
        check_jitter(self.ttl_jitter)
        if not callable(self.promote) and self.promote not in ("seen_before", "always", "never"):
            raise ValueError(
                f"promote must be 'seen_before', 'always', 'never' or a callable, "
                f"got {self.promote!r}"
            )

    def ttl_for(self, requested: TTL | None, rng: random.Random) -> float | None:
        """The TTL (seconds) to give this layer for a write, or ``None`` for its default."""
        requested_seconds = optional_ttl_seconds(requested)
        cap = optional_ttl_seconds(self.ttl, "LayerPolicy ttl")
        if requested_seconds is None:
            seconds = cap
        elif cap is None:
            seconds = requested_seconds
        else:
            seconds = min(requested_seconds, cap)
        return jittered(seconds, self.ttl_jitter, rng)

    def accepts_promotion(self, key: Any, layer: Any) -> bool:
        """Whether a value found below may be copied into ``layer``."""
        if self.promote == "always":
            return True
        if self.promote == "never":
            return False
        if callable(self.promote):
            return bool(self.promote(key, layer))
        estimate = getattr(layer, "get_frequency_estimate", None)
        # A key seen once is in the doorkeeper only (estimate 1); seen before means >= 2.
        return estimate is None or estimate(key) >= 2


def check_jitter(jitter: object) -> float:
    """Validate a jitter fraction (``0 <= jitter < 1``)."""
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
        raise TypeError(f"ttl_jitter must be a fraction between 0 and 1, got {jitter!r}")
    if not 0 <= jitter < 1:
        raise ValueError(f"ttl_jitter must be in [0, 1), got {jitter!r}")
    return float(jitter)


def jittered(seconds: float | None, jitter: float, rng: random.Random) -> float | None:
    """``seconds`` shortened by a random fraction up to ``jitter`` (never lengthened;
    unchanged when 0, inf or None)."""
    if seconds is None or seconds in (0.0, math.inf) or not jitter:
        return seconds
    return seconds * (1 - jitter * rng.random())
