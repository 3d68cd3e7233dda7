"""Dead letters: the JSONL format and its round trip, the sinks (file, callback, log), safe
appends from many threads and during a replay, and replays, into a real Redis too."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import stat
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multilayercache import RedisLayer, deadletter
from multilayercache.core.entry import deltas, unwrap, wrap_at
from multilayercache.core.errors import LayerError, SerializationError
from multilayercache.core.freshness import Lifetime
from multilayercache.core.writepolicy import WriteBehind
from multilayercache.core.writequeue import DeadWrite, WriteQueue
from multilayercache.deadletter import (
    DeadLetter,
    DeadLetterRecord,
    LogDeadLetters,
    read_dead_letters,
    replay,
    replay_into_redis,
    sink_for,
)

DOWN = LayerError("redis: connection refused")
FIELDS = {
    "time",
    "layer",
    "op",
    "key",
    "key_repr",
    "store_key",
    "attempts",
    "error",
    "encoding",
    "value",
    "px",
    "expires_at",
    "written_ms",
    "v",
}


def record(key: Any = "k", value: Any = b"v", op: str = "set", **fields: Any) -> DeadLetterRecord:
    layer = fields.pop("layer", "redis")
    return DeadLetterRecord.create(key, op, value, fields.pop("error", DOWN), 3, layer, **fields)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- the format
def test_one_json_line_per_write_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    sink = DeadLetter(path)
    at = datetime(2025, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    sink.append(
        [
            record(
                "user:1",
                b"\x00\xffbytes",
                store_key="app:user:1",
                px=300_000,
                written_ms=1_746_100_799_000,
                at=at,
            ),
            record(("user", 2), {"name": "Ada", "tags": [1, 2]}, layer="db", expires_at=1.5e9),
            record(42, object(), layer="db"),
            record(b"raw", None, op="delete", error=SerializationError("no")),
        ]
    )
    first, second, third, fourth = lines(path)
    assert all(set(line) == FIELDS and line["v"] == 2 for line in (first, second, third, fourth))
    assert first == {
        "time": "2025-05-01T12:00:00.123Z",
        "layer": "redis",
        "op": "set",
        "key": "user:1",
        "key_repr": False,
        "store_key": "app:user:1",
        "attempts": 3,
        "error": {"type": "multilayercache.core.errors.LayerError", "message": str(DOWN)},
        "encoding": "base64",
        "value": "AP9ieXRlcw==",
        "px": 300000,
        "expires_at": None,
        "written_ms": 1_746_100_799_000,
        "v": 2,
    }
    assert (second["key"], second["key_repr"], second["encoding"]) == ("('user', 2)", True, "json")
    assert second["value"] == {"name": "Ada", "tags": [1, 2]} and second["expires_at"] == 1.5e9
    assert third["encoding"] == "repr" and third["value"].startswith("<object object at")
    assert fourth["op"] == "delete" and fourth["value"] is None and fourth["encoding"] is None
    assert fourth["error"] == {
        "type": "multilayercache.core.errors.SerializationError",
        "message": "no",
    }
    for line in (second, third, fourth):  # ISO 8601, UTC
        assert datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0


def test_records_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    written = [
        record("a", b"\x01\x02", px=10),
        record((1, "x"), [1, 2.5, None], layer="db"),
        record(7, {1: "int keys do not survive JSON"}, layer="db"),
        record("d", None, op="delete"),
    ]
    DeadLetter(path).append(written)
    read = list(read_dead_letters(path))
    assert read == written
    assert read[1].original_key() == (1, "x") and read[0].original_key() == "a"
    assert read[2].encoding == "repr"  # a value JSON would change is kept as its repr
    assert read[0].value == b"\x01\x02"


def test_a_key_that_is_no_literal_is_said_so() -> None:
    with pytest.raises(ValueError, match="literal"):
        record(object()).original_key()


def test_a_dead_write_of_the_queue_becomes_a_record() -> None:
    queue = WriteQueue(WriteBehind())
    queue.put("k", "set", ("app:k", b"data", 5000), 4, now=0.0)
    batch = queue.take(0.0)
    assert queue.failed(batch, SerializationError("bad"), 0.0) is None
    (dead,) = batch.dead
    redis_key, data, px = dead.payload
    made = DeadLetterRecord.of(dead, "redis", value=data, store_key=redis_key, px=px)
    assert (made.key, made.op, made.value, made.store_key, made.px, made.attempts) == (
        "k",
        "set",
        b"data",
        "app:k",
        5000,
        1,
    )
    assert made.error_type.endswith("SerializationError")


def test_unreadable_lines_are_named_or_skipped(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record("a")])
    with path.open("a") as file:
        file.write('{"torn": \n\n')
    DeadLetter(path).append([record("b")])
    with pytest.raises(ValueError, match="line 2"):
        list(read_dead_letters(path))
    assert [r.key for r in read_dead_letters(path, errors="skip")] == ["a", "b"]


# ----------------------------------------------------------------------------- the sinks
def test_the_file_appears_with_the_first_dead_letter_readable_by_its_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sink = sink_for(WriteBehind().dead_letter)
    assert isinstance(sink, DeadLetter)
    assert sink.path == tmp_path / "multilayercache-dead-letters.jsonl"
    monkeypatch.chdir("/")  # resolved when made: a later chdir does not move it
    assert not sink.path.exists()
    sink.append([])
    assert not sink.path.exists()
    sink.append([record()])
    assert stat.S_IMODE(sink.path.stat().st_mode) == 0o600
    assert sink.appended == 1


def test_a_callback_gets_every_record(tmp_path: Path) -> None:
    seen: list[DeadLetterRecord] = []
    only_callback = DeadLetter(None, callback=seen.append)
    both = DeadLetter(tmp_path / "dead.jsonl", callback=seen.append)
    only_callback.append([record("a"), record("b")])
    both.append([record("c")])
    assert [r.key for r in seen] == ["a", "b", "c"]
    assert [r["key"] for r in lines(tmp_path / "dead.jsonl")] == ["c"]
    with pytest.raises(ValueError, match="path, a callback"):
        DeadLetter(None)
    with pytest.raises(TypeError):
        DeadLetter(None, callback="print")  # type: ignore[arg-type]


def test_one_failing_sink_does_not_stop_the_other(tmp_path: Path) -> None:
    seen: list[DeadLetterRecord] = []
    no_dir = DeadLetter(tmp_path / "missing" / "dead.jsonl", callback=seen.append)
    with pytest.raises(FileNotFoundError):
        no_dir.append([record("a")])
    assert [r.key for r in seen] == ["a"] and no_dir.appended == 1

    def broken(_: DeadLetterRecord) -> None:
        raise RuntimeError("alerting is down")

    path = tmp_path / "dead.jsonl"
    with pytest.raises(RuntimeError, match="alerting"):
        DeadLetter(path, callback=broken).append([record("b")])
    assert [r["key"] for r in lines(path)] == ["b"]


def test_without_a_sink_dead_writes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    sink = sink_for(None)
    assert isinstance(sink, LogDeadLetters)
    with caplog.at_level(logging.ERROR, logger="multilayercache.deadletter"):
        sink.append([record("lost-key")])
    assert "lost-key" in caplog.text and sink.appended == 1
    custom = DeadLetter(None, callback=print)
    assert sink_for(custom) is custom
    with pytest.raises(TypeError):
        sink_for(42)  # type: ignore[arg-type]


def test_appends_from_many_threads_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    sink = DeadLetter(path, fsync=False)
    threads, per_thread = 8, 150
    start = threading.Barrier(threads)

    def append(thread: int) -> None:
        start.wait()
        for index in range(per_thread):
            # Two records per append, with a value big enough to need several pages.
            value = os.urandom(3000)
            sink.append([record(f"{thread}:{index}:a", value), record(f"{thread}:{index}:b")])

    workers = [threading.Thread(target=append, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    keys = [r.key for r in read_dead_letters(path)]  # every line parses
    assert len(keys) == threads * per_thread * 2 and sink.appended == len(keys)
    for thread in range(threads):
        mine = [key for key in keys if key.startswith(f"{thread}:")]
        expected = [f"{thread}:{i}:{part}" for i in range(per_thread) for part in "ab"]
        assert mine == expected  # in order, and each append's two lines together
    assert all(keys[i][:-1] == keys[i + 1][:-1] for i in range(0, len(keys), 2))


def test_a_forked_child_appends_even_when_forked_mid_append(tmp_path: Path) -> None:
    # A pre-fork server may fork while a worker thread appends a dead letter: the child
    # must not inherit a held lock (the sink's thread lock, or the file's flock through an
    # inherited descriptor), and the parent's next append must not wait for the child.
    path = tmp_path / "dead.jsonl"
    sink = DeadLetter(path)
    in_fsync, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        in_fsync.set()
        release.wait(5)
        real_fsync(fd)

    os.fsync = slow_fsync  # type: ignore[assignment]
    try:
        appending = threading.Thread(target=sink.append, args=([record("parent-1")],))
        appending.start()
        assert in_fsync.wait(5)  # the thread holds both locks now
        child = os.fork()
        if child == 0:  # the child: append at once, then linger holding what it inherited
            code = 1
            try:
                signal.alarm(5)  # a child stuck on an inherited lock dies, and fails the test
                os.fsync = real_fsync  # type: ignore[assignment]
                sink.append([record("child")])
                code = 0
                time.sleep(1)
            finally:
                os._exit(code)
        release.set()
        appending.join(5)
    finally:
        os.fsync = real_fsync  # type: ignore[assignment]
    try:
        start = time.monotonic()
        sink.append([record("parent-2")])  # the child still lives, with its descriptors
        assert time.monotonic() - start < 1.0
    finally:
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(r.key for r in read_dead_letters(path)) == ["child", "parent-1", "parent-2"]


# ----------------------------------------------------------------------------- replay
def keys_written(path: Path, **options: Any) -> tuple[list[str], Any]:
    """Replay ``path`` into a writer that notes the keys (and ops) it is given."""
    seen: list[str] = []
    report = replay(path, lambda rec: seen.append(f"{rec.op} {rec.key} {rec.value!r}"), **options)
    return seen, report


def test_replay_keeps_what_still_fails_and_drops_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record(name) for name in ("ok", "fails", "other", "old", "ok2")])
    with path.open("ab") as file:
        file.write(b"not json")  # a torn last line, without its newline
    done: list[str] = []

    def write(rec: DeadLetterRecord) -> Any:
        if rec.key == "fails":
            raise ConnectionError("still down")
        if rec.key == "other":
            return "kept"
        if rec.key == "old":
            return "expired"
        done.append(rec.key)
        return None

    report = replay(path, write)
    assert done == ["ok", "ok2"]
    assert (report.replayed, report.failed, report.kept, report.expired, report.unreadable) == (
        2,
        1,
        1,
        1,
        1,
    )
    assert report.kept_in == path
    assert report.errors[0].startswith("'not json': not a dead-letter record")
    assert report.errors[1] == "fails: ConnectionError: still down"
    assert path.read_bytes().endswith(b"not json\n")
    assert [r.key for r in read_dead_letters(path, errors="skip")] == ["fails", "other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.jsonl"]  # the claim is gone
    everything = replay(path, lambda rec: None, keep_to=tmp_path / "bad.jsonl")
    assert (everything.replayed, everything.unreadable) == (2, 1) and not path.exists()
    assert (tmp_path / "bad.jsonl").read_bytes() == b"not json\n"


def test_only_the_latest_record_of_a_key_is_replayed(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append(
        [
            record("a", b"a at 30", written_ms=30),
            record("b", b"b at 10", written_ms=10),
            record("a", b"a at 20, given up later", written_ms=20),  # file order is not time
            record("b", None, op="delete", written_ms=11),  # deletes take part
            record("c", b"c, version 1"),  # no time: older than any record with one
            record("c", b"c at 5", written_ms=5),
            record("c", b"c, version 1 again"),
            record("d", b"d at 7, first", written_ms=7),
            record("d", b"d at 7, second", written_ms=7),  # a tie: the later line wins
            record("a", b"a in another layer", layer="db", written_ms=1),  # another key
        ]
    )
    seen, report = keys_written(path)
    assert seen == [
        "set a b'a at 30'",
        "delete b None",
        "set c b'c at 5'",
        "set d b'd at 7, second'",
        "set a b'a in another layer'",
    ]
    assert (report.replayed, report.superseded) == (5, 5)
    assert not path.exists()


def test_without_times_the_last_line_of_a_key_wins(tmp_path: Path) -> None:
    # Version-1 files (and persistence writers' records) carry no time: a key's records
    # reach the file in the order they were given up, the order they were made.
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record("k", b"1"), record("k", None, op="delete"), record("k", b"3")])
    seen, report = keys_written(path)
    assert seen == ["set k b'3'"] and report.superseded == 2


def test_a_failed_latest_record_is_kept_without_those_it_supersedes(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append(
        [record("k", b"old", written_ms=1), record("k", b"new", written_ms=2), record("x")]
    )

    def refuse_k(rec: DeadLetterRecord) -> None:
        if rec.key == "k":
            raise ConnectionError("down")

    report = replay(path, refuse_k)
    assert (report.failed, report.superseded, report.replayed) == (1, 1, 1)
    assert [r.value for r in read_dead_letters(path)] == [b"new"]


def test_records_a_writer_keeps_stay_all_of_them(tmp_path: Path) -> None:
    # "kept": not for this writer (another layer's, say): nothing is decided for them.
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record("k", b"1", written_ms=1), record("k", b"2", written_ms=2)])
    report = replay(path, lambda rec: "kept")
    assert (report.kept, report.superseded) == (2, 0)
    assert [r.value for r in read_dead_letters(path)] == [b"1", b"2"]


def test_older_is_an_outcome_that_drops_the_record(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record("k", written_ms=1)])
    report = replay(path, lambda rec: "older")
    assert report.older == 1 and report.kept_in is None and not path.exists()


def test_an_unknown_op_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record("a")])
    line = json.loads(record("b").to_json()) | {"op": "upsert"}
    with path.open("a") as file:
        file.write(json.dumps(line) + "\n")
    seen, report = keys_written(path)
    assert seen == ["set a b'v'"]  # never replayed as a set
    assert (report.replayed, report.unreadable) == (1, 1)
    assert "unknown op 'upsert'" in report.errors[0]
    assert [json.loads(text)["op"] for text in path.read_text().splitlines()] == ["upsert"]
    with pytest.raises(ValueError, match="unknown op 'upsert'"):
        list(read_dead_letters(path))


def test_a_newer_format_version_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_text(json.dumps(json.loads(record("a").to_json()) | {"v": 3}) + "\n")
    seen, report = keys_written(path)
    assert seen == [] and report.unreadable == 1 and "format version 3" in report.errors[0]
    assert json.loads(path.read_text())["v"] == 3


def test_version_1_lines_are_read_without_a_time(tmp_path: Path) -> None:
    # A line as version 1 wrote it: no written_ms.
    line = json.loads(record("a", b"x", store_key="app:a").to_json())
    del line["written_ms"]
    line["v"] = 1
    path = tmp_path / "dead.jsonl"
    path.write_text(json.dumps(line) + "\n")
    (read,) = read_dead_letters(path)
    assert (read.key, read.value, read.store_key, read.written_ms) == ("a", b"x", "app:a", None)
    with pytest.raises(ValueError, match="written_ms"):
        DeadLetterRecord.from_json(json.dumps(line | {"v": 2}))  # version 2 must say
    with pytest.raises(ValueError, match="written_ms must be an integer"):
        DeadLetterRecord.from_json(json.dumps(line | {"v": 2, "written_ms": "soon"}))


def test_replaying_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no dead-letter file"):
        replay(tmp_path / "none.jsonl", lambda rec: None)
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record()])
    with pytest.raises(ValueError, match="outcome"):
        replay(path, lambda rec: "maybe")  # type: ignore[arg-type,return-value]


def test_a_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "dead.jsonl"
    folder.mkdir()
    (folder / "inside").write_text("x")
    with pytest.raises(IsADirectoryError, match="not a dead-letter file"):
        replay(folder, lambda rec: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.jsonl"]
    assert (folder / "inside").read_text() == "x"


def test_an_interrupted_replay_resumes_when_run_again(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record("a", written_ms=1), record("b", written_ms=1)])

    def interrupted(rec: DeadLetterRecord) -> None:
        if rec.key == "b":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay(path, interrupted)
    (claimed,) = tmp_path.glob("dead.jsonl.replaying-*")
    assert not path.exists()
    # Meanwhile the live cache gives up a newer write of "a": it goes to a new file.
    DeadLetter(path).append([record("a", b"newer", written_ms=2), record("c", written_ms=1)])
    seen, report = keys_written(path)  # the same call as before
    assert seen == ["set b b'v'", "set a b'newer'", "set c b'v'"]
    assert (report.replayed, report.superseded, report.resumed) == (3, 1, 1)
    assert list(tmp_path.iterdir()) == []
    # With nothing at all left: said so.
    with pytest.raises(FileNotFoundError):
        replay(path, lambda rec: None)


def test_a_replay_that_runs_keeps_its_claim(tmp_path: Path) -> None:
    # A second replay of the same file while one runs takes neither the claimed file
    # (its lock is held) nor anything else.
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record("a")])
    inner: list[BaseException] = []

    def write(rec: DeadLetterRecord) -> None:
        try:
            replay(path, lambda rec: None)
        except FileNotFoundError as error:
            inner.append(error)

    assert replay(path, write).replayed == 1
    assert len(inner) == 1 and list(tmp_path.iterdir()) == []


def test_the_counts_add_up_to_the_lines(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record(f"k{n % 7}", written_ms=n) for n in range(40)])
    with path.open("a") as file:
        file.write("garbage\n\n")
    outcomes = iter(["replayed", "older", "expired", "kept", None, "older", True])

    def write(rec: DeadLetterRecord) -> Any:
        outcome = next(outcomes)
        if outcome == "older" and rec.key == "k1":
            raise ConnectionError("down")
        return outcome

    report = replay(path, write)
    counts = (
        report.replayed,
        report.superseded,
        report.older,
        report.expired,
        report.failed,
        report.kept,
        report.unreadable,
    )
    assert sum(counts) == 41, counts


def test_no_dead_letter_is_lost_or_replayed_twice_while_appends_go_on(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    sink = DeadLetter(path, fsync=False)
    stop = threading.Event()
    appended: list[str] = []

    def keep_appending() -> None:
        index = 0
        while not stop.is_set() or index < 200:
            sink.append([record(f"k{index}")])
            appended.append(f"k{index}")
            index += 1

    writer = threading.Thread(target=keep_appending)
    writer.start()
    replayed: list[str] = []
    # The replay's rename lands between an append's open() and its lock now and then:
    # slow each open down so that it does within a few replays.
    real_open = os.open

    def slow_open(*args: Any, **kwargs: Any) -> int:
        fd = real_open(*args, **kwargs)
        threading.Event().wait(0.0005)
        return fd

    try:
        os.open = slow_open  # type: ignore[assignment]
        while len(appended) < 20:
            threading.Event().wait(0.001)
        for _ in range(40):
            try:
                replay(path, lambda rec: replayed.append(rec.key))
            except FileNotFoundError:  # between a replay and the next append
                pass
    finally:
        os.open = real_open  # type: ignore[assignment]
        stop.set()
        writer.join()
    left = [r.key for r in read_dead_letters(path)] if path.exists() else []
    assert len(replayed) == len(set(replayed)), "a record was replayed twice"
    assert sorted(replayed + left) == sorted(appended), "a record was lost"
    assert replayed


# ----------------------------------------------------------------------------- into Redis
def stamped(written_ms: int, payload: bytes = b"\x01value") -> bytes:
    """A value as the Redis layer stores it: its envelope (written at ``written_ms``, no
    expiry), then the serializer's bytes."""
    return wrap_at(written_ms, deltas(Lifetime(math.inf)), 0.0, 0, payload)


