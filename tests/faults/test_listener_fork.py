"""Removal listeners and event listeners across fork() (PROBES: "fork at a random moment"):
the parent's delivery thread is stuck inside a listener when the process forks; the child
has no such thread, starts its own, and hears its own removals and events within a second.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from multilayercache import MultilayerCache
from multilayercache.core.events import Anomaly, Removal

from faults.forking import in_child
from support import IMPLEMENTATIONS

pytestmark = pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")

ANSWER_SECONDS = 1.0


def stuck_in_the_parent(parent: int, entered: threading.Event, release: threading.Event) -> Any:
    """A listener that hangs in the parent (until released), and records in a child."""
    heard: list[Any] = []

    def listener(*event: Any) -> None:
        if os.getpid() == parent:
            entered.set()
            release.wait(10)
        else:
            heard.append(event if len(event) > 1 else event[0])

    listener.heard = heard  # type: ignore[attr-defined]
    return listener


def wait_for(items: list[Any], count: int) -> list[Any]:
    deadline = time.monotonic() + ANSWER_SECONDS
    while len(items) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return list(items)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda impl: impl.name)
def test_a_child_delivers_its_own_removals(implementation) -> None:
    entered, release = threading.Event(), threading.Event()
    listener = stuck_in_the_parent(os.getpid(), entered, release)
    layer = implementation.InMemoryLayer(max_size=100, removal_listener=listener)
    try:
        layer.set("parent", 0)
        layer.delete("parent")
        assert entered.wait(5)  # the parent's delivery thread is inside the listener now
        layer.set("before fork", 1)
        layer.delete("before fork")  # recorded, waiting for the stuck thread

        def child() -> list[Any]:
            layer.set("child", 2)
            layer.delete("child")
            return wait_for(listener.heard, 2)

        heard = in_child(child)
        assert heard == [("before fork", 1, "invalidated"), ("child", 2, "invalidated")]
    finally:
        release.set()


def test_a_child_delivers_its_own_events() -> None:
    entered, release = threading.Event(), threading.Event()
    listener = stuck_in_the_parent(os.getpid(), entered, release)
    cache = MultilayerCache([IMPLEMENTATIONS[-1].InMemoryLayer(max_size=100, name="l1")])
    cache.subscribe(listener)
    try:
        cache.events.emit(Anomaly("key_spike", "parent", 1.0, 0.0))
        assert entered.wait(5)

        def child() -> list[Any]:
            cache.set("k", 1)
            cache.delete("k")
            cache.events.emit(Anomaly("key_spike", "child", 2.0, 0.0))
            return wait_for(listener.heard, 2)

        heard = in_child(child)
        assert Removal("l1", "k", 1, "invalidated") in heard
        assert Anomaly("key_spike", "child", 2.0, 0.0) in heard
    finally:
        release.set()


def test_a_child_closes_at_once_though_the_parent_was_delivering() -> None:
    """The parent's thread was inside a listener at the fork: the child has no such thread,
    so its ``close`` has nothing to wait for (not the second a hanging listener gets)."""
    entered, release = threading.Event(), threading.Event()
    listener = stuck_in_the_parent(os.getpid(), entered, release)
    cache = MultilayerCache([IMPLEMENTATIONS[-1].InMemoryLayer(max_size=100, name="l1")])
    cache.subscribe(listener)
    try:
        cache.events.emit(Anomaly("key_spike", "parent", 1.0, 0.0))
        assert entered.wait(5)

        def child() -> float:
            started = time.monotonic()
            cache.close()
            return time.monotonic() - started

        assert in_child(child) < 0.5
    finally:
        release.set()
