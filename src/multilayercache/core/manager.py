"""What ``MultilayerCache`` and ``AsyncMultilayerCache`` share apart from IO: building their
state and driver, the L1 fast path, introspection, and the decorator's checks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from .keys import key_maker
from .plans import check_tags
from .state import CacheState
from .stats import CacheStats
from .tiers import timed_get
from .ttl import TTL, optional_ttl_seconds


class ManagerBase:
    """The IO-free half of a manager; ``driver`` is the sync or asyncio driver class."""

    def __init__(self, state: CacheState, driver: Callable[[CacheState], Any]) -> None:
        self._state = state
        self._driver = driver(state)
        self._run = self._driver.run
        self.layers: list[Any] = [tier.layer for tier in self._state.tiers]
        # An in-process L1 answers without IO: its hits skip the plans and the driver.
        first = self._state.tiers[0]
        self._first_get: Callable[[Any, Any], Any] | None = None
        if not first.is_async:
            self._first_get = timed_get(first) if state.record_latency else first.layer.get
        self._checked_depth = 0 if self._first_get is None else 1

    @property
    def in_flight(self) -> int:
        """Loads running now (keys being loaded by ``get_or_load``)."""
        return len(self._driver.flight)

    def stats(self) -> CacheStats:
        """Every layer's stats, loader calls, coalesced waits and load latency percentiles."""
        return self._state.stats(self._driver.flight.coalesced)

    def _decorator_key(
        self,
        function: Callable[..., Any],
        key: Callable[..., Any] | None,
        *,
        coroutine: bool,
    ) -> Callable[..., Any]:
        """Check that this manager can decorate ``function``; return its key maker."""
        if inspect.iscoroutinefunction(function) and not coroutine:
            raise TypeError(
                f"{function.__qualname__} is a coroutine function: "
                "decorate it with AsyncMultilayerCache.cached"
            )
        if coroutine and not inspect.iscoroutinefunction(function):
            raise TypeError(
                f"{function.__qualname__} is not a coroutine function: "
                "decorate it with MultilayerCache.cached"
            )
        return key_maker(function, key)


def check_decorator_options(ttl: TTL | None, tags: Iterable[str]) -> None:
    """``cached(...)``'s options are checked when the decorator is made, not at a call."""
    check_tags(tags)
    optional_ttl_seconds(ttl)