def written_ms_in(raw_redis: Any, redis_key: str) -> int | None:
    data = raw_redis.get(redis_key)
    if data is None:
        return None
    envelope, _ = unwrap(data)
    assert envelope is not None
    return envelope.written_ms


def test_replay_into_redis_writes_the_bytes_back(
    tmp_path: Path, redis_url: str, raw_redis: Any, prefix: str
) -> None:
    path = tmp_path / "dead.jsonl"
    now_ms = time.time_ns() // 1_000_000
    raw_redis.set(f"{prefix}gone", stamped(now_ms - 10))
    DeadLetter(path).append(
        [
            record("plain", stamped(now_ms), store_key=f"{prefix}plain", written_ms=now_ms),
            record("px", b"with px", store_key=f"{prefix}px", px=60_000, written_ms=now_ms),
            record(
                "left",
                b"lifetime left",
                store_key=f"{prefix}left",
                expires_at=time.time() + 30,
                written_ms=now_ms,
            ),
            record("old", b"expired", store_key=f"{prefix}old", expires_at=time.time() - 1),
            record("gone", None, op="delete", store_key=f"{prefix}gone", written_ms=now_ms),
            record(f"{prefix}no-store-key", b"key is the redis key", written_ms=now_ms),
            record("db-row", {"id": 1}, layer="db"),
        ]
    )
    report = replay_into_redis(path, redis_url, layer="redis")
    assert (report.replayed, report.expired, report.kept, report.failed) == (5, 1, 1, 0)
    assert raw_redis.get(f"{prefix}plain") == stamped(now_ms)
    assert raw_redis.pttl(f"{prefix}plain") == -1  # no expiry given: none set
    assert 59_000 < raw_redis.pttl(f"{prefix}px") <= 60_000  # from written_ms + px
    assert 28_000 < raw_redis.pttl(f"{prefix}left") <= 30_000
    assert raw_redis.get(f"{prefix}old") is None and raw_redis.get(f"{prefix}gone") is None
    assert raw_redis.get(f"{prefix}no-store-key") == b"key is the redis key"
    assert [r.key for r in read_dead_letters(path)] == ["db-row"]  # another layer's: kept

    # Without a layer filter the persistence writer's record cannot go to Redis: kept.
    failed = replay_into_redis(path, raw_redis)
    assert failed.failed == 1 and "not bytes" in failed.errors[0]


