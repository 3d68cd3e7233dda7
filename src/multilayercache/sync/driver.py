"""The sync driver: performs the steps of a plan (``multilayercache.core.plans``) with plain
calls, in the caller's thread."""

from __future__ import annotations

import time
from typing import Any

from ..core.plans import READ_METHODS, Call, Flight, FlightMany, Load, Plan, T
from ..core.state import CacheState
from .singleflight import SingleFlight


class Driver:
    """Runs plans for one ``MultilayerCache``."""

    def __init__(self, state: CacheState) -> None:
        self.state = state
        self.flight = SingleFlight()

    def run(self, plan: Plan[T]) -> T:
        """Drive ``plan`` to its end and return its result (or raise its exception)."""
        timed = self.state.record_latency
        reply: Any = None
        failure: Exception | None = None
        while True:
            try:
                step = plan.send(reply) if failure is None else plan.throw(failure)
            except StopIteration as done:
                return done.value
            failure = None
            try:
                if type(step) is Call and not timed:  # the common step, kept inline
                    reply = getattr(step.tier.layer, step.method)(*step.args)
                else:
                    reply = self._perform(step)
            except Exception as error:  # the plan decides what a failure means
                reply, failure = None, error

    def _perform(self, step: Any) -> Any:
        if type(step) is Call:
            method = getattr(step.tier.layer, step.method)
            if step.method not in READ_METHODS:
                return method(*step.args)
            start = time.perf_counter()
            try:
                return method(*step.args)
            finally:
                step.tier.latency.record(time.perf_counter() - start)
        if type(step) is Load:
            start = time.perf_counter()
            try:
                return step.loader(step.argument)
            finally:
                self.state.count_load(time.perf_counter() - start)
        if type(step) is Flight:
            plan = step.plan
            return self.flight.do(step.key, lambda: self.run(plan))
        if type(step) is FlightMany:
            plan_for = step.plan_for
            return self.flight.do_many(step.keys, lambda led: self.run(plan_for(led)))
        raise TypeError(f"a plan yielded {step!r}, which is not a step")
