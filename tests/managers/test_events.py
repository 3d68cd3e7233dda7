"""A manager's events, one spec for sync and asyncio (x compiled and pure L1), over real
Redis servers: L1 removals, breaker transitions against a killed server, refreshes, dead
letters and emitted anomalies reach ``on_event`` / ``subscribe`` listeners, off the request
path; a listener that raises or hangs costs the cache nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from multilayercache import BreakerPolicy, LayerPolicy, LoadOptions, RetryPolicy, WriteBehind
from multilayercache.core.events import (
    Anomaly,
    BreakerTransition,
    DeadLettered,
    Refresh,
    Removal,
)
from multilayercache.tools.servers import free_port

WAIT = 10.0


class Listener:
    """Keeps the events it is given; ``wait_for`` one that matches."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, event: Any) -> None:
        with self._changed:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    def wait_for(self, predicate: Any, count: int = 1) -> list[Any]:
        def matching() -> list[Any]:
            return [event for event in self.events if predicate(event)]

        with self._changed:
            assert self._changed.wait_for(lambda: len(matching()) >= count, WAIT), self.events
            return matching()


def test_l1_removals_become_events(harness) -> None:
    heard = Listener()
    l1, l2 = harness.l1(max_size=100), harness.l2()
    cache = harness.cache([l1, l2], on_event=heard)
    cache.set("a", 1)
    cache.set("a", 2)
    cache.delete("a")
    cache.set("t", 1, tags=("team",))
    cache.invalidate_tags("team")
    cache.set("user:1:name", "Ada")
    cache.invalidate_prefix("user:1:")
    removals = heard.wait_for(lambda event: isinstance(event, Removal), 4)
    assert [(event.layer, event.key, event.value, event.cause) for event in removals] == [
        ("l1", "a", 1, "replaced"),
        ("l1", "a", 2, "invalidated"),
        ("l1", "t", 1, "invalidated"),
        ("l1", "user:1:name", "Ada", "invalidated"),
    ]
    assert threading.current_thread().name not in heard.threads


def test_subscribe_unsubscribe_and_emit(harness) -> None:
    first, second = Listener(), Listener()
    cache = harness.cache([harness.l1()])
    stop = cache.subscribe(first)
    cache.subscribe(second)
    spike = Anomaly("key_spike", "hot:1", 900.0, 12.5)
    cache.events.emit(spike)  # how the insights helper reports what it notices
    assert first.wait_for(lambda event: event == spike) == second.wait_for(lambda e: e == spike)
    stop()
    cache.events.emit(Anomaly("miss_rate", "l1", 0.9, 0.1))
    second.wait_for(lambda event: isinstance(event, Anomaly), 2)
    time.sleep(0.05)
    assert first.events == [spike]
    with pytest.raises(TypeError, match="event listener must be callable"):
        cache.subscribe("print")


def test_nothing_is_emitted_without_a_listener(harness) -> None:
    cache = harness.cache([harness.l1(max_size=10)])
    for key in range(100):
        cache.set(key, key)
    cache.events.emit(Anomaly("key_spike", "k", 1.0, 0.0))
    assert cache.events.stats().pending == 0 and cache.events.stats().dropped == 0


