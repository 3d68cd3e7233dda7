"""An opt-in rule that lets a cache's insights resize its L1: ``AutoResize``.

A layer built with ``estimate_sizes`` knows what a bigger or a smaller copy of itself
would have hit (``analytics/mrc.py``). With
``InsightsOptions(auto_resize=AutoResize(min_size=..., max_size=...))``, the insights'
thread reads those estimates every ``every`` seconds and

* grows the layer ``step`` times (up to ``max_size``) when the estimate at ``step`` x its
  size beats its own hit ratio by ``grow_gain`` or more, or else
* shrinks it ``step`` times (down to ``min_size``) when the estimate at ``1 / step`` x
  loses ``shrink_loss`` or less: the memory buys nothing.

Bounds a user can rely on: the size never leaves ``[min_size, max_size]``; at most one
resize per ``every`` seconds; no decision before the estimator has seen
``min_sampled_reads`` sampled reads since the last resize (a resize starts its shadows
afresh: their figures described the old size). Each resize is logged and emitted as a
``Resized`` event (``cache.subscribe``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.events import Resized
from ..core.steering import layer_index

log = logging.getLogger("multilayercache")


@dataclass(frozen=True)
class AutoResize:
    """Grow or shrink an in-process layer from its size estimates (see the module).

    >>> l1 = InMemoryLayer(max_size=10_000, estimate_sizes=(0.5, 2))
    >>> rule = AutoResize(min_size=5_000, max_size=80_000)
    >>> cache = MultilayerCache([l1, l2], insights=InsightsOptions(auto_resize=rule))
    """

    min_size: int
    max_size: int
    layer: int | str = 0
    """Which layer: its index among the cache's layers (0: the fastest) or its name."""
    step: float = 2.0
    """Each resize multiplies or divides the size by this; the layer must estimate both
    ``step`` and ``1 / step``."""
    grow_gain: float = 0.02
    """Grow when ``step`` x the size would hit this much more (0.02: 2 points)."""
    shrink_loss: float = 0.002
    """Shrink when ``1 / step`` x the size would hit at most this much less."""
    every: float = 60.0
    """Seconds between decisions, at least."""
    min_sampled_reads: int = 2_000
    """Sampled reads the estimator needs, since the last resize, before a decision."""

    def __post_init__(self) -> None:
        for name in ("min_size", "max_size", "min_sampled_reads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AutoResize.{name} must be a whole number >= 1, got {value!r}")
        if self.min_size > self.max_size:
            raise ValueError(
                f"AutoResize.min_size ({self.min_size}) is above max_size ({self.max_size})"
            )
        for name in ("step", "grow_gain", "shrink_loss", "every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"AutoResize.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"AutoResize.{name} must be finite and >= 0, got {value!r}")
        if self.step <= 1:
            raise ValueError(f"AutoResize.step must be above 1, got {self.step!r}")
        if not isinstance(self.layer, (int, str)) or isinstance(self.layer, bool):
            raise TypeError(f"AutoResize.layer is an index or a name, got {self.layer!r}")


class Resizer:
    """Applies an ``AutoResize`` rule to one layer: ``check()`` on the insights' thread."""

    def __init__(
        self,
        rule: AutoResize,
        layer: Any,
        emit: Callable[[Resized], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rule = rule
        self.layer = layer
        self._emit = emit
        self._clock = clock
        self._next_decision = clock() + rule.every
        self.resizes = 0

    def check(self) -> Resized | None:
        """Resize the layer if the rule says so (at most once per ``every`` seconds);
        the resize made, if any."""
        now = self._clock()
        if now < self._next_decision:
            return None
        self._next_decision = now + self.rule.every
        decision = self.decide()
        if decision is None:
            return None
        self.layer.resize(decision.new_size)
        self.resizes += 1
        log.info(
            "multilayercache: %s resized from %d to %d entries (estimated hit ratio %+.1f points)",
            decision.layer,
            decision.old_size,
            decision.new_size,
            100 * decision.estimated_gain,
        )
        if self._emit is not None:
            self._emit(decision)
        return decision

    def decide(self) -> Resized | None:
        """What the rule asks of the layer now (no change: ``None``)."""
        rule, layer = self.rule, self.layer
        estimates = layer.size_estimates()  # first: it replays the samples still buffered
        if layer.size_estimator.sampled_reads < rule.min_sampled_reads:
            return None
        size = layer.max_size
        now = estimates[1.0]
        bigger, smaller = _at(estimates, rule.step), _at(estimates, 1 / rule.step)
        if math.isnan(now):
            return None
        grown = min(rule.max_size, round(size * rule.step))
        if grown > size and bigger - now >= rule.grow_gain:
            return Resized(layer.name, size, grown, bigger - now)
        shrunk = max(rule.min_size, round(size / rule.step))
        if shrunk < size and now - smaller <= rule.shrink_loss:
            return Resized(layer.name, size, shrunk, smaller - now)
        if size > rule.max_size or size < rule.min_size:  # built outside the bounds
            bounded = min(rule.max_size, max(rule.min_size, size))
            return Resized(layer.name, size, bounded, 0.0)
        return None


def resizer_for(
    rule: AutoResize | None, layers: Sequence[Any], emit: Callable[[Resized], Any] | None
) -> Resizer | None:
    """The ``Resizer`` of a cache's ``rule`` (``None``: no rule); ``ValueError`` naming what
    is wrong when the layer it names cannot follow it."""
    if rule is None:
        return None
    names = [getattr(layer, "name", "") for layer in layers]
    layer = layers[layer_index(layers, names, rule.layer)]
    if not callable(getattr(layer, "resize", None)) or getattr(layer, "max_weight", None):
        raise ValueError(
            f"AutoResize: layer {rule.layer!r} is not an in-process layer bounded by max_size"
        )
    estimator = getattr(layer, "size_estimator", None)
    wanted = (float(rule.step), 1 / rule.step)
    if estimator is None or not all(
        any(math.isclose(factor, want) for factor in estimator.factors) for want in wanted
    ):
        raise ValueError(
            f"AutoResize(step={rule.step}) needs layer {rule.layer!r} built with "
            f"estimate_sizes=({1 / rule.step:g}, {rule.step:g}): it decides from them"
        )
    return Resizer(rule, layer, emit)


def _at(estimates: dict[float, float], factor: float) -> float:
    """The estimate at ``factor`` (given as the user wrote it: 1/3 may be 0.333...)."""
    return next(value for key, value in estimates.items() if math.isclose(key, factor))


__all__ = ["AutoResize", "Resizer", "resizer_for"]
