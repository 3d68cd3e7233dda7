"""Replaying dead letters into Redis when things go wrong: a server that never answers, a
server that dies midway, a replay killed midway (rerun: it resumes), a replay still running
(its claim is left alone), live writers racing the replay, and the acceptance figure: the
dead letters of a 5 s outage under 8 writers replayed, no key made older.

The documented command is run as a real process where it matters
(``python -m multilayercache.deadletter replay FILE --redis URL``)."""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import multilayercache
from multilayercache import (
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    RetryPolicy,
    WriteBehind,
)
from multilayercache.core.entry import deltas, unwrap, wrap_at
from multilayercache.core.freshness import Lifetime
from multilayercache.deadletter import (
    DeadLetter,
    DeadLetterRecord,
    read_dead_letters,
    replay_into_redis,
)
from multilayercache.tools.servers import RedisServer

from network_faults import Blackhole
from support import wait_until

SOURCES = str(Path(multilayercache.__file__).parents[1])
CLAIMED = "dead.jsonl.replaying-*"


def stamped(written_ms: int, payload: bytes) -> bytes:
    return wrap_at(written_ms, deltas(Lifetime(math.inf)), 0.0, 0, payload)


def written_ms_of(data: bytes | None) -> int | None:
    if data is None:
        return None
    envelope, _ = unwrap(data)
    return None if envelope is None else envelope.written_ms


def dead_letters(path: Path, prefix: str, count: int, written_ms: int) -> list[bytes]:
    """``count`` records of distinct keys, made at ``written_ms``: their values."""
    values = [stamped(written_ms, f"value {n}".encode()) for n in range(count)]
    DeadLetter(path, fsync=False).append(
        DeadLetterRecord.create(
            f"k{n}", "set", value, "down", 1, "l2", store_key=f"{prefix}k{n}", written_ms=written_ms
        )
        for n, value in enumerate(values)
    )
    return values


def cli(path: Path, url: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "multilayercache.deadletter",
        "replay",
        str(path),
        "--redis",
        url,
        *extra,
    ]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SOURCES + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture
def persistent_server() -> Iterator[RedisServer]:
    """A server that keeps what it acknowledged across a SIGKILL (AOF, fsync always), as
    production L2s do: what a replay wrote before a crash is still there after it."""
    with RedisServer.start(
        "--appendonly", "yes", "--appendfsync", "always", use_env=False
    ) as server:
        yield server


def keys_held(client: Any, prefix: str, count: int) -> list[bytes | None]:
    return client.mget([f"{prefix}k{n}" for n in range(count)])


# ----------------------------------------------------------------------------- no answer
def test_a_server_that_never_answers_fails_fast_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    dead_letters(path, "p:", 10, 1)
    before = path.read_bytes()
    with Blackhole() as hole:
        start = time.monotonic()
        with pytest.raises(ConnectionError, match="did not answer PING.*Timeout"):
            replay_into_redis(path, hole.url, timeout=0.3)
        assert time.monotonic() - start < 1.0
        # The documented command, with its default timeout (2 s): a clear error, status 2.
        start = time.monotonic()
        done = subprocess.run(
            cli(path, hole.url), capture_output=True, text=True, timeout=30, env=environment()
        )
        took = time.monotonic() - start
    assert done.returncode == 2, done
    assert "did not answer PING" in done.stderr and "file is as it was" in done.stderr
    assert took < 2.0 + 3.0  # the timeout, and the interpreter starting
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_a_refused_port_fails_at_once_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    dead_letters(path, "p:", 10, 1)
    with RedisServer.start(use_env=False) as server:
        url = server.url
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="did not answer PING"):
        replay_into_redis(path, url)
    with pytest.raises(ConnectionError, match="did not answer PING"):
        replay_into_redis(path, url, cluster=True)
    assert time.monotonic() - start < 1.0
    assert list(tmp_path.iterdir()) == [path] and len(list(read_dead_letters(path))) == 10


