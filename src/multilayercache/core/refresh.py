"""The background refresher's queue: which keys to refresh next when there is more to
refresh than the budget allows.

Refreshes come from reads: a stale value served at once (stale-while-revalidate) and a fresh
value past its refresh point (refresh-ahead) each ask for one background refresh of their key.
A fixed number of workers takes them from this queue; when more are asked for than they can
do, the order decides what is refreshed:

* **stale before early.** A stale key is being served stale until it is refreshed; an early
  one is still fresh, so waiting costs it nothing yet.
* **hot before cold.** Among equals, the key the L1's frequency sketch estimates as more
  frequent goes first: it is read most, so refreshing it saves the most misses.
* **bounded.** The queue holds ``capacity`` keys. When it is full, an early refresh makes
  room only by displacing a colder early one, and a stale one by displacing any early one;
  otherwise it is dropped. So under pressure only hot keys are refreshed early, and a cold
  key that goes stale is refreshed when it is read (or loaded when it expires).

Each key is queued once, and not again while its refresh runs (``finish`` ends that). A job
that names a ``group`` (the bulk loader of ``get_or_load_many``) can be taken together with
the other queued jobs of its group, so that one bulk call refreshes them all.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple


class RefreshJob(NamedTuple):
    """How to refresh some keys: ``plan_for(keys)`` is the plan (see ``loading.py``);
    jobs of the same ``group`` may run as one batch. A job runs in the flight of its keys."""

    plan_for: Callable[[list[Any]], Any]
    group: Hashable | None = None


class _Queued(NamedTuple):
    rank: tuple[int, int, int]  # (early?, -frequency, arrival): smaller runs first
    key: Any
    job: RefreshJob


class RefreshQueue:
    """Keys waiting for a background refresh (see the module docstring).

    >>> queue = RefreshQueue(capacity=2)
    >>> job = RefreshJob(lambda keys: None)
    >>> queue.push("cold", job, stale=False, frequency=1)
    True
    >>> queue.push("hot", job, stale=False, frequency=9)
    True
    >>> queue.push("warm", job, stale=False, frequency=5)  # full: displaces the coldest
    True
    >>> [key for key, _ in queue.pop_batch(10)]
    ['hot']
    """

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self._heap: list[_Queued] = []
        self._queued: dict[Any, _Queued] = {}
        self._running: set[Any] = set()
        self._arrivals = itertools.count()
        self.dropped = 0
        """Refreshes refused or displaced for want of budget."""
        self.taken = {"stale": 0, "early": 0}
        """Refreshes taken to run, by kind: of keys served stale meanwhile, and of keys
        still fresh (refresh-ahead, XFetch)."""

    def __len__(self) -> int:
        return len(self._queued)

    def __contains__(self, key: Any) -> bool:
        return key in self._queued

    @property
    def running(self) -> int:
        """Keys whose refresh was taken and has not finished."""
        return len(self._running)

    def push(self, key: Any, job: RefreshJob, stale: bool, frequency: int) -> bool:
        """Queue a refresh of ``key``; False if it is queued or running already, or the
        budget is spent (see the module docstring)."""
        if key in self._queued or key in self._running:
            return False
        item = _Queued((0 if stale else 1, -frequency, next(self._arrivals)), key, job)
        if len(self._queued) >= self.capacity and not self._make_room_for(item):
            self.dropped += 1
            return False
        self._queued[key] = item
        heapq.heappush(self._heap, item)
        if len(self._heap) > 4 * self.capacity:  # displaced jobs linger in the heap: compact
            self._heap = sorted(self._queued.values())
        return True

    def pop_batch(self, limit: int) -> list[tuple[Any, RefreshJob]]:
        """The first job, and up to ``limit - 1`` more queued jobs of its group (best
        ranked first); empty if nothing is queued. Their keys run until ``finish``."""
        first = self._pop_first()
        if first is None:
            return []
        taken = [first]
        if first.job.group is not None and limit > 1:
            same = sorted(
                (item for item in self._queued.values() if item.job.group == first.job.group),
                key=lambda item: item.rank,
            )[: limit - 1]
            for item in same:
                del self._queued[item.key]  # its heap entry is skipped when it surfaces
                taken.append(item)
        for item in taken:
            self.taken["early" if item.rank[0] else "stale"] += 1
        self._running.update(item.key for item in taken)
        return [(item.key, item.job) for item in taken]

    def finish(self, keys: list[Any]) -> None:
        """The refreshes of ``keys`` (taken by ``pop_batch``) are over."""
        self._running.difference_update(keys)

    def clear(self) -> None:
        """Forget every refresh queued or running (a forked child: the workers that would
        run them are its parent's; a key read stale again is queued again)."""
        self._heap.clear()
        self._queued.clear()
        self._running.clear()

    def _pop_first(self) -> _Queued | None:
        while self._heap:
            item = heapq.heappop(self._heap)
            if self._queued.get(item.key) is item:
                del self._queued[item.key]
                return item
        return None

    def _make_room_for(self, item: _Queued) -> bool:
        # The worst early job queued is the one to give way, if the newcomer outranks it.
        early = [queued for queued in self._queued.values() if queued.rank[0] == 1]
        if not early:
            return False
        worst = max(early, key=lambda queued: queued.rank)
        if item.rank[:2] >= worst.rank[:2]:
            return False
        del self._queued[worst.key]  # its heap entry is skipped when it surfaces
        self.dropped += 1
        return True
