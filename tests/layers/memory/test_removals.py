"""Removal listeners of InMemoryLayer (both twins): every entry that leaves is reported once,
with its cause, on a thread of its own; a listener that raises or hangs costs the cache
nothing but the notifications it misses."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from invariants import check_invariants

WAIT = 5.0  # seconds a delivery may take at most in these tests (it takes milliseconds)


class Recorder:
    """A listener that keeps what it is told, and lets a test wait for it."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, Any, str]] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, key: Any, value: Any, cause: str) -> None:
        with self._changed:
            self.seen.append((key, value, cause))
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[Any, Any, str]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.seen) >= count, WAIT), self.seen
        time.sleep(0.02)  # nothing more should come
        return list(self.seen)


def test_each_cause_is_reported_with_key_and_value(Layer, clock) -> None:
    heard = Recorder()
    layer = Layer(max_size=3, clock=clock, removal_listener=heard)
    layer.set("a", 1)
    layer.set("a", 2)  # replaced: the old value leaves
    assert layer.delete("a") is True  # invalidated
    layer.set("t", "short", ttl=1)
    clock.advance(2)
    assert layer.get("t") is None  # expired, found on read
    for key in ("x", "y", "z"):
        layer.set(key, key.upper())
    for _ in range(3):  # frequent keys: a newcomer loses admission against them
        for key in ("x", "y", "z"):
            layer.get(key)
    layer.set("new", "N")  # rejected, but readable until the next new key is written
    assert layer.get("new") == "N"
    layer.set("newer", "M")  # now "new" leaves (and "newer" is held in its turn)
    layer.incr("n")  # "newer" leaves; "n" is held
    layer.clear()
    assert heard.wait_for(9) == [
        ("a", 1, "replaced"),
        ("a", 2, "invalidated"),
        ("t", "short", "expired"),
        ("new", "N", "rejected"),
        ("newer", "M", "rejected"),
        ("x", "X", "invalidated"),  # (clear goes in slot order)
        ("y", "Y", "invalidated"),
        ("z", "Z", "invalidated"),
        ("n", 1, "rejected"),
    ]
    stats = layer.stats()
    assert (stats.expirations, stats.rejections, stats.evictions) == (1, 3, 3)
    assert heard.threads == {"multilayercache-removals-memory"}  # never the caller's thread


def test_eviction_by_the_size_bound_and_replacement_by_incr(Layer, clock) -> None:
    heard = Recorder()
    layer = Layer(max_size=100, clock=clock, removal_listener=heard)
    layer.incr("hits")
    layer.incr("hits")  # a counter's old value is replaced
    for key in range(300):  # a window of new keys: the main's victims are evicted
        layer.set(key, key)
    layer.clear()  # whatever is left leaves too: every value written is reported once
    seen = heard.wait_for(302)
    assert seen[0] == ("hits", 1, "replaced")
    assert sorted(value for key, value, _ in seen if key != "hits") == list(range(300))
    causes = [cause for _, _, cause in seen]
    stats = layer.stats()
    assert causes.count("evicted") + causes.count("rejected") == stats.evictions > 0
    assert causes.count("rejected") == stats.rejections
    assert causes.count("invalidated") == 100  # a full layer (a held newcomer is beyond it)
    check_invariants(layer)


def test_expiry_found_by_a_write_touch_and_adjust_ttl(Layer, clock) -> None:
    heard = Recorder()
    layer = Layer(max_size=10, clock=clock, removal_listener=heard)
    layer.set("a", 1, ttl=1)
    layer.set("b", 2, ttl=5)
    layer.set("c", 3, ttl=5)
    clock.advance(2)
    layer.set("d", 4)  # a write reclaims what has expired
    assert layer.touch("b", ttl=0) is True  # a TTL of 0 removes it: expired
    assert layer.adjust_ttl("c", 0) is True
    assert heard.wait_for(3) == [("a", 1, "expired"), ("b", 2, "expired"), ("c", 3, "expired")]
    assert layer.stats().expirations == 3


def test_weighted_layer_evicts_for_weight(Layer, clock) -> None:
    heard = Recorder()
    layer = Layer(
        max_weight=10, weigher=lambda key, value: len(value), clock=clock, removal_listener=heard
    )
    layer.set("a", "xxxx")
    layer.set("b", "xxxx")
    layer.set("a", "xxxxxxxx")  # replaced; heavier: something must go for weight
    seen = heard.wait_for(2)
    assert seen[0] == ("a", "xxxx", "replaced")
    assert {cause for _, _, cause in seen[1:]} <= {"evicted", "rejected"}
    assert layer.stats().weight <= 10


