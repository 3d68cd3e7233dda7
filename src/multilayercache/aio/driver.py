"""The asyncio driver: performs the steps of a plan (``multilayercache.core.plans``),
awaiting asyncio layers and loaders and calling in-process layers directly (they never wait
on IO); background refreshes run as tasks of ``RefreshWorkers``.

A key's flight runs in a task of its own (``AsyncSingleFlight``), which every caller of the
key awaits: timeouts stop any caller's wait, the first caller's included, while the load
goes on in that task and caches its value when it ends."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

from .._forking import register_after_fork
from ..core.backoff import RetryState
from ..core.driving import DriverBase
from ..core.errors import LayerError
from ..core.plans import (
    READ_METHODS,
    Announce,
    Call,
    Enqueue,
    Flight,
    FlightMany,
    Flush,
    Load,
    Loaded,
    Offer,
    Peek,
    Plan,
    Refresh,
    T,
    Unwatch,
    Wait,
    Watch,
    noted_generations,
    read_above,
    settle_direct_many,
    settle_direct_read,
    typed,
)
from ..core.state import CacheState
from ..core.tiers import Tier
from .fleetwait import AsyncFleetWaiters
from .retry import LoadGate, wait_for_token
from .singleflight import AsyncSingleFlight
from .worker import RefreshWorkers
from .writeback import AsyncWriteBehindWorker


class PlanRunner(Protocol):
    """``AsyncDriver.run``, as the manager holds it: drives a plan and returns its result."""

    def __call__(self, plan: Plan[T], /) -> Coroutine[Any, Any, T]: ...


class AsyncDriver(DriverBase):
    """Runs plans for one ``AsyncMultilayerCache``."""

    single_flight = AsyncSingleFlight
    refresh_workers = RefreshWorkers
    write_worker = AsyncWriteBehindWorker
    load_gate = LoadGate
    fleet_waiters = AsyncFleetWaiters
    # The parts DriverBase builds from the classes above.
    flight: AsyncSingleFlight
    fleet: AsyncFleetWaiters
    workers: RefreshWorkers

    def __init__(self, state: CacheState) -> None:
        super().__init__(state)  # its parts register for forks first: they reset first
        register_after_fork(self)

    def _after_fork(self) -> None:
        """In a forked child: a lock of the child's own for the counters and breakers, and
        none of the refreshes or breaker probes of the parent's threads."""
        self.state.after_fork(threading.Lock())

    async def run(self, plan: Plan[T]) -> T:
        """Drive ``plan`` to its end and return its result (or raise its exception)."""
        reply: Any = None
        failure: BaseException | None = None
        while True:
            try:
                step = plan.send(reply) if failure is None else plan.throw(failure)
            except StopIteration as done:
                result: T = done.value
                return result
            failure = None
            try:
                reply = await self._perform(step)
            except Exception as error:  # the plan decides what a failure means
                reply, failure = None, error
            except BaseException as error:  # cancelled, interrupted: the plan tidies up, re-raises
                reply, failure = None, error

    async def read_at_once(self, tier: Tier, key: Any, default: Any) -> Any:
        """``plans.read`` of one key from ``tier`` (``plans.direct_tier``: the read needs
        no plan) with plain calls: the same breaker, retry policy and counting; the copy
        into L1 by ``promote_at_once``, or by the plan when it needs one."""
        state = self.state
        generations = state.generations
        noted = 0 if generations is None else generations.of(key)  # before the read
        args = typed(tier, (key,), state.value_type)
        try:
            entry = await guarded_call(tier, tier.layer.get_entry, args, state, "get_entry")
        except LayerError as error:  # a miss there, as ``find_entry`` counts it
            state.note_read_error(tier, key, error)
            return default
        value, copy = settle_direct_read(state, tier, key, entry, noted, default)
        if copy is not None:
            await self.run(copy)
        return value

    async def read_many_at_once(self, tier: Tier, keys: Iterable[Any]) -> dict[Any, Any]:
        """``plans.read_many`` of ``keys`` through the in-process L1 and ``tier`` below it
        (``plans.direct_batch_tier``: the batch needs no plan) with plain calls: the same
        breaker, retry policy and counting; the copy into L1 by ``promote_many_at_once``,
        or by the plan when it needs one."""
        state = self.state
        wanted, above, asked = read_above(state, keys)
        seen = noted_generations(state, asked)  # before the read
        copies: dict[Any, Any] | None = None if seen is None else {}
        below: dict[Any, Any] = {}
        if asked:
            args = typed(tier, (asked, copies), state.value_type)
            try:
                below = await guarded_call(tier, tier.layer.get_fresh, args, state, "get_fresh")
            except LayerError as error:  # a miss of them all, as ``find_entries`` counts it
                state.note_read_error(tier, asked, error)
                copies = None
        hits, copy = settle_direct_many(state, tier, wanted, above, below, copies, seen)
        if copy is not None:
            await self.run(copy)
        return hits

    async def _perform(self, step: Any) -> Any:
        kind = type(step)
        if kind is Call:
            return await self._call(step)
        if kind is Load:
            return await self._load(step)
        if kind is Flight:
            plan = step.plan
            return await self.flight.do(
                step.key,
                lambda: self.run(plan),
                step.soft_timeout,
                step.hard_timeout,
                step.fallback,
            )
        if kind is FlightMany:
            plan_for = step.plan_for
            return await self.flight.do_many(
                step.keys, lambda led: self.run(plan_for(led)), step.hard_timeout
            )
        if kind is Offer:
            return self.flight.offer(step.key, step.entry)
        if kind is Refresh:
            self.workers.submit(step)  # its flight joins any load of the key still running
            return None
        if kind is Peek:
            return self.writers[step.tier.depth].pending(step.keys)
        if kind is Enqueue:
            return await self.writers[step.tier.depth].put(step.writes, step.block)
        if kind is Flush:
            return await self.writers[step.tier.depth].flush()
        if kind is Watch:
            return self.fleet.watch(step.names)
        if kind is Wait:
            return await self.fleet.wait(step.watcher, step.seconds)
        if kind is Unwatch:
            return self.fleet.unwatch(step.watcher)
        if kind is Announce:
            return self.fleet.announce(list(step.names))
        raise TypeError(f"a plan yielded {step!r}, which is not a step")

    async def _call(self, step: Call) -> Any:
        tier, method = step.tier, getattr(step.tier.layer, step.method)
        limiter = tier.limiter  # read once: update_policy may replace it
        if limiter is not None:  # a read without a token raises here: skipped
            wait = tier.take_token(step.method, step.optional, limiter)
            if wait and not await wait_for_token(limiter, wait, tier.policy.rate_limit_wait):
                raise tier.refused(step.method, limiter)
        start = time.perf_counter()
        try:
            return await guarded_call(tier, method, step.args, self.state, step.method)
        finally:
            if self.state.record_latency and step.method in READ_METHODS:
                tier.latency.record(time.perf_counter() - start)

    async def _load(self, step: Load) -> Loaded:
        gate, rate = self.gate, self.state.load_rate
        if gate is None and rate is None:
            return await self.call_loader(step.loader, step.argument)
        timeout = self.slot_wait(step)
        if rate is not None:  # its turn first: a slot is not held while waiting for it
            wait = rate.try_take()
            if wait:
                start = time.monotonic()
                if not await wait_for_token(rate, wait, timeout):
                    raise rate.refuse_load(timeout)
                if timeout is not None:  # what is left of it for a slot
                    timeout = max(0.0, timeout - (time.monotonic() - start))
        if gate is None:
            return await self.call_loader(step.loader, step.argument)
        async with gate.slot(timeout):
            return await self.call_loader(step.loader, step.argument)

    async def call_loader(self, loader: Callable[[Any], Any], argument: Any) -> Loaded:
        """``await loader(argument)``, timed and counted."""
        start = time.perf_counter()
        failed = True
        try:
            result = loader(argument)
            if not inspect.isawaitable(result):
                raise TypeError(
                    f"loader {getattr(loader, '__qualname__', loader)!r} returned a "
                    f"{type(result).__name__}, not an awaitable: use async def"
                )
            value = await result
            failed = False
        finally:
            seconds = time.perf_counter() - start
            self.state.count_load(seconds, failed)
        return Loaded(value, seconds)


