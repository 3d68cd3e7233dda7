"""How long things took: the recent durations and the running totals (pure-Python twin of
``latency.pyx``). ``core/latency.py`` summarizes them as percentiles.

``record`` here is several Python steps: a caller whose totals must agree with each other
across threads records under a lock (``CacheState.count_load``). The compiled twin's
``record`` and ``snapshot`` run no Python code, so under the GIL each is one step and the
sync front door records a load without that lock.
"""

from __future__ import annotations

from collections import deque


class Recorder:
    """The last ``window`` durations (seconds), how many were recorded and their sum."""

    __slots__ = ("_samples", "total", "total_seconds")

    def __init__(self, window: int = 8192) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self.total = 0
        self.total_seconds = 0.0

    def record(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.total += 1
        self.total_seconds += seconds

    def snapshot(self) -> tuple[int, float, list[float]]:
        """``total``, ``total_seconds`` and the recent durations, read together."""
        return self.total, self.total_seconds, list(self._samples)


__all__ = ["Recorder"]