def test_breaker_opening_and_closing_against_a_killed_server(harness, doomed_server) -> None:
    heard = Listener()
    l1 = harness.l1()
    l2 = harness.l2(doomed_server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    breaker = BreakerPolicy(failures=2, cooldown=0.2, max_cooldown=0.2)
    cache = harness.cache(
        [l1, l2],
        [None, LayerPolicy(breaker=breaker, retry=RetryPolicy(attempts=1))],
        on_event=heard,
    )
    cache.set("k", 1)
    doomed_server.kill()
    for n in range(4):
        assert cache.get(f"missing:{n}") is None  # failures; then refused at once
    opened = heard.wait_for(lambda event: isinstance(event, BreakerTransition))
    assert opened[0] == BreakerTransition("l2", "closed", "open")
    doomed_server.restart()
    time.sleep(0.3)  # past the cool-down: the next call is a probe, and it succeeds
    deadline = time.monotonic() + WAIT
    while cache.stats().breakers["l2"].state != "closed" and time.monotonic() < deadline:
        cache.get("probe")
        time.sleep(0.05)
    transitions = heard.wait_for(lambda event: isinstance(event, BreakerTransition), 3)
    assert [(event.from_state, event.to_state) for event in transitions[:3]] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_refreshes_that_succeed_and_fail(harness) -> None:
    heard = Listener()
    answers: list[Any] = [1, 2, RuntimeError("backend down")]

    def load(key: Any) -> Any:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    cache = harness.cache(
        [harness.l1()],
        [LayerPolicy(ttl=0.1, stale_ttl=60)],
        load_options=LoadOptions(stale_while_revalidate=True, fail_safe=True),
        on_event=heard,
    )
    loader = harness.loader(load)
    assert cache.get_or_load("k", loader) == 1
    time.sleep(0.15)
    assert cache.get_or_load("k", loader) == 1  # stale, served at once; refreshed behind
    assert cache.wait_idle(WAIT)
    time.sleep(0.15)
    assert cache.get_or_load("k", loader) == 2  # stale again: this refresh fails
    assert cache.wait_idle(WAIT)
    refreshes = heard.wait_for(lambda event: isinstance(event, Refresh), 2)
    assert refreshes[0] == Refresh("k", "stale", True)
    assert refreshes[1] == Refresh("k", "stale", False, "RuntimeError: backend down")


def test_writes_given_up_on_are_reported_as_a_dead_letter(harness, tmp_path: Path) -> None:
    heard = Listener()
    unreachable = harness.l2(url=f"redis://127.0.0.1:{free_port()}/0")
    policy = LayerPolicy(
        write=WriteBehind(max_delay=60.0, dead_letter=tmp_path / "dead.jsonl", close_timeout=0.5)
    )
    cache = harness.cache([harness.l1(), unreachable], [None, policy], on_event=heard)
    cache.set_many({"a": 1, "b": 2})
    cache.close()  # retried for 0.5 s, then given up
    assert heard.wait_for(lambda event: isinstance(event, DeadLettered)) == [DeadLettered("l2", 2)]


def test_a_listener_that_raises_is_counted_and_the_others_still_hear(harness, caplog) -> None:
    heard = Listener()

    def broken(event: Any) -> None:
        raise ValueError("no")

    cache = harness.cache([harness.l1()], on_event=broken)
    cache.subscribe(heard)
    for n in range(3):
        cache.events.emit(Anomaly("key_spike", n, 1.0, 0.0))
    heard.wait_for(lambda event: isinstance(event, Anomaly), 3)
    stats = cache.events.stats()
    assert stats.listener_errors == 3 and stats.delivered == 3
    assert "event listener" in caplog.text and "ValueError: no" in caplog.text


def test_a_listener_that_hangs_never_blocks_a_get(harness) -> None:
    release = threading.Event()
    entered = threading.Event()

    def hanging(event: Any) -> None:
        entered.set()
        release.wait(WAIT)

    l1 = harness.l1(max_size=100)
    cache = harness.cache([l1], on_event=hanging)
    cache._target.events.buffer.capacity = 100  # (a small buffer, to fill it quickly)
    try:
        cache.set("first", 0)
        cache.delete("first")
        assert entered.wait(WAIT)
        started = time.monotonic()
        for key in range(2_000):
            cache.set(key, key)
            assert cache.get(key) == key
            cache.delete(key)
        assert time.monotonic() - started < 5.0
        deadline = time.monotonic() + WAIT
        while cache.events.stats().dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # (the layer's removals reach the hub on their own thread)
        assert cache.events.stats().dropped > 0
        assert cache.events.stats().pending <= 100
    finally:
        release.set()


def test_a_coroutine_listener_runs_on_the_loop(harness) -> None:
    if not harness.is_async:
        cache = harness.cache([harness.l1()])

        async def listener(event: Any) -> None: ...

        with pytest.raises(TypeError, match="coroutine function"):
            cache.subscribe(listener)
        return
    heard = Listener()
    loops: list[Any] = []

    async def listener(event: Any) -> None:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        heard(event)

    cache = harness.cache([harness.l1()])

    async def subscribe() -> None:  # from the loop: its listeners run on it
        cache._target.subscribe(listener)

    harness.loop.run_until_complete(subscribe())
    cache.set("a", 1)
    cache.delete("a")

    async def wait() -> None:
        for _ in range(100):
            if heard.events:
                return
            await asyncio.sleep(0.02)

    harness.loop.run_until_complete(wait())
    assert heard.events == [Removal("l1", "a", 1, "invalidated")]
    assert loops == [harness.loop]


def test_close_delivers_the_events_queued_before_it(harness) -> None:
    heard: list[Any] = []

    def slow(event: Any) -> None:
        time.sleep(0.02)  # (events pile up behind it)
        heard.append(event)

    cache = harness.cache([harness.l1()], on_event=slow)
    spikes = [Anomaly("key_spike", n, 1.0, 0.0) for n in range(20)]
    for spike in spikes:
        cache.events.emit(spike)
    cache.close()
    assert heard == spikes


def test_close_waits_for_a_hanging_listener_a_second_at_most(harness) -> None:
    release = threading.Event()
    cache = harness.cache([harness.l1()], on_event=lambda event: release.wait(WAIT))
    try:
        cache.events.emit(Anomaly("key_spike", "k", 1.0, 0.0))
        started = time.monotonic()
        cache.close()
        assert 0.9 <= time.monotonic() - started < 3.0
    finally:
        release.set()
