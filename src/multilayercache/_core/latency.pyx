"""How long things took (compiled twin of ``_latency_py.py``, which explains it). ``record``
and ``snapshot`` call only C (a deque's append, a list of it): under the GIL each is one
step, so recording threads never lose a count nor split a total from its sum."""

from collections import deque


cdef class Recorder:
    """The last ``window`` durations (seconds), how many were recorded and their sum."""

    def __init__(self, window=8192):
        self._samples = deque(maxlen=window)

    cpdef record(self, double seconds):
        self._samples.append(seconds)
        self.total += 1
        self.total_seconds += seconds

    def snapshot(self):
        """``total``, ``total_seconds`` and the recent durations, read together."""
        return self.total, self.total_seconds, list(self._samples)