def test_values_turned_away_are_rejected_and_expired_writes_not_reported(Layer) -> None:
    heard = Recorder()
    layer = Layer(max_weight=5, weigher=lambda key, value: len(value), removal_listener=heard)
    layer.set("big", "x" * 6)  # heavier than the whole layer: turned away
    layer.set("gone", "x", ttl=0)  # expired on arrival: never in, not reported
    layer.set("k", "v")
    layer.set("k", "w", ttl=0)  # the old value leaves (replaced); the new one never enters
    layer.set("k", "x")
    layer.set("k", "y" * 9)  # the old value is replaced; the new one turned away
    assert heard.wait_for(4) == [
        ("big", "x" * 6, "rejected"),
        ("k", "v", "replaced"),
        ("k", "x", "replaced"),
        ("k", "y" * 9, "rejected"),
    ]
    assert layer.stats().rejections == 2


def test_add_removal_listener_and_remove_it(Layer) -> None:
    first, second = Recorder(), Recorder()
    layer = Layer(max_size=10)
    layer.set("before", 0)
    layer.delete("before")  # no listener yet: nothing recorded
    stop_first = layer.add_removal_listener(first)
    layer.add_removal_listener(second)
    layer.set("a", 1)
    layer.delete("a")
    assert first.wait_for(1) == second.wait_for(1) == [("a", 1, "invalidated")]
    stop_first()
    layer.set("b", 2)
    layer.delete("b")
    assert second.wait_for(2)[1] == ("b", 2, "invalidated")
    assert first.seen == [("a", 1, "invalidated")]


def test_bad_arguments_are_refused(Layer) -> None:
    with pytest.raises(TypeError, match="removal listener must be callable"):
        Layer(max_size=10, removal_listener="print")
    with pytest.raises(ValueError, match="removal_buffer must be an int >= 1"):
        Layer(max_size=10, removal_buffer=0)
    layer = Layer(max_size=10)
    with pytest.raises(TypeError, match="removal listener must be callable"):
        layer.add_removal_listener(42)
    layer.set("a", 1)
    assert layer.get("a") == 1  # the layer is as it was


def test_a_listener_that_raises_is_logged_and_counted(Layer, caplog) -> None:
    heard = Recorder()

    def broken(key: Any, value: Any, cause: str) -> None:
        raise RuntimeError(f"cannot handle {key}")

    layer = Layer(max_size=10, removal_listener=broken)
    layer.add_removal_listener(heard)  # still told everything
    with caplog.at_level(logging.WARNING, logger="multilayercache"):
        for key in range(5):
            layer.set(key, key)
            layer.delete(key)
        heard.wait_for(5)
    stats = layer.removal_stats()
    assert stats.listener_errors == 5
    assert stats.delivered == 5
    assert stats.dropped == 0
    assert "a removal listener raised RuntimeError: cannot handle" in caplog.text
    assert caplog.text.count("removal listener raised") == 1  # at a bounded rate


def test_a_listener_that_hangs_never_blocks_the_cache(Layer) -> None:
    release = threading.Event()
    entered = threading.Event()

    def hanging(key: Any, value: Any, cause: str) -> None:
        entered.set()
        release.wait(WAIT)

    layer = Layer(max_size=100, removal_listener=hanging, removal_buffer=50)
    try:
        layer.set("first", 0)
        layer.delete("first")
        assert entered.wait(WAIT)
        started = time.monotonic()
        for key in range(1_000):  # 1,000 removals while the listener hangs
            layer.set(key, key)
            assert layer.get(key) == key
            layer.delete(key)
        assert time.monotonic() - started < 2.0
        stats = layer.removal_stats()
        assert stats.pending == 50  # the log is full...
        assert stats.dropped == 950  # ...and what did not fit was counted
    finally:
        release.set()
    deadline = time.monotonic() + WAIT
    while layer.removal_stats().pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert layer.removal_stats().pending == 0


def test_a_listener_may_call_the_layer(Layer) -> None:
    heard = Recorder()
    layer = Layer(max_size=10)

    def reentrant(key: Any, value: Any, cause: str) -> None:
        layer.set(("echo", key), value)  # back into the layer, from the delivery thread
        heard(key, value, cause)

    layer.add_removal_listener(reentrant)
    layer.set("a", 1)
    layer.delete("a")
    assert heard.wait_for(1) == [("a", 1, "invalidated")]
    assert layer.get(("echo", "a")) == 1


def test_threads_removing_concurrently_lose_nothing(Layer) -> None:
    heard = Recorder()
    layer = Layer(max_size=10_000, removal_listener=heard, removal_buffer=100_000)

    def work(thread: int) -> None:
        for n in range(500):
            layer.set((thread, n), n)
            layer.set((thread, n), n + 1)  # replaced
            layer.delete((thread, n))  # invalidated

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = heard.wait_for(4_000)
    assert sorted(seen) == sorted(
        [((t, n), n, "replaced") for t in range(4) for n in range(500)]
        + [((t, n), n + 1, "invalidated") for t in range(4) for n in range(500)]
    )
    assert layer.removal_stats().dropped == 0
    check_invariants(layer)
