"""The write-behind queue driven the way the managers drive it: a worker thread under a
``threading.Condition``, and an asyncio task, sending batches to a real Redis in pipelines.
Minimal reference drivers (the managers' own live in ``sync/`` and ``aio/``): they show the
protocol, and check that the queue's interface is enough for it, through a server kill."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.retry import Retry

from multilayercache.core.backoff import RetryPolicy
from multilayercache.core.errors import LayerError
from multilayercache.core.writepolicy import QueueFull, WriteBehind
from multilayercache.core.writequeue import Batch, WriteQueue
from multilayercache.deadletter import DeadLetter, DeadLetterRecord, read_dead_letters
from multilayercache.layers.redis.codec import client_options
from multilayercache.tools.servers import RedisServer, server_binary

# As the Redis layers build theirs: short timeouts, no retries of redis-py's own.
OPTIONS = client_options({}, Retry)


def layer_error(error: redis.RedisError) -> LayerError:
    transient = isinstance(error, (redis.ConnectionError, redis.TimeoutError))
    return LayerError(f"redis: {error}", transient=transient)


def records(batch: Batch) -> list[DeadLetterRecord]:
    return [
        DeadLetterRecord.of(dead, "redis", value=dead.payload, store_key=dead.key)
        for dead in batch.dead
    ]


class ThreadDriver:
    """One worker thread; every call on the queue under ``self.ready``."""

    def __init__(self, client: redis.Redis, options: WriteBehind, sink: DeadLetter) -> None:
        self.client, self.options, self.sink = client, options, sink
        self.queue = WriteQueue(options)
        self.ready = threading.Condition()
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()

    def set(self, key: str, value: bytes) -> None:
        size = len(key) + len(value)
        with self.ready:
            now = time.monotonic()
            was_idle = self.queue.next_due_in(now) is None
            if self.options.when_full == "block" and self.queue.full(size, key):
                self.ready.wait_for(
                    lambda: not self.queue.full(size, key), self.options.block_timeout
                )
                now = time.monotonic()
            # Still full (after block_timeout): QueueFull goes to the caller, counted once.
            self.queue.put(key, "set", value, size, now)
            # Wake the worker only when its sleep would now be too long.
            if was_idle or self.queue.due(now):
                self.ready.notify_all()

    def get_pending(self, key: str) -> Any:
        with self.ready:
            return self.queue.pending(key)

    def flush(self, timeout: float) -> bool:
        with self.ready:
            mark = self.queue.mark()
            self.ready.notify_all()
            return self.ready.wait_for(lambda: self.queue.reached(mark), timeout)

    def close(self, timeout: float) -> bool:
        with self.ready:
            self.queue.close()
            self.ready.notify_all()
            return self.ready.wait_for(lambda: self.queue.idle, timeout)

    def _work(self) -> None:
        while True:
            with self.ready:
                while not self.queue.due(now := time.monotonic()):
                    if self.queue.closed and self.queue.idle:
                        return
                    self.ready.wait(self.queue.next_due_in(now))
                batch = self.queue.take(now)
            assert batch is not None
            self._send(batch)

    def _send(self, batch: Batch) -> None:
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                for write in batch.writes:
                    pipe.set(write.key, write.payload, px=60_000)
                try:
                    pipe.execute()
                except redis.RedisError as error:
                    raise layer_error(error) from error
            except Exception as error:
                with self.ready:
                    delay = self.queue.failed(batch, error, time.monotonic())
                    self.ready.notify_all()  # superseded writes may have left: room
                if delay is None:
                    break
                time.sleep(delay)
            else:
                with self.ready:
                    self.queue.done(batch)
                    self.ready.notify_all()
                break
        if batch.dead:
            try:
                self.sink.append(records(batch))  # outside the lock: file IO
            finally:
                with self.ready:
                    self.queue.settle(batch)  # now a flush may count them as finished
                    self.ready.notify_all()


class TaskDriver:
    """One worker task. No lock: one event loop, and no await inside a queue call; the
    ``asyncio.Condition`` is only there to sleep on and be woken."""

    def __init__(self, client: redis.asyncio.Redis, options: WriteBehind, sink: DeadLetter) -> None:
        self.client, self.options, self.sink = client, options, sink
        self.queue = WriteQueue(options)
        self.changed = asyncio.Condition()
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def set(self, key: str, value: bytes) -> None:
        size = len(key) + len(value)
        if self.options.when_full == "block" and self.queue.full(size, key):
            async with self.changed:
                try:
                    await asyncio.wait_for(
                        self.changed.wait_for(lambda: not self.queue.full(size, key)),
                        self.options.block_timeout,
                    )
                except TimeoutError:
                    pass  # still full: put raises QueueFull
        now = time.monotonic()
        was_idle = self.queue.next_due_in(now) is None
        self.queue.put(key, "set", value, size, now)
        if was_idle or self.queue.due(now):
            async with self.changed:
                self.changed.notify_all()

    async def flush(self) -> None:
        mark = self.queue.mark()
        async with self.changed:
            self.changed.notify_all()
            await self.changed.wait_for(lambda: self.queue.reached(mark))

    async def _work(self) -> None:
        while True:
            async with self.changed:
                while not self.queue.due(now := time.monotonic()):
                    try:
                        await asyncio.wait_for(self.changed.wait(), self.queue.next_due_in(now))
                    except TimeoutError:
                        pass
            batch = self.queue.take(now)
            assert batch is not None
            while True:
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for write in batch.writes:
                        pipe.set(write.key, write.payload, px=60_000)
                    await pipe.execute()
                except Exception as error:
                    if isinstance(error, redis.RedisError):
                        error = layer_error(error)
                    delay = self.queue.failed(batch, error, time.monotonic())
                    if delay is None:
                        break
                    await asyncio.sleep(delay)
                else:
                    self.queue.done(batch)
                    break
            if batch.dead:
                try:  # file IO and fsync: off the event loop
                    await asyncio.to_thread(self.sink.append, records(batch))
                finally:
                    self.queue.settle(batch)
            async with self.changed:
                self.changed.notify_all()


def test_a_worker_thread_sends_every_latest_value(
    redis_url: str, raw_redis: Any, prefix: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url, **OPTIONS)
    driver = ThreadDriver(client, WriteBehind(), DeadLetter(tmp_path / "dead.jsonl"))
    latest: dict[str, bytes] = {}
    lock = threading.Lock()

    def write(thread: int) -> None:
        for index in range(3000):
            key = f"{prefix}{index % 400}"
            value = f"{thread}:{index}".encode()
            with lock:  # the value acknowledged last for the key, as the model
                driver.set(key, value)
                latest[key] = value

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    some_key = next(iter(latest))
    assert driver.get_pending(some_key) in (None, ("set", latest[some_key]))
    assert driver.flush(timeout=10)
    assert dict(zip(latest, raw_redis.mget(list(latest)), strict=True)) == latest
    assert driver.close(timeout=5)
    stats = driver.queue.stats()
    assert stats.delivered + stats.coalesced == stats.puts == 24_000 and stats.dead_lettered == 0
    client.close()


async def test_a_worker_task_sends_every_latest_value(
    redis_url: str, raw_redis: Any, prefix: str, tmp_path: Path
) -> None:
    client = redis.asyncio.Redis.from_url(
        redis_url, **client_options({}, redis.asyncio.retry.Retry)
    )
    driver = TaskDriver(
        client, WriteBehind(max_items=1000, batch_size=100), DeadLetter(tmp_path / "dead.jsonl")
    )
    latest: dict[str, bytes] = {}

    async def write(task: int) -> None:
        for index in range(50):
            key = f"{prefix}{(task * 7 + index) % 300}"
            value = f"{task}:{index}".encode()
            await driver.set(key, value)
            latest[key] = value
            if index % 10 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(write(task) for task in range(200)))
    await asyncio.wait_for(driver.flush(), 10)
    assert dict(zip(latest, raw_redis.mget(list(latest)), strict=True)) == latest
    driver.worker.cancel()
    await client.aclose()


def test_a_killed_server_loses_no_acknowledged_write(prefix: str, tmp_path: Path) -> None:
    # The acceptance scenario, shortened: SIGKILL Redis under 8 writer threads, restart it
    # on the same port a second later; after flush() every acknowledged write is in Redis
    # with its latest value, or in the dead-letter file.
    # With an append-only file, as a production Redis, so that what it acknowledged
    # survives. fsync "always": with "everysec" a slow fsync lets Redis reply before its
    # AOF write (it documents up to 2 s of writes lost), and a SIGKILL then loses them.
    persist = ("--appendonly", "yes", "--appendfsync", "always")
    server = RedisServer.start(*persist, use_env=False)
    assert server.directory is not None
    client = redis.Redis.from_url(server.url, **OPTIONS)
    options = WriteBehind(
        max_items=5_000,
        block_timeout=0.2,
        retry=RetryPolicy(attempts=None, base=0.05, cap=0.2, budget=30.0),
    )
    dead_path = tmp_path / "dead.jsonl"
    driver = ThreadDriver(client, options, DeadLetter(dead_path))
    acknowledged: dict[str, bytes] = {}
    refused = 0
    lock = threading.Lock()
    stop = threading.Event()

    def write(thread: int) -> None:
        nonlocal refused
        index = 0
        while not stop.is_set():
            key, value = f"{prefix}{thread}:{index % 2000}", f"{index}".encode()
            try:
                driver.set(key, value)
            except QueueFull:
                with lock:
                    refused += 1
                time.sleep(0.01)
            else:
                acknowledged[key] = value  # each thread has keys of its own
            index += 1

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    restarted = None
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        server.kill()
        time.sleep(1.0)
        restarted = subprocess.Popen(
            [server_binary(), "--port", str(server.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--dir", server.directory.name, *persist],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
        assert driver.flush(timeout=20)
        found = dict(zip(acknowledged, client.mget(list(acknowledged)), strict=True))
        dead = {r.key: r.value for r in read_dead_letters(dead_path)} if dead_path.exists() else {}
        missing = {
            key: value
            for key, value in acknowledged.items()
            if found[key] != value and dead.get(key) != value
        }
        assert not missing, f"{len(missing)} acknowledged writes lost"
        assert driver.queue.stats().retries > 0  # the outage was ridden out by retrying
        assert driver.close(timeout=5)
    finally:
        stop.set()
        client.close()
        if restarted is not None:
            restarted.terminate()
            restarted.wait()
        server.stop()


@pytest.mark.parametrize("when_full", ["raise", "block"])
def test_a_full_queue_refuses_instead_of_dropping(when_full: str, tmp_path: Path) -> None:
    # A server that is never there: the queue fills, and set() says so.
    client = redis.Redis(port=1, **OPTIONS)
    options = WriteBehind(
        max_items=10,
        batch_size=5,
        when_full=when_full,  # type: ignore[arg-type]
        block_timeout=0.05,
        retry=RetryPolicy(attempts=None, base=0.01, cap=0.02, budget=0.3),
    )
    driver = ThreadDriver(client, options, DeadLetter(tmp_path / "dead.jsonl"))
    for index in range(10):
        driver.set(f"k{index}", b"v")
    started = time.monotonic()
    with pytest.raises(QueueFull):
        driver.set("one-too-many", b"v")
    waited = time.monotonic() - started
    assert waited >= 0.04 if when_full == "block" else waited < 0.04
    driver.set("k9", b"v2")  # a pending key (not in flight) is still accepted
    # Past the retry budget every write goes to the dead letter, none is dropped.
    assert driver.close(timeout=5)
    stats = driver.queue.stats()
    assert (stats.dead_lettered, stats.dropped, stats.rejected) == (10, 0, 1)
    dead = {r.key: r.value for r in read_dead_letters(tmp_path / "dead.jsonl")}
    assert dead == {f"k{index}": b"v2" if index == 9 else b"v" for index in range(10)}
    client.close()


async def test_a_worker_task_dead_letters_off_the_loop_and_flush_waits_for_it(
    tmp_path: Path,
) -> None:
    client = redis.asyncio.Redis(port=1, **client_options({}, redis.asyncio.retry.Retry))
    options = WriteBehind(retry=RetryPolicy(attempts=2, base=0.01, budget=None))
    driver = TaskDriver(client, options, DeadLetter(tmp_path / "dead.jsonl"))
    for index in range(20):
        await driver.set(f"k{index}", b"v")
    await asyncio.wait_for(driver.flush(), 5)
    # flush() ended: every write is in the dead-letter file already, none is lost.
    assert sorted(r.key for r in read_dead_letters(tmp_path / "dead.jsonl")) == sorted(
        f"k{index}" for index in range(20)
    )
    assert driver.queue.idle and driver.queue.stats().dead_lettered == 20
    driver.worker.cancel()
    await client.aclose()