def test_a_record_is_written_only_over_an_older_value(
    tmp_path: Path, raw_redis: Any, prefix: str
) -> None:
    path = tmp_path / "dead.jsonl"
    held = {"newer": 100, "same": 50, "older": 10, "del-newer": 100, "del-older": 10}
    for name, written in held.items():
        raw_redis.set(prefix + name, stamped(written, b"held"))
    sets = [(name, 50) for name in ("newer", "same", "older", "absent")]
    deletes = [(name, 50) for name in ("del-newer", "del-older", "del-absent")]
    DeadLetter(path).append(
        [record(n, stamped(t, b"record"), store_key=prefix + n, written_ms=t) for n, t in sets]
        + [record(n, None, op="delete", store_key=prefix + n, written_ms=t) for n, t in deletes]
    )
    report = replay_into_redis(path, raw_redis)
    assert (report.replayed, report.older) == (4, 3)
    assert report.kept_in is None and not path.exists()
    assert {
        name: written_ms_in(raw_redis, prefix + name) for name in [*held, "absent", "del-absent"]
    } == {
        "newer": 100,  # the record is older: skipped
        "same": 50,  # as new (most likely the very same write, landed): skipped
        "older": 50,
        "absent": 50,
        "del-newer": 100,
        "del-older": None,
        "del-absent": None,
    }
    assert raw_redis.get(f"{prefix}same") == stamped(50, b"held")


