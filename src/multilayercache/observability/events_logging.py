"""Log a cache's events: a listener for ``cache.subscribe`` (or ``on_event=``).

    import logging
    from multilayercache.observability.events_logging import EventLogger

    cache = MultilayerCache([...], on_event=EventLogger())
    # WARNING multilayercache.events: l2: circuit breaker closed -> open
    # ERROR   multilayercache.events: l2: 12 write(s) given up on, in the dead letter

Each kind of event has its level: a breaker opening, a failed refresh and an anomaly are
warnings, a dead letter an error, a breaker closing again info, removals and refreshes that
worked debug (an evicting cache removes thousands of entries a second). Each kind is logged
at most ``per_second`` times a second (after a burst of ``burst``): past that, events of the
kind are counted, and the next one logged says how many were left out. Keys are shown
shortened, values never (they may be large, or private).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..core.events import Anomaly, BreakerTransition, DeadLettered, Event, Refresh, Removal

KEY_CHARACTERS = 80
"""A key longer than this (as ``repr``) is cut in the log."""


class EventLogger:
    """A listener that logs each event at its level, at a bounded rate per kind.

    ``logger``: where (``multilayercache.events`` by default). ``per_second`` and ``burst``:
    the rate bound of each kind (a token bucket). ``levels``: a level per kind to override,
    by event class (e.g. ``{Removal: logging.INFO}``).
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        per_second: float = 10.0,
        burst: int = 20,
        levels: dict[type, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not per_second > 0 or burst < 1:
            raise ValueError(
                f"need per_second > 0 and burst >= 1, got per_second={per_second}, burst={burst}"
            )
        self.logger = logger or logging.getLogger("multilayercache.events")
        self.per_second = per_second
        self.burst = burst
        self.levels = dict(levels or {})
        self._clock = clock
        self._tokens: dict[type, float] = {}
        self._refilled_at: dict[type, float] = {}
        self.suppressed: dict[type, int] = {}
        """Events of each kind left out of the log since its last line."""

    def __call__(self, event: Event) -> None:
        level = self.levels.get(type(event), _level_of(event))
        if not self.logger.isEnabledFor(level):
            return
        kind = type(event)
        if not self._take_token(kind):
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            return
        message, args = _describe(event)
        left_out = self.suppressed.pop(kind, 0)
        if left_out:
            message += " (%d more %s events not logged)"
            args = (*args, left_out, kind.__name__)
        self.logger.log(level, message, *args)

    def _take_token(self, kind: type) -> bool:
        now = self._clock()
        tokens = self._tokens.get(kind, float(self.burst))
        tokens = min(
            float(self.burst), tokens + (now - self._refilled_at.get(kind, now)) * self.per_second
        )
        self._refilled_at[kind] = now
        if tokens < 1.0:
            self._tokens[kind] = tokens
            return False
        self._tokens[kind] = tokens - 1.0
        return True


def _level_of(event: Event) -> int:
    if isinstance(event, Removal):
        return logging.DEBUG
    if isinstance(event, Refresh):
        return logging.DEBUG if event.ok else logging.WARNING
    if isinstance(event, BreakerTransition):
        return logging.WARNING if event.to_state == "open" else logging.INFO
    if isinstance(event, DeadLettered):
        return logging.ERROR
    return logging.WARNING  # an anomaly, or a kind this version does not know


def _describe(event: Event) -> tuple[str, tuple[Any, ...]]:
    if isinstance(event, Removal):
        return "%s: %s %s", (event.layer, _short(event.key), event.cause)
    if isinstance(event, Refresh):
        if event.ok:
            return "refresh (%s) of %s done", (event.trigger, _short(event.key))
        return "refresh (%s) of %s failed: %s; the stale value is kept", (
            event.trigger,
            _short(event.key),
            event.error,
        )
    if isinstance(event, BreakerTransition):
        where = event.layer if event.node is None else f"{event.layer} (node {event.node})"
        return "%s: circuit breaker %s -> %s", (where, event.from_state, event.to_state)
    if isinstance(event, DeadLettered):
        return "%s: %d write(s) given up on, in the dead letter", (event.layer, event.count)
    if isinstance(event, Anomaly):
        subject = event.layer if event.key is None else f"{event.layer}, key {_short(event.key)}"
        return "anomaly %s on %s: %.4g against a baseline of %.4g", (
            event.kind,
            subject,
            event.observed,
            event.baseline,
        )
    return "%r", (event,)


def _short(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= KEY_CHARACTERS else text[: KEY_CHARACTERS - 3] + "..."


__all__ = ["EventLogger"]
