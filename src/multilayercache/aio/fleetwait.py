"""Tasks waiting for another instance's load of a key (the asyncio twin of
``multilayercache.sync.fleetwait``). The backplane reads on a thread of its own: it wakes a
task through the task's event loop (``call_soon_threadsafe``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from .._forking import register_after_fork


class Watcher:
    """One task's interest in some names."""

    __slots__ = ("names", "event", "loop")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.event = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # its loop is closed: nobody waits any more
            pass


class AsyncFleetWaiters:
    """The watchers of one cache, by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the backplane's thread reads what tasks change
        self._by_name: dict[str, set[Watcher]] = {}
        self.announce: Callable[[list[str]], None] = _nowhere
        """Tells the other instances which names have a value now (see the sync twin)."""
        register_after_fork(self)

    def _after_fork(self) -> None:
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

    async def wait(self, watcher: Watcher, seconds: float) -> bool:
        """Wait until a message names one of the watcher's names, or ``seconds`` pass; True
        if one did."""
        try:
            await asyncio.wait_for(watcher.event.wait(), max(0.0, seconds))
            woken = True
        except TimeoutError:
            woken = watcher.event.is_set()
        watcher.event.clear()
        return woken

    def wake(self, names: tuple[str, ...] | None) -> None:
        """A backplane message named ``names`` (``None``: anything may have changed): wake
        their watchers. Called on the backplane's reading thread."""
        if not self._by_name:
            return
        with self._lock:
            if names is None:
                woken = {watcher for watchers in self._by_name.values() for watcher in watchers}
            else:
                woken = {watcher for name in names for watcher in self._by_name.get(name, ())}
        for watcher in woken:
            watcher.wake()


def _nowhere(names: list[str]) -> None:
    return None
