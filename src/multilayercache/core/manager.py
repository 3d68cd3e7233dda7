"""What ``MultilayerCache`` and ``AsyncMultilayerCache`` share apart from IO: their state and
driver, the L1 fast path, introspection, and the decorator's checks."""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable
from typing import Any

from . import plans, steering
from .events import EventHub, EventListener, Removal
from .fleetflight import check_fleet
from .options import LayerPolicy, LoadOptions
from .state import CacheState
from .stats import CacheStats
from .tiers import timed


class ManagerBase:
    """The IO-free half of a manager; ``driver`` is the sync or asyncio driver class."""

    def __init__(
        self,
        state: CacheState,
        driver: Callable[[CacheState], Any],
        backplane: Any = None,
        fleet_info: Any = None,
    ) -> None:
        self._state = state
        self._driver = driver(state)
        self._run = self._driver.run
        self.layers: list[Any] = [tier.layer for tier in state.tiers]
        self.backplane: Any = None
        """The ``Backplane`` telling the other instances what this one changed (``None``:
        off, the default)."""
        if backplane is not None and backplane is not False:
            self._join_fleet(backplane)
        if state.load_options.fleet_single_flight:
            check_fleet(state, self.backplane)
        self.fleet_info: Any = None
        """The ``FleetInfo`` publishing this instance's hot keys and stats (``None``: off,
        the default; ``global_top_keys`` then reads the others' only)."""
        if fleet_info is not None and fleet_info is not False:
            self._publish_fleet_info(fleet_info)
        # An in-process L1 answers without IO: its hits skip the plans and the driver, which
        # then start below it (``_checked_depth``), or at it when it stepped aside.
        first = state.tiers[0]
        self._first_get: Callable[[Any, Any], Any] = _not_checked
        self._first_lookup: Callable[[Any, Any, Any], Any] = _aside
        self._checked_depth = 0
        if first.in_process:
            timed_too = state.record_latency
            self._first_get = timed(first, "get") if timed_too else first.layer.get
            if first.has("lookup"):
                self._first_lookup = timed(first, "lookup") if timed_too else first.layer.lookup
            self._checked_depth = 1
        self._event_delivery: Any = None  # the sync or asyncio EventDelivery (set by them)
        self._removals_forwarded = False
        for writer in self._driver.writers.values():
            writer.emit = state.events.emit  # dead letters

    # ---------------------------------------------------------------- the fleet
    def _join_fleet(self, backplane: Any) -> None:
        """Start ``backplane`` (a ``Backplane``, see ``layers/redis/backplane.py``) on the
        prefix of the first shared layer: messages of the other instances drop keys from
        this one's in-process layers, and this one's writes are announced to them."""
        shared = next((tier for tier in self._state.tiers if not tier.in_process), None)
        if shared is None or not isinstance(getattr(shared.layer, "prefix", None), str):
            raise ValueError("a backplane needs a shared layer (a RedisLayer) to join a fleet")
        backplane.start(
            shared.layer.prefix,
            self._dropped_elsewhere,
            self._cleared_elsewhere,
            self._marked_elsewhere,
            default_url=getattr(shared.layer, "url", None),
            default_client=getattr(shared.layer, "client", None),
        )
        self.backplane = backplane
        self._state.call_texts = {}
        for writer in self._driver.writers.values():  # by text: a @cached call's key is none
            writer.announce = self._announce
        fleet = self._driver.fleet  # one load across the fleet: its waiters, woken by messages
        fleet.announce = backplane.publish_keys
        backplane.listen(fleet.wake)

    def _announce(self, keys: Any) -> None:
        """Tell the other instances that ``keys`` changed (after a write of this one): by
        the text a shared layer stores them under (a ``@cached`` call's too)."""
        backplane = self.backplane
        if backplane is not None:
            backplane.publish_keys([text for text in map(_shared_text, keys) if text])

    def _announce_marks(
        self, tags: tuple[str, ...], prefixes: tuple[str, ...], at_ms: int | None
    ) -> None:
        """Tell the other instances of tag and prefix invalidations (made at ``at_ms``;
        ``None``: the shared layer failed, the time is now)."""
        backplane = self.backplane
        if backplane is not None:
            backplane.publish_marks(tags, prefixes, at_ms)

    def _marked_elsewhere(
        self, tags: tuple[str, ...], prefixes: tuple[str, ...], at_ms: int
    ) -> None:
        """Another instance invalidated ``tags`` or ``prefixes`` at ``at_ms``."""
        plans.drop_marked(self._state, tags, prefixes, at_ms)

    def _dropped_elsewhere(self, keys: tuple[str, ...]) -> None:
        """Another instance changed ``keys``: drop them from the in-process layers. The
        key's generation is bumped first, so that a read of the old value from the shared
        layer running now does not copy it back up (``core/generations.py``)."""
        state = self._state
        targets: tuple[Any, ...] = keys
        calls = state.call_texts
        if calls:  # a @cached call's key, named by its text
            found = [calls.pop(key) for key in keys if key in calls]
            if found:
                targets = (*keys, *found)
        generations = state.generations
        if generations is not None:
            generations.bump_many(targets)
        for tier in state.tiers:
            if tier.in_process:
                for key in targets:
                    tier.layer.delete(key)

    def _cleared_elsewhere(self) -> None:
        """Another instance cleared the cache, or this one can no longer vouch for what
        its in-process layers hold: drop it all."""
        generations = self._state.generations
        if generations is not None:
            generations.bump_all()
        self._state.invalidations.loaded = False  # marks may have been missed too: reread
        if self._state.call_texts is not None:
            self._state.call_texts = {}
        for tier in self._state.tiers:
            if tier.in_process:
                tier.layer.clear()

    def _leave_fleet(self) -> None:
        if self.backplane is not None:
            self.backplane.close()

    # ---------------------------------------------------------------- fleet info
    def _publish_fleet_info(self, fleet_info: Any) -> None:
        """Start ``fleet_info`` (a ``FleetInfo``, see ``layers/redis/fleetinfo.py``) on the
        prefix of the first shared layer: it publishes this instance's hot keys (those of
        its first in-process layer, which sees every read) and stats, every period."""
        shared = self._shared_tier("fleet_info")
        first = self._state.tiers[0]
        manager = weakref.ref(self)  # the publisher's thread must not keep the cache alive

        def source() -> Any:
            cache = manager()
            return None if cache is None else cache.stats()

        fleet_info.start(
            shared.layer.prefix,
            source,
            default_url=getattr(shared.layer, "url", None),
            default_client=getattr(shared.layer, "client", None),
            cluster=bool(getattr(shared.layer, "is_cluster", False)),
            # The first layer sees every read; an in-process one without per-key counts (a
            # layer of the user's own) publishes no keys, its stats still.
            counted=first.layer if first.in_process else None,
            text_of=_text_in(shared.layer),
        )
        self.fleet_info = fleet_info

    def _shared_tier(self, feature: str) -> Any:
        shared = next((tier for tier in self._state.tiers if not tier.in_process), None)
        if shared is None or not isinstance(getattr(shared.layer, "prefix", None), str):
            raise ValueError(f"{feature} needs a shared layer (a RedisLayer)")
        return shared

    def _stop_fleet_info(self) -> None:
        if self.fleet_info is not None:
            self.fleet_info.close()

    @property
    def value_type(self) -> Any:
        """What values are read back as from layers that encode them (``None``: their
        serializer's data model, see ``multilayercache.serializers.msgpack``)."""
        return self._state.value_type

    @property
    def in_flight(self) -> int:
        """Loads running now (keys being loaded by ``get_or_load``)."""
        return len(self._driver.flight)

    def stats(self) -> CacheStats:
        """Every layer's stats, loader calls, coalesced waits and load latency percentiles
        (counted since the cache was created)."""
        return self._state.stats(self._driver.flight.coalesced)

    def __repr__(self) -> str:
        layers = ", ".join(repr(layer) for layer in self.layers)
        return f"{type(self).__name__}([{layers}])"

    def _set_at_once(self, key: Any, value: Any, ttl: Any) -> bool:
        """``set`` without a plan when no layer has to be waited for (see
        ``plans.write_at_once``); False: run the plan."""
        state = self._state
        return state.writes_at_once and plans.write_at_once(
            state, key, value, ttl, state.value_type, self._driver.put_now
        )

    def _type_for(self, value_type: Any) -> Any:
        return self._state.value_type if value_type is None else value_type

    @property
    def load_options(self) -> LoadOptions:
        """Stale-while-revalidate, fail-safe and timeouts of ``get_or_load``."""
        return self._state.load_options

    def _options_for(
        self,
        soft_timeout: float | None,
        hard_timeout: float | None,
        fleet_single_flight: bool | None = None,
    ) -> LoadOptions:
        """The cache's load options, with a call's own timeouts and fleet single flight."""
        options = self._state.load_options
        if soft_timeout is None and hard_timeout is None and fleet_single_flight is None:
            return options
        if fleet_single_flight is None:
            fleet_single_flight = options.fleet_single_flight
        elif fleet_single_flight is True and not options.fleet_single_flight:
            check_fleet(self._state, self.backplane)
        return dataclasses.replace(
            options,
            soft_timeout=options.soft_timeout if soft_timeout is None else soft_timeout,
            hard_timeout=options.hard_timeout if hard_timeout is None else hard_timeout,
            fleet_single_flight=fleet_single_flight,
        )

    # ---------------------------------------------------------------- steering
    def update_policy(self, layer: int | str | Any, **changes: Any) -> LayerPolicy:
        """Change one layer's ``LayerPolicy`` fields on the running cache, from the next
        operation on; returns the layer's policy now. ``layer``: its index (0 is the
        fastest), the layer, or its name. All or nothing: an unknown field or a bad value
        raises (naming it) and changes nothing. Safe under concurrent traffic; entries
        already held keep their lifetimes. An in-process layer whose policy leaves the TTL
        to the layer (``LayerPolicy()``) takes a new ``ttl`` as its own default: the policy
        returned still says ``ttl=None``, and ``layer.default_ttl`` is the new TTL. See
        ``multilayercache.core.steering``.

        >>> cache.update_policy(1, ttl=600, stale_ttl=3600)      # L2: longer, and stale
        >>> cache.update_policy("memory", refresh_ahead=0.8)
        >>> cache.update_policy(1, breaker=BreakerPolicy(failures=10, max_cooldown=30))
        """
        return steering.update_policy(self._state, layer, changes)

    @property
    def policies(self) -> list[LayerPolicy]:
        """Each layer's policy now, fastest first."""
        return [tier.policy for tier in self._state.tiers]

    # ---------------------------------------------------------------- events
    @property
    def events(self) -> EventHub:
        """The cache's events (``core/events.py``): ``events.emit(event)`` queues one for
        the listeners, ``events.stats()`` counts what was delivered, dropped and failed."""
        return self._state.events

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener(event)`` off the request path for every event from now on:
        ``Removal`` (an entry left an in-process layer), ``Refresh``, ``BreakerTransition``,
        ``DeadLettered``, ``Anomaly``. Returns a function that unsubscribes it.

        >>> cache.subscribe(lambda event: print(event))  # doctest: +SKIP
        """
        self._event_delivery.check(listener)
        unsubscribe = self._state.events.subscribe(listener)
        self._forward_removals()
        return unsubscribe

    def _forward_removals(self) -> None:
        """Once somebody listens: the in-process layers' removals become events."""
        if self._removals_forwarded:
            return
        self._removals_forwarded = True
        emit = self._state.events.emit
        for tier in self._state.tiers:
            listen = getattr(tier.layer, "add_removal_listener", None)
            if callable(listen):
                listen(functools.partial(_removal_event, emit, tier.name))


def _removal_event(
    emit: Callable[[Any], None], layer: str, key: Any, value: Any, cause: Any
) -> None:
    emit(Removal(layer, key, value, cause))


def _shared_text(key: Any) -> str | None:
    """The text a shared layer stores ``key`` under (``None``: it stores none)."""
    if type(key) is str:
        return key
    try:
        return getattr(key, "text", None)
    except TypeError:  # a call whose arguments have no shared text
        return None


def _text_in(layer: Any) -> Callable[[Any], str | None]:
    """The text ``layer`` (a shared layer) stores a key under, without its prefix (``None``:
    it stores no such key)."""
    start = len(layer.prefix)

    def text_of(key: Any) -> str | None:
        try:
            return str(layer.redis_key(key))[start:]
        except (TypeError, ValueError):
            return None

    return text_of


def _not_checked(key: Any, default: Any) -> Any:
    """The fast path's ``get`` when the first layer is not in-process: nothing found, so
    every read goes through the plans from the first layer on."""
    return default


def _aside(key: Any, missing: Any, aside: Any) -> Any:
    """The fast path's ``lookup`` when the first layer is not in-process."""
    return aside
