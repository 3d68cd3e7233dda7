"""What the sync and asyncio drivers share apart from IO: how a driver is put together from
its parts (single flight, refresh workers, write-behind workers, load gate), each driver
naming its own kind of part."""

from __future__ import annotations

from typing import Any, ClassVar

from .state import CacheState
from .tiers import Tier


class DriverBase:
    """Builds a driver's parts for ``state``; the sync and asyncio drivers set the classes
    (threads and locks, or tasks and events)."""

    single_flight: ClassVar[type]
    refresh_workers: ClassVar[type]
    write_worker: ClassVar[type]
    load_gate: ClassVar[type]

    def __init__(self, state: CacheState) -> None:
        self.state = state
        self.flight = self.single_flight()
        self.workers = self.refresh_workers(self, state)
        self.writers: dict[int, Any] = {
            tier.depth: self.write_worker(tier, state)
            for tier in state.tiers
            if tier.queue is not None
        }
        """The write-behind workers, by tier depth."""
        options = state.load_options
        self.gate = None
        if options.max_concurrent_loads is not None:
            self.gate = self.load_gate(options.max_concurrent_loads, timeout=options.load_wait)

    def put_now(self, tier: Tier, key: Any, op: Any, payload: Any, size: int) -> bool:
        """Queue one write for ``tier`` if its queue has room now (``plans.write_at_once``)."""
        return self.writers[tier.depth].put_now(key, op, payload, size)  # type: ignore[no-any-return]