def test_an_expired_record_still_removes_an_older_value(
    tmp_path: Path, raw_redis: Any, prefix: str
) -> None:
    # The write was acknowledged, then its lifetime ended: an older value must not be
    # served in its place (as a write-behind SET sent too late becomes a DEL).
    path = tmp_path / "dead.jsonl"
    raw_redis.set(f"{prefix}older", stamped(10))
    raw_redis.set(f"{prefix}newer", stamped(100))
    gone = time.time() - 1
    DeadLetter(path).append(
        [
            record(name, stamped(50), store_key=prefix + name, written_ms=50, expires_at=gone)
            for name in ("older", "newer", "absent")
        ]
    )
    report = replay_into_redis(path, raw_redis)
    assert (report.expired, report.older) == (2, 1)
    assert raw_redis.get(f"{prefix}older") is None and raw_redis.get(f"{prefix}absent") is None
    assert written_ms_in(raw_redis, f"{prefix}newer") == 100


def test_a_record_without_a_time_fills_only_an_empty_key(
    tmp_path: Path, raw_redis: Any, prefix: str
) -> None:
    path = tmp_path / "dead.jsonl"
    raw_redis.set(f"{prefix}held", stamped(1))
    raw_redis.set(f"{prefix}held-too", stamped(1))
    DeadLetter(path).append(
        [
            record("held", b"v1 value", store_key=f"{prefix}held"),
            record("empty", b"v1 value", store_key=f"{prefix}empty"),
            record("held-too", None, op="delete", store_key=f"{prefix}held-too"),
        ]
    )
    report = replay_into_redis(path, raw_redis)
    assert (report.replayed, report.older) == (1, 2)
    assert raw_redis.get(f"{prefix}empty") == b"v1 value"
    assert written_ms_in(raw_redis, f"{prefix}held") == 1
    assert written_ms_in(raw_redis, f"{prefix}held-too") == 1


