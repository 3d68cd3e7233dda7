"""``WriteBehind(journal=...)``: a process killed outright (SIGKILL) at a random moment loses
none of the writes it acknowledged; the next cache on the same journal delivers them. And
the journal does not grow: what left the queue leaves the disk. Real processes, real server."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from multilayercache import InMemoryLayer, LayerPolicy, MultilayerCache, RedisLayer, WriteBehind
from multilayercache.journal import Journal

from services import Service, lost_writes


def recover(url: str, prefix: str, journal: Path) -> MultilayerCache:
    policy = LayerPolicy(write=WriteBehind(journal=journal))
    return MultilayerCache(
        [InMemoryLayer(max_size=10), RedisLayer(url, prefix=prefix)], [None, policy]
    )


@pytest.mark.parametrize("mode", ["sync", "asyncio"])
def test_sigkill_at_random_moments_loses_no_acknowledged_write(
    mode: str, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    journal = tmp_path / "journal"
    for run in range(3):
        run_prefix = f"{prefix}{run}:"
        service = Service(
            redis_url, run_prefix, tmp_path, "--mode", mode, "--journal", str(journal),
            "--ready-after", "2000", "--max-lag", "0.5",
        )  # fmt: skip
        service.wait_for("ready")
        time.sleep(rng.uniform(0, 0.3))
        service.process.send_signal(signal.SIGKILL)
        assert service.end() == -signal.SIGKILL
        last = service.acknowledged()
        cache = recover(redis_url, run_prefix, journal)  # the restart
        assert cache.flush(timeout=10)
        cache.close()
        assert lost_writes(redis_url, run_prefix, last) == []
        assert not list(journal.rglob("*.journal")), "delivered, yet still on disk"


def test_the_journal_keeps_only_what_is_not_delivered_yet(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    cache = recover(redis_url, prefix, tmp_path)
    for index in range(5000):
        cache.set(f"k{index}", index)
    assert cache.flush(timeout=10)
    time.sleep(1.1)  # the segment rotates on the next write...
    cache.set("last", 1)
    assert cache.flush(timeout=10)
    cache.set("after", 2)  # ...and the delivered ones are deleted
    segments = list(tmp_path.rglob("*.journal"))
    assert len(segments) == 1 and segments[0].stat().st_size < 1000  # "last" and "after"
    cache.close()
    assert not list(tmp_path.rglob("*")) or all(path.is_dir() for path in tmp_path.rglob("*"))


def test_a_live_process_journal_is_not_taken_and_a_torn_record_ends_a_dead_one(
    tmp_path: Path,
) -> None:
    live = Journal(tmp_path, "redis")
    live.append(Journal.encode("a", "set", b"1"), time.monotonic(), lambda: 0)
    assert Journal(tmp_path, "redis").recover()[0] == []  # its owner is alive: not ours

    # A dead process's files: a lock nobody holds, two whole records and a torn one.
    folder = tmp_path / "redis"
    (folder / "1-5.lock").touch()
    whole = Journal.encode("b", "set", b"2") + Journal.encode("b", "set", b"3")
    (folder / "1-5-000001.journal").write_bytes(whole + Journal.encode("c", "set", b"4")[:-3])
    records, forget = Journal(tmp_path, "redis").recover()
    assert records == [("b", "set", b"3")]  # the latest of b; c was cut short by the crash
    forget()
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        path.name for path in folder.iterdir() if not path.name.startswith("1-5")
    )
    assert not (folder / "1-5.lock").exists()


def test_a_forked_child_journals_on_its_own(redis_url: str, prefix: str, tmp_path: Path) -> None:
    cache = recover(redis_url, prefix, tmp_path)
    cache.set("parent", 1)
    pid = os.fork()
    if pid == 0:  # the child: its own journal, its own writes
        try:
            cache.set("child", 2)
            os._exit(0 if cache.flush(timeout=5) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.flush(timeout=5)
    layer = RedisLayer(redis_url, prefix=prefix)
    assert layer.get_many(["parent", "child"]) == {"parent": 1, "child": 2}
    layer.close()
    cache.close()


def test_a_recovered_write_never_overwrites_a_newer_value(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    pid = os.fork()
    if pid == 0:  # a process that acknowledges two writes, then dies before sending them
        try:
            held = WriteBehind(journal=tmp_path, batch_size=1000, max_delay=60)
            l2 = RedisLayer(redis_url, prefix=prefix)
            cache = MultilayerCache(
                [InMemoryLayer(max_size=10), l2], [None, LayerPolicy(write=held)]
            )
            cache.set("taken over", "old")
            cache.set("only journaled", "old")
        finally:
            os._exit(0)  # no atexit, no close: as SIGKILL would
    os.waitpid(pid, 0)
    other_process = RedisLayer(redis_url, prefix=prefix)
    other_process.set("taken over", "newer")  # written after the dead one's write
    cache = recover(redis_url, prefix, tmp_path)
    assert cache.flush(timeout=5)
    assert other_process.get_many(["taken over", "only journaled"]) == {
        "taken over": "newer",
        "only journaled": "old",
    }
    other_process.close()
    cache.close()
