"""The L1's side of ``estimate_sizes=`` (both twins): how a sampled access is buffered, and
the ``SizeEstimator`` (``analytics/mrc.py``, which explains the method) built for a layer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...analytics.mrc import SizeEstimator
    from ._layer_py import InMemoryLayer

SAMPLE_BATCH = 1024
"""Sampled accesses the pure layer buffers before the access that fills the buffer replays
them (each replayed event is a ``get`` and maybe a ``set`` per shadow, in Python: a longer
batch would only lengthen that access's pause)."""

COMPILED_SAMPLE_BATCH = 4096
"""The same for the compiled layer, whose replay costs far less per event: its shadows are
cold when a batch comes (the layer's own traffic ran meanwhile), and loading their tables
again is a large part of a replay, which a longer batch pays over more events (~30% less per
event than at 1,024 on a 10,000-entry layer), for a pause of ~2 ms at most on the access
that replays it (four shadows that all miss)."""

WRITE = 1
"""Bit 0 of a sampled event: a write; clear: a read. The other bits are the key's hash."""


def sampled_event(key_hash: int, write: bool) -> int:
    """The buffered form of an access to the key whose spread hash is ``key_hash``."""
    return (key_hash & ~WRITE) | (WRITE if write else 0)


def size_estimator(
    layer: Any,
    capacity: int,
    weighted: bool,
    factors: Iterable[float] | None,
    sample_rate: float | None,
) -> SizeEstimator | None:
    """The estimator of a layer being built, or None when ``factors`` is None (off)."""
    if factors is None:
        if sample_rate is not None:
            raise ValueError("estimate_sample_rate needs estimate_sizes, the sizes to estimate")
        return None
    if weighted:
        raise ValueError(
            "estimate_sizes needs a layer bounded by max_size (a sampled access carries no "
            "weight to replay)"
        )
    return _estimator(layer, capacity, factors, sample_rate, (0, 0))


def restarted_estimator(layer: Any, capacity: int, hits: int, reads: int) -> SizeEstimator:
    """A fresh estimator for a layer just resized to ``capacity`` entries: the shadows of
    the old one simulated factors of the old size. It counts from the layer's ``hits`` and
    ``reads`` now."""
    old = layer.size_estimator
    return _estimator(layer, capacity, old.factors, old.requested_rate, (hits, reads))


def _estimator(
    layer: Any, capacity: int, factors: object, sample_rate: object, since: tuple[int, int]
) -> SizeEstimator:
    # Imported here: only layers that estimate need it, and analytics sits above layers.
    from ...analytics.mrc import SizeEstimator

    shadow_type = type(layer)
    return SizeEstimator(
        capacity,
        factors,
        lambda size: shadow_type(max_size=size, name=f"{layer.name}.shadow"),
        sample_rate,
        since,
    )


def checked_estimator(layer: InMemoryLayer) -> SizeEstimator:
    """The layer's estimator; ``RuntimeError`` if it was built without one."""
    if layer.size_estimator is None:
        raise RuntimeError(
            f"InMemoryLayer {layer.name!r} does not estimate other sizes: build it with "
            "estimate_sizes=(0.5, 2, 4)"
        )
    return layer.size_estimator
