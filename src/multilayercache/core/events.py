"""What a running cache tells its listeners, and the bounded buffer events wait in.

A cache emits an event where something worth knowing happens: an entry left a layer
(``Removal``), a background refresh ended (``Refresh``), a breaker changed state
(``BreakerTransition``), write-behind gave writes up to the dead letter (``DeadLettered``),
traffic broke from its baseline (``Anomaly``). Each kind is a small frozen dataclass, so a
listener can match on it::

    def on_event(event: Event) -> None:
        match event:
            case BreakerTransition(layer=layer, to_state="open"):
                alert(f"{layer} is down")
            case Removal(cause="evicted"):
                evictions.inc()

Events never reach a listener on the request path: ``emit`` only appends to an
``EventBuffer`` (drop-and-count when it is full, never waiting) and wakes a delivery worker
(``sync/events.py``, ``aio/events.py``), which calls the listeners. So a slow or hanging
listener costs the cache nothing but the events it misses, and those are counted.

IO-free, like the rest of ``core``: the worker passes in how to wake it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

RemovalCause = Literal["evicted", "expired", "replaced", "invalidated", "rejected"]
"""Why an entry left a layer (Caffeine's ``RemovalCause``, with admission's own):

* ``evicted``: the size or weight bound made room for another entry;
* ``expired``: its TTL ran out;
* ``replaced``: a ``set`` (or ``incr``) wrote over a live entry: the old value left;
* ``invalidated``: ``delete``, ``clear``, a tag, prefix or backplane invalidation;
* ``rejected``: a new entry lost W-TinyLFU admission to a more frequent one, or was
  turned away by its write (heavier than the whole layer, or hash flooding).
"""

REMOVAL_CAUSES: tuple[RemovalCause, ...] = (
    "evicted",
    "expired",
    "replaced",
    "invalidated",
    "rejected",
)

RemovalListener = Callable[[Any, Any, str], Any]
"""``listener(key, value, cause)``: called off the request path for each removal."""


@dataclass(frozen=True, slots=True)
class Removal:
    """An entry left an in-process layer (``layer`` is its name)."""

    layer: str
    key: Any
    value: Any
    cause: RemovalCause

    @property
    def evicted(self) -> bool:
        """Whether the cache chose to drop it (size bound or admission), as Caffeine's
        ``wasEvicted``: not the user's doing, not a replacement."""
        return self.cause in ("evicted", "rejected")


@dataclass(frozen=True, slots=True)
class Refresh:
    """A background refresh of ``key`` ended. ``trigger``: ``early`` (refresh-ahead, before
    the value went stale), ``stale`` (stale-while-revalidate served it stale) or
    ``background`` (a bulk refresh, whose keys may be either). ``ok``: the loader
    answered; else ``error`` names what it raised (the stale value was kept)."""

    key: Any
    trigger: Literal["early", "stale", "background"]
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A layer's circuit breaker went from ``from_state`` to ``to_state`` (``closed``,
    ``open``, ``half_open``; see ``core/breaker.py``). ``node``: a cluster node's own
    breaker, else ``None``."""

    layer: str
    from_state: str
    to_state: str
    node: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """``count`` writes to ``layer`` were given up on and handed to the dead letter."""

    layer: str
    count: int


KEY_SPIKE = "key_spike"
MISS_RATE_SPIKE = "miss_rate_spike"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something far from a layer's recent baseline: a key's share of the requests
    (``KEY_SPIKE``) or the layer's miss ratio (``MISS_RATE_SPIKE``)."""

    kind: str
    """``"key_spike"`` or ``"miss_rate_spike"``."""
    layer: str
    observed: float
    """The key's share of the layer's requests, or the layer's miss ratio, over the recent
    window."""
    baseline: float
    """The same measure before the recent window."""
    requests: int = 0
    """Requests the layer served in the recent window."""
    window_seconds: float = 0.0
    at: float = 0.0
    """When it was detected (``time.time()``; 0: not said)."""
    key: Any = None
    """The key (``KEY_SPIKE``; ``None`` if it could not be read back any more)."""
    key_hash: int | None = None

    def __str__(self) -> str:
        what = (
            f"key {self.key!r} is {self.observed:.1%} of {self.layer}'s requests"
            if self.kind == KEY_SPIKE
            else f"{self.layer}'s miss ratio is {self.observed:.1%}"
        )
        return (
            f"{what} over the last {self.window_seconds:.1f} s "
            f"({self.requests} requests; baseline {self.baseline:.1%})"
        )


