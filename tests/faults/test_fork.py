"""fork() at any moment leaves the child a working cache (issue 18).

Pre-fork servers (gunicorn, uwsgi, ``multiprocessing``) fork after imports and warm-up,
while other threads may be inside the cache. The child has only the thread that forked.
Each test holds one piece of inherited state deterministically in a parent thread (a load
blocked on an event, a key whose ``__eq__`` blocks inside ``InMemoryLayer.set``, a taken
load slot, a running refresh, a held lock, a breaker probe out), forks with real
``os.fork()``, and asserts that the child's calls answer within a second. Every wait is
bounded: a child that hangs is killed and fails the test (``faults/forking.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    AsyncWriterLayer,
    BreakerPolicy,
    LayerPolicy,
    LayerUnavailableError,
    LoadOptions,
    LoadTimeoutError,
    MultilayerCache,
    RedisLayer,
    WriterLayer,
)
from multilayercache.core.errors import LayerError

from faults.forking import LoopThread, holding, in_child, read_within, reap, timed
from invariants import check_invariants

# Python 3.12+ warns about fork() in a process with threads: forking such a process is
# exactly what these tests do.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")

KINDS = ["sync", "asyncio"]
ANSWER_SECONDS = 1.0
"""What a child's call may take, at most."""


def child_value(key: Any) -> str:
    return f"child's {key}"


