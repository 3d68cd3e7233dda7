"""Dead letters: the JSONL format and its round trip, the sinks (file, callback, log), safe
appends from many threads and during a replay, and replays, into a real Redis too."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from multilayercache import deadletter
from multilayercache.core.errors import LayerError, SerializationError
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
            record("user:1", b"\x00\xffbytes", store_key="app:user:1", px=300_000, at=at),
            record(("user", 2), {"name": "Ada", "tags": [1, 2]}, layer="db", expires_at=1.5e9),
            record(42, object(), layer="db"),
            record(b"raw", None, op="delete", error=SerializationError("no")),
        ]
    )
    first, second, third, fourth = lines(path)
    assert all(set(line) == FIELDS and line["v"] == 1 for line in (first, second, third, fourth))
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
        "v": 1,
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


# ----------------------------------------------------------------------------- replay
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
    assert report.kept_in == path and report.errors == ("fails: ConnectionError: still down",)
    assert path.read_bytes().endswith(b"not json\n")
    assert [r.key for r in read_dead_letters(path, errors="skip")] == ["fails", "other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.jsonl"]  # the claim is gone
    everything = replay(path, lambda rec: None, keep_to=tmp_path / "bad.jsonl")
    assert (everything.replayed, everything.unreadable) == (2, 1) and not path.exists()
    assert (tmp_path / "bad.jsonl").read_bytes() == b"not json\n"


def test_replaying_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replay(tmp_path / "none.jsonl", lambda rec: None)
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record()])
    with pytest.raises(ValueError, match="outcome"):
        replay(path, lambda rec: "maybe")  # type: ignore[arg-type,return-value]


def test_an_interrupted_replay_leaves_its_claim_to_resume(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record("a"), record("b")])

    def interrupted(rec: DeadLetterRecord) -> None:
        if rec.key == "b":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay(path, interrupted)
    (claimed,) = tmp_path.glob("dead.jsonl.replaying-*")
    assert not path.exists()
    seen: list[str] = []
    report = replay(claimed, lambda rec: seen.append(rec.key), keep_to=path)
    assert seen == ["a", "b"] and report.replayed == 2 and not claimed.exists()


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
def test_replay_into_redis_writes_the_bytes_back(
    tmp_path: Path, redis_url: str, raw_redis: Any, prefix: str
) -> None:
    import time

    path = tmp_path / "dead.jsonl"
    raw_redis.set(f"{prefix}gone", b"still here")
    raw_redis.set(f"{prefix}newer", b"written since")
    DeadLetter(path).append(
        [
            record("plain", b"\x00\x01 bytes", store_key=f"{prefix}plain"),
            record("px", b"with px", store_key=f"{prefix}px", px=60_000),
            record(
                "left", b"lifetime left", store_key=f"{prefix}left", expires_at=time.time() + 30
            ),
            record("old", b"expired", store_key=f"{prefix}old", expires_at=time.time() - 1),
            record("gone", None, op="delete", store_key=f"{prefix}gone"),
            record(f"{prefix}no-store-key", b"key is the redis key"),
            record("db-row", {"id": 1}, layer="db"),
        ]
    )
    report = replay_into_redis(path, redis_url, layer="redis")
    assert (report.replayed, report.expired, report.kept, report.failed) == (5, 1, 1, 0)
    assert raw_redis.get(f"{prefix}plain") == b"\x00\x01 bytes"
    assert raw_redis.pttl(f"{prefix}plain") == -1  # no expiry given: none set
    assert 59_000 < raw_redis.pttl(f"{prefix}px") <= 60_000
    assert 28_000 < raw_redis.pttl(f"{prefix}left") <= 30_000
    assert raw_redis.get(f"{prefix}old") is None and raw_redis.get(f"{prefix}gone") is None
    assert raw_redis.get(f"{prefix}no-store-key") == b"key is the redis key"
    assert [r.key for r in read_dead_letters(path)] == ["db-row"]  # another layer's: kept

    # Without a layer filter the persistence writer's record cannot go to Redis: kept.
    failed = replay_into_redis(path, raw_redis)
    assert failed.failed == 1 and "not bytes" in failed.errors[0]


def test_replay_into_redis_only_missing_never_overwrites(
    tmp_path: Path, raw_redis: Any, prefix: str
) -> None:
    path = tmp_path / "dead.jsonl"
    raw_redis.set(f"{prefix}newer", b"written since")
    DeadLetter(path).append(
        [
            record("newer", b"old value", store_key=f"{prefix}newer"),
            record("absent", b"restored", store_key=f"{prefix}absent"),
            record("deleted", None, op="delete", store_key=f"{prefix}newer"),
        ]
    )
    report = replay_into_redis(path, raw_redis, only_missing=True)
    assert (report.replayed, report.kept) == (2, 1)
    assert raw_redis.get(f"{prefix}newer") == b"written since"
    assert raw_redis.get(f"{prefix}absent") == b"restored"
    assert [r.op for r in read_dead_letters(path)] == ["delete"]  # left for a human


def test_replay_into_redis_from_the_command_line(
    tmp_path: Path, redis_url: str, raw_redis: Any, prefix: str, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "dead.jsonl"
    DeadLetter(path).append([record("k", b"cli", store_key=f"{prefix}k")])
    assert deadletter.main(["replay", str(path), "--redis", redis_url]) == 0
    assert "replayed 1" in capsys.readouterr().out
    assert raw_redis.get(f"{prefix}k") == b"cli"
    assert deadletter.main(["replay", str(path), "--redis", redis_url]) == 2  # no file now
    assert "error" in capsys.readouterr().err


def test_a_queue_s_dead_letters_replay_into_redis(
    tmp_path: Path, raw_redis: Any, prefix: str
) -> None:
    # The whole path: writes given up by the queue, kept by the sink, replayed into Redis.
    queue = WriteQueue(WriteBehind(batch_size=10))
    for index in range(5):
        payload = (f"{prefix}{index}", f"value {index}".encode(), 60_000)
        queue.put(index, "set", payload, 16, now=0.0)
    batch = queue.take(0.0)
    assert queue.failed(batch, LayerError("OOM", transient=False), 0.0) is None
    sink = DeadLetter(tmp_path / "dead.jsonl")
    sink.append(
        DeadLetterRecord.of(dead, "redis", value=dead.payload[1], store_key=dead.payload[0])
        for dead in batch.dead
    )
    assert replay_into_redis(sink.path, raw_redis).replayed == 5
    assert [raw_redis.get(f"{prefix}{i}") for i in range(5)] == [
        f"value {i}".encode() for i in range(5)
    ]


def test_dead_write_is_what_the_queue_hands_out() -> None:
    # The record factory reads these fields: keep them in step with the queue.
    assert DeadWrite._fields == ("key", "op", "payload", "size", "error", "attempts")