# ----------------------------------------------------------------------------- dies midway
def test_a_server_that_dies_midway_loses_no_record(
    tmp_path: Path, persistent_server: RedisServer
) -> None:
    path, prefix, count = tmp_path / "dead.jsonl", "mid:", 30_000
    values = dead_letters(path, prefix, count, 5)
    watcher = redis.Redis.from_url(persistent_server.url)

    def kill_once_some_are_written() -> None:
        wait_until(lambda: watcher.dbsize() > 2_000, 10)
        persistent_server.kill()

    killer = threading.Thread(target=kill_once_some_are_written)
    killer.start()
    try:
        report = replay_into_redis(path, persistent_server.url)
    finally:
        killer.join()
        watcher.close()
    assert report.replayed > 0 and report.failed > 0, report
    assert report.replayed + report.failed == count and report.kept_in == path
    assert "ConnectionError: not tried: Redis went away" in report.errors[-1]  # no timeouts
    assert len(report.errors) == 2 and report.errors[-1].endswith("more)")
    assert len(list(read_dead_letters(path))) == report.failed
    assert [p.name for p in tmp_path.iterdir()] == ["dead.jsonl"]
    persistent_server.restart()
    again = replay_into_redis(path, persistent_server.url)
    assert again.failed == 0 and not path.exists()
    client = redis.Redis.from_url(persistent_server.url)
    assert keys_held(client, prefix, count) == values
    client.close()


