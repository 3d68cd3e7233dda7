"""Latency percentiles over a bounded window of recent samples."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Percentiles:
    """Latency summary in seconds over the most recent samples."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float
    total_seconds: float = 0.0
    """All ``count`` durations added up (the percentiles cover only the recent ones)."""

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "max": self.max,
            "total_seconds": self.total_seconds,
        }


EMPTY = Percentiles(0, 0.0, 0.0, 0.0, 0.0)


class LatencyRecorder:
    """Keeps the last ``window`` durations (``deque.append`` is thread-safe in CPython)."""

    def __init__(self, window: int = 8192) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self.total = 0
        self.total_seconds = 0.0

    def record(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.total += 1
        self.total_seconds += seconds

    def time(self) -> _Timer:
        """``with recorder.time(): ...`` records how long the block took."""
        return _Timer(self)

    def percentiles(self) -> Percentiles:
        samples = np.fromiter(list(self._samples), dtype=np.float64)
        if not samples.size:
            return EMPTY
        p50, p90, p99 = np.percentile(samples, [50, 90, 99])
        return Percentiles(
            self.total,
            float(p50),
            float(p90),
            float(p99),
            float(samples.max()),
            self.total_seconds,
        )


class _Timer:
    __slots__ = ("_recorder", "_start")

    def __init__(self, recorder: LatencyRecorder) -> None:
        self._recorder = recorder
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._recorder.record(time.perf_counter() - self._start)