@dataclass(frozen=True, slots=True)
class Resized:
    """A rule resized an in-process layer (``analytics/autoresize.py``)."""

    layer: str
    old_size: int
    new_size: int
    estimated_gain: float
    """The hit ratio the layer's size estimates expected at the new size, minus its own
    (0.03: 3 points more; negative when it shrank)."""


Event = Removal | Refresh | BreakerTransition | DeadLettered | Anomaly | Resized
EventListener = Callable[[Event], Any]

DEFAULT_EVENT_CAPACITY = 10_000
"""Events that may wait for delivery at once; past that, new ones are dropped (counted)."""


class EventBuffer:
    """A bounded FIFO of events: ``push`` never waits; when ``capacity`` events are already
    waiting, the new one is dropped and counted in ``dropped``.

    Safe to share between threads without a lock: ``deque.append`` and ``popleft`` are
    atomic in CPython. Two threads racing past the length check at once may both get in, so
    the buffer can hold a few more than ``capacity`` (at most one per racing thread).

    >>> buffer = EventBuffer(capacity=2)
    >>> [buffer.push(n) for n in range(3)]
    [True, True, False]
    >>> buffer.take(10), buffer.dropped
    ([0, 1], 1)
    """

    __slots__ = ("capacity", "dropped", "_items")

    def __init__(self, capacity: int = DEFAULT_EVENT_CAPACITY) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"an event buffer's capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self.dropped = 0
        self._items: deque[Any] = deque()

    def push(self, item: Any) -> bool:
        """Queue ``item``; False (and counted) if the buffer is full."""
        if len(self._items) >= self.capacity:
            self.dropped += 1
            return False
        self._items.append(item)
        return True

    def take(self, limit: int) -> list[Any]:
        """Up to ``limit`` of the oldest items, removed."""
        items = self._items
        taken: list[Any] = []
        while items and len(taken) < limit:
            try:
                taken.append(items.popleft())
            except IndexError:  # another taker emptied it meanwhile
                break
        return taken

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class EventStats:
    """What an event hub (or a layer's removal log) delivered, dropped and failed on."""

    delivered: int
    """Calls of a listener that returned."""
    dropped: int
    """Events lost because the buffer was full (a listener too slow, or hanging)."""
    listener_errors: int
    """Calls of a listener that raised (logged at a bounded rate)."""
    pending: int
    """Events waiting for delivery now."""


class EventHub:
    """A manager's events: ``emit`` queues an event for the listeners (``subscribe``) and
    wakes the delivery worker; with no listener, ``emit`` is one attribute test.

    ``wake`` is the worker's (set by it): called after each push, from any thread; it must
    not block. ``emit`` is the hook for other parts of the library too (the anomaly
    detector emits ``Anomaly`` through it).
    """

    def __init__(self, capacity: int = DEFAULT_EVENT_CAPACITY) -> None:
        self.buffer = EventBuffer(capacity)
        self.listeners: tuple[EventListener, ...] = ()
        self.active = False
        """Whether anybody listens (``emit`` does nothing otherwise)."""
        self.wake: Callable[[], None] = _nothing
        self.delivered = 0
        self.listener_errors = 0

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on; returns a function that
        unsubscribes it. Raises ``TypeError`` if ``listener`` is not callable."""
        if not callable(listener):
            raise TypeError(f"an event listener must be callable, got {listener!r}")
        self.listeners = (*self.listeners, listener)
        self.active = True

        def unsubscribe() -> None:
            self.listeners = tuple(known for known in self.listeners if known is not listener)
            self.active = bool(self.listeners)

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Queue ``event`` for the listeners (never waits; dropped and counted when the
        buffer is full)."""
        if self.active and self.buffer.push(event):
            self.wake()

    def stats(self) -> EventStats:
        return EventStats(
            delivered=self.delivered,
            dropped=self.buffer.dropped,
            listener_errors=self.listener_errors,
            pending=len(self.buffer),
        )


def _nothing() -> None:
    """``EventHub.wake`` before a worker took it over."""


__all__ = [
    "DEFAULT_EVENT_CAPACITY",
    "REMOVAL_CAUSES",
    "Anomaly",
    "BreakerTransition",
    "DeadLettered",
    "Event",
    "EventBuffer",
    "EventHub",
    "EventListener",
    "EventStats",
    "Refresh",
    "Removal",
    "Resized",
    "RemovalCause",
    "RemovalListener",
]
