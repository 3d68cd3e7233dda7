"""Warnings that repeat at most once per interval: a failing layer must not flood the log.

Every part of the package that warns about a recurring condition (a layer that keeps
failing, values in Redis that cannot be trusted) goes through one ``ThrottledWarning``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("multilayercache")

WARNING_INTERVAL_SECONDS = 10.0


class ThrottledWarning:
    """``warn(...)`` logs at most once per ``interval`` seconds; later calls within the
    interval are counted and reported with the next warning that is logged.

    >>> warn = ThrottledWarning()
    >>> warn("%s: GET failed", "redis")   # logged
    True
    >>> warn("%s: GET failed", "redis")   # within 10 s: suppressed
    False
    """

    __slots__ = ("interval", "_clock", "_last", "_suppressed")

    def __init__(
        self,
        interval: float = WARNING_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._last = -float("inf")
        self._suppressed = 0

    def __call__(self, message: str, *args: object) -> bool:
        """Log ``message % args`` unless one was logged less than ``interval`` ago.
        Returns whether it was logged. (Races between threads can at worst log twice.)"""
        now = self._clock()
        if now - self._last < self.interval:
            self._suppressed += 1
            return False
        self._last = now
        suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            message += " (%d similar warnings suppressed)"
            args = (*args, suppressed)
        log.warning(message, *args)
        return True
