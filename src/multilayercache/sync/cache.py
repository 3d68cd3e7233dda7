"""``MultilayerCache``: one cache made of layers, fastest first (sync).

    cache = MultilayerCache(
        [InMemoryLayer(max_size=10_000), RedisLayer(url, prefix="app:")],
        [LayerPolicy(ttl=30), LayerPolicy(ttl=600, ttl_jitter=0.1)],
    )
    user = cache.get_or_load(f"user:{user_id}", lambda key: db.load_user(user_id))

* ``get``: the first layer that has the key answers; the value is copied up into the faster
  layers whose policy accepts it (by default: L1 once its doorkeeper has seen the key).
* ``set`` writes through every layer (slowest first, so a value the shared layer cannot
  encode is written nowhere); ``delete`` removes from every layer.
* ``get_or_load``: concurrent callers for one missing key share one lookup below L1 and one
  loader call.
* A layer that fails on a read counts as a miss there (logged, counted in ``stats()``); a
  failed write raises (``LayerError``, naming the layer), since the caller must know that
  the write may not have happened. The faster layers then no longer hold the key (see
  ``set``), so a read falls through to the loader, or to the layer once it is back.

Every decision is in ``multilayercache.core.plans`` (shared with ``AsyncMultilayerCache``);
this class only performs the calls, through ``Driver``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .._build import twin
from ..analytics.options import InsightsOptions
from ..analytics.sampler import cache_insights, insights_options, start_insights
from ..core import loading, plans
from ..core.adaptive import TtlRule, check_load_ttl
from ..core.decorate import (
    CachedFunction,
    CallKeys,
    Condition,
    P,
    R,
    check_kind,
    check_options,
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
from .driver import Driver, PlanRunner
from .events import EventDelivery
from .singleflight import SingleFlight

if TYPE_CHECKING:
    # redis is an extra: imported when a cache asks for one of these
    from ..layers.redis.backplane import Backplane
    from ..layers.redis.fleetinfo import FleetInfo

    # the twin carries the annotations; the compiled module shares them
    from . import _frontdoor_py as _frontdoor
else:
    _frontdoor = twin("multilayercache.sync.frontdoor", "multilayercache.sync._frontdoor_py")
FrontDoor, CachedCall = _frontdoor.FrontDoor, _frontdoor.CachedCall

K = TypeVar("K")
V = TypeVar("V")

Loader = Callable[[Any], Any]


class MultilayerCache(ManagerBase):
    """A cache made of layers (``InMemoryLayer``, ``RedisLayer``, ...), fastest first.

    ``value_type``: what values are read back as from layers that encode them (Redis),
    e.g. ``tuple[int, str]`` or a dataclass; ``None`` gives their serializer's data model
    (see ``multilayercache.serializers.msgpack``). ``get_or_load`` and ``@cached`` take
    their own.
    """

    _driver: Driver  # ManagerBase's, built from the class given to it
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
            allow_async=False,
            lock=threading.Lock(),
            value_type=value_type,
            load_options=load_options,
        )
        super().__init__(state, Driver, backplane_of(backplane), fleet_info_of(fleet_info))
        # Off by default; on: a thread samples the layers' counters (analytics/sampler.py).
        self._sampler = start_insights(self.layers, sampling, state.events.emit)
        self._event_delivery = EventDelivery(state.events)
        if on_event is not None:  # called on a thread of its own (sync/events.py)
            self.subscribe(on_event)
        # Reads are mostly L1 hits: answer them from compiled code, with the same behaviour
        # as ``get`` below (see sync/_frontdoor_py.py). The plans take over below L1.
        # With one in-process layer and nothing else, writes and common misses skip the
        # plans too (``CacheState.alone``, ``loading.may_load_at_once``).
        door = FrontDoor(
            self._first_get,
            self._first_lookup,
            self._get_below,
            self._load_below,
            check_load_ttl,  # a TTL, or a function of the loaded value
            MISSING,
            STEPPED_ASIDE,
            self._set_below,
            state.alone,
            self._loads_at_once() if loading.may_load_at_once(state) else None,
        )
        self._door = door
        # The instance's own get, get_or_load and set, in place of the methods (unless a
        # subclass overrides them): an L1 hit then runs no Python frame of the manager.
        for name in ("get", "get_or_load", "set"):
            if getattr(type(self), name) is getattr(MultilayerCache, name):
                setattr(self, name, getattr(door, name))

    # ------------------------------------------------------------------ reads
    def get(self, key: Any, default: Any = None) -> Any:
        """The value from the fastest layer that has it, or ``default``."""
        # An instance's ``get`` is its front door's (set in __init__): this method gives
        # the name its signature and its docs, and answers an unbound call the same way.
        return self._door.get(key, default)

    def _get_below(self, key: Any, default: Any) -> Any:
        state = self._state
        tier = plans.direct_tier(state, self._checked_depth)
        if tier is not None:  # the common read below L1: no decision needs the plan
            return self._driver.read_at_once(tier, key, default)
        return self._run(plans.read(state, key, default, self._checked_depth, state.value_type))

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The keys found in any layer, as a dict (one batch call per layer)."""
        state = self._state
        tier = plans.direct_batch_tier(state)
        if tier is not None:  # the common batch below L1: no decision needs the plan
            return self._driver.read_many_at_once(tier, keys)
        return self._run(plans.read_many(state, keys, state.value_type))

    def contains(self, key: Any) -> bool:
        """Whether any layer holds the key (not counted as a read; nothing is promoted)."""
        return self._run(plans.contains(self._state, key))

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def remaining_ttl(self, key: Any) -> float | None:
        """How long the longest-lived layer holding the key keeps serving it, in seconds
        (``math.inf``: until deleted), or ``None`` if no layer holds it. Each layer's own
        ``remaining_ttl`` tells its part."""
        return self._run(plans.remaining_ttl(self._state, key))

    # ------------------------------------------------------------------ writes
    def set(self, key: Any, value: Any, ttl: TTL | None = None, tags: Tags = ()) -> None:
        """Write through every layer (each caps ``ttl`` by its policy). A value the shared
        layer cannot encode raises ``SerializationError`` and is written nowhere.

        If a layer fails (its backend down or too slow, or its circuit breaker open), the
        ``LayerError`` it raised (naming the layer) reaches the caller, and the faster
        layers drop the key instead of keeping the value it was to replace: a write that
        timed out may still land, so neither value is known to be the layer's. A
        write-behind layer is not waited for: the write is queued (see ``WriteBehind``).
        ``tags``: ``invalidate_tags`` of any of them drops the value (``core/tags.py``)."""
        # As ``get``: an instance's ``set`` is its front door's, which writes a cache of one
        # in-process layer at once, and otherwise calls ``_set_below``.
        self._door.set(key, value, ttl, tags)

    def _set_below(self, key: Any, value: Any, ttl: TTL | None, tags: Tags) -> None:
        try:
            if tags:
                plan = plans.write(
                    self._state, single(key, value), ttl, self._state.value_type, check_tags(tags)
                )
                self._run(plan)
            else:
                # ``_set_at_once``, inlined: every set() of a cache with a write-behind layer
                state = self._state
                value_type, put_now = state.value_type, self._driver.put_now
                if not (
                    state.writes_at_once
                    and plans.write_at_once(state, key, value, ttl, value_type, put_now)
                ):
                    self._run(plans.write(state, single(key, value), ttl, value_type))
        finally:  # a failed write may have landed too: the others drop the key either way
            if self.backplane is not None:
                self._announce((key,))

    def set_many(self, mapping: Mapping[Any, Any], ttl: TTL | None = None, tags: Tags = ()) -> None:
        """Write every item through every layer (one batch call per layer); a failure is
        handled as by ``set``, for every key. ``tags``: those of every item."""
        tags = check_tags(tags)
        if not hasattr(mapping, "items"):  # (a list of pairs raised AttributeError: 'items')
            raise TypeError(f"set_many takes a mapping of keys to values, got {mapping!r:.80}")
        try:
            self._run(plans.write(self._state, mapping, ttl, self._state.value_type, tags))
        finally:
            if self.backplane is not None:
                self._announce(mapping)

    def delete(self, key: Any) -> bool:
        """Remove the key from every layer; True if any layer had it. If a layer fails, the
        others are still cleared and its ``LayerError`` is raised. The failed layer may
        still hold the value: this cache does not read the key from it (nor copy it up)
        until a delete or set of the key reaches it; each read sends the delete again."""
        try:
            return self._run(plans.delete(self._state, key))
        finally:
            if self.backplane is not None:
                self._announce((key,))

    def delete_many(self, keys: Iterable[Any]) -> None:
        """Remove the keys from every layer (one batch call per layer); a failure is
        handled as by ``delete``, for every key."""
        keys = list(keys)
        try:
            self._run(plans.delete_many(self._state, keys))
        finally:
            if self.backplane is not None:
                self._announce(keys)

    def clear(self) -> None:
        """Empty the cache: L1 entirely, and a shared layer's keys under its prefix (a batch
        at a time, so Redis never blocks; every node of a cluster)."""
        try:
            self._run(plans.clear(self._state))
        finally:
            if self.backplane is not None:
                self.backplane.publish_clear()

    def invalidate_tags(self, *tags: str) -> None:
        """Drop every value written with any of ``tags``, in every layer of every instance
        (with a backplane): one write per tag in the shared layer, whatever the number of
        values; the shared layer's old entries are no longer served, and expire by their
        TTL (``core/tags.py``)."""
        self._invalidate(check_tags(tags), ())

    def invalidate_prefix(self, *prefixes: str) -> None:
        """Drop every key that starts with one of ``prefixes`` (``"user:42:"``), in every
        layer of every instance (with a backplane), without a scan of the shared layer:
        one write per prefix (see ``invalidate_tags``)."""
        self._invalidate((), check_tags(prefixes, "prefix"))

    def _invalidate(self, tags: tuple[str, ...], prefixes: tuple[str, ...]) -> None:
        at_ms: int | None = None
        try:
            at_ms = self._run(plans.invalidate(self._state, tags, prefixes))
        finally:
            self._announce_marks(tags, prefixes, at_ms)
        if at_ms is not None and self._state.marks_tier is not None:  # (see until_past)
            time.sleep(plans.until_past(at_ms))

    # ------------------------------------------------------------------ primitives
    def add(self, key: Any, value: Any, ttl: TTL | None = None) -> bool:
        """Store the value only if the key is absent (what ``get`` would miss); True if it
        was stored. Atomic: the shared layer decides (a Redis script: of concurrent callers
        in any process, exactly one gets True), then every layer holds the value. With L1
        alone, L1 decides (between this process's threads)."""
        added = self._run(plans.primitives.add(self._state, key, value, ttl, self.value_type))
        if added and self.backplane is not None:
            self._announce((key,))
        return bool(added)

    def touch(self, key: Any, ttl: TTL | None = None) -> bool:
        """Give the key a new TTL from now (each layer capping it as for a write; ``None``:
        their defaults) without rewriting its value, in every layer, atomically in each:
        a concurrent ``set`` is never undone. True if any layer held a fresh value."""
        return self._run(plans.primitives.touch(self._state, key, ttl))

    def incr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """Add ``delta`` to the key's counter atomically (in the shared layer: a Redis
        script) and return the new count. The counter keeps its TTL; a missing key starts
        at 0 and lives ``ttl`` (as Redis' ``INCRBY``). The faster layers drop their copy.
        ``TypeError`` if the value is not an int; ``OverflowError`` past +-(2**53 - 1) in
        Redis (Lua counts in doubles), past 64 bits in L1 alone."""
        try:
            return int(self._run(plans.primitives.incr(self._state, key, delta, ttl)))
        finally:
            if self.backplane is not None:
                self._announce((key,))

    def decr(self, key: Any, delta: int = 1, ttl: TTL | None = None) -> int:
        """``incr`` by ``-delta``."""
        return self.incr(key, -plans.primitives.checked_delta(delta), ttl)

    # ------------------------------------------------------------------ loading
    def get_or_load(
        self,
        key: K,
        loader: Callable[[K], V],
        ttl: TTL | TtlRule | None = None,
        value_type: Any = None,
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
        tags: Tags = (),
        fleet_single_flight: bool | None = None,
    ) -> V:
        """The cached value, or ``loader(key)``'s, written through every layer (with
        ``tags``; a loader made by ``with_context`` may set others). Concurrent
        callers for one missing key share one lookup below L1 and one loader call (and its
        value or exception). A stale value is served at once while one background reload
        runs, or instead of a failed or slow load (``LoadOptions``; the timeouts here
        override the cache's for this call). A loaded value a layer cannot encode is still
        returned, and cached in the layers that can hold it. ``ttl``: seconds, or a function
        of the loaded value; a loader made by ``with_context`` may set it, and say the
        cached value is unchanged (``LoadContext``). ``fleet_single_flight``: one load
        across every instance for this call (``None``: as ``LoadOptions`` says)."""
        # As ``get``: an instance's ``get_or_load`` is its front door's.
        return self._door.get_or_load(  # type: ignore[no-any-return]  # as on a hit
            key, loader, ttl, value_type, soft_timeout, hard_timeout, tags, fleet_single_flight
        )

    def _load_below(
        self,
        key: Any,
        loader: Loader,
        ttl: TTL | TtlRule | None,
        value_type: Any,
        soft_timeout: float | None,
        hard_timeout: float | None,
        fleet_single_flight: bool | None,
        stepped_aside: bool,
        tags: Tags = (),
    ) -> Any:
        options = self._options_for(soft_timeout, hard_timeout, fleet_single_flight)
        loader = tagged(loader, check_tags(tags))
        start = 0 if stepped_aside else self._checked_depth
        plan = loading.load(
            self._state, key, loader, ttl, self._type_for(value_type), None, options, start
        )
        return self._run(plan)

    def _loads_at_once(self) -> tuple[CacheState, SingleFlight, Callable[[Any, Any], Any]]:
        """What the front door's plan-free loads use: the state, the flight (shared with the
        plans' loads) and the driver's loader call (timed, counted)."""
        return self._state, self._driver.flight, self._driver.call_loader

    def get_or_load_many(
        self,
        keys: Iterable[K],
        bulk_loader: Callable[[list[K]], Mapping[K, V]],
        ttl: TTL | TtlRule | None = None,
        value_type: Any = None,
        tags: Tags = (),
        fleet_single_flight: bool | None = None,
    ) -> dict[K, V]:
        """Like ``get_many``; the keys every layer missed go to ``bulk_loader(missing)`` in
        one call, which returns a mapping (keys it leaves out stay missing), cached with
        ``tags``. Concurrent callers share the lookups and loads of the keys they have in
        common; stale values are served and refreshed as by ``get_or_load`` (one bulk call
        per batch), and so is ``fleet_single_flight`` (the keys this instance takes the
        leases of are loaded in one bulk call, the others waited for)."""
        value_type = self._type_for(value_type)
        bulk_loader = tagged(bulk_loader, check_tags(tags))
        options = self._options_for(None, None, fleet_single_flight)
        plan = loading.load_many(
            self._state, keys, bulk_loader, ttl, self._checked_depth, value_type, options
        )
        return self._run(plan)

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
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """Decorator: cache a function's results by its arguments.

        >>> @cache.cached(ttl=60, condition=lambda user: user is not None)
        ... def user(user_id: int) -> User | None: ...
        >>> user.invalidate(42)

        Arguments are normalised by the signature (``f(1)`` and ``f(a=1)`` are one key).
        On a method (also a ``classmethod`` or ``staticmethod``: put ``@cache.cached()``
        above them), ``obj.method(...)``, ``obj.method.invalidate(...)`` and
        ``obj.method.cache_key(...)`` bind the instance, which is part of the key: by its
        class's ``__cache_key__()`` if it defines one, else by itself (see
        ``multilayercache.core.decorate``); ``include_self=False`` leaves it out. ``key``: a
        template (``"user:{user_id}"``) or a function of the arguments, instead.
        ``condition(value)``: cache a result only when true. ``value_type``: what a shared
        layer hands back (default: the return annotation). ``tags``: the results' tags, or
        a function of the arguments that returns them. ``fleet_single_flight``: one load
        across every instance (``None``: as the cache's ``LoadOptions`` says). An L1 hit is
        a compiled fast path (``CachedCall``).
        """
        check_load_ttl(ttl)  # a TTL, or a function of the result
        check_options(None, condition)
        tags_of = tags_for(tags)
        options = (
            None
            if fleet_single_flight is None
            else self._options_for(None, None, fleet_single_flight)
        )

        def decorate(function: Callable[P, R]) -> CachedFunction[P, R]:
            target = decorated(function, include_self, key)
            check_kind(target.function, coroutine=False)
            keys = CallKeys(target.function, key, target.first)
            annotated = return_type(target.function)
            typed = self._type_for(value_type if value_type is not None else annotated)
            state, depth, run = self._state, self._checked_depth, self._run
            plain = target.function
            # A cache of one in-process layer loads a plain miss without a plan (the front
            # door's ``load_alone``), unless this function asks for one load in the fleet.
            load_alone = self._door.load_alone if options is None else None

            def load(
                call_key: Any, args: tuple[Any, ...], kwargs: dict[str, Any], aside: bool
            ) -> Any:
                def call(_: Any) -> Any:
                    return plain(*args, **kwargs)

                tags = tags_of(args, kwargs)
                if load_alone is not None and not aside and not tags:
                    value = load_alone(call_key, call, ttl, condition)
                    if value is not MISSING:
                        return value
                start = 0 if aside else depth
                loader = tagged(call, tags)
                plan = loading.load(state, call_key, loader, ttl, typed, condition, options, start)
                return run(plan)

            wrapper = CachedCall(keys.of, self._first_lookup, load, MISSING, STEPPED_ASIDE)
            functools.update_wrapper(wrapper, plain)
            wrapper.cache_key = keys
            wrapper.invalidate = lambda *args, **kwargs: self.delete(keys.of(args, kwargs))
            # The call, or its binding in a class: what CachedFunction describes to mypy.
            return in_class(wrapper, target)  # type: ignore[no-any-return]

        return decorate

    # ------------------------------------------------------------------ lifetime
    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no background refresh is queued or running and no load is in flight;
        False on timeout."""
        return self._driver.workers.idle(timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write-behind write acknowledged so far is in its layer or in
        the dead letter (at once without write-behind); False if ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for writer in self._driver.writers.values():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not writer.flush(left):
                return False
        return True

    def close(self, timeout: float | None = None) -> None:
        """Deliver the queued write-behind writes (waiting up to ``timeout``, default each
        layer's ``WriteBehind.close_timeout``; what is still queued then goes to the dead
        letter), deliver the queued events to the listeners (for up to a second: see
        ``CLOSE_DELIVERY_SECONDS``), then close the layers that hold connections."""
        if self._sampler is not None:
            self._sampler.stop()
        for writer in self._driver.writers.values():
            writer.close(timeout)
        self._stop_fleet_info()
        self._leave_fleet()
        self._event_delivery.drain()
        for layer in self.layers:
            close = getattr(layer, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> MultilayerCache:
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ insights
    insights = cache_insights  # no IO: the same plain method on both managers

    # ------------------------------------------------------------------ the fleet's view
    def global_top_keys(self, n: int = 10) -> list[tuple[Any, int]]:
        """The ``n`` hottest keys across every live instance of the fleet (those that
        publish: ``fleet_info=``), this one included, hottest first, as ``(key, accesses
        per minute)``: each instance's recent rate of the key, added up (see
        ``multilayercache.analytics.globaltop``). Keys are the text the shared layer stores
        them under (a ``@cached`` call's canonical text). One round trip to the shared
        layer's server; ``LayerUnavailableError`` if it cannot be reached.

        >>> cache.global_top_keys(3)
        [('user:42', 5130), ('user:7', 2214), ('home', 1980)]
        """
        if self.fleet_info is None:  # reads the others' only: this instance publishes none
            self._publish_fleet_info(reader_of_fleet_info())
        hottest: list[tuple[Any, int]] = self.fleet_info.top(n)
        return hottest
