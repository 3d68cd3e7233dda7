"""Global top-N: which keys are hottest across every instance of a fleet.

Each instance turns what its L1 counts anyway into *recent access rates* (``AccessRates``),
publishes its hottest keys with their rates (``layers/redis/fleetinfo.py``), and
``cache.global_top_keys(n)`` adds up the rates of every live instance (``merge_top``).

Why rates: the counts an L1 keeps (a cached key's hits since it was admitted, and the
misses of the keys that keep missing) start whenever the key was admitted and whenever the
process started, so two instances' counts cannot be added: an instance up for a day would
drown one up for a minute. The count-min sketch's estimate cannot either: its 4-bit
counters saturate at 15, and every hot key sits there. A rate, accesses per second over
the same recent span on every instance, can: the fleet's rate of a key is the sum of the
instances' rates, and ranks keys as the exact counts of the union of their traffic over
that span would.

How a rate is estimated: at every publish (every few seconds) the instance reads each key's
accesses since the previous reading (``accesses.py``: the difference of two copies of the
L1's per-key counts, the reader insights use too), and those accesses over the seconds
between the readings are that period's rate; rates are smoothed by an exponentially
weighted moving average with time constant ``window_seconds``, corrected for its start (as
Adam corrects its moments: a fresh average is divided by ``1 - exp(-observed / window)``, so
an instance that just started is neither under- nor over-weighted). A key that was not
among the most accessed of a reading counts as not accessed then (its rate decays). Memory
is bounded: at most ``capacity`` keys are tracked, the coldest forgotten first.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping

MAX_PUBLISHED_KEYS = 100
"""Keys an instance publishes: its hottest."""
DEFAULT_WINDOW_SECONDS = 60.0
"""Time constant of the rates' moving average: about the last minute counts."""
PER_MINUTE = 60.0
"""``global_top_keys`` reports accesses per minute (an int; a rate per second would round
most keys to 0)."""


class AccessRates:
    """Recent accesses per second of one instance's hottest keys, from its L1's accesses
    between readings (see the module docstring).

    >>> rates = AccessRates(window_seconds=60)
    >>> rates.observe({}, now=0.0)                     # the baseline
    >>> rates.observe({"a": 60, "b": 6}, now=6.0)      # a: 60 in 6 s, b: 6
    >>> [(key, round(rate)) for key, rate in rates.top(2)]
    [('a', 10), ('b', 1)]
    """

    def __init__(
        self, window_seconds: float = DEFAULT_WINDOW_SECONDS, capacity: int = 1_000
    ) -> None:
        if not (isinstance(window_seconds, (int, float)) and 0 < window_seconds < math.inf):
            raise ValueError(f"window_seconds must be a number > 0, got {window_seconds!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.window_seconds = float(window_seconds)
        self.capacity = capacity
        self._averages: dict[str, float] = {}
        """The moving average of every tracked key's rate (before the start correction)."""
        self._last_reading: float | None = None
        self._observed_seconds = 0.0

    def observe(self, accesses: Mapping[str, int], now: float) -> None:
        """A reading at ``now`` (seconds, monotonic): the most accessed keys' accesses since
        the previous reading. The first reading is the baseline (it covers no known span:
        what it holds counts for nothing), and so is one whose clock did not move."""
        last = self._last_reading
        if last is not None and now <= last:
            return
        if last is not None:
            elapsed = now - last
            keep = math.exp(-elapsed / self.window_seconds)
            averages = self._averages
            for key in averages:  # not read this time: not accessed (decays)
                averages[key] *= keep
            for key, count in accesses.items():
                averages[key] = averages.get(key, 0.0) + (1.0 - keep) * count / elapsed
            self._observed_seconds += elapsed
            self._forget_coldest()
        self._last_reading = now

    def _forget_coldest(self) -> None:
        averages = self._averages
        over = len(averages) - self.capacity
        if over > 0:
            for key in heapq.nsmallest(over, averages, key=averages.__getitem__):
                del averages[key]

    def rates(self) -> dict[str, float]:
        """Every tracked key's rate (accesses per second), start-corrected."""
        correction = 1.0 - math.exp(-self._observed_seconds / self.window_seconds)
        if correction <= 0.0:
            return {}
        return {key: average / correction for key, average in self._averages.items()}

    def top(self, n: int = MAX_PUBLISHED_KEYS) -> list[tuple[str, float]]:
        """The ``n`` keys with the highest rates, hottest first (rates in accesses per second)."""
        rates = self.rates()
        return heapq.nlargest(n, rates.items(), key=lambda item: item[1])

    def __len__(self) -> int:
        return len(self._averages)


def merge_top(views: Iterable[Mapping[str, float]], n: int) -> list[tuple[str, int]]:
    """The ``n`` keys with the highest summed rate over ``views`` (each an instance's rates
    per second, key -> rate), hottest first, as ``(key, accesses per minute)``. An instance
    that did not list a key adds nothing for it (it is below that instance's top)."""
    checked_n(n)
    total: dict[str, float] = {}
    for view in views:
        for key, rate in view.items():
            total[key] = total.get(key, 0.0) + rate
    best = heapq.nlargest(n, total.items(), key=lambda item: (item[1], item[0]))
    return [(key, round(rate * PER_MINUTE)) for key, rate in best]


def checked_n(n: object) -> int:
    """``n`` if it is an int >= 0; else ``ValueError`` naming it."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    return n


__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "MAX_PUBLISHED_KEYS",
    "PER_MINUTE",
    "AccessRates",
    "checked_n",
    "merge_top",
]