def test_a_value_without_an_envelope_is_left_and_its_record_kept(
    tmp_path: Path, raw_redis: Any, prefix: str
) -> None:
    # Its age cannot be told: overwriting it could make it older, dropping the record
    # could lose the newer write. Neither happens; the record waits for a human.
    path = tmp_path / "dead.jsonl"
    for name, data in {"legacy": b"\x01msgpack alone", "short": b"\x97\x01\xd3"}.items():
        raw_redis.set(prefix + name, data)
    DeadLetter(path).append(
        [
            record("legacy", stamped(5), store_key=f"{prefix}legacy", written_ms=5),
            record("short", None, op="delete", store_key=f"{prefix}short", written_ms=5),
        ]
    )
    report = replay_into_redis(path, raw_redis)
    assert (report.kept, report.replayed, report.kept_in) == (2, 0, path)
    assert raw_redis.get(f"{prefix}legacy") == b"\x01msgpack alone"
    assert raw_redis.get(f"{prefix}short") == b"\x97\x01\xd3"
    assert len(list(read_dead_letters(path))) == 2


def test_only_missing_never_touches_a_value_redis_holds(
    tmp_path: Path, raw_redis: Any, prefix: str
) -> None:
    path = tmp_path / "dead.jsonl"
    raw_redis.set(f"{prefix}held", stamped(1, b"written since"))
    DeadLetter(path).append(
        [
            record("held", stamped(9), store_key=f"{prefix}held", written_ms=9),
            record("absent", stamped(9), store_key=f"{prefix}absent", written_ms=9),
            record("deleted", None, op="delete", store_key=f"{prefix}held", written_ms=10),
        ]
    )
    report = replay_into_redis(path, raw_redis, only_missing=True)
    assert (report.replayed, report.older, report.superseded) == (1, 1, 1)
    assert raw_redis.get(f"{prefix}held") == stamped(1, b"written since")
    assert raw_redis.get(f"{prefix}absent") == stamped(9)


