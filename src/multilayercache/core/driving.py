"""What the sync and asyncio drivers share apart from IO: how a driver is put together from
its parts (single flight, refresh workers, write-behind workers, load gate), each driver
naming its own kind of part."""

from __future__ import annotations

from typing import Any, ClassVar

from .plans import Load
from .state import CacheState


class DriverBase:
    """Builds a driver's parts for ``state``; the sync and asyncio drivers set the classes
    (threads and locks, or tasks and events)."""

    single_flight: ClassVar[type]
    refresh_workers: ClassVar[type]
    write_worker: ClassVar[type]
    load_gate: ClassVar[type]
    fleet_waiters: ClassVar[type]

    def __init__(self, state: CacheState) -> None:
        self.state = state
        self.flight = self.single_flight()
        self.fleet = self.fleet_waiters()
        """Callers waiting for another instance's load (``core/fleetflight.py``)."""
        self.workers = self.refresh_workers(self, state)
        self.writers: dict[int, Any] = {
            tier.depth: self.write_worker(tier, state)
            for tier in state.tiers
            if tier.queue is not None
        }
        """The write-behind workers, by tier depth."""
        self.put_now = {depth: writer.put_now for depth, writer in self.writers.items()}
        """Each worker's ``put_now`` by tier depth (``plans.write_at_once``)."""
        options = state.load_options
        self.gate = None
        if options.max_concurrent_loads is not None:
            self.gate = self.load_gate(options.max_concurrent_loads, timeout=options.load_wait)

    def slot_wait(self, step: Load) -> float | None:
        """How long ``step`` waits for a load slot and its turn under the loader's rate
        limit, in all: ``load_wait``, or the load's ``slot_wait`` (its caller's hard
        timeout) if shorter."""
        timeout = self.state.load_options.load_wait
        if step.slot_wait is None:
            return timeout
        return step.slot_wait if timeout is None else min(timeout, step.slot_wait)
