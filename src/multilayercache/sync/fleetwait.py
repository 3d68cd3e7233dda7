"""Threads waiting for another instance's load of a key (``core/fleetflight.py``): each
watches the key's name, and the backplane's reading thread wakes the watchers of the names
its messages carry (``wake``). (``multilayercache.aio.fleetwait`` is the asyncio twin.)

A watcher's event stays set from the message until its wait returns, so a message that
arrives between watching and waiting is not lost; the plan reads the shared layer after
every wait, so a message that arrives while it reads is not needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .._forking import register_after_fork


class Watcher:
    """One caller's interest in some names."""

    __slots__ = ("names", "event")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.event = threading.Event()


class FleetWaiters:
    """The watchers of one cache, by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, set[Watcher]] = {}
        self.announce: Callable[[list[str]], None] = _nowhere
        """Tells the other instances which names have a value now (the backplane's
        ``publish_keys``, set when the cache joins a fleet)."""
        register_after_fork(self)

    def _after_fork(self) -> None:
        """In a forked child: none of the parent's threads wait here."""
        self._lock = threading.Lock()
        self._by_name = {}

    def __len__(self) -> int:
        """Names watched now."""
        return len(self._by_name)

    def watch(self, names: tuple[str, ...]) -> Watcher:
        watcher = Watcher(names)
        with self._lock:
            for name in names:
                self._by_name.setdefault(name, set()).add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        with self._lock:
            for name in watcher.names:
                watchers = self._by_name.get(name)
                if watchers is not None:
                    watchers.discard(watcher)
                    if not watchers:
                        del self._by_name[name]

    def wait(self, watcher: Watcher, seconds: float) -> bool:
        """Wait until a message names one of the watcher's names, or ``seconds`` pass; True
        if one did."""
        woken = watcher.event.wait(max(0.0, seconds))
        watcher.event.clear()
        return woken

    def wake(self, names: tuple[str, ...] | None) -> None:
        """A backplane message named ``names`` (``None``: anything may have changed): wake
        their watchers. Called on the backplane's reading thread."""
        if not self._by_name:  # the common case: nobody waits
            return
        with self._lock:
            if names is None:
                woken = {watcher for watchers in self._by_name.values() for watcher in watchers}
            else:
                woken = {watcher for name in names for watcher in self._by_name.get(name, ())}
        for watcher in woken:
            watcher.event.set()


def _nowhere(names: list[str]) -> None:
    return None