async def guarded_call(
    tier: Tier, method: Callable[..., Any], args: tuple[Any, ...], state: CacheState, name: str = ""
) -> Any:
    """``method(*args)`` on a layer (awaited for an asyncio one), through its circuit
    breaker, retried after a transient failure as its retry policy says (the twin of
    ``multilayercache.sync.driver.guarded_call``; ``name``: the method's name)."""
    if not tier.guarded:
        result = method(*args)
        return await result if tier.is_async else result
    retry = None  # made at the first failure: most calls succeed at once
    start = state.clock()
    breaker = tier.breaker_for(name, args)  # on a cluster, a single key's node's
    while True:
        tier.admit(breaker)
        try:
            result = method(*args)
            if tier.is_async:
                result = await _awaited(result)
        except Exception as error:
            tier.settle(error, breaker)
            if retry is None and tier.retry is not None:
                retry = RetryState(tier.retry, state.rng)
            delay = None if retry is None else retry.next_delay(error, state.clock() - start)
            if delay is None:
                raise
            await asyncio.sleep(delay)
            continue
        except BaseException as error:  # cancelled: not the layer's fault
            tier.settle(error, breaker)
            raise
        tier.settle(None, breaker)
        return result


async def _awaited(result: Awaitable[Any]) -> Any:
    return await result