# ----------------------------------------------------------------------------- killed midway
def test_a_replay_killed_midway_resumes_when_the_command_is_run_again(
    tmp_path: Path, persistent_server: RedisServer
) -> None:
    path, prefix, count = tmp_path / "dead.jsonl", "killed:", 30_000
    values = dead_letters(path, prefix, count, 5)
    client = redis.Redis.from_url(persistent_server.url)
    server_pid = persistent_server.process.pid  # type: ignore[union-attr]
    replaying = subprocess.Popen(
        cli(path, persistent_server.url, "--timeout", "30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    try:
        assert wait_until(lambda: client.dbsize() > 1_000, 15) is not None, "no progress"
        os.kill(server_pid, signal.SIGSTOP)  # the replay now waits for a reply...
        time.sleep(0.2)
        assert replaying.poll() is None, "the replay ended before it could be killed"
        replaying.kill()  # ...and dies waiting, its claimed file half replayed
        replaying.wait()
    finally:
        os.kill(server_pid, signal.SIGCONT)
        replaying.stdout.close()  # type: ignore[union-attr]
        replaying.stderr.close()  # type: ignore[union-attr]
    (claimed,) = tmp_path.glob(CLAIMED)
    assert not path.exists()
    assert 0 < client.dbsize() < count
    # Rerun the documented command, exactly: it takes the claimed file over.
    rerun = subprocess.run(
        cli(path, persistent_server.url),
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(),
    )
    assert rerun.returncode == 0, rerun
    assert "resumed 1 interrupted replay(s)" in rerun.stdout
    assert "failed 0, kept 0, unreadable 0" in rerun.stdout
    assert keys_held(client, prefix, count) == values
    assert list(tmp_path.iterdir()) == []
    # Run once more: nothing left, said so; the keys are as they were.
    third = subprocess.run(
        cli(path, persistent_server.url),
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(),
    )
    assert third.returncode == 2 and "no dead-letter file" in third.stderr
    client.close()


def test_a_replay_still_running_keeps_its_claim(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    path, count = tmp_path / "dead.jsonl", 30_000
    values = dead_letters(path, prefix, count, 5)
    client = redis.Redis.from_url(redis_url)
    first = subprocess.Popen(
        cli(path, redis_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment()
    )
    try:
        assert wait_until(lambda: client.exists(f"{prefix}k100"), 15) is not None
        os.kill(first.pid, signal.SIGSTOP)  # alive, holding its claimed file's lock
        assert first.poll() is None, "the replay ended before it could be paused"
        (claimed,) = tmp_path.glob(CLAIMED)
        # Meanwhile a live cache gives up more writes: a new file.
        later = [stamped(9, b"later")] * 3
        DeadLetter(path).append(
            DeadLetterRecord.create(
                f"new{n}",
                "set",
                later[n],
                "down",
                1,
                "l2",
                store_key=f"{prefix}new{n}",
                written_ms=9,
            )
            for n in range(3)
        )
        second = subprocess.run(
            cli(path, redis_url), capture_output=True, text=True, timeout=30, env=environment()
        )
        assert second.returncode == 0, second
        assert second.stdout.startswith("replayed 3, ") and "resumed" not in second.stdout
        assert claimed.exists()  # not taken over
    finally:
        os.kill(first.pid, signal.SIGCONT)
        out, _ = first.communicate(timeout=60)
    assert first.returncode == 0 and out.startswith(b"replayed 30000, ")
    assert keys_held(client, prefix, count) == values
    assert client.mget([f"{prefix}new{n}" for n in range(3)]) == later
    assert list(tmp_path.iterdir()) == []
    client.close()


# ----------------------------------------------------------------------------- live writers
def test_a_live_write_is_never_undone_by_a_replay_running_meanwhile(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    # Old dead letters of a few hot keys are replayed again and again while live writers
    # set, read back and delete those keys. A replay that read a key (empty, just deleted)
    # and then wrote it could land just after a live set: the live value undone, older.
    # One script per record leaves no such gap: a live set always reads back as set.
    hot, path = 20, tmp_path / "dead.jsonl"
    stop = threading.Event()
    undone: list[tuple[str, bytes | None]] = []
    cycles = [0]

    def live(part: int) -> None:
        client = redis.Redis.from_url(redis_url)
        names = [f"{prefix}k{n}" for n in range(part, hot, 4)]
        while not stop.is_set():
            for name in names:
                value = stamped(time.time_ns() // 1_000_000, f"live {part}".encode())
                client.set(name, value)
                held = client.get(name)
                if held != value:
                    undone.append((name, held))
                client.delete(name)
                cycles[0] += 1
        client.close()

    threads = [threading.Thread(target=live, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    client = redis.Redis.from_url(redis_url)
    replays, deadline = 0, time.monotonic() + 1.5
    try:
        while time.monotonic() < deadline:
            dead_letters(path, prefix, hot, 1_000)  # long before any live write
            replay_into_redis(path, client)
            replays += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        client.close()
    assert replays > 20 and cycles[0] > 1_000
    assert undone == [], f"{len(undone)} live writes undone by {replays} replays"


# ----------------------------------------------------------------------------- the figure
WRITERS = 8
KEYS = 10_000
OUTAGE_SECONDS = 5.0
DELETED = None


def test_replaying_a_5s_outage_under_8_writers_makes_no_key_older(
    tmp_path: Path, persistent_server: RedisServer
) -> None:
    """The acceptance figure of issue 18, item 3. 8 threads write (95% sets of random
    values, 5% deletes) over 10,000 keys through a write-behind L2 whose retries give up
    after 1 s; Redis is SIGKILLed for 5 s and restarted (AOF: it keeps what it
    acknowledged); the writers go on 2 s more, so many dead letters are superseded by
    writes that landed. Then the dead-letter file is replayed with the documented command
    (and, from the same start, with ``--skip-missing``). Counted: keys whose written_ms
    went backwards, keys missing the value their last acknowledged write set, keys holding
    another value, and keys holding a value their last acknowledged write deleted (a
    delete that landed leaves nothing to compare with: the documented trade-off)."""
    dead, prefix = tmp_path / "dead.jsonl", "outage:"
    behind = WriteBehind(
        retry=RetryPolicy(attempts=None, base=0.05, cap=0.2, budget=1.0), dead_letter=dead
    )
    cache = MultilayerCache(
        [InMemoryLayer(max_size=10_000), RedisLayer(persistent_server.url, prefix=prefix)],
        [None, LayerPolicy(write=behind)],
    )
    acknowledged: dict[str, Any] = {}  # a key's last acknowledged write (DELETED: a delete)
    refused = [0]
    stop = threading.Event()

    def write(part: int) -> None:
        rng = random.Random(part)
        mine = [f"k{n}" for n in range(part, KEYS, WRITERS)]  # one writer per key: one order
        while not stop.is_set():
            key = rng.choice(mine)
            try:
                if rng.random() < 0.05:
                    cache.delete(key)
                    acknowledged[key] = DELETED
                else:
                    value = rng.randrange(1 << 60)
                    cache.set(key, value)
                    acknowledged[key] = value
            except Exception:  # refused (QueueFull): not acknowledged, in no layer
                refused[0] += 1
            time.sleep(0.001)

    threads = [threading.Thread(target=write, args=(part,)) for part in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        persistent_server.kill()
        time.sleep(OUTAGE_SECONDS)
        persistent_server.restart()
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        cache.close()
    client = redis.Redis.from_url(persistent_server.url)
    names = [f"k{n}" for n in range(KEYS)]
    before = dict(zip(names, client.mget([prefix + name for name in names]), strict=True))
    records = list(read_dead_letters(dead))
    latest: dict[str, DeadLetterRecord] = {}
    for record in records:  # what the replay will pick: the latest record of each key
        if record.key not in latest or record.written_ms >= latest[record.key].written_ms:
            latest[record.key] = record
    # The records a replay writes into an empty key: sets the cache deleted since (they
    # come back), and sets Redis never had (restored).
    into_empty = {
        name for name, record in latest.items() if record.op == "set" and not before[name]
    }
    deleted_since = {name for name in into_empty if acknowledged[name] is DELETED}
    never_had = into_empty - deleted_since
    shutil.copy(dead, tmp_path / "copy.jsonl")

    def replay_and_count(path: Path, *options: str) -> dict[str, Any]:
        started = time.monotonic()
        done = subprocess.run(
            cli(path, persistent_server.url, *options),
            capture_output=True,
            text=True,
            timeout=60,
            env=environment(),
        )
        took = time.monotonic() - started
        assert done.returncode == 0, done
        after = dict(zip(names, client.mget([prefix + name for name in names]), strict=True))
        reader = RedisLayer(persistent_server.url, prefix=prefix)
        found = reader.get_many(names)
        reader.close()
        values = {name: found.get(name, DELETED) for name in names}
        last = {name: acknowledged.get(name, DELETED) for name in names}
        return {
            "seconds": took,
            "report": done.stdout.strip(),
            "went back": {
                name
                for name in names
                if before[name]
                and after[name]
                and written_ms_of(after[name]) < written_ms_of(before[name])
            },
            "missing": {n for n in names if last[n] is not DELETED and values[n] is DELETED},
            "wrong": {
                n for n in names if last[n] is not DELETED and values[n] not in (last[n], DELETED)
            },
            "deleted, back": {n for n in names if last[n] is DELETED and values[n] is not DELETED},
        }

    skipping = replay_and_count(tmp_path / "copy.jsonl", "--skip-missing")
    restore = client.pipeline(transaction=False)
    for name in names:  # Redis as it was before that replay, for the plain one
        if before[name] is None:
            restore.delete(prefix + name)
        else:
            restore.set(prefix + name, before[name])
    restore.execute()
    plain = replay_and_count(dead)
    client.close()
    print(
        f"\n{len(records)} dead letters of {KEYS} keys ({sum(map(bool, before.values()))} "
        f"held a value); writes refused: {refused[0]}"
    )
    for title, counted in (("replay", plain), ("replay --skip-missing", skipping)):
        print(
            f"{title} ({counted['seconds']:.2f} s, the command): {counted['report']}\n"
            f"  keys whose written_ms went backwards: {len(counted['went back'])}; "
            f"missing their last acknowledged value: {len(counted['missing'])}; "
            f"holding another value: {len(counted['wrong'])}; "
            f"holding a value their last acknowledged write deleted: "
            f"{len(counted['deleted, back'])}"
        )
    assert len(records) > 500  # the outage did produce dead letters
    assert "older-skipped 0," not in plain["report"]  # writes that landed later won
    for counted in (plain, skipping):
        assert counted["went back"] == set() and counted["wrong"] == set()
    # The plain replay restores every acknowledged value; a delete the cache made after a
    # dead-lettered set, landed, leaves nothing to compare with: that set comes back.
    assert plain["missing"] == set() and plain["deleted, back"] == deleted_since
    # --skip-missing brings no deleted value back, and leaves empty what Redis never had.
    assert skipping["deleted, back"] == set() and skipping["missing"] == never_had
