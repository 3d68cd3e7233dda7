"""What a bigger or smaller L1 would buy: an online miss-ratio curve from sampled shadows.

An ``InMemoryLayer`` built with ``estimate_sizes=(0.5, 2, 4)`` answers ``size_estimates()``:
the hit ratio it would have at 0.5x, 1x, 2x and 4x its ``max_size``, from its own traffic.

How (SHARDS, Waldspurger et al., "Efficient MRC Construction with SHARDS", FAST 2015): a
key is *sampled* iff its spread hash is below a threshold ``T = rate * 2**64``; the hash is
uniform, so a fixed ``rate`` of the keys is sampled, with every access to each of them. A
cache of ``s`` entries fed every access sees, on the sampled keys, what a cache of
``s * rate`` entries fed only the sampled accesses sees: each size is simulated by a
*shadow* of ``s * rate`` entries. The shadows run the same policy as the layer (they are
``InMemoryLayer`` objects of the layer's own type, compiled or pure, without TTLs): a plain
LRU would predict an LRU's curve, not this layer's.

The estimate is anchored on what the layer measured: ``estimate(f) = the layer's own hit
ratio + (shadow f's hits - shadow 1's hits) / (rate * reads)``, clamped to [0, 1]. Sampled
shadows are biased as a whole (the few hottest keys are sampled or not; a W-TinyLFU of a
few dozen entries has a one-entry window): the bias is nearly the same in every shadow and
cancels in the difference, while the layer's own ratio is exact. Dividing by the expected
number of sampled reads, not the actual one, is SHARDS-adj's correction for the hot keys
(their reads hit at every size). On the rows of ``benchmarks/mrc.py`` (shadows of 26
entries and up) every estimate was within 1.7 points of an exact replay; without the
anchor, shadows under ~100 entries were off by 3. Shadows of a few entries on a trace of
few keys still err (multi2 at 1,200: 6 points at 4x). At factor 1 the estimate is the
layer's measured hit ratio; TTLs, invalidations and stale reads count in that ratio, so the
other factors answer "the same, with this much more (or less) room".

The rate: small shadows are noisier, so the smallest shadow gets ``MIN_SHADOW_ENTRIES``
entries where the rate allows: ``rate = MIN_SHADOW_ENTRIES / (smallest factor *
max_size)``, kept within ``MIN_RATE`` and
``MAX_AUTO_RATE``. The upper bound is there for the cost: every sampled access is replayed
into every shadow, so the cost per L1 operation grows with the rate (the README gives the
figures); a small L1 that wants more accurate estimates at that cost passes
``estimate_sample_rate``.

Where the samples come from: the layer tests ``spread hash < T`` (one integer compare; ``T``
is 0 when estimation is off, so an L1 without it never samples) on each counted read
(``get``, ``lookup``, ``get_entry``) and each write (``set``, ``add``, their ``_entry``
forms), and puts a sampled access in a buffer of ``SAMPLE_BATCH`` events (compiled:
``COMPILED_SAMPLE_BATCH``; ``layers/memory/estimates.py``). The access that fills the
buffer replays it into the shadows, outside the layer's lock (amortised: no thread to
start, stop or fork). A compiled shadow replays on a lean path
(``InMemoryLayer._replay_accesses``): the same policy calls as ``get`` and ``set``, without
what a shadow never has (TTLs, copies, listeners, per-call ownership), a key's hash taken
from its event, and one int object per sampled event shared by all the shadows. What is
left is the policy's own work on four small, cold tables.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._forking import register_after_fork
from ..layers.memory.estimates import WRITE

if TYPE_CHECKING:
    from ..layers.memory import InMemoryLayer

MIN_SHADOW_ENTRIES = 256
"""Entries of the smallest shadow, at least (while the rate allows)."""

MIN_RATE = 1 / 1024
"""The sampling rate of a large layer: its shadows already hold many entries."""

MAX_AUTO_RATE = 1 / 96
"""The automatic rate stops here (the cost of the replays grows with the rate)."""

_MAX_THRESHOLD = (1 << 64) - 1  # rate 1: every hash but the largest (the compiled test is
# on uint64)


def checked_factors(factors: object) -> tuple[float, ...]:
    """The size factors to estimate, sorted, with 1 (the layer's own size) among them;
    ``TypeError`` / ``ValueError`` naming what is wrong."""
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Iterable):
        raise TypeError(
            "estimate_sizes must be an iterable of size factors such as (0.5, 2, 4), "
            f"got {type(factors).__name__}"
        )
    checked = {1.0}
    for factor in factors:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise TypeError(f"estimate_sizes: a size factor is a number, got {factor!r}")
        if not (0 < factor < math.inf):
            raise ValueError(
                f"estimate_sizes: a size factor must be > 0 and finite, got {factor!r}"
            )
        checked.add(float(factor))
    return tuple(sorted(checked))


def sampling_rate(max_size: int, factors: Sequence[float]) -> float:
    """The automatic rate for a layer of ``max_size`` entries (see the module docstring)."""
    wanted = MIN_SHADOW_ENTRIES / (min(factors) * max_size)
    return min(MAX_AUTO_RATE, max(MIN_RATE, wanted))


def checked_rate(rate: object) -> float:
    """A sampling rate given by the caller, checked."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"estimate_sample_rate must be a number, got {type(rate).__name__}")
    if not (0 < rate <= 1):
        raise ValueError(f"estimate_sample_rate must be in (0, 1], got {rate!r}")
    return float(rate)


class SizeEstimator:
    """Shadow caches of an L1 at several sizes, fed the L1's sampled accesses.

    ``make_shadow(max_size)`` builds one shadow: the layer passes its own type, so that the
    shadows run its policy, compiled or pure.
    """

    def __init__(
        self,
        max_size: int,
        factors: object,
        make_shadow: Callable[[int], Any],
        sample_rate: object = None,
        since: tuple[int, int] = (0, 0),
    ) -> None:
        self.factors = checked_factors(factors)
        self.requested_rate = sample_rate
        """The rate the layer was built with (``None``: automatic, from ``max_size``)."""
        self._since_hits, self._since_reads = since
        """The layer's hits and reads when this estimator started (a resize starts one)."""
        if sample_rate is None:
            self.rate = sampling_rate(max_size, self.factors)
        else:
            self.rate = checked_rate(sample_rate)
        self.threshold = min(_MAX_THRESHOLD, math.ceil(self.rate * (1 << 64)))
        """A key is sampled iff its spread hash is below this."""
        self.shadow_sizes = tuple(
            max(1, round(factor * max_size * self.rate)) for factor in self.factors
        )
        self._shadows = [make_shadow(size) for size in self.shadow_sizes]
        self._hits = [0] * len(self._shadows)
        self.sampled_reads = 0
        self._lock = threading.Lock()  # one replay at a time: the shadows see one order
        register_after_fork(self)

    def replay(self, events: np.ndarray) -> None:
        """Feed sampled events (``estimates.sampled_event``, a ``uint64`` array) to every
        shadow, in order; in a shadow, a read that misses is followed by a write, as a
        read-through cache would do (``InMemoryLayer._replay_accesses``)."""
        reads = len(events) - int(np.count_nonzero(events & WRITE))
        keys: list[int | None] = [None] * len(events)  # built by the first shadow that needs one
        with self._lock:
            self.sampled_reads += reads
            for index, shadow in enumerate(self._shadows):
                self._hits[index] += shadow._replay_accesses(events, keys)

    def estimates(self, hits: int, reads: int) -> dict[float, float]:
        """Hit ratio (0..1) per size factor, given the layer's own ``hits`` and ``reads``
        so far (counted from when the estimator started: see the module docstring); ``nan``
        before any sampled read."""
        hits, reads = hits - self._since_hits, reads - self._since_reads
        with self._lock:
            sampled, shadow_hits = self.sampled_reads, list(self._hits)
        expected = self.rate * reads
        if not sampled or expected <= 0:
            return {factor: math.nan for factor in self.factors}
        measured = hits / reads if reads > 0 else math.nan
        own_size = shadow_hits[self.factors.index(1.0)]
        return {
            factor: min(1.0, max(0.0, measured + (shadow - own_size) / expected))
            for factor, shadow in zip(self.factors, shadow_hits, strict=True)
        }

    def _after_fork(self) -> None:
        # A thread of the parent may have been replaying: its lock would stay held. The
        # shadows are layers, safe across a fork on their own.
        self._lock = threading.Lock()


def size_estimates(layer: object) -> dict[float, float] | None:
    """``layer.size_estimates()`` for a layer that estimates sizes, else None (any other
    layer: ``cache.insights()`` asks every L1 it has)."""
    if getattr(layer, "size_estimator", None) is None:
        return None
    return cast("InMemoryLayer", layer).size_estimates()  # only an L1 has an estimator