def test_replay_into_redis_from_the_command_line(
    tmp_path: Path, redis_url: str, raw_redis: Any, prefix: str, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "dead.jsonl"
    raw_redis.set(f"{prefix}newer", stamped(100))
    DeadLetter(path).append(
        [
            record("k", b"old cli", store_key=f"{prefix}k", written_ms=1),
            record("k", b"cli", store_key=f"{prefix}k", written_ms=2),
            record("newer", stamped(50), store_key=f"{prefix}newer", written_ms=50),
        ]
    )
    assert deadletter.main(["replay", str(path), "--redis", redis_url]) == 0
    assert capsys.readouterr().out == (
        "replayed 1, superseded 1, older-skipped 1, expired 0, failed 0, kept 0, unreadable 0\n"
    )
    assert raw_redis.get(f"{prefix}k") == b"cli"
    assert deadletter.main(["replay", str(path), "--redis", redis_url]) == 2  # no file now
    assert "no dead-letter file" in capsys.readouterr().err
    # Something not replayed for an error: exit status 1, the line kept and named.
    path.write_text('{"op": "upsert"}\n')
    assert deadletter.main(["replay", str(path), "--redis", redis_url]) == 1
    out = capsys.readouterr().out
    assert "unreadable 1; left in" in out and "no field 'v'" in out
    assert path.read_text() == '{"op": "upsert"}\n'


def test_replay_into_a_redis_cluster(tmp_path: Path, redis_cluster: Any, prefix: str) -> None:
    import redis.cluster

    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    names = [f"key{n}" for n in range(30)]  # spread over the three masters' slots
    try:
        for index, name in enumerate(names):
            client.set(prefix + name, stamped(100 if index % 2 else 10))
        path = tmp_path / "dead.jsonl"
        DeadLetter(path).append(
            [record(n, stamped(50), store_key=prefix + n, written_ms=50) for n in names]
        )
        assert (
            deadletter.main(["replay", str(path), "--redis", redis_cluster.url, "--cluster"]) == 0
        )
        written = [written_ms_in(client, prefix + name) for name in names]
        assert written == [100 if index % 2 else 50 for index in range(len(names))]
    finally:
        client.close()


def test_scripts_lost_midway_are_loaded_again(tmp_path: Path, raw_redis: Any, prefix: str) -> None:
    # A node restarted or failed over (or SCRIPT FLUSH) between two batches: NOSCRIPT.
    path = tmp_path / "dead.jsonl"
    count = 1_200  # three batches
    DeadLetter(path, fsync=False).append(
        record(f"k{n}", stamped(5), store_key=f"{prefix}k{n}", written_ms=5) for n in range(count)
    )
    calls = [0]

    def redis_key(rec: DeadLetterRecord) -> str:
        calls[0] += 1
        if calls[0] == count + 600:  # once per record to group them, then while batch 2 is made
            raw_redis.script_flush()
        return rec.store_key  # type: ignore[return-value]

    report = replay_into_redis(path, raw_redis, key=redis_key)
    assert (report.replayed, report.failed) == (count, 0), report.errors
    assert raw_redis.exists(*(f"{prefix}k{n}" for n in range(count))) == count


def test_a_queue_s_dead_letters_replay_into_redis(
    tmp_path: Path, redis_url: str, raw_redis: Any, prefix: str
) -> None:
    # The whole path: writes encoded by the Redis layer and given up by the queue, kept by
    # the sink, replayed into Redis; a set and a delete each carry when they were made.
    layer = RedisLayer(redis_url, prefix=prefix)
    queue = WriteQueue(WriteBehind(batch_size=10))
    before = time.time_ns() // 1_000_000
    for index in range(5):
        write = layer.encode_write(f"k{index}", f"value {index}", layer.lifetime(60))
        queue.put(f"k{index}", "set", write, write.size, now=0.0)
    queue.put("gone", "delete", layer.encode_delete("gone"), 0, now=0.0)
    after = time.time_ns() // 1_000_000
    raw_redis.set(f"{prefix}gone", stamped(before - 1))
    batch = queue.take(0.0)
    assert queue.failed(batch, LayerError("OOM", transient=False), 0.0) is None
    sink = DeadLetter(tmp_path / "dead.jsonl")
    sink.append(layer.dead_letter_record(dead) for dead in batch.dead)
    records = list(read_dead_letters(sink.path))
    for made in records:
        assert made.written_ms is not None and before <= made.written_ms <= after
        if made.op == "set":
            envelope, _ = unwrap(made.value)
            assert envelope is not None and envelope.written_ms == made.written_ms
    assert replay_into_redis(sink.path, raw_redis).replayed == 6
    assert [layer.get(f"k{i}") for i in range(5)] == [f"value {i}" for i in range(5)]
    assert raw_redis.get(f"{prefix}gone") is None
    layer.close()


def test_dead_write_is_what_the_queue_hands_out() -> None:
    # The record factory reads these fields: keep them in step with the queue.
    assert DeadWrite._fields == ("key", "op", "payload", "size", "error", "attempts")


# ----------------------------------------------------------------------------- the property
KEYS = ("a", "b", "c")
Held = int | Literal["legacy"] | None
Written = tuple[str, str, int | None]  # key, "set" / "delete" / "expired", written_ms


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    writes=st.lists(
        st.tuples(
            st.sampled_from(KEYS),
            st.sampled_from(["set", "delete", "expired"]),
            st.one_of(st.none(), st.integers(1, 6)),
        ),
        max_size=12,
    ),
    held=st.fixed_dictionaries(
        {key: st.one_of(st.none(), st.integers(1, 6), st.just("legacy")) for key in KEYS}
    ),
)
def test_a_replay_never_leaves_a_key_older_than_redis_held_or_the_newest_record(
    raw_redis: Any, writes: list[Written], held: dict[str, Held]
) -> None:
    prefix = f"prop{os.getpid()}-{time.monotonic_ns()}:"
    for key, state in held.items():
        if state == "legacy":
            raw_redis.set(prefix + key, b"\x01no envelope")
        elif state is not None:
            raw_redis.set(prefix + key, stamped(state, b"held"))
    records = [_written(prefix, index, write) for index, write in enumerate(writes)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dead.jsonl"
        if records:
            DeadLetter(path, fsync=False).append(records)
            report = replay_into_redis(path, raw_redis)
            assert report.failed == report.unreadable == 0
            assert sum(
                (report.replayed, report.superseded, report.older, report.expired, report.kept)
            ) == len(records)
        after = {key: raw_redis.get(prefix + key) for key in KEYS}
        assert after == {key: _expected(prefix, key, held[key], writes) for key in KEYS}
        for key in KEYS:  # the property itself, as the issue states it
            newest = max((t for k, _, t in writes if k == key and t is not None), default=0)
            was = held[key] if isinstance(held[key], int) else 0
            now = written_ms_in(raw_redis, prefix + key) if after[key] != b"\x01no envelope" else 0
            assert now is None or now >= min(was, newest), (key, was, newest, now)
        # Run twice (the same records given up again): the same end state.
        if records:
            DeadLetter(path, fsync=False).append(records)
            replay_into_redis(path, raw_redis)
            assert {key: raw_redis.get(prefix + key) for key in KEYS} == after
    raw_redis.delete(*(prefix + key for key in KEYS))


def _written(prefix: str, index: int, write: Written) -> DeadLetterRecord:
    key, op, written_ms = write
    if op == "delete":
        return record(key, None, op="delete", store_key=prefix + key, written_ms=written_ms)
    return record(
        key,
        stamped(written_ms or 0, f"record {index}".encode()),
        store_key=prefix + key,
        written_ms=written_ms,
        expires_at=time.time() - 10 if op == "expired" else None,
    )


def _expected(prefix: str, key: str, held: Held, writes: list[Written]) -> bytes | None:
    """What the key holds after the replay, by the rules of ``replay_into_redis``."""
    before = (
        None if held is None else b"\x01no envelope" if held == "legacy" else stamped(held, b"held")
    )
    mine = [(index, op, t) for index, (k, op, t) in enumerate(writes) if k == key]
    if not mine:
        return before
    index, op, written_ms = max(mine, key=lambda w: (w[2] is not None, w[2] or 0, w[0]))
    if held == "legacy":
        return before  # its age is unknown: untouched (the records are kept)
    if written_ms is None:  # a record without a time: only into an empty key
        if held is None and op == "set":
            return stamped(0, f"record {index}".encode())
        return before
    if held is not None and held >= written_ms:  # not newer than what Redis holds
        return before
    return stamped(written_ms, f"record {index}".encode()) if op == "set" else None
