"""Latency percentiles over a bounded window of recent samples."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._build import twin

if TYPE_CHECKING:
    from .._core._latency_py import Recorder
else:  # compiled: records in one step under the GIL (the sync front door counts loads so)
    Recorder = twin("multilayercache._core.latency", "multilayercache._core._latency_py").Recorder


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


class LatencyRecorder(Recorder):
    """Keeps the last ``window`` durations, and summarizes them (see ``_core/_latency_py.py``)."""

    __slots__ = ()

    def time(self) -> _Timer:
        """``with recorder.time(): ...`` records how long the block took."""
        return _Timer(self)

    def percentiles(self) -> Percentiles:
        total, total_seconds, recent = self.snapshot()
        samples = np.fromiter(recent, dtype=np.float64)
        if not samples.size:
            return EMPTY
        p50, p90, p99 = np.percentile(samples, [50, 90, 99])
        return Percentiles(
            total, float(p50), float(p90), float(p99), float(samples.max()), total_seconds
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
