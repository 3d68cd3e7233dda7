"""``AsyncMultilayerCache``: the asyncio twin of ``MultilayerCache``.

Same decisions (both run the plans of ``multilayercache.core.plans``); layers may be
asyncio layers (``AsyncRedisLayer``) or in-process ones (``InMemoryLayer``), which are called
directly since they never wait on IO. Loaders are coroutine functions: ``async def load(key)``.

    acache = AsyncMultilayerCache([InMemoryLayer(max_size=10_000), AsyncRedisLayer(url)])
    user = await acache.get_or_load("user:1", load_user)

A cache created at import time may serve successive ``asyncio.run()`` calls (or one test
event loop after another): ``AsyncRedisLayer`` built from a URL connects afresh in each loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .._build import twin
from ..analytics.options import InsightsOptions
from ..analytics.sampler import cache_insights, insights_options, start_insights
from ..core import loading, plans
from ..core.adaptive import TtlRule, check_load_ttl
from ..core.decorate import (
    AsyncCachedFunction,
    CallKeys,
    Condition,
    P,
    R,
    check_kind,
    check_options,
    coroutine_like,
    decorated,
    in_class,
    return_type,
)
from ..core.events import Anomaly, EventListener
from ..core.keys import single
from ..core.loadcontext import tagged
from ..core.manager import ManagerBase
from ..core.missing import MISSING, STEPPED_ASIDE
from ..core.options import LayerPolicy, LoadOptions
from ..core.state import CacheState
from ..core.tags import Tags, check_tags, tags_for
from ..core.ttl import TTL
from ..layers.shared_companions import backplane_of, fleet_info_of, reader_of_fleet_info
from .driver import AsyncDriver, PlanRunner
from .events import EventDelivery

if TYPE_CHECKING:  # redis is an extra: imported when a cache asks for one of these
    from ..layers.redis.backplane import Backplane
    from ..layers.redis.fleetinfo import FleetInfo

if TYPE_CHECKING:  # the twin carries the annotations; the compiled module shares them
    from . import _frontdoor_py as _frontdoor
else:
    _frontdoor = twin("multilayercache.aio.frontdoor", "multilayercache.aio._frontdoor_py")
AsyncCachedCall = _frontdoor.AsyncCachedCall

K = TypeVar("K")
V = TypeVar("V")


class AsyncMultilayerCache(ManagerBase):
    """A cache made of layers, fastest first, for asyncio code (see ``MultilayerCache``)."""

    _driver: AsyncDriver  # ManagerBase's, built from the class given to it
    _run: PlanRunner  # ManagerBase's: the driver's run

    def __init__(
        self,
        layers: Sequence[Any],
        policies: Sequence[LayerPolicy | None] | None = None,
        *,
        record_latency: bool = False,
        value_type: Any = None,
        load_options: LoadOptions | None = None,
        backplane: Backplane | str | bool | None = None,
        insights: InsightsOptions | bool | None = None,
        on_anomaly: Callable[[Anomaly], Any] | None = None,
        fleet_info: FleetInfo | str | bool | None = None,
        on_event: EventListener | None = None,
    ) -> None:
        sampling = insights_options(insights, on_anomaly)
        state = CacheState(
            layers,
            policies,
            record_latency=record_latency,
            allow_async=True,
            lock=threading.Lock(),
            value_type=value_type,
            load_options=load_options,
        )
        super().__init__(state, AsyncDriver, backplane_of(backplane), fleet_info_of(fleet_info))
        # Off by default; on: a thread samples the layers' counters (analytics/sampler.py).
        self._sampler = start_insights(self.layers, sampling, state.events.emit)
        self._event_delivery = EventDelivery(state.events)
        self._loads_alone = loading.may_load_at_once(state)  # (see ``_load_alone``)
        if on_event is not None:  # a plain function, or a coroutine function (on the loop)
            self.subscribe(on_event)

    # ------------------------------------------------------------------ reads
    async def get(self, key: Any, default: Any = None) -> Any:
        """The value from the fastest layer that has it, or ``default``."""
        value = self._first_get(key, MISSING)  # an L1 hit returns before anything awaits
        if value is not MISSING:
            return value
        state = self._state
        tier = plans.direct_tier(state, self._checked_depth)
        if tier is not None:  # the common read below L1: no decision needs the plan
            return await self._driver.read_at_once(tier, key, default)
        return await self._run(
            plans.read(state, key, default, self._checked_depth, state.value_type)
        )

    async def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The keys found in any layer, as a dict (one batch call per layer)."""
        state = self._state
        tier = plans.direct_batch_tier(state)
        if tier is not None:  # the common batch below L1: no decision needs the plan
            return await self._driver.read_many_at_once(tier, keys)
        return await self._run(plans.read_many(state, keys, state.value_type))

    async def contains(self, key: Any) -> bool:
        """Whether any layer holds the key (not counted as a read; nothing is promoted)."""
        return await self._run(plans.contains(self._state, key))

    def __contains__(self, key: Any) -> bool:
        raise TypeError("`in` cannot await: use `await cache.contains(key)`")

    async def remaining_ttl(self, key: Any) -> float | None:
        """How long the longest-lived layer holding the key keeps serving it, in seconds
        (``math.inf``: until deleted), or ``None`` if no layer holds it."""
        return await self._run(plans.remaining_ttl(self._state, key))

    # ------------------------------------------------------------------ writes
    async def set(self, key: Any, value: Any, ttl: TTL | None = None, tags: Tags = ()) -> None:
        """Write through every layer, slowest first (each caps ``ttl`` by its policy). A
        layer that fails raises its ``LayerError``, and the faster layers drop the key
        (see ``MultilayerCache.set``); a write-behind layer gets the write queued.
        ``tags``: ``invalidate_tags`` of any of them drops the value."""
        try:
            if tags:
                plan = plans.write(
                    self._state, single(key, value), ttl, self._state.value_type, check_tags(tags)
                )
                await self._run(plan)
            elif not self._set_at_once(key, value, ttl):
                await self._run(
                    plans.write(self._state, single(key, value), ttl, self._state.value_type)
                )
        finally:  # a failed write may have landed too: the others drop the key either way
            if self.backplane is not None:
                self._announce((key,))

    async def set_many(
        self, mapping: Mapping[Any, Any], ttl: TTL | None = None, tags: Tags = ()
    ) -> None:
        """Write every item through every layer (one batch call per layer); a failure is
        handled as by ``set``, for every key. ``tags``: those of every item."""
        tags = check_tags(tags)
        if not hasattr(mapping, "items"):  # (a list of pairs raised AttributeError: 'items')
            raise TypeError(f"set_many takes a mapping of keys to values, got {mapping!r:.80}")
        try:
            await self._run(plans.write(self._state, mapping, ttl, self._state.value_type, tags))
        finally:
            if self.backplane is not None:
                self._announce(mapping)

    async def delete(self, key: Any) -> bool:
        """Remove the key from every layer; True if any layer had it. If a layer fails, the
        others are still cleared and its ``LayerError`` is raised; the key is not read
        from the failed layer until a delete or set of it reaches it (see
        ``MultilayerCache.delete``)."""
        try:
            return await self._run(plans.delete(self._state, key))
        finally:
            if self.backplane is not None:
                self._announce((key,))

    async def delete_many(self, keys: Iterable[Any]) -> None:
        """Remove the keys from every layer (one batch call per layer); a failure is
        handled as by ``delete``, for every key."""
        keys = list(keys)
        try:
            await self._run(plans.delete_many(self._state, keys))
        finally:
            if self.backplane is not None:
                self._announce(keys)

    async def clear(self) -> None:
        """Empty the cache: L1 entirely, and a shared layer's keys under its prefix."""
        try:
            await self._run(plans.clear(self._state))
        finally:
            if self.backplane is not None:
                self.backplane.publish_clear()

    async def invalidate_tags(self, *tags: str) -> None:
        """Drop every value written with any of ``tags``, in every layer of every instance
        (see ``MultilayerCache.invalidate_tags``)."""
        await self._invalidate(check_tags(tags), ())

    async def invalidate_prefix(self, *prefixes: str) -> None:
        """Drop every key that starts with one of ``prefixes``, in every layer of every
        instance, without a scan of the shared layer (see ``MultilayerCache``)."""
        await self._invalidate((), check_tags(prefixes, "prefix"))

    async def _invalidate(self, tags: tuple[str, ...], prefixes: tuple[str, ...]) -> None:
        at_ms: int | None = None
        try:
            at_ms = await self._run(plans.invalidate(self._state, tags, prefixes))
        finally:
            self._announce_marks(tags, prefixes, at_ms)
        if at_ms is not None and self._state.marks_tier is not None:  # (see until_past)
            await asyncio.sleep(plans.until_past(at_ms))

    # ------------------------------------------------------------------ primitives
    async def add(self, key: Any, value: Any, ttl: TTL | None = None) -> bool:
        """Store the value only if the key is absent; True if it was stored (atomic: see
        ``MultilayerCache.add``)."""
        state = self._state
        added = await self._run(plans.primitives.add(state, key, value, ttl, self.value_type))
        if added and self.backplane is not None:
            self._announce((key,))
        return bool(added)

    async def touch(self, key: Any, ttl: TTL | None = None) -> bool:
        """Give the key a new TTL from now without rewriting its value, in every layer; True
        if any layer held a fresh value (see ``MultilayerCache.touch``)."""
        return await self._run(plans.primitives.touch(self._state, key, ttl))

    async def incr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """Add ``delta`` to the key's counter atomically; the new count (see
        ``MultilayerCache.incr``)."""
        try:
            return int(await self._run(plans.primitives.incr(self._state, key, delta, ttl)))
        finally:
            if self.backplane is not None:
                self._announce((key,))

    async def decr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """``incr`` by ``-delta``."""
        return await self.incr(key, -plans.primitives.checked_delta(delta), ttl)

    # ------------------------------------------------------------------ loading
    async def get_or_load(
        self,
        key: K,
        loader: Callable[[K], Awaitable[V]],
        ttl: TTL | TtlRule | None = None,
        value_type: Any = None,
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
        tags: Tags = (),
        fleet_single_flight: bool | None = None,
    ) -> V:
        """The cached value, or ``await loader(key)``'s, written through every layer (with
        ``tags``). Concurrent tasks asking for one missing key share one lookup below L1
        and one loader call; stale values and ``fleet_single_flight`` as
        ``MultilayerCache.get_or_load`` has them."""
        if ttl is not None:
            check_load_ttl(ttl)
        if not callable(loader):
            raise TypeError("loader must be a coroutine function: async def load(key)")
        value = self._first_lookup(key, MISSING, STEPPED_ASIDE)
        if value is not MISSING and value is not STEPPED_ASIDE:
            # A key holds what its loader returns: the caller's contract, which the layers
            # (some shared, some decoding) cannot show mypy. No cast: a hit costs no call.
            return value  # type: ignore[no-any-return]
        if (
            value is MISSING
            and self._loads_alone
            and soft_timeout is None
            and hard_timeout is None
            and fleet_single_flight is None
            and not tags
        ):
            value = await self._load_alone(key, loader, ttl)
            if value is not MISSING:
                return value  # type: ignore[no-any-return]
        start = 0 if value is STEPPED_ASIDE else self._checked_depth
        options = self._options_for(soft_timeout, hard_timeout, fleet_single_flight)
        loader = tagged(loader, check_tags(tags))
        plan = loading.load(
            self._state, key, loader, ttl, self._type_for(value_type), None, options, start
        )
        return await self._run(plan)

    async def _load_alone(
        self, key: Any, loader: Callable[[Any], Awaitable[Any]], ttl: Any, condition: Any = None
    ) -> Any:
        """A miss of the only layer, loaded without a plan when the load needs none of its
        decisions (``loading.loads_at_once``), else ``MISSING`` (the caller runs the plan):
        the asyncio twin of the sync front door's ``load_alone``. The loader runs in the
        key's flight, which the plans' loads of the key join; ``MISSING`` too when another
        task is loading the key: the plan waits for that load."""
        state, driver = self._state, self._driver
        if not loading.loads_at_once(state, loader, ttl) or key in driver.flight:
            return MISSING

        async def load() -> Any:
            try:
                loaded = await driver.call_loader(loader, key)
            except Exception as error:
                loading.loaded_alone_failed(state, key, error, loader)
                raise
            loading.keep_loaded_alone(state, key, loaded.value, loaded.seconds, ttl, condition)
            return loaded.value

        return await driver.flight.do(key, load)

    async def get_or_load_many(
        self,
        keys: Iterable[K],
        bulk_loader: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        ttl: TTL | TtlRule | None = None,
        value_type: Any = None,
        tags: Tags = (),
        fleet_single_flight: bool | None = None,
    ) -> dict[K, V]:
        """Like ``get_many``; the keys every layer missed go to ``await bulk_loader(missing)``
        in one call, which returns a mapping (keys it leaves out stay missing), cached with
        ``tags``; ``fleet_single_flight`` as ``MultilayerCache.get_or_load_many`` has it."""
        value_type = self._type_for(value_type)
        bulk_loader = tagged(bulk_loader, check_tags(tags))
        options = self._options_for(None, None, fleet_single_flight)
        plan = loading.load_many(
            self._state, keys, bulk_loader, ttl, self._checked_depth, value_type, options
        )
        return await self._run(plan)

    def cached(
        self,
        ttl: TTL | TtlRule | None = None,
        *,
        key: str | Callable[..., Any] | None = None,
        condition: Condition | None = None,
        value_type: Any = None,
        include_self: bool = True,
        tags: Tags | Callable[..., Tags] = (),
        fleet_single_flight: bool | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], AsyncCachedFunction[P, R]]:
        """Decorator for coroutine functions and methods: cache results by arguments (the
        options of ``MultilayerCache.cached``, methods and tags alike). ``await
        f.invalidate(...)`` forgets one result. A call builds the key and asks L1 at once
        (compiled: ``AsyncCachedCall``) and returns a coroutine: the value on an L1 hit,
        else the load, which runs when awaited."""
        check_load_ttl(ttl)  # a TTL, or a function of the result
        check_options(None, condition)
        tags_of = tags_for(tags)
        options = (
            None
            if fleet_single_flight is None
            else self._options_for(None, None, fleet_single_flight)
        )

        def decorate(function: Callable[P, Awaitable[R]]) -> AsyncCachedFunction[P, R]:
            target = decorated(function, include_self, key)
            check_kind(target.function, coroutine=True)
            keys = CallKeys(target.function, key, target.first)
            annotated = return_type(target.function)
            typed = self._type_for(value_type if value_type is not None else annotated)
            state, depth, run = self._state, self._checked_depth, self._run
            plain = target.function
            # A cache of one in-process layer loads a plain miss without a plan
            # (``_load_alone``), unless this function asks for one load in the fleet.
            load_alone = self._load_alone if self._loads_alone and options is None else None

            async def load(
                call_key: Any, args: tuple[Any, ...], kwargs: dict[str, Any], aside: bool
            ) -> Any:
                def call(_: Any) -> Any:
                    return plain(*args, **kwargs)

                tags = tags_of(args, kwargs)
                if load_alone is not None and not aside and not tags:
                    value = await load_alone(call_key, call, ttl, condition)
                    if value is not MISSING:
                        return value
                start = 0 if aside else depth
                loader = tagged(call, tags)
                plan = loading.load(state, call_key, loader, ttl, typed, condition, options, start)
                return await run(plan)

            async def invalidate(*args: Any, **kwargs: Any) -> bool:
                return await self.delete(keys.of(args, kwargs))

            # A hit is a compiled call that returns a settled coroutine (aio/_frontdoor_py.py)
            wrapper = AsyncCachedCall(keys.of, self._first_lookup, load, MISSING, STEPPED_ASIDE)
            functools.update_wrapper(wrapper, plain)
            wrapper.cache_key = keys
            wrapper.invalidate = invalidate
            # The call, or its binding in a class: what AsyncCachedFunction describes to mypy;
            # inspect.iscoroutinefunction answers True for it as for the function it caches.
            return coroutine_like(in_class(wrapper, target), plain)  # type: ignore[no-any-return]

        return decorate

    # ------------------------------------------------------------------ lifetime
    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no background refresh is queued or running and no load is in flight;
        False on timeout."""
        return await self._driver.workers.idle(timeout)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write-behind write acknowledged so far is in its layer or in
        the dead letter (at once without write-behind); False if ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for writer in self._driver.writers.values():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not await writer.flush(left):
                return False
        return True

    async def close(self, timeout: float | None = None) -> None:
        """Deliver the queued write-behind writes (waiting up to ``timeout``, default each
        layer's ``WriteBehind.close_timeout``; what is still queued then goes to the dead
        letter), deliver the queued events to the listeners (for up to a second: see
        ``CLOSE_DELIVERY_SECONDS``), then close the layers that hold connections."""
        if self._sampler is not None:
            self._sampler.stop(timeout=0)  # no join from the event loop: it ends by itself
        for writer in self._driver.writers.values():
            await writer.close(timeout)
        if self.fleet_info is not None:
            await asyncio.to_thread(self._stop_fleet_info)  # removes its hash: blocking IO
        if self.backplane is not None:
            await asyncio.to_thread(self._leave_fleet)  # sends what is queued: blocking IO
        if not self._event_delivery.idle():  # coroutine listeners run on this loop meanwhile
            await asyncio.to_thread(self._event_delivery.drain)
        for layer in self.layers:
            close = getattr(layer, "close", None)
            if callable(close):
                result = close()
                if inspect.isawaitable(result):
                    await result

    async def __aenter__(self) -> AsyncMultilayerCache:
        return self

    async def __aexit__(
        self, kind: type | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ insights
    insights = cache_insights  # no IO: the same plain method on both managers

    # ------------------------------------------------------------------ the fleet's view
    async def global_top_keys(self, n: int = 10) -> list[tuple[Any, int]]:
        """The ``n`` hottest keys across every live instance of the fleet, this one
        included, as ``(key, accesses per minute)`` (see
        ``MultilayerCache.global_top_keys``). The read runs on a thread (the fleet info's
        client is a sync one, shared with its publishing thread)."""
        if self.fleet_info is None:  # reads the others' only: this instance publishes none
            self._publish_fleet_info(reader_of_fleet_info())
        return await asyncio.to_thread(self.fleet_info.top, n)