class Cache:
    """A manager of one kind (``sync`` or ``asyncio``) and blocking calls to it that work
    in the parent (asyncio: on a loop running in a thread, as a service's would) and in a
    forked child (asyncio: on a loop of the child's own, kept between calls so that the
    child's background refreshes go on)."""

    def __init__(self, kind: str, layers: list[Any], policies: Any = None, **options: Any):
        self.kind = kind
        self.pid = os.getpid()
        factory = MultilayerCache if kind == "sync" else AsyncMultilayerCache
        self.raw: Any = factory(layers, policies, **options)
        self.loop = LoopThread() if kind == "asyncio" else None
        self._child_loop: asyncio.AbstractEventLoop | None = None
        self._started: list[concurrent.futures.Future] = []

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.wait(getattr(self.raw, method)(*args, **kwargs))

    def wait(self, result: Any) -> Any:
        """``result``, awaited if it is awaitable."""
        if not inspect.isawaitable(result):
            return result
        if os.getpid() == self.pid:
            assert self.loop is not None
            return self.loop.run(result)
        if self._child_loop is None:
            self._child_loop = asyncio.new_event_loop()
        return self._child_loop.run_until_complete(result)

    def start(self, method: str, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Call in the background of the parent (a thread, or a task on its loop)."""
        if self.loop is not None:
            started = self.loop.start(getattr(self.raw, method)(*args, **kwargs))
            self._started.append(started)
            return started
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._started.append(future)

        def call() -> None:
            try:
                future.set_result(getattr(self.raw, method)(*args, **kwargs))
            except BaseException as error:
                future.set_exception(error)

        threading.Thread(target=call, daemon=True).start()
        return future

    def loader(self, function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``function`` as this kind of manager takes a loader."""
        if self.loop is None:
            return function

        async def load(key: Any) -> Any:
            return function(key)

        return load

    def close(self) -> None:
        """Once the parent's calls and refreshes are over (the test released them): a call
        still running could open a connection after the close."""
        concurrent.futures.wait(self._started, timeout=5)
        self.call("wait_idle", 5)
        self.call("close")
        if self.loop is not None:
            self.loop.close()


class Blocker:
    """A loader that blocks until released (a slow backend), and says when it started."""

    def __init__(self) -> None:
        self.started, self.released = threading.Event(), threading.Event()

    def loader(self, cache: Cache) -> Callable[[Any], Any]:
        def load(key: Any) -> str:
            self.started.set()
            self.released.wait(10)
            return "parent's"

        async def load_async(key: Any) -> str:
            self.started.set()
            while not self.released.is_set():  # the loop's thread must not block
                await asyncio.sleep(0.005)
            return "parent's"

        return load if cache.loop is None else load_async


class World:
    """Builds the caches and blockers of one test, and ends them (releasing every parent
    thread still blocked) when it is over."""

    def __init__(self, Layer: type, redis_url: str, prefix: str) -> None:
        self.Layer = Layer
        self.redis_url = redis_url
        self.prefix = prefix
        self._caches: list[Cache] = []
        self._releases: list[threading.Event] = []

    def l2(self, kind: str, **options: Any) -> Any:
        factory = RedisLayer if kind == "sync" else AsyncRedisLayer
        return factory(self.redis_url, prefix=self.prefix, name="l2", **options)

    def cache(
        self, kind: str, layers: list[Any] | None = None, policies: Any = None, **options: Any
    ) -> Cache:
        if layers is None:
            layers = [self.Layer(max_size=1000, name="l1"), self.l2(kind)]
        cache = Cache(kind, layers, policies, **options)
        self._caches.append(cache)
        return cache

    def blocker(self) -> Blocker:
        blocker = Blocker()
        self._releases.append(blocker.released)
        return blocker

    def held(self, lock: Any) -> None:
        """Hold ``lock`` in a parent thread until the test ends."""
        _thread, release = holding(lock)
        self._releases.append(release)

    def close(self) -> None:
        for release in self._releases:
            release.set()
        for cache in self._caches:
            cache.close()


@pytest.fixture
def world(Layer: type, redis_url: str, prefix: str) -> Any:
    built = World(Layer, redis_url, prefix)
    yield built
    built.close()


# ----------------------------------------------------------------------------- loads
@pytest.mark.parametrize("hard_timeout", [None, 5.0], ids=["no-timeout", "hard-timeout"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_child_loads_a_key_its_parent_was_loading(
    world: World, kind: str, hard_timeout: float | None
) -> None:
    cache = world.cache(kind)
    blocker = world.blocker()
    loading = cache.start("get_or_load", "k", blocker.loader(cache), hard_timeout=hard_timeout)
    assert blocker.started.wait(5)

    def child() -> tuple[Any, float]:
        load = cache.loader(child_value)
        return timed(lambda: cache.call("get_or_load", "k", load, hard_timeout=hard_timeout))

    value, seconds = in_child(child)
    assert value == child_value("k")
    assert seconds < ANSWER_SECONDS
    blocker.released.set()
    assert loading.result(5) == "parent's"  # the parent's own load is undisturbed


@pytest.mark.parametrize("kind", KINDS)
def test_a_child_gets_the_load_slot_a_parent_thread_held(world: World, kind: str) -> None:
    cache = world.cache(kind, load_options=LoadOptions(max_concurrent_loads=1))
    blocker = world.blocker()
    cache.start("get_or_load", "held", blocker.loader(cache))
    assert blocker.started.wait(5)

    def child() -> tuple[Any, float]:
        return timed(lambda: cache.call("get_or_load", "other", cache.loader(child_value)))

    value, seconds = in_child(child)
    assert value == child_value("other")
    assert seconds < ANSWER_SECONDS


@pytest.mark.parametrize("kind", KINDS)
def test_a_child_loads_a_key_whose_load_outlived_its_hard_timeout_in_the_parent(
    world: World, kind: str
) -> None:
    # The parent's load goes on in the thread that leads it (or the flight's task), after a
    # caller waiting for it gave up: neither is in the child.
    cache = world.cache(kind)
    blocker = world.blocker()
    cache.start("get_or_load", "k", blocker.loader(cache))
    assert blocker.started.wait(5)
    with pytest.raises(LoadTimeoutError):
        cache.call("get_or_load", "k", blocker.loader(cache), hard_timeout=0.05)

    def child() -> tuple[Any, float, bool, float]:
        load = cache.loader(child_value)
        value, seconds = timed(lambda: cache.call("get_or_load", "k", load, hard_timeout=0.5))
        idle, idle_seconds = timed(lambda: cache.call("wait_idle", ANSWER_SECONDS))
        return value, seconds, idle, idle_seconds

    value, seconds, idle, idle_seconds = in_child(child)
    assert value == child_value("k")
    assert seconds < ANSWER_SECONDS
    assert idle, "the child waited for the parent's background work"
    assert idle_seconds < ANSWER_SECONDS


@pytest.mark.parametrize("kind", KINDS)
def test_a_child_refreshes_a_key_whose_refresh_its_parent_was_running(
    world: World, kind: str
) -> None:
    policy = LayerPolicy(ttl=0.1, stale_ttl=60)
    cache = world.cache(kind, policies=[policy, policy])
    assert cache.call("get_or_load", "k", cache.loader(lambda key: "first")) == "first"
    time.sleep(0.15)  # stale now: served at once, refreshed in the background
    blocker = world.blocker()
    assert cache.call("get_or_load", "k", blocker.loader(cache)) == "first"
    assert blocker.started.wait(5)  # the parent's refresh of "k" is running

    def child() -> tuple[Any, float, bool, Any]:
        load = cache.loader(child_value)
        served, seconds = timed(lambda: cache.call("get_or_load", "k", load))
        idle = cache.call("wait_idle", ANSWER_SECONDS)
        return served, seconds, idle, cache.call("get", "k")

    served, seconds, idle, refreshed = in_child(child)
    assert served == "first"  # still stale in the child: served at once ...
    assert seconds < ANSWER_SECONDS
    assert idle
    assert refreshed == child_value("k")  # ... and refreshed by the child itself


def test_a_loader_that_forks_finishes_its_load_in_the_child(world: World) -> None:
    # The thread that forks is inside the cache (a loader that forks, holding the only
    # load slot): the child goes on with that load, and then with others.
    cache = world.cache("sync", load_options=LoadOptions(max_concurrent_loads=1))
    parent = os.getpid()
    read_end, write_end = os.pipe()
    children: list[int] = []

    def load(key: Any) -> str:
        pid = os.fork()
        if pid == 0:
            return "loaded in the child"
        children.append(pid)
        return "loaded in the parent"

    value = cache.raw.get_or_load("k", load)
    if os.getpid() != parent:  # the child, back from its loader
        try:
            other, seconds = timed(lambda: cache.raw.get_or_load("other", child_value))
            report = f"{value}|{other}|{seconds < ANSWER_SECONDS}|{cache.raw.in_flight}"
            os.write(write_end, report.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        answer = read_within(read_end, 10)
    finally:
        os.close(read_end)
        reap(children[0])
    assert value == "loaded in the parent"
    assert answer is not None, "the child hung"
    assert answer.decode().split("|") == [
        "loaded in the child",
        child_value("other"),
        "True",
        "0",
    ]


# ----------------------------------------------------------------------------- the L1
class StuckKey:
    """A key whose ``__eq__`` parks its thread while ``armed`` (a user's key that calls out
    to something slow). Every StuckKey hashes alike, so a lookup compares them."""

    armed = False
    entered = threading.Event()
    released = threading.Event()

    def __init__(self, name: Any) -> None:
        self.name = name

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        if StuckKey.armed:
            StuckKey.entered.set()
            StuckKey.released.wait(10)
        return isinstance(other, StuckKey) and other.name == self.name

    def __repr__(self) -> str:
        return f"StuckKey({self.name!r})"


@pytest.fixture
def stuck_keys() -> Any:
    StuckKey.armed = False
    StuckKey.entered, StuckKey.released = threading.Event(), threading.Event()
    yield StuckKey
    StuckKey.released.set()
    StuckKey.armed = False


@pytest.mark.parametrize("kind", KINDS)
def test_a_child_uses_an_l1_that_a_parent_thread_was_stuck_inside(
    world: World, kind: str, stuck_keys: type[StuckKey], impl: Any
) -> None:
    l1 = world.Layer(max_size=100, name="l1")
    cache = world.cache(kind, layers=[l1])
    for n in range(3):  # (with "new", as many as may share a hash: flooding.py)
        l1.set(StuckKey(n), n)
    l1.set("plain", "kept")
    StuckKey.armed = True
    writer = threading.Thread(target=lambda: l1.set(StuckKey("new"), "new"), daemon=True)
    writer.start()
    assert StuckKey.entered.wait(5)  # the writer is inside set(), in a key's __eq__

    def child() -> dict[str, Any]:
        StuckKey.armed = False  # the child's keys answer at once
        _, set_seconds = timed(lambda: cache.call("set", "child", 1))
        got, get_seconds = timed(lambda: cache.call("get", "child"))
        loaded, load_seconds = timed(
            lambda: cache.call("get_or_load", StuckKey("loaded"), cache.loader(child_value))
        )
        check_invariants(l1)
        return {
            "seconds": max(set_seconds, get_seconds, load_seconds),
            "got": got,
            "loaded": loaded,
            "plain": l1.get("plain"),
            "stuck key": l1.get(StuckKey(1)),
        }

    answer, seconds = timed(lambda: in_child(child))
    assert answer["seconds"] < ANSWER_SECONDS
    assert answer["got"] == 1
    assert answer["loaded"] == child_value(StuckKey("loaded"))
    if impl.name == "compiled":  # consistent whenever Python code runs: the child keeps all
        assert (answer["plain"], answer["stuck key"]) == ("kept", 1)
    else:  # halfway through an update, maybe: the child starts the pure twin empty
        assert (answer["plain"], answer["stuck key"]) == (None, None)
    assert seconds < 2 * ANSWER_SECONDS  # fork() waited a bounded time for the stuck thread
    StuckKey.armed = False
    StuckKey.released.set()
    writer.join(5)
    assert l1.get(StuckKey("new")) == "new"  # the parent's write finished
    check_invariants(l1)


def test_a_child_gets_a_consistent_copy_of_an_l1_busy_in_parent_threads(
    world: World,
) -> None:
    # Threads write and evict without pause; the pure twin is held across fork() (briefly)
    # and the compiled one is consistent whenever Python code runs: every child's copy is
    # whole (and keeps its entries), and the parent's threads go on.
    l1 = world.Layer(max_size=64, name="l1")
    stop = threading.Event()
    done = [0] * 4

    def churn(n: int) -> None:
        while not stop.is_set():
            key = f"{n}:{done[n] % 200}"
            l1.set(key, done[n])
            l1.get(key)
            if done[n] % 7 == 0:
                l1.delete(f"{n}:{(done[n] - 50) % 200}")
            done[n] += 1

    threads = [threading.Thread(target=churn, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(10):
            time.sleep(0.01)

            def child() -> int:
                check_invariants(l1)
                l1.set("child", 1)  # (a full, hot L1 may not admit it)
                l1.get("child")
                l1.delete("0:0")
                check_invariants(l1)
                return len(l1)

            assert in_child(child) > 1  # the entries came along
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    check_invariants(l1)
    assert min(done) > 0


# ----------------------------------------------------------------------------- locks
@pytest.mark.parametrize("kind", KINDS)
def test_a_child_counts_though_a_parent_thread_held_the_counter_lock(
    world: World, kind: str
) -> None:
    cache = world.cache(kind)  # the lock also guards the L2's circuit breaker
    world.held(cache.raw._state._lock)

    def child() -> tuple[Any, float, int]:
        value, seconds = timed(lambda: cache.call("get_or_load", "k", cache.loader(child_value)))
        return value, seconds, cache.raw.stats().loader_calls

    value, seconds, loader_calls = in_child(child)
    assert (value, loader_calls) == (child_value("k"), 1)
    assert seconds < ANSWER_SECONDS


@pytest.mark.parametrize("kind", KINDS)
def test_a_child_reads_redis_though_a_parent_thread_held_the_layers_counter_lock(
    world: World, kind: str
) -> None:
    cache = world.cache(kind)
    cache.call("set", "k", "v")
    l1, l2 = cache.raw.layers
    world.held(l2._counter_lock)

    def child() -> tuple[Any, float, int]:
        l1.delete("k")  # so that the read goes to Redis, which counts it
        value, seconds = timed(lambda: cache.call("get", "k"))
        return value, seconds, l2.stats().hits

    value, seconds, hits = in_child(child)
    assert (value, hits) == ("v", 1)
    assert seconds < ANSWER_SECONDS


@pytest.mark.parametrize("kind", KINDS)
def test_a_child_writes_through_a_writer_layer_whose_lock_a_parent_thread_held(
    world: World, kind: str
) -> None:
    store: dict[Any, Any] = {}

    async def write_async(items: dict[Any, Any]) -> None:
        store.update(items)

    writer = WriterLayer(store.update) if kind == "sync" else AsyncWriterLayer(write_async)
    cache = world.cache(kind, layers=[world.Layer(max_size=100), writer])
    world.held(writer._lock)

    def child() -> tuple[float, int, dict[Any, Any]]:
        _, seconds = timed(lambda: cache.call("set", "k", 1))
        return seconds, writer.writes, store

    seconds, writes, stored = in_child(child)
    assert (writes, stored) == (1, {"k": 1})
    assert seconds < ANSWER_SECONDS


@pytest.mark.parametrize("kind", KINDS)
def test_a_child_writes_to_l2_though_its_parent_had_a_breaker_probe_out(
    world: World, kind: str
) -> None:
    breaker = LayerPolicy(breaker=BreakerPolicy(failures=1, cooldown=0.05))
    cache = world.cache(kind, policies=[None, breaker])
    tier = cache.raw._state.tiers[1]
    tier.admit()
    tier.settle(LayerError("l2: down", transient=True))  # one failure opens the breaker
    time.sleep(0.06)
    tier.admit()  # half-open: a parent thread's call is the probe, and has not answered
    with pytest.raises(LayerUnavailableError):
        tier.admit()

    def child() -> tuple[float, Any]:
        _, seconds = timed(lambda: cache.call("set", "k", "v"))
        cache.raw.layers[0].delete("k")
        return seconds, cache.call("get", "k")

    seconds, value = in_child(child)
    assert value == "v"
    assert seconds < ANSWER_SECONDS


# ----------------------------------------------------------------------------- Redis
@pytest.mark.parametrize(
    ("kind", "max_connections"),
    [("sync", None), ("sync", 4), ("asyncio", None)],
    ids=["sync-pool", "sync-blocking-pool", "asyncio"],
)
def test_a_child_talks_to_redis_on_connections_of_its_own(
    world: World, kind: str, max_connections: int | None
) -> None:
    l2 = world.l2(kind, max_connections=max_connections)
    cache = world.cache(kind, layers=[world.Layer(max_size=100, name="l1"), l2])
    l1 = cache.raw.layers[0]
    cache.call("set", "k", "v")  # the parent has a connection, idle in its pool
    parent_connection = cache.wait(l2.client.client_id())

    def child() -> tuple[Any, float, int]:
        l1.delete("k")
        value, seconds = timed(lambda: cache.call("get", "k"))  # the hiredis read path
        cache.call("set", "written by the child", 1)
        return value, seconds, cache.wait(l2.client.client_id())

    value, seconds, child_connection = in_child(child)
    assert value == "v"
    assert seconds < ANSWER_SECONDS
    assert child_connection != parent_connection
    # The parent's connection still works, and is the same one: the child neither read from
    # it nor took it out of the parent's event loop.
    l1.delete("written by the child")
    value, seconds = timed(lambda: cache.call("get", "written by the child"))
    assert value == 1
    assert seconds < 0.5  # the layer's socket timeout: the read did not wait it out
    assert cache.wait(l2.client.client_id()) == parent_connection
    assert cache.raw.stats().read_errors["l2"] == 0


# ----------------------------------------------------------------------------- at random
def test_forks_at_random_moments_leave_every_child_a_working_cache(
    Layer: type, redis_url: str, prefix: str
) -> None:
    from faults.forkstorm import storm

    report = storm(Layer, redis_url, prefix, forks=30)
    assert report.hangs == 0, report
    assert not report.failures, report
    assert report.slowest_child_load < ANSWER_SECONDS, report
    assert report.parent_failures == [], report
