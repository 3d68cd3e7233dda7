"""The asyncio driver: performs the steps of a plan (``multilayercache.core.plans``),
awaiting asyncio layers and loaders and calling in-process layers directly (they never wait
on IO)."""

from __future__ import annotations

import inspect
import time
from typing import Any

from ..core.plans import READ_METHODS, Call, Flight, FlightMany, Load, Plan, T
from ..core.state import CacheState
from .singleflight import AsyncSingleFlight


class AsyncDriver:
    """Runs plans for one ``AsyncMultilayerCache``."""

    def __init__(self, state: CacheState) -> None:
        self.state = state
        self.flight = AsyncSingleFlight()

    async def run(self, plan: Plan[T]) -> T:
        """Drive ``plan`` to its end and return its result (or raise its exception)."""
        reply: Any = None
        failure: Exception | None = None
        while True:
            try:
                step = plan.send(reply) if failure is None else plan.throw(failure)
            except StopIteration as done:
                return done.value
            failure = None
            try:
                reply = await self._perform(step)
            except Exception as error:  # the plan decides what a failure means
                reply, failure = None, error

    async def _perform(self, step: Any) -> Any:
        if type(step) is Call:
            method = getattr(step.tier.layer, step.method)
            start = time.perf_counter()
            try:
                result = method(*step.args)
                return await result if step.tier.is_async else result
            finally:
                if self.state.record_latency and step.method in READ_METHODS:
                    step.tier.latency.record(time.perf_counter() - start)
        if type(step) is Load:
            start = time.perf_counter()
            try:
                result = step.loader(step.argument)
                if not inspect.isawaitable(result):
                    raise TypeError(
                        f"loader {getattr(step.loader, '__qualname__', step.loader)!r} returned "
                        f"a {type(result).__name__}, not an awaitable: use async def"
                    )
                return await result
            finally:
                self.state.count_load(time.perf_counter() - start)
        if type(step) is Flight:
            plan = step.plan
            return await self.flight.do(step.key, lambda: self.run(plan))
        if type(step) is FlightMany:
            plan_for = step.plan_for
            return await self.flight.do_many(step.keys, lambda led: self.run(plan_for(led)))
        raise TypeError(f"a plan yielded {step!r}, which is not a step")
