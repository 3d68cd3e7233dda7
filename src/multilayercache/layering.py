"""IO-free logic shared by ``MultilayerCache`` and ``AsyncMultilayerCache``: the layers and
their policies, the decorator's keys, and the numbers ``stats()`` reports."""

from __future__ import annotations

import inspect
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .latency import LatencyRecorder, Percentiles
from .layers.base import LayerPolicy
from .stats import LayerStats

log = logging.getLogger("multilayercache")

_LAYER_METHODS = ("get", "set", "delete", "get_many", "set_many", "stats")


@dataclass
class LayerSlot:
    """One layer as the manager holds it."""

    layer: Any
    policy: LayerPolicy
    name: str
    is_async: bool
    latency: LatencyRecorder = field(default_factory=LatencyRecorder)
    read_errors: int = 0
    write_errors: int = 0
    last_warning: float = -1e9


def make_slots(
    layers: Sequence[Any], policies: Sequence[LayerPolicy | None] | None, allow_async: bool
) -> list[LayerSlot]:
    """Check the layers (fastest first) and pair each with its policy."""
    layers = list(layers)
    if not layers:
        raise ValueError("a cache needs at least one layer")
    if policies is None:
        policies = [None] * len(layers)
    policies = list(policies)
    if len(policies) != len(layers):
        raise ValueError(f"got {len(policies)} policies for {len(layers)} layers")
    slots = []
    names: set[str] = set()
    for index, (layer, policy) in enumerate(zip(layers, policies, strict=True)):
        missing = [
            method for method in _LAYER_METHODS if not callable(getattr(layer, method, None))
        ]
        if missing:
            raise TypeError(f"layer {index} ({type(layer).__name__}) lacks {', '.join(missing)}")
        if policy is not None and not isinstance(policy, LayerPolicy):
            raise TypeError(f"policy {index} must be a LayerPolicy or None")
        is_async = inspect.iscoroutinefunction(layer.get)
        if is_async and not allow_async:
            raise TypeError(
                f"layer {index} ({type(layer).__name__}) is asyncio-only: "
                "use AsyncMultilayerCache for it"
            )
        name = str(getattr(layer, "name", f"layer{index}"))
        if name in names:
            name = f"{name}#{index}"
        names.add(name)
        slots.append(LayerSlot(layer, policy or LayerPolicy(), name, is_async))
    return slots


def check_tags(tags: Iterable[str]) -> None:
    """Tags are reserved in this version: accepted only when empty."""
    if tags:
        raise NotImplementedError(
            "tags are reserved: tag-based invalidation is not implemented yet, so tagged "
            "writes are refused rather than silently ignored"
        )


def unique(keys: Iterable[Any]) -> list[Any]:
    """Keys in first-seen order, without repeats."""
    try:
        return list(dict.fromkeys(keys))
    except TypeError:
        raise TypeError("cache keys must be hashable") from None


def function_key(function: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> str:
    """A key for one call of ``function``: stable across processes (so L2 can share it).

    Built from the function's qualified name and a canonical JSON of the arguments; arguments
    JSON cannot represent need an explicit ``key=`` function.
    """
    try:
        arguments = msgspec.json.encode([list(args), sorted(kwargs.items())])
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"cannot build a cache key for {function.__qualname__} from its arguments "
            f"({error}); pass key=lambda *args, **kwargs: ... to cached()"
        ) from None
    return f"{function.__module__}.{function.__qualname__}:{arguments.decode()}"


def key_maker(function: Callable[..., Any], key: Callable[..., Any] | None) -> Callable[..., Any]:
    """The decorator's key for a call: ``key(*args, **kwargs)`` if given, else
    ``function_key``."""
    if key is not None:
        return key
    return lambda *args, **kwargs: function_key(function, args, kwargs)


def promotable(slot: LayerSlot, hits: Mapping[Any, Any]) -> dict[Any, Any]:
    """The hits found below that ``slot``'s policy lets into its layer."""
    if slot.policy.promote == "never":
        return {}
    accepts = slot.policy.accepts_promotion
    return {key: value for key, value in hits.items() if accepts(key, slot.layer)}


