"""Request coalescing across threads: concurrent callers for one key share one call.

The first caller for a key runs the function; callers that arrive while it runs wait for it
and get its result or its exception. The in-flight entry is removed when the call ends,
however it ends. (``multilayercache.aio.singleflight`` is the asyncio twin.)

A forked child forgets the calls in flight: the threads running them are not in the child,
so a caller there would wait for them forever; it makes its own call instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from .._forking import register_after_fork
from ..core.missing import MISSING


class _Call:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    """Coalesces concurrent calls per key across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}
        self._batched: dict[Hashable, _Call] = {}  # per key, loads that run in batches
        self.coalesced = 0  # callers (or, for batches, keys) that waited for another's call
        register_after_fork(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._calls = {}
        self._batched = {}

    def __len__(self) -> int:
        """Keys in flight."""
        return len(self._calls) + len(self._batched)

    def __contains__(self, key: Hashable) -> bool:
        """Whether a call for ``key`` is in flight."""
        return key in self._calls or key in self._batched

    def do(self, key: Hashable, function: Callable[[], Any]) -> Any:
        """``function()``, run once for all the callers of ``key`` that overlap with it."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if leader:
                call = self._calls[key] = _Call()
            else:
                self.coalesced += 1
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.value
        try:
            call.value = function()
            return call.value
        except BaseException as error:
            call.error = error
            raise
        finally:
            with self._lock:
                # Not ours any more if a fork happened meanwhile (this thread forked).
                if self._calls.get(key) is call:
                    del self._calls[key]
            call.done.set()

    def do_many(
        self, keys: list[Hashable], function: Callable[[list[Hashable]], dict[Any, Any]]
    ) -> dict[Any, Any]:
        """``function(led)`` for the keys that no other caller is loading right now (``led``),
        while this caller waits for the others' loads of the rest; ``{key: value}`` for every
        key that got one. Each caller loads its own keys before it waits, so two callers
        that wait on each other's keys cannot deadlock."""
        with self._lock:
            led = [key for key in keys if key not in self._batched]
            for key in led:
                self._batched[key] = _Call()
            calls = {key: self._batched[key] for key in keys}
            self.coalesced += len(keys) - len(led)
        found: dict[Any, Any] = {}
        if led:
            try:
                loaded = function(led)
                for key in led:
                    calls[key].value = loaded.get(key, MISSING)
                found.update(loaded)
            except BaseException as error:
                for key in led:
                    calls[key].error = error
                raise
            finally:
                with self._lock:
                    for key in led:
                        if self._batched.get(key) is calls[key]:  # (see ``do``)
                            del self._batched[key]
                for key in led:
                    calls[key].done.set()
        for key, call in calls.items():
            if key in found:
                continue
            call.done.wait()
            if call.error is not None:
                raise call.error
            if call.value is not MISSING:
                found[key] = call.value
        return found