def loaded_for(missing: list[Any], result: Any, loader: Callable[..., Any]) -> dict[Any, Any]:
    """What a bulk loader returned for the ``missing`` keys (keys it was not asked for are
    ignored; keys it left out stay missing)."""
    if not isinstance(result, Mapping):
        raise TypeError(
            f"bulk loader {getattr(loader, '__qualname__', loader)!r} must return a mapping of "
            f"key -> value, got {type(result).__name__}"
        )
    return {key: result[key] for key in missing if key in result}


class ManagerBase:
    """State and IO-free behaviour shared by the sync and asyncio managers."""

    def __init__(
        self,
        layers: Sequence[Any],
        policies: Sequence[LayerPolicy | None] | None,
        record_latency: bool,
        flight: Any,
        allow_async: bool,
    ) -> None:
        self._slots: list[LayerSlot] = make_slots(layers, policies, allow_async=allow_async)
        self.layers = [slot.layer for slot in self._slots]
        self._record_latency = record_latency
        self._flight = flight
        self._rng = random.Random()
        self._loads = LatencyRecorder()
        self._loader_calls = 0
        self._count_lock = threading.Lock()

    def _count_load(self, seconds: float) -> None:
        self._loads.record(seconds)
        with self._count_lock:
            self._loader_calls += 1

    @property
    def in_flight(self) -> int:
        """Loads running now (keys being loaded by ``get_or_load``)."""
        return len(self._flight)

    def stats(self) -> CacheStats:
        """Every layer's stats, loader calls, coalesced waits and load latency percentiles."""
        return build_stats(
            self._slots,
            self._loader_calls,
            self._flight.coalesced,
            self._loads,
            self._record_latency,
        )


@dataclass(frozen=True)
class CacheStats:
    """What a manager reports: each layer's own counters, and its coordination."""

    layers: list[LayerStats]
    loader_calls: int
    """Calls of a loader (``get_or_load``, ``get_or_load_many``, ``@cached``)."""
    coalesced_waits: int
    """Callers that waited for another caller's load of the same key instead of loading."""
    load_latency: Percentiles
    """Loader durations (seconds), over the most recent loads."""
    layer_latency: dict[str, Percentiles]
    """Per-layer read latency (seconds); empty unless ``record_latency=True``."""
    read_errors: dict[str, int]
    """Failed reads per layer (treated as misses)."""
    write_errors: dict[str, int]

    def layer(self, name: str) -> LayerStats:
        for stats in self.layers:
            if stats.name == name:
                return stats
        raise KeyError(name)


def build_stats(
    slots: list[LayerSlot],
    loader_calls: int,
    coalesced: int,
    loads: LatencyRecorder,
    timed: bool,
) -> CacheStats:
    return CacheStats(
        layers=[slot.layer.stats() for slot in slots],
        loader_calls=loader_calls,
        coalesced_waits=coalesced,
        load_latency=loads.percentiles(),
        layer_latency={slot.name: slot.latency.percentiles() for slot in slots} if timed else {},
        read_errors={slot.name: slot.read_errors for slot in slots},
        write_errors={slot.name: slot.write_errors for slot in slots},
    )


_error_lock = threading.Lock()
WARNING_INTERVAL_SECONDS = 10.0  # a failing layer logs once per interval, not per call


def note_read_error(slot: LayerSlot, key: Any, error: Exception) -> None:
    _note(slot, "read", key, error, "treated as a miss")


def note_write_error(slot: LayerSlot, key: Any, error: Exception) -> None:
    _note(slot, "write", key, error, "not cached")


def _note(slot: LayerSlot, action: str, key: Any, error: Exception, outcome: str) -> None:
    with _error_lock:
        if action == "read":
            slot.read_errors += 1
        else:
            slot.write_errors += 1
        errors = slot.read_errors + slot.write_errors
        warn = time.monotonic() - slot.last_warning >= WARNING_INTERVAL_SECONDS
        if warn:
            slot.last_warning = time.monotonic()
    if warn:
        log.warning(
            "%s: %s of %r failed, %s (%d errors so far): %s",
            slot.name,
            action,
            key,
            outcome,
            errors,
            error,
        )


now = time.perf_counter
